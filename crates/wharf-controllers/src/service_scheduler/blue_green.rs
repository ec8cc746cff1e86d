//! Deployments that shift traffic (BLUE_GREEN, LINEAR, CANARY): the PRIMARY deployment
//! (green) walks ECS's lifecycle stages, one or more per activation, and what it has done
//! lives in its [`TrafficShift`] in the service document — written with the listener rules'
//! new weights in the same compare-and-swap — so a restarted server resumes it where it was.
//!
//! RECONCILE_SERVICE routes every rule to blue; SCALE_UP starts green to full size (the
//! strategy's plan) in the target groups that do not serve production and waits for every
//! green task to be healthy; TEST_TRAFFIC_SHIFT gives the test rule to green;
//! PRODUCTION_TRAFFIC_SHIFT moves the production rule's weights step by step;
//! BAKE_TIME waits with both revisions running; CLEAN_UP stops blue (the plan), and the
//! deployment completes once blue is gone. PAUSE hooks hold a stage until
//! ContinueServiceDeployment or their timeout. A rollback (asked, a hook's, green failing its
//! health checks) returns every rule to blue at once and makes blue PRIMARY again.

use super::{Activation, World};
use wharf_core::Scoped;
use wharf_core::deployments;
use wharf_core::traffic;
use wharf_types::Error;
use wharf_types::ecs::{
    DeploymentStatus, HookAction, HookRun, HookStatus, LifecycleHook, LifecycleStage, RolloutState, StageMark,
    TaskStatus, TrafficShift,
};

/// The hook point ECS runs before production traffic moves (a stage of hooks, not of
/// `lifecycleStage`).
const PRE_PRODUCTION: &str = "PRE_PRODUCTION_TRAFFIC_SHIFT";

/// The PRIMARY deployment's shift while it is in progress.
pub(super) fn in_progress(w: &World) -> Option<&TrafficShift> {
    let p = w.svc.deployments.iter().find(|d| d.id == w.primary_id)?;
    (p.rollout_state == Some(RolloutState::InProgress)).then_some(p.shift.as_ref()).flatten()
}

/// Seconds between moving traffic and stopping the tasks it moved from: the data plane
/// applies a rule within milliseconds of its write; until then the old group still gets
/// requests.
pub(super) const SETTLE_SECS: f64 = 1.0;

/// Moves the PRIMARY deployment's shift on as far as it can go in this activation. Returns
/// whether a rule's weights move in this activation's write: then no task may stop in it
/// (the rule is not applied yet).
pub(super) async fn advance(ctx: &Scoped, w: &mut World, out: &mut Activation, minute: f64) -> Result<bool, Error> {
    let Some(before) = in_progress(w).cloned() else { return Ok(false) };
    let mut shift = before.clone();
    let now = w.now;
    // Until CLEAN_UP blue still runs, so a failing green goes back to it.
    if shift.rollback.is_none() && shift.stage < LifecycleStage::CleanUp {
        shift.rollback = green_failing(w);
    }
    while shift.rollback.is_none() {
        match gate(w, &mut shift, now, minute, out) {
            Gate::Wait => break,
            Gate::Rollback(reason) => {
                shift.rollback = Some(reason);
                break;
            }
            Gate::Go => {}
        }
        let weights = (shift.production_weight, shift.test_weight);
        let done = work(w, &mut shift, now, minute);
        // One traffic move per activation, each written before anything else happens.
        if !done || weights != (shift.production_weight, shift.test_weight) {
            if done {
                advance_stage(w, &mut shift, now, out);
            }
            break;
        }
        if !advance_stage(w, &mut shift, now, out) {
            break;
        }
    }
    if let Some(reason) = shift.rollback.clone() {
        rollback(ctx, w, shift, &reason, out).await?;
        return Ok(true);
    }
    let moved = sync_rules(ctx, w, &shift, out).await?;
    if shift != before {
        set_shift(w, shift);
        out.changed = true;
    }
    Ok(moved)
}

