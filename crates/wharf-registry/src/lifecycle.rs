//! ECR lifecycle policies: parsing and validating the policy text as ECR does, and a pure
//! evaluation that says which images a policy expires. The ECR API uses it for
//! `PutLifecyclePolicy` (validation) and the lifecycle policy preview; the lifecycle
//! controller uses it to expire images. It never touches the store itself.
//!
//! Evaluation follows ECR's documented rules:
//! - rules run from the lowest `rulePriority` to the highest;
//! - an image is expired by at most one rule;
//! - an image that matches the tag selection of a higher-priority rule (a lower number) is
//!   never expired by a lower-priority rule, though it still counts toward that rule's
//!   `imageCountMoreThan` (ECR's "identified but not marked");
//! - expiry always takes the oldest images first (by push time);
//! - `tagPrefixList` / `tagPatternList` match when every listed prefix / pattern matches at
//!   least one of the image's tags;
//! - a rule selecting `any` must have the highest `rulePriority`.

use crate::wildcard_match;
use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// One day, in seconds (`countUnit: days`).
const DAY_SECS: f64 = 86_400.0;
/// ECR allows at most four `*` in one `tagPatternList` entry.
const MAX_WILDCARDS: usize = 4;

/// Which images a rule looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagSelection {
    Untagged,
    Any,
    /// Tagged images whose tags cover every prefix (`tagPrefixList`).
    Prefixes(Vec<String>),
    /// Tagged images whose tags cover every wildcard pattern (`tagPatternList`).
    Patterns(Vec<String>),
}

/// What makes a selected image expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Keep the `n` most recently pushed; expire the rest.
    MoreThan(u64),
    /// Expire images pushed more than `n` days ago.
    SincePushedDays(u64),
    /// Expire images last pulled (or, never pulled, pushed) more than `n` days ago.
    SincePulledDays(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub priority: i64,
    pub description: Option<String>,
    pub selection: TagSelection,
    pub count: Count,
}

/// A validated policy; rules sorted by priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// What is wrong with a policy text, worded for `InvalidParameterException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation failure: {0}'"
)]
pub struct PolicyError(pub String);

fn fail<T>(why: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(why.into()))
}

/// The image facts evaluation needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub digest: String,
    pub tags: Vec<String>,
    /// Epoch seconds.
    pub pushed_at: f64,
    pub last_pulled_at: Option<f64>,
}

/// An image a policy expires, and the rule that does it.
#[derive(Debug, Clone, PartialEq)]
pub struct Expiry {
    pub digest: String,
    pub rule_priority: i64,
}

fn string_list(sel: &serde_json::Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, PolicyError> {
    let Some(v) = sel.get(field) else { return Ok(None) };
    let Some(items) = v.as_array() else { return fail(format!("{field} must be a list of strings")) };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str() {
            Some(s) if !s.is_empty() => out.push(s.to_string()),
            _ => return fail(format!("{field} entries must be non-empty strings")),
        }
    }
    if out.is_empty() {
        return fail(format!("{field} must not be empty"));
    }
    Ok(Some(out))
}

fn positive_int(v: Option<&Value>, field: &str) -> Result<u64, PolicyError> {
    match v.and_then(Value::as_u64) {
        Some(n) if n >= 1 => Ok(n),
        Some(_) => fail(format!("{field} must be greater than 0")),
        None => fail(format!("{field} is required and must be a positive integer")),
    }
}

