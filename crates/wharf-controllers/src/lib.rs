//! Wharf's controllers, in the style of Omicron's background tasks.
//!
//! Each reconciler is an idempotent `activate()` that reads the world from the store and
//! moves it one step toward the desired state. It is woken by a timer or a store watch, takes
//! nothing from the trigger ("something changed" is all it knows), and never retries inside
//! itself: the next activation is the retry. Each returns a small status for operators.
//! Multi-step workflows keep their step in the store so a restart resumes them.

#![forbid(unsafe_code)]

mod alarms;
mod ecr_lifecycle;
mod instance_liveness;

mod log_retention;
mod planner;
mod scheduled_scaling;
mod service_reaper;
mod service_scheduler;

pub use alarms::AlarmEvaluator;
pub use ecr_lifecycle::EcrLifecycle;
pub use instance_liveness::InstanceLiveness;
pub use log_retention::{LogRetention, MetricRetention};
pub use scheduled_scaling::ScheduledScaling;
pub use service_reaper::ServiceReaper;
pub use service_scheduler::ServiceScheduler;

use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wharf_core::Db;
use wharf_core::logs::LogStore;
use wharf_core::metrics::MetricStore;
use wharf_store::{Store, Watch};

/// What the controllers of a control plane work on.
#[derive(Debug, Clone)]
pub struct Env {
    pub db: Db,
    pub logs: LogStore,
    pub metrics: MetricStore,
    pub registry: wharf_registry::Registry,
    /// How long an agent may be silent before its instance counts as disconnected.
    pub agent_timeout: Duration,
    /// How long a minute of AWS's deployment timers lasts (60 s; shorter for tests).
    pub aws_minute: Duration,
    /// How long a CloudWatch metrics minute lasts (`--metrics-period`: 60 s; shorter for
    /// demos and tests): alarm periods, evaluation intervals and scaling cooldowns are counted in it. Agents
    /// sample usage every `min(20 s, metrics_minute / 3)`.
    pub metrics_minute: Duration,
}

/// The controllers of a running control plane; [`Running::stopped`] waits for all of them
/// once `shutdown` has flipped.
#[derive(Debug, Default)]
pub struct Running {
    tasks: Vec<JoinHandle<()>>,
}

/// Starts every controller of the control plane, each until `shutdown` flips. Adding a
/// controller is one line here.
pub fn start(env: &Env, shutdown: &watch::Receiver<bool>) -> Running {
    let mut running = Running::default();
    running.drive(ServiceReaper::new(env.db.clone()), env, shutdown);
    running.drive(ServiceScheduler::new(env.db.clone()).with_minute(env.aws_minute), env, shutdown);
    running.drive(InstanceLiveness::new(env.db.clone(), env.agent_timeout), env, shutdown);
    running.drive(LogRetention::new(env.logs.clone()), env, shutdown);
    running.drive(MetricRetention::new(env.metrics.clone()), env, shutdown);
    running.drive(AlarmEvaluator::new(env.db.clone(), env.metrics.clone(), env.metrics_minute), env, shutdown);
    running.drive(ScheduledScaling::new(env.db.clone()), env, shutdown);
    running.drive(EcrLifecycle::new(env.db.clone()), env, shutdown);
    // The registry's own upkeep (upload expiry, garbage collection) keeps its own clock.
    let (registry, stop) = (env.registry.clone(), shutdown.clone());
    running.tasks.push(tokio::spawn(async move { registry.maintain(wharf_registry::GC_GRACE, stop).await }));
    running
}

impl Running {
    fn drive<R: Reconciler>(&mut self, r: R, env: &Env, shutdown: &watch::Receiver<bool>) {
        self.tasks.push(tokio::spawn(drive(r, env.db.store().clone(), shutdown.clone())));
    }

    /// Waits until every controller has returned (after `shutdown` flipped).
    pub async fn stopped(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// What one activation did, for logs and (later) the console.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub changed: usize,
    pub errors: Vec<String>,
    /// Activate again after this long even if nothing changes (a timer falls due sooner
    /// than the period: a bake ends, a traffic step is due).
    pub wake_after: Option<Duration>,
}

/// A reconciler: one idempotent step toward the desired state.
pub trait Reconciler: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The store prefixes whose changes should wake this reconciler.
    fn watch_prefixes(&self) -> Vec<String>;
    /// How often to run even when nothing changed.
    fn period(&self) -> Duration;
    /// How long to let changes gather after a wake-up before activating: a burst of writes
    /// (thousands of task reports) then costs a few activations, not one per write.
    fn settle(&self) -> Duration {
        Duration::ZERO
    }
    fn activate(&self) -> impl Future<Output = Status> + Send;
}

/// Drives `r` until `shutdown` flips: on start, on every change under its prefixes, and
/// every period. Changes that arrive during an activation coalesce into one more activation.
pub async fn drive<R: Reconciler, S: Store + Clone>(r: R, store: S, mut shutdown: watch::Receiver<bool>) {
    // One forwarding task per prefix funnels "something changed" into one channel.
    let (wake_tx, mut wake) = tokio::sync::mpsc::channel::<()>(1);
    for prefix in r.watch_prefixes() {
        let (store, wake_tx, mut shutdown) = (store.clone(), wake_tx.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let Ok(mut w): Result<Watch, _> = store.watch(&prefix, store.current_revision()) else { return };
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        event = w.next() => match event {
                            Some(Ok(_)) => { let _ = wake_tx.try_send(()); }
                            // Fell behind: wake once and re-watch from now (activations re-read everything).
                            Some(Err(_)) => { let _ = wake_tx.try_send(()); break; }
                            None => return,
                        }
                    }
                }
            }
        });
    }
    drop(wake_tx);
    let mut ticker = tokio::time::interval(r.period());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let began = std::time::Instant::now();
        let status = r.activate().await;
        if status.changed > 0 || !status.errors.is_empty() {
            let ms = began.elapsed().as_millis() as u64;
            tracing::info!(reconciler = r.name(), changed = status.changed, errors = ?status.errors, ms, "activation");
        }
        let due = status.wake_after.unwrap_or(Duration::MAX).min(r.period());
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => {}
            _ = tokio::time::sleep(due), if due < r.period() => {}
            Some(()) = wake.recv() => {
                let settle = r.settle();
                if !settle.is_zero() {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(settle) => {}
                    }
                    // What arrived meanwhile is covered by the activation about to run.
                    let _ = wake.try_recv();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its activations; the first three ask to be woken again after 10 ms.
    struct Timer(Arc<AtomicUsize>);

    impl Reconciler for Timer {
        fn name(&self) -> &'static str {
            "timer"
        }
        fn watch_prefixes(&self) -> Vec<String> {
            vec![]
        }
        fn period(&self) -> Duration {
            Duration::from_secs(3600)
        }
        async fn activate(&self) -> Status {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Status { wake_after: (n < 3).then(|| Duration::from_millis(10)), ..Default::default() }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_due_before_the_period_wakes_the_reconciler_then() {
        let count = Arc::new(AtomicUsize::new(0));
        let store = wharf_store::SqliteStore::open_in_memory().unwrap();
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(drive(Timer(count.clone()), store, rx));
        // The start and the interval's immediate first tick, then two more on the timers
        // (the fourth asks for none) — and nothing more for the rest of the hour's period.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(count.load(Ordering::SeqCst), 4);
        tx.send(true).unwrap();
        task.await.unwrap();
    }
}
