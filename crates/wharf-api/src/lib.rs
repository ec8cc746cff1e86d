//! Wharf's AWS API handlers, one module per AWS service.
//!
//! A handler takes the caller's context and its model-validated input as JSON and returns
//! the output document or a domain error. Handlers never see HTTP, signatures or error
//! codes (that is `wharf-protocol` and the binary's server), and keep no state of their own:
//! everything durable goes through the store (CloudWatch Logs events through the log store,
//! which lives outside it: see [`logs`]).

#![forbid(unsafe_code)]

/// Declares a service's dispatch table: `OPERATIONS` (what Wharf implements, in order) and
/// `call`, which runs one of them. One list, so the two can never disagree.
macro_rules! operations {
    ($($name:literal => $handler:path),* $(,)?) => {
        /// Every operation of this service Wharf implements.
        pub const OPERATIONS: &[&str] = &[$($name),*];

        #[allow(unreachable_code)] // a service whose table is still empty
        pub async fn call(ctx: &crate::Ctx, op: &str, input: serde_json::Value) -> Option<wharf_types::Result<serde_json::Value>> {
            let _ = (ctx, &input);
            Some(match op {
                $($name => $handler(ctx, input).await,)*
                _ => return None,
            })
        }
    };
}

pub mod agent_api;
pub mod ecr;
pub mod ecs;
pub mod elb;
pub mod logs;
mod paging;
pub mod sts;

pub use logs::LogStore;
pub use wharf_core::{Db, Scoped, db};

use serde_json::Value;
use std::sync::{Arc, LazyLock};
use wharf_protocol::{Model, Protocol};
use wharf_types::{Result, Scope};

/// Who is calling, where, and the state they act on. Derefs to the [`Scoped`] store view the
/// domain operations take, so a handler hands `ctx` straight to `wharf_core`.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The caller's account and region, with the store.
    pub scoped: Scoped,
    pub access_key_id: String,
    /// CloudWatch Logs groups, streams and events (their own database, not the store).
    pub logs: LogStore,
    /// ECR's repositories, images and blobs (metadata in the store, content on disk).
    pub registry: wharf_registry::Registry,
}

impl Ctx {
    /// A context over fresh in-memory state (tests and tools).
    pub fn in_memory(account: &str, region: &str) -> Ctx {
        let store = wharf_store::SqliteStore::open_in_memory().expect("in-memory store");
        Ctx {
            scoped: Scoped::new(Scope::new(account, region), Db::new(store.clone())),
            access_key_id: "AKIA".into(),
            logs: LogStore::open_in_memory().expect("in-memory log store"),
            registry: wharf_registry::Registry::ephemeral(store).expect("temporary registry dir"),
        }
    }

    /// The IAM principal of the account's access key (Wharf has one root user per account).
    pub fn principal_arn(&self) -> String {
        format!("arn:aws:iam::{}:root", self.scope.account)
    }
}

impl std::ops::Deref for Ctx {
    type Target = Scoped;
    fn deref(&self) -> &Scoped {
        &self.scoped
    }
}

/// One AWS service Wharf serves: its model and its operations.
#[derive(Debug)]
pub struct Service {
    pub model: &'static Model,
    pub protocol: Protocol,
    /// Operations Wharf implements, in the order the compatibility doc lists them.
    pub operations: &'static [&'static str],
}

impl Service {
    /// The model's endpoint prefix (`ecs`, `sts`): the service name in error mapping and
    /// SigV4 credential scopes.
    pub fn name(&self) -> &str {
        &self.model.metadata.endpoint_prefix
    }

    pub fn implements(&self, op: &str) -> bool {
        self.operations.contains(&op)
    }
}

fn load(json: &str, name: &str) -> Model {
    match Model::from_json(json) {
        Ok(m) => m,
        // The models ship inside the binary; a bad one is a build defect caught by tests.
        Err(e) => panic!("embedded {name} model is invalid: {e}"),
    }
}

pub static ECS_MODEL: LazyLock<Model> = LazyLock::new(|| load(include_str!("../models/ecs.json"), "ecs"));
pub static STS_MODEL: LazyLock<Model> = LazyLock::new(|| load(include_str!("../models/sts.json"), "sts"));
pub static LOGS_MODEL: LazyLock<Model> = LazyLock::new(|| load(include_str!("../models/logs.json"), "logs"));
pub static ECR_MODEL: LazyLock<Model> = LazyLock::new(|| load(include_str!("../models/ecr.json"), "ecr"));
pub static ELBV2_MODEL: LazyLock<Model> = LazyLock::new(|| load(include_str!("../models/elbv2.json"), "elbv2"));

pub static ECS: LazyLock<Service> =
    LazyLock::new(|| Service { model: &ECS_MODEL, protocol: Protocol::Json, operations: ecs::OPERATIONS });
pub static STS: LazyLock<Service> =
    LazyLock::new(|| Service { model: &STS_MODEL, protocol: Protocol::Query, operations: sts::OPERATIONS });
pub static LOGS: LazyLock<Service> =
    LazyLock::new(|| Service { model: &LOGS_MODEL, protocol: Protocol::Json, operations: logs::OPERATIONS });

pub static ECR: LazyLock<Service> =
    LazyLock::new(|| Service { model: &ECR_MODEL, protocol: Protocol::Json, operations: ecr::OPERATIONS });
pub static ELBV2: LazyLock<Service> =
    LazyLock::new(|| Service { model: &ELBV2_MODEL, protocol: Protocol::Query, operations: elb::OPERATIONS });

/// Every service, for dispatch and for the compatibility doc.
pub fn services() -> [&'static Service; 5] {
    [&ECS, &STS, &LOGS, &ECR, &ELBV2]
}

/// The largest request body accepted for a request with this `X-Amz-Target` (if any):
/// CloudWatch Logs batches need more than the 1 MiB every other service gets.
pub fn max_body_bytes(target: Option<&str>) -> usize {
    match target.and_then(|t| t.split_once('.')) {
        Some((logs::TARGET_PREFIX, _)) => logs::MAX_BODY_BYTES,
        _ => wharf_protocol::MAX_BODY_BYTES,
    }
}

/// The JSON 1.1 service whose `X-Amz-Target` prefix this is.
pub fn json_service(target_prefix: &str) -> Option<&'static Service> {
    services()
        .into_iter()
        .find(|s| s.protocol == Protocol::Json && s.model.metadata.target_prefix.as_deref() == Some(target_prefix))
}

/// The Query service a signed request is for, by its credential scope's service name.
pub fn query_service(signing_name: &str) -> Option<&'static Service> {
    services().into_iter().find(|s| {
        s.protocol == Protocol::Query
            && (s.model.metadata.signing_name.as_deref() == Some(signing_name)
                || s.model.metadata.endpoint_prefix == signing_name)
    })
}

/// Runs operation `op` of `service` with validated `input`. `None` when not implemented.
pub async fn call(service: &Service, ctx: &Ctx, op: &str, input: Value) -> Option<Result<Value>> {
    match service.name() {
        "ecs" => ecs::call(ctx, op, input).await,
        "sts" => sts::call(ctx, op, input).await,
        "logs" => logs::call(ctx, op, input).await,
        "api.ecr" => ecr::call(ctx, op, input).await,
        "elasticloadbalancing" => elb::call(ctx, op, input).await,
        _ => None,
    }
}

/// Shared handle for the binary: the services are statics, only the store is per process.
pub type Shared<T> = Arc<T>;
