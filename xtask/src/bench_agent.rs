//! `xtask bench-agent`: the agent running real containers on the local Docker engine.
//!
//! One control plane (`wharf up --no-agent`) and one standalone agent process (`wharf agent`)
//! joined to a cluster of its own, all on 127.0.0.1. Three measurements:
//!
//! 1. start overhead: RunTask → RUNNING (DescribeTasks polled) for bridge tasks with a dynamic
//!    host port, against the same container created and started through the Docker API (and,
//!    for reference, with the `docker run -d` CLI), one at a time and 20 at once;
//! 2. the agent process's resident memory, idle after registering and with 50 running tasks;
//! 3. awslogs: one container printing 10,000 lines at once, until every line is readable with
//!    GetLogEvents, checked line by line.
//!
//! Every container it creates carries `com.amazonaws.ecs.cluster=<its cluster>`, and is removed
//! at the end by that label.

use crate::client::{self, Conn, Endpoint};
use crate::servers;
use anyhow::{Context, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tasks (and as many plain Docker containers) in the start-overhead comparison.
    #[arg(long, default_value_t = 20)]
    tasks: usize,
    /// Running tasks for the agent's loaded memory figure.
    #[arg(long, default_value_t = 50)]
    rss_tasks: usize,
    /// Lines the log test's container prints at once.
    #[arg(long, default_value_t = 10_000)]
    log_lines: usize,
    /// How often DescribeTasks (and Docker's inspect) are polled, in milliseconds.
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// Memory (MiB) of each task's container and of each plain Docker container.
    #[arg(long, default_value_t = 16)]
    memory_mib: i64,
    /// The image every task and container runs.
    #[arg(long, default_value = "wharf-echo:latest")]
    image: String,
    /// Do not run scripts/build-test-images first (the image must then exist).
    #[arg(long)]
    skip_image_build: bool,
    /// Benchmark this Wharf binary instead of building one with `cargo build --release -p wharf`.
    #[arg(long)]
    wharf_bin: Option<PathBuf>,
    /// The Docker engine's socket [default: DOCKER_HOST's unix:// path, else /var/run/docker.sock]
    #[arg(long)]
    docker_socket: Option<PathBuf>,
    /// Before each measured round, wait up to this many seconds for processes outside the
    /// benchmark to go quiet (under --quiet-pct of a core).
    #[arg(long, default_value_t = 60)]
    quiet_wait: u64,
    /// What "quiet" means: other processes using under this % of one core.
    #[arg(long, default_value_t = 20.0)]
    quiet_pct: f64,
    /// Times a start round disturbed by other processes is run again.
    #[arg(long, default_value_t = 2)]
    reruns: usize,
    /// A line for the agent's ecs.config (`KEY=VALUE`, repeatable), e.g.
    /// `ECS_IMAGE_PULL_BEHAVIOR=prefer-cached`; by default the agent runs with no config file.
    #[arg(long = "agent-config", value_name = "KEY=VALUE")]
    agent_config: Vec<String>,
    /// Keep the scratch directory (the control plane's and the agent's logs) and print where.
    #[arg(long)]
    keep_scratch: bool,
    /// Only these parts (quick experiments) [default: all]
    #[arg(long, value_delimiter = ',', value_enum)]
    parts: Vec<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// Start overhead, one task at a time.
    Start,
    /// Start overhead, 20 at once.
    Concurrent,
    Rss,
    Logs,
}

const ECHO_FAMILY: &str = "bench-echo";
const LOGS_FAMILY: &str = "bench-logs";
const CLUSTER_LABEL: &str = "com.amazonaws.ecs.cluster";
/// Marks the plain Docker containers of the baseline (they also carry the cluster label).
const BASELINE_LABEL: &str = "dev.wharf.bench-agent";
const TASK_TIMEOUT: Duration = Duration::from_secs(120);

