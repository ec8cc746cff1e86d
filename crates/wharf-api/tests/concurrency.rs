//! Concurrent writers never lose one another's updates: revisions are handed out exactly once
//! and read-modify-writes of one document all land.
#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use std::collections::BTreeSet;
use wharf_api::{Ctx, ECS};

async fn call(ctx: &Ctx, op: &str, body: Value) -> Value {
    let input = ECS.model.validate(op, body).unwrap();
    wharf_api::call(&ECS, ctx, op, input).await.unwrap().unwrap()
}

fn ctx() -> Ctx {
    Ctx::in_memory("123456789012", "us-east-1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_get_every_revision_exactly_once() {
    let ctx = ctx();
    let body = json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "img", "memory": 64}]});
    let handles: Vec<_> = (0..64)
        .map(|_| {
            let (ctx, body) = (ctx.clone(), body.clone());
            tokio::spawn(async move {
                call(&ctx, "RegisterTaskDefinition", body).await["taskDefinition"]["revision"].as_i64().unwrap()
            })
        })
        .collect();
    let mut revisions = BTreeSet::new();
    for h in handles {
        assert!(revisions.insert(h.await.unwrap()), "a revision was handed out twice");
    }
    assert_eq!(revisions, (1..=64).collect());
    let listed = call(&ctx, "ListTaskDefinitions", json!({"familyPrefix": "web", "maxResults": 100})).await;
    assert_eq!(listed["taskDefinitionArns"].as_array().unwrap().len(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tag_updates_all_land() {
    let ctx = ctx();
    let arn = call(&ctx, "CreateCluster", json!({"clusterName": "c"})).await["cluster"]["clusterArn"]
        .as_str()
        .unwrap()
        .to_string();
    let handles: Vec<_> = (0..40)
        .map(|i| {
            let (ctx, arn) = (ctx.clone(), arn.clone());
            tokio::spawn(async move {
                call(&ctx, "TagResource", json!({"resourceArn": arn, "tags": [{"key": format!("k{i}"), "value": "v"}]}))
                    .await
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let tags = call(&ctx, "ListTagsForResource", json!({"resourceArn": arn})).await;
    assert_eq!(tags["tags"].as_array().unwrap().len(), 40);
}
