//! The service scheduler with load balancers, on an in-memory store: the tests play the ELBv2
//! API (target group and listener documents), the agent (state reports through the ECS agent
//! operations) and the data plane (TargetHealth documents, deleting drained targets).

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use wharf_api::Ctx;
use wharf_controllers::{Reconciler, ServiceScheduler};
use wharf_core::targets::{self, TargetRef};
use wharf_types::ecs::{RolloutState, Service, Task, TaskStatus};
use wharf_types::elb::{self, Action, ForwardConfig, Listener, Target, TargetGroup, TargetHealth, WeightedTargetGroup};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const CLUSTER: &str = "c1";
const TG_ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";

async fn ecs(ctx: &Ctx, op: &str, input: Value) -> Result<Value, wharf_types::Error> {
    wharf_api::ECS.call(ctx, op, input).await.expect("an ECS operation")
}

async fn put<T: serde::Serialize>(ctx: &Ctx, key: &str, doc: &T) {
    let bytes = serde_json::to_vec(doc).unwrap();
    let txn = wharf_store::Txn { compares: vec![], ops: vec![wharf_store::Op::put(key, bytes)] };
    assert!(ctx.db.commit(txn).await.unwrap());
}

async fn delete(ctx: &Ctx, key: &str) {
    let txn = wharf_store::Txn { compares: vec![], ops: vec![wharf_store::Op::delete(key)] };
    assert!(ctx.db.commit(txn).await.unwrap());
}

