//! The one HTTP endpoint: routes each request to its protocol by what AWS clients send
//! (`smithy-protocol: rpc-v2-cbor` → RPC v2 CBOR, service and operation in the path;
//! `X-Amz-Target` → JSON 1.0/1.1; form `Action=` → Query, the service by the credential
//! scope), verifies SigV4, validates against the service model, calls the handler and writes
//! the envelope of the request's protocol. A service may speak several (CloudWatch speaks all
//! three); the handler never knows which. Domain errors become wire errors here and nowhere
//! else.

use crate::ServerArgs;
use crate::config;
use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use wharf_api::{Ctx, Db, LogStore, MetricStore, Service};
use wharf_protocol::sigv4::{Credential, RequestParts, Verifier};
use wharf_protocol::{MAX_BODY_BYTES, Protocol, WireError, cbor, json, query, wire_error, xml};
use wharf_types::{Error, Scope};

type Body = BoxBody<Bytes, Infallible>;

/// Prints a line for the person who started Wharf. A closed stdout (the terminal went away,
/// a test stopped reading) must never take the server down, so write errors are ignored.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub struct App {
    verifier: Verifier<HashMap<String, Credential>>,
    /// The store, log store and registry every request's context is made from.
    state: wharf_api::State,
    /// How long an agent may be silent before its instance counts as disconnected.
    agent_timeout: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// The load balancer data plane (for `/metrics`).
    lb: wharf_lb::LoadBalancers,
    public_metrics: bool,
    /// How long a request body may take to arrive after its headers.
    body_timeout: Duration,
    /// `wharf up`'s local agents, one per region clients use (`None`: no local agent).
    local_agents: Option<LocalAgents>,
    /// How often agents sample their tasks' usage (told in the answer to each report).
    sampling: Duration,
}

/// Serves one accepted connection (plain or TLS) under `watcher` (graceful shutdown) until it
/// closes; `slot` is its place under the connection cap.
fn serve_watched<I>(
    app: &Arc<App>,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    peer: std::net::SocketAddr,
    header_timeout: Duration,
    slot: tokio::sync::OwnedSemaphorePermit,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let app = app.clone();
    // Boxed: an idle keep-alive connection then holds a pointer, not the whole request
    // state machine (kilobytes, times thousands of agent connections).
    let service = hyper::service::service_fn(move |req| Box::pin(handle(app.clone(), peer, req)));
    // The header timeout needs a timer (without one hyper applies none); hyper also starts
    // it when a keep-alive connection goes idle, so it is the idle timeout too.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service);
    let conn = watcher.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
        drop(slot);
    });
}

/// Regions can be told from junk: `ap-northeast-2`, `us-gov-west-1`.
fn looks_like_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && r.len() <= 32
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// The regions `wharf up`'s local capacity serves: its own from the start, and every other
/// one the first time a signed request names it, so a client in any region finds the local
/// host in its `default` cluster and as its Fargate capacity.
#[derive(Debug)]
struct LocalAgents {
    joins: tokio::sync::mpsc::UnboundedSender<String>,
    regions: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The cluster the local agents join in each region.
    cluster: String,
}

impl LocalAgents {
    /// At most this many regions get a local agent (each registers the whole host).
    const MAX_REGIONS: usize = 32;

    /// How long the first request in a new region waits for the region's agent to register,
    /// so that a first `RunTask` there already finds the capacity.
    const JOIN_WAIT: Duration = Duration::from_secs(5);

    fn new(joins: tokio::sync::mpsc::UnboundedSender<String>, home: &str, cluster: &str) -> Self {
        let agents = LocalAgents { joins, regions: Default::default(), cluster: cluster.to_string() };
        agents.saw(home);
        agents
    }

    /// Notes a request in `region`; the first one starts the region's agent (true).
    fn saw(&self, region: &str) -> bool {
        let mut regions = self.regions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if regions.contains(region) || regions.len() >= Self::MAX_REGIONS || !looks_like_region(region) {
            return false;
        }
        regions.insert(region.to_string());
        self.joins.send(region.to_string()).is_ok()
    }