/// When the shift of `svc`'s PRIMARY deployment next has something to do that only time
/// brings (a step's or the bake's end, blue's stop after the settle, a hook's timeout), as
/// epoch seconds.
pub(super) fn next_due(svc: &wharf_types::ecs::Service, minute: f64) -> Option<f64> {
    let p = svc.deployments.iter().find(|d| d.status == DeploymentStatus::Primary)?;
    let shift = p.shift.as_ref().filter(|_| p.rollout_state == Some(RolloutState::InProgress))?;
    let dc = &svc.deployment_configuration;
    let stage = match shift.stage {
        LifecycleStage::ProductionTrafficShift => {
            let steps = shift.steps(dc);
            shift.steps_done.checked_sub(1).and_then(|i| steps.get(i)).map(|(_, bake)| shift.step_at + bake * minute)
        }
        LifecycleStage::BakeTime => Some(shift.stage_started_at + shift.bake_minutes(dc) * minute),
        LifecycleStage::CleanUp => Some(shift.stage_started_at + SETTLE_SECS),
        _ => None,
    };
    let hooks = shift.hooks.iter().filter(|h| h.status == HookStatus::AwaitingAction).map(|h| h.expires_at);
    stage.into_iter().chain(hooks).reduce(f64::min)
}

/// Enters the stage after the current one (false after CLEAN_UP).
fn advance_stage(w: &World, shift: &mut TrafficShift, now: f64, out: &mut Activation) -> bool {
    let Some(next) = shift.stage.next() else { return false };
    shift.stage = next;
    shift.stage_started_at = now;
    shift.stages.push(StageMark { stage: next, at: now });
    out.events.push(format!(
        "(service {}) (deployment {}) entered the {} lifecycle stage.",
        w.svc.service_name, w.primary_id, shift.stage
    ));
    true
}

fn set_shift(w: &mut World, shift: TrafficShift) {
    let now = w.now;
    if let Some(p) = w.svc.deployments.iter_mut().find(|d| d.id == w.primary_id) {
        p.shift = Some(shift);
        p.updated_at = now;
    }
}

/// Does the current stage's work; true when the stage is done.
fn work(w: &mut World, shift: &mut TrafficShift, now: f64, minute: f64) -> bool {
    let dc = &w.svc.deployment_configuration;
    match shift.stage {
        LifecycleStage::ReconcileService => {
            shift.production_weight = 0.0;
            shift.test_weight = 0.0;
            true
        }
        LifecycleStage::ScaleUp => green_ready(w),
        LifecycleStage::TestTrafficShift => {
            shift.test_weight = 100.0;
            true
        }
        LifecycleStage::ProductionTrafficShift => {
            // With no blue (a service's first deployment) there is nothing to step from.
            let steps = if shift.blue.is_some() { shift.steps(dc) } else { vec![(100.0, 0.0)] };
            let bake_done = match shift.steps_done.checked_sub(1).and_then(|i| steps.get(i)) {
                Some((_, bake)) => now - shift.step_at >= bake * minute,
                None => true,
            };
            if shift.steps_done < steps.len() && bake_done {
                shift.production_weight = steps[shift.steps_done].0;
                shift.steps_done += 1;
                shift.step_at = now;
            }
            if shift.steps_done < steps.len() {
                return false;
            }
            // Production is green's now: the next deployment starts in the other groups.
            let green: Vec<String> = green_groups(w);
            w.svc.live_target_groups = green;
            true
        }
        LifecycleStage::BakeTime => {
            shift.blue.is_none() || now - shift.stage_started_at >= shift.bake_minutes(dc) * minute
        }
        // Blue stops in the plan; the deployment completes when it is gone (`account`).
        LifecycleStage::CleanUp => false,
        _ => true,
    }
}

enum Gate {
    Go,
    Wait,
    Rollback(String),
}

