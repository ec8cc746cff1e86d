//! `xtask bench-usage`: what the agent's usage sampling costs, on real containers.
//!
//! It starts `--tasks` wharf-echo containers (one per task) on the local Docker engine and
//! runs the agent's own sampling round on them in this process, as the agent does every
//! stats interval: [`Sampler::sample`] (through [`DockerRuntime`]'s `usage`, reading the
//! containers' cgroup files), the report's JSON, and its signed POST with the agent's own
//! [`Client`] to a stub control plane in this process that answers as the real one does. The
//! CPU time of the whole process per round (every thread's, from `/proc/self/task/*/schedstat`,
//! in nanoseconds; the stub's share included) is the cost of one sampling round; at the
//! production interval (20 s) it is printed as a share of one core. For comparison, the same
//! counters read through the engine's stats API (the fallback where cgroups are unreadable),
//! as many calls at once as the sampler makes, with what that costs dockerd and containerd.
//!
//! Every container it makes carries `com.amazonaws.ecs.cluster=<its own name>` and is removed
//! at the end by that label.

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};
use wharf_agent::client::Client;
use wharf_agent::docker::DockerRuntime;
use wharf_agent::runtime::{ContainerRuntime, ContainerSpec};
use wharf_agent::usage::{RunningTask, Sampler};
use wharf_types::agent::{USAGE_PATH, UsageReport};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Running tasks (one wharf-echo container each).
    #[arg(long, default_value_t = 50)]
    tasks: usize,
    /// Measured sampling rounds through cgroups (after one warm-up round).
    #[arg(long, default_value_t = 200)]
    rounds: usize,
    /// Measured rounds through the engine's stats API.
    #[arg(long, default_value_t = 5)]
    engine_rounds: usize,
    /// The production interval the share of a core is given for, in seconds.
    #[arg(long, default_value_t = 20.0)]
    interval: f64,
    /// Memory (MiB) of each container.
    #[arg(long, default_value_t = 16)]
    memory_mib: i64,
    /// The image every container runs.
    #[arg(long, default_value = "wharf-echo:latest")]
    image: String,
    /// Do not run scripts/build-test-images first (the image must then exist).
    #[arg(long)]
    skip_image_build: bool,
}

const CLUSTER_LABEL: &str = "com.amazonaws.ecs.cluster";

/// CPU time of every thread of process `pid` ("self" when `None`), in nanoseconds.
fn schedstat_ns(pid: Option<u32>) -> u64 {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}/task"),
        None => "/proc/self/task".to_string(),
    };
    let Ok(tasks) = std::fs::read_dir(&dir) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The pid of the oldest process named `comm` (dockerd, containerd), if this namespace sees it.
fn pid_of(comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .min()
}

/// A stub control plane: answers every request as the real one answers a usage report.
async fn stub_control_plane() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
                        br#"{"intervalSeconds":20}"#,
                    ))))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(addr)
}

/// One sampling round as the agent runs it: sample, encode, post. Returns the windows sent.
async fn round(
    sampler: &mut Sampler,
    rt: &DockerRuntime,
    tasks: &[RunningTask],
    client: &Client,
) -> anyhow::Result<usize> {
    let report = UsageReport { tasks: sampler.sample(rt, tasks).await };
    let body = serde_json::to_vec(&report)?;
    client.post_json(USAGE_PATH, &[("content-type", "application/json")], body.into()).await?;
    Ok(report.tasks.len())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.tasks == 0 || args.rounds == 0 || args.interval <= 0.0 {
        bail!("--tasks, --rounds and --interval must be positive");
    }
    let root = crate::servers::workspace_root();
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
    // One thread, as the agent's sampling is one task: its CPU time is this thread's (and the
    // stub's, on the same thread).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let rt = DockerRuntime::connect().await.context("connecting to the Docker engine")?;
        let cluster = format!("bench-usage-{}", std::process::id());
        let result = bench(&args, &rt, &cluster).await;
        let removed = clean(&rt, &cluster).await;
        println!("removed {removed} containers labelled {CLUSTER_LABEL}={cluster}");
        result
    })
}

async fn clean(rt: &DockerRuntime, cluster: &str) -> usize {
    let found = rt.list_labelled(&format!("{CLUSTER_LABEL}={cluster}")).await.unwrap_or_default();
    for c in &found {
        let _ = rt.remove(&c.id).await;
    }
    found.len()
}

