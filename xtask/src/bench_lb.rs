//! `bench-lb`: Wharf's load balancer listener against HAProxy and against the backends
//! directly, in one run, with the same wrk load and the same four `wharf-echo` containers.
//!
//! * direct: wrk against one backend container (wrk cannot spread one run over several
//!   hosts; the backends are identical, so one of them serving all connections is the
//!   per-request cost without a proxy — the latency baseline).
//! * HAProxy: Debian's `/usr/sbin/haproxy`, http mode, round robin over the four backends,
//!   keep-alive and connection reuse to them, `option forwardfor` (Wharf adds X-Forwarded-*
//!   too), two threads.
//! * Wharf: the release `wharf server` with one load balancer, an HTTP listener forwarding to
//!   a round-robin target group of the four backends. The ELBv2 documents are written into
//!   the data dir's store before Wharf starts (the data plane lists them at start), exactly as
//!   the ELBv2 API stores them.

use crate::servers;
use anyhow::{Context, bail};
use serde_json::json;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wharf_store::{Op, SqliteStore, Store, Txn};
use wharf_types::elb::{self, keys};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Seconds per measured run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Measured runs per contender (interleaved; the best run by requests/s is reported).
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Connections of the latency run (few, so nothing queues: what a hop adds).
    #[arg(long, default_value_t = 1)]
    latency_connections: u32,
    #[arg(long, default_value = "wharf-echo:latest")]
    image: String,
}

const ACCT: &str = "123456789012";
const REGION: &str = "us-east-1";

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    rps: f64,
    median_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// CPU time of the proxy process per request, in microseconds (0 for direct).
    cpu_us: f64,
}

struct Containers(Vec<String>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ =
                Command::new("docker").args(["rm", "-f", name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

pub(crate) struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker").args(args).output().context("running docker")?;
    if !out.status.success() {
        bail!("docker {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn start_backends(image: &str) -> anyhow::Result<(Containers, Vec<u16>)> {
    let mut names = Containers(vec![]);
    let mut ports = vec![];
    for i in 0..4 {
        let name = format!("wharf-bench-lb-{}-{i}", std::process::id());
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "-p",
            "127.0.0.1::8080",
            "-e",
            "LOG_REQUESTS=0",
            "-e",
            &format!("VERSION=backend-{i}"),
            image,
        ])?;
        names.0.push(name.clone());
        let mapped = docker(&["port", &name, "8080/tcp"])?;
        let port: u16 = mapped
            .lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("docker port said {mapped:?}"))?;
        ports.push(port);
    }
    for &p in &ports {
        wait_http(p)?;
    }
    Ok((names, ports))
}

/// Waits until `GET /` on 127.0.0.1:port answers 200.
pub(crate) fn wait_http(port: u16) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 16];
            if s.read(&mut buf).is_ok_and(|n| n >= 12 && &buf[..12] == b"HTTP/1.1 200") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing answered 200 on 127.0.0.1:{port} within 30 s")
}

/// HAProxy in front of `backends`; with `checks`, health checks as a target group's (`GET
/// /health` every 5 s, 2 to rise and to fall).
pub(crate) fn start_haproxy(dir: &Path, backends: &[u16], threads: u32, checks: bool) -> anyhow::Result<(Proc, u16)> {
    // maxconn 4096: HAProxy raises its descriptor limit to twice that, within the default 20000.
    let port = free_port()?;
    let mut cfg = format!(
        "global\n  maxconn 4096\n  nbthread {threads}\n\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  option http-keep-alive\n  option forwardfor\n  http-reuse always\n\nfrontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n\nbackend be\n  balance roundrobin\n"
    );
    if checks {
        cfg.push_str("  option httpchk GET /health\n");
    }
    for (i, p) in backends.iter().enumerate() {
        let check = if checks { " check inter 5s rise 2 fall 2" } else { "" };
        cfg.push_str(&format!("  server s{i} 127.0.0.1:{p}{check}\n"));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg)?;
    let log = std::fs::File::create(dir.join("haproxy.log"))?;
    let child = Command::new("/usr/sbin/haproxy")
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting /usr/sbin/haproxy")?;
    let p = Proc(child);
    wait_http(port)?;
    Ok((p, port))
}

