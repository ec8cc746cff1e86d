//! Task scale-in protection through the real handlers (model validation included) and the
//! service scheduler, on an in-memory store; the tests play the agent (state reports through
//! the ECS agent operations).

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use wharf_api::{Ctx, ECS};
use wharf_controllers::{Reconciler, ServiceScheduler};
use wharf_types::ecs::{RolloutState, Service, Task, TaskStatus};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const CLUSTER: &str = "c1";

async fn ecs(ctx: &Ctx, op: &str, body: Value) -> Result<Value, wharf_types::Error> {
    let input = ECS.model.validate(op, body)?;
    ECS.call(ctx, op, input).await.expect("an ECS operation")
}

/// A cluster with two instances and a task definition; the scheduler that runs its services.
async fn world() -> (Ctx, ServiceScheduler) {
    let ctx = Ctx::in_memory(ACCOUNT, REGION);
    ecs(&ctx, "CreateCluster", json!({"clusterName": CLUSTER})).await.unwrap();
    for host in ["i-one", "i-two"] {
        let identity = json!({"instanceId": host, "privateIp": "10.0.0.7", "availabilityZone": "us-east-1a"});
        ecs(
            &ctx,
            "RegisterContainerInstance",
            json!({"cluster": CLUSTER, "instanceIdentityDocument": identity.to_string(), "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 8192}]}),
        )
        .await
        .unwrap();
    }
    for version in ["v1", "v2"] {
        let td = json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "echo", "memory": 64,
            "environment": [{"name": "VERSION", "value": version}]}]});
        ecs(&ctx, "RegisterTaskDefinition", td).await.unwrap();
    }
    (ctx.clone(), ServiceScheduler::new(ctx.db.clone()))
}

async fn tasks(ctx: &Ctx) -> Vec<Task> {
    let prefix = wharf_api::ecs::Keys::new(ctx).tasks(CLUSTER);
    ctx.db.list::<Task>(&prefix).await.unwrap().into_iter().map(|t| t.doc).collect()
}

/// The tasks nobody asked to stop.
async fn live(ctx: &Ctx) -> Vec<Task> {
    tasks(ctx).await.into_iter().filter(|t| t.desired_status == TaskStatus::Running).collect()
}

async fn service(ctx: &Ctx) -> Service {
    let key = wharf_api::ecs::Keys::new(ctx).service(CLUSTER, "web");
    ctx.db.get::<Service>(&key).await.unwrap().unwrap().doc
}

/// Plays the agent: tasks asked to run become RUNNING, tasks asked to stop become STOPPED.
async fn agent(ctx: &Ctx) {
    for t in tasks(ctx).await {
        let status = match (t.desired_status, t.last_status) {
            (TaskStatus::Running, TaskStatus::Provisioning) => "RUNNING",
            (TaskStatus::Stopped, s) if s != TaskStatus::Stopped => "STOPPED",
            _ => continue,
        };
        let change = json!({"cluster": CLUSTER, "task": t.task_arn, "status": status,
            "containers": [{"containerName": "web", "status": status}]});
        ecs(ctx, "SubmitTaskStateChange", change).await.unwrap();
    }
}

/// Scheduler and agent, a few rounds: whatever can settle does.
async fn settle(ctx: &Ctx, scheduler: &ServiceScheduler) {
    for _ in 0..4 {
        scheduler.activate().await;
        agent(ctx).await;
    }
}

/// A service of `n` running tasks, steady.
async fn service_of(ctx: &Ctx, scheduler: &ServiceScheduler, n: i64) -> Vec<Task> {
    let body = json!({"cluster": CLUSTER, "serviceName": "web", "taskDefinition": "web:1", "desiredCount": n});
    ecs(ctx, "CreateService", body).await.unwrap();
    settle(ctx, scheduler).await;
    let svc = service(ctx).await;
    assert_eq!((svc.running_count, svc.deployments[0].rollout_state), (n, Some(RolloutState::Completed)));
    live(ctx).await
}

async fn protect(ctx: &Ctx, tasks: &[&str], enabled: bool, minutes: Option<i64>) -> Value {
    let mut body = json!({"cluster": CLUSTER, "tasks": tasks, "protectionEnabled": enabled});
    if let Some(m) = minutes {
        body["expiresInMinutes"] = json!(m);
    }
    ecs(ctx, "UpdateTaskProtection", body).await.unwrap()
}

fn id(t: &Task) -> &str {
    t.task_arn.rsplit('/').next().unwrap()
}

fn messages(svc: &Service) -> Vec<&str> {
    svc.events.iter().map(|e| e.message.as_str()).collect()
}

