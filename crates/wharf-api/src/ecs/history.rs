//! Service deployment history: every deployment of a service leaves a service revision (what
//! was deployed) and a service deployment (how it went), readable with
//! ListServiceDeployments, DescribeServiceDeployments and DescribeServiceRevisions; a running
//! one can be rolled back with StopServiceDeployment. Records are written in the same
//! transaction as the service change that causes them.

use super::{Keys, active_cluster, input, output};
use crate::Ctx;
use crate::db::encode;
use crate::paging::max_results;
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::db::Versioned;
use wharf_core::deployments::{self, deployment_arn, finish};
use wharf_store::Op;
use wharf_types::ecs::{DeploymentStatus, Failure, HookAction, HookStatus, LifecycleStage, RolloutState, Service};
use wharf_types::{Arn, Error, Result};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    service: String,
    cluster: Option<String>,
    #[serde(default)]
    status: Vec<String>,
    created_at: Option<Value>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListRequest = input(v)?;
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let (_, name) = super::split_ref(ctx, &req.service, "service", "service")?;
    if ctx.db.get::<Service>(&Keys::new(ctx).service(&cluster.doc.cluster_name, name)).await?.is_none() {
        return Err(Error::service_not_found());
    }
    let limit = max_results(req.max_results, 20, 100)?;
    let bound = |k: &str| req.created_at.as_ref().and_then(|c| c.get(k)).and_then(Value::as_f64);
    let (before, after) = (bound("before"), bound("after"));
    let prefix = Keys::new(ctx).service_deployments(&cluster.doc.cluster_name, name);
    // Newest first: deployment ids grow with time only by chance, so sort by creation.
    let mut all: Vec<Value> = ctx.db.list::<Value>(&prefix).await?.into_iter().map(|v| v.doc).collect();
    all.sort_by(|a, b| {
        b["createdAt"].as_f64().partial_cmp(&a["createdAt"].as_f64()).unwrap_or(std::cmp::Ordering::Equal)
    });
    let matching: Vec<Value> = all
        .into_iter()
        .filter(|d| req.status.is_empty() || req.status.iter().any(|s| d["status"].as_str() == Some(s)))
        .filter(|d| before.is_none_or(|b| d["createdAt"].as_f64().unwrap_or(0.0) < b))
        .filter(|d| after.is_none_or(|a| d["createdAt"].as_f64().unwrap_or(0.0) > a))
        .collect();
    let start = match &req.next_token {
        Some(t) => {
            t.parse::<usize>().map_err(|_| Error::invalid("nextToken", "The specified nextToken is not valid."))?
        }
        None => 0,
    };
    let page: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(limit)
        .map(|d| {
            json!({
                "serviceDeploymentArn": d["serviceDeploymentArn"], "serviceArn": d["serviceArn"], "clusterArn": d["clusterArn"],
                "startedAt": d["startedAt"], "createdAt": d["createdAt"], "finishedAt": d.get("finishedAt"),
                "targetServiceRevisionArn": d["targetServiceRevision"]["arn"], "status": d["status"], "statusReason": d.get("statusReason"),
            })
        })
        .collect();
    let mut out = json!({ "serviceDeployments": page });
    if start + limit < matching.len() {
        out["nextToken"] = json!((start + limit).to_string());
    }
    Ok(out)
}

