//! Deployments: one constructor for a service's deployment, and its history — every
//! deployment leaves a service revision (what was deployed) and a service deployment record
//! (how it went), written in the same transaction as the service change that causes them.

use crate::Scoped;
use crate::db::encode;
use crate::keys::Keys;
use serde_json::{Map, Value, json};
use wharf_store::{Compare, Op, Txn};
use wharf_types::Result;
use wharf_types::ecs::{
    Deployment, DeploymentControllerType, DeploymentStatus, LifecycleStage, RolloutState, Service, ShiftPlan,
    StageMark, TrafficShift,
};

/// A new deployment id: `ecs-svc/` and 19 digits, as ECS prints them.
fn deployment_id() -> String {
    let digits: String = (0..19).map(|_| char::from(b'0' + rand::random_range(0..10u8))).collect();
    format!("ecs-svc/{digits}")
}

/// The load balancers a deployment's tasks register with.
pub fn deployment_load_balancers(d: &Deployment) -> Vec<Value> {
    d.load_balancers.clone()
}

/// Starts a new PRIMARY deployment of task definition `td` for `svc`: the deployment that
/// was PRIMARY becomes ACTIVE (its tasks drain as the new ones come up), the new one leads
/// `deployments[]`, and its history — the service revision and the deployment record, with
/// any IN_PROGRESS record superseded or, for a rollback of `rollback_of`, marked
/// ROLLBACK_IN_PROGRESS — is appended to `txn`, which the caller commits with the service.
/// The one way a deployment comes to be: CreateService, UpdateService, StopServiceDeployment,
/// the circuit breaker's rollback and (through [`start_codedeploy`]) CodeDeploy all go
/// through it.
pub async fn start(
    s: &Scoped,
    svc: &mut Service,
    td: &str,
    now: f64,
    rollback_of: Option<&str>,
    txn: &mut Txn,
) -> Result<()> {
    let shift = shifts_traffic(svc).then(|| (svc.load_balancers.clone(), None));
    begin(s, svc, td, now, rollback_of, shift, txn).await.map(|_| ())
}

/// Starts the green deployment (task set) of CodeDeploy deployment `plan` names for a
/// CODE_DEPLOY service: `load_balancers` are the service's with the deployment group's target
/// group pair and listeners as `advancedConfiguration`. Returns the new deployment's id.
pub async fn start_codedeploy(
    s: &Scoped,
    svc: &mut Service,
    td: &str,
    now: f64,
    load_balancers: Vec<Value>,
    plan: ShiftPlan,
    txn: &mut Txn,
) -> Result<String> {
    begin(s, svc, td, now, None, Some((load_balancers, Some(plan))), txn).await
}

/// [`start`], shifting traffic when `shift` gives the load balancers (and the plan, when the
/// service's configuration does not decide the steps).
async fn begin(
    s: &Scoped,
    svc: &mut Service,
    td: &str,
    now: f64,
    rollback_of: Option<&str>,
    shift: Option<(Vec<Value>, Option<ShiftPlan>)>,
    txn: &mut Txn,
) -> Result<String> {
    let mut dep = new_deployment(svc, td, now);
    if let Some((load_balancers, plan)) = shift {
        // Blue: what serves production now — the PRIMARY deployment once it completed, else
        // the one it was replacing, else (it replaced nothing: a service's first deployment,
        // still in progress) the PRIMARY itself while it has tasks.
        let blue = svc.deployments.iter().find(|d| d.status == DeploymentStatus::Primary).and_then(|p| {
            if p.rollout_state == Some(RolloutState::Completed) {
                return Some(p.id.clone());
            }
            p.shift.as_ref().and_then(|s| s.blue.clone()).or_else(|| (p.running_count > 0).then(|| p.id.clone()))
        });
        dep.load_balancers = green_load_balancers(svc, &load_balancers);
        dep.shift = Some(TrafficShift {
            stage: LifecycleStage::ReconcileService,
            stage_started_at: now,
            blue,
            production_weight: 0.0,
            test_weight: 0.0,
            steps_done: 0,
            step_at: now,
            hooks: vec![],
            rollback: None,
            stages: vec![StageMark { stage: LifecycleStage::ReconcileService, at: now }],
            plan,
        });
    }
    for d in svc.deployments.iter_mut().filter(|d| d.status == DeploymentStatus::Primary) {
        d.status = DeploymentStatus::Active;
        d.updated_at = now;
    }
    record(s, svc, &dep, rollback_of, txn).await?;
    svc.task_definition = Some(td.to_string());
    let id = dep.id.clone();
    svc.deployments.insert(0, dep);
    Ok(id)
}

/// Whether `svc` deploys by shifting traffic (BLUE_GREEN, LINEAR, CANARY with the ECS
/// deployment controller).
pub fn shifts_traffic(svc: &Service) -> bool {
    svc.deployment_configuration.shifts_traffic()
        && svc.deployment_controller.is_none_or(|c| c.kind == DeploymentControllerType::Ecs)
}

