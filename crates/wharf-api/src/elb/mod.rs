//! Elastic Load Balancing v2's API (Query protocol, XML in the `2015-12-01` namespace):
//! load balancers, target groups, listeners, rules, targets and tags, kept in the store as
//! `wharf_types::elb` documents that the data plane (`wharf-lb`) serves.
//!
//! Every write is one store transaction guarded by compares on what it read, so a request
//! either lands whole or not at all, and of two concurrent creates of one name one wins.
//! Writes that add a reference to a target group (a listener or rule forwarding to it) also
//! rewrite that group's document under a compare, and DeleteTargetGroup compares the group's
//! revision: a group can never be deleted while a reference to it is being created. Listeners
//! and rules likewise rewrite their load balancer / listener so deletes cascade atomically.
//! This module never talks to the data plane directly: it only writes documents.

mod listeners;
mod load_balancers;
mod rules;
mod tags;
mod target_groups;
mod targets;
pub mod validate;

use crate::Ctx;
use crate::db::Versioned;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use wharf_types::elb::{Action, Listener, LoadBalancer, Rule, Tag, TargetGroup, keys};
use wharf_types::{Arn, Error, Resource, Result};

operations! {
    "CreateLoadBalancer" => load_balancers::create,
    "DescribeLoadBalancers" => load_balancers::describe,
    "DeleteLoadBalancer" => load_balancers::delete,
    "DescribeLoadBalancerAttributes" => load_balancers::describe_attributes,
    "ModifyLoadBalancerAttributes" => load_balancers::modify_attributes,
    "SetSecurityGroups" => load_balancers::set_security_groups,
    "SetSubnets" => load_balancers::set_subnets,
    "SetIpAddressType" => load_balancers::set_ip_address_type,
    "DescribeAccountLimits" => load_balancers::describe_account_limits,
    "CreateTargetGroup" => target_groups::create,
    "DescribeTargetGroups" => target_groups::describe,
    "ModifyTargetGroup" => target_groups::modify,
    "DeleteTargetGroup" => target_groups::delete,
    "DescribeTargetGroupAttributes" => target_groups::describe_attributes,
    "ModifyTargetGroupAttributes" => target_groups::modify_attributes,
    "RegisterTargets" => targets::register,
    "DeregisterTargets" => targets::deregister,
    "DescribeTargetHealth" => targets::describe_health,
    "CreateListener" => listeners::create,
    "DescribeListeners" => listeners::describe,
    "ModifyListener" => listeners::modify,
    "DeleteListener" => listeners::delete,
    "DescribeListenerCertificates" => listeners::describe_certificates,
    "CreateRule" => rules::create,
    "DescribeRules" => rules::describe,
    "ModifyRule" => rules::modify,
    "DeleteRule" => rules::delete,
    "SetRulePriorities" => rules::set_priorities,
    "AddTags" => tags::add,
    "RemoveTags" => tags::remove,
    "DescribeTags" => tags::describe,
}

pub(crate) const SERVICE: &str = "elasticloadbalancing";
/// What Wharf puts where AWS has a VPC id (there is one flat network per host).
pub(crate) const VPC_ID: &str = "vpc-00000000000000000";
/// Describe* page size when the caller sets none, and the most it may ask for.
const PAGE_MAX: usize = 400;

// ---- input access ----

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}
pub(crate) fn int_of(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}
pub(crate) fn bool_of(v: &Value, key: &str) -> Option<bool> {
    v.get(key).and_then(Value::as_bool)
}
pub(crate) fn list_of<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}
pub(crate) fn strings_of(v: &Value, key: &str) -> Vec<String> {
    list_of(v, key).iter().filter_map(Value::as_str).map(str::to_string).collect()
}
pub(crate) fn required<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    str_of(v, key).ok_or_else(|| Error::invalid(key, format!("{key} is required")))
}

// ---- AWS errors ----

pub(crate) fn lb_not_found(arn: &str) -> Error {
    Error::not_found(Resource::LoadBalancer, format!("Load balancer '{arn}' not found"))
}
pub(crate) fn tg_not_found(arn: &str) -> Error {
    Error::not_found(Resource::TargetGroup, format!("Target groups '{arn}' not found"))
}
pub(crate) fn listener_not_found(arn: &str) -> Error {
    Error::not_found(Resource::Listener, format!("Listener '{arn}' not found"))
}
pub(crate) fn rule_not_found(arn: &str) -> Error {
    Error::not_found(Resource::Rule, format!("Rule '{arn}' not found"))
}

// ---- ARNs ----

