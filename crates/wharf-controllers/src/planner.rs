//! The rolling-update planner: given a service's tasks, which to stop and how many new ones
//! to start, within ECS's bounds. Pure, so it is property-tested: whatever the tasks' health,
//! its actions never take healthy tasks below `ceil(desired × minimumHealthyPercent / 100)`,
//! never start tasks beyond `floor(desired × maximumPercent / 100)`, and never stop a task
//! under scale-in protection unless it fails its health checks (protection only holds off
//! scale-in and deployments).

/// One live task of the service, as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskView {
    /// Belongs to the PRIMARY deployment.
    pub primary: bool,
    /// RUNNING and passing its health checks (after the grace period).
    pub healthy: bool,
    /// RUNNING but failing its health checks after the grace period: always replaced.
    pub unhealthy: bool,
    /// Under scale-in protection: neither scale-in nor a deployment stops it.
    pub protected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indexes of tasks to stop.
    pub stop: Vec<usize>,
    /// New PRIMARY tasks to start.
    pub start: usize,
    /// Indexes of tasks this step would stop but for their scale-in protection.
    pub held: Vec<usize>,
}

/// `ceil(desired × min / 100)`: ECS rounds minimumHealthyPercent up.
pub fn min_healthy(desired: i64, min_percent: i64) -> i64 {
    (desired * min_percent + 99) / 100
}

/// `floor(desired × max / 100)`: ECS rounds maximumPercent down.
pub fn max_total(desired: i64, max_percent: i64) -> i64 {
    desired * max_percent / 100
}

