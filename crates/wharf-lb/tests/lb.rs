//! The data plane end to end in one process: documents written straight into a SqliteStore
//! in a temp dir (as the ELBv2 API writes them), real HTTP backends on 127.0.0.1, real
//! client connections to the listeners. No timing assertions: waits are generous polls.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wharf_lb::{Config, LoadBalancers, Metric};
use wharf_store::{Op, SqliteStore, Store, Txn};
use wharf_types::elb::{
    Action, Condition, ForwardConfig, HealthCheck, Listener, LoadBalancer, Rule, Target, TargetGroup, TargetHealth,
    WeightedTargetGroup, keys,
};

const ACCT: &str = "000000000000";
const REGION: &str = "us-east-1";

struct Env {
    store: SqliteStore,
    lb: LoadBalancers,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

fn lb_arn(name: &str) -> String {
    format!("arn:aws:elasticloadbalancing:{REGION}:{ACCT}:loadbalancer/app/{name}/0123456789abcdef")
}
fn tg_arn(name: &str) -> String {
    format!("arn:aws:elasticloadbalancing:{REGION}:{ACCT}:targetgroup/{name}/0123456789abcdef")
}
fn listener_arn(id: &str) -> String {
    format!("arn:aws:elasticloadbalancing:{REGION}:{ACCT}:listener/app/web/0123456789abcdef/{id}")
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("wharf.db")).unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (lb, _task) = LoadBalancers::start(
            store.clone(),
            Config { bind_ip: "127.0.0.1".parse().unwrap(), data_dir: dir.path().to_path_buf() },
            rx,
        );
        let env = Env { store, lb, _dir: dir, _shutdown: tx };
        env.put_lb("web", &[]).await;
        env
    }

    async fn put(&self, key: String, doc: &impl serde::Serialize) {
        let r =
            self.store.txn(Txn { compares: vec![], ops: vec![Op::put(key, serde_json::to_vec(doc).unwrap())] }).await;
        assert!(r.unwrap().succeeded);
    }
    async fn delete(&self, key: String) {
        self.store.txn(Txn { compares: vec![], ops: vec![Op::delete(key)] }).await.unwrap();
    }

    async fn put_lb(&self, name: &str, attrs: &[(&str, &str)]) {
        let lb = LoadBalancer {
            load_balancer_arn: lb_arn(name),
            load_balancer_name: name.into(),
            dns_name: format!("{name}.elb.localhost"),
            kind: "application".into(),
            scheme: "internet-facing".into(),
            created_time: wharf_types::now(),
            state: json!({"Code": "active"}),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        self.put(keys::load_balancer(ACCT, REGION, name), &lb).await;
    }

    /// A target group with fast health checks (1 s, thresholds 2) on `/health`.
    async fn put_tg(&self, name: &str, attrs: &[(&str, &str)]) {
        let tg = TargetGroup {
            target_group_arn: tg_arn(name),
            target_group_name: name.into(),
            protocol: "HTTP".into(),
            port: Some(80),
            target_type: "ip".into(),
            health_check: HealthCheck {
                enabled: true,
                protocol: "HTTP".into(),
                port: "traffic-port".into(),
                path: "/health".into(),
                interval_seconds: 1,
                timeout_seconds: 1,
                healthy_threshold_count: 2,
                unhealthy_threshold_count: 2,
                http_code: "200".into(),
            },
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
            ..Default::default()
        };
        self.put(keys::target_group(ACCT, REGION, name), &tg).await;
    }

    async fn register(&self, tg: &str, port: u16) {
        let t = Target {
            target_group_arn: tg_arn(tg),
            id: "127.0.0.1".into(),
            port,
            registered_at: wharf_types::now(),
            ..Default::default()
        };
        self.put(keys::target(ACCT, REGION, tg, "127.0.0.1", port), &t).await;
    }

    /// Starts draining the registration, as DeregisterTargets does.
    async fn deregister(&self, tg: &str, port: u16) {
        let key = keys::target(ACCT, REGION, tg, "127.0.0.1", port);
        let mut t: Target = serde_json::from_slice(&self.store.get(&key).await.unwrap().unwrap().value).unwrap();
        t.draining_since = Some(wharf_types::now());
        self.put(key, &t).await;
    }

    async fn listener(&self, id: &str, port: u16, default: Action) {
        let l = Listener {
            listener_arn: listener_arn(id),
            load_balancer_arn: lb_arn("web"),
            port,
            protocol: "HTTP".into(),
            default_actions: vec![default],
            ..Default::default()
        };
        self.put(keys::listener(ACCT, REGION, id), &l).await;
        wait_for(|| async { http_get(port, "/__probe__", &[]).await.is_some() }).await;
    }

    async fn rule(&self, listener: &str, id: &str, priority: u32, conditions: Vec<Condition>, action: Action) {
        let r = Rule {
            rule_arn: format!("{}/rule/{id}", listener_arn(listener)),
            listener_arn: listener_arn(listener),
            priority: priority.to_string(),
            conditions,
            actions: vec![action],
            is_default: false,
            ..Default::default()
        };
        self.put(keys::rule(ACCT, REGION, listener, id), &r).await;
    }

    async fn health_doc(&self, tg: &str, port: u16) -> Option<TargetHealth> {
        let kv = self.store.get(&keys::health(ACCT, REGION, tg, "127.0.0.1", port)).await.unwrap()?;
        Some(serde_json::from_slice(&kv.value).unwrap())
    }

    async fn target_exists(&self, tg: &str, port: u16) -> bool {
        self.store.get(&keys::target(ACCT, REGION, tg, "127.0.0.1", port)).await.unwrap().is_some()
    }
}