    /// Waits (up to [`Self::JOIN_WAIT`]) until the local agent has a container instance in
    /// `scope`'s cluster.
    async fn joined(&self, db: &Db, scope: &Scope) {
        let prefix = wharf_api::ecs::Keys::for_scope(scope).instances(&self.cluster);
        let deadline = tokio::time::Instant::now() + Self::JOIN_WAIT;
        while tokio::time::Instant::now() < deadline {
            if db.keys(&prefix, 1).await.is_ok_and(|k| !k.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// The agent `wharf up` runs on the local Docker engine.
#[derive(Debug, Clone)]
pub struct EmbeddedAgent {
    pub cluster: String,
    pub port_bind_ip: String,
}

pub async fn run(args: ServerArgs, embedded: Option<EmbeddedAgent>) -> anyhow::Result<()> {
    private_dir(&args.data_dir)
        .with_context(|| format!("data dir {} is unusable (cannot create it)", args.data_dir.display()))?;
    let creds = config::credentials(&args.data_dir)
        .with_context(|| format!("data dir {} is unusable (credentials)", args.data_dir.display()))?;
    let db_path = args.data_dir.join("wharf.db");
    private_files(&args.data_dir, &["wharf.db", "logs.db", "metrics.db"])
        .with_context(|| format!("data dir {} is unusable (its databases' modes)", args.data_dir.display()))?;
    let store = wharf_store::SqliteStore::open(&db_path).with_context(|| {
        format!(
            "data dir {} is unusable: cannot open {} (is another wharf using it?)",
            args.data_dir.display(),
            db_path.display()
        )
    })?;
    let logs_path = args.data_dir.join("logs.db");
    let logs = LogStore::open(&logs_path).with_context(|| {
        format!("data dir {} is unusable: cannot open the log store {}", args.data_dir.display(), logs_path.display())
    })?;
    let metrics_path = args.data_dir.join("metrics.db");
    let metrics = MetricStore::open(&metrics_path).with_context(|| {
        format!(
            "data dir {} is unusable: cannot open the metric store {}",
            args.data_dir.display(),
            metrics_path.display()
        )
    })?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (in use, or not an address of this host?)", args.listen))?;
    let addr = listener.local_addr()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            wharf_lb::tls::acceptor_from_files(cert, key, &[b"http/1.1"])
                .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", cert.display()))?,
        ),
        _ => None,
    };
    let endpoint = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    let registry_dir = args.data_dir.join("registry");
    let registry = wharf_registry::Registry::open(&registry_dir, store.clone(), addr.to_string())
        .with_context(|| {
            format!("data dir {} is unusable: cannot open {}", args.data_dir.display(), registry_dir.display())
        })?
        .with_tls(tls.is_some());

    let vault_path = args.data_dir.join("secrets.key");
    let vault = wharf_api::Vault::open(&vault_path).with_context(|| {
        format!(
            "data dir {} is unusable: cannot open the secrets key {}",
            args.data_dir.display(),
            vault_path.display()
        )
    })?;

    let mut keys = HashMap::new();
    keys.insert(
        creds.access_key_id.clone(),
        Credential { secret_access_key: creds.secret_access_key.clone(), account_id: args.account_id.clone() },
    );
    let mut others = config::read_accounts(&args.data_dir.join("accounts.json"))?;
    if let Some(file) = &args.accounts_file {
        others.extend(config::read_accounts(file)?);
    }
    for a in &others {
        if keys.contains_key(&a.access_key_id) {
            anyhow::bail!("access key id {} is given to more than one account", a.access_key_id);
        }
        let credential =
            Credential { secret_access_key: a.secret_access_key.clone(), account_id: a.account_id.clone() };
        keys.insert(a.access_key_id.clone(), credential);
    }
    let db = Db::new(store.clone());
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let agent_timeout = Duration::from_secs(args.agent_timeout_secs);
    let lb_bind_ip = args.lb_bind_ip.unwrap_or(args.listen.ip());
    let (lb, lb_task) = wharf_lb::LoadBalancers::start(
        store.clone(),
        wharf_lb::Config { bind_ip: lb_bind_ip, data_dir: args.data_dir.clone() },
        shutdown_rx.clone(),
    );
    let (regions_tx, regions_rx) = tokio::sync::mpsc::unbounded_channel();
    let local_agents = embedded.as_ref().map(|e| LocalAgents::new(regions_tx, &args.region, &e.cluster));
    let metrics_minute = Duration::from_secs(args.metrics_period);
    let sampling = wharf_types::agent::sampling_interval(metrics_minute);
    let app = Arc::new(App {
        verifier: Verifier::new(keys),
        state: wharf_api::State {
            db: db.clone(),
            logs: logs.clone(),
            metrics: metrics.clone(),
            registry: registry.clone(),
            vault,
        },
        agent_timeout,
        shutdown: shutdown_rx.clone(),
        lb,
        public_metrics: args.public_metrics,
        body_timeout: Duration::from_secs(args.http_body_timeout_secs),
        local_agents,
        sampling,
    });
    let controllers = wharf_controllers::start(
        &wharf_controllers::Env {
            db,
            logs,
            metrics: metrics.clone(),
            registry: registry.clone(),
            agent_timeout,
            aws_minute: Duration::from_secs_f64(args.aws_minute_secs),
            metrics_minute,
        },
        &shutdown_rx,
    );
    let lb_metrics = tokio::spawn(crate::publish::load_balancer_metrics(
        app.lb.clone(),
        metrics.clone(),
        sampling,
        shutdown_rx.clone(),
    ));

    // Before announcing the endpoint: a SIGTERM right after it must still shut down cleanly.
    let mut signals = Signals::new()?;
    say!("Wharf is up.");
    say!("  endpoint:          {endpoint}");
    say!("  account:           {}", args.account_id);
    say!("  region:            {}", args.region);
    say!("  access key id:     {}", creds.access_key_id);
    match &creds.origin {
        config::Origin::Generated(path) => {
            say!("  secret access key: {} (generated now; kept in {})", creds.secret_access_key, path.display())
        }
        config::Origin::Stored(path) => say!("  secret access key: kept in {}", path.display()),
        config::Origin::Environment => say!("  secret access key: from WHARF_SECRET_ACCESS_KEY"),
    }
    say!("  data dir:          {}", args.data_dir.display());
    if !others.is_empty() {
        say!("  other accounts:    {}", others.iter().map(|a| a.account_id.as_str()).collect::<Vec<_>>().join(", "));
    }
    say!("  load balancers:    listeners bind {lb_bind_ip}:<listener port>; metrics at {endpoint}/metrics");
    if !args.no_profile {
        match config::write_profile(&endpoint, &args.region, &creds) {
            Ok((c, k)) => {
                say!("  AWS CLI profile 'wharf' written to {} and {}", c.display(), k.display());
                say!("  try: aws --profile wharf ecs list-clusters");
            }
            Err(e) => tracing::warn!("could not write the AWS CLI profile: {e:#}"),
        }
    }

    let agent = match embedded {
        Some(e) => start_embedded_agent(e, &endpoint, &args, &creds, regions_rx, shutdown_rx).await,
        None => None,
    };

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let header_timeout = Duration::from_secs(args.http_header_timeout_secs);
    let connections = Arc::new(tokio::sync::Semaphore::new(args.max_connections as usize));
    let mut cap_warned: Option<std::time::Instant> = None;
    loop {
        // A connection slot first: at the cap, new connections wait in the kernel's backlog.
        let slot = match connections.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if cap_warned.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        max_connections = args.max_connections,
                        "connection limit reached: new connections wait until one closes (see --max-connections)"
                    );
                    cap_warned = Some(std::time::Instant::now());
                }
                tokio::select! {
                    slot = connections.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    signal = signals.next() => {
                        tracing::info!(%signal, "shutting down");
                        break;
                    }
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                match &tls {
                    None => serve_watched(&app, graceful.watcher(), TokioIo::new(stream), peer, header_timeout, slot),
                    Some(acceptor) => {
                        // The handshake runs in the connection's own task, bounded like headers.
                        let (acceptor, app, watcher) = (acceptor.clone(), app.clone(), graceful.watcher());
                        tokio::spawn(async move {
                            match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                                Ok(Ok(tls_stream)) => {
                                    serve_watched(&app, watcher, TokioIo::new(tls_stream), peer, header_timeout, slot)
                                }
                                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            signal = signals.next() => {
                tracing::info!(%signal, "shutting down");
                break;
            }
        }
    }
    drop(listener);
    let _ = shutdown_tx.send(true);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after 10 s; closing them");
    }
    controllers.stopped().await;
    if let Some(agent) = agent {
        let _ = agent.await;
    }
    let _ = lb_metrics.await;
    let _ = lb_task.await;
    store.close();
    say!("Wharf stopped.");
    Ok(())
}

/// Starts the agents of `wharf up` on the local Docker engine: one per region in
/// [`LocalAgents`] (the server's own first), each joining that region's cluster `default`
/// (or `--cluster`) and serving its FARGATE tasks. Without Docker the control plane still
/// runs; the agents are then simply absent.
async fn start_embedded_agent(
    e: EmbeddedAgent,
    endpoint: &str,
    args: &ServerArgs,
    creds: &config::Credentials,
    mut regions: tokio::sync::mpsc::UnboundedReceiver<String>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let home_region = args.region.clone();
    let sampling = wharf_types::agent::sampling_interval(Duration::from_secs(args.metrics_period));
    let config_for = {
        let (endpoint, creds, data_dir, e) = (endpoint.to_string(), creds.clone(), args.data_dir.clone(), e.clone());
        // Over TLS the local agents trust exactly the certificate their server serves.
        let pin_certificate = args.tls_cert.clone();
        let home_region = home_region.clone();
        move |region: &str| {
            // The server's own region keeps the state dir it always had.
            let state_dir =
                if region == home_region { data_dir.join("agent") } else { data_dir.join(format!("agent-{region}")) };
            let agent_args = crate::agent_cmd::AgentArgs {
                stats_interval: Some(sampling.as_secs_f64()),
                cluster: Some(e.cluster.clone()),
                endpoint: None,
                region: None,
                config: std::path::PathBuf::from("/nonexistent/ecs.config"),
                data_dir: Some(state_dir.clone()),
                port_bind_ip: e.port_bind_ip.clone(),
                advertise_address: None,
                ca_bundle: None,
                pin_certificate: pin_certificate.clone(),
            };
            crate::agent_cmd::agent_config(
                &agent_args,
                endpoint.clone(),
                region.to_string(),
                creds.access_key_id.clone(),
                creds.secret_access_key.clone(),
                state_dir,
            )
            .map(|mut c| {
                // The local agent is also the built-in Fargate capacity.
                c.fargate = true;
                c
            })
        }
    };
    if let Err(err) = config_for(&home_region) {
        tracing::warn!(error = %err, "no local agent: bad configuration");
        return None;
    }
    say!(
        "  local agent:       joining cluster '{}' on the local Docker engine (and serving FARGATE tasks), in {home_region} and in every region a client uses",
        e.cluster
    );
    // Connecting to Docker happens in the background: a slow engine must not delay the API.
    Some(tokio::spawn(async move {
        let mut waiting = shutdown.clone();
        let Some(runtime) = wharf_agent::docker::DockerRuntime::connect_retrying(&mut waiting).await else { return };
        let mut agents = tokio::task::JoinSet::new();
        let mut stop = shutdown.clone();
        loop {
            tokio::select! {
                region = regions.recv() => {
                    let Some(region) = region else { break };
                    let config = match config_for(&region) {
                        Ok(c) => c,
                        Err(err) => {
                            tracing::warn!(error = %err, %region, "no local agent for this region");
                            continue;
                        }
                    };
                    if region != home_region {
                        tracing::info!(%region, "a client uses a new region: the local agent joins it");
                    }
                    let (runtime, shutdown) = (runtime.clone(), shutdown.clone());
                    agents.spawn(async move {
                        if let Err(err) = wharf_agent::run(config, runtime, shutdown).await {
                            tracing::error!(error = %err, %region, "a local agent stopped");
                        }
                    });
                }
                _ = stop.changed() => break,
            }
        }
        while agents.join_next().await.is_some() {}
    }))
}

/// Waits for SIGTERM or SIGINT.
pub async fn wait_for_signal() -> anyhow::Result<&'static str> {
    Ok(Signals::new()?.next().await)
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

fn request_id() -> String {
    wharf_types::uuid()
}

fn respond(status: u16, content_type: &'static str, body: impl Into<Bytes>, request_id: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// An RPC v2 CBOR answer: every one names the protocol; one without a body has no type.
fn cbor_respond(status: u16, body: Option<Vec<u8>>, request_id: &str) -> Response<Body> {
    let mut resp = match body {
        Some(body) => respond(status, cbor::CONTENT_TYPE, body, request_id),
        None => {
            let mut resp = respond(status, cbor::CONTENT_TYPE, Bytes::new(), request_id);
            resp.headers_mut().remove(http::header::CONTENT_TYPE);
            resp
        }
    };
    resp.headers_mut().insert(cbor::PROTOCOL_HEADER, HeaderValue::from_static(cbor::PROTOCOL));
    resp
}

/// An error in the envelope of the request's protocol, for `service` when it is known: its
/// JSON version, its exception shapes' names in `__type`, and for a query-compatible service
/// the Query code in `x-amzn-query-error`, where botocore looks first.
fn error_response(protocol: Protocol, service: Option<&Service>, err: &WireError, request_id: &str) -> Response<Body> {
    if err.status >= 500 {
        tracing::error!(code = err.code, message = %err.message, request_id, "server fault");
    }
    let shape = service.and_then(|s| s.model.error_shape(err.code));
    let mut resp = match protocol {
        Protocol::Json => {
            let content_type = service.map_or(json::CONTENT_TYPE, Service::json_content_type);
            let body = json::error_body(shape.unwrap_or(err.code), &err.message);
            let mut resp = respond(err.status, content_type, body, request_id);
            resp.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(err.code));
            resp
        }
        Protocol::Cbor => {
            // `__type` is an absolute shape id.
            let type_id = service.map_or_else(|| err.code.to_string(), |s| s.model.shape_id(shape.unwrap_or(err.code)));
            cbor_respond(err.status, Some(cbor::error_body(&type_id, &err.message)), request_id)
        }
        Protocol::Query => respond(err.status, "text/xml", xml::error_response(err, request_id), request_id),
    };
    if protocol != Protocol::Query
        && service.is_some_and(|s| s.model.metadata.aws_query_compatible)
        && let Ok(v) =
            HeaderValue::from_str(&format!("{};{}", err.code, if err.sender_fault { "Sender" } else { "Receiver" }))
    {
        resp.headers_mut().insert("x-amzn-query-error", v);
    }
    resp
}

fn wire(code: &'static str, status: u16, message: impl Into<String>) -> WireError {
    WireError { status, code, message: message.into(), sender_fault: status < 500 }
}

/// An operation the request names that `service` (when known) does not have or Wharf does
/// not implement: in the code set the service answers with.
fn unknown_operation(service: Option<&Service>, message: impl Into<String>) -> WireError {
    let code = match service.map(Service::error_codes) {
        Some(Protocol::Query) => "InvalidAction",
        _ => "UnknownOperationException",
    };
    wire(code, 400, message)
}

/// Which protocol a request speaks, from what AWS clients send.
fn protocol_of(method: &Method, headers: &HeaderMap, query: Option<&str>) -> Option<Protocol> {
    let smithy = headers.get(cbor::PROTOCOL_HEADER).map(HeaderValue::as_bytes);
    if smithy.is_some_and(|v| v.eq_ignore_ascii_case(cbor::PROTOCOL.as_bytes())) {
        return Some(Protocol::Cbor);
    }
    if headers.contains_key("x-amz-target") {
        return Some(Protocol::Json);
    }
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if (method == Method::POST && form) || query.is_some_and(|q| q.contains("Action=")) {
        return Some(Protocol::Query);
    }
    None
}

/// Where a request goes, as far as its headers tell (before its body is read).
#[derive(Debug, Clone, Copy)]
struct Route<'a> {
    protocol: Protocol,
    /// The service, when the request names one Wharf serves in its protocol: JSON's target
    /// prefix, CBOR's path, Query's credential scope (known once the signature's headers are
    /// checked).
    service: Option<&'static Service>,
    /// The operation, when the headers name it (JSON's target, CBOR's path; Query's is in
    /// its body).
    op: Option<&'a str>,
    /// What the request named, for messages: the target, or the path.
    named: &'a str,
}

impl<'a> Route<'a> {
    fn of(protocol: Protocol, headers: &'a HeaderMap, path: &'a str) -> Route<'a> {
        match protocol {
            Protocol::Json => {
                let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let split = json::split_target(target);
                let service = split.and_then(|(prefix, _)| wharf_api::json_service(prefix));
                Route { protocol, service, op: split.map(|(_, op)| op), named: target }
            }
            Protocol::Cbor => {
                let split = cbor::split_path(path);
                let service = split.and_then(|(name, _)| wharf_api::cbor_service(name));
                Route { protocol, service, op: split.map(|(_, op)| op), named: path }
            }
            Protocol::Query => Route { protocol, service: None, op: None, named: "" },
        }
    }

    /// An error in this request's envelope.
    fn error(&self, err: &WireError, rid: &str) -> Response<Body> {
        error_response(self.protocol, self.service, err, rid)
    }
}

/// `resp` with `Connection: close`: the request's body was not read, so the connection
/// cannot carry another request.
fn closing(mut resp: Response<Body>) -> Response<Body> {
    resp.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// A request that failed authentication, in its protocol's envelope and its service's codes.
fn auth_error(route: &Route<'_>, e: &wharf_protocol::sigv4::AuthError, rid: &str) -> Response<Body> {
    let query_codes =
        route.protocol == Protocol::Query || route.service.is_some_and(|s| s.error_codes() == Protocol::Query);
    let (code, message) = if query_codes { (e.query_code(), e.query_message()) } else { (e.json_code(), e.message()) };
    let status = if code.starts_with("Incomplete") { 400 } else { 403 };
    route.error(&wire(code, status, message), rid)
}

async fn handle(
    app: Arc<App>,
    peer: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    // The registry streams its bodies (blobs): it must come before the 1 MiB collection below.
    if wharf_registry::distribution::is_registry_path(req.uri().path()) {
        return Ok(wharf_registry::distribution::handle(&app.state.registry, req).await);
    }
    let rid = request_id();
    let (parts, body) = req.into_parts();
    if parts.uri.path() == "/healthz" {
        return Ok(respond(200, "text/plain", "ok\n", &rid));
    }
    if parts.uri.path() == "/metrics" && parts.method == Method::GET {
        // Unsigned (Prometheus cannot sign SigV4): counters and resource names only, and by
        // default only to clients on this machine (see docs/load-balancer.md).
        if !(app.public_metrics || peer.ip().to_canonical().is_loopback()) {
            return Ok(respond(
                403,
                "text/plain",
                "/metrics is served to loopback clients only (see --public-metrics)\n",
                &rid,
            ));
        }
        return Ok(respond(200, "text/plain; version=0.0.4", app.lb.metrics().prometheus(), &rid));
    }
    let query_string = parts.uri.query().map(str::to_string);
    let agent_path = parts.uri.path().starts_with("/agent/");
    let Some(protocol) =
        protocol_of(&parts.method, &parts.headers, query_string.as_deref()).or(agent_path.then_some(Protocol::Json))
    else {
        return Ok(error_response(
            Protocol::Json,
            None,
            &wire("UnknownOperationException", 404, "No AWS operation at this path."),
            &rid,
        ));
    };
    let mut route = Route::of(protocol, &parts.headers, parts.uri.path());
    // RPC v2 CBOR names its operation by path only: a target header as well is malformed.
    if protocol == Protocol::Cbor
        && (parts.headers.contains_key("x-amz-target") || parts.headers.contains_key("x-amzn-target"))
    {
        let e = wire("SerializationException", 400, "An RPC v2 CBOR request must not carry X-Amz-Target.");
        return Ok(closing(route.error(&e, &rid)));
    }
    // The signature's header checks come before the body is read: an unsigned or badly
    // signed request costs its headers, not its body.
    let signed_for = match app.verifier.precheck(&parts.headers, query_string.as_deref(), SystemTime::now()) {
        Ok(service) => service,
        Err(e) => return Ok(closing(auth_error(&route, &e, &rid))),
    };
    if protocol == Protocol::Query {
        route.service = wharf_api::query_service(&signed_for);
    }
    let limit = wharf_api::max_body_bytes(route.service, route.op);
    let too_large = wire_too_large(limit);
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        drain(body).await;
        return Ok(route.error(&too_large, &rid));
    }
    let body = match tokio::time::timeout(app.body_timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) => return Ok(route.error(&too_large, &rid)),
        Err(_) => {
            let slow = wire(
                "RequestTimeoutException",
                408,
                format!("The request body did not arrive within {} s.", app.body_timeout.as_secs()),
            );
            return Ok(closing(route.error(&slow, &rid)));
        }
    };
    let parts_ref = RequestParts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: query_string.as_deref(),
        headers: &parts.headers,
        body: &body,
    };
    let identity = match app.verifier.verify(&parts_ref, SystemTime::now()) {
        Ok(id) => id,
        Err(e) => return Ok(auth_error(&route, &e, &rid)),
    };
    let scope = Scope::new(identity.account_id, identity.region);
    if let Some(agents) = &app.local_agents
        && agents.saw(&scope.region)
    {
        agents.joined(&app.state.db, &scope).await;
    }
    let ctx = app.state.context(scope, identity.access_key_id);
    if agent_path {
        let (method, path, qs) = (&parts.method, parts.uri.path(), query_string.as_deref());
        return Ok(handle_agent(&app, ctx, &identity.service, method, path, qs, &body, &rid).await);
    }
    let resp = match protocol {
        Protocol::Json | Protocol::Cbor => handle_rpc(&ctx, &route, &identity.service, &body, &rid).await,
        Protocol::Query => {
            let is_get = parts.method == Method::GET;
            handle_query(&ctx, route.service, &identity.service, is_get, query_string.as_deref(), &body, &rid).await
        }
    };
    Ok(resp)
}

