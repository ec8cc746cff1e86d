//! A service task as a load balancer target: which targets it is registered as, what they
//! report, and deregistration before stopping (ECS's order: the task goes DEACTIVATING, its
//! targets drain for the target group's deregistration delay, then the task is stopped).
//!
//! The targets a task holds are recorded on the task itself (a private field, never on the
//! wire), written in the same transaction as the target keys, so the scheduler and StopTask
//! always agree on what to deregister. The store layout is `wharf_types::elb`'s.

use crate::Scoped;
use crate::db::encode;
use wharf_store::{Compare, Op, Txn};
use wharf_types::Result;
use wharf_types::ecs::{Task, TaskStatus};
use wharf_types::elb::{self, Target, TargetGroup, TargetHealth};

pub use wharf_types::elb::TargetRef;

/// The targets `task` is registered as.
pub fn registered(task: &Task) -> Vec<TargetRef> {
    task.targets.clone()
}

pub fn drain_until(task: &Task) -> Option<f64> {
    task.drain_until
}

/// True while a task asked to stop still waits for its targets to drain: the agent keeps
/// running it (and is not told to stop) until the delay has passed.
pub fn held_for_draining(task: &Task) -> bool {
    task.desired_status == TaskStatus::Stopped
        && task.last_status == TaskStatus::Deactivating
        && !task.targets.is_empty()
}

/// The target group named in `arn`, if it exists.
pub async fn target_group(ctx: &Scoped, arn: &str) -> Result<Option<TargetGroup>> {
    let Some(name) = elb::target_group_name(arn) else { return Ok(None) };
    let key = elb::keys::target_group(&ctx.scope.account, &ctx.scope.region, name);
    Ok(ctx.db.get::<TargetGroup>(&key).await?.map(|g| g.doc).filter(|g| g.target_group_arn == arn))
}

/// What the data plane last observed for a target (`None`: nothing yet).
pub async fn health(ctx: &Scoped, target: &TargetRef) -> Result<Option<TargetHealth>> {
    Ok(ctx.db.get::<TargetHealth>(&target.health_key(&ctx.scope)).await?.map(|h| h.doc))
}

/// Starts deregistering `task`'s targets: marks each `draining_since` now (the data plane
/// sends them no new requests) and records when the longest deregistration delay of their
/// target groups ends. Adds the target writes, guarded by their revisions, to `txn`; the
/// caller writes the task.
pub async fn begin_draining(ctx: &Scoped, task: &mut Task, now: f64, txn: &mut Txn) -> Result<()> {
    let mut delay = 0u64;
    for t in registered(task) {
        if let Some(g) = target_group(ctx, &t.target_group_arn).await? {
            delay = delay.max(g.deregistration_delay_secs());
        }
        let key = t.key(&ctx.scope);
        if let Some(mut doc) = ctx.db.get::<Target>(&key).await?
            && doc.doc.draining_since.is_none()
        {
            doc.doc.draining_since = Some(now);
            txn.compares.push(Compare::ModRevision(key.clone(), doc.rev));
            txn.ops.push(Op::put(&key, encode(&doc.doc)?));
        }
    }
    task.drain_until = Some(now + delay as f64);
    Ok(())
}

/// Whether `task`'s deregistration is over: the delay passed, or the data plane already
/// removed every target.
pub async fn drained(ctx: &Scoped, task: &Task, now: f64) -> Result<bool> {
    if drain_until(task).is_some_and(|u| now >= u) {
        return Ok(true);
    }
    for t in registered(task) {
        if ctx.db.get::<Target>(&t.key(&ctx.scope)).await?.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Ends the deregistration: removes the targets that are left and forgets them on the task.
/// A target registered again meanwhile (another task given the same address and port) is
/// someone else's now and stays.
pub async fn finish_draining(ctx: &Scoped, task: &mut Task, txn: &mut Txn) -> Result<()> {
    for t in registered(task) {
        let key = t.key(&ctx.scope);
        if let Some(doc) = ctx.db.get::<Target>(&key).await?
            && doc.doc.draining_since.is_some()
        {
            txn.compares.push(Compare::ModRevision(key.clone(), doc.rev));
            txn.ops.push(Op::delete(key));
            txn.ops.push(Op::delete(t.health_key(&ctx.scope)));
        }
    }
    task.targets.clear();
    task.drain_until = None;
    Ok(())
}

/// Registers `task` as `targets` (the caller writes the task). A registration starts with no
/// health observed: what the data plane reported for an earlier target at the same key (an
/// address or port used again) is removed with it.
pub fn register(ctx: &Scoped, task: &mut Task, targets: &[TargetRef], now: f64, txn: &mut Txn) -> Result<()> {
    for r in targets {
        let target = Target {
            target_group_arn: r.target_group_arn.clone(),
            id: r.id.clone(),
            port: r.port,
            availability_zone: task.availability_zone.clone(),
            registered_at: now,
            draining_since: None,
        };
        txn.ops.push(Op::put(r.key(&ctx.scope), encode(&target)?));
        txn.ops.push(Op::delete(r.health_key(&ctx.scope)));
    }
    task.targets = targets.to_vec();
    Ok(())
}
