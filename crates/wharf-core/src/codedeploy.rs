//! CodeDeploy's ECS deployments, where they meet the service scheduler. A CodeDeploy
//! deployment is a document shaped as `deploymentInfo` (plus Wharf's `wharfEcs`: the service
//! and the two task sets it moves between); its green task set is a traffic-shifting
//! deployment of the service ([`crate::deployments::start_codedeploy`]) that the scheduler
//! carries out like a BLUE_GREEN one, and [`finish`] gives the document its final status in
//! the transaction that finishes the task set.
//!
//! Documents live at `/codedeploy/<kind>/<account>/<region>/…`: `application/<name>`,
//! `group/<application>/<name>`, `config/<name>` (custom configs; the predefined ones are
//! built in), `deployment/<id>`.

use crate::Scoped;
use crate::db::encode;
use serde_json::{Value, json};
use wharf_store::{Compare, Op, Txn};
use wharf_types::Result;
use wharf_types::ecs::{Deployment, HookStatus};

/// Store keys of CodeDeploy resources in one scope.
#[derive(Debug, Clone)]
pub struct CdKeys {
    scope: String,
}

impl CdKeys {
    pub fn new(s: &Scoped) -> Self {
        CdKeys { scope: format!("{}/{}", s.scope.account, s.scope.region) }
    }
    fn kind(&self, kind: &str) -> String {
        format!("/codedeploy/{kind}/{}/", self.scope)
    }
    pub fn applications(&self) -> String {
        self.kind("application")
    }
    pub fn application(&self, name: &str) -> String {
        format!("{}{name}", self.applications())
    }
    pub fn groups(&self, application: &str) -> String {
        format!("{}{application}/", self.kind("group"))
    }
    pub fn group(&self, application: &str, name: &str) -> String {
        format!("{}{name}", self.groups(application))
    }
    pub fn configs(&self) -> String {
        self.kind("config")
    }
    pub fn config(&self, name: &str) -> String {
        format!("{}{name}", self.configs())
    }
    pub fn deployments(&self) -> String {
        self.kind("deployment")
    }
    pub fn deployment(&self, id: &str) -> String {
        format!("{}{id}", self.deployments())
    }
}

/// Whether a deployment status is final.
pub fn is_terminal(status: &str) -> bool {
    matches!(status, "Succeeded" | "Failed" | "Stopped")
}

/// Ops giving CodeDeploy deployment `id` its final status as its task set `dep` finishes with
/// ECS deployment status `ecs_status` (SUCCESSFUL, ROLLBACK_SUCCESSFUL, STOPPED) for `reason`,
/// appended to `txn`: Succeeded; Stopped when StopDeployment or the ready wait's timeout
/// ended it; Failed otherwise, with what went wrong and, when traffic went back to the
/// original task set, `rollbackInfo`.
pub async fn finish(
    s: &Scoped,
    id: &str,
    dep: &Deployment,
    ecs_status: &str,
    reason: &str,
    txn: &mut Txn,
) -> Result<()> {
    let key = CdKeys::new(s).deployment(id);
    let Some(current) = s.db.get::<Value>(&key).await? else { return Ok(()) };
    let mut doc = current.doc.clone();
    if doc.get("status").and_then(Value::as_str).is_some_and(is_terminal) {
        return Ok(());
    }
    let stopped = doc.get("wharfStopRequested").and_then(Value::as_bool).unwrap_or(false);
    let timed_out = dep.shift.as_ref().is_some_and(|s| s.hooks.iter().any(|h| h.status == HookStatus::TimedOut));
    let rolled_back = ecs_status == "ROLLBACK_SUCCESSFUL";
    let (status, error) = match ecs_status {
        "SUCCESSFUL" => ("Succeeded", None),
        _ if stopped => ("Stopped", Some(("MANUAL_STOP", "The deployment was stopped by a user.".to_string()))),
        _ if timed_out => (
            "Stopped",
            Some(("TIMEOUT", "The deployment was not continued before its ready wait time ran out.".to_string())),
        ),
        _ if rolled_back => ("Failed", Some(("ECS_UPDATE_ERROR", format!("The ECS deployment failed: {reason}")))),
        _ => ("Stopped", Some(("MANUAL_STOP", reason.to_string()))),
    };
    let now = wharf_types::now();
    doc["status"] = json!(status);
    doc["completeTime"] = json!(now);
    if let Some((code, message)) = error {
        doc["errorInformation"] = json!({"code": code, "message": message});
    }
    if rolled_back {
        doc["rollbackInfo"] =
            json!({"rollbackMessage": format!("All traffic was routed back to the original task set: {reason}")});
    }
    if let Some(shift) = &dep.shift {
        doc["wharfStages"] = json!(shift.stages);
        doc["wharfRolledBack"] = json!(rolled_back);
    }
    txn.compares.push(Compare::ModRevision(key.clone(), current.rev));
    txn.ops.push(Op::put(&key, encode(&doc)?));
    Ok(())
}