/// The hooks at the current stage (for PRODUCTION_TRAFFIC_SHIFT, the PRE_PRODUCTION ones
/// before the first step): started on arrival, then held until each is continued, rolled
/// back, or times out.
fn gate(w: &World, shift: &mut TrafficShift, now: f64, minute: f64, out: &mut Activation) -> Gate {
    let point = match shift.stage {
        LifecycleStage::ProductionTrafficShift if shift.steps_done == 0 => PRE_PRODUCTION,
        LifecycleStage::ProductionTrafficShift => return Gate::Go,
        s => s.as_str(),
    };
    let hooks: Vec<LifecycleHook> = shift
        .hooks_of(&w.svc.deployment_configuration)
        .iter()
        .filter(|h| h.lifecycle_stages.iter().any(|s| s == point))
        .cloned()
        .collect();
    if hooks.is_empty() {
        return Gate::Go;
    }
    if !shift.hooks.iter().any(|h| h.stage == point) {
        for hook in &hooks {
            let timeout = hook.timeout_configuration.as_ref();
            let minutes = timeout.and_then(|t| t.timeout_in_minutes).unwrap_or(1440) as f64;
            let run = HookRun {
                hook_id: wharf_types::uuid(),
                stage: point.to_string(),
                status: HookStatus::AwaitingAction,
                target_type: hook.target_type.clone().unwrap_or_else(|| "PAUSE".into()),
                target_arn: hook.hook_target_arn.clone(),
                expires_at: now + minutes * minute,
                timeout_action: timeout.and_then(|t| t.action).unwrap_or(HookAction::Rollback),
                decision: None,
            };
            out.events.push(format!(
                "(service {}) (deployment {}) lifecycle hook {} is waiting at {point}: continue or roll back with ContinueServiceDeployment.",
                w.svc.service_name, w.primary_id, run.hook_id
            ));
            shift.hooks.push(run);
        }
    }
    let mut gate = Gate::Go;
    for run in shift.hooks.iter_mut().filter(|h| h.stage == point) {
        if run.status == HookStatus::AwaitingAction {
            let (status, action) = match run.decision {
                Some(a) => (if a == HookAction::Continue { HookStatus::Succeeded } else { HookStatus::Failed }, a),
                None if now >= run.expires_at => (HookStatus::TimedOut, run.timeout_action),
                None => {
                    gate = Gate::Wait;
                    continue;
                }
            };
            run.status = status;
            if action == HookAction::Rollback {
                return Gate::Rollback(format!("lifecycle hook {} at {point} asked for a rollback", run.hook_id));
            }
        }
    }
    gate
}

/// Every green task is RUNNING and healthy, at the deployment's size.
fn green_ready(w: &World) -> bool {
    let green: Vec<_> = w.live.iter().zip(&w.views).filter(|(_, v)| v.primary).collect();
    let healthy = green.iter().filter(|(_, v)| v.healthy).count() as i64;
    healthy >= w.desired() && green.iter().all(|(t, _)| t.last_status == TaskStatus::Running)
}

/// Why green must roll back, if it must: a task failing its health checks, or as many
/// green tasks stopped on their own as the circuit breaker's threshold.
fn green_failing(w: &World) -> Option<String> {
    if w.live.iter().zip(&w.views).any(|(_, v)| v.primary && v.unhealthy) {
        return Some("tasks failed their health checks".into());
    }
    let threshold = ((w.svc.desired_count + 1) / 2).clamp(3, 200);
    let failed = w.svc.deployments.iter().find(|d| d.id == w.primary_id).map_or(0, |d| d.failed_tasks);
    (failed >= threshold).then(|| format!("{failed} tasks failed to start"))
}

/// Green's target group of each `loadBalancers` entry.
fn green_groups(w: &World) -> Vec<String> {
    let Some(p) = w.svc.deployments.iter().find(|d| d.id == w.primary_id) else { return vec![] };
    p.load_balancers
        .iter()
        .filter_map(|lb| lb.get("targetGroupArn").and_then(|v| v.as_str()).map(str::to_string))
        .collect()
}

