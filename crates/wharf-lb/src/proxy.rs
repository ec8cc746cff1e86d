//! The request path: match a rule, run its action, forward to a target over a pooled
//! keep-alive connection and stream the answer back.
//!
//! Status codes follow ALB: 503 when the chosen target group has no target that can take the
//! request, 502 when the target reset the connection or answered something that is not HTTP,
//! 504 when it did not answer within the load balancer's idle timeout (or did not accept the
//! connection within 10 s). Where the request provably did no harm — the target refused the
//! connection, or a GET/HEAD/OPTIONS connection ended before any answer — it goes to another
//! target of the group (three targets at most) instead of becoming a 502: a task that died
//! between two health checks costs no request.
//!
//! This module must never lock or block: it reads the snapshot through `arc-swap` and the
//! targets' state through atomics.

use crate::model::{Act, Fixed, Forward, Group, ListenerTable, Redirect, TargetRt};
use crate::rules::RequestView;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long a target may take to accept a TCP connection (ALB's fixed 10 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Milliseconds on the plane's monotonic clock.
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // +1 so that 0 can mean "never".
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Per client connection, fixed for its lifetime.
#[derive(Debug)]
pub struct ConnCtx {
    pub table: Arc<ArcSwap<ListenerTable>>,
    pub client_ip: IpAddr,
    /// `client_ip` as a header value, made once per connection.
    pub client_ip_value: HeaderValue,
    pub https: bool,
}

/// Why a forward failed, and so which status the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Refused,
    Timeout,
}

impl Failure {
    fn status(self) -> StatusCode {
        match self {
            Failure::Refused => StatusCode::BAD_GATEWAY,
            Failure::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

pub async fn handle(ctx: Arc<ConnCtx>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let table = ctx.table.load_full();
    table.lb.metrics.request();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let view = RequestView {
        method: req.method(),
        path: req.uri().path(),
        query: req.uri().query(),
        host,
        headers: req.headers(),
        source: ctx.client_ip,
    };
    let rule = table.rules.iter().find(|r| r.conds.iter().all(|c| c.matches(&view)));
    let resp = match rule.map(|r| &r.action) {
        Some(Act::Forward(f)) => forward(&ctx, &table, f, req).await,
        Some(Act::Redirect(r)) => redirect(&ctx, &table, r, &view),
        Some(Act::Fixed(f)) => fixed(f),
        None => fixed(&Fixed { status: StatusCode::NOT_FOUND, content_type: None, body: Bytes::new() }),
    };
    if resp.status().is_server_error() && !matches!(resp.body(), ProxyBody::Upstream(_)) {
        table.lb.metrics.elb_5xx();
    }
    Ok(resp)
}

fn fixed(f: &Fixed) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::Full(Some(f.body.clone())));
    *resp.status_mut() = f.status;
    if let Some(ct) = &f.content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
    }
    resp
}

/// ALB's own error pages.
pub fn error_page(status: StatusCode) -> Response<ProxyBody> {
    // ALB's wording (nginx's), not the canonical reason phrases.
    let reason = match status.as_u16() {
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => status.canonical_reason().unwrap_or(""),
    };
    let body = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n",
        code = status.as_u16()
    );
    let mut resp = Response::new(ProxyBody::Full(Some(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    resp
}

fn redirect(ctx: &ConnCtx, table: &ListenerTable, r: &Redirect, v: &RequestView<'_>) -> Response<ProxyBody> {
    let proto = if ctx.https { "HTTPS" } else { "HTTP" };
    let host =
        v.host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(v.host, |(h, _)| h);
    let port = table.port.to_string();
    let query = v.query.unwrap_or("");
    let fill = |s: &str| {
        s.replace("#{protocol}", proto)
            .replace("#{host}", host)
            .replace("#{port}", &port)
            .replace("#{path}", v.path)
            .replace("#{query}", query)
    };
    let scheme = fill(&r.protocol).to_ascii_lowercase();
    let (h, p, path, q) = (fill(&r.host), fill(&r.port), fill(&r.path), fill(&r.query));
    let mut loc = format!("{scheme}://{h}");
    if !((scheme == "http" && p == "80") || (scheme == "https" && p == "443") || p.is_empty()) {
        let _ = write!(loc, ":{p}");
    }
    if !path.starts_with('/') {
        loc.push('/');
    }
    loc.push_str(&path);
    if !q.is_empty() {
        let _ = write!(loc, "?{q}");
    }
    let mut resp = Response::new(ProxyBody::Full(None));
    *resp.status_mut() = r.status;
    match HeaderValue::from_str(&loc) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => return error_page(StatusCode::INTERNAL_SERVER_ERROR),
    }
    resp
}

/// The value of cookie `name` in the request's Cookie headers.
fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        line.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
    })
}

