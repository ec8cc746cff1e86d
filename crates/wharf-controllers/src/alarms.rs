//! Evaluates every CloudWatch metric alarm once per period and runs its actions: the
//! Application Auto Scaling policies an alarm names. As CloudWatch does, an alarm's actions
//! run when it changes state, and an auto scaling action runs again every period the alarm
//! stays in ALARM (so target tracking keeps stepping until the metric is back on target).
//!
//! A period is `Period` seconds of a metrics minute (`--metrics-period`, 60 s by default):
//! with a 3-second minute a 60-second period lasts 3 s. A period is evaluated once it is over
//! and a sampling interval has passed (so late datapoints are in). What was evaluated and
//! acted on lives in memory: after a restart every alarm is evaluated again (idempotent: a
//! policy's cooldown keeps a second scale-out from happening).

use crate::{Reconciler, Status};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use wharf_core::alarms::{self, AlarmState, MetricAlarm};
use wharf_core::db::Versioned;
use wharf_core::metrics::{HistoryItem, MetricStore, StatSet, Statistic, Window};
use wharf_core::{Db, Scoped};
use wharf_types::Scope;

/// What the evaluator remembers of one alarm.
#[derive(Debug, Clone, Default)]
struct Memo {
    /// The end (ms) of the last period evaluated.
    evaluated_to: i64,
    /// The state whose actions last ran.
    acted_on: Option<AlarmState>,
}

#[derive(Debug)]
pub struct AlarmEvaluator {
    db: Db,
    metrics: MetricStore,
    /// The length of a metrics minute in ms.
    minute_ms: i64,
    memo: Mutex<HashMap<String, Memo>>,
}

impl AlarmEvaluator {
    pub fn new(db: Db, metrics: MetricStore, minute: Duration) -> Self {
        AlarmEvaluator { db, metrics, minute_ms: (minute.as_millis() as i64).max(1), memo: Default::default() }
    }

    fn period_ms(&self, a: &MetricAlarm) -> i64 {
        (a.period * self.minute_ms / 60).max(1)
    }

    /// How long after a period ends it is evaluated: the agents' sampling interval.
    fn lag_ms(&self, period_ms: i64) -> i64 {
        (period_ms / 3).min(20_000)
    }

    /// Evaluates the due alarms of one scope; returns how many changed state.
    async fn scope(&self, scope: &Scope, alarms: Vec<Versioned<MetricAlarm>>, now: i64) -> Result<usize, String> {
        let s = Scoped::new(scope.clone(), self.db.clone());
        let mut due = Vec::new();
        for a in alarms {
            let p = self.period_ms(&a.doc);
            let end = (now - self.lag_ms(p)).div_euclid(p) * p;
            let memo = self.memo(&a.key);
            let set_by_hand = memo.acted_on.is_some_and(|st| st != a.doc.state_value);
            if end > memo.evaluated_to || set_by_hand {
                due.push((a, end, p));
            }
        }
        if due.is_empty() {
            return Ok(0);
        }
        let queries = due
            .iter()
            .map(|(a, end, p)| {
                let start = end - a.doc.evaluation_periods * p;
                (a.doc.metric(), Window { start, end: *end, period: *p, unit: a.doc.unit.clone() })
            })
            .collect();
        let series = self.metrics.series_many(scope, queries).await.map_err(|e| e.to_string())?;
        // Judge every due alarm, then write all state changes at once (one transaction, one
        // history batch), then run actions.
        let mut judged = Vec::with_capacity(due.len());
        let mut changes = Vec::new();
        for ((stored, end, p), buckets) in due.into_iter().zip(series) {
            let a = &stored.doc;
            let Some(stat) = Statistic::parse(&a.statistic) else { continue };
            let start = end - a.evaluation_periods * p;
            let mut sets: HashMap<i64, StatSet> = HashMap::new();
            for b in buckets {
                sets.entry(b.start).and_modify(|s| s.merge(&b.stats)).or_insert(b.stats);
            }
            let points: Vec<(i64, Option<f64>)> = (0..a.evaluation_periods)
                .map(|i| start + i * p)
                .map(|t| (t, sets.get(&t).map(|s| stat.of(s))))
                .collect();
            let verdict = alarms::evaluate(a, &points, now);
            let change = verdict.as_ref().filter(|v| v.state != a.state_value).map(|v| alarms::Transition {
                stored: stored.clone(),
                state: v.state,
                reason: v.reason.clone(),
                reason_data: Some(v.reason_data.clone()),
            });
            let index = change.map(|c| {
                changes.push(c);
                changes.len() - 1
            });
            judged.push((stored, end, verdict, index));
        }
        let written = alarms::transition_all(&s, &self.metrics, &changes, now).await.map_err(|e| e.to_string())?;
        let mut changed = 0;
        for (stored, end, verdict, index) in judged {
            let a = &stored.doc;
            let transitioned = match index {
                // Changed meanwhile (SetAlarmState, PutMetricAlarm): the next activation sees it.
                Some(i) if !written[i] => continue,
                Some(_) => true,
                None => false,
            };
            let state = if transitioned { changes[index.unwrap_or_default()].state } else { a.state_value };
            changed += transitioned as usize;
            let mut memo = self.memo(&stored.key);
            memo.evaluated_to = end;
            let value = verdict.as_ref().and_then(|v| v.latest).unwrap_or(a.threshold);
            // A state set by SetAlarmState runs its actions, as CloudWatch's do, even when the
            // evaluation moves the alarm on at once.
            let set_by_hand = memo.acted_on.is_some_and(|st| st != a.state_value);
            if set_by_hand && transitioned && a.actions_enabled {
                self.act(&s, a, a.state_value, value, now).await;
            }
            // Auto scaling actions repeat every period in ALARM; others run on a change.
            let repeat = state == AlarmState::Alarm;
            let actions = !a.actions_of(state).is_empty();
            if a.actions_enabled && actions && (transitioned || set_by_hand || repeat || memo.acted_on.is_none()) {
                self.act(&s, a, state, value, now).await;
            }
            memo.acted_on = Some(state);
            self.remember(&stored.key, memo);
        }
        Ok(changed)
    }