/// The kinds of ELBv2 resources, by their ARN's resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    LoadBalancer,
    TargetGroup,
    Listener,
    Rule,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::LoadBalancer => "loadbalancer/app/",
            Kind::TargetGroup => "targetgroup/",
            Kind::Listener => "listener/app/",
            Kind::Rule => "listener-rule/app/",
        }
    }
    /// Path segments after the prefix.
    fn segments(self) -> usize {
        match self {
            Kind::LoadBalancer | Kind::TargetGroup => 2,
            Kind::Listener => 3,
            Kind::Rule => 4,
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Kind::LoadBalancer => "load balancer",
            Kind::TargetGroup => "target group",
            Kind::Listener => "listener",
            Kind::Rule => "rule",
        }
    }
    fn not_found(self, arn: &str) -> Error {
        match self {
            Kind::LoadBalancer => lb_not_found(arn),
            Kind::TargetGroup => tg_not_found(arn),
            Kind::Listener => listener_not_found(arn),
            Kind::Rule => rule_not_found(arn),
        }
    }
    /// The kind an ARN names, if it is an ELBv2 ARN at all.
    pub(crate) fn of(arn: &str) -> Option<Kind> {
        let a = Arn::parse(arn)?;
        if a.service != SERVICE {
            return None;
        }
        [Kind::Rule, Kind::Listener, Kind::LoadBalancer, Kind::TargetGroup]
            .into_iter()
            .find(|k| a.resource.starts_with(k.prefix()))
    }
}

/// The path segments of an ARN of `kind` (`[name, id]` for a load balancer), or a
/// ValidationError when it is malformed and `*NotFound` when it belongs to another scope.
pub(crate) fn arn_parts(ctx: &Ctx, arn: &str, kind: Kind) -> Result<Vec<String>> {
    let bad = || Error::invalid(kind.noun(), format!("'{arn}' is not a valid {} ARN", kind.noun()));
    let a = Arn::parse(arn).filter(|a| a.service == SERVICE).ok_or_else(bad)?;
    let rest = a.resource.strip_prefix(kind.prefix()).ok_or_else(bad)?;
    let parts: Vec<String> = rest.split('/').map(str::to_string).collect();
    if parts.len() != kind.segments() || parts.iter().any(String::is_empty) {
        return Err(bad());
    }
    if a.account != ctx.scope.account || a.region != ctx.scope.region {
        return Err(kind.not_found(arn));
    }
    Ok(parts)
}

pub(crate) fn lb_arn(ctx: &Ctx, name: &str, id: &str) -> String {
    ctx.scope.arn(SERVICE, format!("loadbalancer/app/{name}/{id}"))
}
pub(crate) fn tg_arn(ctx: &Ctx, name: &str, id: &str) -> String {
    ctx.scope.arn(SERVICE, format!("targetgroup/{name}/{id}"))
}
/// `listener/app/<lb>/<lbid>/<id>` from the load balancer's ARN.
pub(crate) fn listener_arn(lb_arn: &str, id: &str) -> String {
    format!("{}/{id}", lb_arn.replacen(":loadbalancer/app/", ":listener/app/", 1))
}
/// `listener-rule/app/<lb>/<lbid>/<lid>/<id>` from the listener's ARN.
pub(crate) fn rule_arn(listener_arn: &str, id: &str) -> String {
    format!("{}/{id}", listener_arn.replacen(":listener/app/", ":listener-rule/app/", 1))
}
/// The last segment of an ARN (a listener's or rule's id).
pub(crate) fn last_segment(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or_default()
}

// ---- loading by ARN ----

fn scope_keys(ctx: &Ctx) -> (&str, &str) {
    (&ctx.scope.account, &ctx.scope.region)
}

pub(crate) fn lb_key(ctx: &Ctx, name: &str) -> String {
    let (a, r) = scope_keys(ctx);
    keys::load_balancer(a, r, name)
}
pub(crate) fn tg_key(ctx: &Ctx, name: &str) -> String {
    let (a, r) = scope_keys(ctx);
    keys::target_group(a, r, name)
}
pub(crate) fn listener_key(ctx: &Ctx, id: &str) -> String {
    let (a, r) = scope_keys(ctx);
    keys::listener(a, r, id)
}
pub(crate) fn rule_key(ctx: &Ctx, listener_id: &str, id: &str) -> String {
    let (a, r) = scope_keys(ctx);
    keys::rule(a, r, listener_id, id)
}