fn forward(tgs: &[(&str, u32)]) -> Action {
    Action {
        kind: "forward".into(),
        forward_config: Some(ForwardConfig {
            target_groups: tgs
                .iter()
                .map(|(n, w)| WeightedTargetGroup { target_group_arn: tg_arn(n), weight: Some(*w) })
                .collect(),
            target_group_stickiness_config: None,
        }),
        ..Default::default()
    }
}

fn fixed(code: u16, body: &str) -> Action {
    Action {
        kind: "fixed-response".into(),
        fixed_response_config: Some(
            json!({"StatusCode": code.to_string(), "ContentType": "text/plain", "MessageBody": body}),
        ),
        ..Default::default()
    }
}

fn cond(field: &str, extra: serde_json::Value) -> Condition {
    let mut c = Condition { field: field.into(), ..Default::default() };
    if let serde_json::Value::Object(m) = extra {
        c.extra = m;
    }
    c
}

async fn wait_for<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached within 30 s");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

/// One request on a fresh HTTP/1.1 connection; `None` when the connection fails.
async fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Reply> {
    request(port, "GET", path, headers).await
}

async fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<Reply> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", format!("127.0.0.1:{port}"));
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send.send_request(req.body(Empty::<Bytes>::new()).unwrap()).await.ok()?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.ok()?.to_bytes();
    Some(Reply { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// An in-process backend: answers its name on `/`, a switchable status on `/health`,
/// `/slow?ms=N` after a delay, the forwarding headers on `/headers`, and echoes bytes after
/// an `Upgrade` handshake.
struct Backend {
    port: u16,
    health: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
}

async fn backend(name: &'static str) -> Backend {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let health = Arc::new(AtomicU16::new(200));
    let hits = Arc::new(AtomicUsize::new(0));
    let (h, n) = (health.clone(), hits.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (h, n) = (h.clone(), n.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (h, n) = (h.clone(), n.clone());
                    async move { Ok::<_, std::convert::Infallible>(serve(name, req, &h, &n).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Backend { port, health, hits }
}

async fn serve(
    name: &str,
    mut req: Request<Incoming>,
    health: &AtomicU16,
    hits: &AtomicUsize,
) -> Response<Full<Bytes>> {
    let text = |code: u16, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = StatusCode::from_u16(code).unwrap();
        r
    };
    match req.uri().path() {
        "/health" => text(health.load(SeqCst), "health".into()),
        "/slow" => {
            hits.fetch_add(1, SeqCst);
            let ms: u64 =
                req.uri().query().and_then(|q| q.strip_prefix("ms=")).and_then(|v| v.parse().ok()).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(200, name.into())
        }
        "/headers" => {
            let h = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
            text(
                200,
                format!("{}|{}|{}|{}", h("x-forwarded-for"), h("x-forwarded-proto"), h("x-forwarded-port"), h("host")),
            )
        }
        "/ws" => {
            let up = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(io) = up.await {
                    let mut io = TokioIo::new(io);
                    let mut buf = [0u8; 256];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let mut r = text(101, String::new());
            r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut().insert("connection", "upgrade".parse().unwrap());
            r
        }
        "/status" => {
            let code =
                req.uri().query().and_then(|q| q.strip_prefix("code=")).and_then(|v| v.parse().ok()).unwrap_or(200);
            text(code, name.into())
        }
        _ => {
            hits.fetch_add(1, SeqCst);
            text(200, name.into())
        }
    }
}

async fn tally(port: u16, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = http_get(port, "/", headers).await.unwrap();
        *seen.entry(r.body).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_route_by_every_condition_in_priority_order() {
    let env = Env::new().await;
    let port = free_port();
    env.listener("l1", port, fixed(404, "default")).await;
    env.rule(
        "l1",
        "r1",
        10,
        vec![cond("path-pattern", json!({"PathPatternConfig": {"Values": ["/api/*", "/v?/x"]}}))],
        fixed(200, "path"),
    )
    .await;
    env.rule(
        "l1",
        "r2",
        20,
        vec![cond("host-header", json!({"HostHeaderConfig": {"Values": ["*.example.com"]}}))],
        fixed(200, "host"),
    )
    .await;
    env.rule(
        "l1",
        "r3",
        30,
        vec![cond("http-header", json!({"HttpHeaderConfig": {"HttpHeaderName": "X-Env", "Values": ["beta*"]}}))],
        fixed(200, "header"),
    )
    .await;
    env.rule(
        "l1",
        "r4",
        40,
        vec![cond("http-request-method", json!({"HttpRequestMethodConfig": {"Values": ["DELETE"]}}))],
        fixed(200, "method"),
    )
    .await;
    env.rule(
        "l1",
        "r5",
        50,
        vec![cond(
            "query-string",
            json!({"QueryStringConfig": {"Values": [{"Key": "ver", "Value": "2*"}, {"Value": "magic"}]}}),
        )],
        fixed(200, "query"),
    )
    .await;
    env.rule(
        "l1",
        "r6",
        60,
        vec![cond("source-ip", json!({"SourceIpConfig": {"Values": ["10.0.0.0/8"]}}))],
        fixed(200, "ten"),
    )
    .await;
    env.rule(
        "l1",
        "r7",
        70,
        vec![
            cond("source-ip", json!({"SourceIpConfig": {"Values": ["127.0.0.0/8"]}})),
            cond("path-pattern", json!({"PathPatternConfig": {"Values": ["/local"]}})),
        ],
        fixed(200, "loopback"),
    )
    .await;
    // A lower priority number wins over a later rule matching the same request.
    env.rule(
        "l1",
        "r8",
        5,
        vec![cond("path-pattern", json!({"PathPatternConfig": {"Values": ["/api/first"]}}))],
        fixed(200, "first"),
    )
    .await;
    let expect = |path: &'static str,
                  headers: Vec<(&'static str, &'static str)>,
                  method: &'static str,
                  body: &'static str| async move {
        wait_for(|| {
            let headers = headers.clone();
            async move { request(port, method, path, &headers).await.is_some_and(|r| r.body == body) }
        })
        .await;
    };
    expect("/api/users", vec![], "GET", "path").await;
    expect("/v2/x", vec![], "GET", "path").await;
    expect("/api/first", vec![], "GET", "first").await;
    expect("/", vec![("host", "www.EXAMPLE.com:8080")], "GET", "host").await;
    expect("/", vec![("x-env", "BETA-1")], "GET", "header").await;
    expect("/", vec![], "DELETE", "method").await;
    expect("/?a=1&ver=2.1", vec![], "GET", "query").await;
    expect("/?zzz=magic", vec![], "GET", "query").await;
    expect("/local", vec![], "GET", "loopback").await;
    let r = http_get(port, "/nothing?ver=1", &[]).await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (StatusCode::NOT_FOUND, "default"));
    assert_eq!(r.headers["content-type"], "text/plain");
    // Case matters for paths.
    assert_eq!(http_get(port, "/API/users", &[]).await.unwrap().body, "default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_fill_in_the_request() {
    let env = Env::new().await;
    let port = free_port();
    let redirect = Action {
        kind: "redirect".into(),
        redirect_config: Some(
            json!({"Protocol": "HTTPS", "Port": "443", "Host": "#{host}", "Path": "/new#{path}", "Query": "#{query}&r=1", "StatusCode": "HTTP_301"}),
        ),
        ..Default::default()
    };
    env.listener("l1", port, redirect).await;
    let r = http_get(port, "/a/b?x=1", &[("host", "shop.example:8080")]).await.unwrap();
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers["location"], "https://shop.example/new/a/b?x=1&r=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_with_forwarded_headers_over_http1_and_h2c() {
    let env = Env::new().await;
    let b = backend("a").await;
    env.put_tg("tg", &[]).await;
    env.register("tg", b.port).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("tg", 1)])).await;
    let r = http_get(port, "/headers", &[("x-forwarded-for", "203.0.113.9")]).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, format!("203.0.113.9, 127.0.0.1|http|{port}|127.0.0.1:{port}"));

    // HTTP/2 with prior knowledge (h2c): the target still gets HTTP/1.1 with a Host header.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req =
            Request::builder().uri(format!("http://h2.example:{port}/headers")).body(Empty::<Bytes>::new()).unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.version(), http::Version::HTTP_2);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(String::from_utf8_lossy(&body), format!("127.0.0.1|http|{port}|h2.example:{port}"));
    }
    let totals = env.lb.metrics().totals(&tg_arn("tg")).unwrap();
    assert!(totals.requests >= 4, "{totals:?}");
    assert!(env.lb.metrics().series(&tg_arn("tg"), Metric::RequestCount).is_empty(), "no minute closed yet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_forward_splits_and_group_stickiness_holds() {
    let env = Env::new().await;
    let (a, b) = (backend("a").await, backend("b").await);
    env.put_tg("blue", &[]).await;
    env.put_tg("green", &[]).await;
    env.register("blue", a.port).await;
    env.register("green", b.port).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("blue", 3), ("green", 1)])).await;
    let seen = tally(port, 400, &[]).await;
    let (na, nb) = (seen.get("a").copied().unwrap_or(0), seen.get("b").copied().unwrap_or(0));
    assert_eq!(na + nb, 400);
    assert!((230..=370).contains(&na), "3:1 split looked like {na}:{nb}");

    // Target-group stickiness: the AWSALBTG cookie keeps a client on one group.
    let mut sticky = forward(&[("blue", 1), ("green", 1)]);
    sticky.forward_config.as_mut().unwrap().target_group_stickiness_config =
        Some(json!({"Enabled": true, "DurationSeconds": 600}));
    let port2 = free_port();
    env.listener("l2", port2, sticky).await;
    let first = http_get(port2, "/", &[]).await.unwrap();
    let cookie = first.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("AWSALBTG="), "{cookie}");
    let seen = tally(port2, 40, &[("cookie", &cookie)]).await;
    assert_eq!(seen.get(&first.body), Some(&40), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lb_cookie_stickiness_pins_a_client_to_one_target() {
    let env = Env::new().await;
    let bs = [backend("a").await, backend("b").await, backend("c").await];
    env.put_tg(
        "tg",
        &[
            ("stickiness.enabled", "true"),
            ("stickiness.type", "lb_cookie"),
            ("stickiness.lb_cookie.duration_seconds", "120"),
        ],
    )
    .await;
    for b in &bs {
        env.register("tg", b.port).await;
    }
    let port = free_port();
    env.listener("l1", port, forward(&[("tg", 1)])).await;
    let spread = tally(port, 30, &[]).await;
    assert_eq!(spread.len(), 3, "without a cookie round robin reaches every target: {spread:?}");
    let first = http_get(port, "/", &[]).await.unwrap();
    let set = first.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("AWSALB=") && set.contains("Max-Age=120"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let pinned = tally(port, 30, &[("cookie", &format!("other=1; {cookie}"))]).await;
    assert_eq!(pinned.get(&first.body), Some(&30), "{pinned:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_pass_through() {
    let env = Env::new().await;
    let b = backend("a").await;
    env.put_tg("tg", &[]).await;
    env.register("tg", b.port).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("tg", 1)])).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1);
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got, msg);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_follow_thresholds_and_fail_open() {
    let env = Env::new().await;
    let (a, b) = (backend("a").await, backend("b").await);
    env.put_tg("tg", &[]).await;
    env.register("tg", a.port).await;
    env.register("tg", b.port).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("tg", 1)])).await;
    for p in [a.port, b.port] {
        wait_for(|| async { env.health_doc("tg", p).await.is_some_and(|h| h.state == "healthy") }).await;
    }
    // b fails its checks: unhealthy after two failures, with ALB's reason; traffic avoids it.
    b.health.store(500, SeqCst);
    wait_for(|| async { env.health_doc("tg", b.port).await.is_some_and(|h| h.state == "unhealthy") }).await;
    let h = env.health_doc("tg", b.port).await.unwrap();
    assert_eq!(h.reason.as_deref(), Some("Target.ResponseCodeMismatch"));
    assert!(h.description.unwrap().contains("500"));
    let seen = tally(port, 20, &[]).await;
    assert_eq!(seen.get("a"), Some(&20), "{seen:?}");
    wait_for(|| async { env.lb.metrics().totals(&tg_arn("tg")).is_some_and(|t| t.healthy == 1 && t.unhealthy == 1) })
        .await;

    // Both unhealthy: fail open, every target gets traffic again.
    a.health.store(503, SeqCst);
    wait_for(|| async { env.health_doc("tg", a.port).await.is_some_and(|h| h.state == "unhealthy") }).await;
    let seen = tally(port, 20, &[]).await;
    assert_eq!(seen.len(), 2, "fail-open spreads over every target: {seen:?}");

    // b recovers; a stays out.
    b.health.store(200, SeqCst);
    wait_for(|| async { env.health_doc("tg", b.port).await.is_some_and(|h| h.state == "healthy") }).await;
    let seen = tally(port, 10, &[]).await;
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");

    // A target that is not listening fails with Target.FailedHealthChecks; its removal
    // deletes its health document.
    let dead = free_port();
    env.register("tg", dead).await;
    wait_for(|| async { env.health_doc("tg", dead).await.is_some_and(|h| h.state == "unhealthy") }).await;
    assert_eq!(env.health_doc("tg", dead).await.unwrap().reason.as_deref(), Some("Target.FailedHealthChecks"));
    env.delete(keys::target(ACCT, REGION, "tg", "127.0.0.1", dead)).await;
    wait_for(|| async { env.health_doc("tg", dead).await.is_none() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_finishes_in_flight_then_removes_the_target() {
    let env = Env::new().await;
    let (a, b) = (backend("a").await, backend("b").await);
    env.put_tg("tg", &[("deregistration_delay.timeout_seconds", "300")]).await;
    env.register("tg", a.port).await;
    env.register("tg", b.port).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("tg", 1)])).await;
    for p in [a.port, b.port] {
        wait_for(|| async { env.health_doc("tg", p).await.is_some_and(|h| h.state == "healthy") }).await;
    }
    // Slow requests in flight on both targets (the listener's readiness probe may have hit
    // one of them already).
    let (a0, b0) = (a.hits.load(SeqCst), b.hits.load(SeqCst));
    let slow: Vec<_> =
        (0..4).map(|_| tokio::spawn(async move { http_get(port, "/slow?ms=2500", &[]).await })).collect();
    wait_for(|| async { a.hits.load(SeqCst) > a0 && b.hits.load(SeqCst) > b0 }).await;
    env.deregister("tg", a.port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = a.hits.load(SeqCst);
    let seen = tally(port, 10, &[]).await;
    assert_eq!(seen.get("b"), Some(&10), "a draining target gets no new requests: {seen:?}");
    assert_eq!(a.hits.load(SeqCst), before);
    assert!(env.target_exists("tg", a.port).await, "still draining while requests are in flight");
    for s in slow {
        let r = s.await.unwrap().unwrap();
        assert_eq!(r.status, StatusCode::OK, "in-flight requests finish");
    }
    // Idle now: removed long before the 300 s delay, with its health document.
    wait_for(|| async { !env.target_exists("tg", a.port).await }).await;
    wait_for(|| async { env.health_doc("tg", a.port).await.is_none() }).await;
    assert!(env.target_exists("tg", b.port).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_ends_at_the_deregistration_delay() {
    let env = Env::new().await;
    let a = backend("a").await;
    env.put_tg("tg", &[("deregistration_delay.timeout_seconds", "1")]).await;
    env.register("tg", a.port).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("tg", 1)])).await;
    // The listener's readiness probe may have hit the target already: wait for this request.
    let before = a.hits.load(SeqCst);
    let slow = tokio::spawn(async move { http_get(port, "/slow?ms=8000", &[]).await });
    wait_for(|| async { a.hits.load(SeqCst) > before }).await;
    env.deregister("tg", a.port).await;
    wait_for(|| async { !env.target_exists("tg", a.port).await }).await;
    assert!(!slow.is_finished(), "removed at the delay although a request was still in flight");
    // With no target left, new requests get 503.
    assert_eq!(http_get(port, "/", &[]).await.unwrap().status, StatusCode::SERVICE_UNAVAILABLE);
    slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_502_503_504_where_alb_returns_them() {
    let env = Env::new().await;
    env.put_lb("web", &[("idle_timeout.timeout_seconds", "1")]).await;
    env.put_tg("empty", &[]).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("empty", 1)])).await;
    let r = http_get(port, "/", &[]).await.unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.contains("503 Service Temporarily Unavailable") || r.body.contains("503"));

    // Nothing listens on the target's port: connection refused → 502.
    env.put_tg("refused", &[]).await;
    env.register("refused", free_port()).await;
    let p2 = free_port();
    env.listener("l2", p2, forward(&[("refused", 1)])).await;
    assert_eq!(http_get(p2, "/", &[]).await.unwrap().status, StatusCode::BAD_GATEWAY);

    // A target that answers garbage → 502.
    let junk = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let junk_port = junk.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = junk.accept().await else { return };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        }
    });
    env.put_tg("junk", &[]).await;
    env.register("junk", junk_port).await;
    let p3 = free_port();
    env.listener("l3", p3, forward(&[("junk", 1)])).await;
    assert_eq!(http_get(p3, "/", &[]).await.unwrap().status, StatusCode::BAD_GATEWAY);

    // Slower than the idle timeout (1 s) → 504; a target's own 5xx passes through.
    let b = backend("slow").await;
    env.put_tg("slow", &[]).await;
    env.register("slow", b.port).await;
    let p4 = free_port();
    env.listener("l4", p4, forward(&[("slow", 1)])).await;
    assert_eq!(http_get(p4, "/slow?ms=3000", &[]).await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(http_get(p4, "/slow?ms=10", &[]).await.unwrap().status, StatusCode::OK);
    assert_eq!(http_get(p4, "/status?code=500", &[]).await.unwrap().status, StatusCode::INTERNAL_SERVER_ERROR);
    let lb = env.lb.metrics().totals(&lb_arn("web")).unwrap();
    assert!(lb.elb_5xx >= 4 && lb.target_5xx >= 1, "{lb:?}");
    let text = env.lb.metrics().prometheus();
    assert!(text.contains("wharf_lb_elb_5xx_total{load_balancer=\"web\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_come_and_go_live() {
    let env = Env::new().await;
    let port = free_port();
    env.listener("l1", port, fixed(200, "one")).await;
    assert_eq!(http_get(port, "/", &[]).await.unwrap().body, "one");
    // A modified default action applies without rebinding.
    let l = Listener {
        listener_arn: listener_arn("l1"),
        load_balancer_arn: lb_arn("web"),
        port,
        protocol: "HTTP".into(),
        default_actions: vec![fixed(200, "two")],
        ..Default::default()
    };
    env.put(keys::listener(ACCT, REGION, "l1"), &l).await;
    wait_for(|| async { http_get(port, "/", &[]).await.is_some_and(|r| r.body == "two") }).await;
    // Moved to another port: the old one closes.
    let port2 = free_port();
    env.put(keys::listener(ACCT, REGION, "l1"), &Listener { port: port2, ..l.clone() }).await;
    wait_for(|| async { http_get(port2, "/", &[]).await.is_some_and(|r| r.body == "two") }).await;
    wait_for(|| async { http_get(port, "/", &[]).await.is_none() }).await;
    // Deleted: no longer served.
    env.delete(keys::listener(ACCT, REGION, "l1")).await;
    wait_for(|| async { http_get(port2, "/", &[]).await.is_none() }).await;
    assert!(env.lb.listeners().is_empty());

    // A port someone else holds: reported, not fatal; served once it is free.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    env.put(
        keys::listener(ACCT, REGION, "l2"),
        &Listener { listener_arn: listener_arn("l2"), port: taken, ..l.clone() },
    )
    .await;
    wait_for(|| async { env.lb.listeners().get(&listener_arn("l2")).is_some_and(|s| s.error.is_some()) }).await;
    let err = env.lb.listeners()[&listener_arn("l2")].error.clone().unwrap();
    assert!(err.contains(&format!("127.0.0.1:{taken}")), "{err}");
    drop(squatter);
    wait_for(|| async { http_get(taken, "/", &[]).await.is_some_and(|r| r.body == "two") }).await;
    assert_eq!(env.lb.listeners()[&listener_arn("l2")].error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_outstanding_requests_avoids_the_busy_target() {
    let env = Env::new().await;
    let (a, b) = (backend("a").await, backend("b").await);
    env.put_tg("tg", &[("load_balancing.algorithm.type", "least_outstanding_requests")]).await;
    env.register("tg", a.port).await;
    env.register("tg", b.port).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("tg", 1)])).await;
    for p in [a.port, b.port] {
        wait_for(|| async { env.health_doc("tg", p).await.is_some_and(|h| h.state == "healthy") }).await;
    }
    // Three slow requests occupy targets; quick ones then go where fewer are outstanding.
    // (Hits are counted from here: the listener's readiness probe hit a backend too.)
    let (a0, b0) = (a.hits.load(SeqCst), b.hits.load(SeqCst));
    let slow: Vec<_> =
        (0..3).map(|_| tokio::spawn(async move { http_get(port, "/slow?ms=3000", &[]).await })).collect();
    wait_for(|| async { a.hits.load(SeqCst) - a0 + b.hits.load(SeqCst) - b0 >= 3 }).await;
    let (busy_a, busy_b) = (a.hits.load(SeqCst) - a0, b.hits.load(SeqCst) - b0);
    let seen = tally(port, 10, &[]).await;
    let idle = if busy_a > busy_b { "b" } else { "a" };
    assert_eq!(seen.get(idle), Some(&10), "{seen:?} with {busy_a} slow requests on a, {busy_b} on b");
    for s in slow {
        s.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_targets_resolve_through_the_instance_address() {
    let env = Env::new().await;
    // A backend on 127.0.0.2 only: reachable only through the instance's recorded address.
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let bport = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"instance"))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    env.put_tg("tg", &[]).await;
    env.put(
        format!("/elb/instance-address/{ACCT}/{REGION}/i-0abc"),
        &json!({"Address": "127.0.0.2", "ContainerInstanceArn": "x"}),
    )
    .await;
    let t = Target {
        target_group_arn: tg_arn("tg"),
        id: "i-0abc".into(),
        port: bport,
        registered_at: wharf_types::now(),
        ..Default::default()
    };
    env.put(keys::target(ACCT, REGION, "tg", "i-0abc", bport), &t).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("tg", 1)])).await;
    wait_for(|| async { http_get(port, "/", &[]).await.is_some_and(|r| r.body == "instance") }).await;
    wait_for(|| async {
        let kv = env.store.get(&keys::health(ACCT, REGION, "tg", "i-0abc", bport)).await.unwrap();
        kv.is_some_and(|kv| serde_json::from_slice::<TargetHealth>(&kv.value).unwrap().state == "healthy")
    })
    .await;
}

