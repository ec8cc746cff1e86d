//! Services through the real handlers and model validation, on an in-memory store.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use wharf_api::{Ctx, ECS};

async fn ecs(ctx: &Ctx, op: &str, body: Value) -> Value {
    let input = ECS.model.validate(op, body).unwrap();
    ECS.call(ctx, op, input).await.expect("implemented").unwrap()
}

/// UpdateService with `deploymentController` once stored the member twice (the typed field
/// and a copy in the document's extra fields), and every later read of the service failed.
#[tokio::test]
async fn update_service_sets_the_deployment_controller() {
    let ctx = Ctx::in_memory("123456789012", "eu-west-1");
    ecs(&ctx, "CreateCluster", json!({"clusterName": "c1"})).await;
    let td = json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "echo", "memory": 64}]});
    ecs(&ctx, "RegisterTaskDefinition", td).await;
    let create = json!({"cluster": "c1", "serviceName": "web", "taskDefinition": "web", "desiredCount": 0});
    ecs(&ctx, "CreateService", create).await;
    let update = json!({"cluster": "c1", "service": "web", "deploymentController": {"type": "ECS"}, "desiredCount": 1});
    let updated = ecs(&ctx, "UpdateService", update).await;
    assert_eq!(updated["service"]["deploymentController"], json!({"type": "ECS"}));
    let described = ecs(&ctx, "DescribeServices", json!({"cluster": "c1", "services": ["web"]})).await;
    assert_eq!(described["failures"], json!([]), "{described}");
    assert_eq!(described["services"][0]["deploymentController"], json!({"type": "ECS"}));
    assert_eq!(described["services"][0]["desiredCount"], 1);
}
