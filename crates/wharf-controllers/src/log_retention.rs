//! Enforces retention in the stores beside the resource store: CloudWatch Logs events older
//! than their group's `retentionInDays` ([`LogRetention`]; reads already hide them, so this
//! only reclaims space), and CloudWatch metric datapoints, rolled up and expired as
//! CloudWatch retains them ([`MetricRetention`]). Both run on a timer (there is nothing in the
//! resource store to watch).

use crate::{Reconciler, Status};
use std::time::Duration;
use wharf_core::logs::LogStore;
use wharf_core::logs::now_ms;
use wharf_core::metrics::MetricStore;

#[derive(Debug, Clone)]
pub struct LogRetention {
    logs: LogStore,
    period: Duration,
}

impl LogRetention {
    pub fn new(logs: LogStore) -> Self {
        LogRetention { logs, period: Duration::from_secs(60) }
    }
}

impl Reconciler for LogRetention {
    fn name(&self) -> &'static str {
        "log-retention"
    }
    fn watch_prefixes(&self) -> Vec<String> {
        vec![]
    }
    fn period(&self) -> Duration {
        self.period
    }
    async fn activate(&self) -> Status {
        match self.logs.purge_expired(now_ms()).await {
            Ok(n) => Status { changed: n as usize, errors: vec![], ..Default::default() },
            Err(e) => Status { changed: 0, errors: vec![e.to_string()], ..Default::default() },
        }
    }
}

#[derive(Debug, Clone)]
pub struct MetricRetention {
    metrics: MetricStore,
}

impl MetricRetention {
    pub fn new(metrics: MetricStore) -> Self {
        MetricRetention { metrics }
    }
}

impl Reconciler for MetricRetention {
    fn name(&self) -> &'static str {
        "metric-retention"
    }
    fn watch_prefixes(&self) -> Vec<String> {
        vec![]
    }
    fn period(&self) -> Duration {
        Duration::from_secs(300)
    }
    async fn activate(&self) -> Status {
        match self.metrics.compact(now_ms()).await {
            Ok(n) => Status { changed: n, ..Default::default() },
            Err(e) => Status { errors: vec![e.to_string()], ..Default::default() },
        }
    }
}
