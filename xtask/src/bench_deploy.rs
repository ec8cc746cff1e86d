//! `bench-deploy`: a rolling deployment on real Docker, timed as users wait for it. Starts
//! `wharf up` (control plane and the embedded agent on the local engine), runs a service of 4
//! `wharf-echo` tasks with a container health check, then updates it to a new revision twice
//! (minimumHealthyPercent/maximumPercent 100/200, then 50/100) and times UpdateService until
//! the service is stable as `aws ecs wait services-stable` sees it (one deployment,
//! runningCount == desiredCount). Each figure is printed next to the floor the configured
//! timers allow, with what that floor is made of.

use crate::client::Conn;
use anyhow::{Context, bail};
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
    /// The PRIMARY deployment's rolloutState.
    rollout: String,
    /// Each task's lastStatus/desiredStatus/healthStatus, abbreviated (for BENCH_DEPLOY_TRACE).
    tasks: String,
    deployments: usize,
    running: i64,
    desired: i64,
}

async fn sample(conn: &mut Conn) -> anyhow::Result<Sample> {
    let out = conn.ecs("DescribeServices", json!({"cluster": CLUSTER, "services": [SERVICE]})).await?;
    let s = &out["services"][0];
    let arns = conn.ecs("ListTasks", json!({"cluster": CLUSTER})).await?["taskArns"].clone();
    let mut tasks = String::new();
    if arns.as_array().is_some_and(|a| !a.is_empty()) {
        let described = conn.ecs("DescribeTasks", json!({"cluster": CLUSTER, "tasks": arns})).await?;
        for t in described["tasks"].as_array().into_iter().flatten() {
            let short = |k: &str| t[k].as_str().unwrap_or("-").chars().take(4).collect::<String>();
            tasks.push_str(&format!("{}/{}/{} ", short("lastStatus"), short("desiredStatus"), short("healthStatus")));
        }
    }
    Ok(Sample {
        rollout: s["deployments"][0]["rolloutState"].as_str().unwrap_or_default().to_string(),
        tasks,
        deployments: s["deployments"].as_array().map_or(0, Vec::len),
        running: s["runningCount"].as_i64().unwrap_or(-1),
        desired: s["desiredCount"].as_i64().unwrap_or(-2),
    })
}

