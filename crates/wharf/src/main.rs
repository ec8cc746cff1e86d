//! `wharf`: a self-hosted Amazon ECS in one binary.
//!
//! This file is the CLI: it parses flags, wires the parts together and reports what it
//! started. Everything that serves requests lives in `server`; credentials and the AWS CLI
//! profile in `config`.

#![forbid(unsafe_code)]

mod config;
mod server;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "wharf", version, about = "A self-hosted Amazon ECS: the ECS API, real containers, one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole system on this machine: control plane (and, as they land, the local
    /// agent, registry and load balancer) with an embedded store.
    Up(ServerArgs),
    /// Run the control plane alone.
    Server(ServerArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address of the one port that serves every API.
    #[arg(long, env = "WHARF_LISTEN", default_value = "127.0.0.1:8600")]
    listen: SocketAddr,
    /// Where state lives (the SQLite store and the generated credentials).
    #[arg(long, env = "WHARF_DATA_DIR", default_value_os_t = config::default_data_dir())]
    data_dir: PathBuf,
    /// Region for unsigned admin use and the written AWS CLI profile; signed requests carry
    /// their own.
    #[arg(long, env = "WHARF_REGION", default_value = "us-east-1")]
    region: String,
    /// The account's 12-digit id.
    #[arg(long, env = "WHARF_ACCOUNT_ID", default_value = "000000000000", value_parser = config::parse_account_id)]
    account_id: String,
    /// Do not write the `wharf` profile into ~/.aws/config and ~/.aws/credentials.
    #[arg(long, env = "WHARF_NO_PROFILE")]
    no_profile: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    match cli.command {
        Command::Up(args) | Command::Server(args) => runtime.block_on(server::run(args)),
    }
}
