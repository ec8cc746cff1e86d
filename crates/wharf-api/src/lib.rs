//! Wharf's AWS API handlers, one module per AWS service.
//!
//! A handler takes the caller's context and its model-validated input as JSON and returns
//! the output document or a domain error. Handlers never see HTTP, signatures or error
//! codes (that is `wharf-protocol` and the binary's server), and keep no state of their own:
//! everything durable goes through the store (CloudWatch Logs events through the log store,
//! which lives outside it: see [`logs`]).

#![forbid(unsafe_code)]

/// Declares a service's dispatch table: `OPERATIONS` (what Wharf implements, in order) and
/// `dispatch`, which runs one of them. One list, so the two can never disagree.
macro_rules! operations {
    ($($name:literal => $handler:path),* $(,)?) => {
        /// Every operation of this service Wharf implements.
        pub const OPERATIONS: &[&str] = &[$($name),*];

        /// Runs operation `op` (`None`: not one of [`OPERATIONS`]).
        pub fn dispatch<'a>(ctx: &'a crate::Ctx, op: &'a str, input: serde_json::Value) -> crate::Dispatched<'a> {
            Box::pin(async move {
                Some(match op {
                    $($name => $handler(ctx, input).await,)*
                    _ => return None,
                })
            })
        }
    };
}

pub mod agent_api;
pub mod autoscaling;
pub mod cloudwatch;
pub mod codedeploy;
pub mod ecr;
pub mod ecs;
pub mod elb;
pub mod logs;
mod paging;
pub mod secretsmanager;
pub mod ssm;
pub mod sts;

pub use logs::LogStore;
pub use wharf_core::metrics::MetricStore;
pub use wharf_core::{Db, Scoped, Vault, db};

use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use wharf_protocol::{Model, Protocol};
use wharf_types::{Result, Scope};

/// The state every request acts on, opened once per process: the store, the log store and
/// the registry. [`State::context`] makes each request's [`Ctx`].
#[derive(Debug, Clone)]
pub struct State {
    pub db: Db,
    /// CloudWatch Logs groups, streams and events (their own database, not the store).
    pub logs: LogStore,
    /// CloudWatch metric datapoints and alarm history (their own database, not the store).
    pub metrics: MetricStore,
    /// ECR's repositories, images and blobs (metadata in the store, content on disk).
    pub registry: wharf_registry::Registry,
    /// Seals SecureString parameters and secrets before they reach the store.
    pub vault: Vault,
}

impl State {
    /// The context of a request signed with `access_key_id` for `scope`.
    pub fn context(&self, scope: Scope, access_key_id: String) -> Ctx {
        Ctx {
            scoped: Scoped::new(scope, self.db.clone()),
            access_key_id,
            logs: self.logs.clone(),
            metrics: self.metrics.clone(),
            registry: self.registry.clone(),
            vault: self.vault.clone(),
        }
    }
}

/// Who is calling, where, and the state they act on: a request's context, made only here
/// ([`State::context`]). Derefs to the [`Scoped`] store view the domain operations take, so a
/// handler hands `ctx` straight to `wharf_core`; the domain never sees a caller.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The caller's account and region, with the store.
    scoped: Scoped,
    access_key_id: String,
    logs: LogStore,
    metrics: MetricStore,
    registry: wharf_registry::Registry,
    vault: Vault,
}

impl Ctx {
    /// A context over fresh in-memory state (tests and tools).
    pub fn in_memory(account: &str, region: &str) -> Ctx {
        let store = wharf_store::SqliteStore::open_in_memory().expect("in-memory store");
        let state = State {
            db: Db::new(store.clone()),
            logs: LogStore::open_in_memory().expect("in-memory log store"),
            metrics: MetricStore::open_in_memory().expect("in-memory metric store"),
            registry: wharf_registry::Registry::ephemeral(store).expect("temporary registry dir"),
            vault: Vault::ephemeral(),
        };
        state.context(Scope::new(account, region), "AKIA".into())
    }

    /// The access key id the request was signed with.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// CloudWatch Logs' log store.
    pub fn logs(&self) -> &LogStore {
        &self.logs
    }

    /// CloudWatch's metric store.
    pub fn metrics(&self) -> &MetricStore {
        &self.metrics
    }

    /// ECR's registry.
    pub fn registry(&self) -> &wharf_registry::Registry {
        &self.registry
    }