    /// Runs the actions of `state` (Application Auto Scaling policies) and records each.
    async fn act(&self, s: &Scoped, a: &MetricAlarm, state: AlarmState, value: f64, now: i64) {
        for arn in a.actions_of(state) {
            let result = wharf_core::autoscaling::invoke(
                s,
                arn,
                &a.alarm_name,
                a.comparison_operator.is_upper(),
                a.threshold,
                value,
                now,
                self.minute_ms,
            )
            .await;
            let summary = match &result {
                Ok(_) => format!("Successfully executed action {arn}"),
                Err(e) => format!("Failed to execute action {arn}. Received error: \"{e}\""),
            };
            if result.is_err() || matches!(result, Ok(Some(_))) {
                let item = HistoryItem {
                    alarm: a.alarm_name.clone(),
                    alarm_type: "MetricAlarm".into(),
                    timestamp: now,
                    item_type: "Action".into(),
                    summary: summary.clone(),
                    data: serde_json::json!({"actionState": if result.is_ok() { "Succeeded" } else { "Failed" }, "notificationResource": arn}).to_string(),
                };
                if let Err(e) = self.metrics.record(&s.scope, vec![item]).await {
                    tracing::warn!(error = %e, alarm = a.alarm_name, "could not record an alarm action");
                }
            }
        }
    }

    fn memo(&self, key: &str) -> Memo {
        self.memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(key).cloned().unwrap_or_default()
    }

    fn remember(&self, key: &str, memo: Memo) {
        self.memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.to_string(), memo);
    }
}

impl Reconciler for AlarmEvaluator {
    fn name(&self) -> &'static str {
        "alarms"
    }
    fn watch_prefixes(&self) -> Vec<String> {
        // New and changed alarms (SetAlarmState) are acted on without waiting a tick.
        vec![alarms::ALL.to_string()]
    }
    fn period(&self) -> Duration {
        // The shortest alarm period is 10 s of a metrics minute: tick at least that often.
        Duration::from_millis((self.minute_ms / 6).clamp(100, 10_000) as u64)
    }
    fn settle(&self) -> Duration {
        Duration::from_millis(50)
    }
    async fn activate(&self) -> Status {
        let now = wharf_core::logs::now_ms();
        let all = match self.db.list::<MetricAlarm>(alarms::ALL).await {
            Ok(a) => a,
            Err(e) => return Status { errors: vec![e.to_string()], ..Default::default() },
        };
        // Forget alarms that are gone.
        let live: std::collections::HashSet<&str> = all.iter().map(|a| a.key.as_str()).collect();
        self.memo.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|k, _| live.contains(k.as_str()));
        let mut by_scope: HashMap<Scope, Vec<Versioned<MetricAlarm>>> = HashMap::new();
        for a in all {
            if let Some(scope) = alarms::scope_of_key(&a.key) {
                by_scope.entry(scope).or_default().push(a);
            }
        }
        let mut status = Status::default();
        for (scope, alarms) in by_scope {
            match self.scope(&scope, alarms, now).await {
                Ok(n) => status.changed += n,
                Err(e) => status.errors.push(e),
            }
        }
        status
    }
}
