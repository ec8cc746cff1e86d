//! Property test over the two secret stores: arbitrary JSON bodies (biased toward their member
//! names and plausible values) for every implemented SSM and Secrets Manager operation, through
//! model validation and the real handler, on an in-memory store holding a parameter and a
//! secret. Nothing may panic, and every rejection must be the caller's fault (a 4xx).
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use wharf_api::{Ctx, SECRETS_MANAGER, SSM, Service};

fn arb_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "Name",
        "Names",
        "Value",
        "Type",
        "Overwrite",
        "WithDecryption",
        "Path",
        "Recursive",
        "MaxResults",
        "NextToken",
        "ParameterFilters",
        "Filters",
        "Key",
        "Option",
        "Values",
        "Labels",
        "ParameterVersion",
        "Tags",
        "TagKeys",
        "ResourceType",
        "ResourceId",
        "AllowedPattern",
        "Tier",
        "DataType",
        "Policies",
        "SecretId",
        "SecretString",
        "SecretBinary",
        "VersionId",
        "VersionStage",
        "VersionStages",
        "ClientRequestToken",
        "RecoveryWindowInDays",
        "ForceDeleteWithoutRecovery",
        "IncludePlannedDeletion",
        "MoveToVersionId",
        "RemoveFromVersionId",
        "Description",
        "KmsKeyId",
        "SortOrder",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-5i64..120).prop_map(|n| json!(n)),
        "[a-zA-Z0-9:/_.*-]{0,16}".prop_map(Value::String),
        Just(json!("/app/db/password")),
        Just(json!("/app/db/password:1")),
        Just(json!("/app/db/password:stable")),
        Just(json!("/app")),
        Just(json!("SecureString")),
        Just(json!("app/api")),
        Just(json!("AWSCURRENT")),
        Just(json!("AWSPREVIOUS")),
        Just(json!("arn:aws:ssm:us-east-1:123456789012:parameter/app/db/password")),
        Just(json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:app/api-AbCdEf:KEY::")),
        Just(json!("arn:aws:secretsmanager:us-east-1:123456789012:secret:app/api")),
        Just(json!("Parameter")),
        Just(json!("aGVsbG8=")),
        Just(json!("x".repeat(5000))),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
        ]
    })
}

fn services() -> Vec<(&'static Service, &'static str)> {
    [&*SSM, &*SECRETS_MANAGER].into_iter().flat_map(|s| s.operations.iter().map(move |op| (s, *op))).collect()
}

async fn seed(ctx: &Ctx) {
    let calls = [
        (&*SSM, "PutParameter", json!({"Name": "/app/db/password", "Value": "one", "Type": "SecureString"})),
        (&*SSM, "PutParameter", json!({"Name": "/app/db/password", "Value": "two", "Overwrite": true})),
        (
            &*SSM,
            "LabelParameterVersion",
            json!({"Name": "/app/db/password", "ParameterVersion": 1, "Labels": ["stable"]}),
        ),
        (&*SECRETS_MANAGER, "CreateSecret", json!({"Name": "app/api", "SecretString": "{\"KEY\": \"v\"}"})),
    ];
    for (svc, op, body) in calls {
        svc.call(ctx, op, svc.model.validate(op, body).unwrap()).await.unwrap().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn any_body_for_any_secret_store_operation_is_answered_without_a_server_fault(
        (svc, op) in prop::sample::select(services()),
        body in arb_json(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let ctx = Ctx::in_memory("123456789012", "us-east-1");
            seed(&ctx).await;
            let result = match svc.model.validate(op, body) {
                Ok(input) => svc.call(&ctx, op, input).await.expect("implemented"),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                prop_assert!(e.is_client_fault(), "{} {op}: server fault {e:?}", svc.name());
            }
            Ok(())
        })?;
    }
}
