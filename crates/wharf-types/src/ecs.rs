//! ECS resource documents as ECS describes them on the wire (botocore `ecs` model).
//!
//! Each document is what Describe* returns; the store keeps exactly this shape. Typed
//! fields are the ones Wharf's logic reads or writes; `extra` carries every other member a
//! client sent, so all of them round-trip. Wharf's own progress (a task's targets, a
//! deployment's load balancers, a service's last completed task definition) is typed too,
//! stored under `wharf…` keys the model does not know, so it never reaches the wire:
//! responses are shaped by the model.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod status;

pub use status::{
    DeploymentController, DeploymentControllerType, DeploymentStatus, DeploymentStrategy, HealthStatus, HookAction,
    HookStatus, LaunchType, LifecycleStage, RolloutState, SchedulingStrategy, ServiceStatus, TaskStatus, UnknownValue,
};

pub type Extra = Map<String, Value>;

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValuePair {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_id: Option<String>,
}

/// An item of a Describe*/RunTask `failures[]` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Failure {
    pub fn missing(arn: impl Into<String>) -> Self {
        Failure::reason(arn, "MISSING")
    }

    /// A failure of the resource `arn` for `reason`, with no detail.
    pub fn reason(arn: impl Into<String>, reason: &str) -> Self {
        Failure { arn: Some(arn.into()), reason: reason.into(), detail: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub cluster_arn: String,
    pub cluster_name: String,
    pub status: String,
    #[serde(default)]
    pub registered_container_instances_count: i64,
    #[serde(default)]
    pub running_tasks_count: i64,
    #[serde(default)]
    pub pending_tasks_count: i64,
    #[serde(default)]
    pub active_services_count: i64,
    #[serde(default)]
    pub statistics: Vec<KeyValuePair>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub settings: Vec<Value>,
    #[serde(default)]
    pub capacity_providers: Vec<String>,
    #[serde(default)]
    pub default_capacity_provider_strategy: Vec<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// ECS always reports `cpu`, 0 when not set.
    #[serde(default)]
    pub cpu: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<i64>,
    /// ECS always reports these lists, empty when not set.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    #[serde(default)]
    pub environment: Vec<KeyValuePair>,
    #[serde(default)]
    pub mount_points: Vec<Value>,
    #[serde(default)]
    pub volumes_from: Vec<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    pub task_definition_arn: String,
    pub family: String,
    pub revision: i64,
    pub status: String,
    pub container_definitions: Vec<ContainerDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(default)]
    pub volumes: Vec<Value>,
    #[serde(default)]
    pub placement_constraints: Vec<Value>,
    #[serde(default)]
    pub requires_attributes: Vec<Attribute>,
    #[serde(default)]
    pub compatibilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_compatibilities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    pub registered_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistered_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_by: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentCircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_circuit_breaker: Option<DeploymentCircuitBreaker>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_percent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_healthy_percent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<DeploymentStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_time_in_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_configuration: Option<LinearConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_configuration: Option<CanaryConfiguration>,
    /// `None`: not given (UpdateService keeps the service's); an empty list clears them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_hooks: Option<Vec<LifecycleHook>>,
    /// CloudWatch alarms that fail (and optionally roll back) a deployment in ALARM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<DeploymentAlarms>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentAlarms {
    pub alarm_names: Vec<String>,
    pub enable: bool,
    pub rollback: bool,
}

impl DeploymentConfiguration {
    /// The lifecycle hooks (none when not given).
    pub fn hooks(&self) -> &[LifecycleHook] {
        self.lifecycle_hooks.as_deref().unwrap_or_default()
    }

    /// The strategy, ROLLING when none was given.
    pub fn strategy(&self) -> DeploymentStrategy {
        self.strategy.unwrap_or(DeploymentStrategy::Rolling)
    }

    /// Whether deployments run beside the old revision and shift traffic to it (BLUE_GREEN,
    /// LINEAR, CANARY) rather than rolling.
    pub fn shifts_traffic(&self) -> bool {
        self.strategy() != DeploymentStrategy::Rolling
    }

