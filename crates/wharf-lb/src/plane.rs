//! The follower: lists `/elb/` once, then watches it, rebuilds the routing snapshots on every
//! change and reconciles what runs with what the documents say — listeners bound or closed,
//! probe loops started or stopped, draining targets removed when done.
//!
//! It owns every write the data plane makes to the store (health documents, removal of
//! drained targets); the request path never touches the store.

use crate::health::{self, ProbeSpec};
use crate::metrics::Metrics;
use crate::model::{
    Act, Algorithm, CompiledRule, Fixed, Forward, Group, Health, LbInfo, ListenerTable, Redirect, TargetRt,
};
use crate::proxy::{self, ConnCtx};
use crate::{Config, ListenerStatus};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wharf_store::{Compare, EventKind, KeyValue, Op, RangeRequest, Revision, Store, Txn};
use wharf_types::elb::{self, Action, Listener, LoadBalancer, Rule, Target, TargetGroup, TargetHealth};

/// How often draining targets, host counts and the metrics minute are looked at.
const TICK: Duration = Duration::from_millis(250);
/// How often a listener whose port could not be bound tries again.
const REBIND_EVERY: Duration = Duration::from_secs(5);

struct Running {
    port: u16,
    https: bool,
    certificate: Option<String>,
    table: Arc<ArcSwap<ListenerTable>>,
    stop: watch::Sender<bool>,
}

struct Probe {
    spec: ProbeSpec,
    /// The registration it probes for.
    target: Arc<TargetRt>,
    task: JoinHandle<()>,
}

/// The threads listeners serve on: one single-threaded runtime per core, each accepting on
/// its own `SO_REUSEPORT` socket of every listener, so a connection and its target
/// connections live on one thread (no work stealing, no wake-ups across threads).
pub(crate) struct Workers {
    handles: Vec<tokio::runtime::Handle>,
}

impl Workers {
    pub(crate) fn start(shutdown: &watch::Receiver<bool>) -> Workers {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 64);
        let mut handles = Vec::new();
        for i in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            let mut shutdown = shutdown.clone();
            let spawned = std::thread::Builder::new().name(format!("wharf-lb-{i}")).spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a load balancer thread");
                        return;
                    }
                };
                let _ = tx.send(rt.handle().clone());
                rt.block_on(async move {
                    while !*shutdown.borrow() {
                        if shutdown.changed().await.is_err() {
                            break;
                        }
                    }
                });
            });
            if spawned.is_ok()
                && let Ok(h) = rx.recv()
            {
                handles.push(h);
            }
        }
        if handles.is_empty() {
            handles.push(tokio::runtime::Handle::current());
        }
        Workers { handles }
    }
}

pub(crate) struct Plane<S: Store + Clone> {
    workers: Workers,
    store: S,
    config: Config,
    metrics: Metrics,
    status: Arc<Mutex<BTreeMap<String, ListenerStatus>>>,
    lbs: HashMap<String, LoadBalancer>,
    tgs: HashMap<String, TargetGroup>,
    listeners: HashMap<String, Listener>,
    rules: HashMap<String, Rule>,
    targets: HashMap<String, (Target, Revision)>,
    health: HashMap<String, TargetHealth>,
    /// `<account>/<region>/<ec2InstanceId>` → the container instance's address.
    addresses: HashMap<String, IpAddr>,
    rts: HashMap<String, Arc<TargetRt>>,
    probes: HashMap<String, Probe>,
    cursors: HashMap<String, Arc<AtomicUsize>>,
    running: HashMap<String, Running>,
    /// Listener ARN → the last bind error logged (logged once per distinct error).
    bind_errors: HashMap<String, String>,
    /// Drained targets whose deletion was written (the watch event has not arrived yet).
    removing: HashSet<String>,
    /// Health documents being deleted.
    unhealthing: HashSet<String>,
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Option<T> {
    match serde_json::from_slice(&kv.value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(key = %kv.key, error = %e, "ignoring an unreadable load balancer document");
            None
        }
    }
}