fn set_cookie(resp: &mut Response<ProxyBody>, name: &str, id: u64, ttl: Duration) {
    let v = format!("{name}={id:016x}; Max-Age={}; Path=/", ttl.as_secs());
    if let Ok(v) = HeaderValue::from_str(&v) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

const HOP_BY_HOP: [header::HeaderName; 5] = [
    header::CONNECTION,
    header::HeaderName::from_static("keep-alive"),
    header::HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
];

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade"))))
}

async fn forward(ctx: &ConnCtx, table: &ListenerTable, f: &Forward, mut req: Request<Incoming>) -> Response<ProxyBody> {
    // Target-group stickiness of a weighted forward, then the group's own stickiness.
    let sticky_group = f.group_stickiness.and_then(|_| {
        let id = u64::from_str_radix(cookie(req.headers(), "AWSALBTG")?, 16).ok()?;
        f.groups.iter().find(|(g, w)| *w > 0 && crate::model::fnv(g.arn.as_bytes()) == id).map(|(g, _)| g)
    });
    let Some(group) = sticky_group.or_else(|| f.pick_group()) else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE);
    };
    group.metrics.request();
    let mut sticky_target = group
        .stickiness
        .and_then(|_| u64::from_str_radix(cookie(req.headers(), "AWSALB")?, 16).ok())
        .and_then(|id| group.sticky(id));
    let now = if group.slow_start_ms > 0 { now_ms() } else { 0 };

    // The request as the target sees it: origin-form HTTP/1.1, forwarding headers, no
    // hop-by-hop headers (except an Upgrade handshake's).
    let upgrade = is_upgrade(&req);
    if req.uri().scheme().is_some() {
        let pq = req.uri().path_and_query().cloned();
        let authority = req.uri().authority().map(|a| a.as_str().to_string());
        if !req.headers().contains_key(header::HOST)
            && let Some(v) = authority.and_then(|a| HeaderValue::from_str(&a).ok())
        {
            req.headers_mut().insert(header::HOST, v);
        }
        *req.uri_mut() = pq.map(Uri::from).unwrap_or_else(|| Uri::from_static("/"));
    }
    *req.version_mut() = Version::HTTP_11;
    let h = req.headers_mut();
    if !upgrade && h.contains_key(header::CONNECTION) {
        for name in &HOP_BY_HOP {
            h.remove(name);
        }
        h.remove(header::UPGRADE);
    }
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => {
            HeaderValue::from_str(&format!("{prev}, {}", ctx.client_ip)).unwrap_or(ctx.client_ip_value.clone())
        }
        None => ctx.client_ip_value.clone(),
    };
    h.insert("x-forwarded-for", xff);
    h.insert("x-forwarded-proto", HeaderValue::from_static(if ctx.https { "https" } else { "http" }));
    h.insert("x-forwarded-port", table.port_value.clone());

    // Pick a target and claim it. A target that refuses the connection got nothing of the
    // request, and a safe bodiless request whose connection ended before any answer may be
    // sent again (RFC 9110 §9.2.2): either goes to another target instead of becoming a 502
    // (a task that died between two health checks costs no request).
    let replay = if upgrade { None } else { Replay::of(&req) };
    let mut req = req.map(ReqBody::Client);
    let mut tried: Vec<Arc<TargetRt>> = Vec::new();
    let began = Instant::now();
    let (resp, up, lease) = loop {
        let Some(lease) = claim(group, now, &mut sticky_target, &tried) else {
            group.metrics.elb_5xx();
            return error_page(if tried.is_empty() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_GATEWAY
            });
        };
        let target = &lease.target;
        let result = if upgrade {
            tunnel(target, req, table.lb.idle_timeout).await
        } else {
            send(target, req, table.lb.idle_timeout).await
        };
        let (again, fail) = match result {
            Ok((resp, up)) => break (resp, up, lease),
            Err(Unsent(back)) => (Some(*back), Failure::Refused),
            Err(Sent { fail, retryable: true }) => (replay.as_ref().map(Replay::request), fail),
            Err(Sent { fail, .. }) => (None, fail),
        };
        match again {
            Some(r) if tried.len() < MAX_TRIES => {
                tracing::debug!(target = %target.addr, "no answer from the target; trying another");
                tried.push(target.clone());
                req = r;
            }
            _ => {
                group.metrics.elb_5xx();
                tracing::debug!(target = %target.addr, ?fail, "forward failed");
                return error_page(fail.status());
            }
        }
    };
    let target = lease.target.clone();
    let micros = began.elapsed().as_micros() as u64;
    let status = resp.status().as_u16();
    group.metrics.target_response(micros, status);
    table.lb.metrics.target_response(micros, status);
    let (mut parts, body) = resp.into_parts();
    if parts.headers.contains_key(header::CONNECTION) && status != 101 {
        for name in &HOP_BY_HOP {
            parts.headers.remove(name);
        }
    }
    let mut resp = Response::from_parts(parts, ProxyBody::Upstream(UpstreamBody { body, lease: Some(lease), up }));
    if let Some(ttl) = group.stickiness {
        set_cookie(&mut resp, "AWSALB", target.sticky, ttl);
    }
    if let Some(ttl) = f.group_stickiness {
        set_cookie(&mut resp, "AWSALBTG", crate::model::fnv(group.arn.as_bytes()), ttl);
    }
    resp
}

