//! `xtask bench-metrics`: CloudWatch metrics and alarms (issue 17).
//!
//! * `put`, `get`: `PutMetricData` (20 datums per request over 200 metrics) and `GetMetricData`
//!   (5 metric-stat queries, 1-minute periods over the last 15 minutes, of metrics holding 15
//!   minutes of per-second data) against Wharf and moto's server, same JSON 1.0 requests as
//!   botocore sends them (`x-amzn-query-mode`), one keep-alive connection per worker, at each
//!   concurrency; throughput and the ratio.
//! * `alarms`: the alarm evaluator's activation with 10,000 alarms (on 1,000 metrics with 10
//!   minutes of data each) all due, in process on the same store code `wharf up` runs.

use crate::client::{Conn, Endpoint};
use crate::servers::{self, Server};
use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Measured seconds per (server, operation, concurrency) cell.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrency levels.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 32])]
    concurrency: Vec<usize>,
    /// Alarms for the evaluator part.
    #[arg(long, default_value_t = 10_000)]
    alarms: usize,
    /// moto's server executable [default: .venv/bin/moto_server]
    #[arg(long)]
    moto_bin: Option<PathBuf>,
    /// Benchmark this Wharf binary instead of building one with `cargo build --release -p wharf`.
    #[arg(long)]
    wharf_bin: Option<PathBuf>,
    /// Which parts to run.
    #[arg(long, value_delimiter = ',', default_values_t = ["put".to_string(), "get".to_string(), "alarms".to_string()])]
    parts: Vec<String>,
}

const PREFIX: &str = "GraniteServiceVersion20100801";
const JSON10: &str = "application/x-amz-json-1.0";
const METRICS: usize = 200;
const PER_REQUEST: usize = 20;

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

async fn call(conn: &mut Conn, op: &str, body: &Bytes) -> anyhow::Result<Value> {
    let mut req = conn.endpoint().signed_json("monitoring", JSON10, PREFIX, op, body)?;
    req.headers_mut().insert("x-amzn-query-mode", http::HeaderValue::from_static("true"));
    let reply = conn.send(req).await?;
    if !reply.status.is_success() {
        bail!("{op}: {}", reply.describe());
    }
    Ok(serde_json::from_slice(&reply.body).unwrap_or(Value::Null))
}

/// The `i`-th PutMetricData body: 20 datums for metrics `i*20 .. i*20+20` (mod 200), at `t`.
fn put_body(i: usize, t: f64) -> Bytes {
    let data: Vec<Value> = (0..PER_REQUEST)
        .map(|k| {
            let m = (i * PER_REQUEST + k) % METRICS;
            json!({"MetricName": "Latency", "Dimensions": [{"Name": "Service", "Value": format!("svc-{m}")}],
                   "Timestamp": t, "Value": (k as f64) * 1.5, "Unit": "Milliseconds"})
        })
        .collect();
    Bytes::from(json!({"Namespace": "Bench", "MetricData": data}).to_string())
}

fn get_body(i: usize) -> Bytes {
    let now = now_secs();
    let queries: Vec<Value> = (0..5)
        .map(|k| {
            let m = (i * 5 + k) % METRICS;
            json!({"Id": format!("m{k}"), "MetricStat": {"Metric": {"Namespace": "Bench", "MetricName": "Latency",
                   "Dimensions": [{"Name": "Service", "Value": format!("svc-{m}")}]}, "Period": 60, "Stat": "Average"}})
        })
        .collect();
    Bytes::from(json!({"MetricDataQueries": queries, "StartTime": now - 900.0, "EndTime": now}).to_string())
}

/// Fills both servers with 15 minutes of per-second datapoints for every metric.
async fn populate(endpoint: &Endpoint) -> anyhow::Result<()> {
    let mut conn = Conn::open(endpoint).await?;
    let start = now_secs() - 900.0;
    let requests_per_second = METRICS / PER_REQUEST;
    for s in (0..900).step_by(10) {
        for r in 0..requests_per_second {
            call(&mut conn, "PutMetricData", &put_body(r, start + s as f64)).await?;
        }
    }
    Ok(())
}