/// Whether CodeDeploy deploys `svc` (the CODE_DEPLOY deployment controller): its
/// deployments are task sets, the first started by CreateService, the others by CodeDeploy
/// deployments that shift traffic.
pub fn by_codedeploy(svc: &Service) -> bool {
    svc.deployment_controller.is_some_and(|c| c.kind == DeploymentControllerType::CodeDeploy)
}

/// The service's `loadBalancers` as a new deployment of a service that shifts traffic
/// registers: in each entry's target group that does not serve production. What serves
/// production is what the last shift moved it to, else (the first deployment after ROLLING)
/// the group the running PRIMARY deployment registered in.
fn green_load_balancers(svc: &Service, load_balancers: &[Value]) -> Vec<Value> {
    let running = svc.deployments.iter().find(|d| d.status == DeploymentStatus::Primary && d.running_count > 0);
    load_balancers
        .iter()
        .enumerate()
        .map(|(i, lb)| {
            let mut lb = lb.clone();
            let live = svc
                .live_target_groups
                .get(i)
                .cloned()
                .or_else(|| running?.load_balancers.get(i)?.get("targetGroupArn")?.as_str().map(str::to_string));
            // The pair swaps: green's group first, blue's as the alternate.
            if let Some(live) = live
                && let Some(green) = crate::traffic::other_group(&lb, &live).map(str::to_string)
                && lb["advancedConfiguration"].is_object()
            {
                lb["targetGroupArn"] = Value::String(green);
                lb["advancedConfiguration"]["alternateTargetGroupArn"] = Value::String(live);
            }
            lb
        })
        .collect()
}

/// Whether a third party deploys `svc` through task sets (the EXTERNAL deployment controller).
pub fn by_external(svc: &Service) -> bool {
    svc.deployment_controller.is_some_and(|c| c.kind == DeploymentControllerType::External)
}

/// A new task set of `td` for EXTERNAL service `service`: ACTIVE, no rollout of its own, kept
/// at `state`'s scale by the scheduler. The caller sets its launch settings and load balancers.
pub fn new_task_set(service: &Service, td: &str, now: f64, state: wharf_types::ecs::TaskSetState) -> Deployment {
    let mut d = new_deployment(service, td, now);
    d.status = DeploymentStatus::Active;
    d.rollout_state = None;
    d.rollout_state_reason = None;
    d.load_balancers = vec![];
    d.desired_count = state.computed(service.desired_count);
    d.task_set = Some(state);
    d
}

/// A new PRIMARY deployment of `td` for `service` (also the scheduler's rollback).
fn new_deployment(service: &Service, td: &str, now: f64) -> Deployment {
    let id = deployment_id();
    Deployment {
        rollout_state_reason: Some(format!("ECS deployment {id} in progress.")),
        id,
        status: DeploymentStatus::Primary,
        task_definition: td.to_string(),
        desired_count: service.desired_count,
        pending_count: 0,
        running_count: 0,
        failed_tasks: 0,
        created_at: now,
        updated_at: now,
        launch_type: service.launch_type,
        capacity_provider_strategy: service.capacity_provider_strategy.clone(),
        platform_version: service.platform_version.clone(),
        network_configuration: service.network_configuration.clone(),
        rollout_state: Some(RolloutState::InProgress),
        load_balancers: service.load_balancers.clone(),
        shift: None,
        task_set: None,
        extra: Map::new(),
    }
}

fn digits(deployment_id: &str) -> &str {
    deployment_id.rsplit('/').next().unwrap_or(deployment_id)
}

fn cluster_of(svc: &Service) -> &str {
    svc.cluster_arn.rsplit('/').next().unwrap_or_default()
}

pub fn deployment_arn(s: &Scoped, svc: &Service, deployment_id: &str) -> String {
    s.scope.arn("ecs", format!("service-deployment/{}/{}/{}", cluster_of(svc), svc.service_name, digits(deployment_id)))
}

pub fn revision_arn(s: &Scoped, svc: &Service, deployment_id: &str) -> String {
    s.scope.arn("ecs", format!("service-revision/{}/{}/{}", cluster_of(svc), svc.service_name, digits(deployment_id)))
}

fn revision_summary(arn: String, d: &Deployment) -> Value {
    json!({"arn": arn, "requestedTaskCount": d.desired_count, "runningTaskCount": d.running_count, "pendingTaskCount": d.pending_count})
}

