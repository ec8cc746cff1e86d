//! What the running tasks use: every stats interval the agent reads the CPU and memory
//! counters of each container of its RUNNING tasks (through [`ContainerRuntime::usage`]: the
//! cgroup's files on Docker, the engine's stats API where those cannot be read), turns two
//! consecutive samples into a window per task (CPU time used between them, memory at the
//! second), and sends every window of the round in one signed report (`POST
//! /agent/v1/usage`). The control plane publishes them as `AWS/ECS` metrics; its answer says
//! when to sample next, so agents follow the server's `--metrics-period` unless the agent was
//! given `--stats-interval`.
//!
//! It reads counters only: it must never change a task or a container.

use crate::agent::Agent;
use crate::runtime::{ContainerRuntime, ContainerUsage};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wharf_types::agent::{TaskUsage, USAGE_PATH, UsageAck, UsageReport};

/// How soon an agent that was not told its interval sends its first report (which the
/// control plane answers with the interval to keep).
const FIRST_REPORT: Duration = Duration::from_secs(1);
/// Containers sampled at once. Cgroup reads do not wait, so this matters only when the
/// engine's stats API answers instead: Docker answers a one-shot stats call at its stats
/// collector's next tick (up to a second), so a round of 50 takes two ticks, not fifty.
pub const CONCURRENT_SAMPLES: usize = 32;

/// The running containers of one task: its ARN and its containers' runtime ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningTask {
    pub task_arn: String,
    pub containers: Vec<String>,
}

/// Turns rounds of samples into per-task windows; remembers each container's last sample.
#[derive(Debug, Default)]
pub struct Sampler {
    previous: HashMap<String, (ContainerUsage, Instant)>,
}

impl Sampler {
    /// Samples every container of `tasks` now; returns the window since the previous round of
    /// each task whose containers were all sampled then too (a task's first round only sets
    /// its baseline, and a container whose CPU counter went backwards restarted: its task
    /// starts again from this round).
    pub async fn sample<R: ContainerRuntime>(&mut self, runtime: &R, tasks: &[RunningTask]) -> Vec<TaskUsage> {
        let ids: Vec<String> = tasks.iter().flat_map(|t| t.containers.iter().cloned()).collect();
        let samples: HashMap<String, (ContainerUsage, Instant)> = futures_util::stream::iter(ids)
            .map(|id| async move {
                let usage = runtime.usage(&id).await.ok().flatten();
                usage.map(|u| (id, (u, Instant::now())))
            })
            .buffered(CONCURRENT_SAMPLES)
            .filter_map(std::future::ready)
            .collect()
            .await;
        let mut out = Vec::new();
        for task in tasks {
            if let Some(window) = window(task, &samples, &self.previous) {
                out.push(window);
            }
        }
        self.previous = samples;
        out
    }
}

/// One task's window between its containers' previous samples and `now`.
fn window(
    task: &RunningTask,
    now: &HashMap<String, (ContainerUsage, Instant)>,
    previous: &HashMap<String, (ContainerUsage, Instant)>,
) -> Option<TaskUsage> {
    if task.containers.is_empty() {
        return None;
    }
    let (mut cpu_nanos, mut memory_bytes, mut window) = (0u64, 0u64, Duration::ZERO);
    for id in &task.containers {
        let (cur, at) = now.get(id)?;
        let (prev, prev_at) = previous.get(id)?;
        cpu_nanos = cpu_nanos.saturating_add(cur.cpu_nanos.checked_sub(prev.cpu_nanos)?);
        memory_bytes = memory_bytes.saturating_add(cur.memory_bytes);
        window = window.max(at.saturating_duration_since(*prev_at));
    }
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    (window_ms > 0).then(|| TaskUsage { task_arn: task.task_arn.clone(), window_ms, cpu_nanos, memory_bytes })
}

/// Samples and reports until `shutdown` flips.
pub(crate) async fn run<R: ContainerRuntime>(agent: Arc<Agent<R>>, mut shutdown: watch::Receiver<bool>) {
    let fixed = agent.config.stats_interval;
    let mut every = fixed.unwrap_or(FIRST_REPORT);
    // Whether the interval is known: given, or answered by the control plane.
    let mut known = fixed.is_some();
    let mut sampler = Sampler::default();
    let mut warned = false;
    loop {
        let began = Instant::now();
        let tasks = agent.running_tasks();
        let report = UsageReport { tasks: sampler.sample(&agent.runtime, &tasks).await };
        // An empty report still asks the control plane for the interval, until it answered.
        if !report.tasks.is_empty() || !known {
            match post(&agent, &report).await {
                Ok(ack) => {
                    warned = false;
                    if fixed.is_none() && ack.interval_seconds.is_finite() {
                        every = Duration::from_secs_f64(ack.interval_seconds.clamp(0.1, 60.0));
                        known = true;
                    }
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "usage report failed; its samples are dropped");
                        warned = true;
                    }
                    // Not answered yet: ask again at ECS's interval, not every second.
                    if !known {
                        every = wharf_types::agent::MAX_SAMPLING_INTERVAL;
                    }
                }
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(every.saturating_sub(began.elapsed())) => {}
        }
    }
}

async fn post<R: ContainerRuntime>(agent: &Agent<R>, report: &UsageReport) -> Result<UsageAck, String> {
    let body = serde_json::to_vec(report).map_err(|e| e.to_string())?;
    let answer = agent
        .client
        .post_json(USAGE_PATH, &[("content-type", "application/json")], body.into())
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_value(answer).map_err(|e| format!("unexpected answer to a usage report: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn task(arn: &str, containers: &[&str]) -> RunningTask {
        RunningTask { task_arn: arn.into(), containers: containers.iter().map(|c| c.to_string()).collect() }
    }

    fn usage(cpu_nanos: u64, memory_bytes: u64) -> ContainerUsage {
        ContainerUsage { cpu_nanos, memory_bytes }
    }

    #[test]
    fn a_window_sums_the_containers_of_its_task() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1000);
        let previous: HashMap<String, _> =
            [("a".to_string(), (usage(1_000, 10), t0)), ("b".to_string(), (usage(5_000, 20), t0))].into();
        let now: HashMap<String, _> =
            [("a".to_string(), (usage(251_000_000, 30), t1)), ("b".to_string(), (usage(5_000, 40), t1))].into();
        let w = window(&task("t", &["a", "b"]), &now, &previous).unwrap();
        assert_eq!(w, TaskUsage { task_arn: "t".into(), window_ms: 1000, cpu_nanos: 250_999_000, memory_bytes: 70 });
        // A container without a previous sample (just started): no window yet.
        assert_eq!(window(&task("t", &["a", "c"]), &now, &previous), None);
        // A counter that went backwards (the container restarted): no window this round.
        let restarted: HashMap<String, _> =
            [("a".to_string(), (usage(10, 30), t1)), ("b".to_string(), (usage(6_000, 40), t1))].into();
        assert_eq!(window(&task("t", &["a", "b"]), &restarted, &previous), None);
    }
}
