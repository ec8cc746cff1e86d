//! Task sets: how a service deployed by CodeDeploy shows its deployments. Each of the
//! service's deployments is a task set — the one CreateService started, and one per CodeDeploy
//! deployment (`startedBy: CODE_DEPLOY`, `externalId` the deployment's id) — and the service
//! lists them in `taskSets[]` with `deployments[]` empty, as ECS does. CodeDeploy manages them;
//! the task set API serves reads, and refuses changes as ECS does for services whose
//! deployment controller is not EXTERNAL (which Wharf does not serve).

use super::{active_cluster, output, split_ref};
use crate::{Ctx, input};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::deployments::by_codedeploy;
use wharf_core::keys::Keys;
use wharf_types::ecs::{Deployment, DeploymentStatus, Failure, Service};
use wharf_types::{Error, Result};

/// ECS's words for task set changes on a service another controller deploys.
const EXTERNAL_ONLY: &str =
    "Amazon ECS only supports task set management on services configured to use external deployment controllers.";

fn task_set_arn(ctx: &Ctx, svc: &Service, d: &Deployment) -> String {
    let cluster = svc.cluster_arn.rsplit('/').next().unwrap_or_default();
    ctx.scope.arn("ecs", format!("task-set/{cluster}/{}/{}", svc.service_name, d.id))
}

/// The task set deployment `d` of `svc` is.
pub fn task_set(ctx: &Ctx, svc: &Service, d: &Deployment) -> Value {
    let codedeploy = d.shift.as_ref().and_then(|s| s.codedeploy());
    let load_balancers: Vec<Value> = d
        .load_balancers
        .iter()
        .map(|lb| {
            let mut lb = lb.clone();
            if let Some(o) = lb.as_object_mut() {
                o.remove("advancedConfiguration");
            }
            lb
        })
        .collect();
    let steady = d.running_count == d.desired_count && d.pending_count == 0;
    let mut ts = json!({
        "id": d.id,
        "taskSetArn": task_set_arn(ctx, svc, d),
        "serviceArn": svc.service_arn,
        "clusterArn": svc.cluster_arn,
        "status": d.status,
        "taskDefinition": d.task_definition,
        "computedDesiredCount": d.desired_count,
        "pendingCount": d.pending_count,
        "runningCount": d.running_count,
        "createdAt": d.created_at,
        "updatedAt": d.updated_at,
        "launchType": d.launch_type,
        "capacityProviderStrategy": d.capacity_provider_strategy,
        "platformVersion": d.platform_version,
        "networkConfiguration": d.network_configuration,
        "loadBalancers": load_balancers,
        "serviceRegistries": svc.service_registries,
        "scale": {"value": 100.0, "unit": "PERCENT"},
        "stabilityStatus": if steady { "STEADY_STATE" } else { "STABILIZING" },
        "stabilityStatusAt": d.updated_at,
    });
    if let Some(id) = codedeploy {
        ts["startedBy"] = json!("CODE_DEPLOY");
        ts["externalId"] = json!(id);
    }
    if let Some(o) = ts.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    ts
}

/// A CODE_DEPLOY service as ECS shows it: its deployments as `taskSets[]`, `deployments[]`
/// empty.
pub fn show_task_sets(ctx: &Ctx, svc: &Service, out: &mut Value) {
    if !by_codedeploy(svc) {
        return;
    }
    let sets: Vec<Value> = svc
        .deployments
        .iter()
        .filter(|d| d.status != DeploymentStatus::Inactive)
        .map(|d| task_set(ctx, svc, d))
        .collect();
    out["taskSets"] = json!(sets);
    out["deployments"] = json!([]);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    cluster: String,
    service: String,
    #[serde(default)]
    task_sets: Vec<String>,
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    let cluster = active_cluster(ctx, Some(&req.cluster)).await?;
    let (_, name) = split_ref(ctx, &req.service, "service", "service")?;
    let svc = ctx
        .db
        .get::<Service>(&Keys::new(ctx).service(&cluster.doc.cluster_name, name))
        .await?
        .ok_or_else(Error::service_not_found)?
        .doc;
    if !by_codedeploy(&svc) {
        return Err(Error::invalid("service", EXTERNAL_ONLY));
    }
    let all: Vec<Value> = svc.deployments.iter().map(|d| task_set(ctx, &svc, d)).collect();
    if req.task_sets.is_empty() {
        return output(json!({ "taskSets": all, "failures": [] }));
    }
    let (mut sets, mut failures) = (vec![], vec![]);
    for wanted in &req.task_sets {
        let found = all.iter().find(|t| t["id"] == json!(wanted) || t["taskSetArn"] == json!(wanted));
        match found {
            Some(t) => sets.push(t.clone()),
            None => failures.push(Failure::missing(wanted.clone())),
        }
    }
    output(json!({ "taskSets": sets, "failures": failures }))
}

/// CreateTaskSet, UpdateTaskSet, DeleteTaskSet, UpdateServicePrimaryTaskSet: the service must
/// exist; its controller (ECS or CODE_DEPLOY) does not let anyone else manage its task sets.
pub async fn refuse(ctx: &Ctx, v: Value) -> Result<Value> {
    let cluster = v.get("cluster").and_then(Value::as_str).map(str::to_string);
    let service = v.get("service").and_then(Value::as_str).unwrap_or_default().to_string();
    let cluster = active_cluster(ctx, cluster.as_deref()).await?;
    let (_, name) = split_ref(ctx, &service, "service", "service")?;
    ctx.db
        .get::<Service>(&Keys::new(ctx).service(&cluster.doc.cluster_name, name))
        .await?
        .ok_or_else(Error::service_not_found)?;
    Err(Error::invalid("service", EXTERNAL_ONLY))
}
