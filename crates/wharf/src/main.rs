//! `wharf`: a self-hosted Amazon ECS in one binary.
//!
//! This file is the CLI: it parses flags, wires the parts together and reports what it
//! started. Everything that serves requests lives in `server`; credentials and the AWS CLI
//! profile in `config`.

#![forbid(unsafe_code)]

mod agent_cmd;
mod config;
mod publish;
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
    /// Run the whole system on this machine: the control plane with an embedded store and a
    /// local agent on the Docker engine (the registry and load balancer join as they land).
    Up(UpArgs),
    /// Run the control plane alone.
    Server(ServerArgs),
    /// Run a container-instance agent that joins a cluster and runs its tasks on Docker.
    Agent(agent_cmd::AgentArgs),
    /// Manage the accounts a server accepts besides its own (`<data-dir>/accounts.json`).
    #[command(subcommand)]
    Accounts(AccountsCommand),
}

#[derive(Subcommand, Debug)]
enum AccountsCommand {
    /// Add an account with a new access key; prints the key (the server picks it up when it
    /// next starts).
    Create {
        /// The new account's 12-digit id.
        #[arg(long, value_parser = config::parse_account_id)]
        account_id: String,
        /// The data dir of the server that is to accept it.
        #[arg(long, env = "WHARF_DATA_DIR", default_value_os_t = config::default_data_dir())]
        data_dir: PathBuf,
    },
    /// List the accounts of `<data-dir>/accounts.json` (ids and access key ids).
    List {
        #[arg(long, env = "WHARF_DATA_DIR", default_value_os_t = config::default_data_dir())]
        data_dir: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Do not run the local agent (control plane only).
    #[arg(long, env = "WHARF_NO_AGENT")]
    no_agent: bool,
    /// The cluster the local agent joins.
    #[arg(long, env = "ECS_CLUSTER", default_value = "default")]
    cluster: String,
    /// Host address that published container ports bind to.
    #[arg(long, env = "WHARF_PORT_BIND_IP", default_value = "0.0.0.0")]
    port_bind_ip: String,
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
    /// Seconds an agent may be silent before its instance is disconnected and its tasks stopped.
    #[arg(long, env = "WHARF_AGENT_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=3600))]
    agent_timeout_secs: u64,
    /// Seconds in a minute of AWS's deployment timers (bake times, linear and canary step
    /// bakes, lifecycle hook timeouts). 60 is AWS's; tests and demos use 1.
    #[arg(long, env = "WHARF_AWS_MINUTE_SECS", default_value_t = 60.0, value_parser = parse_minute)]
    aws_minute_secs: f64,
    /// Seconds in a CloudWatch metrics minute: the minute alarms and scaling policies count
    /// their periods and cooldowns in, and a third of which (at most 20 s) is how often agents sample their
    /// tasks' CPU and memory and the load balancers' counters are published. 60 is AWS's;
    /// demos and tests use a few seconds.
    #[arg(long, env = "WHARF_METRICS_PERIOD", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=60))]
    metrics_period: u64,
    /// Host address every load balancer listener binds (a listener on port P serves on
    /// `<this address>:P`). Default: the address of `--listen`.
    #[arg(long, env = "WHARF_LB_BIND_IP")]
    lb_bind_ip: Option<std::net::IpAddr>,
    /// Serve `/metrics` (Prometheus) without authentication to every client, not only to
    /// clients on this machine (loopback).
    #[arg(long, env = "WHARF_PUBLIC_METRICS")]
    public_metrics: bool,
    /// Seconds a client has to send a request's headers, and that an idle keep-alive
    /// connection stays open (a slow or silent client is dropped after it).
    #[arg(long, env = "WHARF_HTTP_HEADER_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    http_header_timeout_secs: u64,
    /// Seconds a client has to send a request's body once its headers arrived (image layer
    /// uploads to the registry stream and are not bound by it).
    #[arg(long, env = "WHARF_HTTP_BODY_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    http_body_timeout_secs: u64,
    /// Serve the API port (every API and the registry) over TLS with this PEM certificate
    /// chain (its key beside it, or in `--tls-key`). Agents on other hosts then connect with
    /// `--endpoint https://…` (and `--ca-bundle` for a private CA).
    #[arg(long, env = "WHARF_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, env = "WHARF_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A JSON file of further accounts this server accepts: `[{"accountId": "…",
    /// "accessKeyId": "…", "secretAccessKey": "…"}]` (besides `<data-dir>/accounts.json`,
    /// which `wharf accounts create` writes). Each account sees only its own resources.
    #[arg(long, env = "WHARF_ACCOUNTS_FILE")]
    accounts_file: Option<PathBuf>,
    /// Connections served at once; past it, new connections wait in the listen backlog (and a
    /// warning says so) until one closes.
    #[arg(long, env = "WHARF_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
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
        Command::Up(up) => {
            let agent =
                (!up.no_agent).then_some(server::EmbeddedAgent { cluster: up.cluster, port_bind_ip: up.port_bind_ip });
            runtime.block_on(server::run(up.server, agent))
        }
        Command::Server(args) => runtime.block_on(server::run(args, None)),
        Command::Agent(args) => runtime.block_on(agent_cmd::run(args)),
        Command::Accounts(AccountsCommand::Create { account_id, data_dir }) => {
            let a = config::create_account(&data_dir, &account_id)?;
            println!("account:           {}", a.account_id);
            println!("access key id:     {}", a.access_key_id);
            println!("secret access key: {}", a.secret_access_key);
            println!(
                "(kept in {}; a running server accepts it after a restart)",
                data_dir.join("accounts.json").display()
            );
            Ok(())
        }
        Command::Accounts(AccountsCommand::List { data_dir }) => {
            for a in config::read_accounts(&data_dir.join("accounts.json"))? {
                println!("{}  {}", a.account_id, a.access_key_id);
            }
            Ok(())
        }
    }
}

/// A length of AWS's minute: 0.01–60 seconds.
fn parse_minute(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if (0.01..=60.0).contains(&v) { Ok(v) } else { Err(format!("{v} is not between 0.01 and 60 seconds")) }
}
