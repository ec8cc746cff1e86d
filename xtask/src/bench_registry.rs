//! `xtask bench-registry`: `docker push` and `docker pull` of one image of several
//! random-content layers (512 MB by default) to Wharf's registry and to Debian's
//! `docker-registry` (Distribution 2.8) in the same run, with each server's resident memory
//! sampled every 100 ms during the transfers.
//!
//! The image is built once (FROM scratch, one COPY per layer file) and saved to a tar; before
//! each push it is loaded fresh, and after the push every local copy is removed, so the pull
//! really transfers every layer. Both servers listen on 127.0.0.1 (Docker treats it as an
//! insecure registry, so plain HTTP); Wharf with its usual authentication (docker login with
//! an ECR token), Distribution without.

use crate::client::Conn;
use crate::servers;
use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ECR_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921";
const SOURCE: &str = "wharf-bench-registry:src";
const REPO: &str = "bench/app";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Total image size in MB (split evenly over the layers).
    #[arg(long, default_value_t = 512)]
    size_mb: usize,
    /// Number of layers.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Push/pull rounds per registry, alternating which goes first (the best is compared).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The Distribution binary to compare with.
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    distribution: PathBuf,
}

/// One transfer's figures.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    secs: f64,
    rss_before: f64,
    rss_max: f64,
}

fn docker(env: &[(&str, String)], args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().with_context(|| format!("running docker {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes `bytes` of random content to `path` (from /dev/urandom, 1 MiB at a time).
fn random_file(path: &Path, bytes: usize) -> anyhow::Result<()> {
    let mut rng = std::fs::File::open("/dev/urandom")?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len());
        rng.read_exact(&mut buf[..n])?;
        out.write_all(&buf[..n])?;
        left -= n;
    }
    out.flush()?;
    Ok(())
}

/// Builds the source image and saves it to `<dir>/image.tar`.
fn build_image(dir: &Path, args: &Args) -> anyhow::Result<PathBuf> {
    let ctx = dir.join("context");
    std::fs::create_dir_all(&ctx)?;
    let per_layer = args.size_mb * 1_000_000 / args.layers.max(1);
    let mut dockerfile = String::from("FROM scratch\n");
    for i in 0..args.layers.max(1) {
        random_file(&ctx.join(format!("layer{i}.bin")), per_layer)?;
        dockerfile.push_str(&format!("COPY layer{i}.bin /layer{i}.bin\n"));
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile)?;
    println!("building a {} MB image of {} layers", args.size_mb, args.layers);
    docker(&[("DOCKER_BUILDKIT", "0".into())], &["build", "-q", "-t", SOURCE, &ctx.to_string_lossy()])?;
    let tar = dir.join("image.tar");
    docker(&[], &["save", "-o", &tar.to_string_lossy(), SOURCE])?;
    docker(&[], &["rmi", "-f", SOURCE])?;
    std::fs::remove_dir_all(&ctx)?;
    Ok(tar)
}

/// Samples `pid`'s RSS every 100 ms while `f` runs.
fn sampled(pid: u32, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Transfer> {
    let rss_before = servers::rss_mb(pid)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut max = 0.0f64;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(rss) = servers::rss_mb(pid) {
                    max = max.max(rss);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            max
        })
    };
    let started = Instant::now();
    let result = f();
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let rss_max = sampler.join().unwrap_or(0.0).max(rss_before);
    result?;
    Ok(Transfer { secs, rss_before, rss_max })
}

/// One push and one pull through `host`; the local engine holds no copy before the pull.
fn round(host: &str, pid: u32, tar: &Path, env: &[(&str, String)]) -> anyhow::Result<(Transfer, Transfer)> {
    let target = format!("{host}/{REPO}:v1");
    docker(env, &["load", "-q", "-i", &tar.to_string_lossy()])?;
    docker(env, &["tag", SOURCE, &target])?;
    let push = sampled(pid, || docker(env, &["push", &target]).map(|_| ()))?;
    docker(env, &["rmi", "-f", &target, SOURCE])?;
    let pull = sampled(pid, || docker(env, &["pull", &target]).map(|_| ()))?;
    docker(env, &["rmi", "-f", &target])?;
    Ok((push, pull))
}

/// Waits until `GET /v2/` on `addr` answers at all (200 or 401).
fn wait_http(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes());
            let mut buf = [0u8; 12];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing answered on {addr} within {timeout:?}")
}

struct Distribution(Child);

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_distribution(bin: &Path, dir: &Path) -> anyhow::Result<(Distribution, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("config.yml");
    let root = dir.join("storage");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            root.display()
        ),
    )?;
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("distribution.log"))?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let d = Distribution(child);
    wait_http(&addr, Duration::from_secs(20))?;
    Ok((d, addr))
}

