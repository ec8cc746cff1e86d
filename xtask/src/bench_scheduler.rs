//! `bench-scheduler`: placement at scale. Registers many container instances through the API
//! (no agent behind them: nothing runs, so this measures the scheduler and placement, not
//! Docker), creates one service of many tasks, and times until every task is placed.
//! Targets from the issue: ≥ 5,000 placements/s, all placed within 5 s, server RSS ≤ 300 MB.

use crate::client::{self, Conn, Endpoint};
use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container instances to register.
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// The service's desiredCount.
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Benchmark this Wharf binary instead of building one with `cargo build --release -p wharf`.
    #[arg(long)]
    wharf_bin: Option<PathBuf>,
}

async fn call(conn: &mut Conn, op: &str, body: Value) -> anyhow::Result<Value> {
    let reply = conn.call(op, &Bytes::from(body.to_string())).await?;
    if !reply.status.is_success() {
        bail!("{op} failed: {}", reply.describe());
    }
    Ok(serde_json::from_slice(&reply.body)?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = crate::servers::workspace_root();
    let bin = match args.wharf_bin {
        Some(b) => b,
        None => crate::servers::build_wharf(&root)?,
    };
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(&bin)
        .args(["up", "--no-agent", "--agent-timeout-secs", "3600", "--listen", "127.0.0.1:0", "--no-profile"])
        .args(["--account-id", "123456789012", "--data-dir"])
        .arg(dir.path())
        .env("WHARF_ACCESS_KEY_ID", client::ACCESS_KEY_ID)
        .env("WHARF_SECRET_ACCESS_KEY", client::SECRET_ACCESS_KEY)
        .env("WHARF_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    let result = tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(measure(
        Endpoint::new(addr),
        pid,
        &args.instances,
        &args.tasks,
    ));
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn measure(endpoint: Endpoint, pid: u32, instances: &usize, tasks: &usize) -> anyhow::Result<()> {
    let (instances, tasks) = (*instances, *tasks);
    let mut conn = Conn::open(&endpoint).await?;
    call(&mut conn, "CreateCluster", json!({"clusterName": "scale"})).await?;
    let started = Instant::now();
    let workers = 8;
    let mut handles = vec![];
    for w in 0..workers {
        let endpoint = endpoint.clone();
        handles.push(tokio::spawn(async move {
            let mut conn = Conn::open(&endpoint).await?;
            for i in (w..instances).step_by(workers) {
                let identity = json!({"instanceId": format!("i-{i:08}"), "availabilityZone": format!("us-east-1{}", ["a", "b", "c"][i % 3])});
                call(&mut conn, "RegisterContainerInstance", json!({
                    "cluster": "scale",
                    "instanceIdentityDocument": identity.to_string(),
                    "totalResources": [
                        {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
                        {"name": "MEMORY", "type": "INTEGER", "integerValue": 8192},
                        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]}],
                })).await?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    println!("registered {instances} container instances in {:.1} s", started.elapsed().as_secs_f64());
    call(
        &mut conn,
        "RegisterTaskDefinition",
        json!({"family": "sim", "containerDefinitions": [{"name": "a", "image": "sim", "cpu": 32, "memory": 64}]}),
    )
    .await?;
    let rss_before = crate::servers::rss_mb(pid)?;
    let t0 = Instant::now();
    call(
        &mut conn,
        "CreateService",
        json!({"cluster": "scale", "serviceName": "huge", "taskDefinition": "sim", "desiredCount": tasks}),
    )
    .await?;
    let mut placed = 0;
    while t0.elapsed() < Duration::from_secs(120) {
        let out = call(&mut conn, "DescribeServices", json!({"cluster": "scale", "services": ["huge"]})).await?;
        let s = &out["services"][0];
        placed = s["pendingCount"].as_u64().unwrap_or(0) + s["runningCount"].as_u64().unwrap_or(0);
        if placed as usize >= tasks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let rate = placed as f64 / elapsed;
    let rss = crate::servers::peak_rss_mb(pid)?;
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!(
        "\nplacement of one service of {tasks} tasks on {instances} instances (2 cores; client and server share the machine)"
    );
    println!("| measure | value | target | result |\n|---|---:|---|---|");
    println!("| tasks placed | {placed} | {tasks} | {} |", verdict(placed as usize >= tasks));
    println!("| CreateService → all placed | {elapsed:.2} s | ≤ 5 s | {} |", verdict(elapsed <= 5.0));
    println!("| placements/s | {rate:.0} | ≥ 5,000 | {} |", verdict(rate >= 5000.0));
    println!("| server peak RSS | {rss:.0} MB (before: {rss_before:.0} MB) | ≤ 300 MB | {} |", verdict(rss <= 300.0));
    println!("Benchmarks report; they do not gate: exit status 0 whatever the figures.");
    Ok(())
}