    /// The production traffic steps: green's share after each step, and the bake (in minutes)
    /// after each step but the last. BLUE_GREEN is one step to 100; LINEAR `stepPercent`
    /// steps; CANARY `canaryPercent` then the rest.
    pub fn traffic_steps(&self) -> Vec<(f64, f64)> {
        match self.strategy() {
            DeploymentStrategy::Linear => {
                let c = self.linear_configuration.clone().unwrap_or_default();
                let step = c.step_percent.unwrap_or(10.0);
                let bake = c.step_bake_time_in_minutes.unwrap_or(6) as f64;
                let mut out = vec![];
                let mut w = 0.0;
                while w < 100.0 - 1e-9 {
                    w = (w + step).min(100.0);
                    out.push((w, bake));
                }
                out
            }
            DeploymentStrategy::Canary => {
                let c = self.canary_configuration.clone().unwrap_or_default();
                let first = c.canary_percent.unwrap_or(5.0);
                let bake = c.canary_bake_time_in_minutes.unwrap_or(10) as f64;
                if first >= 100.0 { vec![(100.0, 0.0)] } else { vec![(first, bake), (100.0, 0.0)] }
            }
            _ => vec![(100.0, 0.0)],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinearConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_bake_time_in_minutes: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryConfiguration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_bake_time_in_minutes: Option<i64>,
}

/// A deployment lifecycle hook: `PAUSE` waits at its stages for ContinueServiceDeployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleHook {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_target_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    #[serde(default)]
    pub lifecycle_stages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_configuration: Option<HookTimeout>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookTimeout {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<HookAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_in_minutes: Option<i64>,
}

/// Wharf's own: where a BLUE_GREEN, LINEAR or CANARY deployment is, kept on its PRIMARY
/// deployment so a restarted server resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficShift {
    pub stage: LifecycleStage,
    pub stage_started_at: Timestamp,
    /// The deployment whose tasks serve production (blue), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue: Option<String>,
    /// Green's share of production traffic, in percent, as last written to the rules.
    pub production_weight: f64,
    /// Green's share of test traffic.
    pub test_weight: f64,
    /// How many production steps are done, and when the last one was.
    #[serde(default)]
    pub steps_done: usize,
    #[serde(default)]
    pub step_at: Timestamp,
    /// Hooks of this deployment, as they are reported (`lifecycleHookDetails`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRun>,
    /// Set when the deployment is to roll back: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<String>,
    /// When each stage was entered, in order (what CodeDeploy reports as lifecycle events).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageMark>,
    /// The shift's own steps, bake and hooks when something other than the service's
    /// `deploymentConfiguration` decides them (a CodeDeploy deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<ShiftPlan>,
}

impl TrafficShift {
    /// The production steps: green's share after each, and the minutes of bake after it.
    pub fn steps(&self, dc: &DeploymentConfiguration) -> Vec<(f64, f64)> {
        self.plan.as_ref().map_or_else(|| dc.traffic_steps(), |p| p.steps.clone())
    }

    /// Minutes both revisions run once production is green's, before blue stops.
    pub fn bake_minutes(&self, dc: &DeploymentConfiguration) -> f64 {
        self.plan.as_ref().map_or(dc.bake_time_in_minutes.unwrap_or(0) as f64, |p| p.bake_minutes)
    }

    /// The lifecycle hooks that hold its stages.
    pub fn hooks_of<'a>(&'a self, dc: &'a DeploymentConfiguration) -> &'a [LifecycleHook] {
        self.plan.as_ref().map_or(dc.hooks(), |p| &p.hooks)
    }

    /// The CodeDeploy deployment this shift carries out, if one does.
    pub fn codedeploy(&self) -> Option<&str> {
        self.plan.as_ref().and_then(|p| p.codedeploy_deployment.as_deref())
    }
}

/// A stage of a shift and when it was entered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageMark {
    pub stage: LifecycleStage,
    pub at: Timestamp,
}

/// How a shift moves when a CodeDeploy deployment (its group and deployment config) decides
/// rather than the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShiftPlan {
    /// Green's share of production after each step, and the minutes until the next.
    pub steps: Vec<(f64, f64)>,
    /// Minutes blue is kept once production is green's (`terminationWaitTimeInMinutes`).
    pub bake_minutes: f64,
    /// PAUSE hooks (CodeDeploy's `STOP_DEPLOYMENT` ready wait is one before production).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<LifecycleHook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codedeploy_deployment: Option<String>,
}