/// Targets a request may go to before the client gets a 502.
const MAX_TRIES: usize = 3;

/// The next target for a request and a claim on it: the sticky one first, then the group's
/// pick, passing over targets this request already tried and any the plane has just started
/// draining (see [`Lease::claim`]).
fn claim(group: &Group, now: u64, sticky: &mut Option<&Arc<TargetRt>>, tried: &[Arc<TargetRt>]) -> Option<Lease> {
    for _ in 0..group.targets.len() + 2 {
        let t = sticky.take().or_else(|| group.pick(now))?;
        if tried.iter().any(|r| Arc::ptr_eq(r, t)) {
            continue;
        }
        if let Some(lease) = Lease::claim(t) {
            return Some(lease);
        }
    }
    None
}

/// Why a forward failed.
#[derive(Debug)]
enum ForwardError {
    /// The target refused the connection: nothing was sent, the request is handed back.
    Unsent(Box<Request<ReqBody>>),
    /// The request may have reached the target; `retryable` when the connection ended
    /// before any answer (closed or reset), not when the target answered something that is
    /// not HTTP.
    Sent { fail: Failure, retryable: bool },
}
use ForwardError::{Sent, Unsent};

impl ForwardError {
    fn sent(fail: Failure) -> ForwardError {
        Sent { fail, retryable: false }
    }
    /// A request hyper could not complete: handed back if it was never written.
    fn from_send(mut e: TrySendError<Request<ReqBody>>) -> ForwardError {
        // The send future fails only before the response head: unless the target answered
        // something that is not HTTP (or we built a bad request), no answer came at all.
        let err = e.error();
        let retryable = !(err.is_parse() || err.is_parse_status() || err.is_parse_too_large() || err.is_user());
        match e.take_message() {
            Some(r) => Unsent(Box::new(r)),
            None => Sent { fail: Failure::Refused, retryable },
        }
    }
}

