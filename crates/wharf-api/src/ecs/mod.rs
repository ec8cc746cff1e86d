//! Amazon ECS (`AmazonEC2ContainerServiceV20141113`): clusters, task definitions, services,
//! tasks (and their scale-in protection), container instances, attributes, tags and account
//! settings.
//!
//! Store layout (see [`Keys`]): `/ecs/<kind>/<account>/<region>/` then
//! `cluster/<name>`, `taskdef/<family>#<revision:010>`, `service/<cluster>/<name>`,
//! `task/<cluster>/<id>`, `instance/<cluster>/<id>`, `tags/<arn>`, `setting/<principal>/<name>`
//! (the kind leads the path).

pub mod agent;
pub mod clusters;
pub mod history;
mod instances;
mod protection;
pub mod services;
mod settings;
mod strategies;
mod tags;
pub mod task_definitions;
pub mod task_sets;
pub mod tasks;
mod td_fields;

use crate::Ctx;
use serde_json::Value;
use wharf_types::ecs::Cluster;
use wharf_types::{Arn, Error, Result};

use wharf_core::expr;
pub use wharf_core::keys::{Keys, all_of_kind, scope_of_key};

operations! {
    "CreateCluster" => clusters::create,
    "DescribeClusters" => clusters::describe,
    "ListClusters" => clusters::list,
    "DeleteCluster" => clusters::delete,
    "UpdateCluster" => clusters::update,
    "UpdateClusterSettings" => clusters::update_settings,
    "PutClusterCapacityProviders" => clusters::put_capacity_providers,
    "DescribeCapacityProviders" => clusters::describe_capacity_providers,
    "CreateCapacityProvider" => clusters::create_capacity_provider,
    "RegisterTaskDefinition" => task_definitions::register,
    "DescribeTaskDefinition" => task_definitions::describe,
    "ListTaskDefinitions" => task_definitions::list,
    "ListTaskDefinitionFamilies" => task_definitions::list_families,
    "DeregisterTaskDefinition" => task_definitions::deregister,
    "DeleteTaskDefinitions" => task_definitions::delete,
    "CreateService" => services::create,
    "DescribeServices" => services::describe,
    "ListServices" => services::list,
    "UpdateService" => services::update,
    "DeleteService" => services::delete,
    "ListServiceDeployments" => history::list,
    "DescribeServiceDeployments" => history::describe_deployments,
    "DescribeServiceRevisions" => history::describe_revisions,
    "StopServiceDeployment" => history::stop,
    "ContinueServiceDeployment" => history::continue_deployment,
    "DescribeTaskSets" => task_sets::describe,
    "CreateTaskSet" => task_sets::create,
    "UpdateTaskSet" => task_sets::update,
    "DeleteTaskSet" => task_sets::delete,
    "UpdateServicePrimaryTaskSet" => task_sets::update_primary,
    "RunTask" => tasks::run,
    "StartTask" => tasks::start,
    "StopTask" => tasks::stop,
    "DescribeTasks" => tasks::describe,
    "ListTasks" => tasks::list,
    "UpdateTaskProtection" => protection::update,
    "GetTaskProtection" => protection::get,
    "RegisterContainerInstance" => instances::register,
    "DeregisterContainerInstance" => instances::deregister,
    "DescribeContainerInstances" => instances::describe,
    "ListContainerInstances" => instances::list,
    "UpdateContainerInstancesState" => instances::update_state,
    "PutAttributes" => instances::put_attributes,
    "DeleteAttributes" => instances::delete_attributes,
    "ListAttributes" => instances::list_attributes,
    "TagResource" => tags::tag,
    "UntagResource" => tags::untag,
    "ListTagsForResource" => tags::list,
    "SubmitTaskStateChange" => agent::submit_task_state_change,
    "SubmitContainerStateChange" => agent::submit_container_state_change,
    "ListAccountSettings" => settings::list,
    "PutAccountSetting" => settings::put,
    "PutAccountSettingDefault" => settings::put_default,
    "DeleteAccountSetting" => settings::delete,
}

pub(crate) use crate::input;

pub(crate) fn output(v: impl serde::Serialize) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Internal(e.to_string()))
}