#[tokio::test]
async fn protection_is_set_read_and_cleared_as_ecs_reports_it() {
    let (ctx, scheduler) = world().await;
    let all = service_of(&ctx, &scheduler, 3).await;
    let before = wharf_types::now();
    // By id and by ARN; 2 hours unless expiresInMinutes says otherwise.
    let out = protect(&ctx, &[id(&all[0]), &all[1].task_arn], true, None).await;
    assert_eq!(out["failures"], json!([]));
    let protected = out["protectedTasks"].as_array().unwrap();
    assert_eq!(protected.len(), 2);
    assert_eq!(protected[0]["taskArn"], json!(all[0].task_arn));
    assert_eq!(protected[0]["protectionEnabled"], json!(true));
    let expires = protected[0]["expirationDate"].as_f64().unwrap();
    assert!((before + 7200.0..=wharf_types::now() + 7200.0).contains(&expires), "{expires}");
    // Protection is the task's own state, kept in its document.
    let stored = tasks(&ctx).await.into_iter().find(|t| t.task_arn == all[0].task_arn).unwrap();
    assert_eq!(stored.protected_until, Some(expires));
    // ...and never shown by DescribeTasks, whose shape has no such member.
    let described = ecs(&ctx, "DescribeTasks", json!({"cluster": CLUSTER, "tasks": [id(&all[0])]})).await.unwrap();
    let described = ECS.model.conform_output("DescribeTasks", described);
    assert_eq!(described["tasks"][0]["taskArn"], json!(all[0].task_arn));
    assert!(!described.to_string().contains("wharfProtectedUntil"), "{described}");

    let got =
        ecs(&ctx, "GetTaskProtection", json!({"cluster": CLUSTER, "tasks": [id(&all[0]), id(&all[2])]})).await.unwrap();
    assert_eq!(
        got["protectedTasks"],
        json!([
            {"taskArn": all[0].task_arn, "protectionEnabled": true, "expirationDate": expires},
            {"taskArn": all[2].task_arn, "protectionEnabled": false},
        ])
    );
    // Setting it again starts the period again, from now.
    let out = protect(&ctx, &[id(&all[0])], true, Some(1)).await;
    let again = out["protectedTasks"][0]["expirationDate"].as_f64().unwrap();
    assert!(again < expires && again >= before + 60.0, "{again}");
    let out = protect(&ctx, &[id(&all[0])], false, None).await;
    assert_eq!(out["protectedTasks"], json!([{"taskArn": all[0].task_arn, "protectionEnabled": false}]));
}

