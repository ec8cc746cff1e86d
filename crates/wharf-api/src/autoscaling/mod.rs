//! Application Auto Scaling (`AnyScaleFrontendService`) for ECS services: scalable targets on
//! `ecs:service:DesiredCount`, target tracking and step scaling policies (target tracking
//! creates and owns its CloudWatch alarm pair, as AWS does), scheduled actions, and the
//! activities that record every change of a service's desired count.
//!
//! The handlers keep documents ([`wharf_core::autoscaling`]); the `alarms` controller invokes
//! policies and the `scheduled-scaling` controller runs scheduled actions.

mod policies;
mod scheduled;
mod targets;

use crate::{Ctx, paging};
use serde::de::DeserializeOwned;
use wharf_core::autoscaling::{ECS_DESIRED_COUNT, ScalingKeys};
use wharf_core::db::Versioned;
use wharf_store::{Compare, Op, Txn};
use wharf_types::{Error, Result};

operations! {
    "RegisterScalableTarget" => targets::register,
    "DescribeScalableTargets" => targets::describe,
    "DeregisterScalableTarget" => targets::deregister,
    "DescribeScalingActivities" => targets::activities,
    "PutScalingPolicy" => policies::put,
    "DescribeScalingPolicies" => policies::describe,
    "DeleteScalingPolicy" => policies::delete,
    "PutScheduledAction" => scheduled::put,
    "DescribeScheduledActions" => scheduled::describe,
    "DeleteScheduledAction" => scheduled::delete,
}

/// What a request names: a namespace, a resource and a dimension, checked as AWS checks them
/// for ECS (the only namespace Wharf scales).
#[derive(Debug, Clone)]
struct Resource {
    namespace: String,
    resource_id: String,
    dimension: String,
}

fn check_namespace(namespace: &str) -> Result<()> {
    if namespace == "ecs" {
        Ok(())
    } else {
        Err(Error::invalid(
            "ServiceNamespace",
            format!("Unsupported service namespace: {namespace}. Wharf scales ECS services (ecs)."),
        ))
    }
}

impl Resource {
    fn new(namespace: String, resource_id: String, dimension: String) -> Result<Resource> {
        check_namespace(&namespace)?;
        let parts: Vec<&str> = resource_id.split('/').collect();
        if parts.len() != 3 || parts[0] != "service" || parts[1].is_empty() || parts[2].is_empty() {
            return Err(Error::invalid(
                "ResourceId",
                format!(
                    "Unsupported resource ID: {resource_id}. An ECS service is service/<cluster name>/<service name>."
                ),
            ));
        }
        if dimension != ECS_DESIRED_COUNT {
            return Err(Error::invalid(
                "ScalableDimension",
                format!(
                    "Unsupported scalable dimension: {dimension} for service namespace ecs; it is {ECS_DESIRED_COUNT}."
                ),
            ));
        }
        Ok(Resource { namespace, resource_id, dimension })
    }

    fn cluster_and_service(&self) -> (&str, &str) {
        let mut p = self.resource_id.splitn(3, '/').skip(1);
        (p.next().unwrap_or_default(), p.next().unwrap_or_default())
    }
}

/// `MaxResults` within 1..=50 (AWS's bound), 50 when absent.
fn page_size(v: Option<i64>) -> Result<usize> {
    match v {
        None => Ok(50),
        Some(n) if (1..=50).contains(&n) => Ok(n as usize),
        Some(_) => Err(Error::invalid("MaxResults", "MaxResults must be between 1 and 50.")),
    }
}

fn bad_token() -> Error {
    Error::invalid_input(wharf_types::Invalid::NextToken, "Invalid token")
}

/// One page of a Describe operation: the `kind` documents of `namespace` (checked) that `keep`
/// accepts, from the caller's `NextToken`, at most `MaxResults`.
async fn describe_page<T: DeserializeOwned + Clone>(
    ctx: &Ctx,
    kind: &str,
    namespace: &str,
    max_results: Option<i64>,
    next_token: Option<&str>,
    keep: impl Fn(&T) -> bool,
) -> Result<(Vec<T>, Option<String>)> {
    check_namespace(namespace)?;
    let limit = page_size(max_results)?;
    let prefix = ScalingKeys::new(ctx).all(kind, namespace);
    let after = paging::after_key(next_token, &prefix).map_err(|_| bad_token())?;
    paging::scan_from(&ctx.db, &prefix, after, limit, false, |d: &T| Ok(keep(d).then(|| d.clone()))).await
}

/// Deletes the document at `key` as it is now (`missing` when there is none) and returns it;
/// `what` names it when a concurrent change wins.
async fn delete_doc<T: DeserializeOwned>(ctx: &Ctx, key: &str, missing: Error, what: &str) -> Result<Versioned<T>> {
    let Some(doc) = ctx.db.get::<T>(key).await? else { return Err(missing) };
    let txn = Txn { compares: vec![Compare::ModRevision(key.to_string(), doc.rev)], ops: vec![Op::delete(key)] };
    if !ctx.db.commit(txn).await? {
        return Err(Error::Conflict(format!("The {what} changed during the request; try again.")));
    }
    Ok(doc)
}
