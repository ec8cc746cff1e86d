//! CloudWatch metric alarms: the document (shaped as `MetricAlarm` on the wire), where it
//! lives, and the evaluation of one alarm over its datapoints — a pure function, so the
//! `alarms` controller that runs it every period and the tests agree on what a state is.
//!
//! Documents live at `/cloudwatch/alarm/<account>/<region>/<name>`. Their state is written
//! only by the evaluator and `SetAlarmState`; their history goes to the metric store.

use crate::Scoped;
use crate::metrics::HistoryItem;
use serde::{Deserialize, Serialize};
use wharf_store::{Compare, Op, Txn};
use wharf_types::{Error, Resource, Result};

/// Store keys of alarms in one scope.
#[derive(Debug, Clone)]
pub struct AlarmKeys {
    prefix: String,
}

impl AlarmKeys {
    pub fn new(s: &Scoped) -> Self {
        Self::for_scope(&s.scope)
    }
    pub fn for_scope(scope: &wharf_types::Scope) -> Self {
        AlarmKeys { prefix: format!("{ALL}{}/{}/", scope.account, scope.region) }
    }
    pub fn alarms(&self) -> String {
        self.prefix.clone()
    }
    pub fn alarm(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// Every alarm of every scope (the evaluator's prefix).
pub const ALL: &str = "/cloudwatch/alarm/";

/// The scope of an alarm key.
pub fn scope_of_key(key: &str) -> Option<wharf_types::Scope> {
    let mut parts = key.strip_prefix(ALL)?.splitn(3, '/');
    Some(wharf_types::Scope::new(parts.next()?, parts.next()?))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    pub fn parse(s: &str) -> Option<AlarmState> {
        Some(match s {
            "OK" => AlarmState::Ok,
            "ALARM" => AlarmState::Alarm,
            "INSUFFICIENT_DATA" => AlarmState::InsufficientData,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    GreaterThanOrEqualToThreshold,
    GreaterThanThreshold,
    LessThanThreshold,
    LessThanOrEqualToThreshold,
}

impl Comparison {
    pub fn parse(s: &str) -> Option<Comparison> {
        Some(match s {
            "GreaterThanOrEqualToThreshold" => Comparison::GreaterThanOrEqualToThreshold,
            "GreaterThanThreshold" => Comparison::GreaterThanThreshold,
            "LessThanThreshold" => Comparison::LessThanThreshold,
            "LessThanOrEqualToThreshold" => Comparison::LessThanOrEqualToThreshold,
            _ => return None,
        })
    }

    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterThanOrEqualToThreshold => value >= threshold,
            Comparison::GreaterThanThreshold => value > threshold,
            Comparison::LessThanThreshold => value < threshold,
            Comparison::LessThanOrEqualToThreshold => value <= threshold,
        }
    }

    /// Whether breaching means the value is high (a scale-out alarm when it drives a policy).
    pub fn is_upper(self) -> bool {
        matches!(self, Comparison::GreaterThanOrEqualToThreshold | Comparison::GreaterThanThreshold)
    }

    /// The phrase AWS's state reasons use.
    fn phrase(self) -> &'static str {
        match self {
            Comparison::GreaterThanOrEqualToThreshold => "greater than or equal to",
            Comparison::GreaterThanThreshold => "greater than",
            Comparison::LessThanThreshold => "less than",
            Comparison::LessThanOrEqualToThreshold => "less than or equal to",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AlarmDimension {
    pub name: String,
    pub value: String,
}

/// How periods without data count (`TreatMissingData`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum MissingData {
    #[default]
    Missing,
    Breaching,
    NotBreaching,
    Ignore,
}

impl MissingData {
    pub fn parse(s: &str) -> Option<MissingData> {
        Some(match s {
            "missing" => MissingData::Missing,
            "breaching" => MissingData::Breaching,
            "notBreaching" => MissingData::NotBreaching,
            "ignore" => MissingData::Ignore,
            _ => return None,
        })
    }
}

/// A metric alarm as stored: `MetricAlarm`'s members (timestamps in epoch seconds) plus its
/// tags, which `DescribeAlarms` does not show (the output shape drops them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricAlarm {
    pub alarm_name: String,
    pub alarm_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm_description: Option<String>,
    pub alarm_configuration_updated_timestamp: f64,
    pub actions_enabled: bool,
    #[serde(rename = "OKActions", default)]
    pub ok_actions: Vec<String>,
    #[serde(default)]
    pub alarm_actions: Vec<String>,
    #[serde(default)]
    pub insufficient_data_actions: Vec<String>,
    pub state_value: AlarmState,
    pub state_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason_data: Option<String>,
    pub state_updated_timestamp: f64,
    pub state_transitioned_timestamp: f64,
    pub metric_name: String,
    pub namespace: String,
    pub statistic: String,
    #[serde(default)]
    pub dimensions: Vec<AlarmDimension>,
    pub period: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub evaluation_periods: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datapoints_to_alarm: Option<i64>,
    pub threshold: f64,
    pub comparison_operator: Comparison,
    #[serde(default)]
    pub treat_missing_data: MissingData,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<AlarmTag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AlarmTag {
    pub key: String,
    pub value: String,
}

impl MetricAlarm {
    /// The metric the alarm watches, as the metric store names it.
    pub fn metric(&self) -> crate::metrics::MetricKey {
        crate::metrics::MetricKey::new(
            &self.namespace,
            &self.metric_name,
            self.dimensions.iter().map(|d| (d.name.clone(), d.value.clone())).collect(),
        )
    }

    /// `DatapointsToAlarm`, defaulting to `EvaluationPeriods`.
    pub fn datapoints_to_alarm(&self) -> i64 {
        self.datapoints_to_alarm.unwrap_or(self.evaluation_periods)
    }

    /// The actions of `state`.
    pub fn actions_of(&self, state: AlarmState) -> &[String] {
        match state {
            AlarmState::Ok => &self.ok_actions,
            AlarmState::Alarm => &self.alarm_actions,
            AlarmState::InsufficientData => &self.insufficient_data_actions,
        }
    }
}

/// What an evaluation concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub state: AlarmState,
    pub reason: String,
    pub reason_data: String,
    /// The newest datapoint evaluated (what a scaling policy acts on).
    pub latest: Option<f64>,
}

/// Evaluates `alarm` over its last `EvaluationPeriods` periods: `points` holds one entry per
/// period, oldest first, each its start (ms) and the statistic's value if the period had data.
/// `None` when the alarm keeps its state (`TreatMissingData: ignore` with no data at all).
///
/// An alarm goes to ALARM when at least `DatapointsToAlarm` of the periods breach; missing
/// periods count as `TreatMissingData` says (breaching, not breaching, or not at all); with
/// no datapoint to judge, `missing` gives INSUFFICIENT_DATA; otherwise OK.
pub fn evaluate(alarm: &MetricAlarm, points: &[(i64, Option<f64>)], now_ms: i64) -> Option<Verdict> {
    let treat = alarm.treat_missing_data;
    let cmp = alarm.comparison_operator;
    let mut breaching = 0;
    let mut judged = 0;
    for (_, v) in points {
        let breach = match (v, treat) {
            (Some(v), _) => Some(cmp.breaches(*v, alarm.threshold)),
            (None, MissingData::Breaching) => Some(true),
            (None, MissingData::NotBreaching) => Some(false),
            (None, _) => None,
        };
        if let Some(b) = breach {
            judged += 1;
            breaching += b as i64;
        }
    }
    let present: Vec<(i64, f64)> = points.iter().filter_map(|(t, v)| v.map(|v| (*t, v))).collect();
    let listed =
        present.iter().rev().map(|(t, v)| format!("{v:?} ({})", fmt_reason_time(*t))).collect::<Vec<_>>().join(", ");
    let n = points.len();
    let to_alarm = alarm.datapoints_to_alarm();
    let (state, reason) = if breaching >= to_alarm {
        let reason = if to_alarm as usize == n {
            format!(
                "Threshold Crossed: {} datapoint{} [{listed}] {} {} the threshold ({:?}).",
                present.len(),
                plural(present.len()),
                were(present.len()),
                cmp.phrase(),
                alarm.threshold
            )
        } else {
            format!(
                "Threshold Crossed: {breaching} out of the last {n} datapoints [{listed}] {} {} the threshold ({:?}) (minimum {to_alarm} datapoint{} for OK -> ALARM transition).",
                were(breaching as usize),
                cmp.phrase(),
                alarm.threshold,
                plural(to_alarm as usize)
            )
        };
        (AlarmState::Alarm, reason)
    } else if judged == 0 {
        match treat {
            MissingData::Ignore => return None,
            _ => (AlarmState::InsufficientData, format!("Insufficient Data: {n} datapoint{} were unknown.", plural(n))),
        }
    } else {
        let reason = format!(
            "Threshold Crossed: {} datapoint{} [{listed}] {} not {} the threshold ({:?}).",
            present.len(),
            plural(present.len()),
            were(present.len()),
            cmp.phrase(),
            alarm.threshold
        );
        (AlarmState::Ok, reason)
    };
    let data = serde_json::json!({
        "version": "1.0",
        "queryDate": iso(now_ms),
        "startDate": points.first().map(|(t, _)| iso(*t)),
        "statistic": alarm.statistic,
        "period": alarm.period,
        "recentDatapoints": present.iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "threshold": alarm.threshold,
        "evaluatedDatapoints": present.iter().rev().map(|(t, v)| serde_json::json!({"timestamp": iso(*t), "value": v})).collect::<Vec<_>>(),
    });
    Some(Verdict { state, reason, reason_data: data.to_string(), latest: present.last().map(|(_, v)| *v) })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn were(n: usize) -> &'static str {
    if n == 1 { "was" } else { "were" }
}

/// A datapoint's time in a state reason, as CloudWatch writes it: `dd/mm/yy hh:mm:ss`, UTC.
fn fmt_reason_time(ms: i64) -> String {
    let iso = iso(ms);
    format!("{}/{}/{} {}", &iso[8..10], &iso[5..7], &iso[2..4], &iso[11..19])
}

/// A time in reason data and history data: `yyyy-mm-ddThh:mm:ss.mmm+0000`.
pub fn iso(ms: i64) -> String {
    let t = wharf_types::iso8601(ms as f64 / 1000.0);
    format!("{}+0000", t.trim_end_matches('Z'))
}

/// The reason a new alarm starts with.
pub const INITIAL_REASON: &str = "Unchecked: Initial alarm creation";

/// Creates `alarm` or replaces the configuration of the one of its name (whose state stays,
/// as CloudWatch keeps it), and records the change in its history.
pub async fn put(s: &Scoped, metrics: &crate::metrics::MetricStore, mut alarm: MetricAlarm, now_ms: i64) -> Result<()> {
    let key = AlarmKeys::new(s).alarm(&alarm.alarm_name);
    let created =
        s.db.update(|| {
            let (key, alarm) = (&key, &alarm);
            async move {
                let current = s.db.get::<MetricAlarm>(key).await?;
                let rev = current.as_ref().map_or(0, |c| c.rev);
                let mut doc = alarm.clone();
                if let Some(c) = &current {
                    doc.state_value = c.doc.state_value;
                    doc.state_reason = c.doc.state_reason.clone();
                    doc.state_reason_data = c.doc.state_reason_data.clone();
                    doc.state_updated_timestamp = c.doc.state_updated_timestamp;
                    doc.state_transitioned_timestamp = c.doc.state_transitioned_timestamp;
                }
                Ok((Some(crate::db::cas_put(key, rev, &doc)?), current.map(|c| c.doc)))
            }
        })
        .await?;
    if let Some(c) = &created {
        // What the history's data shows: the configuration as it now stands.
        alarm.state_value = c.state_value;
    }
    let created = created.is_none();
    let verb = if created { "created" } else { "updated" };
    let item = HistoryItem {
        alarm: alarm.alarm_name.clone(),
        alarm_type: "MetricAlarm".into(),
        timestamp: now_ms,
        item_type: "ConfigurationUpdate".into(),
        summary: format!("Alarm \"{}\" {verb}", alarm.alarm_name),
        data: serde_json::json!({"version": "1.0", "type": if created { "Create" } else { "Update" }, "createdAlarm": &alarm}).to_string(),
    };
    metrics.record(&s.scope, vec![item]).await
}

/// Deletes the named alarms and their history; all of them or, when one is missing, none.
pub async fn delete(s: &Scoped, metrics: &crate::metrics::MetricStore, names: &[String]) -> Result<()> {
    let keys = AlarmKeys::new(s);
    s.db.update(|| async {
        let mut txn = Txn::default();
        let mut missing = Vec::new();
        for name in names {
            let key = keys.alarm(name);
            match s.db.get::<MetricAlarm>(&key).await? {
                Some(a) => {
                    txn.compares.push(Compare::ModRevision(key.clone(), a.rev));
                    txn.ops.push(Op::delete(&key));
                }
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(Error::not_found(
                Resource::Alarm,
                format!("The following alarms were not found: [{}]", missing.join(", ")),
            ));
        }
        Ok((Some(txn), ()))
    })
    .await?;
    for name in names {
        metrics.forget(&s.scope, name).await?;
    }
    Ok(())
}

/// A state change of one alarm, to write with [`transition_all`].
#[derive(Debug, Clone)]
pub struct Transition {
    pub stored: crate::db::Versioned<MetricAlarm>,
    pub state: AlarmState,
    pub reason: String,
    pub reason_data: Option<String>,
}

impl Transition {
    /// The document after the change, and its history item.
    fn apply(&self, now_ms: i64) -> (MetricAlarm, HistoryItem) {
        let mut a = self.stored.doc.clone();
        let old = a.state_value;
        let now = now_ms as f64 / 1000.0;
        a.state_value = self.state;
        a.state_reason = self.reason.clone();
        a.state_reason_data = self.reason_data.clone();
        a.state_updated_timestamp = now;
        if old != self.state {
            a.state_transitioned_timestamp = now;
        }
        let item = HistoryItem {
            alarm: a.alarm_name.clone(),
            alarm_type: "MetricAlarm".into(),
            timestamp: now_ms,
            item_type: "StateUpdate".into(),
            summary: format!("Alarm updated from {} to {}", old.as_str(), self.state.as_str()),
            data: serde_json::json!({
                "version": "1.0",
                "oldState": {"stateValue": old.as_str(), "stateReason": self.stored.doc.state_reason},
                "newState": {"stateValue": self.state.as_str(), "stateReason": self.reason},
            })
            .to_string(),
        };
        (a, item)
    }
}

/// Writes `changes` (each compare-and-swap on the alarm as it was read) and their history:
/// in one transaction, or — when an alarm changed meanwhile — one by one, skipping those.
/// Returns which were written, in order.
pub async fn transition_all(
    s: &Scoped,
    metrics: &crate::metrics::MetricStore,
    changes: &[Transition],
    now_ms: i64,
) -> Result<Vec<bool>> {
    let applied: Vec<(MetricAlarm, HistoryItem)> = changes.iter().map(|t| t.apply(now_ms)).collect();
    let mut txn = Txn::default();
    for (t, (doc, _)) in changes.iter().zip(&applied) {
        let one = crate::db::cas_put(&t.stored.key, t.stored.rev, doc)?;
        txn.compares.extend(one.compares);
        txn.ops.extend(one.ops);
    }
    let written = if s.db.commit(txn).await? {
        vec![true; changes.len()]
    } else {
        let mut written = Vec::with_capacity(changes.len());
        for (t, (doc, _)) in changes.iter().zip(&applied) {
            written.push(s.db.commit(crate::db::cas_put(&t.stored.key, t.stored.rev, doc)?).await?);
        }
        written
    };
    let items = applied.into_iter().zip(&written).filter(|(_, w)| **w).map(|((_, item), _)| item).collect();
    metrics.record(&s.scope, items).await?;
    Ok(written)
}

/// Moves one alarm to `state` (`SetAlarmState`); false when it changed since it was read.
pub async fn transition(
    s: &Scoped,
    metrics: &crate::metrics::MetricStore,
    change: Transition,
    now_ms: i64,
) -> Result<bool> {
    Ok(transition_all(s, metrics, &[change], now_ms).await?.first().copied().unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(periods: i64, to_alarm: Option<i64>, treat: MissingData) -> MetricAlarm {
        MetricAlarm {
            alarm_name: "cpu-high".into(),
            alarm_arn: "arn:aws:cloudwatch:ap-northeast-2:123456789012:alarm:cpu-high".into(),
            alarm_description: None,
            alarm_configuration_updated_timestamp: 0.0,
            actions_enabled: true,
            ok_actions: vec![],
            alarm_actions: vec![],
            insufficient_data_actions: vec![],
            state_value: AlarmState::InsufficientData,
            state_reason: "Unchecked: Initial alarm creation".into(),
            state_reason_data: None,
            state_updated_timestamp: 0.0,
            state_transitioned_timestamp: 0.0,
            metric_name: "CPUUtilization".into(),
            namespace: "AWS/ECS".into(),
            statistic: "Average".into(),
            dimensions: vec![],
            period: 60,
            unit: None,
            evaluation_periods: periods,
            datapoints_to_alarm: to_alarm,
            threshold: 70.0,
            comparison_operator: Comparison::GreaterThanThreshold,
            treat_missing_data: treat,
            tags: vec![],
        }
    }

    fn pts(v: &[Option<f64>]) -> Vec<(i64, Option<f64>)> {
        v.iter().enumerate().map(|(i, v)| (1_800_000_000_000 + i as i64 * 60_000, *v)).collect()
    }

    #[test]
    fn all_periods_breaching_alarm_and_say_so() {
        let a = alarm(3, None, MissingData::Missing);
        let v = evaluate(&a, &pts(&[Some(95.0), Some(99.5), Some(100.0)]), 0).unwrap();
        assert_eq!(v.state, AlarmState::Alarm);
        assert!(v.reason.starts_with("Threshold Crossed: 3 datapoints [100.0 ("), "{}", v.reason);
        assert!(v.reason.ends_with("were greater than the threshold (70.0)."), "{}", v.reason);
        assert_eq!(v.latest, Some(100.0));
        let v = evaluate(&a, &pts(&[Some(95.0), Some(50.0), Some(100.0)]), 0).unwrap();
        assert_eq!(v.state, AlarmState::Ok);
    }

    #[test]
    fn m_out_of_n() {
        let a = alarm(5, Some(3), MissingData::Missing);
        let v = evaluate(&a, &pts(&[Some(80.0), Some(10.0), Some(80.0), Some(10.0), Some(80.0)]), 0).unwrap();
        assert_eq!(v.state, AlarmState::Alarm);
        assert!(v.reason.contains("3 out of the last 5 datapoints"), "{}", v.reason);
        let v = evaluate(&a, &pts(&[Some(80.0), Some(10.0), None, Some(10.0), Some(80.0)]), 0).unwrap();
        assert_eq!(v.state, AlarmState::Ok);
    }

    #[test]
    fn missing_data_counts_as_told() {
        let none = pts(&[None, None, None]);
        let v = evaluate(&alarm(3, None, MissingData::Missing), &none, 0).unwrap();
        assert_eq!(v.state, AlarmState::InsufficientData);
        assert_eq!(evaluate(&alarm(3, None, MissingData::Breaching), &none, 0).unwrap().state, AlarmState::Alarm);
        assert_eq!(evaluate(&alarm(3, None, MissingData::NotBreaching), &none, 0).unwrap().state, AlarmState::Ok);
        assert_eq!(evaluate(&alarm(3, None, MissingData::Ignore), &none, 0), None);
        // Two breaching and one missing: not three of three under `missing`…
        let gap = pts(&[Some(90.0), None, Some(90.0)]);
        assert_eq!(evaluate(&alarm(3, None, MissingData::Missing), &gap, 0).unwrap().state, AlarmState::Ok);
        // …but under `breaching` the gap breaches too.
        assert_eq!(evaluate(&alarm(3, None, MissingData::Breaching), &gap, 0).unwrap().state, AlarmState::Alarm);
    }

    #[test]
    fn reason_times_are_cloudwatchs() {
        assert_eq!(fmt_reason_time(1_796_676_600_000), "07/12/26 20:50:00");
        assert_eq!(iso(1_796_676_600_000), "2026-12-07T20:50:00.000+0000");
    }
}
