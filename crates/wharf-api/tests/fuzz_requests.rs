//! Property test over request decoding: arbitrary JSON bodies for every implemented ECS
//! operation go through model validation and the real handler on an in-memory store. Nothing
//! may panic, and every rejection must be the caller's fault (a 4xx), never `Internal`.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use wharf_api::{Ctx, ECS};

/// Arbitrary JSON, biased toward the member names ECS operations use so inputs get past the
/// first checks and reach handler logic.
fn arb_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "cluster",
        "clusterName",
        "family",
        "containerDefinitions",
        "name",
        "image",
        "memory",
        "cpu",
        "portMappings",
        "containerPort",
        "hostPort",
        "networkMode",
        "serviceName",
        "taskDefinition",
        "desiredCount",
        "services",
        "tasks",
        "task",
        "count",
        "include",
        "tags",
        "key",
        "value",
        "maxResults",
        "nextToken",
        "status",
        "requiresCompatibilities",
        "containerInstances",
        "attributes",
        "targetId",
        "resourceArn",
        "settings",
        "deploymentConfiguration",
        "maximumPercent",
        "minimumHealthyPercent",
        "loadBalancers",
        "volumes",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-5i64..300).prop_map(|n| json!(n)),
        "[a-z0-9:/_-]{0,12}".prop_map(Value::String),
        Just(json!("web")),
        Just(json!("default")),
        Just(json!("arn:aws:ecs:us-east-1:123456789012:cluster/default")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
        ]
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_body_for_any_operation_is_answered_without_a_server_fault(
        op in prop::sample::select(ECS.operations.to_vec()),
        body in arb_json(),
    ) {
        let rt = runtime();
        rt.block_on(async {
            let ctx = Ctx::in_memory("123456789012", "us-east-1");
            // A little state so handlers get past "cluster not found".
            let seed = json!({"clusterName": "default"});
            wharf_api::call(&ECS, &ctx, "CreateCluster", ECS.model.validate("CreateCluster", seed).unwrap()).await.unwrap().unwrap();
            let result = match ECS.model.validate(op, body) {
                Ok(input) => wharf_api::call(&ECS, &ctx, op, input).await.expect("implemented"),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                prop_assert!(e.is_client_fault(), "{op}: server fault {e:?}");
            }
            Ok(())
        })?;
    }
}
