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
