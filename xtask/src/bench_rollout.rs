//! `bench-rollout`: the load balancer through rolling deployments under load (issue 12's
//! benchmark and soak). Starts the release `wharf up` (control plane, embedded agent, data
//! plane), a target group with health checks every 5 s, a load balancer and an HTTP listener
//! (the ELBv2 API), and a service of `--tasks` wharf-echo tasks behind it (bridge, hostPort
//! 0, 100/200). Then, each with `--clients` keep-alive clients of `wharf-echo --load`:
//!
//! * steady: the listener with no deployment, for `--seconds`;
//! * HAProxy: Debian's haproxy in front of the same tasks, with its own health checks of
//!   the same kind, for `--seconds` (HAProxy cannot follow a deployment: it does the job it
//!   can, the steady one);
//! * rollouts: `--rollouts` UpdateService calls to a new revision, the load running from
//!   just before the call until the deployment is COMPLETED.
//!
//! Prints requests, failures, p50 and p99 for each, and the ratios (target: p99 during a
//! rollout within 1.5× the steady p99). Failed requests are listed with their time. It
//! reports; it does not gate.

use crate::client::{Conn, Endpoint};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Benchmark this Wharf binary instead of building one with `cargo build --release -p wharf`.
    #[arg(long)]
    wharf_bin: Option<PathBuf>,
    #[arg(long, default_value = "wharf-echo:latest")]
    image: String,
    /// The service's desiredCount.
    #[arg(long, default_value_t = 4)]
    tasks: i64,
    /// Keep-alive client connections.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Seconds of each steady run (Wharf, HAProxy).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Rolling deployments under load (the soak: raise it).
    #[arg(long, default_value_t = 3)]
    rollouts: u32,
    /// The deployment strategy: ROLLING, or BLUE_GREEN (bake 0) behind a production listener
    /// rule with an alternate target group.
    #[arg(long, default_value = "ROLLING", value_parser = ["ROLLING", "BLUE_GREEN"])]
    strategy: String,
}

const CLUSTER: &str = "default";
const SERVICE: &str = "web";

/// One load run's summary, as `wharf-echo --load` prints it.
struct Run {
    what: String,
    secs: f64,
    requests: u64,
    failed: u64,
    p50: f64,
    p99: f64,
    failures: Vec<Value>,
}

impl Run {
    fn of(what: String, v: &Value) -> Run {
        Run {
            what,
            secs: v["elapsedMs"].as_f64().unwrap_or(0.0) / 1000.0,
            requests: v["requests"].as_u64().unwrap_or(0),
            failed: v["failed"].as_u64().unwrap_or(0),
            p50: v["p50Ms"].as_f64().unwrap_or(0.0),
            p99: v["p99Ms"].as_f64().unwrap_or(0.0),
            failures: v["failures"].as_array().cloned().unwrap_or_default(),
        }
    }
}

/// `wharf-echo --load` in the background.
struct Load(Child);

impl Load {
    fn start(loader: &Path, url: &str, clients: usize, seconds: Option<u64>) -> anyhow::Result<Load> {
        let mut cmd = Command::new(loader);
        cmd.args(["--load", url, "--connections", &clients.to_string()]);
        if let Some(s) = seconds {
            cmd.args(["--seconds", &s.to_string()]);
        }
        Ok(Load(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().context("starting wharf-echo --load")?))
    }

    /// SIGINT (unless it stops by itself), then its summary.
    fn finish(self, interrupt: bool) -> anyhow::Result<Value> {
        if interrupt {
            Command::new("kill").args(["-INT", &self.0.id().to_string()]).status()?;
        }
        let out = self.0.wait_with_output()?;
        serde_json::from_slice(&out.stdout).context("reading the load's summary")
    }
}

