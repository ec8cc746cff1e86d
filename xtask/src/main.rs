//! Wharf's chores, run with `cargo run --release -p xtask -- <task>`.
//!
//! * `bench-api`: Wharf's ECS API against moto's server (see docs/benchmarks.md).
//! * `bench-agent`: the agent's start overhead against Docker, its memory, awslogs throughput.
//! * `bench-deploy`: a rolling deployment of 4 tasks on real Docker, UpdateService → stable.
//! * `bench-scheduler`: one service of 10,000 tasks on 1,000 agents with a simulated runtime.
//! * `bench-registry`: docker push and pull of a 512 MB image, Wharf against Distribution.
//! * `bench-lb`: the load balancer's listener against HAProxy and the backends directly.
//! * `bench-metrics`: CloudWatch PutMetricData/GetMetricData against moto; alarm evaluation.
//! * `bench-rollout`: the listener through rolling deployments under load, against its own
//!   steady state and HAProxy's.
//! * `bench-usage`: the agent's usage sampling of 50 running containers, CPU per round.

mod bench_agent;
mod bench_api;
mod bench_deploy;
mod bench_lb;
mod bench_metrics;
mod bench_registry;
mod bench_rollout;
mod bench_scheduler;
mod bench_usage;
mod client;
mod servers;
mod sim_runtime;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "xtask", about = "Wharf's chores: benchmarks against peers")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

// The variants are the command names users type (`bench-api`, …).
#[allow(clippy::enum_variant_names)]
#[derive(Subcommand, Debug)]
enum Task {
    /// Benchmark Wharf's ECS API against moto's server: builds the release `wharf`, starts
    /// both, and drives them with the same SigV4-signed requests.
    BenchApi(bench_api::Args),
    /// Benchmark the agent on the local Docker engine: RunTask→RUNNING against plain Docker,
    /// the agent's memory idle and with 50 tasks, and awslogs delivery of 10,000 lines.
    BenchAgent(bench_agent::Args),
    /// Benchmark scheduling at scale: 1,000 real agents on a simulated runtime in this process,
    /// one service of 10,000 tasks, time until all are placed and until all are RUNNING.
    BenchScheduler(bench_scheduler::Args),
    /// Benchmark the registry: docker push and pull of a 512 MB image of several layers to
    /// Wharf and to Debian's docker-registry (Distribution 2.8), with the servers' memory.
    BenchRegistry(bench_registry::Args),
    /// Benchmark the load balancer: 4 wharf-echo containers behind Wharf's listener and
    /// behind HAProxy, and directly, with the same wrk load.
    BenchLb(bench_lb::Args),
    /// CloudWatch PutMetricData/GetMetricData against moto, and alarm evaluation at scale.
    BenchMetrics(bench_metrics::Args),
    /// Benchmark a rolling deployment on real Docker: `wharf up`, 4 wharf-echo tasks with a
    /// health check, UpdateService (100/200, then 50/100) until the service is stable.
    BenchDeploy(bench_deploy::Args),
    /// Benchmark the load balancer through rolling deployments: `wharf up`, a service behind a
    /// listener, 100 keep-alive clients steady, through HAProxy, and through UpdateServices.
    BenchRollout(bench_rollout::Args),
    /// Benchmark the agent's usage sampling: 50 wharf-echo containers, the agent's sampling
    /// round (cgroup reads, report, signed POST) timed in CPU, against the engine's stats API.
    BenchUsage(bench_usage::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::BenchApi(args) => bench_api::run(args),
        Task::BenchAgent(args) => bench_agent::run(args),
        Task::BenchScheduler(args) => bench_scheduler::run(args),
        Task::BenchRegistry(args) => bench_registry::run(args),
        Task::BenchLb(args) => bench_lb::run(args),
        Task::BenchMetrics(args) => bench_metrics::run(args),
        Task::BenchDeploy(args) => bench_deploy::run(args),
        Task::BenchRollout(args) => bench_rollout::run(args),
        Task::BenchUsage(args) => bench_usage::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