pub(crate) async fn load_lb(ctx: &Ctx, arn: &str) -> Result<Versioned<LoadBalancer>> {
    let p = arn_parts(ctx, arn, Kind::LoadBalancer)?;
    match ctx.db.get::<LoadBalancer>(&lb_key(ctx, &p[0])).await? {
        Some(d) if d.doc.load_balancer_arn == arn => Ok(d),
        _ => Err(lb_not_found(arn)),
    }
}
pub(crate) async fn load_tg(ctx: &Ctx, arn: &str) -> Result<Versioned<TargetGroup>> {
    let p = arn_parts(ctx, arn, Kind::TargetGroup)?;
    match ctx.db.get::<TargetGroup>(&tg_key(ctx, &p[0])).await? {
        Some(d) if d.doc.target_group_arn == arn => Ok(d),
        _ => Err(tg_not_found(arn)),
    }
}
pub(crate) async fn load_listener(ctx: &Ctx, arn: &str) -> Result<Versioned<Listener>> {
    let p = arn_parts(ctx, arn, Kind::Listener)?;
    match ctx.db.get::<Listener>(&listener_key(ctx, &p[2])).await? {
        Some(d) if d.doc.listener_arn == arn => Ok(d),
        _ => Err(listener_not_found(arn)),
    }
}
pub(crate) async fn load_rule(ctx: &Ctx, arn: &str) -> Result<Versioned<Rule>> {
    let p = arn_parts(ctx, arn, Kind::Rule)?;
    match ctx.db.get::<Rule>(&rule_key(ctx, &p[2], &p[3])).await? {
        Some(d) if d.doc.rule_arn == arn => Ok(d),
        _ => Err(rule_not_found(arn)),
    }
}

// ---- who forwards to which target group ----

/// Target group ARNs an action list forwards to.
pub(crate) fn forwarded_groups(actions: &[Action]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for a in actions {
        if let Some(t) = &a.target_group_arn {
            out.insert(t.clone());
        }
        if let Some(fc) = &a.forward_config {
            out.extend(fc.target_groups.iter().map(|t| t.target_group_arn.clone()));
        }
    }
    out
}

/// Every listener and rule of the caller's scope: who uses which target group.
pub(crate) struct Usage {
    pub listeners: Vec<Versioned<Listener>>,
    pub rules: Vec<Versioned<Rule>>,
}

impl Usage {
    pub(crate) async fn read(ctx: &Ctx) -> Result<Usage> {
        let (a, r) = scope_keys(ctx);
        let listeners = ctx.db.list::<Listener>(&keys::listeners(a, r)).await?;
        let rules = ctx.db.list::<Rule>(&keys::rules(a, r)).await?;
        Ok(Usage { listeners, rules })
    }

    /// ARNs of the load balancers whose listeners or rules forward to target group `tg`.
    pub(crate) fn load_balancers_of(&self, tg: &str) -> BTreeSet<String> {
        let lb_of: BTreeMap<&str, &str> =
            self.listeners.iter().map(|l| (l.doc.listener_arn.as_str(), l.doc.load_balancer_arn.as_str())).collect();
        let mut out = BTreeSet::new();
        for l in &self.listeners {
            if forwarded_groups(&l.doc.default_actions).contains(tg) {
                out.insert(l.doc.load_balancer_arn.clone());
            }
        }
        for r in &self.rules {
            if forwarded_groups(&r.doc.actions).contains(tg)
                && let Some(lb) = lb_of.get(r.doc.listener_arn.as_str())
            {
                out.insert((*lb).to_string());
            }
        }
        out
    }

    /// True when any listener or rule forwards to `tg`.
    pub(crate) fn in_use(&self, tg: &str) -> bool {
        self.listeners.iter().any(|l| forwarded_groups(&l.doc.default_actions).contains(tg))
            || self.rules.iter().any(|r| forwarded_groups(&r.doc.actions).contains(tg))
    }
}

// ---- output ----

pub(crate) fn tags_out(tags: &[Tag]) -> Value {
    Value::Array(tags.iter().map(|t| json!({"Key": t.key, "Value": t.value})).collect())
}

