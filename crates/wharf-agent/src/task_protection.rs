//! The ECS agent's task scale-in protection endpoint: `$ECS_AGENT_URI/task-protection/v1/state`
//! (`ECS_AGENT_URI` is `<endpoint base>/api/<token>`, the token naming the task as the
//! metadata endpoint's does). GET asks the control plane's GetTaskProtection and PUT
//! (`{"ProtectionEnabled": true, "ExpiresInMinutes": 60}`) its UpdateTaskProtection, for the
//! task the token names, with the agent's own credentials (Wharf has no task roles). Answers
//! come in the ECS agent's shapes: `{"protection": {...}}`, `{"failure": {...}}` or
//! `{"error": {...}}`. It keeps no protection of its own: the control plane decides and
//! stores it; this only carries the request.

use crate::client::{Client, ClientError};
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_types::agent::Assignment;
use wharf_types::iso8601;

/// The path under `ECS_AGENT_URI` this endpoint serves.
pub const PATH: &str = "task-protection/v1/state";

/// What a container PUTs; unknown members are refused, as the ECS agent refuses them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Request {
    protection_enabled: Option<bool>,
    expires_in_minutes: Option<i64>,
}

/// The ECS agent's error envelope (`Code`, `Message`, the task's `Arn` when known).
fn error(status: StatusCode, arn: &str, code: &str, message: &str) -> (StatusCode, Value) {
    let mut e = json!({"Code": code, "Message": message});
    if !arn.is_empty() {
        e["Arn"] = json!(arn);
    }
    (status, json!({ "error": e }))
}

/// Answers one request for `task` (`None`: the token names no task of this agent).
pub async fn answer(client: &Client, method: &Method, task: Option<&Assignment>, body: &[u8]) -> (StatusCode, Value) {
    let Some(a) = task else {
        return error(StatusCode::NOT_FOUND, "", "ResourceNotFoundException", "Invalid request: no task was found");
    };
    let arn = a.task.task_arn.as_str();
    let cluster = a.task.cluster_arn.as_str();
    let (op, input) = match *method {
        Method::GET => ("GetTaskProtection", json!({"cluster": cluster, "tasks": [arn]})),
        Method::PUT => {
            let req: Request = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "",
                        "InvalidParameterException",
                        "UpdateTaskProtection: failed to decode request",
                    );
                }
            };
            let Some(enabled) = req.protection_enabled else {
                return error(
                    StatusCode::BAD_REQUEST,
                    arn,
                    "InvalidParameterException",
                    "Invalid request: does not contain 'ProtectionEnabled' field",
                );
            };
            let mut input = json!({"cluster": cluster, "tasks": [arn], "protectionEnabled": enabled});
            if let Some(m) = req.expires_in_minutes {
                input["expiresInMinutes"] = json!(m);
            }
            ("UpdateTaskProtection", input)
        }
        _ => return error(StatusCode::METHOD_NOT_ALLOWED, arn, "InvalidParameterException", "Method not allowed"),
    };
    let out = match client.ecs(op, &input).await {
        Ok(out) => out,
        Err(ClientError::Api { status, code, message }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, arn, &code, &message);
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, arn, "ServerException", &e.to_string()),
    };
    shape(arn, &out)
}

/// The ECS agent's answer for the control plane's output: the task's protection, or its
/// first failure (404 for MISSING, 409 for the task's own state).
fn shape(arn: &str, out: &Value) -> (StatusCode, Value) {
    if let Some(f) = out["failures"].as_array().and_then(|f| f.first()) {
        let reason = f["reason"].as_str().unwrap_or_default();
        let status = match reason {
            "MISSING" => StatusCode::NOT_FOUND,
            "TASK_NOT_VALID" | "DEPLOYMENT_BLOCKED" | "TASK_STOPPING_OR_STOPPED" => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let failure = json!({"Arn": f["arn"], "Detail": f["detail"], "Reason": reason});
        return (status, json!({ "failure": failure }));
    }
    let Some(p) = out["protectedTasks"].as_array().filter(|p| p.len() == 1).map(|p| &p[0]) else {
        let message = "expect 1 protectedTask in response";
        return error(StatusCode::INTERNAL_SERVER_ERROR, arn, "ServerException", message);
    };
    let protection = json!({
        "ExpirationDate": p["expirationDate"].as_f64().map(iso8601),
        "ProtectionEnabled": p["protectionEnabled"].as_bool().unwrap_or(false),
        "TaskArn": p["taskArn"],
    });
    (StatusCode::OK, json!({ "protection": protection }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task/c/0123";

    #[test]
    fn protection_and_failures_take_the_ecs_agents_shapes() {
        let on = json!({"protectedTasks": [{"taskArn": ARN, "protectionEnabled": true, "expirationDate": 1665023356.0}],
            "failures": []});
        assert_eq!(
            shape(ARN, &on),
            (
                StatusCode::OK,
                json!({"protection": {"ExpirationDate": "2022-10-06T02:29:16.000Z", "ProtectionEnabled": true,
                    "TaskArn": ARN}})
            )
        );
        let off = json!({"protectedTasks": [{"taskArn": ARN, "protectionEnabled": false}], "failures": []});
        assert_eq!(shape(ARN, &off).1["protection"]["ExpirationDate"], Value::Null);
        let invalid = json!({"protectedTasks": [], "failures": [{"arn": ARN, "reason": "TASK_NOT_VALID"}]});
        assert_eq!(
            shape(ARN, &invalid),
            (StatusCode::CONFLICT, json!({"failure": {"Arn": ARN, "Detail": null, "Reason": "TASK_NOT_VALID"}}))
        );
        let missing = json!({"protectedTasks": [], "failures": [{"arn": ARN, "reason": "MISSING"}]});
        assert_eq!(shape(ARN, &missing).0, StatusCode::NOT_FOUND);
    }

    #[test]
    fn requests_are_decoded_as_the_ecs_agent_decodes_them() {
        let r: Request = serde_json::from_str(r#"{"ProtectionEnabled": true, "ExpiresInMinutes": 60}"#).unwrap();
        assert_eq!((r.protection_enabled, r.expires_in_minutes), (Some(true), Some(60)));
        assert!(serde_json::from_str::<Request>(r#"{"ProtectionEnabled": true, "Other": 1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"protectionEnabled": true}"#).is_err());
    }
}