    /// The vault that seals secret values at rest.
    pub fn vault(&self) -> &Vault {
        &self.vault
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

/// What a service's dispatch returns: the operation's result, `None` for an operation the
/// service does not implement. Boxed, so every service's dispatch has one type and the
/// services fit in one table.
pub type Dispatched<'a> = Pin<Box<dyn Future<Output = Option<Result<Value>>> + Send + 'a>>;

/// One AWS service Wharf serves: one entry of [`services!`]'s table.
#[derive(Debug)]
pub struct Service {
    pub model: &'static Model,
    /// The protocols Wharf serves it in (each one its model lists).
    pub protocols: &'static [Protocol],
    /// Operations Wharf implements, in the order the compatibility doc lists them.
    pub operations: &'static [&'static str],
    /// The largest request body this service accepts for an operation not in `larger`.
    pub max_body_bytes: usize,
    /// Operations whose requests carry data (log batches, image layers) and may be larger.
    pub larger: &'static [(&'static str, usize)],
    dispatch: for<'a> fn(&'a Ctx, &'a str, Value) -> Dispatched<'a>,
}

impl Service {
    /// The model's endpoint prefix (`ecs`, `sts`): the service name in error mapping and
    /// SigV4 credential scopes.
    pub fn name(&self) -> &str {
        &self.model.metadata.endpoint_prefix
    }

    /// The largest request body operation `op` accepts.
    pub fn max_body_bytes_for(&self, op: &str) -> usize {
        self.larger.iter().find(|(name, _)| *name == op).map_or(self.max_body_bytes, |&(_, n)| n)
    }

    /// The largest request body any of its operations accepts: the limit for a Query
    /// request, whose operation is named only inside its body.
    pub fn largest_body_bytes(&self) -> usize {
        self.larger.iter().map(|&(_, n)| n).fold(self.max_body_bytes, usize::max)
    }

    pub fn speaks(&self, protocol: Protocol) -> bool {
        self.protocols.contains(&protocol)
    }

    /// Whose error codes it answers with, in every protocol it speaks: Query's when it speaks
    /// Query or its model says it is query-compatible (CloudWatch), else JSON's.
    pub fn error_codes(&self) -> Protocol {
        if self.speaks(Protocol::Query) || self.model.metadata.aws_query_compatible {
            Protocol::Query
        } else {
            Protocol::Json
        }
    }

    /// Its JSON content type, by the model's `jsonVersion`.
    pub fn json_content_type(&self) -> &'static str {
        wharf_protocol::json::content_type(self.model.metadata.json_version.as_deref())
    }

    pub fn implements(&self, op: &str) -> bool {
        self.operations.contains(&op)
    }

    /// Runs operation `op` with validated `input`. `None` when not implemented.
    pub async fn call(&self, ctx: &Ctx, op: &str, input: Value) -> Option<Result<Value>> {
        (self.dispatch)(ctx, op, input).await
    }
}

fn load(json: &str, name: &str) -> &'static Model {
    match Model::from_json(json) {
        // Loaded once per process (the services are statics).
        Ok(m) => Box::leak(Box::new(m)),
        // The models ship inside the binary; a bad one is a build defect caught by tests.
        Err(e) => panic!("embedded {name} model is invalid: {e}"),
    }
}

/// Declares the table of services: a static per service and [`services`], all of them.
macro_rules! services {
    ($($static:ident: $module:ident, model $model:literal, [$($protocol:ident),+], body $body:expr
        $(, larger [$($op:literal: $limit:expr),* $(,)?])?;)*) => {
        $(
            pub static $static: LazyLock<Service> = LazyLock::new(|| Service {
                model: load(include_str!(concat!("../models/", $model, ".json")), $model),
                protocols: &[$(Protocol::$protocol),+],
                operations: $module::OPERATIONS,
                max_body_bytes: $body,
                larger: &[$($(($op, $limit)),*)?],
                dispatch: $module::dispatch,
            });
        )*

        /// Every service, for dispatch and for the compatibility doc.
        pub fn services() -> &'static [&'static Service] {
            static ALL: LazyLock<Vec<&'static Service>> = LazyLock::new(|| vec![$(&*$static),*]);
            &ALL
        }
    };
}