/// An action as AWS describes it: a forward shows `ForwardConfig` (with stickiness off
/// unless set) and, when it names one group, `TargetGroupArn` too.
pub(crate) fn action_out(a: &Action) -> Value {
    let mut o = Map::new();
    o.insert("Type".into(), json!(a.kind));
    if let Some(order) = a.order {
        o.insert("Order".into(), json!(order));
    }
    if let Some(t) = &a.target_group_arn {
        o.insert("TargetGroupArn".into(), json!(t));
    }
    if let Some(fc) = &a.forward_config {
        let groups: Vec<Value> = fc
            .target_groups
            .iter()
            .map(|t| json!({"TargetGroupArn": t.target_group_arn, "Weight": t.weight.unwrap_or(1)}))
            .collect();
        let sticky = fc.target_group_stickiness_config.clone().unwrap_or_else(|| json!({"Enabled": false}));
        o.insert("ForwardConfig".into(), json!({"TargetGroups": groups, "TargetGroupStickinessConfig": sticky}));
    }
    if let Some(r) = &a.redirect_config {
        o.insert("RedirectConfig".into(), r.clone());
    }
    if let Some(f) = &a.fixed_response_config {
        o.insert("FixedResponseConfig".into(), f.clone());
    }
    Value::Object(o)
}

pub(crate) fn actions_out(actions: &[Action]) -> Value {
    Value::Array(actions.iter().map(action_out).collect())
}

/// `Attributes` as a Key/Value list.
pub(crate) fn attributes_out(attrs: &BTreeMap<String, String>) -> Value {
    Value::Array(attrs.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect())
}

/// `Marker`/`PageSize` of a Describe call: the key to continue after and the page size.
pub(crate) fn page_of(input: &Value, prefix: &str) -> Result<(Option<String>, usize)> {
    let size = int_of(input, "PageSize").map_or(PAGE_MAX, |n| n.clamp(1, PAGE_MAX as i64) as usize);
    let after = crate::paging::after_key(str_of(input, "Marker"), prefix)
        .map_err(|_| Error::invalid("Marker", "The specified marker is not valid."))?;
    Ok((after, size))
}

/// Adds `NextMarker` to a Describe output when more follow.
pub(crate) fn with_marker(mut out: Value, next: Option<String>) -> Value {
    if let (Some(key), Some(obj)) = (next, out.as_object_mut()) {
        obj.insert("NextMarker".into(), Value::String(crate::paging::token_for(&key)));
    }
    out
}

/// One page of documents under `prefix` after `after`: the page and the key to continue
/// after, when more follow.
pub(crate) async fn page<T: serde::de::DeserializeOwned>(
    ctx: &Ctx,
    prefix: &str,
    after: Option<String>,
    size: usize,
) -> Result<(Vec<Versioned<T>>, Option<String>)> {
    let (docs, more) = ctx.db.range::<T>(prefix, after, size, false).await?;
    let next = if more { docs.last().map(|d| d.key.clone()) } else { None };
    Ok((docs, next))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn arns_nest_as_aws_spells_them() {
        let ctx = Ctx::in_memory("123456789012", "us-east-1");
        let lb = lb_arn(&ctx, "web", "0123456789abcdef");
        assert_eq!(lb, "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef");
        let l = listener_arn(&lb, "1111222233334444");
        assert_eq!(
            l,
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/web/0123456789abcdef/1111222233334444"
        );
        let r = rule_arn(&l, "5555666677778888");
        assert!(r.ends_with(":listener-rule/app/web/0123456789abcdef/1111222233334444/5555666677778888"));
        assert_eq!(last_segment(&r), "5555666677778888");
        assert_eq!(Kind::of(&lb), Some(Kind::LoadBalancer));
        assert_eq!(Kind::of(&l), Some(Kind::Listener));
        assert_eq!(Kind::of(&r), Some(Kind::Rule));
        assert_eq!(Kind::of(&tg_arn(&ctx, "tg", "ab")), Some(Kind::TargetGroup));
        assert_eq!(Kind::of("arn:aws:ecs:us-east-1:1:cluster/x"), None);
        assert_eq!(
            arn_parts(&ctx, &r, Kind::Rule).unwrap(),
            ["web", "0123456789abcdef", "1111222233334444", "5555666677778888"]
        );
    }

    #[test]
    fn malformed_arns_are_validation_errors_and_foreign_ones_not_found() {
        let ctx = Ctx::in_memory("123456789012", "us-east-1");
        let code = |e: Error| wharf_protocol::wire_error(&e, crate::ELBV2.name(), wharf_protocol::Protocol::Query).code;
        for bad in ["x", "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web", "arn:aws:s3:::b"] {
            assert_eq!(code(arn_parts(&ctx, bad, Kind::LoadBalancer).unwrap_err()), "ValidationError", "{bad}");
        }
        let west = "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/tg/0123456789abcdef";
        assert_eq!(code(arn_parts(&ctx, west, Kind::TargetGroup).unwrap_err()), "TargetGroupNotFound");
    }
}
