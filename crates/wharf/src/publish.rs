//! Publishes the embedded load balancer's counters to the metric store as CloudWatch's
//! `AWS/ApplicationELB` metrics: every sampling interval it takes each load balancer's and
//! target group's counts since the previous take ([`wharf_lb::Metrics::take_intervals`]), so
//! every proxied request is published exactly once, and stores the points
//! ([`wharf_lb::cloudwatch::points`]) in the account and region their ARNs name, stamped with
//! the interval's start as ALB stamps a minute's datapoint with the minute's.
//!
//! It is glue between the data plane and the metric store; it must never hold counts of its
//! own (a failed write drops that interval and says so).

use std::collections::HashMap;
use std::time::Duration;
use wharf_core::metrics::{Datum, MetricKey, MetricStore, StatSet};
use wharf_types::Scope;

/// Runs until `shutdown` flips, then publishes the last partial interval.
pub async fn load_balancer_metrics(
    lb: wharf_lb::LoadBalancers,
    store: MetricStore,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut start = wharf_core::logs::now_ms();
    let mut warned = false;
    loop {
        let last = tokio::select! {
            _ = shutdown.changed() => true,
            _ = ticker.tick() => false,
        };
        let end = wharf_core::logs::now_ms();
        for (scope, data) in by_scope(&lb.metrics().take_intervals(), start) {
            match store.put(&scope, data).await {
                Ok(()) => warned = false,
                Err(e) if !warned => {
                    tracing::warn!(error = %e, "load balancer metrics could not be stored; this interval's are lost");
                    warned = true;
                }
                Err(_) => {}
            }
        }
        start = end;
        if last {
            return;
        }
    }
}

/// The datums of one interval that began at `start` (epoch ms), by the scope they belong to.
fn by_scope(intervals: &[wharf_lb::Interval], start: i64) -> HashMap<Scope, Vec<Datum>> {
    let mut out: HashMap<Scope, Vec<Datum>> = HashMap::new();
    for p in wharf_lb::cloudwatch::points(intervals) {
        let dims = p.dimensions.into_iter().map(|(n, v)| (n.to_string(), v)).collect();
        out.entry(Scope::new(p.account, p.region)).or_default().push(Datum {
            key: MetricKey::new(wharf_lb::cloudwatch::NAMESPACE, p.name, dims),
            timestamp: start,
            unit: p.unit.to_string(),
            stats: StatSet { count: p.count, sum: p.sum, min: p.min, max: p.max },
        });
    }
    out
}
