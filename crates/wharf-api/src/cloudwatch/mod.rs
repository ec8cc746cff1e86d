//! Amazon CloudWatch (`GraniteServiceVersion20100801`, endpoint prefix `monitoring`): metrics
//! and the alarms that watch them.
//!
//! Datapoints live in the metric store ([`wharf_core::metrics`], `<data-dir>/metrics.db`);
//! alarms are resources in the store, evaluated by the `alarms` controller. Wharf's own
//! namespaces (`AWS/ECS`, `AWS/ApplicationELB`) are written by Wharf, never by callers.
//!
//! Timestamps arrive as epoch seconds whatever the protocol (the protocol layer turns Query's
//! ISO 8601 and CBOR's tagged times into numbers) and leave the same way.

mod alarms;
mod expr;
mod metrics;

use wharf_core::metrics::MetricKey;
use wharf_types::{Error, Result};

operations! {
    "PutMetricData" => metrics::put,
    "GetMetricStatistics" => metrics::statistics,
    "GetMetricData" => metrics::data,
    "ListMetrics" => metrics::list,
    "PutMetricAlarm" => alarms::put,
    "DescribeAlarms" => alarms::describe,
    "DescribeAlarmsForMetric" => alarms::describe_for_metric,
    "DeleteAlarms" => alarms::delete,
    "SetAlarmState" => alarms::set_state,
    "DescribeAlarmHistory" => alarms::history,
    "EnableAlarmActions" => alarms::enable_actions,
    "DisableAlarmActions" => alarms::disable_actions,
}

/// `Dimensions` as the wire carries them.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Dimension {
    pub name: String,
    pub value: String,
}

/// A `Metric` (namespace, name, dimensions) as the wire carries it.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metric {
    pub namespace: Option<String>,
    pub metric_name: Option<String>,
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
}

/// The store's key for a metric named on the wire; `field` names the member for errors.
fn key(field: &str, namespace: Option<&str>, name: Option<&str>, dims: &[Dimension]) -> Result<MetricKey> {
    let namespace = namespace.ok_or_else(|| missing(&format!("{field}.Namespace")))?;
    let name = name.ok_or_else(|| missing(&format!("{field}.MetricName")))?;
    check_dimensions(&format!("{field}.Dimensions"), dims)?;
    Ok(MetricKey::new(namespace, name, dims.iter().map(|d| (d.name.clone(), d.value.clone())).collect()))
}

/// Dimension names must be unique within a metric (the model bounds the rest).
fn check_dimensions(field: &str, dims: &[Dimension]) -> Result<()> {
    for (i, d) in dims.iter().enumerate() {
        if dims[..i].iter().any(|o| o.name == d.name) {
            return Err(Error::invalid(
                field,
                format!("No metric may have more than one dimension named {} (the parameter {field}).", d.name),
            ));
        }
    }
    Ok(())
}

/// The metric a `Metric` names, back on the wire.
fn wire_metric(k: &MetricKey) -> Metric {
    Metric {
        namespace: Some(k.namespace.clone()),
        metric_name: Some(k.name.clone()),
        dimensions: k.dimensions().iter().map(|(n, v)| Dimension { name: n.clone(), value: v.clone() }).collect(),
    }
}

fn missing(field: &str) -> Error {
    Error::invalid_input(wharf_types::Invalid::MissingParameter, format!("The parameter {field} is required."))
}

fn combination(message: impl Into<String>) -> Error {
    Error::invalid_input(wharf_types::Invalid::Combination, message)
}

/// Epoch seconds (the wire) to milliseconds (the store).
fn ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// Milliseconds (the store) to epoch seconds (the wire).
fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// A `Period`: 1, 5, 10, 20 or 30 for high-resolution data, else a multiple of 60.
fn check_period(field: &str, period: i64) -> Result<()> {
    if matches!(period, 1 | 5 | 10 | 20 | 30) || (period >= 60 && period % 60 == 0) {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("The parameter {field} must be 1, 5, 10, 20, 30, or a multiple of 60 (it was {period})."),
        ))
    }
}

/// A namespace callers may write: AWS's own are reserved.
fn check_writable_namespace(namespace: &str) -> Result<()> {
    if namespace.starts_with("AWS/") {
        Err(Error::invalid("Namespace", format!("The value {namespace} for parameter Namespace is invalid.")))
    } else {
        Ok(())
    }
}

/// Now, in milliseconds since the epoch.
fn now_ms() -> i64 {
    wharf_core::logs::now_ms()
}
