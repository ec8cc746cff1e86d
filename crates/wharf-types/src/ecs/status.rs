//! The closed vocabularies of ECS documents — task, deployment and service states, launch
//! types, scheduling and deployment strategies — as enums spelled exactly as ECS spells them
//! on the wire and in the store. Each value's `as_str` and its serde name are the same
//! literal, so a document reads and writes byte for byte as it did when these were strings.
//!
//! Request members decode straight into these types: the API validates them against the
//! model's enums first, so decoding cannot fail. Strings the model leaves open (the statuses
//! in an agent's state change) are parsed with `FromStr`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A string that is not one of an enum's AWS spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a {kind}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

/// Declares an enum whose variants serialize as the given AWS spellings, with `ALL`,
/// `as_str`, `Display` and `FromStr`.
macro_rules! aws_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $aws:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $aws)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[Self] = &[$(Self::$variant),+];

            /// The AWS spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $aws,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownValue { kind: stringify!($name), value: s.to_string() })
            }
        }
    };
}

aws_enum! {
    /// A task's or container's `lastStatus`, and a task's `desiredStatus` (RUNNING or
    /// STOPPED), in lifecycle order.
    pub enum TaskStatus {
        /// Placed, and no agent has taken it up yet.
        Provisioning = "PROVISIONING",
        /// An agent has it and is pulling its images.
        Pending = "PENDING",
        /// Images pulled; its network and containers are being started.
        Activating = "ACTIVATING",
        Running = "RUNNING",
        /// Asked to stop; deregistering from load balancers before its containers stop.
        Deactivating = "DEACTIVATING",
        /// Its containers are being stopped.
        Stopping = "STOPPING",
        /// Its containers stopped; what it held (an awsvpc task's network) is being released.
        Deprovisioning = "DEPROVISIONING",
        Stopped = "STOPPED",
        /// Gone; no agent reports it, and it has no place in [`TaskStatus::lifecycle_rank`].
        Deleted = "DELETED",
    }
}

impl TaskStatus {
    /// Whether a task in this state holds CPU, memory and ports on its instance: every state
    /// from PROVISIONING to DEPROVISIONING, i.e. all but STOPPED and DELETED.
    pub const fn holds_resources(self) -> bool {
        !matches!(self, Self::Stopped | Self::Deleted)
    }

    /// The state's position in a task's lifecycle, PROVISIONING (0) to STOPPED (7); reports
    /// never move a task backwards. DELETED has none.
    pub const fn lifecycle_rank(self) -> Option<u8> {
        match self {
            Self::Provisioning => Some(0),
            Self::Pending => Some(1),
            Self::Activating => Some(2),
            Self::Running => Some(3),
            Self::Deactivating => Some(4),
            Self::Stopping => Some(5),
            Self::Deprovisioning => Some(6),
            Self::Stopped => Some(7),
            Self::Deleted => None,
        }
    }

    /// Whether a task in this state has reached `other`: it is `other` or later in the
    /// lifecycle. DELETED, having no rank, has reached nothing and is reached by nothing.
    pub fn has_reached(self, other: TaskStatus) -> bool {
        matches!((self.lifecycle_rank(), other.lifecycle_rank()), (Some(a), Some(b)) if a >= b)
    }
}

aws_enum! {
    /// A task's or container's `healthStatus`.
    pub enum HealthStatus {
        Healthy = "HEALTHY",
        Unhealthy = "UNHEALTHY",
        /// No health check, or none has answered yet.
        Unknown = "UNKNOWN",
    }
}

aws_enum! {
    /// A service deployment's `status` in `deployments[]`.
    pub enum DeploymentStatus {
        /// The newest deployment: the one the scheduler scales up.
        Primary = "PRIMARY",
        /// An older deployment whose tasks are still being drained.
        Active = "ACTIVE",
        /// Fully replaced. ECS's value; Wharf drops drained deployments from `deployments[]`.
        Inactive = "INACTIVE",
    }
}

aws_enum! {
    /// A deployment's `rolloutState`.
    pub enum RolloutState {
        InProgress = "IN_PROGRESS",
        Completed = "COMPLETED",
        Failed = "FAILED",
    }
}