fn wire_too_large(limit: usize) -> WireError {
    wire("RequestEntityTooLargeException", 413, format!("Request body is larger than {limit} bytes."))
}

/// Reads and discards a refused body (within bounds) so a client still sending it gets to
/// read the error: closing on unread data resets the connection and loses the response.
async fn drain(mut body: Incoming) {
    let mut left = 16 * MAX_BODY_BYTES;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(frame)) = body.frame().await {
            match frame.data_ref() {
                Some(d) if d.len() < left => left -= d.len(),
                Some(_) => return,
                None => {}
            }
        }
    })
    .await;
}

/// The service a credential scope must name for `service`.
fn check_scope(service: &Service, signed_for: &str) -> Result<(), WireError> {
    let expected = service.model.metadata.signing_name.as_deref().unwrap_or(service.name());
    if signed_for == expected {
        Ok(())
    } else {
        let code = match service.error_codes() {
            Protocol::Query => "SignatureDoesNotMatch",
            _ => "InvalidSignatureException",
        };
        Err(wire(code, 403, format!("Credential should be scoped to correct service: '{expected}'.")))
    }
}

/// A JSON or RPC v2 CBOR request: both name their operation outside the body (target header,
/// path) and differ only in how the body is read and the answer written.
async fn handle_rpc(ctx: &Ctx, route: &Route<'_>, signed_for: &str, body: &[u8], rid: &str) -> Response<Body> {
    let protocol = route.protocol;
    let (Some(service), Some(op)) = (route.service, route.op) else {
        return route.error(&unknown_operation(None, format!("Unknown operation {}", route.named)), rid);
    };
    let fail = |e: &WireError| error_response(protocol, Some(service), e, rid);
    if let Err(e) = check_scope(service, signed_for) {
        return fail(&e);
    }
    if service.model.operation(op).is_none() {
        return fail(&unknown_operation(Some(service), format!("Unknown operation {}", route.named)));
    }
    if !service.implements(op) {
        return fail(&unknown_operation(
            Some(service),
            format!("Wharf does not implement {op} yet (see docs/compatibility.md)."),
        ));
    }
    let input = match protocol {
        Protocol::Cbor => {
            cbor::decode(body).map_err(|e| Error::Serialization(format!("Request body is not valid CBOR: {e}")))
        }
        _ if body.iter().all(u8::is_ascii_whitespace) => Ok(Value::Object(Default::default())),
        _ => serde_json::from_slice(body)
            .map_err(|e| Error::Serialization(format!("Request body is not valid JSON: {e}"))),
    };
    let result = match input.and_then(|input| service.model.validate(op, input)) {
        Ok(input) => wharf_api::call(service, ctx, op, input)
            .await
            .unwrap_or_else(|| Err(Error::Internal(format!("{op} is listed but has no handler")))),
        Err(e) => Err(e),
    };
    match result {
        Ok(out) if protocol == Protocol::Cbor => cbor_respond(200, cbor::encode_output(service.model, op, &out), rid),
        Ok(out) => {
            let out = service.model.conform_output(op, out);
            respond(200, service.json_content_type(), serde_json::to_vec(&out).unwrap_or_default(), rid)
        }
        Err(e) => fail(&wire_error(&e, service.name(), service.error_codes())),
    }
}

