//! Listener rules: priorities 1–50000 unique per listener, conditions and actions checked by
//! [`validate`]. Every rule write rewrites its listener under a compare, so two writes that
//! would give one priority to two rules cannot both commit. The default rule is the
//! listener's `DefaultActions`, shown by DescribeRules with `IsDefault` and priority `default`.

use super::listeners::claim_groups;
use super::*;
use crate::db::encode;
use wharf_store::{Compare, Op, Txn};
use wharf_types::elb::Condition;
use wharf_types::{InUse, Limit};

/// ELBv2's default limit of rules per listener (the default rule not counted).
pub(crate) const MAX_RULES: usize = 100;

fn rules_of(usage: &Usage, listener_arn: &str) -> Vec<Versioned<Rule>> {
    usage.rules.iter().filter(|r| r.doc.listener_arn == listener_arn).cloned().collect()
}

fn priority_in_use(p: i64) -> Error {
    Error::in_use(InUse::RulePriority, format!("Priority '{p}' is currently in use"))
}

/// A listener's rewrite under a compare: serialises rule writes per listener.
fn touch(l: &Versioned<Listener>, txn: &mut Txn) -> Result<()> {
    txn.compares.push(Compare::ModRevision(l.key.clone(), l.rev));
    txn.ops.push(Op::put(l.key.clone(), encode(&l.doc)?));
    Ok(())
}

pub(crate) async fn create(ctx: &Ctx, input: Value) -> Result<Value> {
    let listener_arn = required(&input, "ListenerArn")?.to_string();
    let priority =
        int_of(&input, "Priority").ok_or_else(|| Error::invalid("Priority", "A priority must be specified"))?;
    let conditions = validate::conditions(list_of(&input, "Conditions"))?;
    let actions = validate::actions("Actions", list_of(&input, "Actions"))?;
    let tags = load_balancers::tags_in(&input)?;
    let rule = ctx
        .db
        .update(|| {
            let (listener_arn, conditions, actions, tags) =
                (listener_arn.clone(), conditions.clone(), actions.clone(), tags.clone());
            async move {
                let l = load_listener(ctx, &listener_arn).await?;
                let usage = Usage::read(ctx).await?;
                let siblings = rules_of(&usage, &listener_arn);
                if siblings.iter().any(|r| r.doc.priority == priority.to_string()) {
                    return Err(priority_in_use(priority));
                }
                if siblings.len() >= MAX_RULES {
                    return Err(Error::limit_exceeded(
                        Limit::Rules,
                        format!("A listener can have at most {MAX_RULES} rules besides its default rule"),
                    ));
                }
                let id = wharf_types::hex_id(16);
                let doc = Rule {
                    rule_arn: rule_arn(&listener_arn, &id),
                    listener_arn: listener_arn.clone(),
                    priority: priority.to_string(),
                    conditions,
                    actions,
                    is_default: false,
                    tags,
                    extra: Map::new(),
                };
                let key = rule_key(ctx, last_segment(&listener_arn), &id);
                let mut txn = Txn {
                    compares: vec![Compare::ModRevision(key.clone(), 0)],
                    ops: vec![Op::put(key, encode(&doc)?)],
                };
                touch(&l, &mut txn)?;
                claim_groups(ctx, &usage, &l.doc.load_balancer_arn, &doc.actions, &mut txn).await?;
                Ok((Some(txn), doc))
            }
        })
        .await?;
    Ok(json!({"Rules": [rule_out(&rule)]}))
}

fn condition_out(c: &Condition) -> Value {
    let mut o = Map::new();
    o.insert("Field".into(), json!(c.field));
    if !c.values.is_empty() {
        o.insert("Values".into(), json!(c.values));
    }
    for (k, v) in &c.extra {
        o.insert(k.clone(), v.clone());
    }
    Value::Object(o)
}

pub(crate) fn rule_out(r: &Rule) -> Value {
    json!({
        "RuleArn": r.rule_arn,
        "Priority": r.priority,
        "Conditions": r.conditions.iter().map(condition_out).collect::<Vec<_>>(),
        "Actions": actions_out(&r.actions),
        "IsDefault": r.is_default,
    })
}

/// The listener's default rule as DescribeRules shows it.
fn default_rule(l: &Listener) -> Rule {
    Rule {
        rule_arn: l.default_rule_arn.clone().unwrap_or_else(|| rule_arn(&l.listener_arn, "default")),
        listener_arn: l.listener_arn.clone(),
        priority: "default".into(),
        conditions: vec![],
        actions: l.default_actions.clone(),
        is_default: true,
        tags: vec![],
        extra: Map::new(),
    }
}