fn parse_rule(v: &Value) -> Result<Rule, PolicyError> {
    let Some(rule) = v.as_object() else { return fail("each rule must be an object") };
    for key in rule.keys() {
        if !matches!(key.as_str(), "rulePriority" | "description" | "selection" | "action") {
            return fail(format!("unknown rule property '{key}'"));
        }
    }
    let priority = match rule.get("rulePriority").and_then(Value::as_i64) {
        Some(p) if p >= 1 => p,
        Some(_) => return fail("rulePriority must be greater than 0"),
        None => return fail("rulePriority is required and must be an integer"),
    };
    let description = match rule.get("description") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return fail("description must be a string"),
    };
    match rule.get("action").and_then(|a| a.get("type")).and_then(Value::as_str) {
        Some("expire") => {}
        Some(other) => return fail(format!("action type '{other}' is not supported; use 'expire'")),
        None => return fail(format!("rule {priority}: action.type is required")),
    }
    let Some(sel) = rule.get("selection").and_then(Value::as_object) else {
        return fail(format!("rule {priority}: selection is required"));
    };
    for key in sel.keys() {
        if !matches!(
            key.as_str(),
            "tagStatus" | "tagPrefixList" | "tagPatternList" | "countType" | "countUnit" | "countNumber"
        ) {
            return fail(format!("rule {priority}: unknown selection property '{key}'"));
        }
    }
    let prefixes = string_list(sel, "tagPrefixList")?;
    let patterns = string_list(sel, "tagPatternList")?;
    let selection = match sel.get("tagStatus").and_then(Value::as_str) {
        Some("tagged") => match (prefixes, patterns) {
            (Some(_), Some(_)) => {
                return fail(format!("rule {priority}: tagPrefixList and tagPatternList cannot both be specified"));
            }
            (Some(p), None) => TagSelection::Prefixes(p),
            (None, Some(p)) => {
                if let Some(bad) = p.iter().find(|p| p.matches('*').count() > MAX_WILDCARDS) {
                    return fail(format!(
                        "rule {priority}: tagPatternList entry '{bad}' has more than {MAX_WILDCARDS} wildcards"
                    ));
                }
                TagSelection::Patterns(p)
            }
            (None, None) => {
                return fail(format!(
                    "rule {priority}: tagPrefixList or tagPatternList is required when tagStatus is 'tagged'"
                ));
            }
        },
        Some(status @ ("untagged" | "any")) => {
            if prefixes.is_some() || patterns.is_some() {
                return fail(format!(
                    "rule {priority}: tagPrefixList and tagPatternList are only allowed when tagStatus is 'tagged'"
                ));
            }
            if status == "any" { TagSelection::Any } else { TagSelection::Untagged }
        }
        Some(other) => {
            return fail(format!("rule {priority}: tagStatus '{other}' is not one of tagged, untagged, any"));
        }
        None => return fail(format!("rule {priority}: selection.tagStatus is required")),
    };
    let number = positive_int(sel.get("countNumber"), "countNumber")?;
    let unit = sel.get("countUnit");
    let count = match sel.get("countType").and_then(Value::as_str) {
        Some("imageCountMoreThan") => {
            if unit.is_some() {
                return fail(format!("rule {priority}: countUnit is not allowed with countType imageCountMoreThan"));
            }
            Count::MoreThan(number)
        }
        Some(kind @ ("sinceImagePushed" | "sinceImagePulled")) => {
            match unit.and_then(Value::as_str) {
                Some("days") => {}
                Some(other) => {
                    return fail(format!("rule {priority}: countUnit '{other}' is not supported; use 'days'"));
                }
                None => return fail(format!("rule {priority}: countUnit is required with countType {kind}")),
            }
            if kind == "sinceImagePushed" { Count::SincePushedDays(number) } else { Count::SincePulledDays(number) }
        }
        Some(other) => return fail(format!("rule {priority}: countType '{other}' is not supported")),
        None => return fail(format!("rule {priority}: selection.countType is required")),
    };
    Ok(Rule { priority, description, selection, count })
}