/// What the ELBv2 API writes: a target group with `delay` s of deregistration delay and,
/// with `listener`, a listener forwarding to it.
async fn target_group(ctx: &Ctx, kind: &str, delay: u64, listener: bool) {
    let mut tg = TargetGroup {
        target_group_arn: TG_ARN.into(),
        target_group_name: "web".into(),
        protocol: "HTTP".into(),
        port: Some(80),
        target_type: kind.into(),
        ..Default::default()
    };
    tg.attributes.insert("deregistration_delay.timeout_seconds".into(), delay.to_string());
    put(ctx, &elb::keys::target_group(ACCOUNT, REGION, "web"), &tg).await;
    if listener {
        let l = Listener {
            listener_arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/lb/1/2".into(),
            load_balancer_arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/lb/1".into(),
            port: 80,
            protocol: "HTTP".into(),
            default_actions: vec![Action {
                kind: "forward".into(),
                forward_config: Some(ForwardConfig {
                    target_groups: vec![WeightedTargetGroup { target_group_arn: TG_ARN.into(), weight: Some(1) }],
                    target_group_stickiness_config: None,
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        put(ctx, &elb::keys::listener(ACCOUNT, REGION, "2"), &l).await;
    }
}

fn lb() -> Value {
    json!([{"targetGroupArn": TG_ARN, "containerName": "web", "containerPort": 8080}])
}

/// A cluster with one instance (`i-host`, reachable at 10.0.0.7) and a bridge task definition.
async fn world() -> (Ctx, ServiceScheduler) {
    let ctx = Ctx::in_memory(ACCOUNT, REGION);
    ecs(&ctx, "CreateCluster", json!({"clusterName": CLUSTER})).await.unwrap();
    let identity = json!({"instanceId": "i-host", "privateIp": "10.0.0.7", "availabilityZone": "us-east-1a"});
    ecs(
        &ctx,
        "RegisterContainerInstance",
        json!({"cluster": CLUSTER, "instanceIdentityDocument": identity.to_string(), "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 8192},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]}]}),
    )
    .await
    .unwrap();
    ecs(
        &ctx,
        "RegisterTaskDefinition",
        json!({"family": "web", "networkMode": "bridge", "containerDefinitions": [{"name": "web", "image": "echo",
            "memory": 64, "portMappings": [{"containerPort": 8080, "hostPort": 0}]}]}),
    )
    .await
    .unwrap();
    let scheduler = ServiceScheduler::new(ctx.db.clone());
    (ctx, scheduler)
}

async fn tasks(ctx: &Ctx) -> Vec<Task> {
    let prefix = wharf_api::ecs::Keys::new(ctx).tasks(CLUSTER);
    ctx.db.list::<Task>(&prefix).await.unwrap().into_iter().map(|t| t.doc).collect()
}

async fn service(ctx: &Ctx, name: &str) -> Service {
    let key = wharf_api::ecs::Keys::new(ctx).service(CLUSTER, name);
    ctx.db.get::<Service>(&key).await.unwrap().unwrap().doc
}

/// What the agent reports once a task's containers run: RUNNING, host port bound.
async fn report_running(ctx: &Ctx, task: &Task, host_port: u16) {
    ecs(
        ctx,
        "SubmitTaskStateChange",
        json!({"cluster": CLUSTER, "task": task.task_arn, "status": "RUNNING", "containers": [
            {"containerName": "web", "status": "RUNNING", "runtimeId": "x",
             "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 8080, "hostPort": host_port, "protocol": "tcp"}]}]}),
    )
    .await
    .unwrap();
}

/// Every not-yet-RUNNING task asked to run becomes RUNNING on its own host port.
async fn run_pending(ctx: &Ctx, next_port: &mut u16) {
    for t in tasks(ctx).await {
        if t.desired_status == TaskStatus::Running && t.last_status == TaskStatus::Provisioning {
            report_running(ctx, &t, *next_port).await;
            *next_port += 1;
        }
    }
}

/// What the data plane writes for a target.
async fn health(ctx: &Ctx, r: &TargetRef, state: &str) {
    let doc = TargetHealth { state: state.into(), updated_at: wharf_types::now(), ..Default::default() };
    put(ctx, &r.health_key(&ctx.scope), &doc).await;
}

fn stop_requested(t: &Task) -> bool {
    t.desired_status == TaskStatus::Stopped
}

#[tokio::test]
async fn load_balancers_are_validated_as_ecs_does() {
    let (ctx, _) = world().await;
    let create = |extra: Value| {
        let mut body = json!({"cluster": CLUSTER, "serviceName": "s", "taskDefinition": "web", "desiredCount": 1});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let err = ecs(&ctx, "CreateService", create(json!({"loadBalancers": lb()}))).await.unwrap_err();
    assert!(err.to_string().contains("targetGroupArn"), "{err}");
    target_group(&ctx, "instance", 5, false).await;
    let err = ecs(&ctx, "CreateService", create(json!({"loadBalancers": lb()}))).await.unwrap_err();
    assert!(err.to_string().contains("does not have an associated load balancer"), "{err}");
    target_group(&ctx, "ip", 5, true).await;
    let err = ecs(&ctx, "CreateService", create(json!({"loadBalancers": lb()}))).await.unwrap_err();
    assert!(err.to_string().contains("target type ip, which is incompatible with the bridge network mode"), "{err}");
    target_group(&ctx, "instance", 5, true).await;
    let classic = json!([{"loadBalancerName": "classic", "containerName": "web", "containerPort": 8080}]);
    let err = ecs(&ctx, "CreateService", create(json!({"loadBalancers": classic}))).await.unwrap_err();
    assert!(err.to_string().contains("Classic Load Balancers are not supported"), "{err}");
    let port = json!([{"targetGroupArn": TG_ARN, "containerName": "web", "containerPort": 9}]);
    let err = ecs(&ctx, "CreateService", create(json!({"loadBalancers": port}))).await.unwrap_err();
    assert!(err.to_string().contains("did not have a container port 9 defined"), "{err}");
    let err = ecs(&ctx, "CreateService", create(json!({"healthCheckGracePeriodSeconds": 10}))).await.unwrap_err();
    assert!(err.to_string().contains("only valid for services configured to use load balancers"), "{err}");
    assert!(ctx.db.list::<Service>(&wharf_api::ecs::Keys::new(&ctx).services(CLUSTER)).await.unwrap().is_empty());

    let out = ecs(&ctx, "CreateService", create(json!({"loadBalancers": lb(), "healthCheckGracePeriodSeconds": 10})))
        .await
        .unwrap();
    assert_eq!(out["service"]["loadBalancers"], lb());
    let svc = service(&ctx, "s").await;
    assert_eq!(
        wharf_core::deployments::deployment_load_balancers(&svc.deployments[0]),
        lb().as_array().unwrap().clone()
    );
    // Changing the load balancers is a new deployment that carries the new ones.
    let none = ecs(&ctx, "UpdateService", json!({"cluster": CLUSTER, "service": "s", "loadBalancers": []})).await;
    none.unwrap();
    let svc = service(&ctx, "s").await;
    assert_eq!(svc.deployments.len(), 2);
    assert!(wharf_core::deployments::deployment_load_balancers(&svc.deployments[0]).is_empty());
    assert_eq!(wharf_core::deployments::deployment_load_balancers(&svc.deployments[1]).len(), 1);
}

#[tokio::test]
async fn instances_record_where_their_ports_are_reachable() {
    let (ctx, _) = world().await;
    let key = elb::instance_address_key(ACCOUNT, REGION, "i-host");
    let a = ctx.db.get::<elb::InstanceAddress>(&key).await.unwrap().unwrap().doc;
    assert_eq!(a.address, "10.0.0.7");
    let t = Target { id: "i-host".into(), port: 32768, ..Default::default() };
    assert_eq!(elb::target_address(&t, Some(&a)).unwrap().to_string(), "10.0.0.7:32768");
}

/// A service of 2 behind the target group, registered and healthy; returns the next free port.
async fn serving(ctx: &Ctx, scheduler: &ServiceScheduler, delay: u64, grace: Option<i64>) -> u16 {
    target_group(ctx, "instance", delay, true).await;
    let mut body = json!({"cluster": CLUSTER, "serviceName": "s", "taskDefinition": "web", "desiredCount": 2,
        "loadBalancers": lb()});
    if let Some(g) = grace {
        body["healthCheckGracePeriodSeconds"] = json!(g);
    }
    ecs(ctx, "CreateService", body).await.unwrap();
    scheduler.activate().await;
    let mut port = 32768;
    run_pending(ctx, &mut port).await;
    scheduler.activate().await;
    let all = tasks(ctx).await;
    assert_eq!(all.len(), 2);
    for t in &all {
        let refs = targets::registered(t);
        assert_eq!(refs.len(), 1, "a RUNNING task is registered once per target group");
        let r = &refs[0];
        assert_eq!((r.id.as_str(), r.target_group.as_str()), ("i-host", "web"));
        let host = t.containers[0].network_bindings[0].host_port.unwrap();
        assert_eq!(i64::from(r.port), host, "the host port bound to containerPort");
        let target = ctx.db.get::<Target>(&r.key(&ctx.scope)).await.unwrap().unwrap().doc;
        assert_eq!((target.target_group_arn.as_str(), target.draining_since), (TG_ARN, None));
    }
    // Not healthy for the deployment until the load balancer says so.
    let svc = service(ctx, "s").await;
    assert_eq!(svc.deployments[0].rollout_state, Some(RolloutState::InProgress));
    for t in &all {
        health(ctx, &targets::registered(t)[0], "healthy").await;
    }
    scheduler.activate().await;
    let svc = service(ctx, "s").await;
    assert_eq!(svc.deployments[0].rollout_state, Some(RolloutState::Completed));
    port
}

#[tokio::test]
async fn running_tasks_are_registered_and_count_healthy_only_when_their_targets_are() {
    let (ctx, scheduler) = world().await;
    serving(&ctx, &scheduler, 300, None).await;
}

#[tokio::test]
async fn a_task_is_deregistered_and_drained_before_it_is_stopped() {
    let (ctx, scheduler) = world().await;
    serving(&ctx, &scheduler, 300, None).await;
    ecs(&ctx, "UpdateService", json!({"cluster": CLUSTER, "service": "s", "desiredCount": 1})).await.unwrap();
    scheduler.activate().await;
    let all = tasks(&ctx).await;
    let leaving: Vec<&Task> = all.iter().filter(|t| stop_requested(t)).collect();
    assert_eq!(leaving.len(), 1);
    let t = leaving[0];
    assert_eq!(t.last_status, TaskStatus::Deactivating);
    assert!(targets::held_for_draining(t), "the agent is not told to stop it yet");
    let r = &targets::registered(t)[0];
    let target = ctx.db.get::<Target>(&r.key(&ctx.scope)).await.unwrap().unwrap().doc;
    assert!(target.draining_since.is_some(), "the data plane sends it no new requests");
    // The delay (300 s) has not passed: still held, however often the scheduler runs.
    scheduler.activate().await;
    let again = tasks(&ctx).await.into_iter().find(|x| x.task_arn == t.task_arn).unwrap();
    assert!(targets::held_for_draining(&again));
    // The data plane removed the idle target: the task is released to the agent.
    delete(&ctx, &r.key(&ctx.scope)).await;
    scheduler.activate().await;
    let released = tasks(&ctx).await.into_iter().find(|x| x.task_arn == t.task_arn).unwrap();
    assert!(!targets::held_for_draining(&released));
    assert_eq!((released.desired_status.as_str(), released.last_status.as_str()), ("STOPPED", "DEACTIVATING"));
    assert!(targets::registered(&released).is_empty());
}

#[tokio::test]
async fn stop_task_by_a_user_drains_for_the_deregistration_delay() {
    let (ctx, scheduler) = world().await;
    serving(&ctx, &scheduler, 0, None).await;
    let t = tasks(&ctx).await.remove(0);
    let out = ecs(&ctx, "StopTask", json!({"cluster": CLUSTER, "task": t.task_arn})).await.unwrap();
    assert_eq!(out["task"]["lastStatus"], "DEACTIVATING");
    assert_eq!(out["task"]["desiredStatus"], "STOPPED");
    let key = targets::registered(&t)[0].key(&ctx.scope);
    assert!(ctx.db.get::<Target>(&key).await.unwrap().unwrap().doc.draining_since.is_some());
    // A delay of 0 has passed at the next activation: the leftover target goes, the task is released.
    scheduler.activate().await;
    let after = tasks(&ctx).await.into_iter().find(|x| x.task_arn == t.task_arn).unwrap();
    assert!(!targets::held_for_draining(&after) && targets::registered(&after).is_empty());
    assert!(ctx.db.get::<Target>(&key).await.unwrap().is_none());
}

#[tokio::test]
async fn a_rolling_deployment_stops_old_tasks_only_once_new_ones_are_healthy_in_the_target_group() {
    let (ctx, scheduler) = world().await;
    let mut port = serving(&ctx, &scheduler, 300, None).await;
    let old: Vec<String> = tasks(&ctx).await.into_iter().map(|t| t.task_arn).collect();
    ecs(&ctx, "UpdateService", json!({"cluster": CLUSTER, "service": "s", "forceNewDeployment": true})).await.unwrap();
    scheduler.activate().await;
    run_pending(&ctx, &mut port).await;
    scheduler.activate().await;
    scheduler.activate().await;
    let all = tasks(&ctx).await;
    let new: Vec<&Task> = all.iter().filter(|t| !old.contains(&t.task_arn)).collect();
    assert_eq!(new.len(), 2);
    assert!(new.iter().all(|t| targets::registered(t).len() == 1), "new tasks registered when RUNNING");
    assert!(all.iter().all(|t| !stop_requested(t)), "no old task stops while the new ones are not healthy");
    // `initial` is not healthy either.
    for t in &new {
        health(&ctx, &targets::registered(t)[0], "initial").await;
    }
    scheduler.activate().await;
    assert!(tasks(&ctx).await.iter().all(|t| !stop_requested(t)));
    for t in &new {
        health(&ctx, &targets::registered(t)[0], "healthy").await;
    }
    scheduler.activate().await;
    let all = tasks(&ctx).await;
    for t in all.iter().filter(|t| old.contains(&t.task_arn)) {
        assert!(stop_requested(t) && t.last_status == TaskStatus::Deactivating && targets::held_for_draining(t));
    }
    assert!(all.iter().filter(|t| !old.contains(&t.task_arn)).all(|t| !stop_requested(t)));
}

#[tokio::test]
async fn a_task_failing_elb_health_checks_is_replaced_after_the_grace_period_only() {
    let (ctx, scheduler) = world().await;
    serving(&ctx, &scheduler, 300, Some(3600)).await;
    let t = tasks(&ctx).await.remove(0);
    health(&ctx, &targets::registered(&t)[0], "unhealthy").await;
    scheduler.activate().await;
    assert!(tasks(&ctx).await.iter().all(|x| !stop_requested(x)), "inside the grace period");

    let (ctx, scheduler) = world().await;
    serving(&ctx, &scheduler, 300, Some(0)).await;
    let t = tasks(&ctx).await.remove(0);
    health(&ctx, &targets::registered(&t)[0], "unhealthy").await;
    scheduler.activate().await;
    let stopped = tasks(&ctx).await.into_iter().find(|x| x.task_arn == t.task_arn).unwrap();
    assert!(stop_requested(&stopped));
    assert_eq!(
        stopped.stopped_reason.as_deref(),
        Some(format!("Task failed ELB health checks in (target-group {TG_ARN})").as_str())
    );
    assert_eq!(stopped.last_status, TaskStatus::Deactivating);
    // Its replacement is started at once (maximumPercent 200 leaves room).
    assert_eq!(tasks(&ctx).await.iter().filter(|x| !stop_requested(x)).count(), 2);
}

#[tokio::test]
async fn a_task_that_exits_on_its_own_is_deregistered() {
    let (ctx, scheduler) = world().await;
    serving(&ctx, &scheduler, 0, None).await;
    let t = tasks(&ctx).await.remove(0);
    ecs(
        &ctx,
        "SubmitTaskStateChange",
        json!({"cluster": CLUSTER, "task": t.task_arn, "status": "STOPPED", "reason": "Essential container in task exited",
            "containers": [{"containerName": "web", "status": "STOPPED", "exitCode": 1}]}),
    )
    .await
    .unwrap();
    let key = targets::registered(&t)[0].key(&ctx.scope);
    scheduler.activate().await;
    assert!(ctx.db.get::<Target>(&key).await.unwrap().unwrap().doc.draining_since.is_some());
    scheduler.activate().await;
    assert!(ctx.db.get::<Target>(&key).await.unwrap().is_none(), "removed once its delay (0 s) passed");
}
