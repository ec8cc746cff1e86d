//! A LINEAR deployment walked activation by activation on an in-memory store: the tests play
//! the ELBv2 API (two target groups, a listener and its production rule), the agent (tasks
//! report RUNNING) and the data plane (every registered target reports healthy). After each
//! activation the invariants of a traffic shift are checked: stages only move forward in
//! ECS's order, green's production weight only grows, and no blue task is asked to stop before
//! CLEAN_UP, by which time production is all green's.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::time::Duration;
use wharf_api::Ctx;
use wharf_controllers::{Reconciler, ServiceScheduler};
use wharf_core::targets;
use wharf_types::ecs::{DeploymentStatus, LifecycleStage, RolloutState, Service, Task, TaskStatus};
use wharf_types::elb::{self, Action, ForwardConfig, Listener, Rule, TargetGroup, TargetHealth, WeightedTargetGroup};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const CLUSTER: &str = "c1";
const LISTENER: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/lb/1/2";
const RULE: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener-rule/app/lb/1/2/r1";

fn tg_arn(name: &str) -> String {
    format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/0123456789abcdef")
}

async fn ecs(ctx: &Ctx, op: &str, input: Value) -> Result<Value, wharf_types::Error> {
    wharf_api::ECS.call(ctx, op, input).await.expect("an ECS operation")
}

async fn put<T: serde::Serialize>(ctx: &Ctx, key: &str, doc: &T) {
    let txn =
        wharf_store::Txn { compares: vec![], ops: vec![wharf_store::Op::put(key, serde_json::to_vec(doc).unwrap())] };
    assert!(ctx.db.commit(txn).await.unwrap());
}

fn forward(groups: &[(&str, u32)]) -> Action {
    Action {
        kind: "forward".into(),
        forward_config: Some(ForwardConfig {
            target_groups: groups
                .iter()
                .map(|(n, w)| WeightedTargetGroup { target_group_arn: tg_arn(n), weight: Some(*w) })
                .collect(),
            target_group_stickiness_config: None,
        }),
        ..Default::default()
    }
}

/// A cluster with one instance, a bridge task definition, target groups `web-a` and `web-b`,
/// and a listener whose rule `r1` forwards to `web-a`.
async fn world() -> Ctx {
    let ctx = Ctx::in_memory(ACCOUNT, REGION);
    ecs(&ctx, "CreateCluster", json!({"clusterName": CLUSTER})).await.unwrap();
    let identity = json!({"instanceId": "i-host", "privateIp": "10.0.0.7", "availabilityZone": "us-east-1a"});
    ecs(
        &ctx,
        "RegisterContainerInstance",
        json!({"cluster": CLUSTER, "instanceIdentityDocument": identity.to_string(), "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": 8192}]}),
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
    for name in ["web-a", "web-b"] {
        let mut tg = TargetGroup {
            target_group_arn: tg_arn(name),
            target_group_name: name.into(),
            protocol: "HTTP".into(),
            port: Some(80),
            target_type: "instance".into(),
            ..Default::default()
        };
        tg.attributes.insert("deregistration_delay.timeout_seconds".into(), "0".into());
        put(&ctx, &elb::keys::target_group(ACCOUNT, REGION, name), &tg).await;
    }
    let listener = Listener {
        listener_arn: LISTENER.into(),
        load_balancer_arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/lb/1".into(),
        port: 80,
        protocol: "HTTP".into(),
        default_actions: vec![forward(&[("web-a", 1)])],
        ..Default::default()
    };
    put(&ctx, &elb::keys::listener(ACCOUNT, REGION, "2"), &listener).await;
    let rule = Rule {
        rule_arn: RULE.into(),
        listener_arn: LISTENER.into(),
        priority: "1".into(),
        actions: vec![forward(&[("web-a", 1)])],
        ..Default::default()
    };
    put(&ctx, &elb::keys::rule(ACCOUNT, REGION, "2", "r1"), &rule).await;
    ctx
}

async fn tasks(ctx: &Ctx) -> Vec<Task> {
    let prefix = wharf_api::ecs::Keys::new(ctx).tasks(CLUSTER);
    ctx.db.list::<Task>(&prefix).await.unwrap().into_iter().map(|t| t.doc).collect()
}