/// Plans one step. `may_start` is false when the primary deployment must not launch
/// (its circuit breaker tripped).
pub fn plan(tasks: &[TaskView], desired: i64, min_percent: i64, max_percent: i64, may_start: bool) -> Plan {
    let floor = min_healthy(desired, min_percent);
    let ceiling = max_total(desired, max_percent);
    let mut stop = vec![];
    let mut held = vec![];
    let mut healthy_left = tasks.iter().filter(|t| t.healthy).count() as i64;
    // Failing tasks are replaced whatever the bounds (or their protection) say.
    for (i, t) in tasks.iter().enumerate() {
        if t.unhealthy {
            stop.push(i);
        }
    }
    let primary_live = tasks.iter().enumerate().filter(|(i, t)| t.primary && !stop.contains(i)).count() as i64;
    // Excess primary tasks (scale-in), the least useful first: unprotected before protected,
    // not healthy before healthy. Protected ones are held, not stopped.
    let mut excess = (primary_live - desired).max(0);
    let mut by_usefulness: Vec<usize> = (0..tasks.len()).filter(|i| tasks[*i].primary && !stop.contains(i)).collect();
    by_usefulness.sort_by_key(|i| (tasks[*i].protected, tasks[*i].healthy));
    for i in by_usefulness {
        if excess == 0 {
            break;
        }
        if tasks[i].protected {
            held.push(i);
            excess -= 1;
            continue;
        }
        if tasks[i].healthy {
            if healthy_left - 1 < floor {
                continue;
            }
            healthy_left -= 1;
        }
        stop.push(i);
        excess -= 1;
    }
    // Old deployments drain: tasks that are not healthy go first (they hold no capacity
    // that counts), then healthy ones while the floor allows; protected ones stay (and keep
    // counting as healthy) until their protection ends.
    let mut old: Vec<usize> = (0..tasks.len()).filter(|i| !tasks[*i].primary && !stop.contains(i)).collect();
    old.sort_by_key(|i| tasks[*i].healthy);
    for i in old {
        if tasks[i].protected {
            held.push(i);
            continue;
        }
        if tasks[i].healthy {
            if healthy_left - 1 < floor {
                continue;
            }
            healthy_left -= 1;
        }
        stop.push(i);
    }
    let live_after = tasks.len() as i64 - stop.len() as i64;
    let primary_after = tasks.iter().enumerate().filter(|(i, t)| t.primary && !stop.contains(i)).count() as i64;
    let start = if may_start { (desired - primary_after).min(ceiling - live_after).max(0) as usize } else { 0 };
    Plan { stop, start, held }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(primary: bool, healthy: bool) -> TaskView {
        TaskView { primary, healthy, ..Default::default() }
    }

    fn protected(primary: bool) -> TaskView {
        TaskView { primary, healthy: true, protected: true, ..Default::default() }
    }

    #[test]
    fn rounding_follows_ecs() {
        assert_eq!(min_healthy(3, 50), 2);
        assert_eq!(max_total(3, 150), 4);
        assert_eq!(min_healthy(10, 100), 10);
        assert_eq!(max_total(10, 200), 20);
    }

    #[test]
    fn a_100_200_rollout_of_four_surges_then_drains() {
        let old = vec![t(false, true); 4];
        assert_eq!(plan(&old, 4, 100, 200, true), Plan { stop: vec![], start: 4, held: vec![] });
        let mut mixed = old.clone();
        mixed.extend(vec![t(true, false); 4]);
        assert_eq!(plan(&mixed, 4, 100, 200, true), Plan { stop: vec![], start: 0, held: vec![] });
        mixed[4] = t(true, true);
        mixed[5] = t(true, true);
        let p = plan(&mixed, 4, 100, 200, true);
        assert_eq!(p.stop.len(), 2);
        assert!(p.stop.iter().all(|i| !mixed[*i].primary));
    }

    #[test]
    fn a_50_100_rollout_stops_first() {
        let old = vec![t(false, true); 4];
        let p = plan(&old, 4, 50, 100, true);
        assert_eq!(p.stop.len(), 2);
        assert_eq!(p.start, 2);
    }

    #[test]
    fn a_tripped_breaker_starts_nothing() {
        assert_eq!(plan(&[], 3, 100, 200, false).start, 0);
    }

    #[test]
    fn scale_in_stops_unprotected_tasks_and_holds_protected_ones() {
        // Three tasks, two protected, desiredCount lowered to 1: the unprotected one goes and
        // the service stays at two, above its desired count.
        let tasks = [protected(true), t(true, true), protected(true)];
        assert_eq!(plan(&tasks, 1, 100, 200, true), Plan { stop: vec![1], start: 0, held: vec![0] });
        // The unprotected one is gone: the two protected ones are held, nothing starts.
        let left = [protected(true), protected(true)];
        assert_eq!(plan(&left, 1, 100, 200, true), Plan { stop: vec![], start: 0, held: vec![0] });
        // Protection off on one: it goes.
        let left = [protected(true), t(true, true)];
        assert_eq!(plan(&left, 1, 100, 200, true), Plan { stop: vec![1], start: 0, held: vec![] });
    }

    #[test]
    fn a_rollout_keeps_protected_old_tasks_until_their_protection_ends() {
        let mut tasks = vec![protected(false), t(false, true), protected(false)];
        tasks.extend([t(true, true); 3]);
        let p = plan(&tasks, 3, 100, 200, true);
        assert_eq!((p.stop, p.start, p.held), (vec![1], 0, vec![0, 2]));
        // maximumPercent caps the new tasks while protected old ones hold their places.
        let old = [protected(false), protected(false), t(false, true)];
        assert_eq!(plan(&old, 3, 100, 150, true).start, 1);
    }

    #[test]
    fn protection_does_not_keep_a_failing_task() {
        let sick = TaskView { primary: true, unhealthy: true, protected: true, ..Default::default() };
        let p = plan(&[sick], 1, 100, 200, true);
        assert_eq!((p.stop, p.start, p.held), (vec![0], 1, vec![]));
    }

    proptest! {
        #[test]
        fn never_below_min_healthy_nor_above_max(
            tasks in prop::collection::vec(
                (any::<bool>(), any::<bool>(), prop::bool::weighted(0.1), prop::bool::weighted(0.3)),
                0..24,
            ),
            desired in 0i64..12,
            min in 0i64..=100,
            max in 100i64..=300,
        ) {
            let tasks: Vec<TaskView> = tasks.into_iter().map(|(primary, healthy, unhealthy, protected)| TaskView {
                primary, healthy: healthy && !unhealthy, unhealthy, protected,
            }).collect();
            let p = plan(&tasks, desired, min, max, true);
            let healthy_before = tasks.iter().filter(|t| t.healthy).count() as i64;
            let healthy_after = healthy_before - p.stop.iter().filter(|i| tasks[**i].healthy).count() as i64;
            prop_assert!(healthy_after >= healthy_before.min(min_healthy(desired, min)));
            let live_after = tasks.len() as i64 - p.stop.len() as i64 + p.start as i64;
            prop_assert!(p.start == 0 || live_after <= max_total(desired, max));
            let mut unique = p.stop.clone();
            unique.sort_unstable();
            unique.dedup();
            prop_assert_eq!(unique.len(), p.stop.len());
            // Protection holds off scale-in and deployments, not health-check replacement.
            prop_assert!(p.stop.iter().all(|i| !tasks[*i].protected || tasks[*i].unhealthy));
            prop_assert!(p.held.iter().all(|i| tasks[*i].protected && !p.stop.contains(i)));
            // Every protected task of an older deployment is held: the rollout waits for it.
            let old_protected =
                tasks.iter().filter(|t| !t.primary && t.protected && !t.unhealthy).count();
            prop_assert_eq!(p.held.iter().filter(|i| !tasks[**i].primary).count(), old_protected);
        }

        #[test]
        fn a_rollout_converges_once_protection_ends(
            desired in 1i64..8, min in 0i64..=100, extra in 0i64..=100, protected in 0usize..8,
        ) {
            // Old tasks under protection stay while it lasts (the rollout makes whatever
            // progress the bounds allow around them); once it ends the rollout finishes.
            let max = 100 + extra;
            prop_assume!(min_healthy(desired, min) < desired || max_total(desired, max) > desired);
            let mut tasks = vec![t(false, true); desired as usize];
            for task in tasks.iter_mut().take(protected) {
                task.protected = true;
            }
            let step = |tasks: &[TaskView]| {
                let p = plan(tasks, desired, min, max, true);
                prop_assert!(p.stop.iter().all(|i| !tasks[*i].protected));
                let mut next: Vec<TaskView> =
                    tasks.iter().enumerate().filter(|(i, _)| !p.stop.contains(i)).map(|(_, t)| *t).collect();
                next.extend(std::iter::repeat_n(t(true, true), p.start));
                Ok(next)
            };
            for _ in 0..50 {
                tasks = step(&tasks)?;
            }
            let kept = protected.min(desired as usize);
            prop_assert_eq!(tasks.iter().filter(|t| !t.primary).count(), kept);
            for task in &mut tasks {
                task.protected = false;
            }
            for _ in 0..50 {
                tasks = step(&tasks)?;
            }
            prop_assert!(tasks.iter().all(|t| t.primary));
            prop_assert_eq!(tasks.len() as i64, desired);
        }

        #[test]
        fn a_rollout_converges(desired in 1i64..8, min in 0i64..=100, extra in 0i64..=100) {
            // Tasks become healthy as soon as they start: the rollout must finish whenever the
            // bounds leave room to move (ECS is stuck too when they do not).
            let max = 100 + extra;
            prop_assume!(min_healthy(desired, min) < desired || max_total(desired, max) > desired);
            let mut tasks = vec![t(false, true); desired as usize];
            for _ in 0..50 {
                let p = plan(&tasks, desired, min, max, true);
                let mut next: Vec<TaskView> =
                    tasks.iter().enumerate().filter(|(i, _)| !p.stop.contains(i)).map(|(_, t)| *t).collect();
                next.extend(std::iter::repeat_n(t(true, true), p.start));
                if next == tasks {
                    break;
                }
                tasks = next;
            }
            prop_assert!(tasks.iter().all(|t| t.primary));
            prop_assert_eq!(tasks.len() as i64, desired);
        }
    }
}
