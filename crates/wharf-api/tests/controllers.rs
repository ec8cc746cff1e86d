//! Controllers driven through the API: what a user sets with an API call (a lifecycle policy,
//! a retention policy) is what the controller's activation enforces.

#![allow(clippy::unwrap_used)]

mod ecr_lifecycle {
    use serde_json::json;
    use wharf_api::{Ctx, ECR};
    use wharf_controllers::{EcrLifecycle, Reconciler, Status};
    use wharf_registry::{Image, TagRef, keys};
    use wharf_store::{Op, Txn};

    async fn push(ctx: &Ctx, repo: &str, n: u32, tag: Option<&str>, pushed_at: f64) {
        let (a, r) = (&ctx.scope.account, &ctx.scope.region);
        let digest = format!("sha256:{n:064x}");
        let image = Image {
            repository_name: repo.into(),
            image_digest: digest.clone(),
            image_manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            image_pushed_at: pushed_at,
            image_tags: tag.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        };
        let mut ops = vec![Op::put(keys::image(a, r, repo, &digest), serde_json::to_vec(&image).unwrap())];
        if let Some(t) = tag {
            let tr = TagRef { image_digest: digest };
            ops.push(Op::put(keys::tag(a, r, repo, t), serde_json::to_vec(&tr).unwrap()));
        }
        assert!(ctx.db.commit(Txn { compares: vec![], ops }).await.unwrap());
    }

    #[tokio::test]
    async fn keeps_only_the_newest_images() {
        let ctx = Ctx::in_memory("123456789012", "us-east-1");
        let call = |op: &'static str, body: serde_json::Value| {
            let ctx = ctx.clone();
            async move {
                let input = ECR.model.validate(op, body).unwrap();
                wharf_api::call(&ECR, &ctx, op, input).await.unwrap()
            }
        };
        call("CreateRepository", json!({"repositoryName": "app"})).await.unwrap();
        let now = wharf_types::now();
        for i in 0..5u32 {
            push(&ctx, "app", i, Some(&format!("v{i}")), now - 100.0 + f64::from(i)).await;
        }
        push(&ctx, "app", 9, None, now - 200.0).await;
        let r = EcrLifecycle::new(ctx.db.clone());
        assert_eq!(r.activate().await, Status::default(), "no policy, nothing expires");
        let policy = json!({"rules": [{"rulePriority": 1, "description": "keep 2",
            "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan", "countNumber": 2},
            "action": {"type": "expire"}}]});
        call("PutLifecyclePolicy", json!({"repositoryName": "app", "lifecyclePolicyText": policy.to_string()}))
            .await
            .unwrap();
        call("StartLifecyclePolicyPreview", json!({"repositoryName": "app"})).await.unwrap();
        let preview = call("GetLifecyclePolicyPreview", json!({"repositoryName": "app"})).await.unwrap();
        assert_eq!(preview["summary"]["expiringImageTotalCount"], 3);
        let got = call("GetLifecyclePolicy", json!({"repositoryName": "app"})).await.unwrap();
        assert!(got.get("lastEvaluatedAt").is_none(), "not evaluated yet: {got}");
        assert_eq!(r.activate().await.changed, 3);
        assert_eq!(r.activate().await.changed, 0);
        let got = call("GetLifecyclePolicy", json!({"repositoryName": "app"})).await.unwrap();
        assert!(got["lastEvaluatedAt"].as_f64().unwrap() >= now);
        let listed =
            call("ListImages", json!({"repositoryName": "app", "filter": {"tagStatus": "TAGGED"}})).await.unwrap();
        let mut tags: Vec<&str> =
            listed["imageIds"].as_array().unwrap().iter().map(|i| i["imageTag"].as_str().unwrap()).collect();
        tags.sort();
        assert_eq!(tags, ["v3", "v4"]);
        // Expired tags are gone with their images; the untagged image was not selected.
        assert!(ctx.db.get::<TagRef>(&keys::tag("123456789012", "us-east-1", "app", "v0")).await.unwrap().is_none());
        let all = call("DescribeImages", json!({"repositoryName": "app"})).await.unwrap();
        assert_eq!(all["imageDetails"].as_array().unwrap().len(), 3);
    }
}

mod log_retention {
    use serde_json::json;
    use wharf_api::logs::now_ms;
    use wharf_api::{Ctx, LOGS};
    use wharf_controllers::{LogRetention, Reconciler, Status};

    #[tokio::test]
    async fn activation_deletes_expired_events() {
        let ctx = Ctx::in_memory("123456789012", "us-east-1");
        let call = |op: &'static str, body: serde_json::Value| {
            let ctx = ctx.clone();
            async move {
                let input = LOGS.model.validate(op, body).unwrap();
                wharf_api::call(&LOGS, &ctx, op, input).await.unwrap().unwrap()
            }
        };
        call("CreateLogGroup", json!({"logGroupName": "g"})).await;
        call("CreateLogStream", json!({"logGroupName": "g", "logStreamName": "s"})).await;
        let old = now_ms() - 2 * 86_400_000;
        let events: Vec<_> = (0..3).map(|i| json!({"timestamp": old + i, "message": "old"})).collect();
        call("PutLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "logEvents": events})).await;
        let r = LogRetention::new(ctx.logs().clone());
        assert_eq!(r.activate().await, Status::default());
        call("PutRetentionPolicy", json!({"logGroupName": "g", "retentionInDays": 1})).await;
        assert_eq!(r.activate().await.changed, 3);
        assert_eq!(r.activate().await.changed, 0);
    }
}
