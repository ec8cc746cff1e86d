//! AWS CodeDeploy (`codedeploy`, JSON 1.1) for the ECS compute platform: applications,
//! deployment groups that name one CODE_DEPLOY service with its target group pair and
//! listeners, the predefined and custom ECS deployment configurations, and deployments of an
//! AppSpec that move the service's listeners from its original (blue) task set to a
//! replacement (green) one — all at once, linearly or canary — keep blue for the termination
//! wait, and roll back on failure or request. The traffic shifting is the service
//! scheduler's (`wharf_core::deployments::start_codedeploy`): a CodeDeploy deployment is a
//! document that follows its green task set.
//!
//! Lambda and EC2/on-premises deployments are not served (`computePlatform` must be `ECS`),
//! nor AppSpec `Hooks` (they run Lambda functions): a deployment group's `deploymentReadyOption`
//! `STOP_DEPLOYMENT` holds green before production moves until ContinueDeployment, which
//! does the job of a check before traffic moves.

mod configs;
mod deployments;
mod groups;

use crate::Ctx;
use serde_json::Value;
use wharf_core::codedeploy::CdKeys;
use wharf_core::db::Versioned;
use wharf_types::{Error, Resource, Result};

operations! {
    "CreateApplication" => groups::create_application,
    "GetApplication" => groups::get_application,
    "BatchGetApplications" => groups::batch_get_applications,
    "ListApplications" => groups::list_applications,
    "DeleteApplication" => groups::delete_application,
    "CreateDeploymentGroup" => groups::create_group,
    "GetDeploymentGroup" => groups::get_group,
    "BatchGetDeploymentGroups" => groups::batch_get_groups,
    "ListDeploymentGroups" => groups::list_groups,
    "UpdateDeploymentGroup" => groups::update_group,
    "DeleteDeploymentGroup" => groups::delete_group,
    "CreateDeploymentConfig" => configs::create,
    "GetDeploymentConfig" => configs::get,
    "ListDeploymentConfigs" => configs::list,
    "DeleteDeploymentConfig" => configs::delete,
    "CreateDeployment" => deployments::create,
    "GetDeployment" => deployments::get,
    "BatchGetDeployments" => deployments::batch_get,
    "ListDeployments" => deployments::list,
    "ListDeploymentTargets" => deployments::list_targets,
    "GetDeploymentTarget" => deployments::get_target,
    "BatchGetDeploymentTargets" => deployments::batch_get_targets,
    "ContinueDeployment" => deployments::continue_deployment,
    "StopDeployment" => deployments::stop,
}

/// A name of an application, group or config: 1–100 characters.
fn check_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid(field, format!("{field} must be between 1 and 100 characters.")));
    }
    Ok(())
}

/// The application `name`.
async fn application(ctx: &Ctx, name: &str) -> Result<Versioned<Value>> {
    check_name("applicationName", name)?;
    ctx.db
        .get::<Value>(&CdKeys::new(ctx).application(name))
        .await?
        .ok_or_else(|| Error::not_found(Resource::Application, format!("No application found for name: {name}")))
}

/// The deployment group `name` of application `app`.
async fn group(ctx: &Ctx, app: &str, name: &str) -> Result<Versioned<Value>> {
    application(ctx, app).await?;
    check_name("deploymentGroupName", name)?;
    ctx.db.get::<Value>(&CdKeys::new(ctx).group(app, name)).await?.ok_or_else(|| {
        Error::not_found(Resource::DeploymentGroup, format!("No Deployment Group found for name: {name}"))
    })
}

/// A string member of a stored document.
fn text<'a>(doc: &'a Value, key: &str) -> &'a str {
    doc.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A stored document as the API shows it: without Wharf's own members (`wharf…`) and nulls.
fn public(mut doc: Value) -> Value {
    if let Some(o) = doc.as_object_mut() {
        o.retain(|k, v| !k.starts_with("wharf") && !v.is_null());
    }
    doc
}
