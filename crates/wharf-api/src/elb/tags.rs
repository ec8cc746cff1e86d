//! Tags of load balancers, target groups, listeners and rules, kept in each resource's own
//! document (`Tags`), so a resource and its tags are written and deleted together.

use super::*;
use crate::db::encode;
use wharf_store::{Compare, Op, Txn};
use wharf_types::Limit;

pub(crate) const MAX_TAGS: usize = 50;
const MAX_ARNS: usize = 20;

/// A resource's document as JSON and the member holding its tags: `Tags` for every kind,
/// except a listener's default rule, whose tags live in its listener's `DefaultRuleTags`.
async fn load(ctx: &Ctx, arn: &str) -> Result<(Versioned<Value>, &'static str)> {
    let (key, arn_field, kind) = match Kind::of(arn) {
        Some(k @ Kind::LoadBalancer) => (lb_key(ctx, &arn_parts(ctx, arn, k)?[0]), "LoadBalancerArn", k),
        Some(k @ Kind::TargetGroup) => (tg_key(ctx, &arn_parts(ctx, arn, k)?[0]), "TargetGroupArn", k),
        Some(k @ Kind::Listener) => (listener_key(ctx, &arn_parts(ctx, arn, k)?[2]), "ListenerArn", k),
        Some(k @ Kind::Rule) => {
            let p = arn_parts(ctx, arn, k)?;
            let listener = ctx.db.get::<Value>(&listener_key(ctx, &p[2])).await?;
            if let Some(l) = listener.filter(|l| str_of(&l.doc, "DefaultRuleArn") == Some(arn)) {
                return Ok((l, "DefaultRuleTags"));
            }
            (rule_key(ctx, &p[2], &p[3]), "RuleArn", k)
        }
        None => {
            return Err(Error::invalid("ResourceArns", format!("'{arn}' is not a valid Elastic Load Balancing ARN")));
        }
    };
    match ctx.db.get::<Value>(&key).await? {
        Some(d) if str_of(&d.doc, arn_field) == Some(arn) => Ok((d, "Tags")),
        _ => Err(kind.not_found(arn)),
    }
}

fn tags_of(doc: &Value, field: &str) -> Vec<Tag> {
    doc.get(field).and_then(|t| serde_json::from_value(t.clone()).ok()).unwrap_or_default()
}

fn arns_in(input: &Value) -> Result<Vec<String>> {
    let arns = strings_of(input, "ResourceArns");
    if arns.is_empty() {
        return Err(Error::invalid("ResourceArns", "At least one resource ARN must be specified"));
    }
    if arns.len() > MAX_ARNS {
        return Err(Error::invalid("ResourceArns", format!("At most {MAX_ARNS} resource ARNs can be specified")));
    }
    Ok(arns)
}

/// Rewrites the tags of every resource in `arns` with `change`, all or nothing. Resources
/// sharing a document (a listener and its default rule) are changed in one copy of it.
async fn retag(ctx: &Ctx, arns: Vec<String>, change: impl Fn(&mut Vec<Tag>) -> Result<()>) -> Result<()> {
    let change = &change;
    ctx.db
        .update(|| {
            let arns = arns.clone();
            async move {
                let mut docs: BTreeMap<String, (wharf_store::Revision, Value)> = BTreeMap::new();
                for arn in &arns {
                    let (d, field) = load(ctx, arn).await?;
                    let (_, doc) = docs.entry(d.key.clone()).or_insert((d.rev, d.doc));
                    let mut tags = tags_of(doc, field);
                    change(&mut tags)?;
                    doc[field] = serde_json::to_value(&tags).map_err(|e| Error::Internal(e.to_string()))?;
                }
                let mut txn = Txn::default();
                for (key, (rev, doc)) in docs {
                    txn.compares.push(Compare::ModRevision(key.clone(), rev));
                    txn.ops.push(Op::put(key, encode(&doc)?));
                }
                Ok((Some(txn), ()))
            }
        })
        .await
}

pub(crate) async fn add(ctx: &Ctx, input: Value) -> Result<Value> {
    let arns = arns_in(&input)?;
    let new = load_balancers::tags_in(&input)?;
    if new.is_empty() {
        return Err(Error::invalid("Tags", "At least one tag must be specified"));
    }
    retag(ctx, arns, |tags| {
        for t in &new {
            match tags.iter_mut().find(|x| x.key == t.key) {
                Some(x) => x.value = t.value.clone(),
                None => tags.push(t.clone()),
            }
        }
        if tags.len() > MAX_TAGS {
            return Err(Error::limit_exceeded(Limit::Tags, format!("A resource can have at most {MAX_TAGS} tags")));
        }
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn remove(ctx: &Ctx, input: Value) -> Result<Value> {
    let arns = arns_in(&input)?;
    let keys = strings_of(&input, "TagKeys");
    if keys.is_empty() {
        return Err(Error::invalid("TagKeys", "At least one tag key must be specified"));
    }
    retag(ctx, arns, |tags| {
        tags.retain(|t| !keys.contains(&t.key));
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub(crate) async fn describe(ctx: &Ctx, input: Value) -> Result<Value> {
    let mut out = Vec::new();
    for arn in arns_in(&input)? {
        let (d, field) = load(ctx, &arn).await?;
        out.push(json!({"ResourceArn": arn, "Tags": tags_out(&tags_of(&d.doc, field))}));
    }
    Ok(json!({"TagDescriptions": out}))
}
