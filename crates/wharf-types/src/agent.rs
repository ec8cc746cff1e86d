//! The private agent protocol's wire types: what the control plane streams to an agent (the
//! tasks placed on its instance, with their task definitions) and the health reports an agent
//! sends back. State changes themselves use ECS's public `SubmitTaskStateChange`.

use crate::ecs::{HealthStatus, Task, TaskDefinition};
use serde::{Deserialize, Serialize};

/// The path of the assignment stream (GET, SigV4-signed for service `ecs`), with query
/// parameters `cluster` and `containerInstance` (ARN).
pub const ASSIGNMENTS_PATH: &str = "/agent/v1/assignments";
/// The path of task reports (POST, signed, body [`TaskReport`]): what ECS's public state
/// changes cannot carry — container health and an awsvpc task's network.
pub const REPORT_PATH: &str = "/agent/v1/report";

/// One task the agent must converge to its desired status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub task: Task,
    pub task_definition: TaskDefinition,
}

/// One line of the assignment stream (newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum StreamMessage {
    /// The complete set of tasks on the instance that are not yet STOPPED; anything not in
    /// it is not the agent's to run.
    Snapshot { revision: i64, assignments: Vec<Assignment> },
    /// Sent every few seconds so both ends notice a dead connection.
    Heartbeat { at: f64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerHealth {
    pub container_name: String,
    pub health_status: HealthStatus,
}

/// The network namespace an awsvpc task got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskNetwork {
    pub private_ipv4_address: String,
    pub mac_address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskReport {
    pub cluster: String,
    pub task: String,
    #[serde(default)]
    pub containers: Vec<ContainerHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<TaskNetwork>,
}

/// Docker labels the agent puts on every container it creates, so a restarted agent can find
/// and re-adopt them (the ECS agent's names, plus the instance that owns them).
pub mod labels {
    pub const CLUSTER: &str = "com.amazonaws.ecs.cluster";
    pub const TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
    pub const CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
    pub const FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
    pub const VERSION: &str = "com.amazonaws.ecs.task-definition-version";
    pub const INSTANCE: &str = "dev.wharf.container-instance";
    /// The container name ECS gives an awsvpc task's pause container.
    pub const PAUSE_CONTAINER: &str = "~internal~ecs~pause";
}

/// The path of usage reports (POST, signed, body [`UsageReport`], answer [`UsageAck`]): what
/// the running tasks used, which the control plane turns into the `AWS/ECS` metrics.
pub const USAGE_PATH: &str = "/agent/v1/usage";

/// The longest time between two usage samples: ECS's agent samples every 20 s.
pub const MAX_SAMPLING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(20);

/// How often agents sample usage and the control plane publishes load balancer metrics, for
/// a metrics minute (`--metrics-period`) of `minute`: `min(20 s, minute / 3)`, so every
/// minute has at least three samples, as CloudWatch's does at AWS's 60 s.
pub fn sampling_interval(minute: std::time::Duration) -> std::time::Duration {
    (minute / 3).min(MAX_SAMPLING_INTERVAL)
}

/// What one task used over one sampling window, summed over its containers (not the awsvpc
/// pause container, which ECS does not count either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskUsage {
    pub task_arn: String,
    /// The window's length in milliseconds (the time between the two samples).
    pub window_ms: u64,
    /// CPU time the task's containers used in the window, in nanoseconds.
    pub cpu_nanos: u64,
    /// Memory in use at the window's end, in bytes, as Docker counts it (the cgroup's usage
    /// less its inactive file cache).
    pub memory_bytes: u64,
}

/// One sampling round of an agent: every task it runs that is RUNNING and was sampled twice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    #[serde(default)]
    pub tasks: Vec<TaskUsage>,
}

/// The control plane's answer to a usage report: how long until the next one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageAck {
    pub interval_seconds: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sampling_is_a_third_of_the_minute_at_most_twenty_seconds() {
        assert_eq!(sampling_interval(Duration::from_secs(60)), Duration::from_secs(20));
        assert_eq!(sampling_interval(Duration::from_secs(300)), Duration::from_secs(20));
        assert_eq!(sampling_interval(Duration::from_secs(3)), Duration::from_secs(1));
        assert_eq!(
            sampling_interval(Duration::from_secs(1)),
            Duration::from_millis(333) + Duration::from_nanos(333_333)
        );
    }
}
