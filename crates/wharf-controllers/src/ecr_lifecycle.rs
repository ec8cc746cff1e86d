//! Enforces ECR lifecycle policies: expires (deletes, with their tags) the images a
//! repository's policy selects. Woken by pushes, deletes and policy changes (store watches on
//! repositories and images) and periodically, since `sinceImagePushed` rules expire images
//! with nothing changing. Blobs the expired manifests referenced are the registry's garbage
//! collector's to reclaim; this never touches content.

use crate::{Reconciler, Status};
use std::time::Duration;
use wharf_core::Db;
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
            Err(e) => return Status { changed: 0, errors: vec![e.to_string()], ..Default::default() },
        };
        for repo in repos.iter().filter(|r| r.doc.lifecycle_policy.is_some()) {
            match wharf_core::ecr::expire(&self.db, &repo.key, &repo.doc).await {
                Ok(n) => status.changed += n,
                Err(e) => status.errors.push(format!("{}: {e}", repo.doc.repository_name)),
            }
        }
        status
    }
}
