//! Wharf's durable state, behind one etcd-shaped contract.
//!
//! Keys are `/`-separated paths; values are opaque bytes (serde documents one layer up).
//! Every successful write bumps one global revision; each key remembers its create and
//! mod revisions. Writers use compare-and-swap transactions (no lost updates), readers
//! see only acknowledged (durable) writes, and `watch` streams changes from a revision so
//! controllers react instead of polling. Leases expire keys for liveness and leadership.
//!
//! This crate must never know about ECS: it stores bytes under keys.

#![forbid(unsafe_code)]

pub mod files;
mod sqlite;

pub use sqlite::SqliteStore;

use bytes::Bytes;
use std::time::Duration;

/// A global, monotonically increasing store revision. The first write is revision 1.
pub type Revision = i64;
/// Identifies a lease; keys attached to it are deleted when it expires or is revoked.
pub type LeaseId = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
    /// Number of writes since creation (1 after the first put).
    pub version: i64,
    pub lease: Option<LeaseId>,
}

/// A condition a transaction checks, atomically, before it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals this one; `0` means "the key does not exist".
    ModRevision(String, Revision),
    /// No key starts with this prefix.
    PrefixEmpty(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Bytes, lease: Option<LeaseId> },
    Delete { key: String },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Op::Put { key: key.into(), value: value.into(), lease: None }
    }
    pub fn delete(key: impl Into<String>) -> Self {
        Op::Delete { key: key.into() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResponse {
    /// False when a compare failed; nothing was written then.
    pub succeeded: bool,
    /// The store revision after the transaction (unchanged when it failed or wrote nothing).
    pub revision: Revision,
}

/// A key range read. Keys are compared as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// Every returned key starts with this prefix.
    pub prefix: String,
    /// Start strictly after this key (ascending) or strictly before it (descending).
    pub after: Option<String>,
    /// 0 means no limit.
    pub limit: usize,
    pub descending: bool,
    /// Return keys only (values empty).
    pub keys_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// More keys matched beyond `limit`.
    pub more: bool,
    /// The store revision this read saw.
    pub revision: Revision,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a delete: the key with an empty value and the deletion's mod revision.
    pub kv: KeyValue,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed while {context}")]
    Io {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("revision {requested} has been compacted; the oldest watchable revision is {oldest}")]
    Compacted { requested: Revision, oldest: Revision },
    #[error("lease {0} not found")]
    LeaseNotFound(LeaseId),
    #[error("the store is closed")]
    Closed,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of change events for one prefix. Dropping it cancels the watch.
#[derive(Debug)]
pub struct Watch {
    pub(crate) rx: tokio::sync::mpsc::Receiver<Result<Vec<Event>>>,
}

impl Watch {
    /// The next batch of events (all events of one revision arrive together), or `None`
    /// when the store closed. A `Compacted` error means the watcher fell behind: re-list.
    pub async fn next(&mut self) -> Option<Result<Vec<Event>>> {
        self.rx.recv().await
    }
}

/// The contract every backend (SQLite embedded, etcd) fulfils.
pub trait Store: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>>> + Send;
    fn range(&self, req: RangeRequest) -> impl Future<Output = Result<RangeResponse>> + Send;
    /// Atomically: if every compare holds, apply every op under one new revision.
    /// Returns only once the write is durable.
    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse>> + Send;
    /// Events for keys under `prefix` with revision > `after_revision`.
    fn watch(&self, prefix: &str, after_revision: Revision) -> Result<Watch>;
    fn current_revision(&self) -> Revision;
    fn grant_lease(&self, ttl: Duration) -> impl Future<Output = Result<LeaseId>> + Send;
    fn keep_alive(&self, lease: LeaseId) -> impl Future<Output = Result<()>> + Send;
    fn revoke_lease(&self, lease: LeaseId) -> impl Future<Output = Result<()>> + Send;
}
