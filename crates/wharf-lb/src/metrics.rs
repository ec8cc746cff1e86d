//! CloudWatch-shaped metrics of the data plane, per load balancer and per target group.
//!
//! The proxy only bumps atomic counters (no lock, no allocation per request). Once a minute a
//! roller turns the counters' deltas into per-minute datapoints (kept for a day) that
//! autoscaling reads through [`Metrics::series`]; [`Metrics::prometheus`] renders the running
//! totals in the Prometheus text format for `/metrics`.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

/// How many per-minute datapoints a series keeps (one day).
pub const RETENTION_MINUTES: usize = 24 * 60;

/// The metrics ALB publishes to CloudWatch that Wharf keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Requests served (any status), per minute.
    RequestCount,
    /// Mean seconds from sending the request to a target until its response headers arrived.
    TargetResponseTime,
    /// 5xx responses produced by targets.
    TargetHttp5xx,
    /// 5xx responses produced by the load balancer itself (502, 503, 504, 5xx fixed responses).
    ElbHttp5xx,
    /// Healthy targets at the end of the minute (target groups only).
    HealthyHostCount,
    /// Unhealthy targets at the end of the minute (target groups only).
    UnHealthyHostCount,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::RequestCount,
        Metric::TargetResponseTime,
        Metric::TargetHttp5xx,
        Metric::ElbHttp5xx,
        Metric::HealthyHostCount,
        Metric::UnHealthyHostCount,
    ];
    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::RequestCount => "RequestCount",
            Metric::TargetResponseTime => "TargetResponseTime",
            Metric::TargetHttp5xx => "HTTPCode_Target_5XX_Count",
            Metric::ElbHttp5xx => "HTTPCode_ELB_5XX_Count",
            Metric::HealthyHostCount => "HealthyHostCount",
            Metric::UnHealthyHostCount => "UnHealthyHostCount",
        }
    }
}

/// One per-minute datapoint: the minute's start (Unix seconds) and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Datapoint {
    pub minute: i64,
    pub value: f64,
}

/// The live counters of one load balancer or target group (cumulative since start).
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) target_5xx: AtomicU64,
    pub(crate) elb_5xx: AtomicU64,
    pub(crate) response_micros: AtomicU64,
    pub(crate) responses: AtomicU64,
    pub(crate) healthy: AtomicU64,
    pub(crate) unhealthy: AtomicU64,
}

impl Counters {
    #[inline]
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }
    #[inline]
    pub(crate) fn target_response(&self, micros: u64, status: u16) {
        self.response_micros.fetch_add(micros, Relaxed);
        self.responses.fetch_add(1, Relaxed);
        if status >= 500 {
            self.target_5xx.fetch_add(1, Relaxed);
        }
    }
    #[inline]
    pub(crate) fn elb_5xx(&self) {
        self.elb_5xx.fetch_add(1, Relaxed);
    }
    fn totals(&self) -> [u64; 5] {
        [
            self.requests.load(Relaxed),
            self.target_5xx.load(Relaxed),
            self.elb_5xx.load(Relaxed),
            self.response_micros.load(Relaxed),
            self.responses.load(Relaxed),
        ]
    }
}

#[derive(Debug)]
struct Entry {
    kind: Kind,
    name: String,
    counters: Arc<Counters>,
    /// Totals at the last minute boundary.
    last: [u64; 5],
    series: HashMap<Metric, VecDeque<Datapoint>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LoadBalancer,
    TargetGroup,
}

/// The metrics registry, shared by the proxy, the roller and `/metrics`. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    entries: Arc<RwLock<HashMap<String, Mutex<Entry>>>>,
}

impl Metrics {
    pub(crate) fn load_balancer(&self, arn: &str, name: &str) -> Arc<Counters> {
        self.counters(arn, name, Kind::LoadBalancer)
    }
    pub(crate) fn target_group(&self, arn: &str, name: &str) -> Arc<Counters> {
        self.counters(arn, name, Kind::TargetGroup)
    }

    fn counters(&self, arn: &str, name: &str, kind: Kind) -> Arc<Counters> {
        if let Some(e) = self.entries.read().unwrap_or_else(|e| e.into_inner()).get(arn) {
            return e.lock().unwrap_or_else(|e| e.into_inner()).counters.clone();
        }
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let e = map.entry(arn.to_string()).or_insert_with(|| {
            Mutex::new(Entry {
                kind,
                name: name.to_string(),
                counters: Arc::default(),
                last: [0; 5],
                series: HashMap::new(),
            })
        });
        e.get_mut().unwrap_or_else(|e| e.into_inner()).counters.clone()
    }

