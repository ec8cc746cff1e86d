//! The listener rules a service that shifts traffic (BLUE_GREEN, LINEAR, CANARY) steers: each
//! `loadBalancers[]` entry names a production rule (and optionally a test rule) whose forward
//! action the deployment re-weights between the entry's two target groups. A rule is either
//! a stored rule or a listener's default rule (its `DefaultActions`); both are read and
//! written here, in the store layout of `wharf_types::elb`, so the data plane applies the
//! weights as soon as the service's write commits.

use crate::Scoped;
use crate::db::{Versioned, encode};
use serde_json::Value;
use wharf_store::{Compare, Op, Txn};
use wharf_types::Result;
use wharf_types::elb::{self, Action, ForwardConfig, Listener, Rule, WeightedTargetGroup};

/// A listener rule found by its ARN.
#[derive(Debug, Clone)]
pub enum RuleDoc {
    Rule(Versioned<Rule>),
    /// The listener's default rule: its actions are the listener's `DefaultActions`.
    Default(Versioned<Listener>),
}

impl RuleDoc {
    pub fn actions(&self) -> &[Action] {
        match self {
            RuleDoc::Rule(r) => &r.doc.actions,
            RuleDoc::Default(l) => &l.doc.default_actions,
        }
    }

    fn actions_mut(&mut self) -> &mut Vec<Action> {
        match self {
            RuleDoc::Rule(r) => &mut r.doc.actions,
            RuleDoc::Default(l) => &mut l.doc.default_actions,
        }
    }

    /// The target groups its forward action sends to, with their weights.
    pub fn forwards(&self) -> Vec<(String, u32)> {
        self.actions()
            .iter()
            .filter(|a| a.kind == "forward")
            .flat_map(|a| match &a.forward_config {
                Some(fc) => {
                    fc.target_groups.iter().map(|t| (t.target_group_arn.clone(), t.weight.unwrap_or(1))).collect()
                }
                None => a.target_group_arn.iter().map(|t| (t.clone(), 1)).collect::<Vec<_>>(),
            })
            .collect()
    }

    /// Whether its only action is a forward (what a rule ECS re-weights must be).
    pub fn forwards_only(&self) -> bool {
        let actions = self.actions();
        actions.len() == 1 && actions[0].kind == "forward"
    }
}

/// The rule with ARN `arn` in the caller's scope: a stored rule, or a listener's default
/// rule. `None` when there is no such rule.
pub async fn load_rule(s: &Scoped, arn: &str) -> Result<Option<RuleDoc>> {
    let Some((_, path)) = arn.split_once(":listener-rule/app/") else { return Ok(None) };
    let parts: Vec<&str> = path.split('/').collect();
    let [_lb, _lb_id, listener_id, rule_id] = parts.as_slice() else { return Ok(None) };
    let (account, region) = (&s.scope.account, &s.scope.region);
    if let Some(r) = s.db.get::<Rule>(&elb::keys::rule(account, region, listener_id, rule_id)).await?
        && r.doc.rule_arn == arn
    {
        return Ok(Some(RuleDoc::Rule(r)));
    }
    Ok(s.db
        .get::<Listener>(&elb::keys::listener(account, region, listener_id))
        .await?
        .filter(|l| l.doc.default_rule_arn.as_deref() == Some(arn))
        .map(RuleDoc::Default))
}

/// ELBv2 weights (integers 0–999) for green's share `green_percent` of a rule's traffic
/// between `green` and `blue`: whole percents as they are, tenths of a percent (a canary of
/// 2.5 %) scaled by ten.
pub fn weights(green: &str, blue: &str, green_percent: f64) -> Vec<(String, u32)> {
    let p = green_percent.clamp(0.0, 100.0);
    let (g, total) = if p.fract().abs() < 1e-9 { (p.round() as u32, 100) } else { ((p * 10.0).round() as u32, 1000) };
    vec![(blue.to_string(), total - g), (green.to_string(), g)]
}

/// Makes rule `arn` forward with `weights` (keeping its stickiness), appending the write —
/// guarded by the rule's revision — to `txn`. Nothing is written when it already does.
/// Returns false when the rule no longer exists or no longer forwards.
pub async fn set_weights(s: &Scoped, arn: &str, weights: &[(String, u32)], txn: &mut Txn) -> Result<bool> {
    let Some(mut rule) = load_rule(s, arn).await? else { return Ok(false) };
    let mut current = rule.forwards();
    let mut wanted = weights.to_vec();
    current.sort();
    wanted.sort();
    if current == wanted {
        return Ok(true);
    }
    let Some(action) = rule.actions_mut().iter_mut().find(|a| a.kind == "forward") else { return Ok(false) };
    let stickiness = action.forward_config.as_ref().and_then(|f| f.target_group_stickiness_config.clone());
    action.forward_config = Some(ForwardConfig {
        target_groups: weights
            .iter()
            .map(|(arn, w)| WeightedTargetGroup { target_group_arn: arn.clone(), weight: Some(*w) })
            .collect(),
        target_group_stickiness_config: stickiness,
    });
    // AWS describes a one-group forward with its TargetGroupArn too; a weighted one without.
    action.target_group_arn = None;
    let (key, rev, doc) = match &rule {
        RuleDoc::Rule(r) => (r.key.clone(), r.rev, encode(&r.doc)?),
        RuleDoc::Default(l) => (l.key.clone(), l.rev, encode(&l.doc)?),
    };
    txn.compares.push(Compare::ModRevision(key.clone(), rev));
    txn.ops.push(Op::put(key, doc));
    Ok(true)
}

/// The `advancedConfiguration` of a `loadBalancers[]` entry.
pub fn advanced(lb: &Value) -> Option<&Value> {
    lb.get("advancedConfiguration").filter(|v| v.is_object())
}

fn str_of<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

/// An entry's two target groups: (`targetGroupArn`, `alternateTargetGroupArn`).
pub fn target_group_pair(lb: &Value) -> Option<(&str, &str)> {
    Some((str_of(lb, "targetGroupArn")?, str_of(advanced(lb)?, "alternateTargetGroupArn")?))
}

pub fn production_rule(lb: &Value) -> Option<&str> {
    str_of(advanced(lb)?, "productionListenerRule")
}

pub fn test_rule(lb: &Value) -> Option<&str> {
    str_of(advanced(lb)?, "testListenerRule")
}

/// The other target group of an entry's pair.
pub fn other_group<'a>(lb: &'a Value, group: &str) -> Option<&'a str> {
    let (a, b) = target_group_pair(lb)?;
    if group == a { Some(b) } else { Some(a) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_percents_or_tenths() {
        assert_eq!(weights("g", "b", 0.0), vec![("b".into(), 100), ("g".into(), 0)]);
        assert_eq!(weights("g", "b", 25.0), vec![("b".into(), 75), ("g".into(), 25)]);
        assert_eq!(weights("g", "b", 100.0), vec![("b".into(), 0), ("g".into(), 100)]);
        assert_eq!(weights("g", "b", 2.5), vec![("b".into(), 975), ("g".into(), 25)]);
        assert_eq!(weights("g", "b", 0.1), vec![("b".into(), 999), ("g".into(), 1)]);
    }
}
