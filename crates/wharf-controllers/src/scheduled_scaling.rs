//! Runs Application Auto Scaling scheduled actions when they fall due: sets the scalable
//! target's minimum and maximum, then moves the service into the new bounds. Each action
//! notes when it last ran (in its document), so a due time runs once, across restarts.
//! Schedules keep wall-clock time (`--metrics-period` does not speed them up).

use crate::{Reconciler, Status};
use std::time::Duration;
use wharf_core::autoscaling::{self, Cause, ScalableTarget, ScalingKeys, ScheduledAction};
use wharf_core::db::{Versioned, cas_put};
use wharf_core::schedule::{Schedule, zone_offset_ms};
use wharf_core::{Db, Scoped};

#[derive(Debug, Clone)]
pub struct ScheduledScaling {
    db: Db,
}

impl ScheduledScaling {
    pub fn new(db: Db) -> Self {
        ScheduledScaling { db }
    }

    /// Runs `a` if it is due; returns whether it ran.
    async fn run(&self, a: &Versioned<ScheduledAction>, now: i64) -> wharf_types::Result<bool> {
        let Some(scope) = autoscaling::scope_of_key(&a.key) else { return Ok(false) };
        let s = Scoped::new(scope, self.db.clone());
        let d = &a.doc;
        let ms = |t: f64| (t * 1000.0) as i64;
        if d.start_time.is_some_and(|t| now < ms(t)) || d.end_time.is_some_and(|t| now > ms(t)) {
            return Ok(false);
        }
        let (Ok(schedule), Ok(offset)) = (Schedule::parse(&d.schedule), zone_offset_ms(d.timezone.as_deref())) else {
            return Ok(false);
        };
        let origin = d.start_time.map_or(ms(d.creation_time), ms);
        let after = d.last_run.unwrap_or(ms(d.creation_time) - 1);
        if schedule.due(after, now, origin, offset).is_none() {
            return Ok(false);
        }
        let tkey = ScalingKeys::new(&s).target(&d.service_namespace, &d.resource_id, &d.scalable_dimension);
        let Some(target) = self.db.get::<ScalableTarget>(&tkey).await? else { return Ok(false) };
        // Mark it run first: a crash after this loses one run rather than repeating it.
        let mut done = d.clone();
        done.last_run = Some(now);
        if !self.db.commit(cas_put(&a.key, a.rev, &done)?).await? {
            return Ok(false);
        }
        if target.doc.suspended_state.scheduled_scaling_suspended {
            return Ok(true);
        }
        let mut t = target.doc.clone();
        let act = &d.scalable_target_action;
        t.min_capacity = act.min_capacity.unwrap_or(t.min_capacity);
        t.max_capacity = act.max_capacity.unwrap_or(t.max_capacity).max(t.min_capacity);
        if !self.db.commit(cas_put(&tkey, target.rev, &t)?).await? {
            return Ok(false);
        }
        let cause = Cause::Scheduled(d.scheduled_action_name.clone());
        let bounds = format!("Setting min capacity to {} and max capacity to {}", t.min_capacity, t.max_capacity);
        let message =
            format!("Successfully set min capacity to {} and max capacity to {}", t.min_capacity, t.max_capacity);
        autoscaling::record_activity(&s, &t, bounds, cause.text(), message, now).await?;
        let (min, max) = (t.min_capacity, t.max_capacity);
        autoscaling::set_capacity(&s, &t, Cause::MinimumCapacity(min), now, |c| (c < min).then_some(min)).await?;
        autoscaling::set_capacity(&s, &t, Cause::MaximumCapacity(max), now, |c| (c > max).then_some(max)).await?;
        Ok(true)
    }
}

impl Reconciler for ScheduledScaling {
    fn name(&self) -> &'static str {
        "scheduled-scaling"
    }
    fn watch_prefixes(&self) -> Vec<String> {
        vec![autoscaling::all_of_kind("scheduled")]
    }
    fn period(&self) -> Duration {
        Duration::from_secs(5)
    }
    async fn activate(&self) -> Status {
        let now = wharf_core::logs::now_ms();
        let actions = match self.db.list::<ScheduledAction>(&autoscaling::all_of_kind("scheduled")).await {
            Ok(a) => a,
            Err(e) => return Status { errors: vec![e.to_string()], ..Default::default() },
        };
        let mut status = Status::default();
        for a in &actions {
            match self.run(a, now).await {
                Ok(true) => status.changed += 1,
                Ok(false) => {}
                Err(e) => status.errors.push(e.to_string()),
            }
        }
        status
    }
}