async fn handle_query(
    ctx: &Ctx,
    service: Option<&'static Service>,
    signed_for: &str,
    is_get: bool,
    qs: Option<&str>,
    body: &[u8],
    rid: &str,
) -> Response<Body> {
    let fail = |e: &WireError| error_response(Protocol::Query, service, e, rid);
    let source = if is_get { qs.unwrap_or_default().as_bytes() } else { body };
    let Some(req) = query::parse_form(source) else {
        return fail(&wire("MissingAction", 400, "Missing Action"));
    };
    let Some(service) = service else {
        return fail(&wire(
            "InvalidAction",
            400,
            format!("Could not find operation {} for the service '{signed_for}'", req.action),
        ));
    };
    if !service.implements(&req.action) {
        return fail(&wire(
            "InvalidAction",
            400,
            format!(
                "Could not find operation {} for version {}",
                req.action,
                req.version.as_deref().unwrap_or("NO_VERSION_SPECIFIED")
            ),
        ));
    }
    // The body was read under the service's largest limit; the operation has its own.
    let limit = service.max_body_bytes_for(&req.action);
    if body.len() > limit {
        return fail(&wire_too_large(limit));
    }
    let result = match query::decode_input(service.model, &req) {
        Ok(input) => wharf_api::call(service, ctx, &req.action, input)
            .await
            .unwrap_or_else(|| Err(Error::Internal(format!("{} is listed but has no handler", req.action)))),
        Err(e) => Err(e),
    };
    match result {
        Ok(out) => respond(200, "text/xml", xml::response(service.model, &req.action, &out, rid), rid),
        Err(e) => fail(&wire_error(&e, service.name(), service.error_codes())),
    }
}