/// Where instance targets' published ports are reachable: the `Address` of the document the
/// container instance's registration writes at `/elb/instance-address/<account>/<region>/<id>`.
const INSTANCE_ADDRESS_PREFIX: &str = "/elb/instance-address/";

/// The host address of a target. `ip` targets are their id; `instance` targets are their
/// container instance's address (`addresses`: `<account>/<region>/<ec2InstanceId>` → IP), or
/// this machine until it is known (the embedded agent publishes ports here).
pub fn resolve_target_ip(target_key: &str, target: &Target, addresses: &HashMap<String, IpAddr>) -> IpAddr {
    if let Ok(ip) = target.id.parse() {
        return ip;
    }
    let scope = target_key.strip_prefix("/elb/target/").and_then(|rest| {
        let mut it = rest.splitn(3, '/');
        Some((it.next()?, it.next()?))
    });
    scope
        .and_then(|(account, region)| addresses.get(&format!("{account}/{region}/{}", target.id)).copied())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

impl<S: Store + Clone> Plane<S> {
    pub(crate) fn new(
        workers: Workers,
        store: S,
        config: Config,
        metrics: Metrics,
        status: Arc<Mutex<BTreeMap<String, ListenerStatus>>>,
    ) -> Self {
        Plane {
            workers,
            store,
            config,
            metrics,
            status,
            lbs: HashMap::new(),
            tgs: HashMap::new(),
            listeners: HashMap::new(),
            rules: HashMap::new(),
            targets: HashMap::new(),
            health: HashMap::new(),
            addresses: HashMap::new(),
            rts: HashMap::new(),
            probes: HashMap::new(),
            cursors: HashMap::new(),
            running: HashMap::new(),
            bind_errors: HashMap::new(),
            removing: HashSet::new(),
            unhealthing: HashSet::new(),
        }
    }

    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_minute = wharf_types::now() as i64 / 60;
        let mut last_rebind = tokio::time::Instant::now();
        'relist: loop {
            let listed = loop {
                match self.store.range(RangeRequest { prefix: elb::keys::ROOT.into(), ..Default::default() }).await {
                    Ok(r) => break r,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list the load balancer documents; retrying");
                        tokio::select! {
                            _ = shutdown.changed() => { self.stop_all(); return; }
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            };
            self.reset();
            for kv in &listed.kvs {
                self.apply_put(kv);
            }
            self.rebuild();
            let mut watch = match self.store.watch(elb::keys::ROOT, listed.revision) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the load balancer documents");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue 'relist;
                }
            };
            loop {
                tokio::select! {
                    _ = shutdown.changed() => { self.stop_all(); return; }
                    ev = watch.next() => match ev {
                        Some(Ok(events)) => {
                            let mut routing = false;
                            for e in &events {
                                routing |= !e.kv.key.starts_with("/elb/health/");
                                match e.kind {
                                    EventKind::Put => self.apply_put(&e.kv),
                                    EventKind::Delete => self.apply_delete(&e.kv.key),
                                }
                            }
                            if routing {
                                self.rebuild();
                            }
                        }
                        Some(Err(e)) => {
                            tracing::info!(error = %e, "load balancer watch fell behind; listing again");
                            continue 'relist;
                        }
                        None => { self.stop_all(); return; }
                    },
                    _ = ticker.tick() => {
                        self.drain().await;
                        self.count_hosts();
                        let minute = wharf_types::now() as i64 / 60;
                        if minute != last_minute {
                            self.metrics.roll(last_minute * 60);
                            last_minute = minute;
                        }
                        if !self.bind_errors.is_empty() && last_rebind.elapsed() >= REBIND_EVERY {
                            last_rebind = tokio::time::Instant::now();
                            self.rebuild();
                        }
                    }
                }
            }
        }
    }

    fn reset(&mut self) {
        self.lbs.clear();
        self.tgs.clear();
        self.listeners.clear();
        self.rules.clear();
        self.targets.clear();
        self.health.clear();
        self.addresses.clear();
    }

    fn apply_put(&mut self, kv: &KeyValue) {
        let k = kv.key.clone();
        let kind = kv.key.strip_prefix(elb::keys::ROOT).and_then(|r| r.split('/').next()).unwrap_or("");
        match kind {
            "lb" => {
                if let Some(d) = decode(kv) {
                    self.lbs.insert(k, d);
                }
            }
            "tg" => {
                if let Some(d) = decode(kv) {
                    self.tgs.insert(k, d);
                }
            }
            "listener" => {
                if let Some(d) = decode(kv) {
                    self.listeners.insert(k, d);
                }
            }
            "rule" => {
                if let Some(d) = decode(kv) {
                    self.rules.insert(k, d);
                }
            }
            "target" => {
                if let Some(d) = decode(kv) {
                    self.targets.insert(k, (d, kv.mod_revision));
                }
            }
            "health" => {
                if let Some(d) = decode(kv) {
                    self.health.insert(k, d);
                }
            }
            "instance-address" => {
                let id = kv.key.strip_prefix(INSTANCE_ADDRESS_PREFIX).unwrap_or_default().to_string();
                let doc: Option<Value> = decode(kv);
                match doc.as_ref().and_then(|d| d.get("Address")).and_then(Value::as_str).map(str::parse::<IpAddr>) {
                    Some(Ok(ip)) => {
                        self.addresses.insert(id, ip);
                    }
                    _ => tracing::warn!(key = %kv.key, "instance address without a usable Address"),
                }
            }
            _ => {}
        }
    }

    fn apply_delete(&mut self, key: &str) {
        self.lbs.remove(key);
        self.tgs.remove(key);
        self.listeners.remove(key);
        self.rules.remove(key);
        if self.targets.remove(key).is_some() {
            self.removing.remove(key);
        }
        if let Some(id) = key.strip_prefix(INSTANCE_ADDRESS_PREFIX) {
            self.addresses.remove(id);
        }
        if self.health.remove(key).is_some() {
            self.unhealthing.remove(key);
        }
    }

    /// Rebuilds every snapshot from the documents and reconciles what runs.
    fn rebuild(&mut self) {
        let tg_by_arn: HashMap<&str, &TargetGroup> =
            self.tgs.values().map(|tg| (tg.target_group_arn.as_str(), tg)).collect();

        // Targets: runtime state kept by key, probes started/stopped/restarted.
        let mut members: HashMap<&str, Vec<Arc<TargetRt>>> = HashMap::new();
        let mut keys: Vec<&String> = self.targets.keys().collect();
        keys.sort();
        let mut alive = HashSet::new();
        for key in keys {
            let (t, _) = &self.targets[key];
            let Some(tg) = tg_by_arn.get(t.target_group_arn.as_str()) else { continue };
            let addr = SocketAddr::new(resolve_target_ip(key, t, &self.addresses), t.port);
            let health_key = key.replacen("/elb/target/", "/elb/health/", 1);
            // One runtime state per registration: a target registered again at the same key
            // (an awsvpc task given the address a stopped task had) starts afresh.
            let rt = match self.rts.get(key) {
                Some(rt) if rt.addr == addr && rt.registered_at == t.registered_at => rt.clone(),
                _ => {
                    // What a health document says counts only if it was written during this
                    // registration.
                    let initial = self
                        .health
                        .get(&health_key)
                        .filter(|h| h.updated_at >= t.registered_at)
                        .and_then(|h| Health::parse(&h.state))
                        .unwrap_or(Health::Initial);
                    let rt = Arc::new(TargetRt::new(key.clone(), health_key, addr, t.registered_at, initial));
                    if initial == Health::Healthy {
                        rt.healthy_since_ms.store(1, Relaxed);
                    }
                    if let Some(old) = self.rts.insert(key.clone(), rt.clone()) {
                        old.begin_draining();
                        old.close_idle();
                    }
                    rt
                }
            };
            if t.draining_since.is_none() {
                rt.end_draining();
            } else if rt.begin_draining() {
                rt.close_idle();
            }
            let spec = ProbeSpec::new(&tg.health_check, addr);
            if self.probes.get(key).is_none_or(|p| p.spec != spec || !Arc::ptr_eq(&p.target, &rt)) {
                if let Some(old) = self.probes.remove(key) {
                    old.task.abort();
                }
                let task = tokio::spawn(health::run(self.store.clone(), rt.clone(), spec.clone()));
                self.probes.insert(key.clone(), Probe { spec, target: rt.clone(), task });
            }
            alive.insert(key.clone());
            members.entry(tg.target_group_arn.as_str()).or_default().push(rt);
        }
        self.rts.retain(|k, rt| {
            let keep = alive.contains(k);
            if !keep {
                rt.begin_draining();
                rt.close_idle();
            }
            keep
        });
        self.probes.retain(|k, p| {
            let keep = alive.contains(k);
            if !keep {
                p.task.abort();
            }
            keep
        });
        // Health documents of targets that are gone.
        let orphans: Vec<String> = self
            .health
            .keys()
            .filter(|h| {
                let t = h.replacen("/elb/health/", "/elb/target/", 1);
                !self.targets.contains_key(&t) && !self.unhealthing.contains(*h)
            })
            .cloned()
            .collect();
        for h in orphans {
            self.unhealthing.insert(h.clone());
            let store = self.store.clone();
            tokio::spawn(async move {
                let _ = store.txn(Txn { compares: vec![], ops: vec![Op::delete(h)] }).await;
            });
        }

        // Target groups.
        let mut groups: HashMap<String, Arc<Group>> = HashMap::new();
        for tg in self.tgs.values() {
            let arn = tg.target_group_arn.clone();
            let cursor = self.cursors.entry(arn.clone()).or_default().clone();
            let stickiness = (tg.attributes.get("stickiness.enabled").is_some_and(|v| v == "true")
                && tg.attributes.get("stickiness.type").is_none_or(|t| t == "lb_cookie"))
            .then(|| {
                Duration::from_secs(
                    tg.attributes
                        .get("stickiness.lb_cookie.duration_seconds")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(86_400),
                )
            });
            let algorithm = match tg.attributes.get("load_balancing.algorithm.type").map(String::as_str) {
                Some("least_outstanding_requests") => Algorithm::LeastOutstanding,
                _ => Algorithm::RoundRobin,
            };
            let group = Group {
                metrics: self.metrics.target_group(&arn, &tg.target_group_name),
                arn: arn.clone(),
                name: tg.target_group_name.clone(),
                algorithm,
                stickiness,
                slow_start_ms: tg.slow_start_secs() * 1000,
                targets: members.remove(arn.as_str()).unwrap_or_default(),
                cursor,
            };
            groups.insert(arn, Arc::new(group));
        }
        self.cursors.retain(|arn, _| groups.contains_key(arn));

        // Listeners.
        let lb_by_arn: HashMap<&str, &LoadBalancer> =
            self.lbs.values().map(|lb| (lb.load_balancer_arn.as_str(), lb)).collect();
        let mut rules_of: HashMap<&str, Vec<&Rule>> = HashMap::new();
        for r in self.rules.values() {
            rules_of.entry(r.listener_arn.as_str()).or_default().push(r);
        }
        let mut wanted = HashSet::new();
        let mut tables = Vec::new();
        for l in self.listeners.values() {
            let Some(lb) = lb_by_arn.get(l.load_balancer_arn.as_str()) else { continue };
            let rules = rules_of.remove(l.listener_arn.as_str()).unwrap_or_default();
            tables.push(self.table(l, lb, rules, &groups));
            wanted.insert(l.listener_arn.clone());
        }
        drop(lb_by_arn);
        // Which load balancer each target group serves, for its CloudWatch dimensions.
        let mut served_by = HashMap::new();
        for table in &tables {
            for rule in &table.rules {
                if let Act::Forward(f) = &rule.action {
                    for (g, _) in &f.groups {
                        served_by.insert(g.arn.clone(), table.lb.arn.clone());
                    }
                }
            }
        }
        for table in tables {
            self.serve(table);
        }
        let stale: Vec<String> = self.running.keys().filter(|a| !wanted.contains(*a)).cloned().collect();
        for arn in stale {
            if let Some(r) = self.running.remove(&arn) {
                tracing::info!(listener = %arn, port = r.port, "listener deleted; no longer serving");
                let _ = r.stop.send(true);
            }
        }
        self.bind_errors.retain(|arn, _| wanted.contains(arn));
        self.status.lock().unwrap_or_else(|e| e.into_inner()).retain(|arn, _| wanted.contains(arn));
        let lb_arns: HashSet<String> = self.lbs.values().map(|lb| lb.load_balancer_arn.clone()).collect();
        self.metrics.retain(|arn| lb_arns.contains(arn) || groups.contains_key(arn));
        self.metrics.set_load_balancers(&served_by);
    }

    fn table(
        &self,
        l: &Listener,
        lb: &LoadBalancer,
        mut rules: Vec<&Rule>,
        groups: &HashMap<String, Arc<Group>>,
    ) -> ListenerTable {
        rules.sort_by_key(|r| r.priority.parse::<u32>().unwrap_or(u32::MAX));
        let mut compiled = Vec::new();
        for r in rules.iter().filter(|r| !r.is_default) {
            let conds: Result<Vec<_>, String> = r.conditions.iter().map(crate::rules::compile).collect();
            let conds = match conds {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(rule = %r.rule_arn, error = %e, "rule skipped");
                    continue;
                }
            };
            if let Some(action) = action(&r.actions, groups) {
                compiled.push(CompiledRule { priority: r.priority.parse().unwrap_or(u32::MAX), conds, action });
            }
        }
        let default = rules.iter().find(|r| r.is_default).map(|r| &r.actions).unwrap_or(&l.default_actions);
        if let Some(action) = action(default, groups) {
            compiled.push(CompiledRule { priority: u32::MAX, conds: vec![], action });
        }
        let idle = lb.attributes.get("idle_timeout.timeout_seconds").and_then(|v| v.parse().ok()).unwrap_or(60u64);
        ListenerTable {
            arn: l.listener_arn.clone(),
            port: l.port,
            https: l.protocol == "HTTPS",
            certificate: crate::tls::default_certificate(&l.certificates),
            lb: LbInfo {
                arn: lb.load_balancer_arn.clone(),
                name: lb.load_balancer_name.clone(),
                idle_timeout: Duration::from_secs(idle.max(1)),
                metrics: self.metrics.load_balancer(&lb.load_balancer_arn, &lb.load_balancer_name),
            },
            rules: compiled,
            port_value: HeaderValue::from(l.port),
        }
    }

    /// Serves `table`: swaps it into the running listener, or binds its port.
    fn serve(&mut self, table: ListenerTable) {
        let arn = table.arn.clone();
        if let Some(r) = self.running.get(&arn) {
            if r.port == table.port && r.https == table.https && r.certificate == table.certificate {
                r.table.store(Arc::new(table));
                return;
            }
            if let Some(r) = self.running.remove(&arn) {
                let _ = r.stop.send(true);
            }
        }
        let (port, https, lb_arn) = (table.port, table.https, table.lb.arn.clone());
        let certificate = table.certificate.clone();
        let addr = SocketAddr::new(self.config.bind_ip, port);
        let status = |error: Option<String>| ListenerStatus { load_balancer_arn: lb_arn.clone(), address: addr, error };
        let tls = if https {
            let made = match &certificate {
                Some(c) => crate::tls::acceptor(c, &self.config.data_dir),
                None => Err("an HTTPS listener without a certificate".to_string()),
            };
            match made {
                Ok(a) => Some(a),
                Err(e) => {
                    let e = format!("cannot serve HTTPS: {e}");
                    if self.bind_errors.insert(arn.clone(), e.clone()).as_ref() != Some(&e) {
                        tracing::error!(listener = %arn, %addr, "listener not serving: {e}");
                    }
                    self.status.lock().unwrap_or_else(|e| e.into_inner()).insert(arn, status(Some(e)));
                    return;
                }
            }
        } else {
            None
        };
        let sockets: std::io::Result<Vec<std::net::TcpListener>> =
            self.workers.handles.iter().map(|_| bind(addr)).collect();
        match sockets {
            Ok(sockets) => {
                tracing::info!(listener = %arn, %addr, threads = sockets.len(), "listener serving");
                self.bind_errors.remove(&arn);
                self.status.lock().unwrap_or_else(|e| e.into_inner()).insert(arn.clone(), status(None));
                let table = Arc::new(ArcSwap::from_pointee(table));
                let (stop, stop_rx) = watch::channel(false);
                for (socket, handle) in sockets.into_iter().zip(&self.workers.handles) {
                    handle.spawn(accept_loop(socket, table.clone(), tls.clone(), stop_rx.clone()));
                }
                self.running.insert(arn, Running { port, https, certificate, table, stop });
            }
            Err(e) => {
                let e = format!("cannot bind {addr}: {e}");
                if self.bind_errors.insert(arn.clone(), e.clone()).as_ref() != Some(&e) {
                    tracing::error!(listener = %arn, "listener not serving: {e}");
                }
                self.status.lock().unwrap_or_else(|e| e.into_inner()).insert(arn, status(Some(e)));
            }
        }
    }

    fn stop_all(&mut self) {
        for (_, r) in self.running.drain() {
            let _ = r.stop.send(true);
        }
        for (_, p) in self.probes.drain() {
            p.task.abort();
        }
    }

    /// Removes drained targets: after the deregistration delay, or as soon as nothing is in
    /// flight and no connection to them is open.
    async fn drain(&mut self) {
        let now = wharf_types::now();
        let tg_by_arn: HashMap<&str, &TargetGroup> =
            self.tgs.values().map(|tg| (tg.target_group_arn.as_str(), tg)).collect();
        let mut done = Vec::new();
        for (key, (t, rev)) in &self.targets {
            let Some(since) = t.draining_since else { continue };
            if self.removing.contains(key) {
                continue;
            }
            let delay = tg_by_arn.get(t.target_group_arn.as_str()).map_or(0, |tg| tg.deregistration_delay_secs());
            let expired = now - since >= delay as f64;
            let idle = self.rts.get(key).is_none_or(|rt| {
                rt.close_idle();
                rt.idle()
            });
            if expired || idle {
                done.push((key.clone(), *rev, expired));
            }
        }
        for (key, rev, expired) in done {
            let health_key = key.replacen("/elb/target/", "/elb/health/", 1);
            let txn = Txn {
                compares: vec![Compare::ModRevision(key.clone(), rev)],
                ops: vec![Op::delete(key.clone()), Op::delete(health_key)],
            };
            match self.store.txn(txn).await {
                Ok(r) if r.succeeded => {
                    tracing::info!(target = %key, after_delay = expired, "drained target removed");
                    self.removing.insert(key);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(target = %key, error = %e, "cannot remove a drained target"),
            }
        }
    }

    /// HealthyHostCount / UnHealthyHostCount gauges.
    fn count_hosts(&self) {
        let mut counts: HashMap<&str, (u64, u64, u64)> = HashMap::new();
        for (key, (t, _)) in &self.targets {
            let Some(rt) = self.rts.get(key) else { continue };
            if t.draining_since.is_some() {
                continue;
            }
            let c = counts.entry(t.target_group_arn.as_str()).or_default();
            c.2 += 1;
            match rt.health() {
                Health::Healthy | Health::Unavailable => c.0 += 1,
                Health::Unhealthy => c.1 += 1,
                Health::Initial => {}
            }
        }
        for tg in self.tgs.values() {
            let (h, u, r) = counts.get(tg.target_group_arn.as_str()).copied().unwrap_or_default();
            let m = self.metrics.target_group(&tg.target_group_arn, &tg.target_group_name);
            m.healthy.store(h, Relaxed);
            m.unhealthy.store(u, Relaxed);
            m.registered.store(r, Relaxed);
        }
    }
}

