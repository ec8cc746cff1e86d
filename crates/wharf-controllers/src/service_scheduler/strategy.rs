//! How a service's tasks move from its older deployments to its PRIMARY one. The scheduler
//! observes a service ([`World`]), asks its strategy what to do in this activation, does it,
//! and accounts for it: a strategy only decides. `Rolling` (REPLICA services, ECS's ROLLING
//! deployment controller), `Daemon`, `Shift` (BLUE_GREEN, LINEAR and CANARY, and every
//! CODE_DEPLOY service: traffic shifted between target groups) and `External` (task sets a
//! third party scales) are the implementations of [`Strategy`]. Whatever the strategy, a
//! task under scale-in protection is held, not stopped, unless it fails its health checks or
//! its instance drains (`Rolling` through the planner, the others through [`Plan::holding`]).

use super::{World, blue_green};
use crate::planner::{max_total, min_healthy, plan};
use std::sync::Arc;
use wharf_types::ecs::{Deployment, LifecycleStage, SchedulingStrategy, Service, ServiceStatus, Task, TaskStatus};

/// What one activation does to the service's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// ARNs of tasks to stop.
    pub stop: Vec<String>,
    pub start: Starts,
    /// ARNs of tasks the plan would stop but for their scale-in protection.
    pub held: Vec<String>,
}

impl Plan {
    /// Stops `stop` but the tasks under scale-in protection, which it holds instead.
    fn holding(w: &World, stop: Vec<String>, start: Starts) -> Plan {
        let (held, stop) = stop.into_iter().partition(|arn| w.holds(arn));
        Plan { stop, start, held }
    }
}

/// What to start: a number of PRIMARY tasks placed by strategy, one on each instance, or a
/// number for each of several deployments (task sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Starts {
    Count(usize),
    On(Vec<String>),
    Each(Vec<(String, usize)>),
}

pub(super) trait Strategy: Sync {
    /// How many PRIMARY tasks the service has once its rollout is done.
    fn target(&self, w: &World) -> i64;
    /// This activation's stops and starts.
    fn plan(&self, w: &World) -> Plan;
    /// Whether the service's `desiredCount` is [`Strategy::target`] rather than the user's.
    fn owns_desired_count(&self) -> bool {
        false
    }
    /// Whether the deployment may complete once only PRIMARY tasks run (a shift must first
    /// have reached CLEAN_UP).
    fn may_complete(&self, _w: &World) -> bool {
        true
    }
    /// How many tasks deployment `d` is to run: the target for the PRIMARY one, none for the
    /// others (they drain).
    fn desired_of(&self, w: &World, d: &Deployment) -> i64 {
        if d.id == w.primary_id { self.target(w) } else { 0 }
    }
    /// Whether deployment `d` stays listed with no task left (the PRIMARY one always does).
    fn keeps(&self, w: &World, d: &Deployment) -> bool {
        d.id == w.primary_id
    }
}

/// The strategy of `svc`.
pub(super) fn of(svc: &Service) -> &'static dyn Strategy {
    if wharf_core::deployments::by_external(svc) {
        &External
    } else if svc.scheduling_strategy == SchedulingStrategy::Daemon {
        &Daemon
    } else if wharf_core::deployments::shifts_traffic(svc) || wharf_core::deployments::by_codedeploy(svc) {
        &Shift
    } else {
        &Rolling
    }
}

/// BLUE_GREEN, LINEAR and CANARY: green starts to full size beside blue from SCALE_UP on,
/// blue keeps running until CLEAN_UP, then stops; deployments superseded meanwhile stop at
/// once. Outside a shift (completed, rolled back) the service is kept like a rolling one.
struct Shift;

impl Strategy for Shift {
    fn target(&self, w: &World) -> i64 {
        w.desired()
    }

    fn may_complete(&self, w: &World) -> bool {
        blue_green::in_progress(w).is_none_or(|s| s.stage == LifecycleStage::CleanUp)
    }

    fn plan(&self, w: &World) -> Plan {
        // Outside a shift, and for a service being deleted, tasks are kept as ROLLING keeps them.
        let shifting =
            blue_green::in_progress(w).filter(|s| s.rollback.is_none() && w.svc.status == ServiceStatus::Active);
        let Some(shift) = shifting else { return Rolling.plan(w) };
        // Blue stops in CLEAN_UP, once the rules that moved traffic off it have settled.
        let cleaning =
            shift.stage == LifecycleStage::CleanUp && w.now - shift.stage_started_at >= blue_green::SETTLE_SECS;
        let blue = shift.blue.as_deref().filter(|_| !cleaning);
        let mut stop: Vec<String> = w
            .live
            .iter()
            .filter(|t| !w.is_primary(t) && (blue.is_none() || t.started_by.as_deref() != blue))
            .map(|t| t.task_arn.clone())
            .collect();
        let scaling = shift.stage >= LifecycleStage::ScaleUp;
        let green: Vec<&Arc<Task>> = w.live.iter().filter(|t| w.is_primary(t)).collect();
        let start = if scaling { (w.desired() - green.len() as i64).max(0) as usize } else { 0 };
        // desiredCount lowered meanwhile: green tasks beyond it go.
        let excess = green.len().saturating_sub(w.desired().max(0) as usize);
        stop.extend(green.iter().take(excess).map(|t| t.task_arn.clone()));
        Plan::holding(w, stop, Starts::Count(start))
    }
}