aws_enum! {
    /// A service's `status`.
    pub enum ServiceStatus {
        Active = "ACTIVE",
        /// Deleted (DeleteService) and stopping its tasks; INACTIVE once none holds resources.
        Draining = "DRAINING",
        Inactive = "INACTIVE",
    }
}

aws_enum! {
    /// Where a task runs (`launchType`).
    pub enum LaunchType {
        /// On the cluster's registered container instances.
        Ec2 = "EC2",
        /// On the account's Fargate capacity (the hosts that serve it).
        Fargate = "FARGATE",
        /// ECS Anywhere: Wharf cannot launch it (RunTask answers that it is unsupported).
        External = "EXTERNAL",
        /// Placed on container instances, as EC2 is.
        ManagedInstances = "MANAGED_INSTANCES",
    }
}

aws_enum! {
    /// A service's `schedulingStrategy`.
    pub enum SchedulingStrategy {
        /// `desiredCount` tasks placed by placement strategy.
        Replica = "REPLICA",
        /// One task on each active container instance.
        Daemon = "DAEMON",
    }
}

aws_enum! {
    /// Who deploys a service's tasks (`deploymentController.type`).
    pub enum DeploymentControllerType {
        /// ECS's own rolling deployments.
        Ecs = "ECS",
        CodeDeploy = "CODE_DEPLOY",
        /// A third party, through task sets; the service may have no task definition.
        External = "EXTERNAL",
    }
}

aws_enum! {
    /// A deployment configuration's `strategy`.
    pub enum DeploymentStrategy {
        Rolling = "ROLLING",
        BlueGreen = "BLUE_GREEN",
        Linear = "LINEAR",
        Canary = "CANARY",
    }
}

aws_enum! {
    /// Where a blue/green, linear or canary deployment is (`lifecycleStage`), in ECS's order.
    pub enum LifecycleStage {
        ReconcileService = "RECONCILE_SERVICE",
        PreScaleUp = "PRE_SCALE_UP",
        /// Green tasks start to full size in the target group that is not live.
        ScaleUp = "SCALE_UP",
        PostScaleUp = "POST_SCALE_UP",
        /// The test listener rule forwards to green.
        TestTrafficShift = "TEST_TRAFFIC_SHIFT",
        PostTestTrafficShift = "POST_TEST_TRAFFIC_SHIFT",
        /// The production rule's weights move from blue to green.
        ProductionTrafficShift = "PRODUCTION_TRAFFIC_SHIFT",
        PostProductionTrafficShift = "POST_PRODUCTION_TRAFFIC_SHIFT",
        /// Both revisions run for `bakeTimeInMinutes`; a rollback is instant.
        BakeTime = "BAKE_TIME",
        /// Blue is deregistered, drained and stopped.
        CleanUp = "CLEAN_UP",
    }
}

impl LifecycleStage {
    /// The stage after this one (`None` after CLEAN_UP).
    pub fn next(self) -> Option<LifecycleStage> {
        let i = Self::ALL.iter().position(|s| *s == self)?;
        Self::ALL.get(i + 1).copied()
    }
}

aws_enum! {
    /// A lifecycle hook's `status`.
    pub enum HookStatus {
        AwaitingAction = "AWAITING_ACTION",
        InProgress = "IN_PROGRESS",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
        TimedOut = "TIMED_OUT",
    }
}

aws_enum! {
    /// What a lifecycle hook (or its timeout) tells the deployment to do.
    pub enum HookAction {
        Rollback = "ROLLBACK",
        Continue = "CONTINUE",
    }
}

