//! Task sets: how a service deployed by CodeDeploy or by a third party shows its deployments.
//! Each of the service's deployments is a task set and the service lists them in `taskSets[]`
//! with `deployments[]` empty, as ECS does. A CODE_DEPLOY service's task sets are the one
//! CreateService started and one per CodeDeploy deployment (`startedBy: CODE_DEPLOY`,
//! `externalId` the deployment's id); CodeDeploy manages them, so changes are refused as ECS
//! refuses them. An EXTERNAL service's task sets are made, scaled, promoted and deleted here
//! (CreateTaskSet, UpdateTaskSet, UpdateServicePrimaryTaskSet, DeleteTaskSet); the scheduler
//! keeps each at `ceil(desiredCount × scale / 100)` tasks.

use super::services::{check_compatible, check_load_balancers, check_network};
use super::task_definitions::require;
use super::{active_cluster, output, split_ref};
use crate::db::cas_put;
use crate::{Ctx, input};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::deployments::{by_codedeploy, by_external, new_task_set};
use wharf_core::keys::Keys;
use wharf_types::ecs::{Deployment, DeploymentStatus, Failure, LaunchType, Service, ServiceStatus, TaskSetState};
use wharf_types::{Error, Resource, Result};

/// ECS's words for task set changes on a service another controller deploys.
const EXTERNAL_ONLY: &str =
    "Amazon ECS only supports task set management on services configured to use external deployment controllers.";

fn task_set_arn(ctx: &Ctx, svc: &Service, d: &Deployment) -> String {
    let cluster = svc.cluster_arn.rsplit('/').next().unwrap_or_default();
    ctx.scope.arn("ecs", format!("task-set/{cluster}/{}/{}", svc.service_name, d.id))
}

