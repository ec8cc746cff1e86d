//! CloudWatch-shaped metrics of the data plane, per load balancer and per target group.
//!
//! The proxy only bumps atomic counters (no lock, no allocation per request). Once a minute a
//! roller turns the counters' deltas into per-minute datapoints (kept for a day), read through
//! [`Metrics::series`]; every sampling interval the control plane takes each resource's
//! deltas since the previous take ([`Metrics::take_intervals`]) and publishes them to its
//! metric store as CloudWatch's `AWS/ApplicationELB` metrics ([`crate::cloudwatch`]);
//! [`Metrics::prometheus`] renders the running totals in the Prometheus text format for
//! `/metrics`. The three readers keep their own baselines, so none takes counts from another.

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
#[derive(Debug)]
pub struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) target_5xx: AtomicU64,
    pub(crate) elb_5xx: AtomicU64,
    pub(crate) response_micros: AtomicU64,
    pub(crate) responses: AtomicU64,
    pub(crate) healthy: AtomicU64,
    pub(crate) unhealthy: AtomicU64,
    /// Registered targets that are not draining (any health).
    pub(crate) registered: AtomicU64,
    /// The fastest and slowest target response since the last take, in microseconds
    /// (`u64::MAX` and 0 when there was none).
    response_min_micros: AtomicU64,
    response_max_micros: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            requests: AtomicU64::new(0),
            target_5xx: AtomicU64::new(0),
            elb_5xx: AtomicU64::new(0),
            response_micros: AtomicU64::new(0),
            responses: AtomicU64::new(0),
            healthy: AtomicU64::new(0),
            unhealthy: AtomicU64::new(0),
            registered: AtomicU64::new(0),
            response_min_micros: AtomicU64::new(u64::MAX),
            response_max_micros: AtomicU64::new(0),
        }
    }
}

impl Counters {
    #[inline]
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }
    #[inline]
    pub(crate) fn target_response(&self, micros: u64, status: u16) {
        self.response_micros.fetch_add(micros, Relaxed);
        self.response_min_micros.fetch_min(micros, Relaxed);
        self.response_max_micros.fetch_max(micros, Relaxed);
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
    /// Totals at the last [`Metrics::take_intervals`].
    taken: [u64; 5],
    /// A target group's load balancer: the one whose listeners forward to it (ELBv2 lets a
    /// target group serve one load balancer only).
    load_balancer: Option<String>,
    series: HashMap<Metric, VecDeque<Datapoint>>,
}

impl Entry {
    /// What happened since the last take, and the host gauges now; moves the baseline.
    fn take(&mut self, arn: &str) -> Interval {
        let c = &self.counters;
        // A response timed while this runs may land in one interval's bounds and the next
        // one's sum: the bounds are exact but for such a response at the edge.
        let (min, max) = (c.response_min_micros.swap(u64::MAX, Relaxed), c.response_max_micros.swap(0, Relaxed));
        let now = c.totals();
        let d: Vec<u64> = now.iter().zip(self.taken).map(|(n, l)| n.saturating_sub(l)).collect();
        self.taken = now;
        let responses = d[4];
        let mean = if responses > 0 { d[3] as f64 / responses as f64 / 1e6 } else { 0.0 };
        // Bounds missed to that edge: the mean is the one time known.
        let (min, max) = if min == u64::MAX { (mean, mean) } else { (min as f64 / 1e6, max as f64 / 1e6) };
        Interval {
            arn: arn.to_string(),
            kind: self.kind,
            load_balancer: self.load_balancer.clone(),
            requests: d[0],
            target_5xx: d[1],
            elb_5xx: d[2],
            responses,
            response_seconds: d[3] as f64 / 1e6,
            response_min_seconds: if responses > 0 { min } else { 0.0 },
            response_max_seconds: if responses > 0 { max } else { 0.0 },
            healthy: c.healthy.load(Relaxed),
            unhealthy: c.unhealthy.load(Relaxed),
            registered: c.registered.load(Relaxed),
        }
    }
}

/// Whether a resource is a load balancer or a target group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    LoadBalancer,
    TargetGroup,
}

/// What one load balancer or target group did over one sampling interval: its counters'
/// growth since the previous [`Metrics::take_intervals`], and its host gauges at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub arn: String,
    pub kind: Kind,
    /// A target group's load balancer (`None`: no listener forwards to it).
    pub load_balancer: Option<String>,
    /// Requests received (a target group: forwarded to it, once each whatever the retries).
    pub requests: u64,
    pub target_5xx: u64,
    pub elb_5xx: u64,
    /// Target responses timed, their total, fastest and slowest time.
    pub responses: u64,
    pub response_seconds: f64,
    pub response_min_seconds: f64,
    pub response_max_seconds: f64,
    pub healthy: u64,
    pub unhealthy: u64,
    pub registered: u64,
}