/// Ops recording new deployment `dep` of `svc`: its revision, its deployment (IN_PROGRESS),
/// and any deployment still IN_PROGRESS marked STOPPED (or ROLLBACK_IN_PROGRESS when `dep`
/// rolls it back). Appended to `txn`, guarded by the records' revisions.
pub async fn record(
    s: &Scoped,
    svc: &Service,
    dep: &Deployment,
    rollback_of: Option<&str>,
    txn: &mut Txn,
) -> Result<()> {
    let keys = Keys::new(s);
    let cluster = cluster_of(svc);
    let now = dep.created_at;
    let mut revision = json!({
        "serviceRevisionArn": revision_arn(s, svc, &dep.id),
        "serviceArn": svc.service_arn,
        "clusterArn": svc.cluster_arn,
        "taskDefinition": dep.task_definition,
        "capacityProviderStrategy": dep.capacity_provider_strategy,
        "launchType": dep.launch_type,
        "platformVersion": dep.platform_version,
        "loadBalancers": svc.load_balancers,
        "serviceRegistries": svc.service_registries,
        "networkConfiguration": dep.network_configuration,
        "createdAt": now,
    });
    if dep.shift.is_some() {
        let resolved: Vec<Value> = dep
            .load_balancers
            .iter()
            .map(|lb| {
                json!({
                    "targetGroupArn": lb.get("targetGroupArn"),
                    "productionListenerRule": crate::traffic::production_rule(lb),
                })
            })
            .collect();
        revision["resolvedConfiguration"] = json!({ "loadBalancers": resolved });
    }
    txn.ops.push(Op::put(keys.service_revision(cluster, &svc.service_name, digits(&dep.id)), encode(&revision)?));
    // What was running when this deployment started: the service's current deployments.
    let sources: Vec<Value> = svc
        .deployments
        .iter()
        .filter(|d| d.id != dep.id)
        .map(|d| revision_summary(revision_arn(s, svc, &d.id), d))
        .collect();
    for old in s.db.list::<Value>(&keys.service_deployments(cluster, &svc.service_name)).await? {
        let mut doc = old.doc.clone();
        if doc.get("status").and_then(Value::as_str) != Some("IN_PROGRESS") {
            continue;
        }
        let rolled_back = rollback_of.is_some_and(|r| {
            doc.get("serviceDeploymentArn").and_then(Value::as_str) == Some(&deployment_arn(s, svc, r))
        });
        doc["status"] = json!(if rolled_back { "ROLLBACK_IN_PROGRESS" } else { "STOPPED" });
        doc["statusReason"] = json!(if rolled_back {
            format!("Rolling back to {}", dep.task_definition)
        } else {
            format!("Superseded by deployment {}", dep.id)
        });
        doc["updatedAt"] = json!(now);
        if !rolled_back {
            doc["stoppedAt"] = json!(now);
        }
        txn.compares.push(Compare::ModRevision(old.key.clone(), old.rev));
        txn.ops.push(Op::put(&old.key, encode(&doc)?));
    }
    let breaker = svc.deployment_configuration.deployment_circuit_breaker.as_ref();
    let threshold = ((svc.desired_count + 1) / 2).clamp(3, 200);
    let mut record = json!({
        "serviceDeploymentArn": deployment_arn(s, svc, &dep.id),
        "serviceArn": svc.service_arn,
        "clusterArn": svc.cluster_arn,
        "createdAt": now,
        "startedAt": now,
        "updatedAt": now,
        "sourceServiceRevisions": sources,
        "targetServiceRevision": revision_summary(revision_arn(s, svc, &dep.id), dep),
        "status": "IN_PROGRESS",
        "deploymentConfiguration": svc.deployment_configuration,
        "deploymentCircuitBreaker": {
            "status": if breaker.is_some_and(|b| b.enable) { "MONITORING" } else { "DISABLED" },
            "failureCount": 0,
            "threshold": threshold,
        },
    });
    if let Some(failed) = rollback_of {
        record["rollback"] = json!({
            "reason": format!("Circuit breaker or request rolled back deployment {failed}"),
            "startedAt": now,
            "serviceRevisionArn": revision_arn(s, svc, &dep.id),
        });
    }
    let key = keys.service_deployment(cluster, &svc.service_name, digits(&dep.id));
    txn.compares.push(Compare::ModRevision(key.clone(), 0));
    txn.ops.push(Op::put(key, encode(&record)?));
    Ok(())
}