/// The store key of a service deployment or revision ARN in this scope.
fn key_of(ctx: &Ctx, arn: &str, kind: &str, field: &str) -> Result<Option<String>> {
    let parsed = Arn::parse_in(arn, &ctx.scope, "ecs", field)?;
    let (k, rest) = parsed.resource_parts();
    if k != kind {
        return Err(Error::invalid(field, format!("The ARN '{arn}' in {field} is not a {kind} ARN.")));
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let [cluster, service, id] = parts.as_slice() else { return Ok(None) };
    let keys = Keys::new(ctx);
    Ok(Some(if kind == "service-deployment" {
        keys.service_deployment(cluster, service, id)
    } else {
        keys.service_revision(cluster, service, id)
    }))
}

async fn describe_records(ctx: &Ctx, arns: &[String], kind: &str, field: &str, out_field: &str) -> Result<Value> {
    if arns.is_empty() || arns.len() > 20 {
        return Err(Error::invalid(field, format!("Specify between 1 and 20 {field}.")));
    }
    let (mut found, mut failures) = (vec![], vec![]);
    for arn in arns {
        match key_of(ctx, arn, kind, field)? {
            Some(key) => match ctx.db.get::<Value>(&key).await? {
                Some(d) if kind == "service-deployment" => found.push(with_live_shift(ctx, d.doc).await?),
                Some(d) => found.push(d.doc),
                None => failures.push(Failure::missing(arn.clone())),
            },
            None => failures.push(Failure::missing(arn.clone())),
        }
    }
    output(json!({ out_field: found, "failures": failures }))
}

/// The service of deployment record `record`, and the deployment's id in it.
async fn service_of(ctx: &Ctx, record: &Value) -> Result<Option<(Versioned<Service>, String)>> {
    let service_arn = record["serviceArn"].as_str().unwrap_or_default();
    let (cluster, name) = super::split_ref(ctx, service_arn, "service", "serviceDeploymentArn")?;
    let key = Keys::new(ctx).service(&cluster.unwrap_or_default(), name);
    let Some(svc) = ctx.db.get::<Service>(&key).await? else { return Ok(None) };
    let digits = record["serviceDeploymentArn"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default();
    let id = format!("ecs-svc/{digits}");
    Ok(Some((svc, id)))
}

/// A deployment record as it stands: an IN_PROGRESS deployment that shifts traffic shows its
/// live stage, hooks and weights (kept on the service, where the scheduler moves them).
async fn with_live_shift(ctx: &Ctx, mut record: Value) -> Result<Value> {
    if record["status"].as_str() != Some("IN_PROGRESS") {
        return Ok(record);
    }
    if let Some((svc, id)) = service_of(ctx, &record).await?
        && let Some(shift) = svc.doc.deployments.iter().find(|d| d.id == id).and_then(|d| d.shift.as_ref())
    {
        deployments::describe_shift(&mut record, shift);
    }
    Ok(record)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContinueRequest {
    service_deployment_arn: String,
    hook_id: String,
    action: Option<HookAction>,
}

fn deployment_not_found() -> Error {
    Error::NotFound {
        resource: wharf_types::Resource::ServiceDeployment,
        message: "The service deployment was not found.".into(),
    }
}

/// ContinueServiceDeployment: answers a PAUSE hook that awaits action (CONTINUE, the
/// default, or ROLLBACK); the scheduler acts on it in its next activation.
pub async fn continue_deployment(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ContinueRequest = input(v)?;
    let key = key_of(ctx, &req.service_deployment_arn, "service-deployment", "serviceDeploymentArn")?
        .ok_or_else(deployment_not_found)?;
    let record = ctx.db.get::<Value>(&key).await?.ok_or_else(deployment_not_found)?;
    let action = req.action.unwrap_or(HookAction::Continue);
    ctx.db
        .update(|| async {
            let Some((s, id)) = service_of(ctx, &record.doc).await? else { return Err(deployment_not_found()) };
            let mut svc = s.doc.clone();
            let hook = svc
                .deployments
                .iter_mut()
                .find(|d| d.id == id && d.rollout_state == Some(RolloutState::InProgress))
                .and_then(|d| d.shift.as_mut())
                .and_then(|sh| sh.hooks.iter_mut().find(|h| h.hook_id == req.hook_id));
            let Some(hook) = hook else {
                return Err(Error::invalid(
                    "hookId",
                    format!("The deployment has no lifecycle hook {} in progress.", req.hook_id),
                ));
            };
            if hook.status != HookStatus::AwaitingAction {
                return Err(Error::invalid(
                    "hookId",
                    format!("The lifecycle hook {} is {}.", req.hook_id, hook.status),
                ));
            }
            hook.decision = Some(action);
            Ok((Some(crate::db::cas_put(&s.key, s.rev, &svc)?), ()))
        })
        .await?;
    output(json!({ "serviceDeploymentArn": req.service_deployment_arn }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    #[serde(default)]
    service_deployment_arns: Vec<String>,
    #[serde(default)]
    service_revision_arns: Vec<String>,
}

pub async fn describe_deployments(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    describe_records(
        ctx,
        &req.service_deployment_arns,
        "service-deployment",
        "serviceDeploymentArns",
        "serviceDeployments",
    )
    .await
}

pub async fn describe_revisions(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    describe_records(ctx, &req.service_revision_arns, "service-revision", "serviceRevisionArns", "serviceRevisions")
        .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopRequest {
    service_deployment_arn: String,
    stop_type: Option<String>,
}

/// StopServiceDeployment: an IN_PROGRESS deployment is rolled back to the service's last
/// completed revision (ROLLBACK, the default) or abandoned (ABORT).
pub async fn stop(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: StopRequest = input(v)?;
    let Some(key) = key_of(ctx, &req.service_deployment_arn, "service-deployment", "serviceDeploymentArn")? else {
        return Err(Error::NotFound {
            resource: wharf_types::Resource::ServiceDeployment,
            message: "The service deployment was not found.".into(),
        });
    };
    let Some(current) = ctx.db.get::<Value>(&key).await? else {
        return Err(Error::NotFound {
            resource: wharf_types::Resource::ServiceDeployment,
            message: "The service deployment was not found.".into(),
        });
    };
    if current.doc["status"].as_str() != Some("IN_PROGRESS") {
        let status = current.doc["status"].as_str().unwrap_or("finished");
        return Err(Error::Conflict(format!("The service deployment is {status} and cannot be stopped.")));
    }
    let service_arn = current.doc["serviceArn"].as_str().unwrap_or_default().to_string();
    let (cluster, name) = super::split_ref(ctx, &service_arn, "service", "serviceDeploymentArn")?;
    let skey = Keys::new(ctx).service(&cluster.unwrap_or_default(), name);
    let abort = req.stop_type.as_deref() == Some("ABORT");
    ctx.db
        .update(|| async {
            let Some(s) = ctx.db.get::<Service>(&skey).await? else { return Err(Error::service_not_found()) };
            let mut svc = s.doc.clone();
            let Some(primary) = svc.deployments.iter().find(|d| d.status == DeploymentStatus::Primary).cloned() else {
                return Err(Error::Conflict("The service has no deployment in progress.".into()));
            };
            if deployment_arn(ctx, &svc, &primary.id) != req.service_deployment_arn {
                return Err(Error::Conflict("Only the service's current deployment can be stopped.".into()));
            }
            let mut txn = crate::db::cas_put(&skey, s.rev, &svc)?;
            txn.ops.clear();
            // A deployment that shifts traffic rolls back to blue, which still runs: the
            // scheduler returns the rules to it at its next activation.
            if !abort
                && let Some(shift) =
                    svc.deployments.iter_mut().find(|d| d.id == primary.id).and_then(|d| d.shift.as_mut())
            {
                if shift.stage == LifecycleStage::CleanUp {
                    return Err(Error::Conflict(
                        "The deployment is in CLEAN_UP: blue is stopping and cannot take traffic back.".into(),
                    ));
                }
                shift.rollback = Some("StopServiceDeployment asked for a rollback".into());
                txn.ops.push(Op::put(&skey, encode(&svc)?));
                return Ok((Some(txn), ()));
            }
            let target = svc.last_completed_task_definition.clone();
            match (abort, target) {
                (false, Some(td)) => {
                    let now = wharf_types::now();
                    for d in svc.deployments.iter_mut().filter(|d| d.status == DeploymentStatus::Primary) {
                        d.rollout_state = Some(RolloutState::Failed);
                        d.rollout_state_reason = Some("Stopped by StopServiceDeployment (rollback).".into());
                    }
                    deployments::start(ctx, &mut svc, &td, now, Some(&primary.id), &mut txn).await?;
                }
                (false, None) => {
                    return Err(Error::Conflict("The service has no completed deployment to roll back to.".into()));
                }
                (true, _) => {
                    for d in svc.deployments.iter_mut().filter(|d| d.status == DeploymentStatus::Primary) {
                        d.rollout_state = Some(RolloutState::Failed);
                        d.rollout_state_reason = Some("Stopped by StopServiceDeployment (abort).".into());
                    }
                    finish(ctx, &svc, &primary, "STOPPED", "Stopped by StopServiceDeployment.", &mut txn).await?;
                }
            }
            txn.ops.push(Op::put(&skey, encode(&svc)?));
            Ok((Some(txn), ()))
        })
        .await?;
    output(json!({ "serviceDeploymentArn": req.service_deployment_arn }))
}