/// One of a listener's `SO_REUSEPORT` sockets (the kernel spreads connections over them).
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn action(actions: &[Action], groups: &HashMap<String, Arc<Group>>) -> Option<Act> {
    let mut sorted: Vec<&Action> = actions.iter().collect();
    sorted.sort_by_key(|a| a.order.unwrap_or(u32::MAX));
    let a = sorted.into_iter().find(|a| matches!(a.kind.as_str(), "forward" | "redirect" | "fixed-response"))?;
    let s = |v: Option<&Value>, k: &str, d: &str| -> String {
        v.and_then(|v| v.get(k)).and_then(Value::as_str).unwrap_or(d).to_string()
    };
    Some(match a.kind.as_str() {
        "forward" => {
            let mut weighted: Vec<(String, u32)> = match &a.forward_config {
                Some(fc) => {
                    fc.target_groups.iter().map(|w| (w.target_group_arn.clone(), w.weight.unwrap_or(1))).collect()
                }
                None => vec![],
            };
            if weighted.is_empty()
                && let Some(arn) = &a.target_group_arn
            {
                weighted.push((arn.clone(), 1));
            }
            let groups: Vec<(Arc<Group>, u32)> =
                weighted.iter().filter_map(|(arn, w)| groups.get(arn).map(|g| (g.clone(), *w))).collect();
            let stick = a.forward_config.as_ref().and_then(|fc| fc.target_group_stickiness_config.as_ref());
            let group_stickiness = stick
                .filter(|c| c.get("Enabled").and_then(Value::as_bool) == Some(true))
                .map(|c| Duration::from_secs(c.get("DurationSeconds").and_then(Value::as_u64).unwrap_or(3600)));
            Act::Forward(Forward { total_weight: groups.iter().map(|(_, w)| w).sum(), groups, group_stickiness })
        }
        "redirect" => {
            let c = a.redirect_config.as_ref();
            let status = if s(c, "StatusCode", "HTTP_302") == "HTTP_301" {
                StatusCode::MOVED_PERMANENTLY
            } else {
                StatusCode::FOUND
            };
            Act::Redirect(Redirect {
                protocol: s(c, "Protocol", "#{protocol}"),
                port: s(c, "Port", "#{port}"),
                host: s(c, "Host", "#{host}"),
                path: s(c, "Path", "/#{path}"),
                query: s(c, "Query", "#{query}"),
                status,
            })
        }
        _ => {
            let c = a.fixed_response_config.as_ref();
            let status = s(c, "StatusCode", "200").parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok());
            let content_type = c
                .and_then(|c| c.get("ContentType"))
                .and_then(Value::as_str)
                .and_then(|v| HeaderValue::from_str(v).ok());
            Act::Fixed(Fixed {
                status: status.unwrap_or(StatusCode::OK),
                content_type,
                body: Bytes::from(s(c, "MessageBody", "")),
            })
        }
    })
}

async fn accept_loop(
    listener: std::net::TcpListener,
    table: Arc<ArcSwap<ListenerTable>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let https = tls.is_some();
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve a listener socket");
            return;
        }
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    let builder = Arc::new(builder);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let client_ip = peer.ip().to_canonical();
                let ctx = Arc::new(ConnCtx {
                    table: table.clone(),
                    client_ip,
                    client_ip_value: HeaderValue::from_str(&client_ip.to_string()).unwrap_or(HeaderValue::from_static("")),
                    https,
                });
                let builder = builder.clone();
                let stop = stop.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_conn(&builder, TokioIo::new(stream), ctx, stop).await,
                        Some(tls) => {
                            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(10), tls.accept(stream)).await {
                                serve_conn(&builder, TokioIo::new(s), ctx, stop).await;
                            }
                        }
                    }
                });
            }
        }
    }
}

type ServerBuilder = hyper_util::server::conn::auto::Builder<TokioExecutor>;

/// Serves one client connection (HTTP/1.1 or HTTP/2) until it ends or the listener stops.
async fn serve_conn<I>(builder: &ServerBuilder, io: I, ctx: Arc<ConnCtx>, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| proxy::handle(ctx.clone(), req));
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
        }
    }
}