struct Cell {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

async fn cell(endpoint: &Endpoint, op: &'static str, concurrency: usize, measure: Duration) -> anyhow::Result<Cell> {
    let mut workers = JoinSet::new();
    let start = Instant::now();
    let deadline = start + measure;
    for w in 0..concurrency {
        let mut conn = Conn::open(endpoint).await?;
        workers.spawn(async move {
            let (mut ok, mut errors, mut first) = (0u64, 0u64, None);
            let mut i = w * 7919;
            while Instant::now() < deadline {
                i += 1;
                let body = if op == "PutMetricData" { put_body(i, now_secs()) } else { get_body(i) };
                match call(&mut conn, op, &body).await {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert(format!("{e:#}"));
                    }
                }
            }
            (ok, errors, first)
        });
    }
    let mut c = Cell { ok: 0, errors: 0, first_error: None, elapsed: Duration::ZERO };
    while let Some(r) = workers.join_next().await {
        let (ok, errors, first) = r?;
        c.ok += ok;
        c.errors += errors;
        if c.first_error.is_none() {
            c.first_error = first;
        }
    }
    c.elapsed = start.elapsed();
    Ok(c)
}

async fn api_parts(args: &Args, parts: &[&'static str]) -> anyhow::Result<()> {
    let root = servers::workspace_root();
    let bin = servers::wharf_bin(args.wharf_bin.as_ref(), &root)?;
    let moto_bin = args.moto_bin.clone().unwrap_or_else(|| root.join(".venv/bin/moto_server"));
    let scratch = tempfile::tempdir()?;
    let (wharf, _) =
        servers::start_wharf(&bin, &scratch.path().join("data"), &scratch.path().join("wharf.log")).await?;
    let moto = servers::start_moto(&moto_bin, &scratch.path().join("moto.log")).await.context("moto")?;
    let servers_: [&Server; 2] = [&wharf, &moto];
    for s in servers_ {
        populate(&s.endpoint).await.with_context(|| format!("populating {}", s.name))?;
    }
    println!("\n| operation | concurrency | Wharf req/s | moto req/s | Wharf / moto | errors (Wharf, moto) |");
    println!("|---|---:|---:|---:|---:|---|");
    let measure = Duration::from_secs_f64(args.seconds);
    for op in parts {
        for &c in &args.concurrency {
            let w = cell(&wharf.endpoint, op, c, measure).await?;
            let m = cell(&moto.endpoint, op, c, measure).await?;
            let (wt, mt) = (w.ok as f64 / w.elapsed.as_secs_f64(), m.ok as f64 / m.elapsed.as_secs_f64());
            println!("| {op} | {c} | {wt:.0} | {mt:.0} | {:.1}× | {}, {} |", wt / mt.max(1e-9), w.errors, m.errors);
            for (name, cell) in [("wharf", &w), ("moto", &m)] {
                if let Some(e) = &cell.first_error {
                    println!("    first {name} error: {e}");
                }
            }
        }
    }
    for s in [wharf, moto] {
        s.stop(Duration::from_secs(10));
    }
    Ok(())
}

/// The evaluator over `n` alarms on `n / 10` metrics, all due: how long one activation takes.
async fn alarms_part(n: usize) -> anyhow::Result<()> {
    use wharf_core::alarms::{self, AlarmDimension, AlarmState, Comparison, MetricAlarm};
    use wharf_core::metrics::{Datum, MetricKey, MetricStore, StatSet};
    use wharf_core::{Db, Scoped};
    use wharf_types::Scope;
    let dir = tempfile::tempdir()?;
    let store = wharf_store::SqliteStore::open(dir.path().join("wharf.db"))?;
    let db = Db::new(store);
    let metrics = MetricStore::open(&dir.path().join("metrics.db"))?;
    let scope = Scope::new("123456789012", "us-east-1");
    let s = Scoped::new(scope.clone(), db.clone());
    let now = (now_secs() * 1000.0) as i64;
    let metric_count = (n / 10).max(1);
    let t = Instant::now();
    for m in 0..metric_count {
        let key = MetricKey::new("Bench", "Latency", vec![("Service".into(), format!("svc-{m}"))]);
        let data = (0..600)
            .map(|s| Datum {
                key: key.clone(),
                timestamp: now - 600_000 + s * 1000,
                unit: "Milliseconds".into(),
                stats: StatSet::repeated((m % 100) as f64, 1.0),
            })
            .collect();
        metrics.put(&scope, data).await?;
    }
    println!("\nalarms: {metric_count} metrics × 600 datapoints written in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    for i in 0..n {
        let m = i % metric_count;
        let alarm = MetricAlarm {
            alarm_name: format!("alarm-{i:05}"),
            alarm_arn: format!("arn:aws:cloudwatch:us-east-1:123456789012:alarm:alarm-{i:05}"),
            alarm_description: None,
            alarm_configuration_updated_timestamp: 0.0,
            actions_enabled: true,
            ok_actions: vec![],
            alarm_actions: vec![],
            insufficient_data_actions: vec![],
            state_value: AlarmState::InsufficientData,
            state_reason: alarms::INITIAL_REASON.into(),
            state_reason_data: None,
            state_updated_timestamp: 0.0,
            state_transitioned_timestamp: 0.0,
            metric_name: "Latency".into(),
            namespace: "Bench".into(),
            statistic: "Average".into(),
            dimensions: vec![AlarmDimension { name: "Service".into(), value: format!("svc-{m}") }],
            period: 60,
            unit: None,
            evaluation_periods: 3,
            datapoints_to_alarm: None,
            threshold: 50.0,
            comparison_operator: Comparison::GreaterThanThreshold,
            treat_missing_data: Default::default(),
            tags: vec![],
        };
        alarms::put(&s, &metrics, alarm, now).await?;
    }
    println!("alarms: {n} alarms written in {:.1} s", t.elapsed().as_secs_f64());
    use wharf_controllers::Reconciler;
    let evaluator = wharf_controllers::AlarmEvaluator::new(db.clone(), metrics.clone(), Duration::from_secs(60));
    let t = Instant::now();
    let first = evaluator.activate().await;
    let first_time = t.elapsed();
    let t = Instant::now();
    let idle = evaluator.activate().await;
    let idle_time = t.elapsed();
    // A fresh evaluator (a restarted server) judges every alarm again; none changes state.
    let again = wharf_controllers::AlarmEvaluator::new(db.clone(), metrics.clone(), Duration::from_secs(60));
    let t = Instant::now();
    let steady = again.activate().await;
    let steady_time = t.elapsed();
    for status in [&first, &idle, &steady] {
        if !status.errors.is_empty() {
            bail!("evaluation failed: {:?}", status.errors);
        }
    }
    println!(
        "alarms: one activation with all {n} due and {} changing state: {:.0} ms; all {n} due, {} changing: {:.0} ms; none due: {:.0} ms",
        first.changed,
        first_time.as_secs_f64() * 1000.0,
        steady.changed,
        steady_time.as_secs_f64() * 1000.0,
        idle_time.as_secs_f64() * 1000.0
    );
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let api: Vec<&'static str> = args
            .parts
            .iter()
            .filter_map(|p| match p.as_str() {
                "put" => Some("PutMetricData"),
                "get" => Some("GetMetricData"),
                _ => None,
            })
            .collect();
        if !api.is_empty() {
            api_parts(&args, &api).await?;
        }
        if args.parts.iter().any(|p| p == "alarms") {
            alarms_part(args.alarms).await?;
        }
        Ok(())
    })
}