/// An HTTPS client over `port` trusting `cert`; the negotiated ALPN protocol and a send handle.
async fn tls_h2(
    port: u16,
    cert: &std::path::Path,
) -> Option<(Vec<u8>, hyper::client::conn::http2::SendRequest<Empty<Bytes>>)> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_file(cert).ok()?).ok()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let tls = connector.connect("localhost".try_into().ok()?, tcp).await.ok()?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec).unwrap_or_default();
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.ok()?;
    tokio::spawn(conn);
    Some((alpn, send))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listeners_terminate_tls_with_alpn() {
    let env = Env::new().await;
    let b = backend("a").await;
    env.put_tg("tg", &[]).await;
    env.register("tg", b.port).await;
    let (pem, key) = (env._dir.path().join("site.pem"), env._dir.path().join("site.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-days",
            "2",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let port = free_port();
    let l = Listener {
        listener_arn: listener_arn("tls"),
        load_balancer_arn: lb_arn("web"),
        port,
        protocol: "HTTPS".into(),
        certificates: vec![json!({"CertificateArn": pem.to_str().unwrap()})],
        default_actions: vec![forward(&[("tg", 1)])],
        ..Default::default()
    };
    env.put(keys::listener(ACCT, REGION, "tls"), &l).await;
    wait_for(|| async { tls_h2(port, &pem).await.is_some() }).await;
    let (alpn, mut send) = tls_h2(port, &pem).await.unwrap();
    assert_eq!(alpn, b"h2");
    let resp = send
        .send_request(Request::builder().uri(format!("https://localhost:{port}/headers")).body(Empty::new()).unwrap())
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), format!("127.0.0.1|https|{port}|localhost:{port}"));

    // A certificate that names no file: reported, not served.
    let (bad, bad_port) = ("bad", free_port());
    env.put(
        keys::listener(ACCT, REGION, bad),
        &Listener {
            listener_arn: listener_arn(bad),
            port: bad_port,
            certificates: vec![json!({"CertificateArn": "arn:aws:acm:us-east-1:000000000000:certificate/nope"})],
            ..l.clone()
        },
    )
    .await;
    wait_for(|| async { env.lb.listeners().get(&listener_arn(bad)).is_some_and(|s| s.error.is_some()) }).await;
    let err = env.lb.listeners()[&listener_arn(bad)].error.clone().unwrap();
    assert!(err.contains("nope.pem"), "{err}");
}

