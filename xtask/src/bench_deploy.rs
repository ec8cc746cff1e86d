//! `bench-deploy`: a rolling deployment on real Docker, timed as users wait for it. Starts
//! `wharf up` (control plane and the embedded agent on the local engine), runs a service of 4
//! `wharf-echo` tasks with a container health check, then updates it to a new revision twice
//! (minimumHealthyPercent/maximumPercent 100/200, then 50/100) and times UpdateService until
//! the service is stable as `aws ecs wait services-stable` sees it (one deployment,
//! runningCount == desiredCount). Each figure is printed next to the floor the configured
//! timers allow, with what that floor is made of.

use crate::client::Conn;
use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Benchmark this Wharf binary instead of building one with `cargo build --release -p wharf`.
    #[arg(long)]
    wharf_bin: Option<PathBuf>,
    /// The image the tasks run (see docs/test-images.md).
    #[arg(long, default_value = "wharf-echo:latest")]
    image: String,
    /// The service's desiredCount.
    #[arg(long, default_value_t = 4)]
    tasks: i64,
    /// The container health check's interval (ECS allows 5..300 s).
    #[arg(long, default_value_t = 5)]
    health_interval: i64,
}

/// The cluster the embedded agent of `wharf up` joins.
const CLUSTER: &str = "default";
const SERVICE: &str = "web";

async fn call(conn: &mut Conn, op: &str, body: Value) -> anyhow::Result<Value> {
    let reply = conn.call(op, &Bytes::from(body.to_string())).await?;
    if !reply.status.is_success() {
        bail!("{op} failed: {}", reply.describe());
    }
    Ok(serde_json::from_slice(&reply.body)?)
}

fn task_definition(image: &str, version: &str, interval: i64) -> Value {
    json!({
        "family": "bench-deploy",
        "networkMode": "bridge",
        "containerDefinitions": [{
            "name": "web",
            "image": image,
            "essential": true,
            "memory": 64,
            "environment": [{"name": "VERSION", "value": version}],
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
            "healthCheck": {
                "command": ["CMD", "/wharf-echo", "--healthcheck", "http://127.0.0.1:8080/health"],
                "interval": interval, "timeout": 2, "retries": 2, "startPeriod": 0,
            },
        }],
    })
}

/// What one poll of DescribeServices says.
struct Sample {
    deployments: usize,
    running: i64,
    desired: i64,
}

async fn sample(conn: &mut Conn) -> anyhow::Result<Sample> {
    let out = call(conn, "DescribeServices", json!({"cluster": CLUSTER, "services": [SERVICE]})).await?;
    let s = &out["services"][0];
    Ok(Sample {
        deployments: s["deployments"].as_array().map_or(0, Vec::len),
        running: s["runningCount"].as_i64().unwrap_or(-1),
        desired: s["desiredCount"].as_i64().unwrap_or(-2),
    })
}

