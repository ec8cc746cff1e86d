//! The rolling-update planner: given a service's tasks, which to stop and how many new ones
//! to start, within ECS's bounds. Pure, so it is property-tested: whatever the tasks' health,
//! its actions never take healthy tasks below `ceil(desired × minimumHealthyPercent / 100)`
//! and never start tasks beyond `floor(desired × maximumPercent / 100)`.

/// One live task of the service, as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskView {
    /// Belongs to the PRIMARY deployment.
    pub primary: bool,
    /// RUNNING and passing its health checks (after the grace period).
    pub healthy: bool,
    /// RUNNING but failing its health checks after the grace period: always replaced.
    pub unhealthy: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indexes of tasks to stop.
    pub stop: Vec<usize>,
    /// New PRIMARY tasks to start.
    pub start: usize,
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
    let mut healthy_left = tasks.iter().filter(|t| t.healthy).count() as i64;
    // Failing tasks are replaced whatever the bounds say.
    for (i, t) in tasks.iter().enumerate() {
        if t.unhealthy {
            stop.push(i);
        }
    }
    let primary_live = tasks.iter().enumerate().filter(|(i, t)| t.primary && !stop.contains(i)).count() as i64;
    // Excess primary tasks (scale-in), the least useful first: not healthy before healthy.
    let mut excess = (primary_live - desired).max(0);
    let mut by_usefulness: Vec<usize> = (0..tasks.len()).filter(|i| tasks[*i].primary && !stop.contains(i)).collect();
    by_usefulness.sort_by_key(|i| tasks[*i].healthy);
    for i in by_usefulness {
        if excess == 0 {
            break;
        }
        if tasks[i].healthy {
            if healthy_left - 1 < floor {
                break;
            }
            healthy_left -= 1;
        }
        stop.push(i);
        excess -= 1;
    }
    // Old deployments drain: tasks that are not healthy go first (they hold no capacity
    // that counts), then healthy ones while the floor allows.
    let mut old: Vec<usize> = (0..tasks.len()).filter(|i| !tasks[*i].primary && !stop.contains(i)).collect();
    old.sort_by_key(|i| tasks[*i].healthy);
    for i in old {
        if tasks[i].healthy {
            if healthy_left - 1 < floor {
                break;
            }
            healthy_left -= 1;
        }
        stop.push(i);
    }
    let live_after = tasks.len() as i64 - stop.len() as i64;
    let primary_after = tasks.iter().enumerate().filter(|(i, t)| t.primary && !stop.contains(i)).count() as i64;
    let start = if may_start { (desired - primary_after).min(ceiling - live_after).max(0) as usize } else { 0 };
    Plan { stop, start }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t(primary: bool, healthy: bool) -> TaskView {
        TaskView { primary, healthy, unhealthy: false }
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
        assert_eq!(plan(&old, 4, 100, 200, true), Plan { stop: vec![], start: 4 });
        let mut mixed = old.clone();
        mixed.extend(vec![t(true, false); 4]);
        assert_eq!(plan(&mixed, 4, 100, 200, true), Plan { stop: vec![], start: 0 });
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

    proptest! {
        #[test]
        fn never_below_min_healthy_nor_above_max(
            tasks in prop::collection::vec((any::<bool>(), any::<bool>(), prop::bool::weighted(0.1)), 0..24),
            desired in 0i64..12,
            min in 0i64..=100,
            max in 100i64..=300,
        ) {
            let tasks: Vec<TaskView> = tasks.into_iter().map(|(primary, healthy, unhealthy)| TaskView {
                primary, healthy: healthy && !unhealthy, unhealthy,
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
