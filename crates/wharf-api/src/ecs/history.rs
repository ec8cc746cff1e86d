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
use wharf_store::{Compare, Op, Txn};
use wharf_types::ecs::{Deployment, Failure, Service};
use wharf_types::{Arn, Error, Result};

fn digits(deployment_id: &str) -> &str {
    deployment_id.rsplit('/').next().unwrap_or(deployment_id)
}

fn cluster_of(svc: &Service) -> &str {
    svc.cluster_arn.rsplit('/').next().unwrap_or_default()
}

pub fn deployment_arn(ctx: &Ctx, svc: &Service, deployment_id: &str) -> String {
    ctx.scope
        .arn("ecs", format!("service-deployment/{}/{}/{}", cluster_of(svc), svc.service_name, digits(deployment_id)))
}

fn revision_arn(ctx: &Ctx, svc: &Service, deployment_id: &str) -> String {
    ctx.scope.arn("ecs", format!("service-revision/{}/{}/{}", cluster_of(svc), svc.service_name, digits(deployment_id)))
}

fn revision_summary(arn: String, d: &Deployment) -> Value {
    json!({"arn": arn, "requestedTaskCount": d.desired_count, "runningTaskCount": d.running_count, "pendingTaskCount": d.pending_count})
}

/// Ops recording new deployment `dep` of `svc`: its revision, its deployment (IN_PROGRESS),
/// and any deployment still IN_PROGRESS marked STOPPED (or ROLLBACK_IN_PROGRESS when `dep`
/// rolls it back). Appended to `txn`, guarded by the records' revisions.
pub async fn record(
    ctx: &Ctx,
    svc: &Service,
    dep: &Deployment,
    rollback_of: Option<&str>,
    txn: &mut Txn,
) -> Result<()> {
    let keys = Keys::new(ctx);
    let cluster = cluster_of(svc);
    let now = dep.created_at;
    let revision = json!({
        "serviceRevisionArn": revision_arn(ctx, svc, &dep.id),
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
    txn.ops.push(Op::put(keys.service_revision(cluster, &svc.service_name, digits(&dep.id)), encode(&revision)?));
    // What was running when this deployment started: the service's current deployments.
    let sources: Vec<Value> = svc
        .deployments
        .iter()
        .filter(|d| d.id != dep.id)
        .map(|d| revision_summary(revision_arn(ctx, svc, &d.id), d))
        .collect();
    for old in ctx.db.list::<Value>(&keys.service_deployments(cluster, &svc.service_name)).await? {
        let mut doc = old.doc.clone();
        if doc.get("status").and_then(Value::as_str) != Some("IN_PROGRESS") {
            continue;
        }
        let rolled_back = rollback_of.is_some_and(|r| {
            doc.get("serviceDeploymentArn").and_then(Value::as_str) == Some(&deployment_arn(ctx, svc, r))
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
        "serviceDeploymentArn": deployment_arn(ctx, svc, &dep.id),
        "serviceArn": svc.service_arn,
        "clusterArn": svc.cluster_arn,
        "createdAt": now,
        "startedAt": now,
        "updatedAt": now,
        "sourceServiceRevisions": sources,
        "targetServiceRevision": revision_summary(revision_arn(ctx, svc, &dep.id), dep),
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
            "serviceRevisionArn": revision_arn(ctx, svc, &dep.id),
        });
    }
    let key = keys.service_deployment(cluster, &svc.service_name, digits(&dep.id));
    txn.compares.push(Compare::ModRevision(key.clone(), 0));
    txn.ops.push(Op::put(key, encode(&record)?));
    Ok(())
}

/// Ops finishing deployment `id` of `svc` with `status` (SUCCESSFUL, STOPPED,
/// ROLLBACK_SUCCESSFUL, …), appended to `txn`. A deployment the rollback `id` finished is
/// marked ROLLBACK_SUCCESSFUL too.
pub async fn finish(
    ctx: &Ctx,
    svc: &Service,
    dep: &Deployment,
    status: &str,
    reason: &str,
    txn: &mut Txn,
) -> Result<()> {
    let keys = Keys::new(ctx);
    let now = wharf_types::now();
    let key = keys.service_deployment(cluster_of(svc), &svc.service_name, digits(&dep.id));
    let Some(current) = ctx.db.get::<Value>(&key).await? else { return Ok(()) };
    let mut doc = current.doc.clone();
    doc["status"] = json!(status);
    doc["statusReason"] = json!(reason);
    doc["updatedAt"] = json!(now);
    doc[if status == "SUCCESSFUL" { "finishedAt" } else { "stoppedAt" }] = json!(now);
    doc["deploymentCircuitBreaker"]["failureCount"] = json!(dep.failed_tasks);
    doc["targetServiceRevision"] = revision_summary(revision_arn(ctx, svc, &dep.id), dep);
    txn.compares.push(Compare::ModRevision(key.clone(), current.rev));
    txn.ops.push(Op::put(&key, encode(&doc)?));
    if status == "SUCCESSFUL" && doc.get("rollback").is_some() {
        for old in ctx.db.list::<Value>(&keys.service_deployments(cluster_of(svc), &svc.service_name)).await? {
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
                Some(d) => found.push(d.doc),
                None => failures.push(Failure::missing(arn.clone())),
            },
            None => failures.push(Failure::missing(arn.clone())),
        }
    }
    output(json!({ out_field: found, "failures": failures }))
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
            let Some(primary) = svc.deployments.iter().find(|d| d.status == "PRIMARY").cloned() else {
                return Err(Error::Conflict("The service has no deployment in progress.".into()));
            };
            if deployment_arn(ctx, &svc, &primary.id) != req.service_deployment_arn {
                return Err(Error::Conflict("Only the service's current deployment can be stopped.".into()));
            }
            let mut txn = crate::db::cas_put(&skey, s.rev, &svc)?;
            txn.ops.clear();
            let target = svc.extra.get(super::services::LAST_COMPLETED).and_then(Value::as_str).map(str::to_string);
            match (abort, target) {
                (false, Some(td)) => {
                    let now = wharf_types::now();
                    for d in svc.deployments.iter_mut().filter(|d| d.status == "PRIMARY") {
                        d.status = "ACTIVE".into();
                        d.rollout_state = Some("FAILED".into());
                        d.rollout_state_reason = Some("Stopped by StopServiceDeployment (rollback).".into());
                    }
                    let dep = super::services::new_deployment(&svc, &td, now);
                    record(ctx, &svc, &dep, Some(&primary.id), &mut txn).await?;
                    svc.task_definition = Some(td);
                    svc.deployments.insert(0, dep);
                }
                (false, None) => {
                    return Err(Error::Conflict("The service has no completed deployment to roll back to.".into()));
                }
                (true, _) => {
                    for d in svc.deployments.iter_mut().filter(|d| d.status == "PRIMARY") {
                        d.rollout_state = Some("FAILED".into());
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