/// A name or ARN of a resource inside a cluster (`service/<cluster>/<name>`, ...):
/// returns the last path segment and, for an ARN, the cluster it names.
pub fn split_ref<'a>(ctx: &Ctx, value: &'a str, kind: &str, field: &str) -> Result<(Option<String>, &'a str)> {
    if !value.starts_with("arn:") {
        return Ok((None, value));
    }
    let arn = Arn::parse_in(value, &ctx.scope, "ecs", field)?;
    match arn.resource_parts() {
        (k, rest) if k == kind => {
            let (cluster, name) = match rest.rsplit_once('/') {
                Some((c, n)) => (Some(c.to_string()), n),
                None => (None, rest),
            };
            let name_start = value.len() - name.len();
            Ok((cluster, &value[name_start..]))
        }
        _ => Err(Error::invalid(field, format!("The ARN '{value}' in {field} is not a {kind} ARN."))),
    }
}

/// The task definition a stored task points at (for agents and controllers).
pub async fn task_definition(ctx: &Ctx, arn: &str) -> Result<wharf_types::ecs::TaskDefinition> {
    task_definitions::require(ctx, arn, "taskDefinition").await.map(|t| t.doc)
}

/// Resolves a cluster name or ARN (default `default`) to its ACTIVE cluster document.
pub async fn active_cluster(ctx: &Ctx, cluster: Option<&str>) -> Result<crate::db::Versioned<Cluster>> {
    let name = cluster_name(ctx, cluster)?;
    match ctx.db.get::<Cluster>(&Keys::new(ctx).cluster(&name)).await? {
        Some(c) if c.doc.status == "ACTIVE" => Ok(c),
        _ => Err(Error::cluster_not_found()),
    }
}

/// The cluster name from a name or ARN, `default` when absent.
pub(crate) fn cluster_name(ctx: &Ctx, cluster: Option<&str>) -> Result<String> {
    let value = cluster.unwrap_or("default");
    if value.starts_with("arn:") {
        let arn = Arn::parse_in(value, &ctx.scope, "ecs", "cluster")?;
        match arn.resource_parts() {
            ("cluster", name) if !name.is_empty() => Ok(name.to_string()),
            _ => Err(Error::invalid("cluster", format!("The ARN '{value}' in cluster is not a cluster ARN."))),
        }
    } else {
        Ok(value.to_string())
    }
}

/// ECS resource names: 1-255 letters, numbers, hyphens and underscores.
pub(crate) fn check_name(field: &str, what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{what} name '{name}' is not valid: up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores are allowed."
            ),
        ))
    }
}

/// Checks placement constraints and strategies as ECS does (shapes the model cannot).
pub(crate) fn check_placement(constraints: &[Value], strategies: &[Value]) -> Result<()> {
    if constraints.len() > 10 {
        return Err(Error::invalid("placementConstraints", "At most 10 placement constraints can be specified."));
    }
    for c in constraints {
        let kind = c.get("type").and_then(Value::as_str).unwrap_or_default();
        let expression = c.get("expression").and_then(Value::as_str);
        match (kind, expression) {
            ("distinctInstance", Some(_)) => {
                return Err(Error::invalid(
                    "placementConstraints.expression",
                    "The distinctInstance constraint does not take an expression.",
                ));
            }
            ("memberOf", None) => {
                return Err(Error::invalid(
                    "placementConstraints.expression",
                    "The memberOf constraint requires an expression.",
                ));
            }
            ("memberOf", Some(e)) if e.starts_with("attribute:") => {
                expr::Expr::parse(e, "placementConstraints.expression")?;
            }
            _ => {}
        }
    }
    if strategies.len() > 5 {
        return Err(Error::invalid("placementStrategy", "At most 5 placement strategies can be specified."));
    }
    for s in strategies {
        let kind = s.get("type").and_then(Value::as_str).unwrap_or_default();
        let field = s.get("field").and_then(Value::as_str);
        let ok = match kind {
            "random" => field.is_none(),
            "spread" => field.is_some_and(|f| f == "instanceId" || f == "host" || f.starts_with("attribute:")),
            "binpack" => field.is_some_and(|f| f.eq_ignore_ascii_case("cpu") || f.eq_ignore_ascii_case("memory")),
            _ => false,
        };
        if !ok {
            return Err(Error::invalid(
                "placementStrategy.field",
                format!("Invalid field '{}' for placement strategy type {kind}.", field.unwrap_or("")),
            ));
        }
    }
    Ok(())
}