async fn bench(args: &Args, rt: &DockerRuntime, cluster: &str) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let version = rt.version().await?;
    let version = version.trim_start_matches("DockerVersion: ");
    println!("Wharf usage sampling benchmark: {} containers of {} on Docker {version}", args.tasks, args.image);
    println!("  {cores} cores; other processes share this machine.");
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(args.tasks);
    for i in 0..args.tasks {
        let spec = ContainerSpec {
            name: format!("{cluster}-{i}"),
            image: args.image.clone(),
            labels: HashMap::from([(CLUSTER_LABEL.to_string(), cluster.to_string())]),
            memory_bytes: Some(args.memory_mib << 20),
            cpu_shares: Some(2),
            network_mode: "bridge".into(),
            ..Default::default()
        };
        let id = rt.create(&spec).await.with_context(|| format!("creating container {i}"))?;
        rt.start(&id).await.with_context(|| format!("starting container {i}"))?;
        tasks.push(RunningTask {
            task_arn: format!("arn:aws:ecs:us-east-1:123456789012:task/{cluster}/{i:032x}"),
            containers: vec![id],
        });
    }
    println!("  {} containers running after {:.1} s", args.tasks, began.elapsed().as_secs_f64());

    let addr = stub_control_plane().await?;
    let client = Client::new(&format!("http://{addr}"), "us-east-1", "AKIAWHARFBENCH000001", "bench-secret");
    let mut sampler = Sampler::default();
    // Warm-up: each container's cgroup is found (one inspect each) and its baseline taken.
    let warm = Instant::now();
    round(&mut sampler, rt, &tasks, &client).await?;
    let warm_ms = warm.elapsed().as_secs_f64() * 1e3;
    let via_cgroup = tasks.iter().filter(|t| rt.reads_cgroup(&t.containers[0])).count();
    println!(
        "  warm-up round (finds each cgroup): {warm_ms:.1} ms; {via_cgroup} of {} containers read from their cgroup",
        args.tasks
    );
    if via_cgroup < args.tasks {
        println!("  (the rest through the engine's stats API: this process cannot see their cgroups)");
    }

    // Rounds as the agent runs them, 10 ms apart (the windows must not be empty).
    let (mut cpu_ns, mut wall, mut windows) = (0u64, Duration::ZERO, 0usize);
    for _ in 0..args.rounds {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (c0, t0) = (schedstat_ns(None), Instant::now());
        windows += round(&mut sampler, rt, &tasks, &client).await?;
        wall += t0.elapsed();
        cpu_ns += schedstat_ns(None) - c0;
    }
    if windows != args.rounds * args.tasks {
        bail!("expected {} task windows, got {windows}", args.rounds * args.tasks);
    }
    let per_round_ms = cpu_ns as f64 / args.rounds as f64 / 1e6;
    let share = |ms: f64, every: f64| ms / (every * 1e3) * 100.0;

    // The same counters through the engine, as a fallback round would get them.
    let (dockerd, containerd) = (pid_of("dockerd"), pid_of("containerd"));
    let (mut e_cpu, mut e_dockerd, mut e_containerd, mut e_wall) = (0u64, 0u64, 0u64, Duration::ZERO);
    for _ in 0..args.engine_rounds {
        let (c0, d0, k0, t0) = (schedstat_ns(None), schedstat_ns(dockerd), schedstat_ns(containerd), Instant::now());
        // As many at once as the sampler asks the engine.
        let answered = futures_util::stream::iter(&tasks)
            .map(|t| rt.engine_usage(&t.containers[0]))
            .buffer_unordered(wharf_agent::usage::CONCURRENT_SAMPLES)
            .filter(|u| std::future::ready(matches!(u, Ok(Some(_)))))
            .count()
            .await;
        if answered != tasks.len() {
            bail!("the engine answered stats for {answered} of {} running containers", tasks.len());
        }
        e_wall += t0.elapsed();
        e_cpu += schedstat_ns(None) - c0;
        e_dockerd += schedstat_ns(dockerd).saturating_sub(d0);
        e_containerd += schedstat_ns(containerd).saturating_sub(k0);
    }
    let n = args.engine_rounds.max(1) as f64;

    println!();
    println!("Results ({} tasks, one container each; CPU time of every thread, from schedstat):", args.tasks);
    println!(
        "| how a round reads the counters | rounds | agent CPU ms/round | wall ms/round | share of one core every {:.0} s |",
        args.interval
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| cgroup files (the agent's path): sample, encode, signed POST | {} | {per_round_ms:.2} | {:.2} | {:.3} % |",
        args.rounds,
        wall.as_secs_f64() * 1e3 / args.rounds as f64,
        share(per_round_ms, args.interval)
    );
    if args.engine_rounds > 0 {
        let (agent_ms, dockerd_ms, containerd_ms) =
            (e_cpu as f64 / n / 1e6, e_dockerd as f64 / n / 1e6, e_containerd as f64 / n / 1e6);
        println!(
            "| engine stats API (the fallback), counters only | {} | {agent_ms:.2} (+ dockerd {dockerd_ms:.1}, containerd {containerd_ms:.1}) | {:.1} | {:.3} % (+ {:.3} % in the engine) |",
            args.engine_rounds,
            e_wall.as_secs_f64() * 1e3 / n,
            share(agent_ms, args.interval),
            share(dockerd_ms + containerd_ms, args.interval)
        );
    }
    println!(
        "At the test clock (--metrics-period 3: a round every second) the cgroup path costs {:.2} % of one core.",
        share(per_round_ms, 1.0)
    );
    let verdict = if share(per_round_ms, args.interval) <= 1.0 { "PASS" } else { "FAIL" };
    println!("Target: at most 1 % of one core for {} tasks at {:.0} s: {verdict}", args.tasks, args.interval);
    Ok(())
}
