//! Elastic Load Balancing v2 resources as the store keeps them. The ELBv2 API
//! (`wharf-api::elb`) writes load balancers, target groups, listeners, rules and targets; the
//! data plane (`wharf-lb`) serves them and writes what it observes (target health); the
//! service scheduler registers and deregisters its tasks as targets.
//!
//! Field names and casing are ELBv2's (PascalCase) so documents go onto the wire as they are;
//! what the logic needs is typed, everything else a client sent round-trips through `extra`.
//!
//! ## Service targets (written by the service scheduler)
//!
//! - A service task is registered when it is RUNNING: one [`Target`] at [`keys::target`] per
//!   target group of its deployment. `instance` target groups get the container instance's
//!   `ec2InstanceId` and the host port Docker bound to the container port; `ip` ones (awsvpc)
//!   the task's private IPv4 and the container port.
//! - **Reaching an instance target**: every container instance registration writes
//!   [`InstanceAddress`] at [`instance_address_key`] (`/elb/instance-address/<account>/<region>/<ec2InstanceId>`)
//!   holding the address its published ports are reachable on (the agent's
//!   `--advertise-address`, else its `--port-bind-ip`, else 127.0.0.1 when that is 0.0.0.0).
//!   The data plane resolves an `instance` target `i-…:P` to `<Address>:P` with
//!   [`target_address`]; an `ip` target's id is the address itself.
//! - **Deregistration before stopping**: the scheduler sets `draining_since` on the task's
//!   targets (the data plane stops sending new requests to them) and tells the agent to stop
//!   the task only once the target group's `deregistration_delay.timeout_seconds` has passed
//!   or the data plane has deleted the target key (it may do so earlier, once the target is
//!   idle). The scheduler deletes keys that are still there after the delay.
//! - **Health**: the data plane writes [`TargetHealth`] at [`keys::health`]; the scheduler
//!   counts a new task healthy only when every one of its targets reports `healthy`, and
//!   replaces a task whose target is `unhealthy` once `healthCheckGracePeriodSeconds` passed.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Store keys, kind first (`/elb/<kind>/<account>/<region>/…`) so the data plane watches
/// one prefix per kind across every account.
/// One registration of a service task in a target group (kept on the task).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    pub target_group_arn: String,
    pub target_group: String,
    pub id: String,
    pub port: u16,
}

impl TargetRef {
    /// Where the target document lives, for the scope `scope`.
    pub fn key(&self, scope: &crate::Scope) -> String {
        keys::target(&scope.account, &scope.region, &self.target_group, &self.id, self.port)
    }
    /// Where the data plane writes the target's health.
    pub fn health_key(&self, scope: &crate::Scope) -> String {
        keys::health(&scope.account, &scope.region, &self.target_group, &self.id, self.port)
    }
}

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
    /// Every listener of one account and region.
    pub fn listeners(account: &str, region: &str) -> String {
        format!("/elb/listener/{account}/{region}/")
    }
    /// Every rule of one account and region.
    pub fn rules(account: &str, region: &str) -> String {
        format!("/elb/rule/{account}/{region}/")
    }
    /// Every rule of one listener (the default rule is not stored: it is the listener's
    /// `DefaultActions`).
    pub fn rules_of(account: &str, region: &str, listener_id: &str) -> String {
        format!("/elb/rule/{account}/{region}/{listener_id}/")
    }
    pub fn load_balancers(account: &str, region: &str) -> String {
        format!("/elb/lb/{account}/{region}/")
    }
    pub fn target_groups(account: &str, region: &str) -> String {
        format!("/elb/tg/{account}/{region}/")
    }
    /// The claim on host port `port`: its value is the ARN of the one listener (of any
    /// account) that binds it, so two listeners can never be created on the same port.
    pub fn listener_port(port: u16) -> String {
        format!("/elb/port/{port:05}")
    }
}

/// `elb.localhost` names resolve to loopback in curl and browsers: a listener on port P of a
/// load balancer is reachable at `http://<DNSName>:P/` on the machine whose bind address is
/// loopback or unspecified (the default).
pub const DNS_SUFFIX: &str = "elb.localhost";

/// The DNS name of load balancer `name` with ARN id `id`, as `<name>-<id>.<region>.elb.localhost`.
pub fn dns_name(name: &str, id: &str, region: &str) -> String {
    format!("{}-{}.{region}.{DNS_SUFFIX}", name.to_ascii_lowercase(), &id[..id.len().min(10)])
}