/// A request's body on its way to a target: the client's, or none (a safe request sent again).
#[derive(Debug)]
pub enum ReqBody {
    Client(Incoming),
    Empty,
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ReqBody::Client(b) => Pin::new(b).poll_frame(cx),
            ReqBody::Empty => Poll::Ready(None),
        }
    }
    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Client(b) => b.is_end_stream(),
            ReqBody::Empty => true,
        }
    }
    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Client(b) => b.size_hint(),
            ReqBody::Empty => SizeHint::with_exact(0),
        }
    }
}

/// What is needed to send a safe, bodiless request again (GET, HEAD, OPTIONS): RFC 9110
/// lets an intermediary retry it when the connection ends before any answer.
struct Replay {
    method: http::Method,
    uri: Uri,
    headers: http::HeaderMap,
}

impl Replay {
    fn of(req: &Request<Incoming>) -> Option<Replay> {
        let safe = matches!(*req.method(), http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
        (safe && req.body().is_end_stream()).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        })
    }
    fn request(&self) -> Request<ReqBody> {
        let mut req = Request::new(ReqBody::Empty);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// A keep-alive connection to a target. It is not spawned as a task of its own: whoever uses
/// it (the request, then the response body) drives its I/O, so a proxied request stays in the
/// client connection's task with no hand-off between tasks.
pub struct Upstream {
    sender: SendRequest<ReqBody>,
    conn: Connection<TokioIo<TcpStream>, ReqBody>,
    /// The connection has ended (its future completed; never poll it again).
    done: bool,
    count: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("done", &self.done).finish_non_exhaustive()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Relaxed);
    }
}

impl Upstream {
    /// Drives the connection's I/O; true once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.done && Pin::new(&mut self.conn).poll(cx).is_ready() {
            self.done = true;
        }
        self.done
    }

    /// Ready for a new request (false: the connection is gone).
    async fn ready(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            if self.drive(cx) {
                return Poll::Ready(false);
            }
            match self.sender.poll_ready(cx) {
                Poll::Ready(r) => Poll::Ready(r.is_ok()),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Sends `req`, driving the connection until the response head arrives.
    async fn send(&mut self, req: Request<ReqBody>) -> Result<Response<Incoming>, TrySendError<Request<ReqBody>>> {
        let mut fut = std::pin::pin!(self.sender.try_send_request(req));
        let (conn, done) = (&mut self.conn, &mut self.done);
        std::future::poll_fn(|cx| {
            if !*done && Pin::new(&mut *conn).poll(cx).is_ready() {
                *done = true;
            }
            fut.as_mut().poll(cx)
        })
        .await
    }
}

/// An idle pooled connection to the target, if one is usable.
async fn checkout(t: &TargetRt) -> Option<Box<Upstream>> {
    while let Some(mut up) = t.idle.pop() {
        if up.ready().await {
            return Some(up);
        }
    }
    None
}

async fn dial(t: &TargetRt) -> Result<TcpStream, Failure> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(t.addr)).await {
        Err(_) => return Err(Failure::Timeout),
        Ok(Err(_)) => return Err(Failure::Refused),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn connect(t: &TargetRt) -> Result<Box<Upstream>, Failure> {
    let stream = dial(t).await?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Refused)?;
    t.conns.fetch_add(1, Relaxed);
    Ok(Box::new(Upstream { sender, conn, done: false, count: t.conns.clone() }))
}

type Forwarded = (Response<Incoming>, Option<Box<Upstream>>);

async fn send(t: &Arc<TargetRt>, req: Request<ReqBody>, timeout: Duration) -> Result<Forwarded, ForwardError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut req = req;
    // A pooled connection the target closed meanwhile hands the request back unsent: retry
    // it once on a new connection.
    let pooled = checkout(t).await;
    let fresh = pooled.is_none();
    let mut up = match pooled {
        Some(s) => s,
        None => match connect(t).await {
            Ok(up) => up,
            Err(fail) => return Err(refused_or(fail, req)),
        },
    };
    match tokio::time::timeout_at(deadline, up.send(req)).await {
        Err(_) => return Err(ForwardError::sent(Failure::Timeout)),
        Ok(Ok(resp)) => return Ok((resp, Some(up))),
        Ok(Err(e)) => match ForwardError::from_send(e) {
            Unsent(r) if !fresh => req = *r,
            other => return Err(other),
        },
    }
    let mut up = match connect(t).await {
        Ok(up) => up,
        Err(fail) => return Err(refused_or(fail, req)),
    };
    match tokio::time::timeout_at(deadline, up.send(req)).await {
        Err(_) => Err(ForwardError::sent(Failure::Timeout)),
        Ok(Ok(resp)) => Ok((resp, Some(up))),
        Ok(Err(e)) => Err(ForwardError::from_send(e)),
    }
}