/// How long after `t0` the service became stable (the `services-stable` waiter's test) and
/// its deployment COMPLETED (every new task healthy), polling every 100 ms.
async fn wait_done(conn: &mut Conn, t0: Instant, limit: Duration) -> anyhow::Result<(Duration, Duration)> {
    let mut last = String::new();
    let mut stable = None;
    loop {
        let s = sample(conn).await?;
        let now =
            format!("{} deployment(s), {}/{} running, {}: {}", s.deployments, s.running, s.desired, s.rollout, s.tasks);
        if now != last && std::env::var_os("BENCH_DEPLOY_TRACE").is_some() {
            println!("  {:6.2} s  {now}", t0.elapsed().as_secs_f64());
        }
        last = now;
        if s.deployments == 1 && s.running == s.desired {
            let at = *stable.get_or_insert_with(|| t0.elapsed());
            if s.rollout == "COMPLETED" {
                return Ok((at, t0.elapsed()));
            }
        } else {
            stable = None;
        }
        if t0.elapsed() > limit {
            bail!("not done after {limit:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// UpdateService to `version` with `min`/`max`; the times until stable and until COMPLETED.
async fn deploy(
    conn: &mut Conn,
    args: &Args,
    version: &str,
    min: i64,
    max: i64,
) -> anyhow::Result<(Duration, Duration)> {
    let td = conn.ecs("RegisterTaskDefinition", task_definition(&args.image, version, args.health_interval)).await?;
    let arn = td["taskDefinition"]["taskDefinitionArn"].as_str().context("taskDefinitionArn")?.to_string();
    let t0 = Instant::now();
    conn.ecs(
        "UpdateService",
        json!({"cluster": CLUSTER, "service": SERVICE, "taskDefinition": arn,
               "deploymentConfiguration": {"minimumHealthyPercent": min, "maximumPercent": max}}),
    )
    .await?;
    wait_done(conn, t0, Duration::from_secs(300)).await
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = crate::servers::workspace_root();
    let bin = crate::servers::wharf_bin(args.wharf_bin.as_ref(), &root)?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("wharf.log");
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let (server, _) = crate::servers::start_wharf(&bin, &dir.path().join("data"), &log).await?;
        let mut conn = Conn::open(&server.endpoint).await?;
        let result = measure(&mut conn, &args).await;
        crate::servers::remove_service(&mut conn, CLUSTER, SERVICE).await?;
        if result.is_err() {
            eprintln!("wharf's log ends with:\n{}", server.log_tail());
        }
        server.stop(Duration::from_secs(10));
        result
    })
}

async fn measure(conn: &mut Conn, args: &Args) -> anyhow::Result<()> {
    crate::servers::wait_for_agent(conn, CLUSTER).await?;
    let td = conn.ecs("RegisterTaskDefinition", task_definition(&args.image, "v1", args.health_interval)).await?;
    let arn = td["taskDefinition"]["taskDefinitionArn"].as_str().context("taskDefinitionArn")?.to_string();
    conn.ecs(
        "CreateService",
        json!({"cluster": CLUSTER, "serviceName": SERVICE, "taskDefinition": arn, "desiredCount": args.tasks,
               "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 200}}),
    )
    .await?;
    // From a steady service: every v1 task RUNNING and HEALTHY (rollout COMPLETED).
    let (_, created) = wait_done(conn, Instant::now(), Duration::from_secs(120)).await?;
    let i = args.health_interval as f64;
    let n = args.tasks;
    let first = deploy(conn, args, "v2", 100, 200).await?;
    let second = deploy(conn, args, "v3", 50, 100).await?;
    // Floors: a new task counts healthy at its first passing Docker health probe, which runs
    // one `interval` after the container started (startPeriod only forgives failures; retries
    // only count failures). 100/200 starts all n new tasks at once: one round. 50/100 keeps
    // ceil(n/2) healthy, so it replaces n - ceil(n/2) tasks per round. The waiter is satisfied
    // once the old deployment has no tasks and n are RUNNING: the last round's tasks need not
    // be healthy yet, so its floor is one health interval less than COMPLETED's. Stopping an
    // old task costs SIGTERM → exit (wharf-echo exits at once; stopTimeout only bounds a task
    // that ignores SIGTERM). The scheduler acts on store watches (its 2 s tick is a fallback),
    // the agent polls container health every 0.3 s.
    let half = (n + 1) / 2;
    let rounds_50 = (n as f64 / (n - half).max(1) as f64).ceil();
    println!(
        "\nrolling deployment of {n} wharf-echo tasks on real Docker (bridge, hostPort 0, health check every {i} s)"
    );
    println!("| step | UpdateService → stable (waiter) | floor | → COMPLETED | floor | floor made of |");
    println!("|---|---:|---:|---:|---:|---|");
    println!("| CreateService (v1) | — | — | {:.1} s | {i:.1} s | 1 round × health interval |", created.as_secs_f64());
    println!(
        "| v1 → v2, 100/200 | {:.1} s | {i:.1} s | {:.1} s | {i:.1} s | 1 round × health interval {i} s (old tasks stop once new ones are healthy) |",
        first.0.as_secs_f64(),
        first.1.as_secs_f64()
    );
    println!(
        "| v2 → v3, 50/100 | {:.1} s | {:.1} s | {:.1} s | {:.1} s | {rounds_50} rounds × health interval {i} s |",
        second.0.as_secs_f64(),
        (rounds_50 - 1.0) * i,
        second.1.as_secs_f64(),
        rounds_50 * i
    );
    println!("Benchmarks report; they do not gate: exit status 0 whatever the figures.");
    Ok(())
}