/// A rule by ARN: a stored rule, or a listener's default rule (with the listener).
enum Found {
    Stored(Versioned<Rule>),
    Default(Versioned<Listener>),
}

async fn find(ctx: &Ctx, arn: &str) -> Result<Found> {
    match load_rule(ctx, arn).await {
        Ok(r) => Ok(Found::Stored(r)),
        Err(Error::NotFound { resource: Resource::Rule, .. }) => {
            let p = arn_parts(ctx, arn, Kind::Rule)?;
            match ctx.db.get::<Listener>(&listener_key(ctx, &p[2])).await? {
                Some(l) if l.doc.default_rule_arn.as_deref() == Some(arn) => Ok(Found::Default(l)),
                _ => Err(rule_not_found(arn)),
            }
        }
        Err(e) => Err(e),
    }
}

fn sort_key(r: &Rule) -> (u8, i64) {
    match r.priority.parse::<i64>() {
        Ok(p) => (0, p),
        Err(_) => (1, 0),
    }
}

pub(crate) async fn describe(ctx: &Ctx, input: Value) -> Result<Value> {
    let arns = strings_of(&input, "RuleArns");
    let listener = str_of(&input, "ListenerArn");
    let mut rules = match (listener, arns.is_empty()) {
        (Some(_), false) => {
            return Err(Error::invalid("RuleArns", "A listener ARN and rule ARNs cannot be specified together"));
        }
        (None, true) => return Err(Error::invalid("ListenerArn", "A listener ARN or rule ARNs must be specified")),
        (None, false) => {
            let mut out = Vec::new();
            for a in &arns {
                out.push(match find(ctx, a).await? {
                    Found::Stored(r) => r.doc,
                    Found::Default(l) => default_rule(&l.doc),
                });
            }
            out
        }
        (Some(arn), true) => {
            let l = load_listener(ctx, arn).await?;
            let prefix = keys::rules_of(&ctx.scope.account, &ctx.scope.region, last_segment(arn));
            let mut out: Vec<Rule> = ctx.db.list::<Rule>(&prefix).await?.into_iter().map(|r| r.doc).collect();
            out.push(default_rule(&l.doc));
            out
        }
    };
    if listener.is_some() {
        rules.sort_by_key(sort_key);
        // Pages are positions in priority order; the marker is the position, hex-encoded
        // like every other marker.
        let start = match str_of(&input, "Marker") {
            None => 0,
            Some(m) => crate::paging::after_key(Some(m), "")
                .ok()
                .flatten()
                .and_then(|s| s.strip_prefix("rule#").and_then(|n| n.parse::<usize>().ok()))
                .ok_or_else(|| Error::invalid("Marker", "The specified marker is not valid."))?,
        };
        let size = int_of(&input, "PageSize").map_or(PAGE_MAX, |n| n.clamp(1, PAGE_MAX as i64) as usize);
        let end = (start + size).min(rules.len());
        let out: Vec<Value> = rules.get(start..end).unwrap_or_default().iter().map(rule_out).collect();
        let next = (end < rules.len()).then(|| format!("rule#{end}"));
        return Ok(with_marker(json!({"Rules": out}), next));
    }
    Ok(json!({"Rules": rules.iter().map(rule_out).collect::<Vec<_>>()}))
}