#[tokio::test]
async fn what_cannot_be_protected_is_a_failure_or_an_error() {
    let (ctx, scheduler) = world().await;
    let all = service_of(&ctx, &scheduler, 1).await;
    let missing = format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/0123456789abcdef0123456789abcdef");
    let run = ecs(&ctx, "RunTask", json!({"cluster": CLUSTER, "taskDefinition": "web:1"})).await.unwrap();
    let standalone = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let out = protect(&ctx, &[id(&all[0]), "0123456789abcdef0123456789abcdef", &standalone], true, None).await;
    assert_eq!(out["protectedTasks"].as_array().unwrap().len(), 1);
    assert_eq!(
        out["failures"],
        json!([{"arn": missing, "reason": "MISSING"}, {"arn": standalone, "reason": "TASK_NOT_VALID"}])
    );
    let got = ecs(&ctx, "GetTaskProtection", json!({"cluster": CLUSTER, "tasks": [standalone]})).await.unwrap();
    assert_eq!(got["failures"][0]["reason"], json!("TASK_NOT_VALID"));
    ecs(&ctx, "StopTask", json!({"cluster": CLUSTER, "task": id(&all[0])})).await.unwrap();
    let out = protect(&ctx, &[id(&all[0])], true, None).await;
    assert_eq!(out["failures"][0]["reason"], json!("TASK_STOPPING_OR_STOPPED"));

    let update = |tasks: Vec<String>, minutes: i64| json!({"cluster": CLUSTER, "tasks": tasks, "protectionEnabled": true, "expiresInMinutes": minutes});
    let one = vec![id(&all[0]).to_string()];
    for (body, field) in [
        (update(one.clone(), 0), "expiresInMinutes"),
        (update(one.clone(), 2881), "expiresInMinutes"),
        (update(vec![], 5), "tasks"),
        (update(vec![id(&all[0]).to_string(); 11], 5), "tasks"),
    ] {
        match ecs(&ctx, "UpdateTaskProtection", body).await {
            Err(wharf_types::Error::InvalidParameter { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidParameter for {field}, got {other:?}"),
        }
    }
    let ok = ecs(&ctx, "UpdateTaskProtection", update(one, 2880)).await.unwrap();
    assert_eq!(ok["failures"][0]["reason"], json!("TASK_STOPPING_OR_STOPPED"));
    let no_cluster = json!({"cluster": "nope", "tasks": [id(&all[0])], "protectionEnabled": false});
    let err = ecs(&ctx, "UpdateTaskProtection", no_cluster).await.unwrap_err();
    assert!(matches!(err, wharf_types::Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn scale_in_stops_only_unprotected_tasks() {
    let (ctx, scheduler) = world().await;
    let all = service_of(&ctx, &scheduler, 3).await;
    let (a, b, c) = (&all[0], &all[1], &all[2]);
    protect(&ctx, &[id(a), id(b)], true, None).await;
    ecs(&ctx, "UpdateService", json!({"cluster": CLUSTER, "service": "web", "desiredCount": 1})).await.unwrap();
    settle(&ctx, &scheduler).await;

    let mut left: Vec<String> = live(&ctx).await.into_iter().map(|t| t.task_arn).collect();
    left.sort();
    let mut protected = vec![a.task_arn.clone(), b.task_arn.clone()];
    protected.sort();
    assert_eq!(left, protected, "the two protected tasks stay, the other one goes");
    let svc = service(&ctx).await;
    assert_eq!((svc.desired_count, svc.running_count), (1, 2));
    let deployment = &svc.deployments[0].id;
    // One more task is to go, and both left are protected.
    let held =
        format!("(service web, taskSet {deployment}) was unable to scale in due to (reason 1 tasks under protection)");
    let events = messages(&svc);
    assert_eq!(
        events.iter().filter(|m| **m == held).count(),
        1,
        "written once, however often the scheduler runs: {events:?}"
    );
    assert!(
        events[1].starts_with(&format!("(service web) has stopped 1 running tasks: (task {})", id(c))),
        "{events:?}"
    );
    assert!(!svc.steady);

    // Protection off on one: that one goes, the other stays.
    protect(&ctx, &[id(b)], false, None).await;
    settle(&ctx, &scheduler).await;
    let left: Vec<String> = live(&ctx).await.into_iter().map(|t| t.task_arn).collect();
    assert_eq!(left, vec![a.task_arn.clone()]);
    let svc = service(&ctx).await;
    assert_eq!((svc.desired_count, svc.running_count), (1, 1));
    assert!(messages(&svc).contains(&"(service web) has reached a steady state."));
}

#[tokio::test]
async fn a_rolling_deployment_waits_for_protected_tasks_until_protection_expires() {
    let (ctx, scheduler) = world().await;
    let all = service_of(&ctx, &scheduler, 2).await;
    protect(&ctx, &[id(&all[0])], true, None).await;
    let old = service(&ctx).await.deployments[0].id.clone();
    ecs(&ctx, "UpdateService", json!({"cluster": CLUSTER, "service": "web", "taskDefinition": "web:2"})).await.unwrap();
    settle(&ctx, &scheduler).await;

    let live_now = live(&ctx).await;
    assert_eq!(live_now.len(), 3, "two new tasks and the protected old one");
    assert!(live_now.iter().any(|t| t.task_arn == all[0].task_arn));
    assert!(!live_now.iter().any(|t| t.task_arn == all[1].task_arn));
    let svc = service(&ctx).await;
    assert_eq!(svc.deployments.len(), 2);
    assert_eq!(svc.deployments[0].rollout_state, Some(RolloutState::InProgress));
    let held = format!(
        "(service web) was unable to reach steady state because (taskSet {old}) was unable to scale in due to (reason 1 tasks under protection)"
    );
    assert!(messages(&svc).contains(&held.as_str()), "{:?}", messages(&svc));

    // The protection runs out (as if its minutes had passed): the deployment finishes.
    let key = wharf_api::ecs::Keys::new(&ctx).task(CLUSTER, id(&all[0]));
    let mut t = ctx.db.get::<Task>(&key).await.unwrap().unwrap();
    t.doc.protected_until = Some(wharf_types::now() - 1.0);
    assert!(ctx.db.commit(wharf_core::db::cas_put(&key, t.rev, &t.doc).unwrap()).await.unwrap());
    settle(&ctx, &scheduler).await;
    let svc = service(&ctx).await;
    assert_eq!(svc.deployments.len(), 1);
    assert_eq!(svc.deployments[0].rollout_state, Some(RolloutState::Completed));
    assert!(live(&ctx).await.iter().all(|t| t.task_definition_arn.ends_with("web:2")));
}

#[tokio::test]
async fn protection_does_not_keep_a_task_that_stops_for_other_reasons() {
    let (ctx, scheduler) = world().await;
    let all = service_of(&ctx, &scheduler, 2).await;
    let arns: Vec<&str> = all.iter().map(id).collect();
    protect(&ctx, &arns, true, None).await;
    // StopTask by the user.
    ecs(&ctx, "StopTask", json!({"cluster": CLUSTER, "task": arns[0]})).await.unwrap();
    settle(&ctx, &scheduler).await;
    assert!(!live(&ctx).await.iter().any(|t| t.task_arn == all[0].task_arn));
    assert_eq!(live(&ctx).await.len(), 2, "replaced");

    // Its instance draining: its tasks move to the other one, protected or not.
    let on = all[1].container_instance_arn.clone().unwrap();
    let drain = json!({"cluster": CLUSTER, "containerInstances": [on.clone()], "status": "DRAINING"});
    ecs(&ctx, "UpdateContainerInstancesState", drain).await.unwrap();
    settle(&ctx, &scheduler).await;
    let now = live(&ctx).await;
    assert!(!now.iter().any(|t| t.task_arn == all[1].task_arn), "the protected task left the draining instance");
    assert_eq!(now.len(), 2);
    assert!(now.iter().all(|t| t.container_instance_arn.as_deref() != Some(on.as_str())));
}
