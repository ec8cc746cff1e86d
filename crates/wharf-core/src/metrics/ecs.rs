//! The `AWS/ECS` metrics, made from what agents report their RUNNING tasks used
//! ([`UsageReport`]), as ECS documents them:
//!
//! - `CPUUtilization` and `MemoryUtilization` of a service (`ClusterName`, `ServiceName`):
//!   each task's usage × 100 / its reservation, one datapoint per task per sample, so
//!   `Minimum` and `Maximum` are the least and most loaded task's and `Average` is ECS's
//!   formula (total used × 100 / (reserved per task × tasks)) when the tasks share a task
//!   definition. A task's CPU reservation is its task-level `cpu`, else the sum of its
//!   containers' `cpu` (1024 units a vCPU); its memory reservation its task-level `memory`,
//!   else each container's `memoryReservation`, else its `memory` — what the task's own `cpu`
//!   and `memory` fields hold ([`crate::tasks`] computes them at launch, with overrides). A
//!   task with no CPU reservation gets no CPU datapoint: ECS documents no denominator for it.
//! - `CPUUtilization`, `MemoryUtilization`, `CPUReservation`, `MemoryReservation` of a cluster
//!   (`ClusterName`): what the EC2 tasks on a container instance use (or reserve) × 100 /
//!   what the instance registered, one datapoint per reporting instance per sample (ECS
//!   publishes cluster metrics for tasks on EC2 instances only, and only for ACTIVE or
//!   DRAINING ones).
//!
//! Everything is `Percent`, stamped with the time the report arrived (so an agent's clock
//! never places a datapoint). It only writes the metric store; it must never change a task.

use super::{Datum, MetricKey, MetricStore, StatSet};
use crate::Scoped;
use crate::keys::Keys;
use std::collections::BTreeMap;
use wharf_types::agent::{TaskUsage, UsageReport};
use wharf_types::ecs::{ContainerInstance, LaunchType, ResourceAmount, Task, TaskStatus};
use wharf_types::{Arn, Result};

pub const NAMESPACE: &str = "AWS/ECS";
pub const PERCENT: &str = "Percent";
/// CPU units in one vCPU (a core's worth of CPU time per second).
pub const UNITS_PER_VCPU: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// The CPU units a task used on average over its window: CPU time / wall time × 1024.
pub fn cpu_units_used(u: &TaskUsage) -> f64 {
    if u.window_ms == 0 {
        return 0.0;
    }
    u.cpu_nanos as f64 / (u.window_ms as f64 * 1e6) * UNITS_PER_VCPU
}

/// The MiB of memory a task used at its window's end.
pub fn memory_mib_used(u: &TaskUsage) -> f64 {
    u.memory_bytes as f64 / MIB
}

/// `used` × 100 / `reserved`, or `None` when nothing is reserved.
pub fn utilization(used: f64, reserved: f64) -> Option<f64> {
    (reserved > 0.0).then(|| used * 100.0 / reserved)
}

/// A task's reservation: (CPU units, MiB of memory).
pub fn reservation(task: &Task) -> (f64, f64) {
    let number = |v: &Option<String>| v.as_deref().and_then(|s| s.trim().parse::<f64>().ok()).unwrap_or(0.0);
    (number(&task.cpu), number(&task.memory))
}

/// One `Percent` datum of `name` with `dims`.
fn percent(name: &str, dims: &[(&str, &str)], value: f64, at: i64) -> Datum {
    let dims = dims.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    Datum {
        key: MetricKey::new(NAMESPACE, name, dims),
        timestamp: at,
        unit: PERCENT.into(),
        stats: StatSet::repeated(value, 1.0),
    }
}

/// A service task's utilization datums.
pub fn service_datums(cluster: &str, service: &str, task: &Task, u: &TaskUsage, at: i64) -> Vec<Datum> {
    let (cpu, memory) = reservation(task);
    let dims = [("ClusterName", cluster), ("ServiceName", service)];
    let mut out = Vec::with_capacity(2);
    if let Some(v) = utilization(cpu_units_used(u), cpu) {
        out.push(percent("CPUUtilization", &dims, v, at));
    }
    if let Some(v) = utilization(memory_mib_used(u), memory) {
        out.push(percent("MemoryUtilization", &dims, v, at));
    }
    out
}

