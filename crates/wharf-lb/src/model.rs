//! The immutable routing snapshot one listener serves from, and the per-target runtime state
//! (health, in-flight requests, open connections, idle pool) that outlives snapshots.
//!
//! A snapshot is rebuilt from the store documents whenever they change and swapped in
//! atomically; requests never lock anything to read it. Target selection reads only atomics.

use crate::metrics::Counters;
use crate::proxy::Upstream;
use crate::rules::Cond;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::{HeaderValue, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

/// Idle keep-alive connections kept per target.
pub const POOL_PER_TARGET: usize = 512;

/// What health checks concluded about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    Initial = 0,
    Healthy = 1,
    Unhealthy = 2,
    /// Health checks are disabled: the target gets traffic.
    Unavailable = 3,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            3 => Health::Unavailable,
            _ => Health::Initial,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Initial => "initial",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Unavailable => "unavailable",
        }
    }
    pub fn parse(s: &str) -> Option<Health> {
        Some(match s {
            "initial" => Health::Initial,
            "healthy" => Health::Healthy,
            "unhealthy" => Health::Unhealthy,
            "unavailable" => Health::Unavailable,
            _ => return None,
        })
    }
}

/// One registered target's live state. Shared by every snapshot that contains the target.
#[derive(Debug)]
pub struct TargetRt {
    /// The store key of the `Target` document.
    pub key: String,
    /// The store key of its `TargetHealth` document.
    pub health_key: String,
    pub addr: SocketAddr,
    /// The `registered_at` of the registration this state belongs to.
    pub registered_at: f64,
    /// The id stickiness cookies carry.
    pub sticky: u64,
    health: AtomicU8,
    /// When the target last became healthy (ms on the plane's clock), for slow start.
    pub healthy_since_ms: AtomicU64,
    pub inflight: AtomicUsize,
    /// Open connections to the target: pooled, busy and upgraded (websocket) ones.
    pub conns: Arc<AtomicUsize>,
    pub draining: AtomicBool,
    /// Boxed: a connection moves in and out of the pool and through responses often.
    pub idle: ArrayQueue<Box<Upstream>>,
}

impl TargetRt {
    pub fn new(key: String, health_key: String, addr: SocketAddr, registered_at: f64, health: Health) -> TargetRt {
        TargetRt {
            sticky: fnv(key.as_bytes()),
            key,
            health_key,
            addr,
            registered_at,
            health: AtomicU8::new(health as u8),
            healthy_since_ms: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            conns: Arc::new(AtomicUsize::new(0)),
            draining: AtomicBool::new(false),
            idle: ArrayQueue::new(POOL_PER_TARGET),
        }
    }
    #[inline]
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Relaxed))
    }
    pub fn set_health(&self, h: Health, now_ms: u64) {
        let old = self.health.swap(h as u8, Relaxed);
        if h == Health::Healthy && old != h as u8 {
            self.healthy_since_ms.store(now_ms, Relaxed);
        }
    }
    /// Gets traffic when some target of its group is serving.
    #[inline]
    fn serving(&self) -> bool {
        matches!(self.health(), Health::Healthy | Health::Unavailable) && !self.draining.load(Relaxed)
    }
    /// Takes the target out of service for new requests; true when it was serving until now.
    ///
    /// Sequentially consistent, paired with [`crate::proxy::Lease::claim`]: a request either
    /// sees the flag (and picks another target) or is already counted in `inflight` when the
    /// plane reads it in [`TargetRt::idle`], so a drain never ends under a request that was
    /// about to be sent.
    pub fn begin_draining(&self) -> bool {
        !self.draining.swap(true, SeqCst)
    }
    /// Back in service (registered again).
    pub fn end_draining(&self) {
        self.draining.store(false, SeqCst);
    }
    /// No request holds the target and no connection to it is open.
    pub fn idle(&self) -> bool {
        self.inflight.load(SeqCst) == 0 && self.conns.load(SeqCst) == 0
    }
    /// Drops every idle pooled connection (their tasks end and `conns` drops).
    pub fn close_idle(&self) {
        while self.idle.pop().is_some() {}
    }
}

/// 64-bit FNV-1a: a stable, dependency-free id for cookies.
pub fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ u64::from(c)).wrapping_mul(0x0100_0000_01b3))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    LeastOutstanding,
}

/// A target group as one snapshot sees it.
#[derive(Debug)]
pub struct Group {
    pub arn: String,
    pub name: String,
    pub algorithm: Algorithm,
    /// `lb_cookie` stickiness duration.
    pub stickiness: Option<Duration>,
    pub slow_start_ms: u64,
    pub targets: Vec<Arc<TargetRt>>,
    /// Round-robin position, kept across snapshots.
    pub cursor: Arc<AtomicUsize>,
    pub metrics: Arc<Counters>,
}