/// One run of a lifecycle hook at one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRun {
    pub hook_id: String,
    /// The hook point (a `DeploymentLifecycleHookStage`).
    pub stage: String,
    pub status: HookStatus,
    pub target_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_arn: Option<String>,
    pub expires_at: Timestamp,
    pub timeout_action: HookAction,
    /// What ContinueServiceDeployment asked, until the scheduler acts on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<HookAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    pub status: DeploymentStatus,
    pub task_definition: String,
    pub desired_count: i64,
    pub pending_count: i64,
    pub running_count: i64,
    pub failed_tasks: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<LaunchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_state: Option<RolloutState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_state_reason: Option<String>,
    /// Wharf's own: the `loadBalancers` this deployment's tasks register with (a deployment
    /// keeps those it started with when UpdateService changes the service's).
    #[serde(rename = "wharfLoadBalancers", default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<Value>,
    /// Wharf's own: the progress of a deployment that shifts traffic (BLUE_GREEN, LINEAR,
    /// CANARY).
    #[serde(rename = "wharfShift", default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<TrafficShift>,
    /// Wharf's own, for a service whose task sets a third party manages (the EXTERNAL
    /// deployment controller): the task set's scale, and who made it.
    #[serde(rename = "wharfTaskSet", default, skip_serializing_if = "Option::is_none")]
    pub task_set: Option<TaskSetState>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A task set of an EXTERNAL service beyond what every deployment has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSetState {
    /// Percent of the service's `desiredCount` it keeps running.
    pub scale: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// DeleteTaskSet was called: its tasks stop, then it goes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub draining: bool,
}

