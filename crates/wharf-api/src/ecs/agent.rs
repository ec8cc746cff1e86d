//! What agents tell the control plane: `SubmitTaskStateChange` and
//! `SubmitContainerStateChange` (ECS's agent operations), plus Wharf's health and usage
//! reports. A task only moves forward through its lifecycle ([`TaskStatus::lifecycle_rank`]);
//! late or repeated reports are absorbed. Reported statuses arrive as strings (the model does not
//! enumerate them) and are parsed here.

use super::{Keys, active_cluster, input, split_ref};
use crate::Ctx;
use crate::db::encode;
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::capacity::release;
use wharf_core::tasks::demand_of;
use wharf_store::{Compare, Op, Txn};
use wharf_types::agent::{TaskReport, UsageReport};
use wharf_types::ecs::{ContainerInstance, HealthStatus, NetworkBinding, Task, TaskStatus};
use wharf_types::{Error, Result};

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct ContainerChange {
    container_name: Option<String>,
    image_digest: Option<String>,
    runtime_id: Option<String>,
    exit_code: Option<i64>,
    network_bindings: Option<Vec<NetworkBinding>>,
    reason: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct TaskChange {
    cluster: Option<String>,
    task: Option<String>,
    status: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    containers: Vec<ContainerChange>,
    pull_started_at: Option<Value>,
    pull_stopped_at: Option<Value>,
    execution_stopped_at: Option<Value>,
    // SubmitContainerStateChange's members.
    container_name: Option<String>,
    runtime_id: Option<String>,
    exit_code: Option<i64>,
    network_bindings: Option<Vec<NetworkBinding>>,
}

fn timestamp(v: &Option<Value>) -> Option<f64> {
    v.as_ref().and_then(Value::as_f64)
}

/// The stop code ECS would give a task the agent stopped for `reason`.
fn stop_code(reason: &str, reached_running: bool) -> &'static str {
    if reason.starts_with("Essential container") {
        "EssentialContainerExited"
    } else if !reached_running || reason.starts_with("Cannot") || reason.starts_with("Dependency") {
        "TaskFailedToStart"
    } else {
        "EssentialContainerExited"
    }
}

fn apply_container(task: &mut Task, c: &ContainerChange) {
    let Some(name) = &c.container_name else { return };
    let Some(container) = task.containers.iter_mut().find(|x| &x.name == name) else { return };
    // A status that is not a task status is ignored; DELETED, unranked, always applies.
    if let Some(new) = c.status.as_deref().and_then(|s| s.parse::<TaskStatus>().ok())
        && new.lifecycle_rank().zip(container.last_status.lifecycle_rank()).is_none_or(|(new, old)| new >= old)
    {
        container.last_status = new;
    }
    if c.runtime_id.is_some() {
        container.runtime_id.clone_from(&c.runtime_id);
    }
    if c.image_digest.is_some() {
        container.image_digest.clone_from(&c.image_digest);
    }
    if c.exit_code.is_some() {
        container.exit_code = c.exit_code;
    }
    if let Some(b) = &c.network_bindings
        && !b.is_empty()
    {
        container.network_bindings.clone_from(b);
    }
    if c.reason.is_some() {
        container.reason.clone_from(&c.reason);
    }
}

/// Applies a task state report; returns the transaction (task, and the instance whose
/// resources a STOPPED task gives back) or `None` when there is nothing to change.
async fn apply(ctx: &Ctx, change: &TaskChange) -> Result<Option<Txn>> {
    let cluster = active_cluster(ctx, change.cluster.as_deref()).await?;
    let task_ref = change.task.as_deref().ok_or_else(|| Error::invalid("task", "task is required."))?;
    let (arn_cluster, id) = split_ref(ctx, task_ref, "task", "task")?;
    let cname = arn_cluster.unwrap_or_else(|| cluster.doc.cluster_name.clone());
    let keys = Keys::new(ctx);
    let key = keys.task(&cname, id);
    let Some(t) = ctx.db.get::<Task>(&key).await? else {
        return Err(Error::invalid("task", "The referenced task was not found."));
    };
    let mut task = t.doc.clone();
    if task.last_status == TaskStatus::Stopped {
        return Ok(None);
    }
    let now = wharf_types::now();
    for c in &change.containers {
        apply_container(&mut task, c);
    }
    if change.container_name.is_some() {
        apply_container(
            &mut task,
            &ContainerChange {
                container_name: change.container_name.clone(),
                image_digest: None,
                runtime_id: change.runtime_id.clone(),
                exit_code: change.exit_code,
                network_bindings: change.network_bindings.clone(),
                reason: change.reason.clone(),
                status: change.status.clone(),
            },
        );
    }
    if let Some(t) = timestamp(&change.pull_started_at) {
        task.pull_started_at.get_or_insert(t);
    }
    if let Some(t) = timestamp(&change.pull_stopped_at) {
        task.pull_stopped_at.get_or_insert(t);
    }
    let mut txn = Txn { compares: vec![Compare::ModRevision(key.clone(), t.rev)], ops: vec![] };
    let status = change.status.as_deref().filter(|_| change.container_name.is_none());
    if let Some(reported) = status {
        let unknown = || Error::invalid("status", format!("Unknown task status '{reported}'."));
        let status = reported.parse::<TaskStatus>().map_err(|_| unknown())?;
        let new = status.lifecycle_rank().ok_or_else(unknown)?;
        let old = task.last_status.lifecycle_rank().unwrap_or(0);
        if new > old {
            let reached_running = task.last_status.has_reached(TaskStatus::Running);
            task.last_status = status;
            if status == TaskStatus::Running {
                task.started_at.get_or_insert(now);
                task.extra.insert("connectivity".into(), json!("CONNECTED"));
                task.extra.insert("connectivityAt".into(), json!(now));
            }
            if status.has_reached(TaskStatus::Deactivating) {
                task.desired_status = TaskStatus::Stopped;
                task.stopping_at.get_or_insert(now);
                if task.stopped_reason.is_none() {
                    task.stopped_reason = change.reason.clone();
                }
                if task.stop_code.is_none() {
                    let reason = change.reason.as_deref().unwrap_or_default();
                    task.stop_code = Some(stop_code(reason, reached_running).into());
                }
            }
            if status == TaskStatus::Stopped {
                task.stopped_at = Some(now);
                task.extra
                    .insert("executionStoppedAt".into(), json!(timestamp(&change.execution_stopped_at).unwrap_or(now)));
                for c in &mut task.containers {
                    c.last_status = TaskStatus::Stopped;
                }
                if let Some(inst_arn) = &task.container_instance_arn {
                    let ikey = keys.instance(&cname, inst_arn.rsplit('/').next().unwrap_or_default());
                    if let Some(mut inst) = ctx.db.get::<ContainerInstance>(&ikey).await? {
                        let demand = demand_of(ctx, &task).await?;
                        release(&mut inst.doc, &demand);
                        txn.compares.push(Compare::ModRevision(ikey.clone(), inst.rev));
                        txn.ops.push(Op::put(&ikey, encode(&inst.doc)?));
                    }
                }
            }
        }
    }
    if task == t.doc {
        return Ok(None);
    }
    task.version += 1;
    txn.ops.push(Op::put(&key, encode(&task)?));
    Ok(Some(txn))
}

