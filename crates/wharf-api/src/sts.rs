//! STS: `GetCallerIdentity`, which aws-actions/configure-aws-credentials calls first.

use crate::Ctx;
use serde_json::{Value, json};
use wharf_types::Result;

pub const OPERATIONS: &[&str] = &["GetCallerIdentity"];

pub async fn call(ctx: &Ctx, op: &str, _input: Value) -> Option<Result<Value>> {
    Some(match op {
        "GetCallerIdentity" => Ok(json!({
            "UserId": ctx.scope.account,
            "Account": ctx.scope.account,
            "Arn": ctx.principal_arn(),
        })),
        _ => return None,
    })
}