/// The private agent endpoints (signed like every ECS call): the assignment stream, health
/// reports and usage reports.
#[allow(clippy::too_many_arguments)]
async fn handle_agent(
    app: &App,
    ctx: Ctx,
    signed_for: &str,
    method: &Method,
    path: &str,
    qs: Option<&str>,
    body: &[u8],
    rid: &str,
) -> Response<Body> {
    let ecs = Some(&*wharf_api::ECS);
    if let Err(e) = check_scope(&wharf_api::ECS, signed_for) {
        return error_response(Protocol::Json, ecs, &e, rid);
    }
    let fail = |e: Error| error_response(Protocol::Json, ecs, &wire_error(&e, "ecs", Protocol::Json), rid);
    match (method, path) {
        (&Method::GET, wharf_types::agent::ASSIGNMENTS_PATH) => {
            let params: HashMap<String, String> =
                form_urlencoded::parse(qs.unwrap_or_default().as_bytes()).into_owned().collect();
            if let Some(host) = params.get("fargateHost") {
                return match wharf_api::agent_api::fargate_assignments(
                    ctx,
                    host,
                    app.agent_timeout,
                    app.shutdown.clone(),
                ) {
                    Ok(rx) => ndjson(rx),
                    Err(e) => fail(e),
                };
            }
            let (Some(cluster), Some(instance)) = (params.get("cluster"), params.get("containerInstance")) else {
                return fail(Error::invalid("containerInstance", "cluster and containerInstance are required."));
            };
            match wharf_api::agent_api::assignments(ctx, cluster, instance, app.agent_timeout, app.shutdown.clone())
                .await
            {
                Ok(rx) => ndjson(rx),
                Err(e) => fail(e),
            }
        }
        (&Method::POST, wharf_types::agent::USAGE_PATH) => {
            let report: wharf_types::agent::UsageReport = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return fail(Error::Serialization(format!("Invalid usage report: {e}"))),
            };
            match wharf_api::ecs::agent::report_usage(&ctx, &report).await {
                Ok(_) => {
                    let ack = wharf_types::agent::UsageAck { interval_seconds: app.sampling.as_secs_f64() };
                    respond(200, json::CONTENT_TYPE, serde_json::to_vec(&ack).unwrap_or_default(), rid)
                }
                Err(e) => fail(e),
            }
        }
        (&Method::POST, wharf_types::agent::REPORT_PATH) => {
            let report: wharf_types::agent::TaskReport = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return fail(Error::Serialization(format!("Invalid task report: {e}"))),
            };
            match wharf_api::ecs::agent::report_task(&ctx, &report).await {
                Ok(()) => respond(200, json::CONTENT_TYPE, "{}", rid),
                Err(e) => fail(e),
            }
        }
        _ => error_response(
            Protocol::Json,
            ecs,
            &wire("UnknownOperationException", 404, format!("No agent endpoint {method} {path}")),
            rid,
        ),
    }
}

/// A streaming response of newline-delimited JSON lines.
fn ndjson(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(hyper::body::Frame::data(b)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    resp
}

/// The data dir holds task environments, credentials and the secrets key: only its owner
/// may enter it (0700), made so if it exists with a looser mode.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Databases (and the WAL and shared-memory files SQLite makes beside them with the
/// database's mode) readable by their owner only: each is created empty with mode 0600
/// before SQLite opens it, or narrowed to 0600 when it exists.
fn private_files(dir: &std::path::Path, names: &[&str]) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    for name in names {
        let path = dir.join(name);
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        for side in ["-wal", "-shm"] {
            let p = dir.join(format!("{name}{side}"));
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}
