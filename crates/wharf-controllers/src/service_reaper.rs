//! Finishes DeleteService: a DRAINING service whose tasks have all stopped becomes INACTIVE
//! (what `aws ecs wait services-inactive` waits for). It must never touch ACTIVE services.

use crate::{Reconciler, Status};
use std::time::Duration;
use wharf_core::Db;
use wharf_core::db::cas_put;
use wharf_core::keys::{Keys, all_of_kind, scope_of_key};
use wharf_types::ecs::{Service, ServiceStatus};

#[derive(Debug, Clone)]
pub struct ServiceReaper {
    db: Db,
}

impl ServiceReaper {
    pub fn new(db: Db) -> Self {
        ServiceReaper { db }
    }

    async fn reap(&self) -> Result<usize, wharf_types::Error> {
        let mut changed = 0;
        for s in self.db.list::<Service>(&all_of_kind("service")).await? {
            if s.doc.status != ServiceStatus::Draining {
                continue;
            }
            let Some(scope) = scope_of_key(&s.key) else { continue };
            let cluster = s.doc.cluster_arn.rsplit('/').next().unwrap_or_default();
            let group = format!("service:{}", s.doc.service_name);
            let tasks = self.db.list_tasks(&Keys::for_scope(&scope).tasks(cluster)).await?;
            let busy =
                tasks.iter().any(|t| t.doc.group.as_ref() == Some(&group) && t.doc.last_status.holds_resources());
            if busy {
                continue;
            }
            let mut doc = s.doc.clone();
            doc.status = ServiceStatus::Inactive;
            doc.deployments.clear();
            // A lost race means someone changed the service; the next activation looks again.
            if self.db.commit(cas_put(&s.key, s.rev, &doc)?).await? {
                changed += 1;
            }
        }
        Ok(changed)
    }
}

impl Reconciler for ServiceReaper {
    fn name(&self) -> &'static str {
        "service-reaper"
    }
    fn watch_prefixes(&self) -> Vec<String> {
        vec![all_of_kind("service"), all_of_kind("task")]
    }
    fn period(&self) -> Duration {
        Duration::from_secs(5)
    }
    async fn activate(&self) -> Status {
        match self.reap().await {
            Ok(changed) => Status { changed, errors: vec![], ..Default::default() },
            Err(e) => Status { changed: 0, errors: vec![e.to_string()], ..Default::default() },
        }
    }
}
