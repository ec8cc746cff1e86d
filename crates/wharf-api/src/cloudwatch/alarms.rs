//! Metric alarms: `PutMetricAlarm`, `DescribeAlarms`, `DescribeAlarmsForMetric`,
//! `DeleteAlarms`, `SetAlarmState`, `DescribeAlarmHistory`, `Enable/DisableAlarmActions`.
//! The `alarms` controller evaluates them; these handlers only keep the documents.

use super::metrics::no_percentiles;
use super::{Dimension, check_dimensions, check_period, combination, missing, ms, now_ms, seconds};
use crate::{Ctx, input, paging};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::alarms::{
    self, AlarmDimension, AlarmKeys, AlarmState, AlarmTag, Comparison, INITIAL_REASON, MetricAlarm, MissingData,
};
use wharf_core::metrics::HistoryQuery;
use wharf_core::metrics::Statistic;
use wharf_types::{Error, Resource, Result};

/// An alarm's total evaluation range may not exceed one day.
const MAX_EVALUATION_SECS: i64 = 86_400;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutInput {
    alarm_name: String,
    alarm_description: Option<String>,
    actions_enabled: Option<bool>,
    #[serde(rename = "OKActions", default)]
    ok_actions: Vec<String>,
    #[serde(default)]
    alarm_actions: Vec<String>,
    #[serde(default)]
    insufficient_data_actions: Vec<String>,
    metric_name: Option<String>,
    namespace: Option<String>,
    statistic: Option<String>,
    extended_statistic: Option<String>,
    #[serde(default)]
    dimensions: Vec<Dimension>,
    period: Option<i64>,
    unit: Option<String>,
    evaluation_periods: Option<i64>,
    datapoints_to_alarm: Option<i64>,
    threshold: Option<f64>,
    comparison_operator: Option<String>,
    treat_missing_data: Option<String>,
    metrics: Option<Value>,
    threshold_metric_id: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
}

/// An action Wharf can run: an Application Auto Scaling policy. Wharf has no SNS, EC2 or
/// Systems Manager, so it refuses their ARNs rather than accept actions that would never run.
fn check_actions(field: &str, actions: &[String]) -> Result<()> {
    if actions.len() > 5 {
        return Err(Error::invalid(field, format!("The parameter {field} may hold at most 5 actions.")));
    }
    for a in actions {
        if !(a.starts_with("arn:aws:autoscaling:") && a.contains(":scalingPolicy:")) {
            return Err(Error::invalid(
                field,
                format!(
                    "Invalid arn syntax: {a}. Wharf runs Application Auto Scaling policies (arn:aws:autoscaling:…:scalingPolicy:…) as alarm actions; SNS, EC2 and Systems Manager actions are not served."
                ),
            ));
        }
    }
    Ok(())
}