/// Writes one load balancer, a round-robin target group of `backends` and an HTTP listener
/// on a free port into the store at `db`, as the ELBv2 API stores them.
async fn seed_wharf(db: &Path, backends: &[u16]) -> anyhow::Result<u16> {
    let store = SqliteStore::open(db)?;
    let port = free_port()?;
    let lb_arn = format!("arn:aws:elasticloadbalancing:{REGION}:{ACCT}:loadbalancer/app/bench/0123456789abcdef");
    let tg_arn = format!("arn:aws:elasticloadbalancing:{REGION}:{ACCT}:targetgroup/bench/0123456789abcdef");
    let listener_arn = format!("{}/fedcba9876543210", lb_arn.replace(":loadbalancer/", ":listener/"));
    let lb = elb::LoadBalancer {
        load_balancer_arn: lb_arn.clone(),
        load_balancer_name: "bench".into(),
        dns_name: "bench.elb.localhost".into(),
        kind: "application".into(),
        scheme: "internet-facing".into(),
        created_time: wharf_types::now(),
        state: json!({"Code": "active"}),
        ..Default::default()
    };
    let tg = elb::TargetGroup {
        target_group_arn: tg_arn.clone(),
        target_group_name: "bench".into(),
        protocol: "HTTP".into(),
        port: Some(8080),
        target_type: "ip".into(),
        health_check: elb::HealthCheck {
            enabled: true,
            protocol: "HTTP".into(),
            port: "traffic-port".into(),
            path: "/health".into(),
            interval_seconds: 5,
            timeout_seconds: 2,
            healthy_threshold_count: 2,
            unhealthy_threshold_count: 2,
            http_code: "200".into(),
        },
        ..Default::default()
    };
    let listener = elb::Listener {
        listener_arn: listener_arn.clone(),
        load_balancer_arn: lb_arn,
        port,
        protocol: "HTTP".into(),
        default_actions: vec![elb::Action {
            kind: "forward".into(),
            target_group_arn: Some(tg_arn.clone()),
            forward_config: Some(elb::ForwardConfig {
                target_groups: vec![elb::WeightedTargetGroup { target_group_arn: tg_arn.clone(), weight: Some(1) }],
                target_group_stickiness_config: None,
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut ops = vec![
        Op::put(keys::load_balancer(ACCT, REGION, "bench"), serde_json::to_vec(&lb)?),
        Op::put(keys::target_group(ACCT, REGION, "bench"), serde_json::to_vec(&tg)?),
        Op::put(keys::listener(ACCT, REGION, "fedcba9876543210"), serde_json::to_vec(&listener)?),
    ];
    for &p in backends {
        let t = elb::Target {
            target_group_arn: tg_arn.clone(),
            id: "127.0.0.1".into(),
            port: p,
            registered_at: wharf_types::now(),
            ..Default::default()
        };
        ops.push(Op::put(keys::target(ACCT, REGION, "bench", "127.0.0.1", p), serde_json::to_vec(&t)?));
    }
    let r = store.txn(Txn { compares: vec![], ops }).await?;
    if !r.succeeded {
        bail!("seeding the store failed");
    }
    store.close();
    Ok(port)
}

fn start_wharf(bin: &Path, dir: &Path) -> anyhow::Result<Proc> {
    let log = std::fs::File::create(dir.join("wharf.log"))?;
    let child = Command::new(bin)
        .args(["server", "--listen", "127.0.0.1:0", "--no-profile", "--account-id", ACCT, "--data-dir"])
        .arg(dir.join("wharf"))
        .env("WHARF_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Proc(child))
}

fn parse_latency(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

fn wrk(connections: u32, threads: u32, port: u16, secs: u64, pid: Option<u32>) -> anyhow::Result<Figures> {
    let cpu0 = pid.map(|p| servers::cpu_time(Some(p)));
    let out = Command::new("/usr/bin/wrk")
        .args([
            "-c",
            &connections.to_string(),
            "-t",
            &threads.min(connections).to_string(),
            "-d",
            &format!("{secs}s"),
            "--latency",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .context("running /usr/bin/wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut f = Figures::default();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["Requests/sec:", v] => f.rps = v.parse().unwrap_or(0.0),
            ["50%", v] => f.median_ms = parse_latency(v).unwrap_or(f64::NAN),
            ["99%", v] => f.p99_ms = parse_latency(v).unwrap_or(f64::NAN),
            ["Non-2xx", "or", "3xx", "responses:", n] => f.errors += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                f.errors += rest.iter().filter_map(|t| t.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>()
            }
            _ => {}
        }
    }
    if f.rps == 0.0 {
        bail!("wrk reported no requests/s:\n{text}");
    }
    if let (Some(pid), Some(cpu0)) = (pid, cpu0) {
        let used = servers::cpu_time(Some(pid)).saturating_sub(cpu0);
        f.cpu_us = used.as_secs_f64() * 1e6 / (f.rps * secs as f64);
    }
    Ok(f)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = servers::workspace_root();
    let bin = servers::build_wharf(&root)?;
    let dir = tempfile::tempdir()?;
    println!("starting 4 {} containers (ports published on 127.0.0.1)", args.image);
    let (_containers, backends) = start_backends(&args.image)?;
    println!("  backends: {backends:?}");
    let (haproxy, haproxy_port) = start_haproxy(dir.path(), &backends, args.threads, false)?;
    println!("  haproxy:  127.0.0.1:{haproxy_port}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::fs::create_dir_all(dir.path().join("wharf"))?;
    let wharf_port = rt.block_on(seed_wharf(&dir.path().join("wharf").join("wharf.db"), &backends))?;
    let wharf = start_wharf(&bin, dir.path())?;
    wait_http(wharf_port).with_context(|| {
        format!(
            "wharf's listener; its log: {}",
            std::fs::read_to_string(dir.path().join("wharf.log")).unwrap_or_default()
        )
    })?;
    println!("  wharf:    127.0.0.1:{wharf_port} (listener)");

    let contenders = [
        ("direct (one backend)", backends[0], None),
        ("haproxy", haproxy_port, Some(haproxy.0.id())),
        ("wharf", wharf_port, Some(wharf.0.id())),
    ];
    for (_, port, _) in contenders {
        wrk(args.connections, args.threads, port, 2, None)?; // warm-up: connections, pools, caches
    }
    let mut load = [Figures::default(); 3];
    let mut quiet = [Figures::default(); 3];
    for (phase, connections, best) in
        [("throughput", args.connections, &mut load), ("latency", args.latency_connections, &mut quiet)]
    {
        println!(
            "\n{phase}: wrk -c {connections} -t {} -d {}s, {} interleaved rounds, best round reported",
            args.threads.min(connections),
            args.duration,
            args.rounds
        );
        for round in 0..args.rounds {
            for (i, (name, port, pid)) in contenders.iter().enumerate() {
                let f = wrk(connections, args.threads, *port, args.duration, *pid)?;
                println!(
                    "  round {} {name:<22} {:>9.0} req/s  median {:.3} ms  p99 {:.3} ms  errors {}  cpu {:.1} us/req",
                    round + 1,
                    f.rps,
                    f.median_ms,
                    f.p99_ms,
                    f.errors,
                    f.cpu_us
                );
                if f.rps > best[i].rps {
                    best[i] = f;
                }
            }
        }
    }
    println!(
        "\n{:<22} {:>10} {:>11} {:>9} {:>7} {:>11} | {:>14} {:>11}",
        "", "req/s", "median ms", "p99 ms", "errors", "cpu us/req", "1-conn median", "1-conn p99"
    );
    for (i, (name, _, _)) in contenders.iter().enumerate() {
        let (f, q) = (load[i], quiet[i]);
        println!(
            "{name:<22} {:>10.0} {:>11.3} {:>9.3} {:>7} {:>11.1} | {:>11.3} ms {:>8.3} ms",
            f.rps, f.median_ms, f.p99_ms, f.errors, f.cpu_us, q.median_ms, q.p99_ms
        );
    }
    let [_, haproxy, wharf] = load;
    let ratio = wharf.rps / haproxy.rps;
    let added = quiet[2].median_ms - quiet[0].median_ms;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!();
    println!("wharf / haproxy req/s:              {ratio:.2}x   (target >= 1.0x: {})", verdict(ratio >= 1.0));
    println!(
        "wharf median - direct median:       {added:+.3} ms at {} connection(s) (target <= 0.1 ms: {}); haproxy adds {:+.3} ms",
        args.latency_connections,
        verdict(added <= 0.1),
        quiet[1].median_ms - quiet[0].median_ms
    );
    println!(
        "wharf p99 vs haproxy p99:           {:.3} / {:.3} ms at {} connections (target <=: {})",
        wharf.p99_ms,
        haproxy.p99_ms,
        args.connections,
        verdict(wharf.p99_ms <= haproxy.p99_ms)
    );
    println!("cpu per request, wharf / haproxy:   {:.2}x", wharf.cpu_us / haproxy.cpu_us);
    Ok(())
}