/// A service's `deploymentController`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentController {
    #[serde(rename = "type")]
    pub kind: DeploymentControllerType,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    /// Every value serializes to its AWS spelling, parses back, and `as_str`, `Display` and
    /// `FromStr` agree with serde.
    fn round_trips<T>(all: &[T], spellings: &[&str])
    where
        T: Copy + PartialEq + fmt::Debug + fmt::Display + FromStr + Serialize + DeserializeOwned,
    {
        assert_eq!(all.len(), spellings.len());
        for (value, aws) in all.iter().zip(spellings) {
            assert_eq!(serde_json::to_value(value).ok(), Some(json!(aws)));
            assert_eq!(serde_json::from_value::<T>(json!(aws)).ok(), Some(*value));
            assert_eq!(value.to_string(), *aws);
            assert_eq!(aws.parse::<T>().ok(), Some(*value));
        }
        assert!(serde_json::from_value::<T>(json!("running")).is_err());
        assert!("running".parse::<T>().is_err());
    }

    #[test]
    fn every_aws_spelling_round_trips() {
        round_trips(
            TaskStatus::ALL,
            &[
                "PROVISIONING",
                "PENDING",
                "ACTIVATING",
                "RUNNING",
                "DEACTIVATING",
                "STOPPING",
                "DEPROVISIONING",
                "STOPPED",
                "DELETED",
            ],
        );
        round_trips(HealthStatus::ALL, &["HEALTHY", "UNHEALTHY", "UNKNOWN"]);
        round_trips(DeploymentStatus::ALL, &["PRIMARY", "ACTIVE", "INACTIVE"]);
        round_trips(RolloutState::ALL, &["IN_PROGRESS", "COMPLETED", "FAILED"]);
        round_trips(ServiceStatus::ALL, &["ACTIVE", "DRAINING", "INACTIVE"]);
        round_trips(LaunchType::ALL, &["EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"]);
        round_trips(SchedulingStrategy::ALL, &["REPLICA", "DAEMON"]);
        round_trips(DeploymentControllerType::ALL, &["ECS", "CODE_DEPLOY", "EXTERNAL"]);
        round_trips(DeploymentStrategy::ALL, &["ROLLING", "BLUE_GREEN", "LINEAR", "CANARY"]);
        round_trips(HookStatus::ALL, &["AWAITING_ACTION", "IN_PROGRESS", "SUCCEEDED", "FAILED", "TIMED_OUT"]);
        round_trips(HookAction::ALL, &["ROLLBACK", "CONTINUE"]);
    }

    #[test]
    fn lifecycle_stages_follow_ecs_order() {
        let mut stage = LifecycleStage::ReconcileService;
        let mut seen = vec![stage.as_str()];
        while let Some(next) = stage.next() {
            stage = next;
            seen.push(stage.as_str());
        }
        assert_eq!(
            seen,
            [
                "RECONCILE_SERVICE",
                "PRE_SCALE_UP",
                "SCALE_UP",
                "POST_SCALE_UP",
                "TEST_TRAFFIC_SHIFT",
                "POST_TEST_TRAFFIC_SHIFT",
                "PRODUCTION_TRAFFIC_SHIFT",
                "POST_PRODUCTION_TRAFFIC_SHIFT",
                "BAKE_TIME",
                "CLEAN_UP"
            ]
        );
    }

    #[test]
    fn deployment_controller_is_a_type_member() {
        let v: Value = json!({"type": "CODE_DEPLOY"});
        let c: DeploymentController = serde_json::from_value(v.clone()).expect("decodes");
        assert_eq!(c.kind, DeploymentControllerType::CodeDeploy);
        assert_eq!(serde_json::to_value(c).ok(), Some(v));
    }

    #[test]
    fn resources_are_held_until_stopped() {
        let holding: Vec<&str> = TaskStatus::ALL.iter().filter(|s| s.holds_resources()).map(|s| s.as_str()).collect();
        assert_eq!(
            holding,
            ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING"]
        );
    }

    #[test]
    fn the_lifecycle_ranks_follow_declaration_order() {
        let ranked: Vec<u8> = TaskStatus::ALL.iter().filter_map(|s| s.lifecycle_rank()).collect();
        assert_eq!(ranked, (0..8).collect::<Vec<u8>>());
        assert_eq!(TaskStatus::Deleted.lifecycle_rank(), None);
        assert!(TaskStatus::Stopping.has_reached(TaskStatus::Deactivating));
        assert!(TaskStatus::Running.has_reached(TaskStatus::Running));
        assert!(!TaskStatus::Pending.has_reached(TaskStatus::Running));
        assert!(!TaskStatus::Deleted.has_reached(TaskStatus::Provisioning));
        assert!(!TaskStatus::Stopped.has_reached(TaskStatus::Deleted));
    }
}
