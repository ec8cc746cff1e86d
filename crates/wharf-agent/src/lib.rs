//! Wharf's container-instance agent: joins a cluster, receives the tasks placed on its host
//! as a stream, runs them as real containers, and reports their state with the ECS agent
//! operations. It authenticates like any client and must never write the store directly.

#![forbid(unsafe_code)]

pub mod agent;
mod cgroup;
pub mod client;
pub mod docker;
mod logs;
pub mod metadata;
pub mod pause;
mod registry_auth;
pub mod runtime;
mod secrets;
mod spec;
mod task;
pub mod task_protection;
pub mod tls;
pub mod usage;

pub use agent::{AgentConfig, PullBehavior, run};
