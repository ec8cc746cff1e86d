//! Typed documents over the store: serde in and out, compare-and-swap writes, and store
//! failures turned into `Error::Store` (never a client's fault).

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;
use wharf_store::{Compare, Op, RangeRequest, Revision, SqliteStore, Store, Txn};
use wharf_types::{Error, Result};

/// The store backend. A concrete type for now; when the etcd backend lands this becomes an
/// enum over backends (the `Store` trait is not object-safe by design: async fns).
pub type Backend = SqliteStore;

#[derive(Debug, Clone)]
pub struct Db {
    store: Backend,
    sequences: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>,
    /// Which tasks are on which instance (for the agents' assignment streams).
    pub assignments: crate::assignment_index::AssignmentIndex,
    /// Decoded tasks, reused by readers of many tasks while unchanged ([`Db::list_tasks`]).
    tasks: crate::doc_cache::DocCache<wharf_types::ecs::Task>,
}

/// A document with the revision it was read at (for compare-and-swap).
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub key: String,
    pub doc: T,
    pub rev: Revision,
}

/// How many times a handler re-runs a read-modify-write that lost a race to a concurrent
/// write. This is optimistic concurrency, not a retry of a failed operation.
const CAS_ATTEMPTS: usize = 32;

/// A document that cannot be encoded cannot be stored either: a store failure too.
pub fn encode<T: Serialize>(doc: &T) -> Result<Bytes> {
    serde_json::to_vec(doc).map(Bytes::from).map_err(Error::store)
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Internal(format!("corrupt document at {key}: {e}")))
}

impl Db {
    pub fn new(store: Backend) -> Self {
        Db { store, sequences: Default::default(), assignments: Default::default(), tasks: Default::default() }
    }

    /// The next number of sequence `name` (task definition revisions): one more than both
    /// `stored_last` (the highest number in the store) and anything this process handed out.
    /// Concurrent callers get distinct numbers without racing on one compare-and-swap; the
    /// write that uses the number still guards it with `ModRevision(key, 0)`, so another
    /// process sharing the store can never cause a duplicate (the loser re-reads and asks
    /// again). A number whose write fails is skipped, as ECS never reuses revisions either.
    pub fn next_in_sequence(&self, name: &str, stored_last: i64) -> i64 {
        let mut map = self.sequences.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = map.entry(name.to_string()).or_insert(0);
        *slot = (*slot).max(stored_last) + 1;
        *slot
    }

    pub fn store(&self) -> &Backend {
        &self.store
    }

    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>> {
        match self.store.get(key).await.map_err(Error::store)? {
            None => Ok(None),
            Some(kv) => Ok(Some(Versioned { doc: decode(key, &kv.value)?, rev: kv.mod_revision, key: kv.key })),
        }
    }

    /// Every document under `prefix`, in key order.
    pub async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<Versioned<T>>> {
        let resp = self
            .store
            .range(RangeRequest { prefix: prefix.to_string(), ..Default::default() })
            .await
            .map_err(Error::store)?;
        resp.kvs
            .into_iter()
            .map(|kv| Ok(Versioned { doc: decode(&kv.key, &kv.value)?, rev: kv.mod_revision, key: kv.key }))
            .collect()
    }

    /// Every task under `prefix`, in key order, as [`Db::list`] reads them, but decoding
    /// only the tasks written since the last such read: a cluster's ten thousand tasks cost a
    /// range read, not ten thousand JSON decodes. Shared, immutable documents: clone one to
    /// change it.
    pub async fn list_tasks(&self, prefix: &str) -> Result<Vec<Versioned<std::sync::Arc<wharf_types::ecs::Task>>>> {
        let resp = self
            .store
            .range(RangeRequest { prefix: prefix.to_string(), ..Default::default() })
            .await
            .map_err(Error::store)?;
        self.tasks.resolve(prefix, resp.kvs, decode)
    }

    /// A bounded read: up to `limit` documents under `prefix` after key `after`.
    pub async fn range<T: DeserializeOwned>(
        &self,
        prefix: &str,
        after: Option<String>,
        limit: usize,
        descending: bool,
    ) -> Result<(Vec<Versioned<T>>, bool)> {
        let resp = self
            .store
            .range(RangeRequest { prefix: prefix.to_string(), after, limit, descending, keys_only: false })
            .await
            .map_err(Error::store)?;
        let docs = resp
            .kvs
            .into_iter()
            .map(|kv| Ok(Versioned { doc: decode(&kv.key, &kv.value)?, rev: kv.mod_revision, key: kv.key }))
            .collect::<Result<Vec<_>>>()?;
        Ok((docs, resp.more))
    }

    /// Keys only, for counting and existence checks.
    pub async fn keys(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let resp = self
            .store
            .range(RangeRequest { prefix: prefix.to_string(), limit, keys_only: true, ..Default::default() })
            .await
            .map_err(Error::store)?;
        Ok(resp.kvs.into_iter().map(|kv| kv.key).collect())
    }

    /// Applies `txn` if its compares hold. `Ok(false)` means a concurrent write won.
    pub async fn commit(&self, txn: Txn) -> Result<bool> {
        Ok(self.store.txn(txn).await.map_err(Error::store)?.succeeded)
    }

    /// Runs a read-modify-write until its compare-and-swap commits. `attempt` reads what it
    /// needs and returns the transaction plus the value to answer with; `None` as the
    /// transaction means there is nothing to write.
    pub async fn update<R, F, Fut>(&self, mut attempt: F) -> Result<R>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(Option<Txn>, R)>>,
    {
        for round in 0..CAS_ATTEMPTS {
            let (txn, out) = attempt().await?;
            let Some(txn) = txn else { return Ok(out) };
            if self.commit(txn).await? {
                return Ok(out);
            }
            // Spread the losers of a hot document out so they stop colliding.
            let jitter = rand::random_range(0..=(1u64 << round.min(6)));
            tokio::time::sleep(std::time::Duration::from_micros(100 * jitter)).await;
        }
        Err(Error::Internal("too many concurrent updates of the same resource; try again".into()))
    }
}

/// A transaction that writes `doc` at `key` only if the key is still at `rev` (0: absent).
pub fn cas_put<T: Serialize>(key: &str, rev: Revision, doc: &T) -> Result<Txn> {
    Ok(Txn { compares: vec![Compare::ModRevision(key.to_string(), rev)], ops: vec![Op::put(key, encode(doc)?)] })
}