/// The metrics registry, shared by the proxy, the roller and `/metrics`. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    entries: Arc<RwLock<HashMap<String, Mutex<Entry>>>>,
    /// The last intervals of resources deleted since the last take (their final counts are
    /// published, not lost).
    retired: Arc<Mutex<Vec<Interval>>>,
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
                taken: [0; 5],
                load_balancer: None,
                series: HashMap::new(),
            })
        });
        e.get_mut().unwrap_or_else(|e| e.into_inner()).counters.clone()
    }

    /// Forgets load balancers and target groups that no longer exist (keeping what they did
    /// since the last take for the next one).
    pub(crate) fn retain(&self, alive: impl Fn(&str) -> bool) {
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = map.keys().filter(|arn| !alive(arn)).cloned().collect();
        if gone.is_empty() {
            return;
        }
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        for arn in gone {
            if let Some(e) = map.remove(&arn) {
                let last = e.into_inner().unwrap_or_else(|e| e.into_inner()).take(&arn);
                if last.requests > 0 || last.responses > 0 || last.elb_5xx > 0 {
                    retired.push(last);
                }
            }
        }
    }

    /// Records which load balancer each target group serves (target group ARN → load
    /// balancer ARN); groups not in `lbs` serve none.
    pub(crate) fn set_load_balancers(&self, lbs: &HashMap<String, String>) {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        for (arn, e) in map.iter() {
            let mut e = e.lock().unwrap_or_else(|e| e.into_inner());
            if e.kind == Kind::TargetGroup {
                e.load_balancer = lbs.get(arn).cloned();
            }
        }
    }

    /// Every resource's interval since the previous call (the first: since it appeared), and
    /// the final ones of resources deleted meanwhile. Each request is in exactly one
    /// interval: the baseline moves to exactly the totals reported.
    pub fn take_intervals(&self) -> Vec<Interval> {
        let mut out = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()));
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        for (arn, e) in map.iter() {
            out.push(e.lock().unwrap_or_else(|e| e.into_inner()).take(arn));
        }
        out.sort_by(|a, b| a.arn.cmp(&b.arn));
        out
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

    #[test]
    fn intervals_are_deltas_that_lose_no_request() {
        let m = Metrics::default();
        let lb = m.load_balancer("arn:lb", "front");
        let tg = m.target_group("arn:tg", "web");
        m.set_load_balancers(&[("arn:tg".to_string(), "arn:lb".to_string())].into());
        let first = m.take_intervals();
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|i| i.requests == 0 && i.responses == 0));
        let mut sent = 0;
        for round in 1..=3u64 {
            for _ in 0..round * 10 {
                lb.request();
                tg.request();
                sent += 1;
            }
            tg.target_response(1_000 * round, 200);
            tg.target_response(3_000 * round, 502);
            tg.healthy.store(round, Relaxed);
            // The minute roller and the interval taker keep separate baselines.
            m.roll(60 * round as i64);
            let t = m.take_intervals().into_iter().find(|i| i.arn == "arn:tg").unwrap();
            assert_eq!(t.requests, round * 10);
            assert_eq!(t.load_balancer.as_deref(), Some("arn:lb"));
            assert_eq!((t.responses, t.target_5xx, t.healthy), (2, 1, round));
            assert!((t.response_seconds - 0.004 * round as f64).abs() < 1e-12);
            assert_eq!(
                (t.response_min_seconds, t.response_max_seconds),
                ((1_000 * round) as f64 / 1e6, (3_000 * round) as f64 / 1e6)
            );
        }
        // An interval without responses has no response times.
        let quiet = m.take_intervals().into_iter().find(|i| i.arn == "arn:tg").unwrap();
        assert_eq!((quiet.requests, quiet.responses, quiet.response_max_seconds), (0, 0, 0.0));
        // A group deleted between two takes still reports what it did before.
        tg.request();
        m.retain(|arn| arn == "arn:lb");
        let last = m.take_intervals();
        assert_eq!(last.iter().find(|i| i.arn == "arn:tg").map(|i| i.requests), Some(1));
        assert!(m.take_intervals().iter().all(|i| i.arn != "arn:tg"));
        assert_eq!(m.totals("arn:lb").unwrap().requests, sent);
    }
}