async fn ecr(conn: &mut Conn, op: &str, body: Value) -> anyhow::Result<Value> {
    let body = Bytes::from(body.to_string());
    let req = conn.endpoint().signed_for("ecr", ECR_PREFIX, op, &body)?;
    let reply = conn.send(req).await?;
    if !reply.status.is_success() {
        bail!("{op} failed: {}", reply.describe());
    }
    Ok(serde_json::from_slice(&reply.body)?)
}

fn print_row(what: &str, t: &Transfer, mb: f64) {
    println!(
        "  {what:<22} {:>7.2} s  {:>7.1} MB/s   server RSS {:>6.1} MB before, {:>6.1} MB max (+{:.1})",
        t.secs,
        mb / t.secs,
        t.rss_before,
        t.rss_max,
        t.rss_max - t.rss_before
    );
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.distribution.exists() {
        bail!("{} is missing (apt-get install docker-registry)", args.distribution.display());
    }
    let root = servers::workspace_root();
    let bin = servers::build_wharf(&root)?;
    let scratch = tempfile::tempdir()?;
    let tar = build_image(scratch.path(), &args)?;
    let mb = (args.size_mb as f64 * 1_000_000.0) / (1024.0 * 1024.0);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut results: Vec<(&str, Transfer, Transfer)> = Vec::new();
    for i in 0..args.rounds.max(1) {
        // Fresh servers (on new ports) every round: a registry that already holds the layers,
        // or one Docker remembers pushing them to, would turn the push into a no-op or a mount.
        let round_dir = scratch.path().join(format!("round{i}"));
        let wharf_dir = round_dir.join("wharf");
        std::fs::create_dir_all(&wharf_dir)?;
        let (wharf, _) =
            rt.block_on(servers::start_wharf(&bin, &wharf_dir.join("data"), &wharf_dir.join("wharf.log")))?;
        let wharf_host = wharf.endpoint.addr.to_string();
        let password = rt.block_on(async {
            let mut conn = Conn::open(&wharf.endpoint).await?;
            ecr(&mut conn, "CreateRepository", json!({"repositoryName": REPO})).await?;
            let out = ecr(&mut conn, "GetAuthorizationToken", json!({})).await?;
            let token = out["authorizationData"][0]["authorizationToken"].as_str().context("no token")?.to_string();
            let raw = String::from_utf8(base64_decode(&token)?)?;
            anyhow::Ok(raw.trim_start_matches("AWS:").to_string())
        })?;
        let docker_config = round_dir.join("docker-config");
        std::fs::create_dir_all(&docker_config)?;
        let env = [("DOCKER_CONFIG", docker_config.to_string_lossy().into_owned())];
        let mut login = Command::new("docker")
            .args(["login", "--username", "AWS", "--password-stdin", &wharf_host])
            .env("DOCKER_CONFIG", &docker_config)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        login.stdin.take().context("stdin")?.write_all(password.as_bytes())?;
        if !login.wait()?.success() {
            bail!("docker login to Wharf failed");
        }
        let dist_dir = round_dir.join("distribution");
        std::fs::create_dir_all(&dist_dir)?;
        let (dist, dist_host) = start_distribution(&args.distribution, &dist_dir)?;

        let mut order = [("distribution", &dist_host, dist.0.id()), ("wharf", &wharf_host, wharf.pid())];
        if i % 2 == 1 {
            // Alternate who goes first: the machine warms up (page cache, CPU frequency) as it runs.
            order.reverse();
        }
        for (name, host, pid) in order {
            let (push, pull) =
                round(host, pid, &tar, &env).with_context(|| format!("round {} against {name}", i + 1))?;
            println!("round {} {name}: push {:.2} s, pull {:.2} s", i + 1, push.secs, pull.secs);
            results.push((name, push, pull));
        }
        drop(dist);
        wharf.stop(Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(&round_dir);
    }
    let best = |name: &str, pick: fn(&(&str, Transfer, Transfer)) -> Transfer| {
        results.iter().filter(|r| r.0 == name).map(pick).min_by(|a, b| a.secs.total_cmp(&b.secs))
    };
    let push_of = |r: &(&str, Transfer, Transfer)| r.1;
    let pull_of = |r: &(&str, Transfer, Transfer)| r.2;
    let (Some(dp), Some(dl), Some(wp), Some(wl)) =
        (best("distribution", push_of), best("distribution", pull_of), best("wharf", push_of), best("wharf", pull_of))
    else {
        bail!("no results");
    };
    println!();
    println!(
        "docker push/pull of a {} MB image ({} layers), best of {} round(s):",
        args.size_mb, args.layers, args.rounds
    );
    print_row("distribution push", &dp, mb);
    print_row("wharf push", &wp, mb);
    print_row("distribution pull", &dl, mb);
    print_row("wharf pull", &wl, mb);
    println!("  ratio push (distribution time / wharf time): {:.2}", dp.secs / wp.secs);
    println!("  ratio pull (distribution time / wharf time): {:.2}", dl.secs / wl.secs);
    Ok(())
}

/// Standard base64 (the token's alphabet), without pulling in a crate for one call.
fn base64_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).context("not base64")? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}
