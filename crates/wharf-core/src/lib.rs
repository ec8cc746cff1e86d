//! Wharf's domain core, beneath the API handlers (`wharf-api`) and the controllers
//! (`wharf-controllers`): the typed store layer ([`Db`], keys, the document cache, the
//! assignment index) and the operations both sides share — launching, placing and stopping
//! tasks, registering and deregistering load-balancer targets, creating and finishing
//! deployments and recording their history, expiring images, storing log events.
//!
//! Nothing here knows about HTTP, request signatures, callers or AWS error codes: operations
//! take a [`Scoped`] view of the store (one account and region) and return the domain error.

#![forbid(unsafe_code)]

mod assignment_index;
pub mod capacity;
pub mod codedeploy;
pub mod db;
pub mod deployments;
mod doc_cache;
pub mod ecr;
pub mod expr;
pub mod fargate;
pub mod keys;
pub mod logs;
pub mod metrics;
pub mod placement;
mod sidedb;
pub mod tags;
pub mod targets;
pub mod task_definitions;
pub mod tasks;
pub mod traffic;
pub mod vault;

pub use assignment_index::AssignmentIndex;
pub use db::Db;
pub use vault::Vault;

use wharf_types::Scope;

/// The store as one account in one region sees it: what every domain operation runs
/// against. The API's request context derefs to one; a controller makes one per scope it
/// works on.
#[derive(Debug, Clone)]
pub struct Scoped {
    pub scope: Scope,
    pub db: Db,
}

impl Scoped {
    pub fn new(scope: Scope, db: Db) -> Self {
        Scoped { scope, db }
    }
}
