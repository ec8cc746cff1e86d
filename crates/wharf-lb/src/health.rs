//! Active health checks: one probe loop per registered target, with its group's interval,
//! timeout, thresholds, path, port and matcher.
//!
//! A target starts `initial`; `HealthyThresholdCount` consecutive successes make it `healthy`,
//! `UnhealthyThresholdCount` consecutive failures `unhealthy` (reason `Target.Timeout`,
//! `Target.ResponseCodeMismatch` or `Target.FailedHealthChecks`, as ALB reports). A
//! `TargetHealth` document is written only on a transition, never per probe, and only while
//! the target is still registered (the write compares the target's revision) by the same
//! registration (its `registered_at`).

use crate::model::{Health, TargetRt};
use crate::proxy::now_ms;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_store::{Compare, Op, Store, Txn};
use wharf_types::elb::{HealthCheck, Target, TargetHealth};

/// What one target's probe loop does; a change restarts the loop.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSpec {
    pub enabled: bool,
    pub addr: SocketAddr,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub matcher: Vec<(u16, u16)>,
    pub matcher_text: String,
}

impl ProbeSpec {
    pub fn new(hc: &HealthCheck, target: SocketAddr) -> ProbeSpec {
        let port = hc.port.parse::<u16>().unwrap_or(target.port());
        let matcher: Vec<(u16, u16)> = hc
            .http_code
            .split(',')
            .filter_map(|part| {
                let part = part.trim();
                match part.split_once('-') {
                    Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                    None => part.parse().ok().map(|c| (c, c)),
                }
            })
            .collect();
        ProbeSpec {
            enabled: hc.enabled,
            addr: SocketAddr::new(target.ip(), port),
            path: if hc.path.starts_with('/') { hc.path.clone() } else { "/".to_string() },
            interval: Duration::from_secs(u64::from(hc.interval_seconds.max(1))),
            timeout: Duration::from_secs(u64::from(hc.timeout_seconds.max(1))),
            healthy_threshold: hc.healthy_threshold_count.max(1),
            unhealthy_threshold: hc.unhealthy_threshold_count.max(1),
            matcher: if matcher.is_empty() { vec![(200, 200)] } else { matcher },
            matcher_text: hc.http_code.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeFailure {
    Timeout,
    Code(u16),
    Connection(String),
}

impl ProbeFailure {
    fn reason(&self) -> (&'static str, String) {
        match self {
            ProbeFailure::Timeout => ("Target.Timeout", "Request timed out".to_string()),
            ProbeFailure::Code(c) => {
                ("Target.ResponseCodeMismatch", format!("Health checks failed with these codes: [{c}]"))
            }
            ProbeFailure::Connection(e) => ("Target.FailedHealthChecks", format!("Health checks failed: {e}")),
        }
    }
}

/// One health-check request on a fresh connection (as ALB does), `Connection: close`.
pub async fn probe(spec: &ProbeSpec) -> Result<(), ProbeFailure> {
    let attempt = async {
        let mut s =
            tokio::net::TcpStream::connect(spec.addr).await.map_err(|e| ProbeFailure::Connection(e.to_string()))?;
        let _ = s.set_nodelay(true);
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ELB-HealthChecker/2.0\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            spec.path, spec.addr
        );
        s.write_all(req.as_bytes()).await.map_err(|e| ProbeFailure::Connection(e.to_string()))?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let r = s.read(&mut buf[n..]).await.map_err(|e| ProbeFailure::Connection(e.to_string()))?;
            if r == 0 {
                return Err(ProbeFailure::Connection("connection closed before a response".into()));
            }
            n += r;
        }
        let line = &buf[..n];
        if !line.starts_with(b"HTTP/1.") || line[8] != b' ' {
            return Err(ProbeFailure::Connection("the response is not HTTP".into()));
        }
        let code = std::str::from_utf8(&line[9..12])
            .ok()
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| ProbeFailure::Connection("the response has no status code".into()))?;
        if spec.matcher.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code)) {
            Ok(())
        } else {
            Err(ProbeFailure::Code(code))
        }
    };
    match tokio::time::timeout(spec.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(ProbeFailure::Timeout),
    }
}

/// The probe loop of one target; ends when its task is aborted (target gone or spec changed).
pub async fn run<S: Store>(store: S, target: Arc<TargetRt>, spec: ProbeSpec) {
    if !spec.enabled {
        if target.health() != Health::Unavailable {
            target.set_health(Health::Unavailable, now_ms());
            let doc =
                doc(Health::Unavailable, Some(("Target.HealthCheckDisabled", "Health checks are disabled".into())));
            write(&store, &target, doc).await;
        }
        return;
    }
    let (mut ok, mut failed) = (0u32, 0u32);
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = probe(&spec).await;
        let current = target.health();
        let next = match &outcome {
            Ok(()) => {
                ok += 1;
                failed = 0;
                (current != Health::Healthy && ok >= spec.healthy_threshold).then_some(Health::Healthy)
            }
            Err(_) => {
                failed += 1;
                ok = 0;
                (current != Health::Unhealthy && failed >= spec.unhealthy_threshold).then_some(Health::Unhealthy)
            }
        };
        if let Some(next) = next {
            target.set_health(next, now_ms());
            let reason = outcome.as_ref().err().map(ProbeFailure::reason);
            tracing::info!(target = %target.key, from = current.as_str(), to = next.as_str(), reason = ?reason, "target health changed");
            write(&store, &target, doc(next, reason)).await;
        }
    }
}

fn doc(state: Health, reason: Option<(&'static str, String)>) -> TargetHealth {
    let (reason, description) = match reason {
        Some((r, d)) => (Some(r.to_string()), Some(d)),
        None => (None, None),
    };
    TargetHealth { state: state.as_str().to_string(), reason, description, updated_at: wharf_types::now() }
}

/// Writes the health document while the target is registered (compare on its revision).
async fn write<S: Store>(store: &S, target: &TargetRt, doc: TargetHealth) {
    let Ok(value) = serde_json::to_vec(&doc) else { return };
    for _ in 0..3 {
        let rev = match store.get(&target.key).await {
            // Only for the registration this probe loop belongs to.
            Ok(Some(kv))
                if serde_json::from_slice::<Target>(&kv.value)
                    .is_ok_and(|t| t.registered_at == target.registered_at) =>
            {
                kv.mod_revision
            }
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, key = %target.health_key, "cannot read the target to record its health");
                return;
            }
        };
        let txn = Txn {
            compares: vec![Compare::ModRevision(target.key.clone(), rev)],
            ops: vec![Op::put(target.health_key.clone(), value.clone())],
        };
        match store.txn(txn).await {
            Ok(r) if r.succeeded => return,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, key = %target.health_key, "cannot record target health");
                return;
            }
        }
    }
}