/// Where the PEM files of a listener certificate live. `CertificateArn` is either
/// - an absolute path to a PEM file holding the certificate chain and, in the same file or
///   beside it as `<stem>.key`, the private key; or
/// - an ACM-style ARN `arn:aws:acm:<region>:<account>:certificate/<id>`: the files are
///   `<data-dir>/certs/<id>.pem` (chain, optionally with the key) and `<data-dir>/certs/<id>.key`.
///
/// Returns `(certificate chain, private key)` paths; the key path may not exist when the
/// chain file carries the key too. `None` when `arn` is neither form.
pub fn certificate_files(arn: &str, data_dir: &std::path::Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    if arn.starts_with('/') {
        let pem = std::path::PathBuf::from(arn);
        let key = pem.with_extension("key");
        return Some((pem, key));
    }
    let id = arn.strip_prefix("arn:")?.split(':').nth(4)?.strip_prefix("certificate/")?;
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return None;
    }
    let dir = data_dir.join("certs");
    Some((dir.join(format!("{id}.pem")), dir.join(format!("{id}.key"))))
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
    /// `stickiness.enabled` (default false; the only type is `lb_cookie`).
    pub fn stickiness_enabled(&self) -> bool {
        self.attribute("stickiness.enabled", false)
    }
    /// `stickiness.lb_cookie.duration_seconds` (default 86400).
    pub fn stickiness_duration_secs(&self) -> u64 {
        self.attribute("stickiness.lb_cookie.duration_seconds", 86_400)
    }
    /// `load_balancing.algorithm.type`: `round_robin` (default) or `least_outstanding_requests`.
    pub fn algorithm(&self) -> String {
        self.attribute("load_balancing.algorithm.type", "round_robin".to_string())
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
    /// The ARN DescribeRules shows for the listener's default rule (not stored as a rule; its
    /// tags are kept in `extra["DefaultRuleTags"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_rule_arn: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rule {
    pub rule_arn: String,
    pub listener_arn: String,
    /// `1`..`50000`. Stored rules are never the default rule: that one is the listener's
    /// `DefaultActions` (DescribeRules shows it with priority `default`).
    pub priority: String,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub actions: Vec<Action>,
    pub is_default: bool,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An action as ELBv2 spells it: `Type` is `forward` | `redirect` | `fixed-response`, with the
/// matching config. A plain `TargetGroupArn` forward is normalised into `ForwardConfig` with
/// weight 1 when stored, so the data plane reads one shape: `forward_config` is always set on
/// a stored forward (`target_group_arn` is kept too when there is exactly one group, as AWS
/// describes it). Redirect configs are stored with AWS's `#{…}` defaults filled in.
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

/// The key of [`InstanceAddress`] for EC2 instance id `instance_id` (a container instance's
/// `ec2InstanceId`), written when the container instance registers.
pub fn instance_address_key(account: &str, region: &str, instance_id: &str) -> String {
    format!("/elb/instance-address/{account}/{region}/{instance_id}")
}

/// Where the published ports of a container instance's tasks are reachable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InstanceAddress {
    /// An IPv4 or IPv6 address (no port).
    pub address: String,
    /// The container instance ARN that wrote it.
    #[serde(default)]
    pub container_instance_arn: String,
}

/// The `host:port` a target's traffic goes to: an `ip` target's id is its address; an
/// `instance` target's address comes from its [`InstanceAddress`] (`None` when unknown).
pub fn target_address(target: &Target, instance: Option<&InstanceAddress>) -> Option<std::net::SocketAddr> {
    let ip: std::net::IpAddr = match target.id.parse() {
        Ok(ip) => ip,
        Err(_) => instance?.address.parse().ok()?,
    };
    Some(std::net::SocketAddr::new(ip, target.port))
}

/// The name inside a target group ARN (`arn:…:targetgroup/<name>/<id>`).
pub fn target_group_name(arn: &str) -> Option<&str> {
    let rest = arn.strip_prefix("arn:")?.split(':').nth(4)?.strip_prefix("targetgroup/")?;
    let (name, _id) = rest.split_once('/')?;
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod service_target_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn target_group_names_and_addresses() {
        let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";
        assert_eq!(target_group_name(arn), Some("web"));
        assert_eq!(target_group_name("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/x/1"), None);
        assert_eq!(target_group_name("web"), None);
        let t = Target { id: "i-0abc".into(), port: 32768, ..Default::default() };
        assert_eq!(target_address(&t, None), None);
        let a = InstanceAddress { address: "127.0.0.1".into(), ..Default::default() };
        assert_eq!(target_address(&t, Some(&a)).unwrap().to_string(), "127.0.0.1:32768");
        let ip = Target { id: "172.17.0.5".into(), port: 8080, ..Default::default() };
        assert_eq!(target_address(&ip, None).unwrap().to_string(), "172.17.0.5:8080");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::{Path, PathBuf};

    #[test]
    fn certificate_arns_map_to_files() {
        let data = Path::new("/var/lib/wharf");
        assert_eq!(
            certificate_files("/etc/ssl/site.pem", data).unwrap(),
            (PathBuf::from("/etc/ssl/site.pem"), PathBuf::from("/etc/ssl/site.key"))
        );
        assert_eq!(
            certificate_files("arn:aws:acm:us-east-1:123456789012:certificate/abc-123", data).unwrap(),
            (PathBuf::from("/var/lib/wharf/certs/abc-123.pem"), PathBuf::from("/var/lib/wharf/certs/abc-123.key"))
        );
        assert_eq!(certificate_files("arn:aws:acm:us-east-1:1:certificate/../x", data), None);
        assert_eq!(certificate_files("arn:aws:iam::1:server-certificate/x", data), None);
        assert_eq!(certificate_files("site.pem", data), None);
    }

    #[test]
    fn dns_names_are_localhost_names() {
        assert_eq!(dns_name("Web", "0123456789abcdef", "eu-west-1"), "web-0123456789.eu-west-1.elb.localhost");
    }

    #[test]
    fn stored_documents_keep_what_they_do_not_type() {
        let l: Listener = serde_json::from_value(serde_json::json!({
            "ListenerArn": "a", "LoadBalancerArn": "b", "Port": 80, "Protocol": "HTTP", "SslPolicy": "p"
        }))
        .unwrap();
        assert_eq!((l.default_rule_arn, l.tags.len()), (None, 0));
        assert_eq!(l.extra["SslPolicy"], "p");
    }
}