/// EXTERNAL: a third party manages the task sets; each runs `ceil(desiredCount × scale /
/// 100)` tasks, a deleted one drains and goes, and tasks of no task set stop. Nothing rolls:
/// moving from one task set to another is the third party's scale changes.
struct External;

impl Strategy for External {
    fn target(&self, w: &World) -> i64 {
        w.desired()
    }

    fn desired_of(&self, w: &World, d: &Deployment) -> i64 {
        d.task_set.as_ref().map_or(0, |s| s.computed(w.desired()))
    }

    fn keeps(&self, _w: &World, d: &Deployment) -> bool {
        d.task_set.as_ref().is_some_and(|s| !s.draining)
    }

    fn plan(&self, w: &World) -> Plan {
        let mut stop = vec![];
        let mut each = vec![];
        for d in &w.svc.deployments {
            let want = self.desired_of(w, d).max(0) as usize;
            let mut mine: Vec<&Arc<Task>> = w.live.iter().filter(|t| t.started_by.as_deref() == Some(&d.id)).collect();
            if mine.len() > want {
                // Tasks not yet running go first.
                mine.sort_by_key(|t| t.last_status == TaskStatus::Running);
                stop.extend(mine.iter().take(mine.len() - want).map(|t| t.task_arn.clone()));
            } else if mine.len() < want {
                each.push((d.id.clone(), want - mine.len()));
            }
        }
        let known = |t: &Task| w.svc.deployments.iter().any(|d| t.started_by.as_deref() == Some(d.id.as_str()));
        stop.extend(w.live.iter().filter(|t| !known(t)).map(|t| t.task_arn.clone()));
        Plan::holding(w, stop, Starts::Each(each))
    }
}

/// ECS's rolling update: replace old tasks with new ones within minimumHealthyPercent and
/// maximumPercent (the arithmetic is `planner`'s, property-tested).
struct Rolling;

impl Strategy for Rolling {
    fn target(&self, w: &World) -> i64 {
        w.desired()
    }

    fn plan(&self, w: &World) -> Plan {
        let desired = w.desired();
        let (min, max) = w.bounds();
        let p = plan(&w.views, desired, min, max, !w.primary_failed);
        // Tasks asked to stop hold their place under maximumPercent until they have stopped.
        let stopping = w
            .all
            .iter()
            .filter(|t| t.desired_status == TaskStatus::Stopped && t.last_status != TaskStatus::Stopped)
            .count();
        let room = (max_total(desired, max) as usize).saturating_sub(w.live.len() + stopping);
        Plan {
            stop: p.stop.into_iter().map(|i| w.live[i].task_arn.clone()).collect(),
            start: Starts::Count(p.start.min(room)),
            held: p.held.into_iter().map(|i| w.live[i].task_arn.clone()).collect(),
        }
    }
}

/// DAEMON: one PRIMARY task on every ACTIVE instance; tasks on instances that are not ACTIVE
/// (draining, deregistered) and duplicates go. An older deployment's task is stopped first
/// (maximumPercent is 100) while minimumHealthyPercent allows, and the new one starts once
/// no task of the service holds the instance any more.
struct Daemon;

impl Strategy for Daemon {
    fn target(&self, w: &World) -> i64 {
        w.active_instances().count() as i64
    }

    fn owns_desired_count(&self) -> bool {
        true
    }

    fn plan(&self, w: &World) -> Plan {
        let active: Vec<&str> = w.active_instances().collect();
        let serving = w.svc.status == ServiceStatus::Active;
        let floor = min_healthy(active.len() as i64, w.bounds().0);
        let mut healthy = w.live.iter().filter(|t| t.last_status == TaskStatus::Running).count() as i64;
        let mut stop = vec![];
        let mut covered = vec![];
        // PRIMARY tasks first: they keep their instance; older ones give theirs up.
        let mut ordered: Vec<_> = w.live.iter().collect();
        ordered.sort_by_key(|t| t.started_by.as_deref() != Some(w.primary_id.as_str()));
        for t in ordered {
            let on = t.container_instance_arn.as_deref().unwrap_or_default();
            let is_primary = t.started_by.as_deref() == Some(w.primary_id.as_str());
            let running = t.last_status == TaskStatus::Running;
            let go = !serving
                || !active.contains(&on)
                || covered.contains(&on)
                || (!is_primary && (!running || healthy > floor));
            if go {
                healthy -= i64::from(running);
                stop.push(t.task_arn.clone());
            } else if is_primary {
                covered.push(on);
            }
        }
        let holding: Vec<&str> = w
            .all
            .iter()
            .filter(|t| t.last_status != TaskStatus::Stopped)
            .filter_map(|t| t.container_instance_arn.as_deref())
            .collect();
        let missing = if serving {
            active.iter().filter(|a| !holding.contains(a)).map(|a| a.to_string()).collect()
        } else {
            vec![]
        };
        Plan::holding(w, stop, Starts::On(missing))
    }
}
