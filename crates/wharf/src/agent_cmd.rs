//! `wharf agent` and the agent embedded in `wharf up`: configuration from flags, environment
//! and an `ecs.config`-style file (`ECS_CLUSTER=…`), as the ECS agent reads it.

use anyhow::Context;
use clap::Args;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use wharf_agent::{AgentConfig, PullBehavior};

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The cluster to join (ECS_CLUSTER); `default` is created if missing.
    #[arg(long, env = "ECS_CLUSTER")]
    pub cluster: Option<String>,
    /// The control plane's endpoint.
    #[arg(long, env = "WHARF_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Region to sign requests for.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// An ecs.config-style file: ECS_CLUSTER, ECS_IMAGE_PULL_BEHAVIOR, ECS_RESERVED_MEMORY,
    /// ECS_RESERVED_PORTS, ECS_CONTAINER_STOP_TIMEOUT, ECS_INSTANCE_ATTRIBUTES,
    /// ECS_DISABLE_METRICS.
    #[arg(long, env = "WHARF_AGENT_CONFIG", default_value = "/etc/ecs/ecs.config")]
    pub config: PathBuf,
    /// Where the agent keeps its state (its container instance ARN).
    #[arg(long, env = "WHARF_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Host address that published container ports bind to.
    #[arg(long, env = "WHARF_PORT_BIND_IP", default_value = "0.0.0.0")]
    pub port_bind_ip: String,
    /// The address the load balancer reaches this host's task ports on (the container
    /// instance's private IP); defaults to --port-bind-ip, or 127.0.0.1 when that is 0.0.0.0.
    #[arg(long, env = "WHARF_AGENT_ADDRESS")]
    pub advertise_address: Option<String>,
    /// PEM bundle of the CAs that sign an `https://` endpoint's certificate (as the AWS CLI's
    /// AWS_CA_BUNDLE); without it the system's roots are used.
    #[arg(long, env = "AWS_CA_BUNDLE")]
    pub ca_bundle: Option<PathBuf>,
    /// Seconds between two samples of the running tasks' CPU and memory (reported to the
    /// control plane for the `AWS/ECS` metrics). Default: what the control plane answers the
    /// first report, min(20, its --metrics-period / 3).
    #[arg(long, env = "WHARF_STATS_INTERVAL", value_parser = parse_stats_interval)]
    pub stats_interval: Option<f64>,
    /// Trust exactly the certificate (chain) in this PEM file: `wharf up`'s own agent pins the
    /// one its server serves. Not a flag.
    #[arg(skip)]
    pub pin_certificate: Option<PathBuf>,
}

/// Reads `KEY=value` lines; a missing file is an empty config.
pub fn read_ecs_config(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect())
}

/// A stats interval: 0.1–60 seconds.
fn parse_stats_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if (0.1..=60.0).contains(&v) { Ok(v) } else { Err(format!("{v} is not between 0.1 and 60 seconds")) }
}

fn parse_seconds(v: &str) -> anyhow::Result<i64> {
    let v = v.trim();
    let (n, unit) = v.find(|c: char| !c.is_ascii_digit()).map_or((v, ""), |i| v.split_at(i));
    let n: i64 = n.parse().with_context(|| format!("'{v}' is not a duration"))?;
    Ok(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "ms" => (n / 1000).max(1),
        other => anyhow::bail!("unknown duration unit '{other}' in '{v}'"),
    })
}

