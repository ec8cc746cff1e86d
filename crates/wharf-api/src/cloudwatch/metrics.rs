//! `PutMetricData`, `GetMetricStatistics`, `GetMetricData` and `ListMetrics`.

use super::{
    Dimension, Metric, check_period, check_writable_namespace, combination, key, missing, ms, now_ms, seconds,
    wire_metric,
};
use crate::{Ctx, input};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use wharf_core::metrics::{Bucket, Datum, MetricListing, NO_UNIT, StatSet, Statistic, Window};
use wharf_types::{Error, Result};

const HOUR_MS: i64 = 3_600_000;
/// A datum may be this far in the future, and this old (CloudWatch's two weeks).
const FUTURE_MS: i64 = 2 * HOUR_MS;
const PAST_MS: i64 = 14 * 24 * HOUR_MS;
/// `GetMetricStatistics` answers at most this many datapoints.
const MAX_DATAPOINTS: i64 = 1_440;
/// `GetMetricData` answers at most this many datapoints per call (all queries together).
const MAX_DATA_POINTS: i64 = 100_800;
const LIST_PAGE: usize = 500;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StatisticValues {
    sample_count: f64,
    sum: f64,
    minimum: f64,
    maximum: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireDatum {
    metric_name: String,
    #[serde(default)]
    dimensions: Vec<Dimension>,
    timestamp: Option<f64>,
    value: Option<f64>,
    statistic_values: Option<StatisticValues>,
    values: Option<Vec<f64>>,
    counts: Option<Vec<f64>>,
    unit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutInput {
    namespace: Option<String>,
    #[serde(default)]
    metric_data: Vec<WireDatum>,
}

pub async fn put(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PutInput = input(v)?;
    let namespace = req.namespace.ok_or_else(|| missing("Namespace"))?;
    check_writable_namespace(&namespace)?;
    if req.metric_data.is_empty() {
        return Err(missing("MetricData"));
    }
    let now = now_ms();
    let mut data = Vec::with_capacity(req.metric_data.len());
    for (i, d) in req.metric_data.into_iter().enumerate() {
        let field = format!("MetricData.member.{}", i + 1);
        let k = key(&field, Some(&namespace), Some(&d.metric_name), &d.dimensions)?;
        let timestamp = d.timestamp.map_or(now, ms);
        if timestamp > now + FUTURE_MS || timestamp < now - PAST_MS {
            return Err(Error::invalid(
                format!("{field}.Timestamp"),
                format!(
                    "The parameter {field}.Timestamp must specify a time no more than two weeks in the past and no more than two hours in the future."
                ),
            ));
        }
        let unit = d.unit.unwrap_or_else(|| NO_UNIT.to_string());
        let mut push = |stats: StatSet| data.push(Datum { key: k.clone(), timestamp, unit: unit.clone(), stats });
        match (d.value, d.statistic_values, d.values) {
            (Some(v), None, None) => push(finite(&format!("{field}.Value"), StatSet::repeated(v, 1.0))?),
            (None, Some(s), None) => {
                let stats = StatSet { count: s.sample_count, sum: s.sum, min: s.minimum, max: s.maximum };
                if stats.count <= 0.0 || stats.min > stats.max {
                    return Err(Error::invalid(
                        format!("{field}.StatisticValues"),
                        format!(
                            "The parameter {field}.StatisticValues must have a positive SampleCount and a Minimum no larger than its Maximum."
                        ),
                    ));
                }
                push(finite(&format!("{field}.StatisticValues"), stats)?)
            }
            (None, None, Some(values)) => {
                let counts = d.counts.unwrap_or_else(|| vec![1.0; values.len()]);
                if counts.len() != values.len() {
                    return Err(combination(format!(
                        "The parameters {field}.Values and {field}.Counts must be of the same size."
                    )));
                }
                for (v, c) in values.into_iter().zip(counts) {
                    if c > 0.0 {
                        push(finite(&format!("{field}.Values"), StatSet::repeated(v, c))?);
                    }
                }
            }
            (None, None, None) => {
                return Err(combination(format!(
                    "At least one of the parameters {field}.Value, {field}.StatisticValues or {field}.Values must be specified."
                )));
            }
            _ => {
                return Err(combination(format!(
                    "The parameters {field}.Value, {field}.StatisticValues and {field}.Values are mutually exclusive and you have specified more than one."
                )));
            }
        }
    }
    ctx.metrics().put(&ctx.scope, data).await?;
    Ok(json!({}))
}

/// CloudWatch rejects values it cannot store (NaN, infinities, beyond 2^360).
fn finite(field: &str, s: StatSet) -> Result<StatSet> {
    let limit = 2f64.powi(360);
    if [s.count, s.sum, s.min, s.max].iter().all(|v| v.is_finite() && v.abs() <= limit) {
        Ok(s)
    } else {
        Err(Error::invalid(field, format!("The value for parameter {field} is out of the range CloudWatch stores.")))
    }
}

/// Percentiles and trimmed statistics need distributions, which the store does not keep.
pub(crate) fn no_percentiles(field: &str, stat: &str) -> Error {
    Error::invalid(
        field,
        format!(
            "The value {stat} for parameter {field} is not served by Wharf: it keeps statistic sets, so it computes SampleCount, Average, Sum, Minimum and Maximum."
        ),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StatisticsInput {
    namespace: String,
    metric_name: String,
    #[serde(default)]
    dimensions: Vec<Dimension>,
    start_time: f64,
    end_time: f64,
    period: i64,
    statistics: Option<Vec<String>>,
    extended_statistics: Option<Vec<String>>,
    unit: Option<String>,
}

/// `start` rounded down as CloudWatch rounds a query's start: to the whole minute for periods
/// of a minute or more, to the period below that.
pub(crate) fn aligned(start: i64, period_secs: i64) -> i64 {
    let grain = period_secs.clamp(1, 60) * 1000;
    start - start.rem_euclid(grain)
}

/// A time range and period checked as CloudWatch checks them.
fn window(start: f64, end: f64, period: i64, unit: Option<String>) -> Result<Window> {
    check_period("Period", period)?;
    let (start, end) = (aligned(ms(start), period), ms(end));
    if start >= end {
        return Err(Error::invalid("StartTime", "The parameter StartTime must be less than the parameter EndTime."));
    }
    Ok(Window { start, end, period: period * 1000, unit })
}

pub async fn statistics(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: StatisticsInput = input(v)?;
    if let Some(p) = req.extended_statistics.as_ref().and_then(|e| e.first()) {
        return Err(no_percentiles("ExtendedStatistics", p));
    }
    let stats = match req.statistics.as_deref() {
        Some(s) if !s.is_empty() => s.iter().filter_map(|s| Statistic::parse(s)).collect::<Vec<_>>(),
        _ => return Err(combination("Must specify either Statistics or ExtendedStatistics.")),
    };
    let k = key("", Some(&req.namespace), Some(&req.metric_name), &req.dimensions)?;
    let w = window(req.start_time, req.end_time, req.period, req.unit)?;
    let asked = (w.end - w.start + w.period - 1) / w.period;
    if asked > MAX_DATAPOINTS {
        return Err(combination(format!(
            "You have requested up to {asked} datapoints, which exceeds the limit of {MAX_DATAPOINTS}. You may reduce the datapoints requested by increasing Period, or decreasing the time range."
        )));
    }
    let buckets = ctx.metrics().series(&ctx.scope, &k, &w).await?;
    let points: Vec<Value> = buckets
        .iter()
        .map(|b| {
            let mut p = serde_json::Map::new();
            p.insert("Timestamp".into(), json!(seconds(b.start)));
            for s in &stats {
                p.insert(s.name().into(), json!(s.of(&b.stats)));
            }
            p.insert("Unit".into(), json!(b.unit));
            Value::Object(p)
        })
        .collect();
    Ok(json!({"Label": req.metric_name, "Datapoints": points}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricStat {
    metric: Metric,
    period: i64,
    stat: String,
    unit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Query {
    id: String,
    metric_stat: Option<MetricStat>,
    expression: Option<String>,
    label: Option<String>,
    return_data: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DataInput {
    metric_data_queries: Vec<Query>,
    start_time: f64,
    end_time: f64,
    scan_by: Option<String>,
    max_datapoints: Option<i64>,
}

/// A time series: value by period start (milliseconds).
pub(crate) type Series = BTreeMap<i64, f64>;

/// Evaluates `queries` over `[start, end)`: every query's series by id, in query order.
/// Metric stats read the store; expressions combine the others (see [`super::expr`]).
pub(crate) async fn evaluate(ctx: &Ctx, queries: &[Query], start: i64, end: i64) -> Result<Vec<(String, Series)>> {
    let mut out: Vec<(String, Series)> = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        let field = format!("MetricDataQueries.member.{}", i + 1);
        if !q.id.starts_with(|c: char| c.is_ascii_lowercase())
            || !q.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(Error::invalid(
                format!("{field}.Id"),
                format!(
                    "The value {} for parameter {field}.Id is invalid: it must start with a lowercase letter and hold only letters, digits and underscores.",
                    q.id
                ),
            ));
        }
        if out.iter().any(|(id, _)| *id == q.id) {
            return Err(Error::invalid(
                format!("{field}.Id"),
                format!("The value {} for parameter {field}.Id is not unique.", q.id),
            ));
        }
        let series = match (&q.metric_stat, &q.expression) {
            (Some(ms_), None) => {
                let Some(stat) = Statistic::parse(&ms_.stat) else {
                    return Err(no_percentiles(&format!("{field}.MetricStat.Stat"), &ms_.stat));
                };
                let m = &ms_.metric;
                let k = key(
                    &format!("{field}.MetricStat.Metric"),
                    m.namespace.as_deref(),
                    m.metric_name.as_deref(),
                    &m.dimensions,
                )?;
                check_period(&format!("{field}.MetricStat.Period"), ms_.period)?;
                let w = Window { start, end, period: ms_.period * 1000, unit: ms_.unit.clone() };
                let buckets: Vec<Bucket> = ctx.metrics().series(&ctx.scope, &k, &w).await?;
                // Several units in one period (no unit asked for): their statistic sets merge.
                let mut sets: BTreeMap<i64, StatSet> = BTreeMap::new();
                for b in buckets {
                    sets.entry(b.start).and_modify(|s| s.merge(&b.stats)).or_insert(b.stats);
                }
                sets.into_iter().map(|(t, s)| (t, stat.of(&s))).collect()
            }
            (None, Some(e)) => {
                let resolve = |id: &str| out.iter().find(|(i, _)| i == id).map(|(_, s)| s);
                super::expr::evaluate(e, &resolve).map_err(|why| {
                    Error::invalid(
                        format!("{field}.Expression"),
                        format!("Invalid metric math expression {e:?}: {why}"),
                    )
                })?
            }
            _ => {
                return Err(combination(format!(
                    "Exactly one of the parameters {field}.MetricStat and {field}.Expression must be specified."
                )));
            }
        };
        out.push((q.id.clone(), series));
    }
    Ok(out)
}

pub async fn data(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DataInput = input(v)?;
    let (start, end) = (aligned(ms(req.start_time), 60), ms(req.end_time));
    if start >= end {
        return Err(Error::invalid("StartTime", "The parameter StartTime must be less than the parameter EndTime."));
    }
    if req.metric_data_queries.is_empty() || req.metric_data_queries.len() > 500 {
        return Err(Error::invalid("MetricDataQueries", "The parameter MetricDataQueries must hold 1 to 500 queries."));
    }
    let descending = req.scan_by.as_deref() != Some("TimestampAscending");
    let series = evaluate(ctx, &req.metric_data_queries, start, end).await?;
    let max = req.max_datapoints.unwrap_or(MAX_DATA_POINTS).clamp(1, MAX_DATA_POINTS) as usize;
    let mut left = max;
    let mut results = Vec::new();
    for (q, (id, s)) in req.metric_data_queries.iter().zip(series) {
        if q.return_data == Some(false) {
            continue;
        }
        let mut points: Vec<(i64, f64)> = s.into_iter().filter(|(_, v)| v.is_finite()).collect();
        if descending {
            points.reverse();
        }
        let complete = points.len() <= left;
        points.truncate(left);
        left -= points.len();
        let label = q.label.clone().unwrap_or_else(|| {
            q.metric_stat.as_ref().and_then(|m| m.metric.metric_name.clone()).unwrap_or_else(|| id.clone())
        });
        results.push(json!({
            "Id": id,
            "Label": label,
            "Timestamps": points.iter().map(|(t, _)| seconds(*t)).collect::<Vec<_>>(),
            "Values": points.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            "StatusCode": if complete { "Complete" } else { "PartialData" },
        }));
    }
    Ok(json!({"MetricDataResults": results, "Messages": []}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DimensionFilter {
    name: String,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListInput {
    namespace: Option<String>,
    metric_name: Option<String>,
    #[serde(default)]
    dimensions: Vec<DimensionFilter>,
    next_token: Option<String>,
    recently_active: Option<String>,
}

pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListInput = input(v)?;
    let after = match req.next_token.as_deref() {
        None => None,
        Some(t) => Some(t.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            Error::invalid_input(wharf_types::Invalid::NextToken, "The service returned an invalid next token.")
        })?),
    };
    let q = MetricListing {
        namespace: req.namespace,
        name: req.metric_name,
        dimensions: req.dimensions.into_iter().map(|d| (d.name, d.value)).collect(),
        // The only value the model allows: PT3H.
        active_since: req.recently_active.map(|_| now_ms() - 3 * HOUR_MS),
        after,
        limit: LIST_PAGE + 1,
    };
    let mut found = ctx.metrics().list(&ctx.scope, q).await?;
    let more = found.len() > LIST_PAGE;
    found.truncate(LIST_PAGE);
    let token = more.then(|| found.last().map(|(id, _)| id.to_string())).flatten();
    let metrics: Vec<Metric> = found.iter().map(|(_, k)| wire_metric(k)).collect();
    Ok(json!({"Metrics": metrics, "NextToken": token}))
}