pub(crate) async fn modify(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "RuleArn")?.to_string();
    let conditions = match input.get("Conditions") {
        Some(_) => Some(validate::conditions(list_of(&input, "Conditions"))?),
        None => None,
    };
    let actions = match input.get("Actions") {
        Some(_) => Some(validate::actions("Actions", list_of(&input, "Actions"))?),
        None => None,
    };
    let rule = ctx
        .db
        .update(|| {
            let (arn, conditions, actions) = (arn.clone(), conditions.clone(), actions.clone());
            async move {
                let usage = Usage::read(ctx).await?;
                match find(ctx, &arn).await? {
                    Found::Default(mut l) => {
                        if conditions.is_some() {
                            return Err(Error::NotPermitted(
                                "The conditions of a default rule cannot be modified".into(),
                            ));
                        }
                        let mut txn = Txn::default();
                        if let Some(a) = actions {
                            claim_groups(ctx, &usage, &l.doc.load_balancer_arn, &a, &mut txn).await?;
                            l.doc.default_actions = a;
                        }
                        touch(&l, &mut txn)?;
                        Ok((Some(txn), default_rule(&l.doc)))
                    }
                    Found::Stored(r) => {
                        let l = load_listener(ctx, &r.doc.listener_arn).await?;
                        let mut doc = r.doc.clone();
                        let mut txn = Txn { compares: vec![Compare::ModRevision(r.key.clone(), r.rev)], ops: vec![] };
                        if let Some(c) = conditions {
                            doc.conditions = c;
                        }
                        if let Some(a) = actions {
                            claim_groups(ctx, &usage, &l.doc.load_balancer_arn, &a, &mut txn).await?;
                            doc.actions = a;
                        }
                        txn.ops.push(Op::put(r.key.clone(), encode(&doc)?));
                        touch(&l, &mut txn)?;
                        Ok((Some(txn), doc))
                    }
                }
            }
        })
        .await?;
    Ok(json!({"Rules": [rule_out(&rule)]}))
}

pub(crate) async fn delete(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "RuleArn")?.to_string();
    ctx.db
        .update(|| {
            let arn = arn.clone();
            async move {
                match find(ctx, &arn).await? {
                    Found::Default(_) => Err(Error::NotPermitted("A default rule cannot be deleted".into())),
                    Found::Stored(r) => Ok((
                        Some(Txn {
                            compares: vec![Compare::ModRevision(r.key.clone(), r.rev)],
                            ops: vec![Op::delete(r.key.clone())],
                        }),
                        (),
                    )),
                }
            }
        })
        .await?;
    Ok(json!({}))
}

pub(crate) async fn set_priorities(ctx: &Ctx, input: Value) -> Result<Value> {
    let mut pairs = Vec::new();
    for p in list_of(&input, "RulePriorities") {
        let arn = required(p, "RuleArn")?.to_string();
        let priority = int_of(p, "Priority").ok_or_else(|| {
            Error::invalid("RulePriorities", format!("A priority must be specified for rule '{arn}'"))
        })?;
        pairs.push((arn, priority));
    }
    if pairs.is_empty() {
        return Err(Error::invalid("RulePriorities", "At least one rule priority must be specified"));
    }
    let mut seen = BTreeSet::new();
    for (arn, _) in &pairs {
        if !seen.insert(arn.clone()) {
            return Err(Error::invalid("RulePriorities", format!("Rule '{arn}' is specified more than once")));
        }
    }
    let rules = ctx
        .db
        .update(|| {
            let pairs = pairs.clone();
            async move {
                let mut listener: Option<String> = None;
                let mut updated = Vec::new();
                let mut txn = Txn::default();
                for (arn, p) in &pairs {
                    let r = match find(ctx, arn).await? {
                        Found::Default(_) => {
                            return Err(Error::NotPermitted("The priority of a default rule cannot be changed".into()));
                        }
                        Found::Stored(r) => r,
                    };
                    match &listener {
                        Some(l) if *l != r.doc.listener_arn => {
                            return Err(Error::invalid("RulePriorities", "All rules must belong to the same listener"));
                        }
                        _ => listener = Some(r.doc.listener_arn.clone()),
                    }
                    txn.compares.push(Compare::ModRevision(r.key.clone(), r.rev));
                    let doc = Rule { priority: p.to_string(), ..r.doc.clone() };
                    txn.ops.push(Op::put(r.key.clone(), encode(&doc)?));
                    updated.push(doc);
                }
                let listener_arn = listener.unwrap_or_default();
                let l = load_listener(ctx, &listener_arn).await?;
                let usage = Usage::read(ctx).await?;
                // The final priorities of every rule of the listener must be distinct.
                let mut taken: BTreeMap<String, String> = BTreeMap::new();
                for r in rules_of(&usage, &listener_arn) {
                    let final_p = updated
                        .iter()
                        .find(|u| u.rule_arn == r.doc.rule_arn)
                        .map_or(r.doc.priority.clone(), |u| u.priority.clone());
                    if let Some(_other) = taken.insert(final_p.clone(), r.doc.rule_arn.clone()) {
                        return Err(priority_in_use(final_p.parse().unwrap_or_default()));
                    }
                }
                touch(&l, &mut txn)?;
                Ok((Some(txn), updated))
            }
        })
        .await?;
    Ok(json!({"Rules": rules.iter().map(rule_out).collect::<Vec<_>>()}))
}
