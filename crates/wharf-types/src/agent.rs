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