async fn service(ctx: &Ctx) -> Service {
    let key = wharf_api::ecs::Keys::new(ctx).service(CLUSTER, "s");
    ctx.db.get::<Service>(&key).await.unwrap().unwrap().doc
}

/// The production rule's weights, by target group name.
async fn weights(ctx: &Ctx) -> Vec<(String, u32)> {
    let rule = ctx.db.get::<Rule>(&elb::keys::rule(ACCOUNT, REGION, "2", "r1")).await.unwrap().unwrap().doc;
    let mut out: Vec<(String, u32)> = rule.actions[0]
        .forward_config
        .as_ref()
        .unwrap()
        .target_groups
        .iter()
        .map(|g| (elb::target_group_name(&g.target_group_arn).unwrap().to_string(), g.weight.unwrap_or(1)))
        .collect();
    out.sort();
    out
}

/// The agent and the data plane: new tasks run, registered targets are healthy, drained
/// stopping tasks stop.
async fn play(ctx: &Ctx, port: &mut u16) {
    for t in tasks(ctx).await {
        if t.desired_status == TaskStatus::Running && t.last_status == TaskStatus::Provisioning {
            ecs(
                ctx,
                "SubmitTaskStateChange",
                json!({"cluster": CLUSTER, "task": t.task_arn, "status": "RUNNING", "containers": [
                    {"containerName": "web", "status": "RUNNING", "runtimeId": "x",
                     "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 8080, "hostPort": *port, "protocol": "tcp"}]}]}),
            )
            .await
            .unwrap();
            *port += 1;
        }
        for r in targets::registered(&t) {
            let doc = TargetHealth { state: "healthy".into(), updated_at: wharf_types::now(), ..Default::default() };
            put(ctx, &r.health_key(&ctx.scope), &doc).await;
        }
        if t.desired_status == TaskStatus::Stopped
            && t.last_status != TaskStatus::Stopped
            && !targets::held_for_draining(&t)
        {
            ecs(ctx, "SubmitTaskStateChange", json!({"cluster": CLUSTER, "task": t.task_arn, "status": "STOPPED"}))
                .await
                .unwrap();
        }
    }
}

fn load_balancers() -> Value {
    json!([{"targetGroupArn": tg_arn("web-a"), "containerName": "web", "containerPort": 8080,
            "advancedConfiguration": {"alternateTargetGroupArn": tg_arn("web-b"), "productionListenerRule": RULE,
                                      "roleArn": "arn:aws:iam::123456789012:role/ecs"}}])
}

/// The scheduler, with AWS's minute lasting 20 ms (a 1-minute bake is 20 ms).
fn scheduler(ctx: &Ctx) -> ServiceScheduler {
    ServiceScheduler::new(ctx.db.clone()).with_minute(Duration::from_millis(20))
}

/// CreateService `s` of `count` tasks behind the two groups, deploying with `config`.
async fn create(ctx: &Ctx, count: i64, config: Value) {
    ecs(
        ctx,
        "CreateService",
        json!({"cluster": CLUSTER, "serviceName": "s", "taskDefinition": "web", "desiredCount": count,
               "loadBalancers": load_balancers(), "deploymentConfiguration": config}),
    )
    .await
    .unwrap();
}

async fn force_new_deployment(ctx: &Ctx) {
    ecs(ctx, "UpdateService", json!({"cluster": CLUSTER, "service": "s", "forceNewDeployment": true})).await.unwrap();
}

/// Activations, with the agent and data plane played between them, until `done` holds for
/// the service and the production rule's weights (at most 100).
async fn play_until(
    ctx: &Ctx,
    scheduler: &ServiceScheduler,
    port: &mut u16,
    done: impl Fn(&Service, &[(String, u32)]) -> bool,
) {
    for _ in 0..100 {
        scheduler.activate().await;
        play(ctx, port).await;
        if done(&service(ctx).await, &weights(ctx).await) {
            return;
        }
    }
}

fn in_stage(svc: &Service, stage: LifecycleStage) -> bool {
    svc.deployments[0].shift.as_ref().is_some_and(|s| s.stage == stage)
}

fn split(a: u32, b: u32) -> Vec<(String, u32)> {
    vec![("web-a".into(), a), ("web-b".into(), b)]
}

/// Activations (with the agent and data plane played between them) until the service's
/// deployment completes; checks the shift's invariants after each. Returns the stages seen
/// and green's production weights in order.
async fn drive(ctx: &Ctx, scheduler: &ServiceScheduler, port: &mut u16) -> (Vec<LifecycleStage>, Vec<u32>) {
    let (mut stages, mut green_weights) = (vec![], vec![]);
    for _ in 0..400 {
        scheduler.activate().await;
        play(ctx, port).await;
        let svc = service(ctx).await;
        let primary = svc.deployments.iter().find(|d| d.status == DeploymentStatus::Primary).unwrap().clone();
        if let Some(shift) = &primary.shift
            && primary.rollout_state == Some(RolloutState::InProgress)
        {
            if stages.last() != Some(&shift.stage) {
                assert!(stages.last().is_none_or(|s| *s < shift.stage), "stages only move forward: {stages:?}");
                stages.push(shift.stage);
            }
            let green = primary.load_balancers[0]["targetGroupArn"].as_str().unwrap();
            let green = elb::target_group_name(green).unwrap().to_string();
            let w = weights(ctx).await.into_iter().find(|(n, _)| *n == green).map_or(0, |(_, w)| w);
            if green_weights.last() != Some(&w) {
                assert!(green_weights.last().is_none_or(|l| *l < w), "green's weight only grows: {green_weights:?}");
                green_weights.push(w);
            }
            // Blue is asked to stop only in CLEAN_UP, with production all green's.
            let blue_stopping = tasks(ctx).await.iter().any(|t| {
                t.started_by.as_deref() != Some(primary.id.as_str()) && t.desired_status == TaskStatus::Stopped
            });
            if blue_stopping {
                assert_eq!((shift.stage, w), (LifecycleStage::CleanUp, 100), "blue stopped early");
            }
        }
        if svc.deployments.len() == 1 && primary.rollout_state == Some(RolloutState::Completed) {
            return (stages, green_weights);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the deployment did not complete: {:?}", service(ctx).await.deployments);
}

#[tokio::test]
async fn a_linear_deployment_walks_the_stages_moves_weights_in_steps_and_swaps_the_groups() {
    let ctx = world().await;
    // AWS's minute lasts 20 ms: a 1-minute step bake is 20 ms.
    let scheduler = scheduler(&ctx);
    let config = json!({"strategy": "LINEAR", "bakeTimeInMinutes": 1,
                        "linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 1}});
    create(&ctx, 2, config).await;
    let mut port = 32768;
    // The first deployment has no blue: one step.
    let (_, first) = drive(&ctx, &scheduler, &mut port).await;
    assert_eq!(first, vec![0, 100]);
    assert_eq!(weights(&ctx).await, split(100, 0));
    assert_eq!(service(&ctx).await.live_target_groups, vec![tg_arn("web-a")]);

    force_new_deployment(&ctx).await;
    let (stages, steps) = drive(&ctx, &scheduler, &mut port).await;
    use LifecycleStage::*;
    for s in [ScaleUp, ProductionTrafficShift, BakeTime, CleanUp] {
        assert!(stages.contains(&s), "{s} seen: {stages:?}");
    }
    assert_eq!(steps, vec![0, 50, 100]);
    // Green was web-b; production is web-b's now, and the next deployment starts in web-a.
    assert_eq!(weights(&ctx).await, split(0, 100));
    let svc = service(&ctx).await;
    assert_eq!(svc.live_target_groups, vec![tg_arn("web-b")]);
    let live: Vec<Task> = tasks(&ctx).await.into_iter().filter(|t| t.desired_status == TaskStatus::Running).collect();
    assert_eq!(live.len(), 2);
    assert!(live.iter().all(|t| targets::registered(t)[0].target_group == "web-b"));
    let described = ecs(&ctx, "DescribeServices", json!({"cluster": CLUSTER, "services": ["s"]})).await.unwrap();
    let arn = described["services"][0]["currentServiceDeployment"].clone();
    let d = ecs(&ctx, "DescribeServiceDeployments", json!({"serviceDeploymentArns": [arn]})).await.unwrap();
    let d = &d["serviceDeployments"][0];
    assert_eq!((d["status"].as_str(), d["lifecycleStage"].as_str()), (Some("SUCCESSFUL"), Some("CLEAN_UP")), "{d}");
    assert_eq!(d["targetServiceRevision"]["requestedProductionTrafficWeight"], 100.0);
}

#[tokio::test]
async fn a_service_deleted_in_the_middle_of_a_shift_stops_blue_and_green() {
    let ctx = world().await;
    let scheduler = scheduler(&ctx);
    create(&ctx, 2, json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1000})).await;
    let mut port = 32768;
    drive(&ctx, &scheduler, &mut port).await;
    force_new_deployment(&ctx).await;
    // Into the bake: four tasks run, two of each revision.
    play_until(&ctx, &scheduler, &mut port, |svc, _| in_stage(svc, LifecycleStage::BakeTime)).await;
    let running = tasks(&ctx).await.into_iter().filter(|t| t.desired_status == TaskStatus::Running).count();
    assert_eq!(running, 4);
    ecs(&ctx, "DeleteService", json!({"cluster": CLUSTER, "service": "s", "force": true})).await.unwrap();
    for _ in 0..20 {
        scheduler.activate().await;
        play(&ctx, &mut port).await;
    }
    let left: Vec<Task> = tasks(&ctx).await.into_iter().filter(|t| t.desired_status == TaskStatus::Running).collect();
    assert!(left.is_empty(), "{} tasks still asked to run", left.len());
}

#[tokio::test]
async fn a_deployment_started_mid_shift_returns_traffic_to_blue_and_replaces_the_superseded_green() {
    let ctx = world().await;
    let scheduler = scheduler(&ctx);
    let config = json!({"strategy": "LINEAR", "linearConfiguration": {"stepPercent": 50.0,
                        "stepBakeTimeInMinutes": 1000}});
    create(&ctx, 2, config).await;
    let mut port = 32768;
    drive(&ctx, &scheduler, &mut port).await;
    let blue: Vec<String> = tasks(&ctx).await.into_iter().map(|t| t.task_arn).collect();
    force_new_deployment(&ctx).await;
    // To the first step: half of production on web-b, where the long step bake holds it.
    play_until(&ctx, &scheduler, &mut port, |_, w| w == split(50, 50)).await;
    assert_eq!(weights(&ctx).await, split(50, 50));
    let superseded: Vec<String> =
        tasks(&ctx).await.into_iter().map(|t| t.task_arn).filter(|a| !blue.contains(a)).collect();
    assert_eq!(superseded.len(), 2);
    force_new_deployment(&ctx).await;
    scheduler.activate().await;
    // At once: production all blue's again; nothing stopped in the activation that moved it.
    assert_eq!(weights(&ctx).await, split(100, 0));
    assert!(tasks(&ctx).await.iter().all(|t| t.desired_status == TaskStatus::Running));
    scheduler.activate().await;
    let all = tasks(&ctx).await;
    assert!(all.iter().filter(|t| superseded.contains(&t.task_arn)).all(|t| t.desired_status == TaskStatus::Stopped));
    assert!(all.iter().filter(|t| blue.contains(&t.task_arn)).all(|t| t.desired_status == TaskStatus::Running));
    // The newest deployment goes on in web-b from zero.
    play_until(&ctx, &scheduler, &mut port, |_, w| w == split(50, 50)).await;
    assert_eq!(weights(&ctx).await, split(50, 50));
    let svc = service(&ctx).await;
    assert_eq!(svc.deployments[0].load_balancers[0]["targetGroupArn"], json!(tg_arn("web-b")));
}

#[tokio::test]
async fn back_to_rolling_registers_where_production_is_and_not_in_the_middle_of_a_shift() {
    let ctx = world().await;
    let scheduler = scheduler(&ctx);
    create(&ctx, 1, json!({"strategy": "BLUE_GREEN"})).await;
    let mut port = 32768;
    drive(&ctx, &scheduler, &mut port).await;
    force_new_deployment(&ctx).await;
    scheduler.activate().await;
    let rolling = |tg: &str| {
        json!({"cluster": CLUSTER, "service": "s", "deploymentConfiguration": {"strategy": "ROLLING"},
               "loadBalancers": [{"targetGroupArn": tg_arn(tg), "containerName": "web", "containerPort": 8080}]})
    };
    let e = ecs(&ctx, "UpdateService", rolling("web-a")).await.unwrap_err();
    assert!(e.to_string().contains("cannot change while a deployment shifts traffic"), "{e}");
    drive(&ctx, &scheduler, &mut port).await;
    // Production is on web-b now: ROLLING must register there.
    let e = ecs(&ctx, "UpdateService", rolling("web-a")).await.unwrap_err();
    assert!(e.to_string().contains("loadBalancers.targetGroupArn") || e.to_string().contains("web-b"), "{e}");
    ecs(&ctx, "UpdateService", rolling("web-b")).await.unwrap();
    let svc = service(&ctx).await;
    assert!(svc.live_target_groups.is_empty());
    assert_eq!(svc.deployment_configuration.strategy(), wharf_types::ecs::DeploymentStrategy::Rolling);
}

#[tokio::test]
async fn a_rollback_in_the_bake_gives_production_back_to_blue_and_the_next_deployment_uses_the_other_group() {
    let ctx = world().await;
    let scheduler = scheduler(&ctx);
    create(&ctx, 1, json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1000})).await;
    let mut port = 32768;
    drive(&ctx, &scheduler, &mut port).await;
    force_new_deployment(&ctx).await;
    play_until(&ctx, &scheduler, &mut port, |svc, _| in_stage(svc, LifecycleStage::BakeTime)).await;
    assert_eq!(weights(&ctx).await, split(0, 100));
    let svc = service(&ctx).await;
    let arn = wharf_core::deployments::deployment_arn(&ctx, &svc, &svc.deployments[0].id);
    ecs(&ctx, "StopServiceDeployment", json!({"serviceDeploymentArn": arn, "stopType": "ROLLBACK"})).await.unwrap();
    scheduler.activate().await;
    assert_eq!(weights(&ctx).await, split(100, 0));
    assert_eq!(service(&ctx).await.live_target_groups, vec![tg_arn("web-a")]);
    drive(&ctx, &scheduler, &mut port).await;
    // The next deployment's green goes to web-b, not into the group production is on.
    force_new_deployment(&ctx).await;
    let svc = service(&ctx).await;
    assert_eq!(svc.deployments[0].load_balancers[0]["targetGroupArn"], json!(tg_arn("web-b")));
}

#[tokio::test]
async fn the_load_balancers_of_a_shifting_service_keep_the_group_production_is_on() {
    let ctx = world().await;
    let scheduler = scheduler(&ctx);
    create(&ctx, 1, json!({"strategy": "BLUE_GREEN"})).await;
    let mut port = 32768;
    drive(&ctx, &scheduler, &mut port).await;
    // Production is on web-a: a pair without it is refused, the same pair swapped is fine.
    let mut swapped = load_balancers();
    swapped[0]["targetGroupArn"] = json!(tg_arn("web-b"));
    swapped[0]["advancedConfiguration"]["alternateTargetGroupArn"] = json!(tg_arn("web-a"));
    ecs(&ctx, "UpdateService", json!({"cluster": CLUSTER, "service": "s", "loadBalancers": swapped})).await.unwrap();
    let web_c = TargetGroup {
        target_group_arn: tg_arn("web-c"),
        target_group_name: "web-c".into(),
        protocol: "HTTP".into(),
        port: Some(80),
        target_type: "instance".into(),
        ..Default::default()
    };
    put(&ctx, &elb::keys::target_group(ACCOUNT, REGION, "web-c"), &web_c).await;
    let mut elsewhere = load_balancers();
    elsewhere[0]["targetGroupArn"] = json!(tg_arn("web-b"));
    elsewhere[0]["advancedConfiguration"]["alternateTargetGroupArn"] = json!(tg_arn("web-c"));
    let e = ecs(&ctx, "UpdateService", json!({"cluster": CLUSTER, "service": "s", "loadBalancers": elsewhere}))
        .await
        .unwrap_err();
    // Refused (the production rule still forwards to web-a, and production is on it).
    assert!(e.to_string().contains("web-a"), "{e}");
    assert_eq!(service(&ctx).await.load_balancers[0]["targetGroupArn"], json!(tg_arn("web-b")));
}

#[tokio::test]
async fn a_deployment_replacing_an_unfinished_first_one_keeps_its_tasks_as_blue() {
    let ctx = world().await;
    let scheduler = scheduler(&ctx);
    create(&ctx, 2, json!({"strategy": "BLUE_GREEN"})).await;
    // The first deployment's tasks run, registered in web-a, not yet healthy.
    scheduler.activate().await;
    for (port, t) in (32768..).zip(tasks(&ctx).await) {
        ecs(
            &ctx,
            "SubmitTaskStateChange",
            json!({"cluster": CLUSTER, "task": t.task_arn, "status": "RUNNING", "containers": [
                {"containerName": "web", "status": "RUNNING", "runtimeId": "x",
                 "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 8080, "hostPort": port, "protocol": "tcp"}]}]}),
        )
        .await
        .unwrap();
    }
    scheduler.activate().await;
    let first = service(&ctx).await.deployments[0].clone();
    assert_eq!(first.running_count, 2);
    force_new_deployment(&ctx).await;
    let svc = service(&ctx).await;
    assert_eq!(svc.deployments[0].shift.as_ref().unwrap().blue.as_deref(), Some(first.id.as_str()));
    assert_eq!(svc.deployments[0].load_balancers[0]["targetGroupArn"], json!(tg_arn("web-b")));
    for _ in 0..5 {
        scheduler.activate().await;
    }
    // Its tasks keep serving (production is routed to them) until the new one's CLEAN_UP.
    let kept = tasks(&ctx).await.into_iter().filter(|t| t.started_by.as_deref() == Some(first.id.as_str()));
    assert!(kept.into_iter().all(|t| t.desired_status == TaskStatus::Running));
    assert_eq!(weights(&ctx).await, split(100, 0));
}

/// Task scale-in protection keeps a blue task past CLEAN_UP (ECS: "the Blue stack with
/// protected tasks will not be removed"): the deployment waits, saying why, until it ends.
#[tokio::test]
async fn clean_up_waits_for_a_protected_blue_task() {
    let ctx = world().await;
    let scheduler = scheduler(&ctx);
    create(&ctx, 2, json!({"strategy": "BLUE_GREEN"})).await;
    let mut port = 32768;
    drive(&ctx, &scheduler, &mut port).await;
    let blue = tasks(&ctx).await.into_iter().find(|t| t.desired_status == TaskStatus::Running).unwrap();
    let blue_deployment = blue.started_by.clone().unwrap();
    let protect = |enabled: bool| json!({"cluster": CLUSTER, "tasks": [blue.task_arn], "protectionEnabled": enabled});
    ecs(&ctx, "UpdateTaskProtection", protect(true)).await.unwrap();
    force_new_deployment(&ctx).await;
    play_until(&ctx, &scheduler, &mut port, |svc, _| in_stage(svc, LifecycleStage::CleanUp)).await;
    // Blue stops a settle after CLEAN_UP began: the other blue task goes, this one stays.
    let live = || async { tasks(&ctx).await.into_iter().filter(|t| t.desired_status == TaskStatus::Running) };
    for _ in 0..300 {
        scheduler.activate().await;
        play(&ctx, &mut port).await;
        if live().await.count() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..5 {
        scheduler.activate().await;
        play(&ctx, &mut port).await;
    }
    let live: Vec<Task> = live().await.collect();
    assert_eq!(live.len(), 3, "green's two and the protected blue task");
    assert!(live.iter().any(|t| t.task_arn == blue.task_arn));
    let svc = service(&ctx).await;
    assert_eq!(svc.deployments.len(), 2);
    assert_eq!(svc.deployments[0].rollout_state, Some(RolloutState::InProgress));
    let held = format!(
        "(service s) was unable to reach steady state because (taskSet {blue_deployment}) was unable to scale in due to (reason 1 tasks under protection)"
    );
    assert!(svc.events.iter().any(|e| e.message == held), "{:?}", svc.events);

    ecs(&ctx, "UpdateTaskProtection", protect(false)).await.unwrap();
    drive(&ctx, &scheduler, &mut port).await;
    assert!(tasks(&ctx).await.iter().all(|t| t.task_arn != blue.task_arn || t.desired_status == TaskStatus::Stopped));
}