pub async fn put(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PutInput = input(v)?;
    if req.metrics.is_some() || req.threshold_metric_id.is_some() {
        return Err(Error::Unsupported(
            "Wharf evaluates alarms on one metric (MetricName, Namespace, Statistic); metric math alarms (Metrics) and anomaly detection are not served.".into(),
        ));
    }
    let namespace = req.namespace.ok_or_else(|| missing("Namespace"))?;
    let metric_name = req.metric_name.ok_or_else(|| missing("MetricName"))?;
    let statistic = match (req.statistic, req.extended_statistic) {
        (Some(_), Some(_)) => {
            return Err(combination("Exactly one of Statistic and ExtendedStatistic must be specified."));
        }
        (None, Some(e)) => return Err(no_percentiles("ExtendedStatistic", &e)),
        (None, None) => return Err(combination("Exactly one of Statistic and ExtendedStatistic must be specified.")),
        (Some(s), None) => s,
    };
    if Statistic::parse(&statistic).is_none() {
        return Err(Error::invalid("Statistic", format!("The value {statistic} for parameter Statistic is invalid.")));
    }
    let period = req.period.ok_or_else(|| missing("Period"))?;
    // Alarms take 10, 30 or a multiple of 60 (high-resolution metrics allow the shorter ones).
    if matches!(period, 1 | 5 | 20) {
        return Err(Error::invalid(
            "Period",
            format!("The parameter Period must be 10, 30, or a multiple of 60 for an alarm (it was {period})."),
        ));
    }
    check_period("Period", period)?;
    let evaluation_periods = req.evaluation_periods.ok_or_else(|| missing("EvaluationPeriods"))?;
    if period * evaluation_periods > MAX_EVALUATION_SECS {
        return Err(Error::invalid(
            "EvaluationPeriods",
            "The product of EvaluationPeriods and Period must not exceed 86400 (one day).",
        ));
    }
    if let Some(d) = req.datapoints_to_alarm
        && d > evaluation_periods
    {
        return Err(Error::invalid(
            "DatapointsToAlarm",
            "DatapointsToAlarm must be less than or equal to EvaluationPeriods.",
        ));
    }
    let threshold = req.threshold.ok_or_else(|| missing("Threshold"))?;
    let op = req.comparison_operator.ok_or_else(|| missing("ComparisonOperator"))?;
    let comparison_operator = Comparison::parse(&op).ok_or_else(|| {
        Error::Unsupported(format!(
            "The comparison operator {op} needs an anomaly detection band, which Wharf does not serve."
        ))
    })?;
    let treat_missing_data = match req.treat_missing_data.as_deref() {
        None => MissingData::Missing,
        Some(t) => MissingData::parse(t).ok_or_else(|| {
            Error::invalid(
                "TreatMissingData",
                format!("The value {t} for parameter TreatMissingData is invalid: it must be one of breaching, notBreaching, ignore, missing."),
            )
        })?,
    };
    check_dimensions("Dimensions", &req.dimensions)?;
    check_actions("OKActions", &req.ok_actions)?;
    check_actions("AlarmActions", &req.alarm_actions)?;
    check_actions("InsufficientDataActions", &req.insufficient_data_actions)?;
    let now = now_ms();
    let alarm = MetricAlarm {
        alarm_arn: format!("arn:aws:cloudwatch:{}:{}:alarm:{}", ctx.scope.region, ctx.scope.account, req.alarm_name),
        alarm_name: req.alarm_name,
        alarm_description: req.alarm_description,
        alarm_configuration_updated_timestamp: seconds(now),
        actions_enabled: req.actions_enabled.unwrap_or(true),
        ok_actions: req.ok_actions,
        alarm_actions: req.alarm_actions,
        insufficient_data_actions: req.insufficient_data_actions,
        state_value: AlarmState::InsufficientData,
        state_reason: INITIAL_REASON.into(),
        state_reason_data: None,
        state_updated_timestamp: seconds(now),
        state_transitioned_timestamp: seconds(now),
        metric_name,
        namespace,
        statistic,
        dimensions: req.dimensions.into_iter().map(|d| AlarmDimension { name: d.name, value: d.value }).collect(),
        period,
        unit: req.unit,
        evaluation_periods,
        datapoints_to_alarm: req.datapoints_to_alarm,
        threshold,
        comparison_operator,
        treat_missing_data,
        tags: req.tags.into_iter().map(|t| AlarmTag { key: t.key, value: t.value }).collect(),
    };
    alarms::put(ctx, ctx.metrics(), alarm, now).await?;
    Ok(json!({}))
}