/// The group's health checks every `interval` s, `healthy` successes to become healthy.
async fn set_checks(env: &Env, tg: &str, interval: u32, healthy: u32) {
    let key = keys::target_group(ACCT, REGION, tg);
    let mut doc: TargetGroup = serde_json::from_slice(&env.store.get(&key).await.unwrap().unwrap().value).unwrap();
    doc.health_check.interval_seconds = interval;
    doc.health_check.healthy_threshold_count = healthy;
    env.put(key, &doc).await;
}

/// A target that answers its first connection (the first health check) with 200 and then
/// goes bad: with `listening`, it reads each request and hangs up without a word (a process
/// killed while the request was on its way); without, it stops listening (a container that
/// died between two checks). Returns its port and the task serving it.
async fn one_good_answer(listening: bool) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut first = true;
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            if std::mem::take(&mut first) {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                if !listening {
                    return;
                }
            }
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_refuses_connections_costs_no_request() {
    let env = Env::new().await;
    let a = backend("a").await;
    env.put_tg("tg", &[]).await;
    // One check makes a target healthy, the next is 30 s away: the dead target below stays
    // healthy for this whole test.
    set_checks(&env, "tg", 30, 1).await;
    // A target that answers its first health check and then stops listening.
    let (dead, first_check) = one_good_answer(false).await;
    env.register("tg", a.port).await;
    env.register("tg", dead).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("tg", 1)])).await;
    for p in [a.port, dead] {
        wait_for(|| async { env.health_doc("tg", p).await.is_some_and(|h| h.state == "healthy") }).await;
    }
    first_check.await.unwrap();
    // Round robin sends every other request to the dead target; each is refused there and
    // served by `a` instead.
    let seen = tally(port, 20, &[]).await;
    assert_eq!(seen.get("a"), Some(&20), "{seen:?}");
    assert_eq!(env.health_doc("tg", dead).await.unwrap().state, "healthy", "the checks have not noticed");
    // With no target left that accepts: ALB's 502.
    env.delete(keys::target(ACCT, REGION, "tg", "127.0.0.1", a.port)).await;
    wait_for(|| async { http_get(port, "/", &[]).await.is_some_and(|r| r.status == StatusCode::BAD_GATEWAY) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_registered_again_is_checked_again_before_it_gets_traffic() {
    let env = Env::new().await;
    let (a, b) = (backend("a").await, backend("b").await);
    env.put_tg("tg", &[]).await;
    env.register("tg", a.port).await;
    env.register("tg", b.port).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("tg", 1)])).await;
    for p in [a.port, b.port] {
        wait_for(|| async { env.health_doc("tg", p).await.is_some_and(|h| h.state == "healthy") }).await;
    }
    // Checks every 10 s from now on, 2 to become healthy: a registration made now is not
    // healthy for at least 10 s.
    set_checks(&env, "tg", 10, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The same address and port registered anew (an awsvpc task given the IP of a task that
    // stopped) while the old registration's health document is still there: the new one is
    // not served on the strength of the old one's checks.
    env.register("tg", a.port).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = tally(port, 10, &[]).await;
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_request_whose_connection_ends_unanswered_goes_to_another_target() {
    let env = Env::new().await;
    let a = backend("a").await;
    env.put_tg("tg", &[]).await;
    set_checks(&env, "tg", 30, 1).await;
    // Answers its first health check, then hangs up on every request without a word.
    let (mute_port, _mute) = one_good_answer(true).await;
    env.register("tg", a.port).await;
    env.register("tg", mute_port).await;
    let port = free_port();
    env.listener("l1", port, forward(&[("tg", 1)])).await;
    for p in [a.port, mute_port] {
        wait_for(|| async { env.health_doc("tg", p).await.is_some_and(|h| h.state == "healthy") }).await;
    }
    let seen = tally(port, 20, &[]).await;
    assert_eq!(seen.get("a"), Some(&20), "GET is sent again to another target: {seen:?}");
    // A POST may have been acted on: it is not sent twice, the client gets ALB's 502.
    let mut statuses = HashMap::new();
    for _ in 0..10 {
        let r = request(port, "POST", "/", &[]).await.unwrap();
        *statuses.entry(r.status.as_u16()).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&502), Some(&5), "{statuses:?}");
}