impl TaskSetState {
    /// Tasks the task set keeps running for a service of `desired` tasks:
    /// `ceil(desired × scale / 100)`, none while it drains.
    pub fn computed(&self, desired: i64) -> i64 {
        if self.draining { 0 } else { (desired as f64 * self.scale / 100.0 - 1e-9).ceil().max(0.0) as i64 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEvent {
    pub id: String,
    pub created_at: Timestamp,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub service_arn: String,
    pub service_name: String,
    pub cluster_arn: String,
    #[serde(default)]
    pub load_balancers: Vec<Value>,
    #[serde(default)]
    pub service_registries: Vec<Value>,
    pub status: ServiceStatus,
    pub desired_count: i64,
    pub running_count: i64,
    pub pending_count: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<LaunchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_strategy: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    pub deployment_configuration: DeploymentConfiguration,
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub events: Vec<ServiceEvent>,
    pub created_at: Timestamp,
    #[serde(default)]
    pub placement_constraints: Vec<Value>,
    #[serde(default)]
    pub placement_strategy: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period_seconds: Option<i64>,
    pub scheduling_strategy: SchedulingStrategy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_controller: Option<DeploymentController>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The model spells it with a capital acronym, which `camelCase` would not produce.
    #[serde(default, rename = "enableECSManagedTags")]
    pub enable_ecs_managed_tags: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_tags: Option<String>,
    #[serde(default)]
    pub enable_execute_command: bool,
    /// Wharf's own: the task definition of the last COMPLETED deployment (what a rollback
    /// returns to).
    #[serde(rename = "wharfLastCompletedTaskDefinition", default, skip_serializing_if = "Option::is_none")]
    pub last_completed_task_definition: Option<String>,
    /// Wharf's own: the service is known steady (so the steady-state event is written once).
    #[serde(rename = "wharfSteady", default, skip_serializing_if = "is_false")]
    pub steady: bool,
    /// Wharf's own, for services that shift traffic: per `loadBalancers` entry, the target
    /// group that serves production (the next deployment starts in the other one).
    #[serde(rename = "wharfLiveTargetGroups", default, skip_serializing_if = "Vec::is_empty")]
    pub live_target_groups: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBinding {
    #[serde(default, rename = "bindIP", skip_serializing_if = "Option::is_none")]
    pub bind_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub container_arn: String,
    pub task_arn: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    pub last_status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub network_bindings: Vec<NetworkBinding>,
    #[serde(default)]
    pub network_interfaces: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub task_arn: String,
    pub cluster_arn: String,
    pub task_definition_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
    #[serde(default)]
    pub attachments: Vec<Value>,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    pub created_at: Timestamp,
    pub desired_status: TaskStatus,
    pub last_status: TaskStatus,
    #[serde(default)]
    pub enable_execute_command: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_status: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<LaunchType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<Timestamp>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub version: i64,
    /// Wharf's own: the load balancer targets the task is registered as, written in the same
    /// transaction as the target documents, so StopTask and the scheduler agree on what to
    /// deregister.
    #[serde(rename = "wharfTargets", default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<crate::elb::TargetRef>,
    /// Wharf's own: when the task's deregistration delay ends (epoch seconds).
    #[serde(rename = "wharfDrainUntil", default, skip_serializing_if = "Option::is_none")]
    pub drain_until: Option<Timestamp>,
    /// Wharf's own: the Fargate host a FARGATE task runs on.
    #[serde(rename = "wharfFargateHost", default, skip_serializing_if = "Option::is_none")]
    pub fargate_host: Option<String>,
    /// Wharf's own: when the task's scale-in protection expires (UpdateTaskProtection's
    /// `expirationDate`); `None` while protection is off. Not a member of ECS's `Task`:
    /// GetTaskProtection reports it.
    #[serde(rename = "wharfProtectedUntil", default, skip_serializing_if = "Option::is_none")]
    pub protected_until: Option<Timestamp>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Task {
    /// The service that runs the task (its group is `service:<name>`), if one does.
    pub fn service_name(&self) -> Option<&str> {
        self.group.as_deref().and_then(|g| g.strip_prefix("service:"))
    }

    /// Whether scale-in protection holds the task at `now`: enabled and not yet expired.
    pub fn is_protected(&self, now: Timestamp) -> bool {
        self.protected_until.is_some_and(|until| now < until)
    }

    /// The task's protection as GetTaskProtection reports it at `now`: an expired protection
    /// is off, with no expiration date.
    pub fn protection(&self, now: Timestamp) -> ProtectedTask {
        let until = self.protected_until.filter(|_| self.is_protected(now));
        ProtectedTask { task_arn: self.task_arn.clone(), protection_enabled: until.is_some(), expiration_date: until }
    }
}

/// A task's scale-in protection, as UpdateTaskProtection and GetTaskProtection report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtectedTask {
    pub task_arn: String,
    pub protection_enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmount {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub double_value: f64,
    #[serde(default)]
    pub long_value: i64,
    #[serde(default)]
    pub integer_value: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_set_value: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInstance {
    pub container_instance_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2_instance_id: Option<String>,
    pub version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<Value>,
    #[serde(default)]
    pub remaining_resources: Vec<ResourceAmount>,
    #[serde(default)]
    pub registered_resources: Vec<ResourceAmount>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub agent_connected: bool,
    #[serde(default)]
    pub running_tasks_count: i64,
    #[serde(default)]
    pub pending_tasks_count: i64,
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    pub registered_at: Timestamp,
    #[serde(default)]
    pub attachments: Vec<Value>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setting {
    pub name: String,
    pub value: String,
    pub principal_arn: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_sets_run_their_scale_of_desired_count_rounded_up() {
        let set = |scale| TaskSetState { scale, external_id: None, draining: false };
        assert_eq!(set(100.0).computed(4), 4);
        assert_eq!(set(50.0).computed(3), 2);
        assert_eq!(set(10.0).computed(4), 1);
        assert_eq!(set(0.0).computed(4), 0);
        assert_eq!(set(25.0).computed(4), 1);
        assert_eq!(TaskSetState { draining: true, ..set(100.0) }.computed(4), 0);
    }
    use serde_json::json;

    /// Documents stored while these states were strings read back into the typed fields and
    /// write out exactly what was read.
    #[test]
    fn stored_states_read_and_write_unchanged() {
        let service = json!({
            "serviceArn": "arn:aws:ecs:us-east-1:123456789012:service/c/s",
            "serviceName": "s",
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c",
            "loadBalancers": [],
            "serviceRegistries": [],
            "status": "DRAINING",
            "desiredCount": 0,
            "runningCount": 0,
            "pendingCount": 0,
            "launchType": "FARGATE",
            "platformVersion": "LATEST",
            "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/f:1",
            "deploymentConfiguration": {
                "deploymentCircuitBreaker": {"enable": true, "rollback": true},
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
                "strategy": "ROLLING",
                "bakeTimeInMinutes": 5
            },
            "deployments": [{
                "id": "ecs-svc/1234567890123456789",
                "status": "PRIMARY",
                "taskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/f:1",
                "desiredCount": 0,
                "pendingCount": 0,
                "runningCount": 0,
                "failedTasks": 0,
                "createdAt": 1.5,
                "updatedAt": 1.5,
                "launchType": "FARGATE",
                "rolloutState": "IN_PROGRESS",
                "rolloutStateReason": "ECS deployment ecs-svc/1234567890123456789 in progress.",
                "wharfLoadBalancers": [{"targetGroupArn": "tg", "containerName": "a", "containerPort": 80}]
            }],
            "events": [],
            "createdAt": 1.5,
            "placementConstraints": [],
            "placementStrategy": [],
            "schedulingStrategy": "REPLICA",
            "deploymentController": {"type": "ECS"},
            "tags": [],
            "enableECSManagedTags": false,
            "propagateTags": "NONE",
            "enableExecuteCommand": false,
            "wharfLastCompletedTaskDefinition": "arn:aws:ecs:us-east-1:123456789012:task-definition/f:1",
            "wharfSteady": true
        });
        let typed: Service = serde_json::from_value(service.clone()).expect("a stored service reads");
        assert_eq!(typed.status, ServiceStatus::Draining);
        assert_eq!(typed.deployments[0].rollout_state, Some(RolloutState::InProgress));
        assert_eq!(typed.deployment_controller.map(|c| c.kind), Some(DeploymentControllerType::Ecs));
        // Wharf's own progress, as the versions that kept it in `extra` stored it.
        assert_eq!(typed.deployments[0].load_balancers.len(), 1);
        assert!(typed.steady && typed.last_completed_task_definition.is_some());
        assert!(typed.extra.is_empty() && typed.deployments[0].extra.is_empty());
        assert_eq!(serde_json::to_value(&typed).ok(), Some(service));

        let container = json!({
            "containerArn": "arn:aws:ecs:us-east-1:123456789012:container/c/t/u",
            "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/t",
            "name": "a",
            "lastStatus": "RUNNING",
            "networkBindings": [],
            "networkInterfaces": [],
            "healthStatus": "HEALTHY"
        });
        let task = json!({
            "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/t",
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/f:1",
            "attachments": [],
            "attributes": [],
            "containers": [container],
            "createdAt": 1.5,
            "desiredStatus": "STOPPED",
            "lastStatus": "DEACTIVATING",
            "enableExecuteCommand": false,
            "healthStatus": "UNKNOWN",
            "launchType": "EC2",
            "tags": [],
            "version": 3,
            "connectivity": "CONNECTED",
            "wharfTargets": [{"targetGroupArn": "tg", "targetGroup": "web", "id": "10.0.0.7", "port": 32768}],
            "wharfDrainUntil": 301.5,
            "wharfFargateHost": "h1",
            "wharfProtectedUntil": 7201.5
        });
        let typed: Task = serde_json::from_value(task.clone()).expect("a stored task reads");
        assert_eq!((typed.desired_status, typed.last_status), (TaskStatus::Stopped, TaskStatus::Deactivating));
        assert_eq!(typed.containers[0].health_status, Some(HealthStatus::Healthy));
        assert_eq!(
            (typed.targets[0].port, typed.drain_until, typed.fargate_host.as_deref()),
            (32768, Some(301.5), Some("h1"))
        );
        assert_eq!(typed.protected_until, Some(7201.5));
        assert_eq!(serde_json::to_value(&typed).ok(), Some(task));
    }

    /// Protection holds until its expiration date, then reads as off (no date), as
    /// GetTaskProtection reports it once `expiresInMinutes` has passed.
    #[test]
    fn protection_holds_until_it_expires() {
        let task = json!({
            "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/t",
            "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c",
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/f:1",
            "containers": [],
            "createdAt": 1.5,
            "desiredStatus": "RUNNING",
            "lastStatus": "RUNNING",
            "group": "service:web",
            "version": 1,
            "wharfProtectedUntil": 100.0
        });
        let typed: Task = serde_json::from_value(task).expect("a stored task reads");
        assert_eq!(typed.service_name(), Some("web"));
        assert!(typed.is_protected(99.9) && !typed.is_protected(100.0));
        let on = typed.protection(50.0);
        assert_eq!((on.protection_enabled, on.expiration_date), (true, Some(100.0)));
        let off = typed.protection(100.0);
        assert_eq!((off.protection_enabled, off.expiration_date), (false, None));
        assert_eq!(
            serde_json::to_value(&off).ok(),
            Some(json!({"taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/t", "protectionEnabled": false}))
        );
    }
}