/// An alarm as `DescribeAlarms` shows it (the output shape drops what is not `MetricAlarm`'s).
fn wire(a: &MetricAlarm) -> Result<Value> {
    serde_json::to_value(a).map_err(|e| Error::Internal(e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    alarm_names: Option<Vec<String>>,
    alarm_name_prefix: Option<String>,
    alarm_types: Option<Vec<String>>,
    state_value: Option<String>,
    action_prefix: Option<String>,
    max_records: Option<i64>,
    next_token: Option<String>,
    children_of_alarm_name: Option<String>,
    parents_of_alarm_name: Option<String>,
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeInput = input(v)?;
    if req.alarm_names.is_some() && req.alarm_name_prefix.is_some() {
        return Err(combination("AlarmNames and AlarmNamePrefix cannot be specified together."));
    }
    if req.children_of_alarm_name.is_some() || req.parents_of_alarm_name.is_some() {
        // Wharf has no composite alarms, so no alarm has children or parents.
        return Ok(json!({"MetricAlarms": [], "CompositeAlarms": []}));
    }
    let metric_alarms_wanted = req.alarm_types.as_ref().is_none_or(|t| t.iter().any(|t| t == "MetricAlarm"));
    let limit = req.max_records.unwrap_or(50).clamp(1, 100) as usize;
    let keys = AlarmKeys::new(ctx);
    let prefix = keys.alarms();
    let state = req.state_value.as_deref();
    let (found, token) = if !metric_alarms_wanted {
        (Vec::new(), None)
    } else {
        let after = paging::after_key(req.next_token.as_deref(), &prefix).map_err(|_| bad_token())?;
        paging::scan_from(&ctx.db, &prefix, after, limit, false, |a: &MetricAlarm| {
            let named = req.alarm_names.as_ref().is_none_or(|n| n.contains(&a.alarm_name));
            let prefixed = req.alarm_name_prefix.as_ref().is_none_or(|p| a.alarm_name.starts_with(p.as_str()));
            let in_state = state.is_none_or(|s| a.state_value.as_str() == s);
            let acting = req.action_prefix.as_ref().is_none_or(|p| {
                [&a.ok_actions, &a.alarm_actions, &a.insufficient_data_actions]
                    .iter()
                    .any(|l| l.iter().any(|x| x.starts_with(p.as_str())))
            });
            (named && prefixed && in_state && acting).then(|| wire(a)).transpose()
        })
        .await?
    };
    Ok(json!({"MetricAlarms": found, "CompositeAlarms": [], "NextToken": token}))
}

fn bad_token() -> Error {
    Error::invalid_input(wharf_types::Invalid::NextToken, "The service returned an invalid next token.")
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ForMetricInput {
    metric_name: String,
    namespace: String,
    statistic: Option<String>,
    extended_statistic: Option<String>,
    dimensions: Option<Vec<Dimension>>,
    period: Option<i64>,
    unit: Option<String>,
}

pub async fn describe_for_metric(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ForMetricInput = input(v)?;
    if req.extended_statistic.is_some() {
        return Ok(json!({"MetricAlarms": []}));
    }
    let all: Vec<wharf_core::db::Versioned<MetricAlarm>> = ctx.db.list(&AlarmKeys::new(ctx).alarms()).await?;
    let dims: Option<Vec<AlarmDimension>> = req.dimensions.map(|d| {
        let mut d: Vec<AlarmDimension> =
            d.into_iter().map(|d| AlarmDimension { name: d.name, value: d.value }).collect();
        d.sort_by(|a, b| a.name.cmp(&b.name));
        d
    });
    let found = all
        .iter()
        .map(|a| &a.doc)
        .filter(|a| a.metric_name == req.metric_name && a.namespace == req.namespace)
        .filter(|a| req.statistic.as_ref().is_none_or(|s| *s == a.statistic))
        .filter(|a| req.period.is_none_or(|p| p == a.period))
        .filter(|a| req.unit.is_none() || req.unit == a.unit)
        .filter(|a| {
            dims.as_ref().is_none_or(|d| {
                let mut mine = a.dimensions.clone();
                mine.sort_by(|a, b| a.name.cmp(&b.name));
                *d == mine
            })
        })
        .map(wire)
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({"MetricAlarms": found}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NamesInput {
    alarm_names: Vec<String>,
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: NamesInput = input(v)?;
    alarms::delete(ctx, ctx.metrics(), &req.alarm_names).await?;
    Ok(json!({}))
}

pub async fn enable_actions(ctx: &Ctx, v: Value) -> Result<Value> {
    set_actions_enabled(ctx, input(v)?, true).await
}

pub async fn disable_actions(ctx: &Ctx, v: Value) -> Result<Value> {
    set_actions_enabled(ctx, input(v)?, false).await
}

/// Names that are not alarms are skipped, as CloudWatch skips them.
async fn set_actions_enabled(ctx: &Ctx, req: NamesInput, enabled: bool) -> Result<Value> {
    let keys = AlarmKeys::new(ctx);
    for name in &req.alarm_names {
        let key = keys.alarm(name);
        ctx.db
            .update(|| async {
                let Some(mut a) = ctx.db.get::<MetricAlarm>(&key).await? else { return Ok((None, ())) };
                if a.doc.actions_enabled == enabled {
                    return Ok((None, ()));
                }
                a.doc.actions_enabled = enabled;
                Ok((Some(wharf_core::db::cas_put(&key, a.rev, &a.doc)?), ()))
            })
            .await?;
    }
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SetStateInput {
    alarm_name: String,
    state_value: String,
    state_reason: String,
    state_reason_data: Option<String>,
}

pub async fn set_state(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: SetStateInput = input(v)?;
    let state = AlarmState::parse(&req.state_value).ok_or_else(|| {
        Error::invalid("StateValue", format!("The value {} for parameter StateValue is invalid.", req.state_value))
    })?;
    if let Some(d) = &req.state_reason_data
        && serde_json::from_str::<Value>(d).is_err()
    {
        return Err(Error::invalid_input(
            wharf_types::Invalid::Format,
            "The parameter StateReasonData must be a valid JSON document.",
        ));
    }
    let key = AlarmKeys::new(ctx).alarm(&req.alarm_name);
    loop {
        let Some(stored) = ctx.db.get::<MetricAlarm>(&key).await? else {
            return Err(Error::not_found(Resource::Alarm, format!("Alarm {} not found", req.alarm_name)));
        };
        let change = alarms::Transition {
            stored,
            state,
            reason: req.state_reason.clone(),
            reason_data: req.state_reason_data.clone(),
        };
        if alarms::transition(ctx, ctx.metrics(), change, now_ms()).await? {
            return Ok(json!({}));
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HistoryInput {
    alarm_name: Option<String>,
    alarm_types: Option<Vec<String>>,
    history_item_type: Option<String>,
    start_date: Option<f64>,
    end_date: Option<f64>,
    max_records: Option<i64>,
    next_token: Option<String>,
    scan_by: Option<String>,
}

pub async fn history(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: HistoryInput = input(v)?;
    if req.alarm_types.as_ref().is_some_and(|t| !t.iter().any(|t| t == "MetricAlarm")) {
        return Ok(json!({"AlarmHistoryItems": []}));
    }
    let limit = req.max_records.unwrap_or(100).clamp(1, 100) as usize;
    let after = match req.next_token.as_deref() {
        None => None,
        Some(t) => Some(t.parse::<i64>().map_err(|_| bad_token())?),
    };
    let q = HistoryQuery {
        alarm: req.alarm_name,
        item_type: req.history_item_type,
        start: req.start_date.map(ms),
        end: req.end_date.map(ms),
        newest_first: req.scan_by.as_deref() != Some("TimestampAscending"),
        after,
        limit: limit + 1,
    };
    let mut items = ctx.metrics().history(&ctx.scope, q).await?;
    let more = items.len() > limit;
    items.truncate(limit);
    let token = more.then(|| items.last().map(|(id, _)| id.to_string())).flatten();
    let items: Vec<Value> = items
        .into_iter()
        .map(|(_, i)| {
            json!({
                "AlarmName": i.alarm,
                "AlarmType": i.alarm_type,
                "Timestamp": seconds(i.timestamp),
                "HistoryItemType": i.item_type,
                "HistorySummary": i.summary,
                "HistoryData": i.data,
            })
        })
        .collect();
    Ok(json!({"AlarmHistoryItems": items, "NextToken": token}))
}