/// An ELBv2 Query call; the response XML.
async fn elb(conn: &mut Conn, endpoint: &Endpoint, params: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut form = String::from("Version=2015-12-01");
    for (k, v) in params {
        form.push_str(&format!("&{k}={}", encode(v)));
    }
    let reply = conn.send(endpoint.signed_query("elasticloadbalancing", &form)?).await?;
    if !reply.status.is_success() {
        bail!("{} failed: {}", params[0].1, reply.describe());
    }
    Ok(String::from_utf8_lossy(&reply.body).into_owned())
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text of the first `<tag>` in `xml`.
fn xml_value(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    Some(xml[start..start + xml[start..].find("</")?].to_string())
}

fn task_definition(image: &str, version: &str) -> Value {
    json!({
        "family": "bench-rollout",
        "networkMode": "bridge",
        "containerDefinitions": [{
            "name": "web", "image": image, "essential": true, "memory": 64,
            "environment": [{"name": "VERSION", "value": version}, {"name": "LOG_REQUESTS", "value": "0"}],
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
        }],
    })
}

/// Until one COMPLETED deployment of `revision` runs `tasks` tasks, each healthy in one of
/// the groups (blue/green alternates between two).
async fn settled(
    conn: &mut Conn,
    endpoint: &Endpoint,
    tgs: &[String],
    revision: u32,
    tasks: i64,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    loop {
        let out = conn.ecs("DescribeServices", json!({"cluster": CLUSTER, "services": [SERVICE]})).await?;
        let s = &out["services"][0];
        let deps = s["deployments"].as_array().cloned().unwrap_or_default();
        let done = deps.len() == 1
            && deps[0]["taskDefinition"].as_str().is_some_and(|t| t.ends_with(&format!(":{revision}")))
            && deps[0]["rolloutState"] == "COMPLETED"
            && s["runningCount"].as_i64() == Some(tasks);
        if done {
            let mut healthy = 0;
            for tg in tgs {
                let health = elb(conn, endpoint, &[("Action", "DescribeTargetHealth"), ("TargetGroupArn", tg)]).await?;
                healthy += health.matches("<State>healthy</State>").count() as i64;
            }
            if healthy == tasks {
                return Ok(());
            }
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("revision {revision} not settled within 300 s: {deps:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = crate::servers::workspace_root();
    let bin = crate::servers::wharf_bin(args.wharf_bin.as_ref(), &root)?;
    // The load generator is the test image's binary (built locally, nothing pulled).
    let built = Command::new(root.join("scripts/build-test-images")).arg(&args.image).status()?;
    if !built.success() {
        bail!("scripts/build-test-images failed");
    }
    let loader = std::fs::read_dir(root.join("target/static"))?
        .filter_map(Result::ok)
        .map(|e| e.path().join("release/wharf-echo"))
        .find(|p| p.exists())
        .context("no target/static/<host>/release/wharf-echo")?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("wharf.log");
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        let (server, _) = crate::servers::start_wharf(&bin, &dir.path().join("data"), &log).await?;
        let mut conn = Conn::open(&server.endpoint).await?;
        let result = measure(&mut conn, &server.endpoint, &args, &loader, dir.path()).await;
        crate::servers::remove_service(&mut conn, CLUSTER, SERVICE).await?;
        if result.is_err() {
            eprintln!("wharf's log ends with:\n{}", server.log_tail());
        }
        server.stop(Duration::from_secs(10));
        result
    })
}

/// A target group with health checks on `/health` every 5 s (2 to rise and fall) and a 5 s
/// deregistration delay; its ARN.
async fn target_group(conn: &mut Conn, endpoint: &Endpoint, name: &str) -> anyhow::Result<String> {
    let created = elb(
        conn,
        endpoint,
        &[
            ("Action", "CreateTargetGroup"),
            ("Name", name),
            ("Protocol", "HTTP"),
            ("Port", "8080"),
            ("VpcId", "vpc-0123456789abcdef0"),
            ("HealthCheckPath", "/health"),
            ("HealthCheckIntervalSeconds", "5"),
            ("HealthCheckTimeoutSeconds", "2"),
            ("HealthyThresholdCount", "2"),
            ("UnhealthyThresholdCount", "2"),
        ],
    )
    .await?;
    let tg = xml_value(&created, "TargetGroupArn").context("TargetGroupArn")?;
    elb(
        conn,
        endpoint,
        &[
            ("Action", "ModifyTargetGroupAttributes"),
            ("TargetGroupArn", &tg),
            ("Attributes.member.1.Key", "deregistration_delay.timeout_seconds"),
            ("Attributes.member.1.Value", "5"),
        ],
    )
    .await?;
    Ok(tg)
}

async fn measure(conn: &mut Conn, endpoint: &Endpoint, args: &Args, loader: &Path, dir: &Path) -> anyhow::Result<()> {
    crate::servers::wait_for_agent(conn, CLUSTER).await?;
    let blue_green = args.strategy == "BLUE_GREEN";
    let mut tgs = vec![target_group(conn, endpoint, "rollout-tg").await?];
    if blue_green {
        tgs.push(target_group(conn, endpoint, "rollout-tg-b").await?);
    }
    let tg = tgs[0].clone();
    let lb = elb(
        conn,
        endpoint,
        &[
            ("Action", "CreateLoadBalancer"),
            ("Name", "rollout-lb"),
            ("Subnets.member.1", "subnet-0a"),
            ("Subnets.member.2", "subnet-0b"),
        ],
    )
    .await?;
    let lb = xml_value(&lb, "LoadBalancerArn").context("LoadBalancerArn")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let listener = elb(
        conn,
        endpoint,
        &[
            ("Action", "CreateListener"),
            ("LoadBalancerArn", &lb),
            ("Protocol", "HTTP"),
            ("Port", &port),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &tg),
        ],
    )
    .await?;
    let url = format!("http://127.0.0.1:{port}/");
    let mut lb_entry = json!({"targetGroupArn": tg, "containerName": "web", "containerPort": 8080});
    let mut deployment = json!({"minimumHealthyPercent": 100, "maximumPercent": 200});
    if blue_green {
        // The listener's default rule is the production rule the deployment re-weights.
        let listener = xml_value(&listener, "ListenerArn").context("ListenerArn")?;
        let rules = elb(conn, endpoint, &[("Action", "DescribeRules"), ("ListenerArn", &listener)]).await?;
        let rule = xml_value(&rules, "RuleArn").context("RuleArn")?;
        lb_entry["advancedConfiguration"] = json!({"alternateTargetGroupArn": tgs[1], "productionListenerRule": rule,
            "roleArn": "arn:aws:iam::000000000000:role/ecsInfrastructureRoleForLoadBalancers"});
        deployment = json!({"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0});
    }

    let td = conn.ecs("RegisterTaskDefinition", task_definition(&args.image, "v1")).await?;
    let arn = td["taskDefinition"]["taskDefinitionArn"].as_str().context("taskDefinitionArn")?.to_string();
    conn.ecs(
        "CreateService",
        json!({"cluster": CLUSTER, "serviceName": SERVICE, "taskDefinition": arn, "desiredCount": args.tasks,
               "deploymentConfiguration": deployment, "loadBalancers": [lb_entry]}),
    )
    .await?;
    settled(conn, endpoint, &tgs, 1, args.tasks).await?;

    let mut runs = vec![];
    let steady = Load::start(loader, &url, args.clients, Some(args.seconds))?.finish(false)?;
    runs.push(Run::of("Wharf, steady".into(), &steady));

    // HAProxy over the same tasks, with its own health checks.
    let tasks = conn.ecs("ListTasks", json!({"cluster": CLUSTER, "serviceName": SERVICE})).await?["taskArns"].clone();
    let described = conn.ecs("DescribeTasks", json!({"cluster": CLUSTER, "tasks": tasks})).await?;
    let ports: Vec<u16> = described["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["containers"][0]["networkBindings"][0]["hostPort"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .collect();
    let (haproxy, haproxy_port) = crate::bench_lb::start_haproxy(dir, &ports, 2, true)?;
    let peer = Load::start(loader, &format!("http://127.0.0.1:{haproxy_port}/"), args.clients, Some(args.seconds))?
        .finish(false)?;
    drop(haproxy);
    runs.push(Run::of("HAProxy, steady (same tasks, own health checks)".into(), &peer));

    let mut durations = vec![];
    for i in 0..args.rollouts {
        let revision = i + 2;
        let load = Load::start(loader, &url, args.clients, None)?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let td = conn.ecs("RegisterTaskDefinition", task_definition(&args.image, &format!("v{revision}"))).await?;
        let arn = td["taskDefinition"]["taskDefinitionArn"].as_str().context("taskDefinitionArn")?.to_string();
        let t0 = Instant::now();
        conn.ecs("UpdateService", json!({"cluster": CLUSTER, "service": SERVICE, "taskDefinition": arn})).await?;
        let settling = settled(conn, endpoint, &tgs, revision, args.tasks).await;
        durations.push(t0.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let summary = load.finish(true)?;
        settling?;
        runs.push(Run::of(format!("Wharf, rollout {} (v{} → v{revision})", i + 1, revision - 1), &summary));
    }

    println!(
        "\n{} wharf-echo tasks (bridge, hostPort 0), health checks every 5 s, {} keep-alive clients, {}",
        args.tasks, args.clients, args.strategy
    );
    println!("| run | seconds | requests | failed | p50 ms | p99 ms | p99 / steady |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let base = runs[0].p99.max(f64::MIN_POSITIVE);
    for r in &runs {
        println!(
            "| {} | {:.1} | {} | {} | {:.2} | {:.2} | {:.2}× |",
            r.what,
            r.secs,
            r.requests,
            r.failed,
            r.p50,
            r.p99,
            r.p99 / base
        );
    }
    let rollouts = &runs[2..];
    let worst = rollouts.iter().map(|r| r.p99).fold(0.0, f64::max);
    let failed: u64 = rollouts.iter().map(|r| r.failed).sum();
    println!(
        "\nrollouts: {failed} failed of {} requests; worst p99 {worst:.2} ms = {:.2}× the steady p99 (target ≤ 1.5×); \
         steady Wharf vs HAProxy: p50 {:.2}×, p99 {:.2}×",
        rollouts.iter().map(|r| r.requests).sum::<u64>(),
        worst / base,
        runs[0].p50 / runs[1].p50.max(f64::MIN_POSITIVE),
        runs[0].p99 / runs[1].p99.max(f64::MIN_POSITIVE),
    );
    // The timers' floor: a new target is healthy after its second passing check, 5 s after
    // the first (made at registration); the old ones then drain for up to the 5 s
    // deregistration delay (the data plane removes an idle one sooner) — for blue/green after
    // the 1 s the rules are given to settle.
    let settle = if blue_green { 1.0 } else { 0.0 };
    let (floor_low, floor_high) = (5.0 + settle, 5.0 + settle + 5.0);
    let shown: Vec<String> = durations.iter().map(|d| format!("{d:.1} s")).collect();
    println!(
        "UpdateService → deployment done (every new task healthy, old ones gone): {} (timers' floor {floor_low:.0}–{floor_high:.0} s, plus starting the containers)",
        shown.join(", ")
    );
    for r in runs.iter().filter(|r| r.failed > 0) {
        println!("failures in {}:", r.what);
        for f in r.failures.iter().take(20) {
            println!("  {f}");
        }
    }
    println!("Benchmarks report; they do not gate: exit status 0 whatever the figures.");
    Ok(())
}