impl Policy {
    /// Parses and validates a lifecycle policy text.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let Ok(doc) = serde_json::from_str::<Value>(text) else { return fail("the policy is not valid JSON") };
        let Some(obj) = doc.as_object() else { return fail("the policy must be a JSON object") };
        if let Some(key) = obj.keys().find(|k| k.as_str() != "rules") {
            return fail(format!("unknown property '{key}'"));
        }
        let Some(raw) = obj.get("rules").and_then(Value::as_array) else { return fail("'rules' is required") };
        if raw.is_empty() {
            return fail("'rules' must contain at least one rule");
        }
        let mut rules = raw.iter().map(parse_rule).collect::<Result<Vec<_>, _>>()?;
        rules.sort_by_key(|r| r.priority);
        if let Some(w) = rules.windows(2).find(|w| w[0].priority == w[1].priority) {
            return fail(format!("rulePriority {} is used by more than one rule", w[0].priority));
        }
        if let Some(i) = rules.iter().position(|r| r.selection == TagSelection::Any)
            && i + 1 != rules.len()
        {
            return fail("a rule with tagStatus 'any' must have the highest rulePriority");
        }
        Ok(Policy { rules })
    }
}

impl TagSelection {
    pub fn matches(&self, tags: &[String]) -> bool {
        match self {
            TagSelection::Any => true,
            TagSelection::Untagged => tags.is_empty(),
            TagSelection::Prefixes(ps) => ps.iter().all(|p| tags.iter().any(|t| t.starts_with(p.as_str()))),
            TagSelection::Patterns(ps) => ps.iter().all(|p| tags.iter().any(|t| wildcard_match(p, t))),
        }
    }
}