/// The agent configuration from defaults, the ecs.config file, then flags/environment.
pub fn agent_config(
    args: &AgentArgs,
    endpoint: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    default_state_dir: PathBuf,
) -> anyhow::Result<AgentConfig> {
    let endpoint_is_https = endpoint.starts_with("https://");
    let file = read_ecs_config(&args.config)?;
    let cluster = args.cluster.clone().or_else(|| file.get("ECS_CLUSTER").cloned()).unwrap_or_else(|| "default".into());
    let pull_behavior = match file.get("ECS_IMAGE_PULL_BEHAVIOR") {
        Some(v) => v.parse::<PullBehavior>().map_err(anyhow::Error::msg)?,
        None => PullBehavior::Default,
    };
    let reserved_memory_mib = match file.get("ECS_RESERVED_MEMORY") {
        Some(v) => v.parse().with_context(|| format!("ECS_RESERVED_MEMORY '{v}' is not a number of MiB"))?,
        None => 256,
    };
    let reserved_ports = match file.get("ECS_RESERVED_PORTS") {
        Some(v) => {
            serde_json::from_str(v).with_context(|| format!("ECS_RESERVED_PORTS '{v}' is not a JSON list of ports"))?
        }
        None => AgentConfig::DEFAULT_RESERVED_PORTS.to_vec(),
    };
    let container_stop_timeout_secs = match file.get("ECS_CONTAINER_STOP_TIMEOUT") {
        Some(v) => parse_seconds(v)?,
        None => 30,
    };
    let attributes: Vec<(String, String)> = match file.get("ECS_INSTANCE_ATTRIBUTES") {
        Some(v) => {
            let map: HashMap<String, String> = serde_json::from_str(v)
                .with_context(|| format!("ECS_INSTANCE_ATTRIBUTES '{v}' is not a JSON object of strings"))?;
            map.into_iter().collect()
        }
        None => vec![],
    };
    let disable_metrics = match file.get("ECS_DISABLE_METRICS").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => anyhow::bail!("ECS_DISABLE_METRICS '{other}' is not true or false"),
    };
    Ok(AgentConfig {
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        cluster,
        state_dir: args.data_dir.clone().unwrap_or(default_state_dir),
        port_bind_ip: args.port_bind_ip.clone(),
        advertise_address: args.advertise_address.clone(),
        reserved_memory_mib,
        reserved_ports,
        pull_behavior,
        container_stop_timeout_secs,
        attributes,
        dynamic_ports: AgentConfig::kernel_ephemeral_range(),
        fargate: false,
        stats_interval: args.stats_interval.map(std::time::Duration::from_secs_f64),
        disable_metrics,
        tls: if endpoint_is_https {
            use wharf_agent::tls::{Trust, client_config, pinned_chain};
            let trust = match (&args.pin_certificate, &args.ca_bundle) {
                (Some(pem), _) => Trust::Pinned(pinned_chain(pem).map_err(anyhow::Error::msg)?),
                (None, Some(bundle)) => Trust::Bundle(bundle.clone()),
                (None, None) => Trust::System,
            };
            Some(client_config(&trust).map_err(anyhow::Error::msg)?)
        } else {
            None
        },
    })
}

/// `wharf agent`: credentials like any AWS client (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let endpoint = args
        .endpoint
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .context("no endpoint: pass --endpoint or set WHARF_ENDPOINT / AWS_ENDPOINT_URL")?;
    let region =
        args.region.clone().or_else(|| std::env::var("AWS_DEFAULT_REGION").ok()).unwrap_or_else(|| "us-east-1".into());
    let key = std::env::var("AWS_ACCESS_KEY_ID").context("AWS_ACCESS_KEY_ID is not set")?;
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").context("AWS_SECRET_ACCESS_KEY is not set")?;
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    let config = agent_config(&args, endpoint, region, key, secret, home.join(".wharf-agent"))?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(async move {
        let mut waiting = rx.clone();
        match wharf_agent::docker::DockerRuntime::connect_retrying(&mut waiting).await {
            Some(runtime) => wharf_agent::run(config, runtime, rx).await,
            None => Ok(()),
        }
    });
    crate::server::wait_for_signal().await?;
    let _ = tx.send(true);
    agent.await.context("agent task")?.context("agent")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ecs_config_files() {
        let dir = std::env::temp_dir().join(format!("wharf-ecs-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ecs.config");
        std::fs::write(
            &path,
            "# comment\nECS_CLUSTER=prod\nECS_RESERVED_PORTS=[22, 8080]\nECS_CONTAINER_STOP_TIMEOUT=2m\nECS_IMAGE_PULL_BEHAVIOR=prefer-cached\nECS_INSTANCE_ATTRIBUTES={\"stack\": \"blue\"}\nECS_DISABLE_METRICS=true\n",
        )
        .unwrap();
        let args = AgentArgs {
            cluster: None,
            endpoint: None,
            region: None,
            config: path,
            data_dir: None,
            port_bind_ip: "0.0.0.0".into(),
            advertise_address: None,
            ca_bundle: None,
            stats_interval: None,
            pin_certificate: None,
        };
        let c =
            agent_config(&args, "http://x".into(), "us-east-1".into(), "k".into(), "s".into(), dir.clone()).unwrap();
        assert_eq!(c.cluster, "prod");
        assert_eq!(c.reserved_ports, vec![22, 8080]);
        assert_eq!(c.container_stop_timeout_secs, 120);
        assert_eq!(c.pull_behavior, PullBehavior::PreferCached);
        assert_eq!(c.attributes, vec![("stack".to_string(), "blue".to_string())]);
        assert_eq!(c.reachable_address(), "127.0.0.1");
        assert!(c.disable_metrics);
        assert_eq!(c.stats_interval, None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