    /// Forgets load balancers and target groups that no longer exist.
    pub(crate) fn retain(&self, alive: impl Fn(&str) -> bool) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).retain(|arn, _| alive(arn));
    }

    /// Closes the minute starting at `minute` (Unix seconds): appends one datapoint per metric.
    pub(crate) fn roll(&self, minute: i64) {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        for e in map.values() {
            let mut e = e.lock().unwrap_or_else(|e| e.into_inner());
            let now = e.counters.totals();
            let d: Vec<u64> = now.iter().zip(e.last).map(|(n, l)| n.saturating_sub(l)).collect();
            e.last = now;
            let kind = e.kind;
            let (healthy, unhealthy) = (e.counters.healthy.load(Relaxed), e.counters.unhealthy.load(Relaxed));
            let series = &mut e.series;
            let mut push = |m: Metric, value: f64| {
                let s = series.entry(m).or_default();
                if s.len() == RETENTION_MINUTES {
                    s.pop_front();
                }
                s.push_back(Datapoint { minute, value });
            };
            push(Metric::RequestCount, d[0] as f64);
            push(Metric::TargetHttp5xx, d[1] as f64);
            push(Metric::ElbHttp5xx, d[2] as f64);
            if d[4] > 0 {
                push(Metric::TargetResponseTime, d[3] as f64 / d[4] as f64 / 1e6);
            }
            if kind == Kind::TargetGroup {
                push(Metric::HealthyHostCount, healthy as f64);
                push(Metric::UnHealthyHostCount, unhealthy as f64);
            }
        }
    }

    /// The completed per-minute datapoints of `metric` for a load balancer or target group
    /// (by ARN), oldest first; empty when unknown. `TargetResponseTime` has no datapoint for a
    /// minute without target responses, as in CloudWatch.
    pub fn series(&self, arn: &str, metric: Metric) -> Vec<Datapoint> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.get(arn)
            .and_then(|e| {
                e.lock().unwrap_or_else(|e| e.into_inner()).series.get(&metric).map(|s| s.iter().copied().collect())
            })
            .unwrap_or_default()
    }

    /// The running totals (requests, target 5xx, ELB 5xx) and live host counts of one
    /// resource, for tests and tools that cannot wait for a minute to close.
    pub fn totals(&self, arn: &str) -> Option<Totals> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.get(arn).map(|e| Totals::of(&e.lock().unwrap_or_else(|e| e.into_inner()).counters))
    }

    /// Every resource's totals in the Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut rows: Vec<(String, Kind, String, Totals)> = map
            .iter()
            .map(|(arn, e)| {
                let e = e.lock().unwrap_or_else(|e| e.into_inner());
                (arn.clone(), e.kind, e.name.clone(), Totals::of(&e.counters))
            })
            .collect();
        drop(map);
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        type Field = fn(&Totals) -> f64;
        let families: [(&str, &str, &str, Option<Kind>, Field); 8] = [
            ("requests_total", "counter", "Requests received (RequestCount).", None, |t| t.requests as f64),
            ("target_5xx_total", "counter", "5xx responses from targets (HTTPCode_Target_5XX_Count).", None, |t| {
                t.target_5xx as f64
            }),
            ("elb_5xx_total", "counter", "5xx responses from the load balancer (HTTPCode_ELB_5XX_Count).", None, |t| {
                t.elb_5xx as f64
            }),
            ("target_response_time_seconds_sum", "counter", "Sum of TargetResponseTime.", None, |t| {
                t.target_response_seconds
            }),
            ("target_response_time_seconds_count", "counter", "Target responses timed.", None, |t| {
                t.target_responses as f64
            }),
            ("healthy_hosts", "gauge", "Healthy targets (HealthyHostCount).", Some(Kind::TargetGroup), |t| {
                t.healthy as f64
            }),
            ("unhealthy_hosts", "gauge", "Unhealthy targets (UnHealthyHostCount).", Some(Kind::TargetGroup), |t| {
                t.unhealthy as f64
            }),
            ("up", "gauge", "1 for every load balancer and target group served.", None, |_| 1.0),
        ];
        for (kind, prefix, label) in [
            (Kind::LoadBalancer, "wharf_lb_", "load_balancer"),
            (Kind::TargetGroup, "wharf_lb_target_group_", "target_group"),
        ] {
            for (suffix, ty, help, only, field) in &families {
                if only.is_some_and(|k| k != kind) {
                    continue;
                }
                let _ = writeln!(out, "# HELP {prefix}{suffix} {help}");
                let _ = writeln!(out, "# TYPE {prefix}{suffix} {ty}");
                for (arn, k, name, t) in &rows {
                    if *k == kind {
                        let _ = writeln!(
                            out,
                            "{prefix}{suffix}{{{label}=\"{}\",arn=\"{}\"}} {}",
                            escape(name),
                            escape(arn),
                            field(t)
                        );
                    }
                }
            }
        }
        out
    }
}

/// Running totals of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    pub requests: u64,
    pub target_5xx: u64,
    pub elb_5xx: u64,
    pub target_responses: u64,
    pub target_response_seconds: f64,
    pub healthy: u64,
    pub unhealthy: u64,
}

impl Totals {
    fn of(c: &Counters) -> Totals {
        let t = c.totals();
        Totals {
            requests: t[0],
            target_5xx: t[1],
            elb_5xx: t[2],
            target_responses: t[4],
            target_response_seconds: t[3] as f64 / 1e6,
            healthy: c.healthy.load(Relaxed),
            unhealthy: c.unhealthy.load(Relaxed),
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_become_datapoints() {
        let m = Metrics::default();
        let tg = m.target_group("arn:tg", "web");
        for _ in 0..3 {
            tg.request();
        }
        tg.target_response(200_000, 200);
        tg.target_response(400_000, 503);
        tg.healthy.store(2, Relaxed);
        m.roll(60);
        tg.request();
        m.roll(120);
        let rc = m.series("arn:tg", Metric::RequestCount);
        assert_eq!(rc, vec![Datapoint { minute: 60, value: 3.0 }, Datapoint { minute: 120, value: 1.0 }]);
        let rt = m.series("arn:tg", Metric::TargetResponseTime);
        assert_eq!(rt.len(), 1);
        assert!((rt[0].value - 0.3).abs() < 1e-9);
        assert_eq!(m.series("arn:tg", Metric::TargetHttp5xx)[0].value, 1.0);
        assert_eq!(m.series("arn:tg", Metric::HealthyHostCount)[1].value, 2.0);
        let text = m.prometheus();
        assert!(text.contains("wharf_lb_target_group_requests_total{target_group=\"web\",arn=\"arn:tg\"} 4"), "{text}");
        assert!(text.contains("wharf_lb_target_group_healthy_hosts{target_group=\"web\",arn=\"arn:tg\"} 2"), "{text}");
    }
}
