//! Elastic Load Balancing v2 resources as the store keeps them. The ELBv2 API
//! (`wharf-api::elb`) writes load balancers, target groups, listeners, rules and targets; the
//! data plane (`wharf-lb`) serves them and writes what it observes (target health); the
//! service scheduler registers and deregisters its tasks as targets.
//!
//! Field names and casing are ELBv2's (PascalCase) so documents go onto the wire as they are;
//! what the logic needs is typed, everything else a client sent round-trips through `extra`.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Store keys, kind first (`/elb/<kind>/<account>/<region>/…`) so the data plane watches
/// one prefix per kind across every account.
pub mod keys {
    pub const ROOT: &str = "/elb/";

    pub fn load_balancer(account: &str, region: &str, name: &str) -> String {
        format!("/elb/lb/{account}/{region}/{name}")
    }
    pub fn target_group(account: &str, region: &str, name: &str) -> String {
        format!("/elb/tg/{account}/{region}/{name}")
    }
    pub fn listener(account: &str, region: &str, listener_id: &str) -> String {
        format!("/elb/listener/{account}/{region}/{listener_id}")
    }
    pub fn rule(account: &str, region: &str, listener_id: &str, rule_id: &str) -> String {
        format!("/elb/rule/{account}/{region}/{listener_id}/{rule_id}")
    }
    /// One registered target: `<target id>:<port>` within target group `tg_name`.
    pub fn target(account: &str, region: &str, tg_name: &str, target_id: &str, port: u16) -> String {
        format!("/elb/target/{account}/{region}/{tg_name}/{target_id}:{port}")
    }
    pub fn targets_of(account: &str, region: &str, tg_name: &str) -> String {
        format!("/elb/target/{account}/{region}/{tg_name}/")
    }
    /// What the data plane's health checks observed for one target (same suffix as `target`).
    pub fn health(account: &str, region: &str, tg_name: &str, target_id: &str, port: u16) -> String {
        format!("/elb/health/{account}/{region}/{tg_name}/{target_id}:{port}")
    }
    pub fn health_of(account: &str, region: &str, tg_name: &str) -> String {
        format!("/elb/health/{account}/{region}/{tg_name}/")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoadBalancer {
    pub load_balancer_arn: String,
    pub load_balancer_name: String,
    /// How a client reaches it: a name resolving to the bind address (see the README).
    #[serde(rename = "DNSName")]
    pub dns_name: String,
    /// `application` (the only type Wharf serves).
    #[serde(rename = "Type")]
    pub kind: String,
    pub scheme: String,
    pub created_time: Timestamp,
    /// `{ "Code": "active" | "provisioning" | "failed", "Reason": … }`
    pub state: Value,
    /// Load balancer attributes, key → value as ELBv2 spells them.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetGroup {
    pub target_group_arn: String,
    pub target_group_name: String,
    /// `HTTP` | `HTTPS`
    pub protocol: String,
    /// `HTTP1` | `HTTP2` | `GRPC`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `instance` | `ip`
    pub target_type: String,
    pub health_check: HealthCheck,
    /// Target group attributes (`deregistration_delay.timeout_seconds`,
    /// `slow_start.duration_seconds`, `stickiness.*`, `load_balancing.algorithm.type`).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TargetGroup {
    fn attribute<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        self.attributes.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
    }
    /// `deregistration_delay.timeout_seconds` (AWS default 300).
    pub fn deregistration_delay_secs(&self) -> u64 {
        self.attribute("deregistration_delay.timeout_seconds", 300)
    }
    /// `slow_start.duration_seconds` (default 0 = off).
    pub fn slow_start_secs(&self) -> u64 {
        self.attribute("slow_start.duration_seconds", 0)
    }
}

/// Health-check settings with AWS's defaults filled in at creation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheck {
    pub enabled: bool,
    pub protocol: String,
    /// A port number, or `traffic-port`.
    pub port: String,
    pub path: String,
    pub interval_seconds: u32,
    pub timeout_seconds: u32,
    pub healthy_threshold_count: u32,
    pub unhealthy_threshold_count: u32,
    /// `Matcher.HttpCode`: `200`, `200,202`, `200-299`.
    pub http_code: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Listener {
    pub listener_arn: String,
    pub load_balancer_arn: String,
    pub port: u16,
    /// `HTTP` | `HTTPS`
    pub protocol: String,
    #[serde(default)]
    pub certificates: Vec<Value>,
    #[serde(default)]
    pub default_actions: Vec<Action>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rule {
    pub rule_arn: String,
    pub listener_arn: String,
    /// `1`..`50000`, or `default` for the listener's default rule.
    pub priority: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub actions: Vec<Action>,
    pub is_default: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An action as ELBv2 spells it: `Type` is `forward` | `redirect` | `fixed-response`, with the
/// matching config. A plain `TargetGroupArn` forward is normalised into `ForwardConfig` with
/// weight 1 when stored, so the data plane reads one shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Action {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_config: Option<ForwardConfig>,
    /// `{Protocol, Port, Host, Path, Query, StatusCode: HTTP_301|HTTP_302}`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_config: Option<Value>,
    /// `{StatusCode, ContentType, MessageBody}`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_response_config: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ForwardConfig {
    pub target_groups: Vec<WeightedTargetGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group_stickiness_config: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WeightedTargetGroup {
    pub target_group_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// A rule condition as ELBv2 spells it (`Field` plus the matching `*Config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Condition {
    pub field: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A registered target. Deregistering marks it draining (`draining_since`); the data plane
/// deletes the key when the delay has passed or the target is idle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    pub target_group_arn: String,
    /// An EC2 instance id (the container instance's `ec2InstanceId`) for `instance` target
    /// groups, an IPv4 address for `ip` ones.
    pub id: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub registered_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_since: Option<Timestamp>,
}

/// What the data plane observed (`TargetHealth` on the wire).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetHealth {
    /// `initial` | `healthy` | `unhealthy` | `unused` | `draining` | `unavailable`
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}
