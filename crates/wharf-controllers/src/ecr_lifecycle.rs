//! Enforces ECR lifecycle policies: expires (deletes, with their tags) the images a
//! repository's policy selects. Woken by pushes, deletes and policy changes (store watches on
//! repositories and images) and periodically, since `sinceImagePushed` rules expire images
//! with nothing changing. Blobs the expired manifests referenced are the registry's garbage
//! collector's to reclaim; this never touches content.

use crate::{Reconciler, Status};
use std::time::Duration;
use wharf_api::Db;
use wharf_registry::Repository;

#[derive(Debug, Clone)]
pub struct EcrLifecycle {
    db: Db,
    period: Duration,
}

impl EcrLifecycle {
    pub fn new(db: Db) -> Self {
        EcrLifecycle { db, period: Duration::from_secs(300) }
    }
}

impl Reconciler for EcrLifecycle {
    fn name(&self) -> &'static str {
        "ecr-lifecycle"
    }
    fn watch_prefixes(&self) -> Vec<String> {
        vec!["/ecr/repo/".into(), "/ecr/image/".into()]
    }
    fn period(&self) -> Duration {
        self.period
    }
    async fn activate(&self) -> Status {
        let mut status = Status::default();
        let repos = match self.db.list::<Repository>("/ecr/repo/").await {
            Ok(r) => r,
            Err(e) => return Status { changed: 0, errors: vec![e.to_string()] },
        };
        for repo in repos.iter().filter(|r| r.doc.lifecycle_policy.is_some()) {
            match wharf_api::ecr::expire(&self.db, &repo.key, &repo.doc).await {
                Ok(n) => status.changed += n,
                Err(e) => status.errors.push(format!("{}: {e}", repo.doc.repository_name)),
            }
        }
        status
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use wharf_api::{Ctx, ECR};
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