/// Adds where a traffic-shifting deployment is to its record: `lifecycleStage`, the hooks,
/// and the production and test traffic weights its revisions were given.
pub fn describe_shift(record: &mut Value, shift: &TrafficShift) {
    record["lifecycleStage"] = json!(shift.stage);
    if !shift.hooks.is_empty() {
        record["lifecycleHookDetails"] = shift
            .hooks
            .iter()
            .map(|h| {
                json!({
                    "hookId": h.hook_id,
                    "status": h.status,
                    "targetType": h.target_type,
                    "targetArn": h.target_arn,
                    "expiresAt": h.expires_at,
                    "timeoutAction": h.timeout_action,
                })
            })
            .collect();
    }
    if let Some(t) = record.get_mut("targetServiceRevision").and_then(Value::as_object_mut) {
        t.insert("requestedProductionTrafficWeight".into(), json!(shift.production_weight));
        t.insert("requestedTestTrafficWeight".into(), json!(shift.test_weight));
    }
    if let Some(sources) = record.get_mut("sourceServiceRevisions").and_then(Value::as_array_mut) {
        for src in sources {
            src["requestedProductionTrafficWeight"] = json!(100.0 - shift.production_weight);
            src["requestedTestTrafficWeight"] = json!(100.0 - shift.test_weight);
        }
    }
}

/// Ops finishing deployment `id` of `svc` with `status` (SUCCESSFUL, STOPPED,
/// ROLLBACK_SUCCESSFUL, …), appended to `txn`. A deployment the rollback `id` finished is
/// marked ROLLBACK_SUCCESSFUL too.
pub async fn finish(
    s: &Scoped,
    svc: &Service,
    dep: &Deployment,
    status: &str,
    reason: &str,
    txn: &mut Txn,
) -> Result<()> {
    let keys = Keys::new(s);
    let now = wharf_types::now();
    let key = keys.service_deployment(cluster_of(svc), &svc.service_name, digits(&dep.id));
    let Some(current) = s.db.get::<Value>(&key).await? else { return Ok(()) };
    let mut doc = current.doc.clone();
    doc["status"] = json!(status);
    doc["statusReason"] = json!(reason);
    doc["updatedAt"] = json!(now);
    doc[if status == "SUCCESSFUL" { "finishedAt" } else { "stoppedAt" }] = json!(now);
    doc["deploymentCircuitBreaker"]["failureCount"] = json!(dep.failed_tasks);
    doc["targetServiceRevision"] = revision_summary(revision_arn(s, svc, &dep.id), dep);
    if let Some(shift) = &dep.shift {
        describe_shift(&mut doc, shift);
    }
    txn.compares.push(Compare::ModRevision(key.clone(), current.rev));
    txn.ops.push(Op::put(&key, encode(&doc)?));
    if let Some(id) = dep.shift.as_ref().and_then(|s| s.codedeploy()) {
        crate::codedeploy::finish(s, id, dep, status, reason, txn).await?;
    }
    if status == "SUCCESSFUL" && doc.get("rollback").is_some() {
        for old in s.db.list::<Value>(&keys.service_deployments(cluster_of(svc), &svc.service_name)).await? {
            if old.doc.get("status").and_then(Value::as_str) == Some("ROLLBACK_IN_PROGRESS") {
                let mut o = old.doc.clone();
                o["status"] = json!("ROLLBACK_SUCCESSFUL");
                o["updatedAt"] = json!(now);
                o["finishedAt"] = json!(now);
                txn.compares.push(Compare::ModRevision(old.key.clone(), old.rev));
                txn.ops.push(Op::put(&old.key, encode(&o)?));
            }
        }
    }
    Ok(())
}

/// Sets a service's desired count where the scheduler reads it: the service, its primary
/// deployment (unless `new_deployment` just started one, which took it already), and each
/// task set by its scale.
pub fn apply_desired_count(doc: &mut Service, desired: i64, now: f64, new_deployment: bool) {
    doc.desired_count = desired;
    if !new_deployment && let Some(primary) = doc.deployments.iter_mut().find(|d| d.status == DeploymentStatus::Primary)
    {
        primary.desired_count = desired;
        primary.updated_at = now;
    }
    for d in &mut doc.deployments {
        if let Some(ts) = &d.task_set {
            d.desired_count = ts.computed(desired);
        }
    }
}

/// Changes the desired count of service `name` in `cluster` to what `to` makes of the current
/// one (`None`: leave it): Application Auto Scaling's way in. Returns (before, after), or
/// `None` when the service is gone or not ACTIVE, or `to` declined.
pub async fn scale(
    s: &Scoped,
    cluster: &str,
    name: &str,
    to: impl Fn(i64) -> Option<i64>,
) -> Result<Option<(i64, i64)>> {
    let key = Keys::new(s).service(cluster, name);
    s.db.update(|| async {
        let Some(v) = s.db.get::<Service>(&key).await? else { return Ok((None, None)) };
        if v.doc.status != wharf_types::ecs::ServiceStatus::Active {
            return Ok((None, None));
        }
        let before = v.doc.desired_count;
        let Some(after) = to(before).filter(|a| *a != before && *a >= 0) else { return Ok((None, None)) };
        let mut doc = v.doc.clone();
        apply_desired_count(&mut doc, after, wharf_types::now(), false);
        Ok((Some(crate::db::cas_put(&key, v.rev, &doc)?), Some((before, after))))
    })
    .await
}
