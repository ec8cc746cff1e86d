//! Where ECS resources live in the store: `/ecs/<kind>/<account>/<region>/` then
//! `cluster/<name>`, `taskdef/<family>#<revision:010>`, `service/<cluster>/<name>`,
//! `task/<cluster>/<id>`, `instance/<cluster>/<id>`, `tags/<arn>`, `setting/<principal>/<name>`
//! (the kind leads the path).

use crate::Scoped;

/// Store keys of ECS resources in the caller's scope. Kind first, then account and region
/// (`/ecs/<kind>/<account>/<region>/…`), so a controller can watch or list one kind across
/// every account with a single prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    scope: String,
}

impl Keys {
    pub fn new(s: &Scoped) -> Self {
        Self::for_scope(&s.scope)
    }
    pub fn for_scope(scope: &wharf_types::Scope) -> Self {
        Keys { scope: format!("{}/{}", scope.account, scope.region) }
    }
    fn kind(&self, kind: &str) -> String {
        format!("/ecs/{kind}/{}/", self.scope)
    }
    pub fn clusters(&self) -> String {
        self.kind("cluster")
    }
    pub fn cluster(&self, name: &str) -> String {
        format!("{}{name}", self.kind("cluster"))
    }
    pub fn taskdefs(&self) -> String {
        self.kind("taskdef")
    }
    /// `#` sorts below every character a family may contain, so key order is ECS's order:
    /// by family name (`web` before `web-api`), then by revision.
    pub fn family(&self, family: &str) -> String {
        format!("{}{family}#", self.kind("taskdef"))
    }
    pub fn taskdef(&self, family: &str, revision: i64) -> String {
        format!("{}{family}#{revision:010}", self.kind("taskdef"))
    }
    pub fn services(&self, cluster: &str) -> String {
        format!("{}{cluster}/", self.kind("service"))
    }
    pub fn service(&self, cluster: &str, name: &str) -> String {
        format!("{}{cluster}/{name}", self.kind("service"))
    }
    /// Every task of the scope, in every cluster.
    pub fn all_tasks(&self) -> String {
        self.kind("task")
    }
    pub fn tasks(&self, cluster: &str) -> String {
        format!("{}{cluster}/", self.kind("task"))
    }
    pub fn task(&self, cluster: &str, id: &str) -> String {
        format!("{}{cluster}/{id}", self.kind("task"))
    }
    pub fn instances(&self, cluster: &str) -> String {
        format!("{}{cluster}/", self.kind("instance"))
    }
    pub fn instance(&self, cluster: &str, id: &str) -> String {
        format!("{}{cluster}/{id}", self.kind("instance"))
    }
    pub fn agent_session(&self, cluster: &str, instance_id: &str) -> String {
        format!("{}{cluster}/{instance_id}", self.kind("agent-session"))
    }
    pub fn agent_sessions(&self, cluster: &str) -> String {
        format!("{}{cluster}/", self.kind("agent-session"))
    }
    pub fn service_deployments(&self, cluster: &str, service: &str) -> String {
        format!("{}{cluster}/{service}/", self.kind("service-deployment"))
    }
    pub fn service_deployment(&self, cluster: &str, service: &str, id: &str) -> String {
        format!("{}{cluster}/{service}/{id}", self.kind("service-deployment"))
    }
    pub fn service_revision(&self, cluster: &str, service: &str, id: &str) -> String {
        format!("{}{cluster}/{service}/{id}", self.kind("service-revision"))
    }
    pub fn tags(&self, arn: &str) -> String {
        format!("{}{arn}", self.kind("tags"))
    }
    pub fn settings(&self) -> String {
        self.kind("setting")
    }
    pub fn setting(&self, principal: &str, name: &str) -> String {
        format!("{}{principal}/{name}", self.kind("setting"))
    }
}

/// Every account's and region's keys of one kind (for controllers): `/ecs/<kind>/`.
pub fn all_of_kind(kind: &str) -> String {
    format!("/ecs/{kind}/")
}

/// The scope a key of `/ecs/<kind>/<account>/<region>/…` belongs to.
pub fn scope_of_key(key: &str) -> Option<wharf_types::Scope> {
    let mut parts = key.strip_prefix("/ecs/")?.splitn(4, '/');
    let _kind = parts.next()?;
    Some(wharf_types::Scope::new(parts.next()?, parts.next()?))
}