/// Which of `images` `policy` expires at time `now` (epoch seconds), oldest first within a
/// rule, rules in priority order. Pure: the same input always gives the same answer.
pub fn evaluate(policy: &Policy, images: &[Candidate], now: f64) -> Vec<Expiry> {
    // Newest first; ties broken by digest so the answer never depends on input order.
    let mut order: Vec<&Candidate> = images.iter().collect();
    order.sort_by(|a, b| b.pushed_at.total_cmp(&a.pushed_at).then_with(|| a.digest.cmp(&b.digest)));
    let mut protected: HashSet<&str> = HashSet::new();
    let mut expired: HashMap<&str, i64> = HashMap::new();
    let mut out = Vec::new();
    for rule in &policy.rules {
        let matched: Vec<&Candidate> = order.iter().copied().filter(|c| rule.selection.matches(&c.tags)).collect();
        let doomed: Vec<&Candidate> = match rule.count {
            Count::MoreThan(n) => matched.iter().copied().skip(n as usize).collect(),
            Count::SincePushedDays(d) => {
                matched.iter().copied().filter(|c| now - c.pushed_at > d as f64 * DAY_SECS).collect()
            }
            Count::SincePulledDays(d) => matched
                .iter()
                .copied()
                .filter(|c| now - c.last_pulled_at.unwrap_or(c.pushed_at).max(c.pushed_at) > d as f64 * DAY_SECS)
                .collect(),
        };
        // Oldest first, as ECR expires them.
        for c in doomed.into_iter().rev() {
            if protected.contains(c.digest.as_str()) || expired.contains_key(c.digest.as_str()) {
                continue;
            }
            expired.insert(&c.digest, rule.priority);
            out.push(Expiry { digest: c.digest.clone(), rule_priority: rule.priority });
        }
        protected.extend(matched.iter().map(|c| c.digest.as_str()));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: f64 = 1_000_000_000.0;

    fn img(digest: &str, tags: &[&str], days_ago: f64) -> Candidate {
        Candidate {
            digest: digest.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            pushed_at: NOW - days_ago * DAY_SECS,
            last_pulled_at: None,
        }
    }

    fn policy(rules: Value) -> Policy {
        Policy::parse(&json!({ "rules": rules }).to_string()).unwrap()
    }

    fn rule(priority: i64, selection: Value) -> Value {
        json!({"rulePriority": priority, "selection": selection, "action": {"type": "expire"}})
    }

    fn digests(e: &[Expiry]) -> Vec<&str> {
        e.iter().map(|e| e.digest.as_str()).collect()
    }

    #[test]
    fn keeps_only_the_newest_n() {
        let p =
            policy(json!([rule(1, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2}))]));
        let images = [img("a", &["1"], 4.0), img("b", &["2"], 3.0), img("c", &[], 2.0), img("d", &["4"], 1.0)];
        assert_eq!(digests(&evaluate(&p, &images, NOW)), ["a", "b"]);
    }

    #[test]
    fn age_rule_expires_older_images() {
        let p = policy(json!([rule(
            1,
            json!({"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14})
        )]));
        let images = [img("old", &[], 15.0), img("young", &[], 13.0), img("tagged-old", &["v"], 20.0)];
        assert_eq!(digests(&evaluate(&p, &images, NOW)), ["old"]);
    }

    /// AWS's "Filtering on multiple rules", Example A: rule 2 may not expire image B, which
    /// rule 1 (higher priority) matched and keeps.
    #[test]
    fn aws_example_a() {
        let p = policy(json!([
            rule(
                1,
                json!({"tagStatus": "tagged", "tagPrefixList": ["prod"], "countType": "imageCountMoreThan", "countNumber": 1})
            ),
            rule(
                2,
                json!({"tagStatus": "tagged", "tagPrefixList": ["beta"], "countType": "imageCountMoreThan", "countNumber": 1})
            ),
        ]));
        let images =
            [img("A", &["beta-1", "prod-1"], 10.0), img("B", &["beta-2", "prod-2"], 9.0), img("C", &["beta-3"], 8.0)];
        let e = evaluate(&p, &images, NOW);
        assert_eq!(e, vec![Expiry { digest: "A".into(), rule_priority: 1 }]);
    }

    /// AWS's Example B: every prefix of the list must match one of the image's tags.
    #[test]
    fn aws_example_b() {
        let p = policy(json!([
            rule(
                1,
                json!({"tagStatus": "tagged", "tagPrefixList": ["alpha", "beta"], "countType": "imageCountMoreThan", "countNumber": 1})
            ),
            rule(
                2,
                json!({"tagStatus": "tagged", "tagPrefixList": ["beta"], "countType": "imageCountMoreThan", "countNumber": 1})
            ),
        ]));
        let images = [
            img("A", &["alpha-1", "beta-1", "gamma-1"], 10.0),
            img("B", &["alpha-2", "beta-2", "gamma-2"], 9.0),
            img("C", &["alpha-3", "beta-3", "gamma-3"], 8.0),
        ];
        assert_eq!(digests(&evaluate(&p, &images, NOW)), ["A", "B"]);
        assert!(evaluate(&p, &images, NOW).iter().all(|e| e.rule_priority == 1));
    }

    #[test]
    fn patterns_use_wildcards() {
        let p = policy(json!([rule(
            1,
            json!({"tagStatus": "tagged", "tagPatternList": ["prod*"], "countType": "imageCountMoreThan", "countNumber": 1})
        )]));
        let images = [img("a", &["prod-1"], 3.0), img("b", &["dev-1"], 2.0), img("c", &["prod-2"], 1.0)];
        assert_eq!(digests(&evaluate(&p, &images, NOW)), ["a"]);
    }

    #[test]
    fn validation_follows_ecr() {
        let bad = [
            json!({}),
            json!({"rules": []}),
            json!({"rules": [rule(1, json!({"tagStatus": "tagged", "countType": "imageCountMoreThan", "countNumber": 1}))]}),
            json!({"rules": [rule(1, json!({"tagStatus": "untagged", "tagPrefixList": ["a"], "countType": "imageCountMoreThan", "countNumber": 1}))]}),
            json!({"rules": [rule(1, json!({"tagStatus": "any", "countType": "sinceImagePushed", "countNumber": 1}))]}),
            json!({"rules": [rule(1, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countUnit": "days", "countNumber": 1}))]}),
            json!({"rules": [rule(1, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 0}))]}),
            json!({"rules": [rule(1, json!({"tagStatus": "tagged", "tagPatternList": ["a*b*c*d*e*f"], "countType": "imageCountMoreThan", "countNumber": 1}))]}),
            json!({"rules": [
                rule(1, json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1})),
                rule(1, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})),
            ]}),
            json!({"rules": [
                rule(1, json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1})),
                rule(2, json!({"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1})),
            ]}),
            json!({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "delete"}}]}),
        ];
        for p in bad {
            assert!(Policy::parse(&p.to_string()).is_err(), "accepted {p}");
        }
        assert!(Policy::parse("not json").is_err());
    }

    fn arb_selection() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!({"tagStatus": "untagged"})),
            Just(json!({"tagStatus": "tagged", "tagPrefixList": ["v"]})),
            Just(json!({"tagStatus": "tagged", "tagPatternList": ["*-rc*"]})),
            Just(json!({"tagStatus": "tagged", "tagPrefixList": ["v", "prod"]})),
        ]
    }

    fn arb_policy() -> impl Strategy<Value = Policy> {
        (prop::collection::vec((arb_selection(), 1u64..4, any::<bool>()), 1..4), any::<bool>(), 1u64..4).prop_map(
            |(rules, with_any, any_n)| {
                let mut out: Vec<Value> = rules
                    .into_iter()
                    .enumerate()
                    .map(|(i, (mut sel, n, by_age))| {
                        let obj = sel.as_object_mut().unwrap();
                        if by_age {
                            obj.insert("countType".into(), json!("sinceImagePushed"));
                            obj.insert("countUnit".into(), json!("days"));
                        } else {
                            obj.insert("countType".into(), json!("imageCountMoreThan"));
                        }
                        obj.insert("countNumber".into(), json!(n));
                        rule(i as i64 + 1, sel)
                    })
                    .collect();
                if with_any {
                    let n = out.len() as i64 + 1;
                    out.push(rule(
                        n,
                        json!({"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": any_n}),
                    ));
                }
                policy(Value::Array(out))
            },
        )
    }

    fn arb_images() -> impl Strategy<Value = Vec<Candidate>> {
        let tag = prop_oneof![Just("v1"), Just("v2-rc1"), Just("prod"), Just("latest"), Just("v3")];
        prop::collection::vec((prop::collection::vec(tag, 0..3), 0u32..30), 0..12).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (tags, days))| {
                    let mut tags: Vec<&str> = tags;
                    tags.dedup();
                    img(&format!("sha256:{i:02}"), &tags, f64::from(days) + i as f64 / 100.0)
                })
                .collect()
        })
    }

    proptest! {
        /// An image is expired at most once; a count rule never expires one of the newest n
        /// it matches; a kept image is never expired by a rule after one that matched it.
        #[test]
        fn evaluation_invariants(p in arb_policy(), images in arb_images()) {
            let out = evaluate(&p, &images, NOW);
            let mut seen = HashSet::new();
            for e in &out {
                prop_assert!(seen.insert(e.digest.clone()), "expired twice: {}", e.digest);
            }
            for e in &out {
                let r = p.rules.iter().find(|r| r.priority == e.rule_priority).unwrap();
                let c = images.iter().find(|c| c.digest == e.digest).unwrap();
                prop_assert!(r.selection.matches(&c.tags));
                for earlier in p.rules.iter().filter(|x| x.priority < r.priority) {
                    prop_assert!(!earlier.selection.matches(&c.tags), "image matched an earlier rule");
                }
                if let Count::MoreThan(n) = r.count {
                    let newer = images.iter().filter(|o| r.selection.matches(&o.tags) && o.pushed_at > c.pushed_at).count();
                    prop_assert!(newer as u64 >= n, "expired one of the newest {}", n);
                }
            }
            // Same answer whatever the input order.
            let mut reversed = images.clone();
            reversed.reverse();
            prop_assert_eq!(evaluate(&p, &reversed, NOW), out);
        }
    }
}
