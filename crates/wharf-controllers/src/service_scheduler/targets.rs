//! A service's tasks as load balancer targets: registering RUNNING tasks with their
//! deployment's target groups, ending the drain of stopping ones, and what the target groups
//! report about each task.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use wharf_core::Scoped;
use wharf_core::db::{Versioned, encode};
use wharf_core::deployments::deployment_load_balancers;
use wharf_core::keys::Keys;
use wharf_core::targets::{self, TargetRef};
use wharf_store::{Compare, Op, Txn};
use wharf_types::Error;
use wharf_types::ecs::{ContainerInstance, Service, Task, TaskStatus};
use wharf_types::elb::TargetGroup;

/// Registers the service's RUNNING tasks with their deployment's target groups, and ends
/// the deregistration of stopping ones whose targets have drained (the agent is then
/// told to stop them). Returns whether any task changed.
pub(super) async fn sync_targets(
    ctx: &Scoped,
    svc: &Service,
    cluster: &str,
    all: &[Arc<Task>],
    instances: &[Versioned<ContainerInstance>],
) -> Result<bool, Error> {
    let now = wharf_types::now();
    let mut changed = false;
    let mut groups: HashMap<String, Option<TargetGroup>> = HashMap::new();
    for t in all {
        let held = targets::registered(t);
        let stopping = t.desired_status == TaskStatus::Stopped || t.last_status == TaskStatus::Stopped;
        let wanted = if held.is_empty() && !stopping && t.last_status == TaskStatus::Running {
            let lbs = load_balancers_of(svc, t);
            if lbs.is_empty() {
                continue;
            }
            let instance = t
                .container_instance_arn
                .as_ref()
                .and_then(|a| instances.iter().find(|i| &i.doc.container_instance_arn == a));
            let mut wanted = vec![];
            for lb in &lbs {
                let Some(arn) = lb.get("targetGroupArn").and_then(Value::as_str) else { continue };
                if !groups.contains_key(arn) {
                    groups.insert(arn.to_string(), targets::target_group(ctx, arn).await?);
                }
                let Some(Some(group)) = groups.get(arn) else { continue };
                match target_of(t, instance.map(|i| &i.doc), group, lb) {
                    Some(r) => wanted.push(r),
                    // Not reachable yet (no port bound, no address): next activation.
                    None => break,
                }
            }
            if wanted.len() < lbs.len() {
                continue;
            }
            Some(wanted)
        } else if !held.is_empty() && stopping {
            None
        } else {
            continue;
        };
        let id = t.task_arn.rsplit('/').next().unwrap_or_default();
        let key = Keys::new(ctx).task(cluster, id);
        let wrote = ctx
            .db
            .update(|| async {
                let Some(cur) = ctx.db.get::<Task>(&key).await? else { return Ok((None, false)) };
                let mut doc = cur.doc.clone();
                let mut txn = Txn { compares: vec![Compare::ModRevision(key.clone(), cur.rev)], ops: vec![] };
                match &wanted {
                    Some(list) => {
                        if !targets::registered(&doc).is_empty() || doc.desired_status == TaskStatus::Stopped {
                            return Ok((None, false));
                        }
                        targets::register(ctx, &mut doc, list, now, &mut txn)?;
                    }
                    None => {
                        if targets::registered(&doc).is_empty() {
                            return Ok((None, false));
                        }
                        if targets::drain_until(&doc).is_none() {
                            // Stopped without StopTask (it exited): deregister now.
                            targets::begin_draining(ctx, &mut doc, now, &mut txn).await?;
                        } else if targets::drained(ctx, &doc, now).await? {
                            targets::finish_draining(ctx, &mut doc, &mut txn).await?;
                        } else {
                            return Ok((None, false));
                        }
                    }
                }
                doc.version += 1;
                txn.ops.push(Op::put(&key, encode(&doc)?));
                Ok((Some(txn), true))
            })
            .await?;
        changed |= wrote;
    }
    Ok(changed)
}

/// For each live task of a deployment with load balancers: healthy in every target group
/// (and registered), or failing in one (the target group's ARN).
pub(super) async fn lb_health(
    ctx: &Scoped,
    svc: &Service,
    all: &[Arc<Task>],
) -> Result<HashMap<String, LbHealth>, Error> {
    let mut out = HashMap::new();
    for t in all.iter().filter(|t| t.desired_status != TaskStatus::Stopped && t.last_status == TaskStatus::Running) {
        let lbs = load_balancers_of(svc, t);
        if lbs.is_empty() {
            continue;
        }
        let held = targets::registered(t);
        let mut h = LbHealth { healthy: !held.is_empty(), failing: None };
        for r in &held {
            match targets::health(ctx, r).await?.map(|x| x.state) {
                Some(s) if s == "healthy" => {}
                Some(s) if s == "unhealthy" => {
                    h.healthy = false;
                    h.failing.get_or_insert_with(|| r.target_group_arn.clone());
                }
                _ => h.healthy = false,
            }
        }
        out.insert(t.task_arn.clone(), h);
    }
    Ok(out)
}

/// The `loadBalancers` of the deployment that started `t` (none for a task of no deployment).
fn load_balancers_of(svc: &Service, t: &Task) -> Vec<Value> {
    svc.deployments
        .iter()
        .find(|d| Some(&d.id) == t.started_by.as_ref())
        .map(deployment_load_balancers)
        .unwrap_or_default()
}

/// A task's standing with its load balancers.
#[derive(Debug, Clone)]
pub(super) struct LbHealth {
    /// Registered, and `healthy` in every target group.
    pub healthy: bool,
    /// The target group reporting it `unhealthy`.
    pub failing: Option<String>,
}

/// The target task `t` registers as for load balancer entry `lb` in `group`: for `ip`
/// target groups (awsvpc) the task's address and the container port; for `instance` ones the
/// instance's id and the host port bound to the container port. `None` until known.
fn target_of(t: &Task, instance: Option<&ContainerInstance>, group: &TargetGroup, lb: &Value) -> Option<TargetRef> {
    let container = lb.get("containerName").and_then(Value::as_str)?;
    let port = lb.get("containerPort").and_then(Value::as_i64)?;
    let c = t.containers.iter().find(|c| c.name == container)?;
    let (id, port) = if group.target_type == "ip" {
        let ip = c.network_interfaces.iter().find_map(|n| n.get("privateIpv4Address").and_then(Value::as_str))?;
        (ip.to_string(), port)
    } else {
        let host_port = c.network_bindings.iter().find(|b| b.container_port == Some(port))?.host_port?;
        (instance?.ec2_instance_id.clone()?, host_port)
    };
    Some(TargetRef {
        target_group_arn: group.target_group_arn.clone(),
        target_group: group.target_group_name.clone(),
        id,
        port: u16::try_from(port).ok()?,
    })
}
