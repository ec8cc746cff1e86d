//! The servers under test as child processes, and what /proc says about them.

use crate::client::{self, Conn, Endpoint};
use anyhow::{Context, bail};
use bytes::Bytes;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; killed when dropped.
#[derive(Debug)]
pub struct Server {
    pub name: &'static str,
    pub endpoint: Endpoint,
    child: Child,
    log: PathBuf,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server: SIGTERM (through kill(1): this crate forbids `unsafe`), then SIGKILL
    /// after `grace`.
    pub fn stop(mut self, grace: Duration) {
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

    /// The end of the server's log (its stderr), for error reports.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How Wharf's start went.
#[derive(Debug)]
pub struct Startup {
    /// Spawn → the `endpoint:` line on stdout.
    pub endpoint_line: Duration,
    /// Spawn → the first signed ListClusters answered 200.
    pub answering: Duration,
}

/// Sends signed ListClusters on fresh connections until one is answered 200.
async fn wait_answering(endpoint: &Endpoint, timeout: Duration, server: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let body = Bytes::from_static(b"{}");
    let mut last = String::new();
    while Instant::now() < deadline {
        match Conn::open(endpoint).await {
            Ok(mut conn) => match conn.call("ListClusters", &body).await {
                Ok(reply) if reply.status.is_success() => return Ok(()),
                Ok(reply) => last = reply.describe(),
                Err(e) => last = format!("{e:#}"),
            },
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!("{server} did not answer a signed ListClusters within {timeout:?} (last: {last})")
}

/// Starts `wharf up` on a free port with `data_dir`, and times it until it answers.
pub async fn start_wharf(bin: &Path, data_dir: &Path, log: &Path) -> anyhow::Result<(Server, Startup)> {
    let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = Command::new(bin);
    command
        .args(["up", "--listen", "127.0.0.1:0", "--no-profile", "--account-id", "123456789012", "--data-dir"])
        .arg(data_dir)
        .env("WHARF_ACCESS_KEY_ID", client::ACCESS_KEY_ID)
        .env("WHARF_SECRET_ACCESS_KEY", client::SECRET_ACCESS_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    let spawned = Instant::now();
    let mut child = command.spawn().with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("wharf's stdout")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        // Keep draining stdout so Wharf never blocks on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.trim().strip_prefix("endpoint:") {
                let _ = tx.send((Instant::now(), url.trim().to_string()));
            }
        }
    });
    let fail = |what: String| anyhow::anyhow!("{what}; its log ({}) ends with:\n{}", log.display(), tail(log));
    let Ok(Some((seen, url))) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await else {
        let _ = child.kill();
        return Err(fail("wharf printed no `endpoint:` line within 30 s".into()));
    };
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|a| a.parse().ok())
        .with_context(|| format!("wharf printed an endpoint that is not http://IP:PORT: {url}"))?;
    let endpoint = Endpoint::new(addr);
    let server = Server { name: "wharf", endpoint, child, log: log.to_path_buf() };
    if let Err(e) = wait_answering(&server.endpoint, Duration::from_secs(30), "wharf").await {
        return Err(fail(format!("{e:#}")));
    }
    let startup = Startup { endpoint_line: seen - spawned, answering: spawned.elapsed() };
    Ok((server, startup))
}

/// A port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `moto_server -H 127.0.0.1 -p PORT` and waits until it answers.
pub async fn start_moto(bin: &Path, log: &Path) -> anyhow::Result<Server> {
    let port = free_port()?;
    let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let stdout = stderr.try_clone()?;
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let endpoint = Endpoint::new(SocketAddr::from(([127, 0, 0, 1], port)));
    let server = Server { name: "moto", endpoint, child, log: log.to_path_buf() };
    if let Err(e) = wait_answering(&server.endpoint, Duration::from_secs(60), "moto").await {
        bail!("{e:#}; its log ends with:\n{}", server.log_tail());
    }
    Ok(server)
}

/// A line of /proc/PID/status such as `VmRSS:     1234 kB`, in kB.
fn status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Resident set size in MB (MiB, as `ps` and /proc count).
pub fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    Ok(status_kb(pid, "VmRSS")? as f64 / 1024.0)
}

/// Peak resident set size in MB.
pub fn peak_rss_mb(pid: u32) -> anyhow::Result<f64> {
    Ok(status_kb(pid, "VmHWM")? as f64 / 1024.0)
}

/// CPU time (user + system, all threads) a process has used so far; `None` for "self".
pub fn cpu_time(pid: Option<u32>) -> Duration {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let ticks = std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            // Fields after the `(comm)`: state is the first, utime the 12th, stime the 13th.
            let rest = text.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// CPU time the whole machine has been busy (all cores, everything but idle and iowait).
pub fn machine_busy() -> Duration {
    let ticks = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| {
            let fields: Vec<u64> =
                text.lines().next()?.strip_prefix("cpu ")?.split_whitespace().filter_map(|f| f.parse().ok()).collect();
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            Some(fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum::<u64>())
        })
        .unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64)
}

/// USER_HZ, from getconf (100 on every mainstream Linux).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `cargo build --release -p wharf`, and where the binary is.
/// The Wharf binary a benchmark runs: `given` (its `--wharf-bin`), or a fresh release build.
pub fn wharf_bin(given: Option<&PathBuf>, root: &Path) -> anyhow::Result<PathBuf> {
    match given {
        Some(bin) => Ok(bin.clone()),
        None => build_wharf(root),
    }
}

pub fn build_wharf(root: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("building: cargo build --release -p wharf");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "wharf"])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p wharf failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release").join("wharf"))
}

/// Waits until the embedded agent of `wharf up` has registered in `cluster`.
pub async fn wait_for_agent(conn: &mut crate::client::Conn, cluster: &str) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        let out = conn.ecs("DescribeClusters", serde_json::json!({"clusters": [cluster]})).await?;
        if out["clusters"][0]["registeredContainerInstancesCount"].as_i64().unwrap_or(0) >= 1 {
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("the embedded agent did not register within 60 s (is Docker running?)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Leaves no containers behind: deletes `service` and waits (60 s at most) for `cluster` to
/// have no running or pending task.
pub async fn remove_service(conn: &mut crate::client::Conn, cluster: &str, service: &str) -> anyhow::Result<()> {
    let _ = conn.ecs("DeleteService", serde_json::json!({"cluster": cluster, "service": service, "force": true})).await;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        let out = conn.ecs("DescribeClusters", serde_json::json!({"clusters": [cluster]})).await?;
        let c = &out["clusters"][0];
        if c["runningTasksCount"].as_i64() == Some(0) && c["pendingTasksCount"].as_i64() == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}
