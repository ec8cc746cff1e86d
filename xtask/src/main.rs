//! Wharf's chores, run with `cargo run --release -p xtask -- <task>`.
//!
//! * `bench-api`: Wharf's ECS API against moto's server (see docs/benchmarks.md).

mod bench_api;
mod client;
mod servers;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "xtask", about = "Wharf's chores: benchmarks against peers")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Benchmark Wharf's ECS API against moto's server: builds the release `wharf`, starts
    /// both, and drives them with the same SigV4-signed requests.
    BenchApi(bench_api::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::BenchApi(args) => bench_api::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