/// A connection that could not be made: a refusal hands the request back.
fn refused_or(fail: Failure, req: Request<ReqBody>) -> ForwardError {
    match fail {
        Failure::Refused => Unsent(Box::new(req)),
        fail => ForwardError::sent(fail),
    }
}

/// An Upgrade handshake (websockets) on a connection of its own; after `101` the two upgraded
/// streams are spliced until either side closes.
async fn tunnel(t: &Arc<TargetRt>, mut req: Request<ReqBody>, timeout: Duration) -> Result<Forwarded, ForwardError> {
    let stream = match dial(t).await {
        Ok(s) => s,
        Err(fail) => return Err(refused_or(fail, req)),
    };
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ForwardError::sent(Failure::Refused))?;
    t.conns.fetch_add(1, Relaxed);
    let count = t.conns.clone();
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
        count.fetch_sub(1, Relaxed);
    });
    let mut resp = match tokio::time::timeout(timeout, sender.send_request(req)).await {
        Err(_) => return Err(ForwardError::sent(Failure::Timeout)),
        Ok(Err(_)) => return Err(ForwardError::sent(Failure::Refused)),
        Ok(Ok(r)) => r,
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let target_upgrade = hyper::upgrade::on(&mut resp);
        let t = t.clone();
        t.conns.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            if let (Ok(c), Ok(s)) = (client_upgrade.await, target_upgrade.await) {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(s)).await;
            }
            t.conns.fetch_sub(1, Relaxed);
        });
    }
    Ok((resp, None))
}

/// One request's hold on its target: counted in flight until the response body ends.
#[derive(Debug)]
pub struct Lease {
    target: Arc<TargetRt>,
}

impl Lease {
    /// Counts a request on `target`, unless the target has started draining (see
    /// [`TargetRt::begin_draining`]: the count is taken before the flag is read).
    pub fn claim(target: &Arc<TargetRt>) -> Option<Lease> {
        target.inflight.fetch_add(1, SeqCst);
        let lease = Lease { target: target.clone() };
        (!target.draining.load(SeqCst)).then_some(lease)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.target.inflight.fetch_sub(1, Relaxed);
    }
}

/// A target's response body; it drives the connection, which returns to the pool once the
/// body has ended.
#[derive(Debug)]
pub struct UpstreamBody {
    body: Incoming,
    /// Held until the body's last byte has been read (not until the response is dropped).
    lease: Option<Lease>,
    up: Option<Box<Upstream>>,
}

impl UpstreamBody {
    fn release(&mut self) {
        let Some(lease) = self.lease.take() else { return };
        if let Some(up) = self.up.take()
            && !up.done
            && !lease.target.draining.load(Relaxed)
        {
            let _ = lease.target.idle.push(up);
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An unread body leaves the connection mid-response: it is not reusable then.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

/// What a listener answers with: a target's body, or one the load balancer made.
#[derive(Debug)]
pub enum ProxyBody {
    Upstream(UpstreamBody),
    Full(Option<Bytes>),
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(u) => {
                if let Some(up) = &mut u.up {
                    up.drive(cx);
                }
                let r = Pin::new(&mut u.body).poll_frame(cx);
                match &r {
                    Poll::Ready(None) => u.release(),
                    Poll::Ready(Some(Ok(_))) if u.body.is_end_stream() => u.release(),
                    Poll::Ready(Some(Err(_))) => u.up = None,
                    _ => {}
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Upstream(u) => u.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Full(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(u) => u.body.size_hint(),
        }
    }
}