// The services Wharf serves. Adding one: a module with its handlers and `operations!` table,
// its botocore model in `models/`, and one line here (docs/architecture.md has the checklist).
// The protocols are those Wharf serves it in, each one its model lists: CodeDeploy's model
// lists RPC v2 CBOR first, but its SDKs speak JSON 1.1, so it stays JSON.
services! {
    ECS: ecs, model "ecs", [Json], body KIB_256;
    STS: sts, model "sts", [Query], body KIB_64;
    LOGS: logs, model "logs", [Json], body KIB_256, larger ["PutLogEvents": logs::PUT_LOG_EVENTS_BODY_BYTES];
    ECR: ecr, model "ecr", [Json], body KIB_256, larger [
        // A layer part is base64 in JSON: 20 MiB of layer is 27 MiB of body.
        "UploadLayerPart": 28 << 20,
        // Image manifests are at most 4 MiB.
        "PutImage": 6 << 20,
    ];
    ELBV2: elb, model "elbv2", [Query], body KIB_256;
    SSM: ssm, model "ssm", [Json], body KIB_256;
    SECRETS_MANAGER: secretsmanager, model "secretsmanager", [Json], body KIB_256;
    CODEDEPLOY: codedeploy, model "codedeploy", [Json], body KIB_256;
    // botocore speaks JSON 1.0 to it, AWS CLI v2 and older SDKs Query, newer SDKs RPC v2 CBOR.
    CLOUDWATCH: cloudwatch, model "cloudwatch", [Json, Query, Cbor], body KIB_256, larger [
        // 1,000 datums of 150 values each, with dimensions.
        "PutMetricData": 1 << 20,
    ];
    AUTOSCALING: autoscaling, model "application-autoscaling", [Json], body KIB_256;
}

// Requests that carry only settings are small: an ECS task definition is at most 64 KiB, a
// secret 64 KiB (88 KiB as base64), STS's are a few fields. The limits leave room for
// JSON escaping and whitespace.
const KIB_64: usize = 64 << 10;
const KIB_256: usize = 256 << 10;

/// The largest request body accepted for a request to `service` (when its headers name one:
/// JSON's target prefix, CBOR's path, Query's credential scope) and operation `op` (when its
/// headers name it: JSON's target, CBOR's path): the operation's own limit; a Query request
/// names its operation only inside its body, so it gets its service's largest (the server
/// checks the operation's own once the body is read); anything else (the agent API, an
/// unknown service) [`wharf_protocol::MAX_BODY_BYTES`].
pub fn max_body_bytes(service: Option<&Service>, op: Option<&str>) -> usize {
    match (service, op) {
        (Some(s), Some(op)) => s.max_body_bytes_for(op),
        (Some(s), None) => s.largest_body_bytes(),
        (None, _) => wharf_protocol::MAX_BODY_BYTES,
    }
}

/// The JSON service whose `X-Amz-Target` prefix this is.
pub fn json_service(target_prefix: &str) -> Option<&'static Service> {
    services()
        .iter()
        .copied()
        .find(|s| s.speaks(Protocol::Json) && s.model.metadata.target_prefix.as_deref() == Some(target_prefix))
}

/// The RPC v2 CBOR service a request path names (its shape name, which botocore models keep
/// as the target prefix).
pub fn cbor_service(name: &str) -> Option<&'static Service> {
    services()
        .iter()
        .copied()
        .find(|s| s.speaks(Protocol::Cbor) && s.model.metadata.target_prefix.as_deref() == Some(name))
}

/// The Query service a signed request is for, by its credential scope's service name.
pub fn query_service(signing_name: &str) -> Option<&'static Service> {
    services().iter().copied().find(|s| {
        s.speaks(Protocol::Query)
            && (s.model.metadata.signing_name.as_deref() == Some(signing_name)
                || s.model.metadata.endpoint_prefix == signing_name)
    })
}

/// Runs operation `op` of `service` with validated `input`. `None` when not implemented.
pub async fn call(service: &Service, ctx: &Ctx, op: &str, input: Value) -> Option<Result<Value>> {
    service.call(ctx, op, input).await
}

/// Decodes model-validated input into a handler's typed request (a member of the wrong JSON
/// type is the caller's `SerializationException`).
pub(crate) fn input<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| wharf_types::Error::Serialization(e.to_string()))
}

/// Shared handle for the binary: the services are statics, only the store is per process.
pub type Shared<T> = Arc<T>;