fn now_epoch() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `p`-quantile (nearest rank) of `v`, which need not be sorted.
fn quantile(v: &[f64], p: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn f1(x: f64) -> String {
    if x.is_nan() { "-".into() } else { format!("{x:.1}") }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process (control plane or agent); killed when dropped.
#[derive(Debug)]
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM (through kill(1): this crate forbids `unsafe`), SIGKILL after `grace`.
    fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `wharf up --no-agent` on a free port; returns once it answers a signed ListClusters.
async fn start_control_plane(bin: &Path, data_dir: &Path, log: &Path) -> anyhow::Result<(Proc, Endpoint)> {
    let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new(bin)
        .args(["up", "--no-agent", "--listen", "127.0.0.1:0", "--no-profile", "--account-id", "123456789012"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("WHARF_ACCESS_KEY_ID", client::ACCESS_KEY_ID)
        .env("WHARF_SECRET_ACCESS_KEY", client::SECRET_ACCESS_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("wharf's stdout")?;
    let proc = Proc { name: "wharf up --no-agent", child, log: log.to_path_buf() };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        // Keep draining stdout so Wharf never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("endpoint:") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let Ok(Some(url)) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await else {
        bail!("wharf printed no `endpoint:` line within 30 s; its log ends with:\n{}", proc.log_tail());
    };
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("wharf printed an endpoint that is not http://IP:PORT: {url}"))?;
    let endpoint = Endpoint::new(addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut conn) = Conn::open(&endpoint).await
            && let Ok(reply) = conn.call("ListClusters", &Bytes::from_static(b"{}")).await
            && reply.status.is_success()
        {
            return Ok((proc, endpoint));
        }
        if Instant::now() > deadline {
            bail!("wharf did not answer within 30 s; its log ends with:\n{}", proc.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `wharf agent` joining `cluster` at `endpoint`, with credentials as any AWS client gets them.
fn start_agent(
    bin: &Path,
    endpoint: &Endpoint,
    cluster: &str,
    scratch: &Path,
    config: &[String],
) -> anyhow::Result<Proc> {
    let log = scratch.join("agent.log");
    let config_file = scratch.join("ecs.config");
    if !config.is_empty() {
        std::fs::write(&config_file, config.iter().map(|l| format!("{l}\n")).collect::<String>())?;
    }
    let stderr = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(bin)
        .args(["agent", "--cluster", cluster, "--endpoint", &format!("http://{}", endpoint.addr)])
        .arg("--data-dir")
        .arg(scratch.join("agent"))
        // Not /etc/ecs/ecs.config: without --agent-config the file does not exist, and the
        // agent runs with its defaults (pull behaviour `default`, and so on).
        .arg("--config")
        .arg(&config_file)
        .env("AWS_ACCESS_KEY_ID", client::ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", client::SECRET_ACCESS_KEY)
        .env("AWS_REGION", client::REGION)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {} agent", bin.display()))?;
    Ok(Proc { name: "wharf agent", child, log })
}

/// The pid of the process whose command name is `comm` (dockerd) and whose parent is not
/// (dockerd re-executes itself for short-lived helpers).
fn pid_of(comm: &str) -> Option<u32> {
    let comm_of = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).map(|c| c.trim().to_string());
    let parent_of = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok()
    };
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| comm_of(pid).is_ok_and(|c| c == comm))
        .find(|&pid| parent_of(pid).is_none_or(|ppid| comm_of(ppid).map_or(true, |c| c != comm)))
}

/// Resident memory of `pid` sampled every 100 ms for `window`: (max, last), in MiB.
async fn sample_rss(pid: u32, window: Duration) -> anyhow::Result<(f64, f64)> {
    let end = Instant::now() + window;
    let mut max: f64 = 0.0;
    loop {
        let last = servers::rss_mb(pid)?;
        max = max.max(last);
        if Instant::now() >= end {
            return Ok((max, last));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CPU used by some processes (and the whole machine) over a stretch of time.
#[derive(Debug, Clone)]
struct CpuMeter {
    start: Instant,
    machine: Duration,
    procs: Vec<(&'static str, Option<u32>, Duration)>,
}

impl CpuMeter {
    fn start(procs: &[(&'static str, Option<u32>)]) -> Self {
        CpuMeter {
            start: Instant::now(),
            machine: servers::machine_busy(),
            procs: procs
                .iter()
                .map(|&(name, pid)| (name, pid, pid.map_or(Duration::ZERO, |p| servers::cpu_time(Some(p)))))
                .collect(),
        }
    }

    fn secs(&self) -> f64 {
        self.start.elapsed().as_secs_f64().max(1e-9)
    }

    /// Each process's CPU since the start, in % of one core.
    fn per_proc(&self) -> Vec<(&'static str, f64)> {
        let secs = self.secs();
        self.procs
            .iter()
            .filter_map(|(name, pid, before)| {
                let used = servers::cpu_time(Some((*pid)?)).saturating_sub(*before);
                Some((*name, 100.0 * used.as_secs_f64() / secs))
            })
            .collect()
    }

    /// Each process's CPU since the start, in ms.
    fn per_proc_ms(&self) -> Vec<(&'static str, f64)> {
        let secs = self.secs();
        self.per_proc().into_iter().map(|(n, pct)| (n, pct * secs * 10.0)).collect()
    }

    fn machine_pct(&self) -> f64 {
        100.0 * servers::machine_busy().saturating_sub(self.machine).as_secs_f64() / self.secs()
    }

    /// CPU the rest of the machine used (processes that are not in the benchmark), in % of one
    /// core: interference. Container processes of the benchmark count here too (they are idle).
    fn other_pct(&self) -> f64 {
        (self.machine_pct() - self.per_proc().iter().map(|(_, p)| p).sum::<f64>()).max(0.0)
    }

    /// `name x% · …` with 100% = one core.
    fn summary(&self) -> String {
        let mut parts: Vec<String> = self.per_proc().iter().map(|(n, p)| format!("{n} {p:.0}%")).collect();
        parts.push(format!("rest of the machine (runc, shims, other processes) {:.0}%", self.other_pct()));
        format!("CPU over {:.1} s (100% = one core): {}", self.secs(), parts.join(", "))
    }
}

/// Waits (at most `max`) until processes outside the benchmark use under `pct`% of a core over
/// half a second; what they used in the last half second.
async fn wait_quiet(procs: &[(&'static str, Option<u32>)], pct: f64, max: Duration) -> f64 {
    let give_up = Instant::now() + max;
    let waited = Instant::now();
    loop {
        let meter = CpuMeter::start(procs);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let other = meter.other_pct();
        if other < pct || Instant::now() >= give_up {
            if waited.elapsed() > Duration::from_secs(2) {
                println!(
                    "    (waited {:.0} s for other processes to go quiet; now {other:.0}% of a core)",
                    waited.elapsed().as_secs_f64()
                );
            }
            return other;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Docker Engine API over its unix socket

/// One keep-alive HTTP/1.1 connection to the Docker engine.
struct Docker {
    socket: PathBuf,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl std::fmt::Debug for Docker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docker").field("socket", &self.socket).finish_non_exhaustive()
    }
}

fn docker_socket(arg: Option<&Path>) -> PathBuf {
    if let Some(p) = arg {
        return p.to_path_buf();
    }
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => PathBuf::from(&h["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Docker {
    fn new(socket: PathBuf) -> Self {
        Docker { socket, sender: None }
    }

    async fn connect(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if let Some(s) = self.sender.as_mut()
            && s.ready().await.is_err()
        {
            self.sender = None;
        }
        if self.sender.is_none() {
            let stream = tokio::net::UnixStream::connect(&self.socket)
                .await
                .with_context(|| format!("connecting to the Docker engine at {}", self.socket.display()))?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().context("no Docker connection")
    }

    /// One Engine API call; the status and the JSON answer (`null` when empty).
    async fn call(&mut self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<(StatusCode, Value)> {
        let sender = self.connect().await?;
        let payload = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let mut req = Request::builder().method(method.clone()).uri(path).header(http::header::HOST, "docker");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let result = async {
            let resp = sender.send_request(req.body(Full::new(payload))?).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            let value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
            };
            anyhow::Ok((status, value))
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result.with_context(|| format!("Docker API {method} {path}"))
    }

    /// A call that must succeed.
    async fn ok(&mut self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let (status, value) = self.call(method.clone(), path, body).await?;
        if !status.is_success() {
            bail!("Docker API {method} {path}: HTTP {}: {value}", status.as_u16());
        }
        Ok(value)
    }

    async fn inspect(&mut self, id: &str) -> anyhow::Result<Value> {
        self.ok(Method::GET, &format!("/containers/{id}/json"), None).await
    }

    /// Ids of every container (running or not) carrying `label` (`key=value`).
    async fn labelled(&mut self, label: &str) -> anyhow::Result<Vec<String>> {
        let filters = json!({ "label": [label] }).to_string();
        let list = self.ok(Method::GET, &format!("/containers/json?all=1&filters={}", encode(&filters)), None).await?;
        Ok(list.as_array().into_iter().flatten().filter_map(|c| Some(c["Id"].as_str()?.to_string())).collect())
    }

    async fn remove(&mut self, id: &str) -> anyhow::Result<()> {
        let (status, value) = self.call(Method::DELETE, &format!("/containers/{id}?force=1&v=1"), None).await?;
        if !status.is_success() && status != StatusCode::NOT_FOUND {
            bail!("removing container {id}: HTTP {}: {value}", status.as_u16());
        }
        Ok(())
    }

    /// Polls inspect until the container runs; when that was seen.
    async fn wait_running(&mut self, id: &str, poll: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + TASK_TIMEOUT;
        loop {
            let c = self.inspect(id).await?;
            if c["State"]["Running"].as_bool() == Some(true) {
                return Ok(Instant::now());
            }
            if c["State"]["Status"].as_str() == Some("exited") {
                bail!("container {id} exited: {}", c["State"]);
            }
            if Instant::now() > deadline {
                bail!("container {id} did not run within {TASK_TIMEOUT:?}");
            }
            tokio::time::sleep(poll).await;
        }
    }
}

/// `2026-11-24T22:09:21.365903123Z` (UTC, as the engine writes) → epoch seconds.
fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60 + sec) as f64 + frac)
}

// ---------------------------------------------------------------------------------------------
// Wharf's APIs

/// One ECS call that must succeed; its JSON answer.
async fn ecs(conn: &mut Conn, op: &str, body: Value) -> anyhow::Result<Value> {
    let reply = conn.call(op, &Bytes::from(body.to_string())).await?;
    if !reply.status.is_success() {
        bail!("{op} failed: {}", reply.describe());
    }
    Ok(serde_json::from_slice(&reply.body)?)
}

/// A CloudWatch Logs (`Logs_20140328`) request, SigV4-signed for service `logs`.
fn signed_logs(endpoint: &Endpoint, op: &str, body: &Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
    let host = endpoint.addr.to_string();
    let uri = format!("http://{host}/");
    let target = format!("Logs_20140328.{op}");
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/")
        .header(http::header::HOST, &host)
        .header(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")
        .header("x-amz-target", &target)
        .body(Full::new(body.clone()))?;
    let identity: Identity =
        Credentials::new(client::ACCESS_KEY_ID, client::SECRET_ACCESS_KEY, None, None, "bench").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(client::REGION)
        .name("logs")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers =
        [("host", host.as_str()), ("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
    let signable = SignableRequest::new("POST", uri.as_str(), headers.into_iter(), SignableBody::Bytes(body))?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    instructions.apply_to_request_http1x(&mut req);
    Ok(req)
}

async fn logs(conn: &mut Conn, op: &str, body: Value) -> anyhow::Result<Value> {
    let req = signed_logs(conn.endpoint(), op, &Bytes::from(body.to_string()))?;
    let reply = conn.send(req).await?;
    if !reply.status.is_success() {
        bail!("{op} failed: {}", reply.describe());
    }
    Ok(serde_json::from_slice(&reply.body)?)
}

/// RunTask; the new tasks' ARNs.
async fn run_task(conn: &mut Conn, cluster: &str, family: &str, count: usize) -> anyhow::Result<Vec<String>> {
    let out = ecs(
        conn,
        "RunTask",
        json!({ "cluster": cluster, "taskDefinition": family, "count": count, "launchType": "EC2" }),
    )
    .await?;
    if out["failures"].as_array().is_some_and(|f| !f.is_empty()) {
        bail!("RunTask failures: {}", out["failures"]);
    }
    let arns: Vec<String> = out["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some(t["taskArn"].as_str()?.to_string()))
        .collect();
    if arns.len() != count {
        bail!("RunTask started {} of {count} tasks: {out}", arns.len());
    }
    Ok(arns)
}

async fn describe_tasks(conn: &mut Conn, cluster: &str, arns: &[String]) -> anyhow::Result<Vec<Value>> {
    let mut all = vec![];
    for chunk in arns.chunks(100) {
        let out = ecs(conn, "DescribeTasks", json!({ "cluster": cluster, "tasks": chunk })).await?;
        all.extend(out["tasks"].as_array().cloned().unwrap_or_default());
    }
    Ok(all)
}

/// Polls DescribeTasks every `poll` until every task in `arns` is RUNNING; for each, the instant
/// its RUNNING was first read and its description then. A task that stops fails the wait.
async fn wait_running(
    conn: &mut Conn,
    cluster: &str,
    arns: &[String],
    poll: Duration,
) -> anyhow::Result<HashMap<String, (Instant, Value)>> {
    let deadline = Instant::now() + TASK_TIMEOUT;
    let mut seen: HashMap<String, (Instant, Value)> = HashMap::new();
    loop {
        let pending: Vec<String> = arns.iter().filter(|a| !seen.contains_key(*a)).cloned().collect();
        for t in describe_tasks(conn, cluster, &pending).await? {
            let at = Instant::now();
            let arn = t["taskArn"].as_str().unwrap_or_default().to_string();
            match t["lastStatus"].as_str() {
                Some("RUNNING") => {
                    seen.insert(arn, (at, t));
                }
                Some("STOPPED") => bail!("task {arn} stopped before RUNNING: {}", t["stoppedReason"]),
                _ => {}
            }
        }
        if seen.len() == arns.len() {
            return Ok(seen);
        }
        if Instant::now() > deadline {
            bail!("{} of {} tasks were not RUNNING within {TASK_TIMEOUT:?}", arns.len() - seen.len(), arns.len());
        }
        tokio::time::sleep(poll).await;
    }
}

/// Waits until the agent's container instance is registered and its assignment stream open.
async fn wait_registered(conn: &mut Conn, cluster: &str, agent: &mut Proc) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = ecs(conn, "ListContainerInstances", json!({ "cluster": cluster })).await?;
        if let Some(arn) = list["containerInstanceArns"].as_array().and_then(|a| a.first()).and_then(Value::as_str) {
            let out =
                ecs(conn, "DescribeContainerInstances", json!({ "cluster": cluster, "containerInstances": [arn] }))
                    .await?;
            if out["containerInstances"][0]["agentConnected"].as_bool() == Some(true) {
                return Ok(arn.to_string());
            }
        }
        if !agent.alive() {
            bail!("the agent exited; its log ends with:\n{}", agent.log_tail());
        }
        if Instant::now() > deadline {
            bail!("the agent did not register within 60 s; its log ends with:\n{}", agent.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stops every task of the cluster, removes the baseline containers, and waits until the agent
/// has removed its containers (force-removing what is left after 60 s). Returns how many
/// containers had to be force-removed.
async fn clean(conn: &mut Conn, docker: &mut Docker, cluster: &str) -> anyhow::Result<usize> {
    let baseline = docker.labelled(&format!("{BASELINE_LABEL}={cluster}")).await?;
    for id in &baseline {
        docker.remove(id).await?;
    }
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "cluster": cluster, "maxResults": 100 });
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let out = ecs(conn, "ListTasks", body).await?;
        for arn in out["taskArns"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            ecs(conn, "StopTask", json!({ "cluster": cluster, "task": arn, "reason": "bench-agent cleanup" })).await?;
        }
        token = out["nextToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let label = format!("{CLUSTER_LABEL}={cluster}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if docker.labelled(&label).await?.is_empty() {
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = docker.labelled(&label).await?;
    for id in &left {
        docker.remove(id).await?;
    }
    Ok(left.len())
}

fn echo_task_definition(image: &str, memory: i64) -> Value {
    json!({
        "family": ECHO_FAMILY,
        "networkMode": "bridge",
        "containerDefinitions": [{
            "name": "web",
            "image": image,
            "essential": true,
            "memory": memory,
            "portMappings": [{ "containerPort": 8080, "hostPort": 0, "protocol": "tcp" }],
        }],
    })
}

fn logs_task_definition(image: &str, memory: i64, lines: usize, group: &str) -> Value {
    json!({
        "family": LOGS_FAMILY,
        "networkMode": "bridge",
        "containerDefinitions": [{
            "name": "burst",
            "image": image,
            "essential": true,
            "memory": memory,
            "environment": [
                { "name": "LOG_BURST", "value": lines.to_string() },
                { "name": "EXIT_AFTER_LOG", "value": "1" },
            ],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": { "awslogs-group": group, "awslogs-stream-prefix": "ecs", "awslogs-create-group": "true" },
            },
        }],
    })
}

/// The plain Docker equivalent of one `bench-echo` task: same image, memory limit and dynamic
/// host port for 8080 on the bridge network.
fn baseline_body(image: &str, memory: i64, cluster: &str, how: &str) -> Value {
    json!({
        "Image": image,
        "Labels": { CLUSTER_LABEL: cluster, BASELINE_LABEL: cluster, "dev.wharf.bench-agent.how": how },
        "ExposedPorts": { "8080/tcp": {} },
        "HostConfig": {
            "Memory": memory * 1024 * 1024,
            "NetworkMode": "bridge",
            "PortBindings": { "8080/tcp": [{ "HostIp": "0.0.0.0", "HostPort": "" }] },
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Part 1: start overhead

/// One plain container through the Engine API: create, start, then inspect until running.
#[derive(Debug, Clone, Copy)]
struct DockerStart {
    total: Duration,
    create: Duration,
    start: Duration,
}

async fn docker_api_start(
    docker: &mut Docker,
    args: &Args,
    cluster: &str,
    name: &str,
    poll: Duration,
) -> anyhow::Result<DockerStart> {
    let body = baseline_body(&args.image, args.memory_mib, cluster, "api");
    let t0 = Instant::now();
    let created = docker.ok(Method::POST, &format!("/containers/create?name={name}"), Some(&body)).await?;
    let id = created["Id"].as_str().context("no Id from container create")?.to_string();
    let t1 = Instant::now();
    docker.ok(Method::POST, &format!("/containers/{id}/start"), None).await?;
    let t2 = Instant::now();
    let running = docker.wait_running(&id, poll).await?;
    Ok(DockerStart { total: running - t0, create: t1 - t0, start: t2 - t1 })
}

/// One plain container with `docker run -d` (the CLI), until inspect says it runs.
async fn docker_cli_start(
    docker: &mut Docker,
    args: &Args,
    cluster: &str,
    name: &str,
    poll: Duration,
) -> anyhow::Result<Duration> {
    let cmd = vec![
        "run".to_string(),
        "-d".into(),
        "-m".into(),
        format!("{}m", args.memory_mib),
        "-p".into(),
        "0:8080".into(),
        "--label".into(),
        format!("{CLUSTER_LABEL}={cluster}"),
        "--label".into(),
        format!("{BASELINE_LABEL}={cluster}"),
        "--label".into(),
        "dev.wharf.bench-agent.how=cli".into(),
        "--name".into(),
        name.to_string(),
        args.image.clone(),
    ];
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking(move || Command::new("docker").args(&cmd).output())
        .await?
        .context("running the docker CLI")?;
    if !out.status.success() {
        bail!("docker run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let running = docker.wait_running(&id, poll).await?;
    Ok(running - t0)
}

/// One task's start, from the client's side and split by the timestamps the control plane
/// and the engine recorded (all on this machine's clock).
#[derive(Debug, Clone)]
struct TaskStart {
    /// RunTask sent → RUNNING first read from DescribeTasks.
    observed: Duration,
    /// Phases in ms: RunTask sent → createdAt → pullStartedAt → pullStoppedAt → container
    /// Created → container StartedAt → task startedAt (RUNNING stored) → RUNNING read.
    phases: [f64; 7],
}

const PHASES: [&str; 7] = [
    "RunTask call → task stored (createdAt)",
    "createdAt → agent begins (pullStartedAt: stream delivery, list containers)",
    "pullStartedAt → pullStoppedAt (PENDING report, image inspect, failing pull)",
    "pullStoppedAt → container Created (ACTIVATING report, log stream, port, create call)",
    "Created → container StartedAt (the engine's create and start)",
    "StartedAt → task startedAt (digest inspect, RUNNING report stored)",
    "startedAt → RUNNING read by the client (polling every --poll-ms)",
];

async fn phases(docker: &mut Docker, sent_epoch: f64, task: &Value, observed_epoch: f64) -> [f64; 7] {
    let f = |k: &str| task[k].as_f64().unwrap_or(f64::NAN);
    let (created, pull_started, pull_stopped, started) =
        (f("createdAt"), f("pullStartedAt"), f("pullStoppedAt"), f("startedAt"));
    let (mut c_created, mut c_started) = (f64::NAN, f64::NAN);
    if let Some(id) = task["containers"][0]["runtimeId"].as_str()
        && let Ok(c) = docker.inspect(id).await
    {
        c_created = c["Created"].as_str().and_then(parse_rfc3339).unwrap_or(f64::NAN);
        c_started = c["State"]["StartedAt"].as_str().and_then(parse_rfc3339).unwrap_or(f64::NAN);
    }
    let points = [sent_epoch, created, pull_started, pull_stopped, c_created, c_started, started, observed_epoch];
    let mut out = [f64::NAN; 7];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (points[i + 1] - points[i]) * 1e3;
    }
    out
}

async fn wharf_start(conn: &mut Conn, docker: &mut Docker, cluster: &str, poll: Duration) -> anyhow::Result<TaskStart> {
    let sent_epoch = now_epoch();
    let t0 = Instant::now();
    let arns = run_task(conn, cluster, ECHO_FAMILY, 1).await?;
    let seen = wait_running(conn, cluster, &arns, poll).await?;
    let (at, task) = seen.into_values().next().context("no task")?;
    let observed = at - t0;
    let observed_epoch = sent_epoch + observed.as_secs_f64();
    Ok(TaskStart { observed, phases: phases(docker, sent_epoch, &task, observed_epoch).await })
}

#[derive(Debug, Default)]
struct StartResults {
    api: Vec<DockerStart>,
    cli: Vec<f64>,
    wharf: Vec<TaskStart>,
    concurrent_wharf: Vec<f64>,
    concurrent_phases: Vec<[f64; 7]>,
    concurrent_wharf_all: f64,
    concurrent_api: Vec<f64>,
    concurrent_api_all: f64,
    /// Rounds still disturbed by other processes after the re-runs.
    disturbed: usize,
    agent_rss_after: f64,
    cpu: Vec<String>,
    force_removed: usize,
}

impl StartResults {
    fn wharf_ms(&self) -> Vec<f64> {
        self.wharf.iter().map(|t| ms(t.observed)).collect()
    }
    fn api_ms(&self) -> Vec<f64> {
        self.api.iter().map(|d| ms(d.total)).collect()
    }
    fn ratio(&self) -> f64 {
        median(&self.wharf_ms()) / median(&self.api_ms())
    }
    fn ratio_cli(&self) -> f64 {
        median(&self.wharf_ms()) / median(&self.cli)
    }
}

async fn part_start(ctx: &mut Ctx<'_>, sequential: bool, concurrent: bool) -> anyhow::Result<StartResults> {
    let args = ctx.args;
    let poll = Duration::from_millis(args.poll_ms);
    let cluster = ctx.cluster.clone();
    let mut r = StartResults::default();
    println!();
    println!(
        "start overhead: {} tasks one at a time, interleaved with as many plain containers via the Docker API \
         and via `docker run -d`",
        args.tasks
    );
    // One unmeasured round first: the first container of an image and the first task of a
    // definition pay one-time costs (page cache, the stream's definition cache).
    let api = docker_api_start(ctx.docker, args, &cluster, &format!("{cluster}-api-warmup"), poll).await?;
    let cli = docker_cli_start(ctx.docker, args, &cluster, &format!("{cluster}-cli-warmup"), poll).await?;
    let w = wharf_start(ctx.ecs, ctx.docker, &cluster, poll).await?;
    println!(
        "    warm-up (not counted): docker API {:.1} ms, docker run {:.1} ms, wharf {:.1} ms",
        ms(api.total),
        ms(cli),
        ms(w.observed)
    );
    let procs = ctx.cpu_procs();
    let quiet = Duration::from_secs(args.quiet_wait);
    let mut round_cpu: Vec<Vec<(&'static str, f64)>> = vec![];
    for i in (0..args.tasks).filter(|_| sequential) {
        // A round disturbed by other processes is run again (up to --reruns times); the least
        // disturbed attempt is kept. Its containers stay running until the part ends.
        let mut kept: Option<(f64, DockerStart, f64, TaskStart)> = None;
        for attempt in 0..=args.reruns {
            let before = wait_quiet(&procs, args.quiet_pct, quiet).await;
            let round = CpuMeter::start(&procs);
            let name = format!("{cluster}-{i}-{attempt}");
            let api = docker_api_start(ctx.docker, args, &cluster, &format!("{name}-api"), poll).await?;
            let cli = docker_cli_start(ctx.docker, args, &cluster, &format!("{name}-cli"), poll).await?;
            let w = wharf_start(ctx.ecs, ctx.docker, &cluster, poll).await?;
            round_cpu.push(round.per_proc_ms());
            // Processes outside the benchmark just before and just after the round (during it,
            // the engine's short-lived helpers — runc, the docker CLI — would count as theirs).
            let after = {
                let m = CpuMeter::start(&procs);
                tokio::time::sleep(Duration::from_millis(500)).await;
                m.other_pct()
            };
            let other = before.max(after);
            println!(
                "    #{:<2} docker API {:>6.1} ms (create {:>5.1}, start {:>6.1})  docker run {:>6.1} ms  wharf {:>6.1} ms  \
                 (other processes {other:.0}% of a core before/after)",
                i + 1,
                ms(api.total),
                ms(api.create),
                ms(api.start),
                ms(cli),
                ms(w.observed)
            );
            if kept.as_ref().is_none_or(|k| other < k.0) {
                kept = Some((other, api, ms(cli), w));
            }
            if other <= args.quiet_pct {
                break;
            }
            if attempt < args.reruns {
                println!("        (disturbed by other processes: running the round again)");
            }
        }
        let Some((other, api, cli, w)) = kept else { continue };
        if other > args.quiet_pct {
            r.disturbed += 1;
        }
        r.api.push(api);
        r.cli.push(cli);
        r.wharf.push(w);
    }
    let per_round = |name: &str| {
        median(
            &round_cpu.iter().filter_map(|r| r.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)).collect::<Vec<_>>(),
        )
    };
    if sequential {
        r.cpu.push(format!(
            "sequential, CPU per round (one task, one Docker API container, one `docker run`; p50): agent {:.1} ms, \
         control plane {:.1} ms, dockerd {:.1} ms, containerd {:.1} ms",
            per_round("agent"),
            per_round("control plane"),
            per_round("dockerd"),
            per_round("containerd")
        ));
    }
    r.force_removed += clean(ctx.ecs, ctx.docker, &cluster).await?;
    if !concurrent {
        r.agent_rss_after = servers::rss_mb(ctx.agent_pid)?;
        return Ok(r);
    }

    // Concurrent: 20 at once.
    let n = args.tasks;
    println!("    concurrent: {n} tasks from {} RunTask calls at once; {n} Docker API starts at once", n.div_ceil(10));
    wait_quiet(&procs, args.quiet_pct, quiet).await;
    let meter = CpuMeter::start(&procs);
    let t0 = Instant::now();
    let t0_epoch = now_epoch();
    let mut calls = vec![];
    let mut left = n;
    while left > 0 {
        let count = left.min(10);
        left -= count;
        let mut conn = Conn::open(ctx.ecs.endpoint()).await?;
        let cluster = cluster.clone();
        calls.push(tokio::spawn(async move {
            let sent = Instant::now();
            run_task(&mut conn, &cluster, ECHO_FAMILY, count).await.map(|arns| (sent, arns))
        }));
    }
    let mut sent_at: HashMap<String, Instant> = HashMap::new();
    for call in calls {
        let (sent, arns) = call.await??;
        sent_at.extend(arns.into_iter().map(|a| (a, sent)));
    }
    let arns: Vec<String> = sent_at.keys().cloned().collect();
    let seen = wait_running(ctx.ecs, &cluster, &arns, poll).await?;
    r.concurrent_wharf = seen.iter().map(|(arn, (at, _))| ms(*at - sent_at[arn])).collect();
    for (arn, (at, task)) in &seen {
        let epoch = |i: Instant| t0_epoch + (i - t0).as_secs_f64();
        r.concurrent_phases.push(phases(ctx.docker, epoch(sent_at[arn]), task, epoch(*at)).await);
    }
    r.concurrent_wharf_all = seen.values().map(|(at, _)| ms(*at - t0)).fold(0.0, f64::max);
    r.cpu.push(format!("concurrent wharf: {}", meter.summary()));
    r.force_removed += clean(ctx.ecs, ctx.docker, &cluster).await?;

    wait_quiet(&procs, args.quiet_pct, quiet).await;
    let meter = CpuMeter::start(&procs);
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    for i in 0..n {
        let socket = ctx.docker.socket.clone();
        let (image, memory, cluster) = (args.image.clone(), args.memory_mib, cluster.clone());
        set.spawn(async move {
            let mut docker = Docker::new(socket);
            let body = baseline_body(&image, memory, &cluster, "api-concurrent");
            let start = Instant::now();
            let created =
                docker.ok(Method::POST, &format!("/containers/create?name={cluster}-conc-{i}"), Some(&body)).await?;
            let id = created["Id"].as_str().context("no Id")?.to_string();
            docker.ok(Method::POST, &format!("/containers/{id}/start"), None).await?;
            let running = docker.wait_running(&id, poll).await?;
            anyhow::Ok((running - start, running))
        });
    }
    while let Some(done) = set.join_next().await {
        let (latency, at) = done??;
        r.concurrent_api.push(ms(latency));
        r.concurrent_api_all = r.concurrent_api_all.max(ms(at - t0));
    }
    r.cpu.push(format!("concurrent docker: {}", meter.summary()));
    r.force_removed += clean(ctx.ecs, ctx.docker, &cluster).await?;
    r.agent_rss_after = servers::rss_mb(ctx.agent_pid)?;
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Part 2: agent memory

#[derive(Debug, Default)]
struct RssResults {
    registered_after: f64,
    idle_max: f64,
    idle_last: f64,
    loaded_max: f64,
    loaded_last: f64,
    loaded_peak: f64,
    all_running_after: f64,
    loaded_cpu: String,
    force_removed: usize,
}

async fn part_rss_loaded(ctx: &mut Ctx<'_>, r: &mut RssResults) -> anyhow::Result<()> {
    let args = ctx.args;
    let n = args.rss_tasks;
    let cluster = ctx.cluster.clone();
    println!("    running {n} tasks ({} MiB each) on the agent", args.memory_mib);
    let t0 = Instant::now();
    let mut arns = vec![];
    let mut left = n;
    while left > 0 {
        let count = left.min(10);
        left -= count;
        arns.extend(run_task(ctx.ecs, &cluster, ECHO_FAMILY, count).await?);
    }
    wait_running(ctx.ecs, &cluster, &arns, Duration::from_millis(100)).await?;
    r.all_running_after = ms(t0.elapsed());
    println!("    all {n} RUNNING after {:.0} ms; settling 3 s, then sampling RSS for 5 s", r.all_running_after);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let meter = CpuMeter::start(&ctx.cpu_procs());
    (r.loaded_max, r.loaded_last) = sample_rss(ctx.agent_pid, Duration::from_secs(5)).await?;
    r.loaded_cpu = meter.summary();
    r.loaded_peak = servers::peak_rss_mb(ctx.agent_pid)?;
    let running = describe_tasks(ctx.ecs, &cluster, &arns).await?;
    let still = running.iter().filter(|t| t["lastStatus"].as_str() == Some("RUNNING")).count();
    println!(
        "    with {still} tasks RUNNING: agent RSS max {:.1} MiB (last {:.1}, VmHWM {:.1}); {}",
        r.loaded_max, r.loaded_last, r.loaded_peak, r.loaded_cpu
    );
    if still != n {
        bail!("only {still} of {n} tasks were still RUNNING while memory was sampled");
    }
    r.force_removed += clean(ctx.ecs, ctx.docker, &cluster).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Part 3: logs

#[derive(Debug, Default)]
struct LogResults {
    expected: usize,
    /// Lines read by following the stream with nextForwardToken.
    followed: usize,
    /// `line N` events found by a full read from the head afterwards.
    found: usize,
    missing: usize,
    duplicates: usize,
    out_of_order: usize,
    other_lines: usize,
    /// Task RUNNING (startedAt) → every line readable, in seconds.
    from_running: f64,
    /// First line written (its event timestamp) → every line readable.
    from_first_line: f64,
    /// First line written → last line written (the container's own pace).
    writing: f64,
    /// Task startedAt minus first line's timestamp (negative: lines began before RUNNING).
    running_vs_first_line: f64,
    get_calls: usize,
    complete: bool,
    cpu: String,
    /// The agent's RSS (MiB) before the burst and once the task is gone.
    rss_before: f64,
    rss_after: f64,
}

impl LogResults {
    fn rate_from_running(&self) -> f64 {
        self.expected as f64 / self.from_running.max(1e-9)
    }
    fn rate_from_first_line(&self) -> f64 {
        self.expected as f64 / self.from_first_line.max(1e-9)
    }
    fn lost(&self) -> usize {
        self.missing
    }
}

/// Reads the whole stream from the head (paging with nextForwardToken): every message.
async fn read_stream(conn: &mut Conn, group: &str, stream: &str) -> anyhow::Result<Vec<Value>> {
    let mut events = vec![];
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "logGroupName": group, "logStreamName": stream, "startFromHead": true, "limit": 10000 });
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let out = logs(conn, "GetLogEvents", body).await?;
        let page = out["events"].as_array().cloned().unwrap_or_default();
        let next = out["nextForwardToken"].as_str().map(str::to_string);
        let end = page.is_empty() || next == token;
        events.extend(page);
        token = next;
        if end || token.is_none() {
            return Ok(events);
        }
    }
}

async fn part_logs(ctx: &mut Ctx<'_>) -> anyhow::Result<LogResults> {
    let args = ctx.args;
    let n = args.log_lines;
    let cluster = ctx.cluster.clone();
    let poll = Duration::from_millis(args.poll_ms);
    let group = format!("/bench/{cluster}");
    let mut r = LogResults { expected: n, ..Default::default() };
    println!();
    println!("awslogs: one container prints {n} lines at once (LOG_BURST={n}, EXIT_AFTER_LOG=1)");
    ecs(ctx.ecs, "RegisterTaskDefinition", logs_task_definition(&args.image, args.memory_mib, n, &group)).await?;
    wait_quiet(&ctx.cpu_procs(), args.quiet_pct, Duration::from_secs(args.quiet_wait)).await;
    let meter = CpuMeter::start(&ctx.cpu_procs());
    let mut lconn = Conn::open(ctx.ecs.endpoint()).await?;
    r.rss_before = servers::rss_mb(ctx.agent_pid)?;
    let arns = run_task(ctx.ecs, &cluster, LOGS_FAMILY, 1).await?;
    let arn = arns[0].clone();
    let task_id = arn.rsplit('/').next().unwrap_or_default().to_string();
    let stream = format!("ecs/burst/{task_id}");
    // Follow the stream as a reader would (nextForwardToken) while watching the task.
    let deadline = Instant::now() + TASK_TIMEOUT;
    let mut token: Option<String> = None;
    let mut count = 0usize;
    let mut all_at: Option<f64> = None;
    let mut started_at: Option<f64> = None;
    while all_at.is_none() || started_at.is_none() {
        if Instant::now() > deadline {
            break;
        }
        if started_at.is_none() {
            let t = describe_tasks(ctx.ecs, &cluster, &arns).await?;
            if let Some(s) = t.first().and_then(|t| t["startedAt"].as_f64()) {
                started_at = Some(s);
            } else if t.first().and_then(|t| t["lastStatus"].as_str()) == Some("STOPPED") {
                bail!("the log task stopped without starting: {}", t[0]["stoppedReason"]);
            }
        }
        if all_at.is_none() {
            let mut body =
                json!({ "logGroupName": group, "logStreamName": stream, "startFromHead": true, "limit": 10000 });
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            // The stream does not exist until the agent creates it.
            let req = signed_logs(lconn.endpoint(), "GetLogEvents", &Bytes::from(body.to_string()))?;
            let reply = lconn.send(req).await?;
            r.get_calls += 1;
            if reply.status.is_success() {
                let out: Value = serde_json::from_slice(&reply.body)?;
                let page = out["events"].as_array().cloned().unwrap_or_default();
                count += page.iter().filter(|e| e["message"].as_str().is_some_and(|m| m.starts_with("line "))).count();
                token = out["nextForwardToken"].as_str().map(str::to_string).or(token);
                if count >= n {
                    all_at = Some(now_epoch());
                    continue;
                }
                if !page.is_empty() {
                    continue;
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
    r.followed = count;
    r.cpu = meter.summary();
    // Then read the whole stream from the head and check every line.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = read_stream(&mut lconn, &group, &stream).await?;
    let mut seen = vec![0u32; n + 1];
    let mut last = 0usize;
    for e in &events {
        let msg = e["message"].as_str().unwrap_or_default();
        match msg.strip_prefix("line ").and_then(|k| k.parse::<usize>().ok()).filter(|k| (1..=n).contains(k)) {
            Some(k) => {
                seen[k] += 1;
                if k < last {
                    r.out_of_order += 1;
                }
                last = k;
            }
            None => r.other_lines += 1,
        }
    }
    r.found = seen[1..].iter().filter(|&&c| c > 0).count();
    r.missing = n - r.found;
    r.duplicates = seen[1..].iter().map(|&c| c.saturating_sub(1) as usize).sum();
    let first_ts = events
        .iter()
        .find(|e| e["message"].as_str() == Some("line 1"))
        .and_then(|e| e["timestamp"].as_f64())
        .map(|t| t / 1e3);
    let last_ts = events
        .iter()
        .find(|e| e["message"].as_str() == Some(format!("line {n}").as_str()))
        .and_then(|e| e["timestamp"].as_f64())
        .map(|t| t / 1e3);
    r.complete = all_at.is_some();
    let nan = f64::NAN;
    if let (Some(all), Some(started)) = (all_at, started_at) {
        r.from_running = all - started;
    } else {
        r.from_running = nan;
    }
    r.from_first_line = match (all_at, first_ts) {
        (Some(all), Some(first)) => all - first,
        _ => nan,
    };
    r.writing = match (first_ts, last_ts) {
        (Some(a), Some(b)) => b - a,
        _ => nan,
    };
    r.running_vs_first_line = match (started_at, first_ts) {
        (Some(s), Some(f)) => s - f,
        _ => nan,
    };
    println!(
        "    followed with nextForwardToken: {} of {n} lines ({} GetLogEvents calls); full read: {} distinct, {} missing, \
         {} duplicated, {} out of order, {} other lines",
        r.followed, r.get_calls, r.found, r.missing, r.duplicates, r.out_of_order, r.other_lines
    );
    // The task exits on its own; wait for the agent to finish it and remove its container.
    let force = clean(ctx.ecs, ctx.docker, &cluster).await?;
    r.rss_after = servers::rss_mb(ctx.agent_pid)?;
    if force > 0 {
        println!("    (had to force-remove {force} containers)");
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// Driver

struct Ctx<'a> {
    args: &'a Args,
    cluster: String,
    ecs: &'a mut Conn,
    docker: &'a mut Docker,
    agent_pid: u32,
    cp_pid: u32,
    dockerd: Option<u32>,
    containerd: Option<u32>,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl Ctx<'_> {
    fn cpu_procs(&self) -> Vec<(&'static str, Option<u32>)> {
        vec![
            ("agent", Some(self.agent_pid)),
            ("control plane", Some(self.cp_pid)),
            ("dockerd", self.dockerd),
            ("containerd", self.containerd),
            ("bench client", Some(std::process::id())),
        ]
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = crate::servers::workspace_root();
    if args.tasks == 0 || args.rss_tasks == 0 || args.log_lines == 0 || args.poll_ms == 0 {
        bail!("--tasks, --rss-tasks, --log-lines and --poll-ms must be positive");
    }
    let wharf_bin = crate::servers::wharf_bin(args.wharf_bin.as_ref(), &root)?;
    if !args.skip_image_build {
        println!("building: scripts/build-test-images {}", args.image);
        let status = Command::new(root.join("scripts/build-test-images"))
            .arg(&args.image)
            .current_dir(&root)
            .status()
            .context("running scripts/build-test-images")?;
        if !status.success() {
            bail!("scripts/build-test-images failed ({status})");
        }
    }
    // The client gets one thread: on a 2-core machine it must not starve the agent or Docker.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(bench(&args, &wharf_bin))
}

async fn bench(args: &Args, wharf_bin: &Path) -> anyhow::Result<()> {
    let wants = |p: Part| args.parts.is_empty() || args.parts.contains(&p);
    let scratch = tempfile::Builder::new().prefix("wharf-bench-agent-").tempdir()?;
    let mut docker = Docker::new(docker_socket(args.docker_socket.as_deref()));
    let version = docker.ok(Method::GET, "/version", None).await?;
    docker
        .ok(Method::GET, &format!("/images/{}/json", args.image), None)
        .await
        .with_context(|| format!("image {} is not on the engine (run scripts/build-test-images)", args.image))?;
    let others = docker.ok(Method::GET, "/containers/json", None).await?.as_array().map_or(0, Vec::len);
    let cluster = format!("bench-agent-{:x}", (now_epoch() * 1e3) as u64 ^ u64::from(std::process::id()));
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!("Wharf agent benchmark: {} on Docker {}", wharf_bin.display(), version["Version"].as_str().unwrap_or("?"));
    println!(
        "  {cores} cores; client, control plane, agent and Docker share this machine; {others} other containers were \
         running when it began. Cluster `{cluster}`, image {}, {} MiB per container, polling every {} ms.",
        args.image, args.memory_mib, args.poll_ms
    );
    if !args.agent_config.is_empty() {
        println!("  agent ecs.config: {}", args.agent_config.join(" "));
    }

    let (cp, endpoint) =
        start_control_plane(wharf_bin, &scratch.path().join("control-plane"), &scratch.path().join("wharf.log"))
            .await?;
    println!("control plane: {} (pid {}) at http://{}", cp.name, cp.pid(), endpoint.addr);
    let mut conn = Conn::open(&endpoint).await?;
    ecs(&mut conn, "CreateCluster", json!({ "clusterName": cluster })).await?;
    ecs(&mut conn, "RegisterTaskDefinition", echo_task_definition(&args.image, args.memory_mib)).await?;

    let spawned = Instant::now();
    let mut agent = start_agent(wharf_bin, &endpoint, &cluster, scratch.path(), &args.agent_config)?;
    let instance = wait_registered(&mut conn, &cluster, &mut agent).await?;
    let mut rss = RssResults { registered_after: ms(spawned.elapsed()), ..Default::default() };
    println!(
        "agent: {} (pid {}) registered {instance} and opened its assignment stream {:.0} ms after spawn",
        agent.name,
        agent.pid(),
        rss.registered_after
    );

    let mut ctx = Ctx {
        args,
        cluster: cluster.clone(),
        ecs: &mut conn,
        docker: &mut docker,
        agent_pid: agent.pid(),
        cp_pid: cp.pid(),
        dockerd: pid_of("dockerd"),
        containerd: pid_of("containerd"),
    };
    let outcome = async {
        let mut start = None;
        let mut logs = None;
        if wants(Part::Rss) {
            println!();
            println!("agent memory (VmRSS of the `wharf agent` process; measured first, on a fresh agent)");
            tokio::time::sleep(Duration::from_secs(2)).await;
            (rss.idle_max, rss.idle_last) = sample_rss(ctx.agent_pid, Duration::from_secs(3)).await?;
            println!("    idle after registering: max {:.1} MiB over 3 s (last {:.1})", rss.idle_max, rss.idle_last);
            part_rss_loaded(&mut ctx, &mut rss).await?;
        }
        if wants(Part::Start) || wants(Part::Concurrent) {
            start = Some(part_start(&mut ctx, wants(Part::Start), wants(Part::Concurrent)).await?);
        }
        if wants(Part::Logs) {
            logs = Some(part_logs(&mut ctx).await?);
        }
        anyhow::Ok((start, logs))
    }
    .await;
    // Whatever happened: stop every task and remove every container of this cluster.
    let cleaned = clean(ctx.ecs, ctx.docker, &cluster).await;
    let agent_cpu = servers::cpu_time(Some(agent.pid()));
    let agent_final = servers::rss_mb(agent.pid()).unwrap_or(f64::NAN);
    agent.stop(Duration::from_secs(10));
    cp.stop(Duration::from_secs(5));
    let left = docker.labelled(&format!("{CLUSTER_LABEL}={cluster}")).await?;
    for id in &left {
        docker.remove(id).await?;
    }
    if args.keep_scratch {
        println!("scratch directory kept: {}", scratch.keep().display());
    }
    let (start, logs) = outcome?;
    let forced = cleaned? + left.len();
    report(args, &rss, start.as_ref(), logs.as_ref(), wants(Part::Rss));
    println!();
    println!(
        "Agent process overall: {:.1} s of CPU; RSS {:.1} MiB at the end. Containers force-removed at cleanup: {}.",
        agent_cpu.as_secs_f64(),
        agent_final,
        forced + rss.force_removed + start.as_ref().map_or(0, |s| s.force_removed)
    );
    println!("Benchmarks report; they do not gate: exit status 0 whatever the figures.");
    Ok(())
}

fn report(args: &Args, rss: &RssResults, start: Option<&StartResults>, logs: Option<&LogResults>, did_rss: bool) {
    println!();
    println!("Results");
    if let Some(s) = start {
        let wharf = s.wharf_ms();
        let api = s.api_ms();
        println!();
        println!(
            "Start latency, {} one at a time (ms; nearest-rank p99, so with 20 samples the slowest):",
            s.wharf.len()
        );
        println!("| how | p50 ms | p99 ms | min ms | max ms |");
        println!("|---|---:|---:|---:|---:|");
        let row = |name: &str, v: &[f64]| {
            println!(
                "| {name} | {} | {} | {} | {} |",
                f1(median(v)),
                f1(quantile(v, 0.99)),
                f1(quantile(v, 0.0)),
                f1(quantile(v, 1.0))
            );
        };
        row("Wharf: RunTask → RUNNING read from DescribeTasks", &wharf);
        row("Docker API: create → start → inspect says running", &api);
        row("`docker run -d` (CLI) → inspect says running", &s.cli);
        row(
            &format!("Wharf, {} at once (RunTask count 10 × {})", s.concurrent_wharf.len(), args.tasks.div_ceil(10)),
            &s.concurrent_wharf,
        );
        row(&format!("Docker API, {} at once", s.concurrent_api.len()), &s.concurrent_api);
        println!(
            "All {n} running: Wharf {:.0} ms after the first RunTask, Docker API {:.0} ms after the first create.",
            s.concurrent_wharf_all,
            s.concurrent_api_all,
            n = args.tasks
        );
        if !s.api.is_empty() {
            println!(
                "Docker API parts, one at a time (p50): create {:.1} ms, start {:.1} ms.",
                median(&s.api.iter().map(|d| ms(d.create)).collect::<Vec<_>>()),
                median(&s.api.iter().map(|d| ms(d.start)).collect::<Vec<_>>())
            );
        }
        println!();
        println!("Where a Wharf task's start goes (control-plane and engine timestamps, ms):");
        println!("| phase | p50 ms | p99 ms | {n} at once: p50 ms | {n} at once: p99 ms |", n = args.tasks);
        println!("|---|---:|---:|---:|---:|");
        for (i, name) in PHASES.iter().enumerate() {
            let v: Vec<f64> = s.wharf.iter().map(|t| t.phases[i]).collect();
            let c: Vec<f64> = s.concurrent_phases.iter().map(|p| p[i]).collect();
            println!(
                "| {name} | {} | {} | {} | {} |",
                f1(median(&v)),
                f1(quantile(&v, 0.99)),
                f1(median(&c)),
                f1(quantile(&c, 0.99))
            );
        }
        for line in &s.cpu {
            println!("{line}");
        }
        println!("Agent RSS after the start runs: {:.1} MiB.", s.agent_rss_after);
        if s.disturbed > 0 {
            println!(
                "WARNING: {} of {} rounds were still disturbed by other processes (over {}% of a core) after {} re-runs.",
                s.disturbed,
                s.wharf.len(),
                args.quiet_pct,
                args.reruns
            );
        }
    }
    if let Some(l) = logs {
        println!();
        println!("awslogs, {} lines printed at once:", l.expected);
        let lead = -l.running_vs_first_line * 1e3;
        println!(
            "    the container wrote them in {:.1} ms, starting {:.1} ms {} the task's RUNNING was stored",
            l.writing * 1e3,
            lead.abs(),
            if lead >= 0.0 { "after" } else { "before" }
        );
        println!(
            "    all {} readable with GetLogEvents {:.1} ms after RUNNING ({:.0} lines/s), {:.1} ms after the first line \
             was written ({:.0} lines/s)",
            l.expected,
            l.from_running * 1e3,
            l.rate_from_running(),
            l.from_first_line * 1e3,
            l.rate_from_first_line()
        );
        println!("    {}", l.cpu);
        println!(
            "    agent RSS {:.1} MiB before the burst, {:.1} MiB once the task was gone",
            l.rss_before, l.rss_after
        );
    }

    println!();
    println!("Targets (from the issue):");
    println!("| target | measured | result |");
    println!("|---|---|---|");
    if let Some(s) = start.filter(|s| !s.wharf.is_empty()) {
        let r = s.ratio();
        println!(
            "| start overhead: median(Wharf RunTask→RUNNING) / median(docker) ≤ 1.2 | {r:.2}× the Docker API \
             ({:.1} / {:.1} ms); {:.2}× `docker run -d` ({:.1} ms) | {} |",
            median(&s.wharf_ms()),
            median(&s.api_ms()),
            s.ratio_cli(),
            median(&s.cli),
            pass(r <= 1.2)
        );
        let p99 = quantile(&s.wharf_ms(), 0.99);
        println!("| Wharf p99 RunTask→RUNNING ≤ 2 s (cached image) | {p99:.1} ms | {} |", pass(p99 <= 2000.0));
    }
    if did_rss {
        println!("| agent idle RSS ≤ 20 MB | {:.1} MiB | {} |", rss.idle_max, pass(rss.idle_max <= 20.0));
        println!(
            "| agent RSS with {} running tasks ≤ 40 MB | {:.1} MiB | {} |",
            args.rss_tasks,
            rss.loaded_max,
            pass(rss.loaded_max <= 40.0)
        );
    }
    if let Some(l) = logs {
        let ok = l.complete && l.lost() == 0 && l.duplicates == 0 && l.rate_from_running() >= 10_000.0;
        println!(
            "| logs: {} lines delivered at ≥ 10,000 lines/s, none lost | {:.0} lines/s from RUNNING ({:.0} from the first \
             line written); {} lost, {} duplicated, {} out of order | {} |",
            l.expected,
            l.rate_from_running(),
            l.rate_from_first_line(),
            l.lost(),
            l.duplicates,
            l.out_of_order,
            pass(ok)
        );
    }
}
