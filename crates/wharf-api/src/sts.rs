//! STS: `GetCallerIdentity`, which aws-actions/configure-aws-credentials calls first.

use crate::Ctx;
use serde_json::{Value, json};
use wharf_types::Result;

operations! {
    "GetCallerIdentity" => get_caller_identity,
}

async fn get_caller_identity(ctx: &Ctx, _input: Value) -> Result<Value> {
    Ok(json!({
        "UserId": ctx.scope.account,
        "Account": ctx.scope.account,
        "Arn": ctx.principal_arn(),
    }))
}
