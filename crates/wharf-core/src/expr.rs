//! ECS's cluster query language, the part Wharf evaluates: `attribute:<name> <op> [value]`
//! terms joined by `and` / `or` (`and` binds tighter), with operators `==`, `!=`, `exists`,
//! `!exists`, `in [a, b]` and `not_in [a, b]`. Used by ListContainerInstances filters and,
//! later, memberOf placement constraints.

use wharf_types::ecs::Attribute;
use wharf_types::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    Ne(String),
    Exists,
    NotExists,
    In(Vec<String>),
    NotIn(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
struct Term {
    attribute: String,
    op: Op,
}

/// A parsed expression in disjunctive form: any group whose terms all hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr(Vec<Vec<Term>>);

fn bad(expr: &str, field: &str) -> Error {
    Error::invalid(
        field,
        format!("The expression '{expr}' in {field} is not a valid cluster query language expression."),
    )
}

fn list(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    Some(inner.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
}

fn term(s: &str, whole: &str, field: &str) -> Result<Term> {
    let s = s.trim();
    let rest = s.strip_prefix("attribute:").ok_or_else(|| bad(whole, field))?;
    let (attribute, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let tail = tail.trim();
    let op = if let Some(v) = tail.strip_prefix("==") {
        Op::Eq(v.trim().to_string())
    } else if let Some(v) = tail.strip_prefix("!=") {
        Op::Ne(v.trim().to_string())
    } else if tail == "exists" {
        Op::Exists
    } else if tail == "!exists" {
        Op::NotExists
    } else if let Some(v) = tail.strip_prefix("not_in") {
        Op::NotIn(list(v).ok_or_else(|| bad(whole, field))?)
    } else if let Some(v) = tail.strip_prefix("in") {
        Op::In(list(v).ok_or_else(|| bad(whole, field))?)
    } else {
        return Err(bad(whole, field));
    };
    if attribute.is_empty() || matches!(&op, Op::Eq(v) | Op::Ne(v) if v.is_empty()) {
        return Err(bad(whole, field));
    }
    Ok(Term { attribute: attribute.to_string(), op })
}

impl Expr {
    pub fn parse(s: &str, field: &str) -> Result<Expr> {
        if s.len() > 2000 {
            return Err(Error::invalid(field, format!("{field} can be at most 2000 characters.")));
        }
        let groups = s
            .split(" or ")
            .map(|g| g.split(" and ").map(|t| term(t, s, field)).collect::<Result<Vec<_>>>())
            .collect::<Result<Vec<_>>>()?;
        Ok(Expr(groups))
    }

    pub fn matches(&self, attributes: &[Attribute]) -> bool {
        let value =
            |name: &str| attributes.iter().find(|a| a.name == name).map(|a| a.value.clone().unwrap_or_default());
        self.0.iter().any(|group| {
            group.iter().all(|t| match (&t.op, value(&t.attribute)) {
                (Op::Exists, v) => v.is_some(),
                (Op::NotExists, v) => v.is_none(),
                (Op::Eq(x), Some(v)) => *x == v,
                (Op::Ne(x), v) => v.as_ref() != Some(x),
                (Op::In(xs), Some(v)) => xs.contains(&v),
                (Op::NotIn(xs), v) => v.is_none_or(|v| !xs.contains(&v)),
                (_, None) => false,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Vec<Attribute> {
        pairs
            .iter()
            .map(|(n, v)| Attribute {
                name: n.to_string(),
                value: Some(v.to_string()),
                target_type: None,
                target_id: None,
            })
            .collect()
    }

    #[test]
    fn evaluates_terms_and_connectives() {
        let a = attrs(&[("ecs.instance-type", "t2.small"), ("stack", "prod")]);
        let t = |s: &str| Expr::parse(s, "filter").unwrap().matches(&a);
        assert!(t("attribute:ecs.instance-type == t2.small"));
        assert!(!t("attribute:ecs.instance-type == t2.large"));
        assert!(t("attribute:stack exists and attribute:zone !exists"));
        assert!(t("attribute:ecs.instance-type in [t2.micro, t2.small]"));
        assert!(t("attribute:stack not_in [dev, qa]"));
        assert!(t("attribute:stack == dev or attribute:stack != dev"));
        assert!(!t("attribute:stack == dev and attribute:stack == prod"));
    }

    #[test]
    fn rejects_garbage_naming_the_field() {
        for s in ["", "stack == prod", "attribute:stack ~= x", "attribute:stack in t2", "attribute:stack =="] {
            assert!(
                matches!(Expr::parse(s, "filter"), Err(Error::InvalidParameter { field, .. }) if field == "filter"),
                "{s}"
            );
        }
    }
}
