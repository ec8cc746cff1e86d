//! `bench-scheduler`: scheduling at scale with real agents on a simulated runtime. Starts the
//! release `wharf server`, runs many real `wharf_agent` agents in this process (each with its
//! own state dir and container instance, each holding its own assignment stream and reporting
//! task states through the agent protocol) on [`SimRuntime`] engines whose containers start
//! at once, creates one service of many tasks, and times until every task is placed and until
//! every task is RUNNING as the agents reported it.
//! Targets from the issue: ≥ 5,000 placements/s, all placed within 5 s, server RSS ≤ 300 MB.

use crate::client::{self, Conn, Endpoint};
use crate::sim_runtime::SimRuntime;
use anyhow::{Context, bail};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Agents (container instances) to run in this process, each on its own simulated engine.
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// The service's desiredCount.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Benchmark this Wharf binary instead of building one with `cargo build --release -p wharf`.
    #[arg(long)]
    wharf_bin: Option<PathBuf>,
    /// How long to wait for every task to be RUNNING.
    #[arg(long, default_value_t = 180)]
    timeout_secs: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = crate::servers::workspace_root();
    let bin = crate::servers::wharf_bin(args.wharf_bin.as_ref(), &root)?;
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(&bin)
        .args(["server", "--agent-timeout-secs", "3600", "--listen", "127.0.0.1:0", "--no-profile"])
        .args(["--account-id", "123456789012", "--data-dir"])
        .arg(dir.path().join("server"))
        .env("WHARF_ACCESS_KEY_ID", client::ACCESS_KEY_ID)
        .env("WHARF_SECRET_ACCESS_KEY", client::SECRET_ACCESS_KEY)
        .env("WHARF_LOG", std::env::var("WHARF_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::piped())
        // WHARF_BENCH_SERVER_LOG=<file> keeps the server's log (with WHARF_LOG=info: activations).
        .stderr(match std::env::var_os("WHARF_BENCH_SERVER_LOG") {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::null(),
        })
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.trim().strip_prefix("endpoint:").map(|u| u.trim().to_string()))
        .context("wharf printed no endpoint")?;
    std::thread::spawn(move || lines.for_each(drop));
    let addr: SocketAddr = url.trim_start_matches("http://").parse()?;
    let pid = child.id();
    // The agents share the machine's two cores with the server, as they would share a host
    // with nothing if they were real: two worker threads.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = rt.block_on(measure(Endpoint::new(addr), &url, pid, &args, dir.path()));
    rt.shutdown_timeout(Duration::from_secs(1));
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn measure(endpoint: Endpoint, url: &str, pid: u32, args: &Args, dir: &Path) -> anyhow::Result<()> {
    let (instances, tasks) = (args.instances, args.tasks);
    let mut conn = Conn::open(&endpoint).await?;
    conn.ecs("CreateCluster", json!({"clusterName": "scale"})).await?;
    let started_containers = Arc::new(AtomicU64::new(0));
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let t_register = Instant::now();
    let mut agents = Vec::with_capacity(instances);
    for i in 0..instances {
        let config = wharf_agent::AgentConfig {
            endpoint: url.to_string(),
            region: client::REGION.into(),
            access_key_id: client::ACCESS_KEY_ID.into(),
            secret_access_key: client::SECRET_ACCESS_KEY.into(),
            cluster: "scale".into(),
            state_dir: dir.join(format!("agent-{i}")),
            port_bind_ip: "127.0.0.1".into(),
            advertise_address: None,
            reserved_memory_mib: 0,
            reserved_ports: wharf_agent::AgentConfig::DEFAULT_RESERVED_PORTS.to_vec(),
            pull_behavior: wharf_agent::PullBehavior::Default,
            container_stop_timeout_secs: 30,
            attributes: vec![],
            dynamic_ports: wharf_agent::AgentConfig::kernel_ephemeral_range(),
            fargate: false,
            tls: None,
            stats_interval: None,
            disable_metrics: false,
        };
        let runtime = SimRuntime::new(started_containers.clone());
        agents.push(tokio::spawn(wharf_agent::run(config, runtime, shutdown_rx.clone())));
    }
    // Every agent registered and holding its assignment stream.
    let connected = loop {
        let out = conn.ecs("DescribeClusters", json!({"clusters": ["scale"]})).await?;
        let registered = out["clusters"][0]["registeredContainerInstancesCount"].as_u64().unwrap_or(0) as usize;
        if registered >= instances {
            let mut n = 0;
            let mut token: Option<String> = None;
            loop {
                let mut body = json!({"cluster": "scale", "maxResults": 100});
                if let Some(t) = &token {
                    body["nextToken"] = json!(t);
                }
                let page = conn.ecs("ListContainerInstances", body).await?;
                let arns = page["containerInstanceArns"].clone();
                let described = conn
                    .ecs("DescribeContainerInstances", json!({"cluster": "scale", "containerInstances": arns}))
                    .await?;
                n += described["containerInstances"]
                    .as_array()
                    .map_or(0, |a| a.iter().filter(|i| i["agentConnected"] == json!(true)).count());
                token = page["nextToken"].as_str().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            if n >= instances {
                break n;
            }
        }
        if t_register.elapsed() > Duration::from_secs(120) {
            bail!("only {registered} of {instances} agents registered after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let registered_in = t_register.elapsed().as_secs_f64();
    println!("{connected} agents registered and streaming in {registered_in:.1} s");
    conn.ecs(
        "RegisterTaskDefinition",
        json!({"family": "sim", "containerDefinitions": [{"name": "a", "image": "sim", "cpu": 32, "memory": 64}]}),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = crate::servers::rss_mb(pid)?;
    let cpu_server = crate::servers::cpu_time(Some(pid));
    let cpu_agents = crate::servers::cpu_time(None);
    let t0 = Instant::now();
    conn.ecs(
        "CreateService",
        json!({"cluster": "scale", "serviceName": "huge", "taskDefinition": "sim", "desiredCount": tasks}),
    )
    .await?;
    let (mut placed, mut running) = (0usize, 0usize);
    let (mut placed_at, mut running_at) = (None, None);
    let mut peak_rss: f64 = 0.0;
    while t0.elapsed() < Duration::from_secs(args.timeout_secs) {
        // The service's counts are one document (the scheduler keeps them true); the
        // cluster's would be a count over every task at each poll.
        let out = conn.ecs("DescribeServices", json!({"cluster": "scale", "services": ["huge"]})).await?;
        let s = &out["services"][0];
        running = s["runningCount"].as_u64().unwrap_or(0) as usize;
        placed = running + s["pendingCount"].as_u64().unwrap_or(0) as usize;
        peak_rss = peak_rss.max(crate::servers::rss_mb(pid)?);
        if placed >= tasks && placed_at.is_none() {
            placed_at = Some(t0.elapsed().as_secs_f64());
        }
        if running >= tasks {
            running_at = Some(t0.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(if placed_at.is_some() { 100 } else { 20 })).await;
    }
    let cpu_server = crate::servers::cpu_time(Some(pid)) - cpu_server;
    let cpu_agents = crate::servers::cpu_time(None) - cpu_agents;
    let out = conn.ecs("DescribeClusters", json!({"clusters": ["scale"]})).await?;
    let cluster_running = out["clusters"][0]["runningTasksCount"].as_u64().unwrap_or(0);
    let hwm = crate::servers::peak_rss_mb(pid)?;
    let agents_rss = crate::servers::rss_mb(std::process::id())?;
    let _ = shutdown_tx.send(true);
    for a in agents {
        a.abort();
    }

    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    let fmt = |t: Option<f64>| t.map_or_else(|| format!("not within {} s", args.timeout_secs), |t| format!("{t:.2} s"));
    let placed_s = placed_at.unwrap_or(f64::INFINITY);
    let rate = if placed_s.is_finite() { tasks as f64 / placed_s } else { 0.0 };
    println!(
        "\none service of {tasks} tasks on {instances} container instances, each a real agent on a simulated \
         runtime in one process (2 cores shared by server, agents and client)"
    );
    println!("| measure | value | target | result |\n|---|---:|---|---|");
    println!("| tasks placed | {placed} | {tasks} | {} |", verdict(placed >= tasks));
    println!("| CreateService → all placed | {} | ≤ 5 s | {} |", fmt(placed_at), verdict(placed_s <= 5.0));
    println!("| placements/s | {rate:.0} | ≥ 5,000 | {} |", verdict(rate >= 5000.0));
    println!("| CreateService → all RUNNING (agents' reports) | {} | — | — |", fmt(running_at));
    println!("| tasks RUNNING (service runningCount / cluster) | {running} / {cluster_running} | {tasks} | — |");
    println!("| containers started by the agents | {} | {tasks} | — |", started_containers.load(Ordering::Relaxed));
    println!(
        "| server peak RSS | {:.0} MB (before: {rss_before:.0} MB) | ≤ 300 MB | {} |",
        hwm.max(peak_rss),
        verdict(hwm.max(peak_rss) <= 300.0)
    );
    println!("| benchmark process RSS ({instances} agents) | {agents_rss:.0} MB | — | — |");
    println!(
        "| CPU used until all RUNNING: server / agents+client | {:.1} s / {:.1} s | — | — |",
        cpu_server.as_secs_f64(),
        cpu_agents.as_secs_f64()
    );
    println!("Benchmarks report; they do not gate: exit status 0 whatever the figures.");
    Ok(())
}