/// What the EC2 tasks of one container instance used and reserved in one report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InstanceLoad {
    pub cpu_units: f64,
    pub memory_mib: f64,
}

/// An integer resource (`CPU`, `MEMORY`) of a container instance's list.
fn resource(list: &[ResourceAmount], name: &str) -> f64 {
    list.iter().find(|r| r.name == name).map_or(0.0, |r| r.integer_value as f64)
}

/// A container instance's cluster datums: utilization of what it registered, and reservation.
pub fn cluster_datums(cluster: &str, instance: &ContainerInstance, load: InstanceLoad, at: i64) -> Vec<Datum> {
    let (cpu, memory) =
        (resource(&instance.registered_resources, "CPU"), resource(&instance.registered_resources, "MEMORY"));
    let reserved_cpu = cpu - resource(&instance.remaining_resources, "CPU");
    let reserved_memory = memory - resource(&instance.remaining_resources, "MEMORY");
    let dims = [("ClusterName", cluster)];
    [
        ("CPUUtilization", utilization(load.cpu_units, cpu)),
        ("MemoryUtilization", utilization(load.memory_mib, memory)),
        ("CPUReservation", utilization(reserved_cpu.max(0.0), cpu)),
        ("MemoryReservation", utilization(reserved_memory.max(0.0), memory)),
    ]
    .into_iter()
    .filter_map(|(name, v)| Some(percent(name, &dims, v?, at)))
    .collect()
}