/// Polls every 100 ms until the service is stable (the `services-stable` waiter's test).
async fn wait_stable(conn: &mut Conn, limit: Duration) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    loop {
        let s = sample(conn).await?;
        if s.deployments == 1 && s.running == s.desired {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > limit {
            bail!("not stable after {limit:?} ({} deployments, {}/{} running)", s.deployments, s.running, s.desired);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// UpdateService to `version` with `min`/`max`, then the time until stable.
async fn deploy(conn: &mut Conn, args: &Args, version: &str, min: i64, max: i64) -> anyhow::Result<Duration> {
    let td = call(conn, "RegisterTaskDefinition", task_definition(&args.image, version, args.health_interval)).await?;
    let arn = td["taskDefinition"]["taskDefinitionArn"].as_str().context("taskDefinitionArn")?.to_string();
    let t0 = Instant::now();
    call(
        conn,
        "UpdateService",
        json!({"cluster": CLUSTER, "service": SERVICE, "taskDefinition": arn,
               "deploymentConfiguration": {"minimumHealthyPercent": min, "maximumPercent": max}}),
    )
    .await?;
    // The update is visible at once: two deployments until the old one drained.
    wait_stable(conn, Duration::from_secs(300)).await?;
    Ok(t0.elapsed())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = crate::servers::workspace_root();
    let bin = match &args.wharf_bin {
        Some(b) => b.clone(),
        None => crate::servers::build_wharf(&root)?,
    };
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("wharf.log");
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let (server, _) = crate::servers::start_wharf(&bin, &dir.path().join("data"), &log).await?;
        let mut conn = Conn::open(&server.endpoint).await?;
        let result = measure(&mut conn, &args).await;
        // Leave no containers behind: scale to zero and wait for the tasks to stop.
        let _ = call(&mut conn, "DeleteService", json!({"cluster": CLUSTER, "service": SERVICE, "force": true})).await;
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            let out = call(&mut conn, "DescribeClusters", json!({"clusters": [CLUSTER]})).await?;
            let c = &out["clusters"][0];
            if c["runningTasksCount"].as_i64() == Some(0) && c["pendingTasksCount"].as_i64() == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        if result.is_err() {
            eprintln!("wharf's log ends with:\n{}", server.log_tail());
        }
        server.stop(Duration::from_secs(10));
        result
    })
}

async fn measure(conn: &mut Conn, args: &Args) -> anyhow::Result<()> {
    let t = Instant::now();
    loop {
        let out = call(conn, "DescribeClusters", json!({"clusters": [CLUSTER]})).await?;
        if out["clusters"][0]["registeredContainerInstancesCount"].as_i64().unwrap_or(0) >= 1 {
            break;
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("the embedded agent did not register within 60 s (is Docker running?)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let td = call(conn, "RegisterTaskDefinition", task_definition(&args.image, "v1", args.health_interval)).await?;
    let arn = td["taskDefinition"]["taskDefinitionArn"].as_str().context("taskDefinitionArn")?.to_string();
    call(
        conn,
        "CreateService",
        json!({"cluster": CLUSTER, "serviceName": SERVICE, "taskDefinition": arn, "desiredCount": args.tasks,
               "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 200}}),
    )
    .await?;
    let created = wait_stable(conn, Duration::from_secs(120)).await?;
    let i = args.health_interval as f64;
    let n = args.tasks;
    let first = deploy(conn, args, "v2", 100, 200).await?;
    let second = deploy(conn, args, "v3", 50, 100).await?;
    // Floors: a new task counts healthy at its first passing Docker health probe, which runs
    // one `interval` after the container started (startPeriod only forgives failures). 100/200
    // starts all n new tasks at once: one round. 50/100 keeps ceil(n/2) healthy, so it replaces
    // n - ceil(n/2) tasks per round: ceil(n / (n - ceil(n/2))) rounds. Stopping an old task
    // costs its SIGTERM → exit (wharf-echo exits at once; stopTimeout only bounds a task that
    // ignores SIGTERM). The scheduler is woken by store watches (its 2 s tick is a fallback).
    let half = (n + 1) / 2;
    let rounds_50 = (n as f64 / (n - half).max(1) as f64).ceil();
    println!("\nrolling deployment of {n} wharf-echo tasks on real Docker (bridge, hostPort 0, health check every {i} s)");
    println!("| step | UpdateService → stable | floor from the timers | floor made of |\n|---|---:|---:|---|");
    println!("| CreateService → stable (v1) | {:.1} s | — | start only (RUNNING, health not awaited by the waiter) |", created.as_secs_f64());
    println!(
        "| v1 → v2, 100/200 | {:.1} s | {i:.1} s | 1 round × health interval {i} s |",
        first.as_secs_f64()
    );
    println!(
        "| v2 → v3, 50/100 | {:.1} s | {:.1} s | {rounds_50} rounds × health interval {i} s |",
        second.as_secs_f64(),
        rounds_50 * i
    );
    println!("Benchmarks report; they do not gate: exit status 0 whatever the figures.");
    Ok(())
}