fn has_task_sets(svc: &Service) -> bool {
    by_codedeploy(svc) || by_external(svc)
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
    let draining = d.task_set.as_ref().is_some_and(|t| t.draining);
    let scale = d.task_set.as_ref().map_or(100.0, |t| t.scale);
    let mut ts = json!({
        "id": d.id,
        "taskSetArn": task_set_arn(ctx, svc, d),
        "serviceArn": svc.service_arn,
        "clusterArn": svc.cluster_arn,
        "status": if draining { json!("DRAINING") } else { json!(d.status) },
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
        "scale": {"value": scale, "unit": "PERCENT"},
        "stabilityStatus": if steady { "STEADY_STATE" } else { "STABILIZING" },
        "stabilityStatusAt": d.updated_at,
    });
    if let Some(id) = codedeploy {
        ts["startedBy"] = json!("CODE_DEPLOY");
        ts["externalId"] = json!(id);
    }
    if let Some(id) = d.task_set.as_ref().and_then(|t| t.external_id.as_ref()) {
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
    if !has_task_sets(svc) {
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

/// The service a task set request names, in any status.
async fn lookup(ctx: &Ctx, cluster: &str, service: &str) -> Result<crate::db::Versioned<Service>> {
    let cluster = active_cluster(ctx, Some(cluster)).await?;
    let (_, name) = split_ref(ctx, service, "service", "service")?;
    ctx.db
        .get::<Service>(&Keys::new(ctx).service(&cluster.doc.cluster_name, name))
        .await?
        .ok_or_else(Error::service_not_found)
}

/// The service a task set request names, ACTIVE.
async fn service(ctx: &Ctx, cluster: &str, service: &str) -> Result<crate::db::Versioned<Service>> {
    let s = lookup(ctx, cluster, service).await?;
    if s.doc.status != ServiceStatus::Active {
        return Err(Error::NotActive("Service was not ACTIVE.".into()));
    }
    Ok(s)
}

/// The index of the task set `reference` (its id or ARN) names in `svc`.
fn find(ctx: &Ctx, svc: &Service, reference: &str) -> Result<usize> {
    svc.deployments.iter().position(|d| d.id == reference || task_set_arn(ctx, svc, d) == reference).ok_or_else(|| {
        Error::not_found(Resource::TaskSet, format!("The specified task set {reference} does not exist."))
    })
}

/// Only an EXTERNAL service's task sets are anyone's to change.
fn check_external(svc: &Service) -> Result<()> {
    if by_external(svc) { Ok(()) } else { Err(Error::invalid("service", EXTERNAL_ONLY)) }
}

/// A `scale`: PERCENT, 0–100.
fn scale_of(v: Option<&Value>) -> Result<f64> {
    let Some(v) = v else { return Ok(100.0) };
    if v.get("unit").and_then(Value::as_str).is_some_and(|u| u != "PERCENT") {
        return Err(Error::invalid("scale.unit", "The scale unit must be PERCENT."));
    }
    let value = v.get("value").and_then(Value::as_f64).unwrap_or(0.0);
    if !(0.0..=100.0).contains(&value) {
        return Err(Error::invalid("scale.value", "The scale value must be between 0 and 100."));
    }
    Ok(value)
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
    let svc = lookup(ctx, &req.cluster, &req.service).await?.doc;
    if !has_task_sets(&svc) {
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    service: String,
    cluster: String,
    external_id: Option<String>,
    task_definition: String,
    network_configuration: Option<Value>,
    #[serde(default)]
    load_balancers: Vec<Value>,
    #[serde(default)]
    service_registries: Vec<Value>,
    launch_type: Option<LaunchType>,
    capacity_provider_strategy: Option<Vec<Value>>,
    platform_version: Option<String>,
    scale: Option<Value>,
}

pub async fn create(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CreateRequest = input(v)?;
    let td = require(ctx, &req.task_definition, "taskDefinition").await?.doc;
    if td.status != "ACTIVE" {
        return Err(Error::invalid("taskDefinition", "TaskDefinition is inactive"));
    }
    if !req.service_registries.is_empty() {
        return Err(Error::Unsupported("Service discovery (serviceRegistries) is not served by Wharf.".into()));
    }
    if req.launch_type.is_some() && req.capacity_provider_strategy.as_ref().is_some_and(|c| !c.is_empty()) {
        return Err(Error::invalid(
            "launchType",
            "Specifying both a launch type and capacity provider strategy is not supported.",
        ));
    }
    let scale = scale_of(req.scale.as_ref())?;
    check_network(Some(&td), req.network_configuration.as_ref())?;
    check_load_balancers(ctx, &req.load_balancers, Some(&td)).await?;
    let fargate = td.requires_compatibilities.as_ref().is_some_and(|r| r.iter().any(|c| c == "FARGATE"));
    let launch_type = match (&req.launch_type, &req.capacity_provider_strategy) {
        (Some(l), _) => Some(*l),
        (None, Some(c)) if !c.is_empty() => None,
        _ => Some(if fargate { LaunchType::Fargate } else { LaunchType::Ec2 }),
    };
    check_compatible(Some(&td), launch_type)?;
    let set = ctx
        .db
        .update(|| async {
            let s = service(ctx, &req.cluster, &req.service).await?;
            check_external(&s.doc)?;
            let mut svc = s.doc.clone();
            let state = TaskSetState { scale, external_id: req.external_id.clone(), draining: false };
            let mut d = new_task_set(&svc, &td.task_definition_arn, wharf_types::now(), state);
            d.launch_type = launch_type;
            d.capacity_provider_strategy = req.capacity_provider_strategy.clone().filter(|c| !c.is_empty());
            d.platform_version = req
                .platform_version
                .clone()
                .or_else(|| (launch_type == Some(LaunchType::Fargate)).then(|| "LATEST".into()));
            d.network_configuration = req.network_configuration.clone();
            d.load_balancers = req.load_balancers.clone();
            svc.deployments.push(d.clone());
            svc.steady = false;
            Ok((Some(cas_put(&s.key, s.rev, &svc)?), (svc, d)))
        })
        .await?;
    output(json!({ "taskSet": task_set(ctx, &set.0, &set.1) }))
}

/// Changes one task set of an EXTERNAL service in one compare-and-swap; returns it.
async fn change(
    ctx: &Ctx,
    cluster: &str,
    service_ref: &str,
    reference: &str,
    apply: impl Fn(&mut Service, usize) -> Result<()>,
) -> Result<Value> {
    let (svc, i) = ctx
        .db
        .update(|| async {
            let s = service(ctx, cluster, service_ref).await?;
            check_external(&s.doc)?;
            let mut svc = s.doc.clone();
            let i = find(ctx, &svc, reference)?;
            apply(&mut svc, i)?;
            let desired = svc.desired_count;
            let now = wharf_types::now();
            let d = &mut svc.deployments[i];
            if let Some(ts) = &d.task_set {
                d.desired_count = ts.computed(desired);
            }
            d.updated_at = now;
            svc.steady = false;
            Ok((Some(cas_put(&s.key, s.rev, &svc)?), (svc, i)))
        })
        .await?;
    output(json!({ "taskSet": task_set(ctx, &svc, &svc.deployments[i]) }))
}

fn draining(svc: &Service, i: usize) -> bool {
    svc.deployments[i].task_set.as_ref().is_some_and(|t| t.draining)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateRequest {
    cluster: String,
    service: String,
    task_set: String,
    scale: Value,
}

pub async fn update(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: UpdateRequest = input(v)?;
    let scale = scale_of(Some(&req.scale))?;
    change(ctx, &req.cluster, &req.service, &req.task_set, |svc, i| {
        if draining(svc, i) {
            return Err(Error::invalid("taskSet", "The task set is being deleted."));
        }
        if let Some(ts) = svc.deployments[i].task_set.as_mut() {
            ts.scale = scale;
        }
        Ok(())
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrimaryRequest {
    cluster: String,
    service: String,
    primary_task_set: String,
}

pub async fn update_primary(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PrimaryRequest = input(v)?;
    change(ctx, &req.cluster, &req.service, &req.primary_task_set, |svc, i| {
        if draining(svc, i) {
            return Err(Error::invalid(
                "primaryTaskSet",
                "A task set that is being deleted cannot be the primary one.",
            ));
        }
        for (j, d) in svc.deployments.iter_mut().enumerate() {
            d.status = if j == i { DeploymentStatus::Primary } else { DeploymentStatus::Active };
        }
        svc.task_definition = Some(svc.deployments[i].task_definition.clone());
        Ok(())
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRequest {
    cluster: String,
    service: String,
    task_set: String,
    #[serde(default)]
    force: bool,
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeleteRequest = input(v)?;
    change(ctx, &req.cluster, &req.service, &req.task_set, |svc, i| {
        let d = &mut svc.deployments[i];
        let scaled = d.task_set.as_ref().is_some_and(|t| t.scale > 0.0);
        if (scaled || d.status == DeploymentStatus::Primary) && !req.force {
            return Err(Error::invalid(
                "taskSet",
                "The task set cannot be deleted while it is the primary task set or its scale is above 0: scale it to 0 or use force.",
            ));
        }
        if let Some(ts) = d.task_set.as_mut() {
            ts.draining = true;
        }
        d.status = DeploymentStatus::Active;
        Ok(())
    })
    .await
}