/// Turns one agent's report into datums and stores them; returns how many. Samples of tasks
/// that are not (or no longer) RUNNING in this scope are ignored: an agent's view may lag.
pub async fn record(s: &Scoped, metrics: &MetricStore, report: &UsageReport, at: i64) -> Result<usize> {
    let keys = Keys::new(s);
    let mut data = Vec::new();
    let mut instances: BTreeMap<(String, String), InstanceLoad> = BTreeMap::new();
    for u in &report.tasks {
        let Ok(arn) = Arn::parse_in(&u.task_arn, &s.scope, "ecs", "taskArn") else { continue };
        let ("task", rest) = arn.resource_parts() else { continue };
        let Some((cluster, id)) = rest.split_once('/') else { continue };
        let Some(task) = s.db.get::<Task>(&keys.task(cluster, id)).await? else { continue };
        let task = task.doc;
        if task.last_status != TaskStatus::Running {
            continue;
        }
        if let Some(service) = task.group.as_deref().and_then(|g| g.strip_prefix("service:")) {
            data.extend(service_datums(cluster, service, &task, u, at));
        }
        if task.launch_type != Some(LaunchType::Fargate)
            && let Some(instance) = &task.container_instance_arn
        {
            let load = instances.entry((cluster.to_string(), instance.clone())).or_default();
            load.cpu_units += cpu_units_used(u);
            load.memory_mib += memory_mib_used(u);
        }
    }
    for ((cluster, instance_arn), load) in instances {
        let Some(id) = instance_arn.rsplit('/').next() else { continue };
        let Some(instance) = s.db.get::<ContainerInstance>(&keys.instance(&cluster, id)).await? else { continue };
        if matches!(instance.doc.status.as_str(), "ACTIVE" | "DRAINING") {
            data.extend(cluster_datums(&cluster, &instance.doc, load, at));
        }
    }
    let n = data.len();
    metrics.put(&s.scope, data).await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn usage(window_ms: u64, cpu_nanos: u64, memory_bytes: u64) -> TaskUsage {
        TaskUsage { task_arn: "t".into(), window_ms, cpu_nanos, memory_bytes }
    }

    fn task(cpu: Option<&str>, memory: Option<&str>) -> Task {
        let mut t: Task = serde_json::from_value(serde_json::json!({
            "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/0123",
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
            "containers": [], "createdAt": 0.0, "desiredStatus": "RUNNING", "lastStatus": "RUNNING", "version": 1,
        }))
        .unwrap();
        t.cpu = cpu.map(str::to_string);
        t.memory = memory.map(str::to_string);
        t
    }

    #[test]
    fn cpu_units_are_cpu_time_over_wall_time_in_1024ths_of_a_core() {
        // One core busy for the whole window: 1024 units.
        assert_eq!(cpu_units_used(&usage(20_000, 20_000_000_000, 0)), 1024.0);
        // A quarter of a core over one second: 256 units.
        assert_eq!(cpu_units_used(&usage(1_000, 250_000_000, 0)), 256.0);
        assert_eq!(cpu_units_used(&usage(0, 5, 0)), 0.0);
        assert_eq!(memory_mib_used(&usage(1, 0, 64 * 1024 * 1024)), 64.0);
    }

    #[test]
    fn utilization_is_used_over_reserved_as_ecs_documents() {
        // ECS's example: 512 units and 1,024 MiB reserved, all 2,048 units of a c4.large and
        // 512 MiB used: 400 % CPU, 50 % memory.
        let t = task(Some("512"), Some("1024"));
        let d = service_datums("c", "web", &t, &usage(1_000, 2_000_000_000, 512 * 1024 * 1024), 7);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].key.name.as_str(), d[0].stats.sum), ("CPUUtilization", 400.0));
        assert_eq!((d[1].key.name.as_str(), d[1].stats.sum), ("MemoryUtilization", 50.0));
        for x in &d {
            assert_eq!(
                (x.key.namespace.as_str(), x.unit.as_str(), x.timestamp, x.stats.count),
                ("AWS/ECS", "Percent", 7, 1.0)
            );
            assert_eq!(
                x.key.dimensions(),
                &[("ClusterName".to_string(), "c".to_string()), ("ServiceName".to_string(), "web".to_string())]
            );
        }
        // No CPU reserved (cpu 0 everywhere): memory only.
        let d = service_datums("c", "web", &task(Some("0"), Some("64")), &usage(1_000, 1, 32 * 1024 * 1024), 7);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].key.name.as_str(), d[0].stats.max), ("MemoryUtilization", 50.0));
        assert_eq!(utilization(1.0, 0.0), None);
    }

    #[test]
    fn cluster_datums_divide_by_what_the_instance_registered() {
        let amount = |name: &str, v: i64| ResourceAmount {
            name: name.into(),
            kind: "INTEGER".into(),
            double_value: 0.0,
            long_value: 0,
            integer_value: v,
            string_set_value: None,
        };
        let mut i: ContainerInstance = serde_json::from_value(serde_json::json!({
            "containerInstanceArn": "arn:aws:ecs:us-east-1:123456789012:container-instance/c/1",
            "version": 1, "status": "ACTIVE", "agentConnected": true, "runningTasksCount": 1,
            "pendingTasksCount": 0, "registeredAt": 0.0,
        }))
        .unwrap();
        i.registered_resources = vec![amount("CPU", 2048), amount("MEMORY", 4096)];
        i.remaining_resources = vec![amount("CPU", 1536), amount("MEMORY", 3072)];
        let d = cluster_datums("c", &i, InstanceLoad { cpu_units: 1024.0, memory_mib: 1024.0 }, 1);
        let by_name: Vec<(&str, f64)> = d.iter().map(|x| (x.key.name.as_str(), x.stats.sum)).collect();
        assert_eq!(
            by_name,
            vec![
                ("CPUUtilization", 50.0),
                ("MemoryUtilization", 25.0),
                ("CPUReservation", 25.0),
                ("MemoryReservation", 25.0)
            ]
        );
        assert_eq!(d[0].key.dimensions(), &[("ClusterName".to_string(), "c".to_string())]);
    }

    #[tokio::test]
    async fn reports_become_service_and_cluster_datums() {
        use crate::db::{Db, cas_put};
        use crate::metrics::Window;
        let scope = wharf_types::Scope::new("123456789012", "us-east-1");
        let s = Scoped::new(scope.clone(), Db::new(wharf_store::SqliteStore::open_in_memory().unwrap()));
        let keys = Keys::new(&s);
        let instance_arn = "arn:aws:ecs:us-east-1:123456789012:container-instance/c/i1";
        let instance: ContainerInstance = serde_json::from_value(serde_json::json!({
            "containerInstanceArn": instance_arn, "version": 1, "status": "ACTIVE", "agentConnected": true,
            "runningTasksCount": 2, "pendingTasksCount": 0, "registeredAt": 0.0,
            "registeredResources": [{"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}],
            "remainingResources": [{"name": "CPU", "type": "INTEGER", "integerValue": 1536},
                                   {"name": "MEMORY", "type": "INTEGER", "integerValue": 512}],
        }))
        .unwrap();
        s.db.commit(cas_put(&keys.instance("c", "i1"), 0, &instance).unwrap()).await.unwrap();
        let mut arns = vec![];
        for (id, group, status) in [
            ("a", "service:web", TaskStatus::Running),
            ("b", "service:web", TaskStatus::Running),
            ("z", "service:web", TaskStatus::Stopped),
        ] {
            let mut t = task(Some("256"), Some("256"));
            t.task_arn = format!("arn:aws:ecs:us-east-1:123456789012:task/c/{id}");
            t.group = Some(group.into());
            t.last_status = status;
            t.launch_type = Some(LaunchType::Ec2);
            t.container_instance_arn = Some(instance_arn.into());
            s.db.commit(cas_put(&keys.task("c", id), 0, &t).unwrap()).await.unwrap();
            arns.push(t.task_arn);
        }
        let sample = |arn: &str, cpu_nanos: u64| TaskUsage {
            task_arn: arn.into(),
            window_ms: 1_000,
            cpu_nanos,
            memory_bytes: 128 * 1024 * 1024,
        };
        let report = UsageReport {
            tasks: vec![
                sample(&arns[0], 250_000_000),
                sample(&arns[1], 750_000_000),
                // Stopped, in another account, or not a task: ignored.
                sample(&arns[2], 1),
                sample("arn:aws:ecs:us-east-1:999999999999:task/c/a", 1),
                sample("nonsense", 1),
            ],
        };
        let metrics = MetricStore::open_in_memory().unwrap();
        let at = 1_800_000_000_000;
        // Two tasks × 2 service metrics, and one instance × 4 cluster metrics.
        assert_eq!(record(&s, &metrics, &report, at).await.unwrap(), 8);
        let w = Window { start: at - 60_000, end: at + 60_000, period: 120_000, unit: None };
        let series = |name: &str, dims: Vec<(&str, &str)>| {
            let key = MetricKey::new(NAMESPACE, name, dims.into_iter().map(|(n, v)| (n.into(), v.into())).collect());
            let metrics = metrics.clone();
            let (scope, w) = (scope.clone(), w.clone());
            async move { metrics.series(&scope, &key, &w).await.unwrap() }
        };
        let cpu = series("CPUUtilization", vec![("ClusterName", "c"), ("ServiceName", "web")]).await;
        assert_eq!(cpu.len(), 1);
        assert_eq!(cpu[0].stats, StatSet { count: 2.0, sum: 400.0, min: 100.0, max: 300.0 });
        assert_eq!(cpu[0].unit, "Percent");
        let memory = series("MemoryUtilization", vec![("ClusterName", "c"), ("ServiceName", "web")]).await;
        assert_eq!(memory[0].stats, StatSet { count: 2.0, sum: 100.0, min: 50.0, max: 50.0 });
        // The instance: 1024 of 2048 units used, 256 of 1024 MiB; 512 units and 512 MiB reserved.
        let cluster = |name: &'static str| series(name, vec![("ClusterName", "c")]);
        assert_eq!(cluster("CPUUtilization").await[0].stats.sum, 50.0);
        assert_eq!(cluster("MemoryUtilization").await[0].stats.sum, 25.0);
        assert_eq!(cluster("CPUReservation").await[0].stats.sum, 25.0);
        assert_eq!(cluster("MemoryReservation").await[0].stats.sum, 50.0);
    }
}