async fn submit(ctx: &Ctx, v: Value) -> Result<Value> {
    let change: TaskChange = input(v)?;
    ctx.db.update(|| async { Ok((apply(ctx, &change).await?, ())) }).await?;
    Ok(json!({ "acknowledgment": "ACK" }))
}

pub async fn submit_task_state_change(ctx: &Ctx, v: Value) -> Result<Value> {
    submit(ctx, v).await
}

pub async fn submit_container_state_change(ctx: &Ctx, v: Value) -> Result<Value> {
    submit(ctx, v).await
}

/// A task report from an agent: container health (the task is UNHEALTHY if any checked
/// container is, HEALTHY when every checked one is) and an awsvpc task's network, shown as
/// ECS shows it: an ElasticNetworkInterface attachment and each container's interface.
pub async fn report_task(ctx: &Ctx, report: &TaskReport) -> Result<()> {
    let cluster = active_cluster(ctx, Some(&report.cluster)).await?;
    let (arn_cluster, id) = split_ref(ctx, &report.task, "task", "task")?;
    let key = Keys::new(ctx).task(&arn_cluster.unwrap_or(cluster.doc.cluster_name), id);
    ctx.db
        .update(|| async {
            let Some(t) = ctx.db.get::<Task>(&key).await? else {
                return Err(Error::invalid("task", "The referenced task was not found."));
            };
            let mut task = t.doc.clone();
            for h in &report.containers {
                if let Some(c) = task.containers.iter_mut().find(|c| c.name == h.container_name) {
                    c.health_status = Some(h.health_status);
                }
            }
            if let Some(net) = &report.network {
                let attachment_id = task
                    .attachments
                    .first()
                    .and_then(|a| a.get("id"))
                    .and_then(Value::as_str)
                    .map_or_else(wharf_types::uuid, str::to_string);
                let eni = format!("eni-{}", &wharf_types::hex_id(17));
                task.attachments = vec![json!({
                    "id": attachment_id,
                    "type": "ElasticNetworkInterface",
                    "status": "ATTACHED",
                    "details": [
                        {"name": "subnetId", "value": "subnet-wharf"},
                        {"name": "networkInterfaceId", "value": eni},
                        {"name": "macAddress", "value": net.mac_address},
                        {"name": "privateDnsName", "value": format!("ip-{}.ec2.internal", net.private_ipv4_address.replace('.', "-"))},
                        {"name": "privateIPv4Address", "value": net.private_ipv4_address},
                    ],
                })];
                for c in &mut task.containers {
                    c.network_interfaces =
                        vec![json!({"attachmentId": attachment_id, "privateIpv4Address": net.private_ipv4_address})];
                }
            }
            let checked: Vec<HealthStatus> = report.containers.iter().map(|h| h.health_status).collect();
            if !checked.is_empty() {
                let health = if checked.contains(&HealthStatus::Unhealthy) {
                    HealthStatus::Unhealthy
                } else if checked.iter().all(|s| *s == HealthStatus::Healthy) {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Unknown
                };
                task.health_status = Some(health);
            }
            if task == t.doc {
                return Ok((None, ()));
            }
            task.version += 1;
            Ok((Some(crate::db::cas_put(&key, t.rev, &task)?), ()))
        })
        .await
}

/// A usage report from an agent: what its RUNNING tasks used over one sampling window,
/// published as the `AWS/ECS` utilization metrics (see [`wharf_core::metrics::ecs`]). Returns
/// how many datapoints it made.
pub async fn report_usage(ctx: &Ctx, report: &UsageReport) -> Result<usize> {
    wharf_core::metrics::ecs::record(ctx, ctx.metrics(), report, wharf_core::logs::now_ms()).await
}