/// Blue's target group of each `loadBalancers` entry: the other of green's pair.
fn blue_groups(w: &World) -> Vec<String> {
    let Some(p) = w.svc.deployments.iter().find(|d| d.id == w.primary_id) else { return vec![] };
    p.load_balancers
        .iter()
        .filter_map(|lb| traffic::other_group(lb, lb.get("targetGroupArn")?.as_str()?).map(str::to_string))
        .collect()
}

/// Writes the production and test rules' weights for `shift` (with the service, in one
/// transaction); a rule already weighted so is left alone. Returns whether one is written.
async fn sync_rules(ctx: &Scoped, w: &World, shift: &TrafficShift, out: &mut Activation) -> Result<bool, Error> {
    let Some(p) = w.svc.deployments.iter().find(|d| d.id == w.primary_id) else { return Ok(false) };
    let writes = out.history.ops.len();
    let mut written: Vec<String> = vec![];
    for lb in &p.load_balancers {
        let Some(green) = lb.get("targetGroupArn").and_then(|v| v.as_str()) else { continue };
        let Some(blue) = traffic::other_group(lb, green) else { continue };
        let rules =
            [(traffic::production_rule(lb), shift.production_weight), (traffic::test_rule(lb), shift.test_weight)];
        for (rule, weight) in rules {
            let Some(rule) = rule else { continue };
            if written.iter().any(|r| r == rule) {
                continue;
            }
            traffic::set_weights(ctx, rule, &traffic::weights(green, blue, weight), &mut out.history).await?;
            written.push(rule.to_string());
        }
    }
    Ok(out.history.ops.len() > writes)
}

/// Rolls green back: every rule to blue at once, blue PRIMARY again (its tasks never
/// stopped), green's tasks stopped by the plan, the deployment ROLLBACK_SUCCESSFUL.
async fn rollback(
    ctx: &Scoped,
    w: &mut World,
    mut shift: TrafficShift,
    reason: &str,
    out: &mut Activation,
) -> Result<(), Error> {
    shift.production_weight = 0.0;
    shift.test_weight = 0.0;
    shift.rollback = Some(reason.to_string());
    sync_rules(ctx, w, &shift, out).await?;
    // Production is blue's again (the shift may already have called it green's).
    let blue_groups = blue_groups(w);
    if !blue_groups.is_empty() {
        w.svc.live_target_groups = blue_groups;
    }
    let (now, green_id) = (w.now, w.primary_id.clone());
    let name = w.svc.service_name.clone();
    set_shift(w, shift);
    let blue = blue_of(w, &green_id).filter(|b| w.svc.deployments.iter().any(|d| &d.id == b));
    let message = format!("ECS deployment {green_id} rolled back: {reason}.");
    for d in &mut w.svc.deployments {
        if d.id == green_id {
            d.rollout_state = Some(RolloutState::Failed);
            d.rollout_state_reason = Some(message.clone());
            d.updated_at = now;
            if blue.is_some() {
                d.status = DeploymentStatus::Active;
            }
        } else if Some(&d.id) == blue.as_ref() {
            d.status = DeploymentStatus::Primary;
            d.updated_at = now;
        }
    }
    w.svc.deployments.sort_by_key(|d| d.status != DeploymentStatus::Primary);
    if let Some(b) = w.svc.deployments.iter().find(|d| Some(&d.id) == blue.as_ref()) {
        w.svc.task_definition = Some(b.task_definition.clone());
        w.primary_id = b.id.clone();
        w.see();
    }
    let status = if blue.is_some() { "ROLLBACK_SUCCESSFUL" } else { "STOPPED" };
    if let Some(green) = w.svc.deployments.iter().find(|d| d.id == green_id).cloned() {
        deployments::finish(ctx, &w.svc, &green, status, &message, &mut out.history).await?;
    }
    out.events.push(format!("(service {name}) (deployment {green_id}) rolled back to blue: {reason}."));
    w.svc.steady = false;
    out.changed = true;
    Ok(())
}

/// The blue deployment of green deployment `green_id`.
fn blue_of(w: &World, green_id: &str) -> Option<String> {
    w.svc.deployments.iter().find(|d| d.id == green_id)?.shift.as_ref()?.blue.clone()
}