impl Group {
    /// The next target for a new request: healthy ones by the group's algorithm (slow start
    /// ramping new ones in), or every non-draining one when none is healthy (fail-open).
    pub fn pick(&self, now_ms: u64) -> Option<&Arc<TargetRt>> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Relaxed) % n;
        let chosen = match self.algorithm {
            Algorithm::RoundRobin => self.round_robin(start, now_ms),
            Algorithm::LeastOutstanding => self.least_outstanding(start, TargetRt::serving),
        };
        chosen.or_else(|| match self.algorithm {
            Algorithm::RoundRobin => (0..n).map(|i| &self.targets[(start + i) % n]).find(|t| !t.draining.load(Relaxed)),
            Algorithm::LeastOutstanding => self.least_outstanding(start, |t| !t.draining.load(Relaxed)),
        })
    }

    fn round_robin(&self, start: usize, now_ms: u64) -> Option<&Arc<TargetRt>> {
        let n = self.targets.len();
        let mut fallback = None;
        for i in 0..n {
            let t = &self.targets[(start + i) % n];
            if !t.serving() {
                continue;
            }
            if self.slow_start_ms > 0 {
                // Linear ramp: a target `f` of the way through slow start takes a request
                // with probability `f`; passed over, the request goes to the next one.
                let since = t.healthy_since_ms.load(Relaxed);
                let age = now_ms.saturating_sub(since);
                if since != 0 && age < self.slow_start_ms && fastrand::u64(0..self.slow_start_ms) >= age {
                    fallback.get_or_insert(t);
                    continue;
                }
            }
            return Some(t);
        }
        fallback
    }

    fn least_outstanding(&self, start: usize, eligible: fn(&TargetRt) -> bool) -> Option<&Arc<TargetRt>> {
        let n = self.targets.len();
        let mut best: Option<&Arc<TargetRt>> = None;
        for i in 0..n {
            let t = &self.targets[(start + i) % n];
            if eligible(t) && best.is_none_or(|b| t.inflight.load(Relaxed) < b.inflight.load(Relaxed)) {
                best = Some(t);
            }
        }
        best
    }

    /// The target a stickiness cookie names, when it can still take the request.
    pub fn sticky(&self, id: u64) -> Option<&Arc<TargetRt>> {
        let t = self.targets.iter().find(|t| t.sticky == id)?;
        if t.draining.load(Relaxed) {
            return None;
        }
        if t.serving() || !self.targets.iter().any(|o| o.serving()) { Some(t) } else { None }
    }
}

#[derive(Debug)]
pub struct Forward {
    pub groups: Vec<(Arc<Group>, u32)>,
    pub total_weight: u32,
    /// Target-group stickiness of a weighted forward (`AWSALBTG`).
    pub group_stickiness: Option<Duration>,
}

impl Forward {
    /// A group by weight (groups of weight 0 get nothing).
    pub fn pick_group(&self) -> Option<&Arc<Group>> {
        if self.groups.len() == 1 {
            return Some(&self.groups[0].0);
        }
        if self.total_weight == 0 {
            return None;
        }
        let mut r = fastrand::u32(0..self.total_weight);
        for (g, w) in &self.groups {
            if r < *w {
                return Some(g);
            }
            r -= w;
        }
        None
    }
}

#[derive(Debug)]
pub struct Redirect {
    pub protocol: String,
    pub port: String,
    pub host: String,
    pub path: String,
    pub query: String,
    pub status: StatusCode,
}

#[derive(Debug)]
pub struct Fixed {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

#[derive(Debug)]
pub enum Act {
    Forward(Forward),
    Redirect(Redirect),
    Fixed(Fixed),
}

#[derive(Debug)]
pub struct CompiledRule {
    pub priority: u32,
    pub conds: Vec<Cond>,
    pub action: Act,
}

/// The load balancer a listener belongs to.
#[derive(Debug)]
pub struct LbInfo {
    pub arn: String,
    pub name: String,
    /// `idle_timeout.timeout_seconds`: also how long a target may take to answer (504 after).
    pub idle_timeout: Duration,
    pub metrics: Arc<Counters>,
}

/// Everything one listener needs to serve a request, immutable.
#[derive(Debug)]
pub struct ListenerTable {
    pub arn: String,
    pub port: u16,
    pub https: bool,
    /// The default certificate of an HTTPS listener.
    pub certificate: Option<String>,
    pub lb: LbInfo,
    /// By priority; the listener's default actions last (no conditions).
    pub rules: Vec<CompiledRule>,
    pub port_value: HeaderValue,
}
