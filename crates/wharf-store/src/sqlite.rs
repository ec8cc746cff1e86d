//! The embedded SQLite backend of [`Store`]: Wharf's state in one local file, no etcd needed.
//!
//! It exists so a single-node Wharf is self-contained yet durable: every acknowledged write
//! survives `kill -9` and power loss (WAL, `synchronous=FULL`, fsync before answering).
//!
//! Design:
//! * Reads are served from an in-memory mirror (`RwLock<BTreeMap>`) loaded on open. The mirror
//!   only ever holds committed data, so a reader never sees a write that could still be lost.
//! * One writer thread owns the SQLite connection and group-commits: it drains every queued
//!   request, evaluates each transaction against the mirror plus the earlier effects of the
//!   same batch, gives each effective transaction its own revision, writes the whole batch in
//!   one SQLite transaction (one fsync), then updates the mirror, publishes watch events and
//!   only then answers the callers.
//! * Watchers get events from a bounded in-memory history (replay) and then live, through
//!   bounded channels; a watcher that falls behind is told `Compacted`, never waited for.
//!   In `Compacted { requested, oldest }`, `oldest` is the smallest `after_revision` still
//!   watchable. A watcher cut off for being slow gets `requested == oldest ==` the last
//!   revision it was sent; a watch starting before the history gets its own `after_revision`.
//!   The history starts empty on open, so only watches from the current revision on succeed.
//! * Leases live in the writer. Their TTL is persisted, not their deadline: after a reopen every
//!   lease gets a fresh TTL (as etcd does on leader change), so keep-alives never touch disk.
//!
//! It must never: answer a write before it is durable, let a reader see undurable data, block
//! the writer on a slow watcher, or panic on an I/O error (those become `StoreError::Io`).

use crate::{
    Compare, Event, EventKind, KeyValue, LeaseId, Op, RangeRequest, RangeResponse, Result, Revision, Store, StoreError,
    Txn, TxnResponse, Watch,
};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc as watch_mpsc, oneshot};

/// How many revisions of events are kept for watchers that start in the past.
const HISTORY_REVISIONS: usize = 10_000;
/// Live event batches a watcher may have queued before it is dropped with `Compacted`.
const WATCH_BUFFER: usize = 1024;
/// The most requests group-committed in one SQLite transaction.
const MAX_BATCH: usize = 1024;
/// How often the writer looks for expired leases.
const LEASE_TICK: Duration = Duration::from_millis(500);
/// Longer TTLs are clamped to this (~100 years), so deadlines never overflow.
const MAX_LEASE_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS kv (
        key TEXT PRIMARY KEY, value BLOB NOT NULL, create_rev INTEGER NOT NULL,
        mod_rev INTEGER NOT NULL, version INTEGER NOT NULL, lease INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY, ttl_ms INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
";

/// A [`Store`] kept in one SQLite file. Cheap to clone; the writer stops (after flushing
/// queued requests) when the last clone is dropped or [`SqliteStore::close`] is called.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    requests: RwLock<Option<mpsc::Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// State read by callers and written by the writer thread.
struct Shared {
    mirror: RwLock<Mirror>,
    revision: AtomicI64,
    hub: Mutex<Hub>,
}

struct Mirror {
    kvs: BTreeMap<String, KeyValue>,
    revision: Revision,
}

type Reply<T> = oneshot::Sender<Result<T>>;

enum Request {
    Txn(Txn, Reply<TxnResponse>),
    Grant(Duration, Reply<LeaseId>),
    KeepAlive(LeaseId, Reply<()>),
    Revoke(LeaseId, Reply<()>),
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and starts its writer thread.
    /// Fails with `StoreError::Io` if the file cannot be opened or another process holds it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::start(Connection::open(path), &path.display().to_string())
    }

    /// A store that lives in memory only: for tests of the crates built on [`Store`].
    pub fn open_in_memory() -> Result<Self> {
        Self::start(Connection::open_in_memory(), ":memory:")
    }

    fn start(conn: rusqlite::Result<Connection>, name: &str) -> Result<Self> {
        let fail = |e: rusqlite::Error| StoreError::Io {
            context: "opening the database",
            source: format!("{name}: {e}").into(),
        };
        let mut conn = conn.map_err(fail)?;
        let loaded = load(&mut conn).map_err(fail)?;
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(loaded.revision),
            mirror: RwLock::new(Mirror { kvs: loaded.kvs, revision: loaded.revision }),
            hub: Mutex::new(Hub::new(loaded.revision)),
        });
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            conn,
            shared: shared.clone(),
            leases: loaded.leases,
            revision: loaded.revision,
            next_lease: loaded.next_lease,
        };
        let handle = std::thread::Builder::new()
            .name("wharf-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Io { context: "starting the store writer thread", source: Box::new(e) })?;
        let inner = Inner { shared, requests: RwLock::new(Some(tx)), writer: Mutex::new(Some(handle)) };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Stops accepting requests, waits until the writer has committed every queued one, and
    /// ends all watches. Blocks briefly; later calls on any clone fail with `Closed`.
    pub fn close(&self) {
        self.inner.close();
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let sent = {
            let requests = self.inner.requests.read();
            let requests = requests.expect("store request lock poisoned");
            requests.as_ref().is_some_and(|r| r.send(make(tx)).is_ok())
        };
        if !sent {
            return Err(StoreError::Closed);
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

impl Inner {
    fn close(&self) {
        let sender = self.requests.write().expect("store request lock poisoned").take();
        drop(sender);
        let handle = self.writer.lock().expect("store writer lock poisoned").take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("revision", &self.current_revision()).finish_non_exhaustive()
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<KeyValue>>> + Send {
        std::future::ready(Ok(self.inner.shared.read().kvs.get(key).cloned()))
    }

    fn range(&self, req: RangeRequest) -> impl Future<Output = Result<RangeResponse>> + Send {
        std::future::ready(Ok(self.inner.shared.read().range(&req)))
    }

    fn txn(&self, txn: Txn) -> impl Future<Output = Result<TxnResponse>> + Send {
        self.call(|reply| Request::Txn(txn, reply))
    }

    fn watch(&self, prefix: &str, after_revision: Revision) -> Result<Watch> {
        self.inner.shared.hub().watch(prefix, after_revision)
    }

    fn current_revision(&self) -> Revision {
        self.inner.shared.revision.load(Ordering::Acquire)
    }

    fn grant_lease(&self, ttl: Duration) -> impl Future<Output = Result<LeaseId>> + Send {
        self.call(move |reply| Request::Grant(ttl, reply))
    }

    fn keep_alive(&self, lease: LeaseId) -> impl Future<Output = Result<()>> + Send {
        self.call(move |reply| Request::KeepAlive(lease, reply))
    }

    fn revoke_lease(&self, lease: LeaseId) -> impl Future<Output = Result<()>> + Send {
        self.call(move |reply| Request::Revoke(lease, reply))
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Mirror> {
        self.mirror.read().expect("store mirror lock poisoned")
    }

    fn hub(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().expect("store watch lock poisoned")
    }
}

impl Mirror {
    fn range(&self, req: &RangeRequest) -> RangeResponse {
        let prefix = req.prefix.as_str();
        let after = req.after.as_deref();
        let in_prefix = |(key, _): &(&String, &KeyValue)| key.starts_with(prefix);
        // Both bounds are never set together, so `BTreeMap::range` cannot panic.
        let matched: Box<dyn Iterator<Item = (&String, &KeyValue)>> = if req.descending {
            let end = match (after, prefix_end(prefix)) {
                (Some(a), Some(e)) => Excluded(a.min(e.as_str()).to_owned()),
                (Some(a), None) => Excluded(a.to_owned()),
                (None, Some(e)) => Excluded(e),
                (None, None) => Unbounded,
            };
            let end = end.as_ref().map(String::as_str);
            Box::new(self.kvs.range::<str, _>((Unbounded, end)).rev().take_while(in_prefix))
        } else {
            let start = match after {
                Some(a) if a >= prefix => Excluded(a),
                _ => Included(prefix),
            };
            Box::new(self.kvs.range::<str, _>((start, Unbounded)).take_while(in_prefix))
        };
        let limit = if req.limit == 0 { usize::MAX } else { req.limit };
        let mut kvs = Vec::new();
        let mut more = false;
        for (_, kv) in matched {
            if kvs.len() == limit {
                more = true;
                break;
            }
            let mut kv = kv.clone();
            if req.keys_only {
                kv.value = Bytes::new();
            }
            kvs.push(kv);
        }
        RangeResponse { kvs, more, revision: self.revision }
    }
}

/// The smallest string greater than every string that starts with `prefix` (`None`: no bound).
/// UTF-8 byte order equals code point order, so bumping the last bumpable char is enough.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut end = prefix.to_owned();
    while let Some(c) = end.pop() {
        let next = char::from_u32(u32::from(c) + 1).or((c == '\u{D7FF}').then_some('\u{E000}'));
        if let Some(next) = next {
            end.push(next);
            return Some(end);
        }
    }
    None
}

struct Loaded {
    kvs: BTreeMap<String, KeyValue>,
    leases: HashMap<LeaseId, Lease>,
    revision: Revision,
    next_lease: LeaseId,
}

/// Configures the connection (exclusive lock, WAL, full fsync), creates the schema, and
/// reads everything back.
fn load(conn: &mut Connection) -> rusqlite::Result<Loaded> {
    conn.busy_timeout(Duration::from_secs(1))?;
    // Exclusive locking: a second process opening the same file fails instead of diverging.
    conn.query_row("PRAGMA locking_mode = EXCLUSIVE", [], |_| Ok(()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if mode != "wal" && mode != "memory" {
        tracing::warn!(mode, "SQLite refused WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    tx.execute_batch(SCHEMA)?;
    tx.commit()?;

    let meta = |name: &str| -> rusqlite::Result<i64> {
        let value = conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| r.get(0)).optional()?;
        Ok(value.unwrap_or(0))
    };
    let revision = meta("revision")?;
    let next_lease = meta("next_lease")?.max(1);

    let now = Instant::now();
    let mut leases = HashMap::new();
    let mut stmt = conn.prepare("SELECT id, ttl_ms FROM lease")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, u64>(1)?)))? {
        let (id, ttl_ms) = row?;
        let ttl = Duration::from_millis(ttl_ms).min(MAX_LEASE_TTL);
        let timer = LeaseTimer { ttl, deadline: now + ttl };
        leases.insert(id, Lease { timer, keys: BTreeSet::new() });
    }

    let mut kvs = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT key, value, create_rev, mod_rev, version, lease FROM kv")?;
    let rows = stmt.query_map([], |r| {
        Ok(KeyValue {
            key: r.get(0)?,
            value: Bytes::from(r.get::<_, Vec<u8>>(1)?),
            create_revision: r.get(2)?,
            mod_revision: r.get(3)?,
            version: r.get(4)?,
            lease: r.get(5)?,
        })
    })?;
    for kv in rows {
        let kv = kv?;
        if let Some(lease) = kv.lease.and_then(|id| leases.get_mut(&id)) {
            lease.keys.insert(kv.key.clone());
        }
        kvs.insert(kv.key.clone(), kv);
    }
    Ok(Loaded { kvs, leases, revision, next_lease })
}

#[derive(Debug, Clone, Copy)]
struct LeaseTimer {
    ttl: Duration,
    deadline: Instant,
}

struct Lease {
    timer: LeaseTimer,
    /// Keys (durably) attached to this lease.
    keys: BTreeSet<String>,
}

/// The single owner of the SQLite connection and of all durable state transitions.
struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    leases: HashMap<LeaseId, Lease>,
    revision: Revision,
    next_lease: LeaseId,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Request>) {
        let mut next_tick = Instant::now() + LEASE_TICK;
        loop {
            let mut batch = Vec::new();
            match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(request) => {
                    batch.push(request);
                    batch.extend(rx.try_iter().take(MAX_BATCH - 1));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            let mut expired = Vec::new();
            if now >= next_tick {
                next_tick = now + LEASE_TICK;
                expired.extend(self.leases.iter().filter(|(_, l)| l.timer.deadline <= now).map(|(id, _)| *id));
            }
            if !batch.is_empty() || !expired.is_empty() {
                self.process(batch, &expired, now);
            }
        }
        let mut hub = self.shared.hub();
        hub.closed = true;
        hub.clear();
    }

    fn process(&mut self, batch: Vec<Request>, expired: &[LeaseId], now: Instant) {
        let mirror = self.shared.read();
        let mut stage = Stage {
            mirror: &mirror.kvs,
            durable: &self.leases,
            now,
            kvs: BTreeMap::new(),
            leases: HashMap::new(),
            revision: self.revision,
            next_lease: self.next_lease,
            events: Vec::new(),
        };
        let outcomes: Vec<Outcome> = batch.into_iter().map(|r| stage.handle(r)).collect();
        for &id in expired {
            stage.expire(id);
        }
        let changes = Changes {
            kvs: stage.kvs,
            leases: stage.leases,
            revision: stage.revision,
            next_lease: stage.next_lease,
            events: stage.events,
        };
        drop(mirror);

        let dirty = !changes.kvs.is_empty()
            || changes.next_lease != self.next_lease
            || changes.leases.iter().any(|(id, t)| t.is_none() && self.leases.contains_key(id));
        let persisted = if dirty { self.persist(&changes) } else { Ok(()) };
        let failure = match persisted {
            Ok(()) => {
                self.apply(changes);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed; the batch was not applied");
                Some(e.to_string())
            }
        };
        for outcome in outcomes {
            outcome.send(failure.as_deref());
        }
    }

    fn persist(&mut self, changes: &Changes) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO kv (key, value, create_rev, mod_rev, version, lease)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
            for (key, kv) in &changes.kvs {
                match kv {
                    Some(kv) => put.execute(params![
                        key,
                        &kv.value[..],
                        kv.create_revision,
                        kv.mod_revision,
                        kv.version,
                        kv.lease
                    ])?,
                    None => delete.execute([key])?,
                };
            }
            let mut grant = tx.prepare_cached("INSERT OR REPLACE INTO lease (id, ttl_ms) VALUES (?1, ?2)")?;
            let mut revoke = tx.prepare_cached("DELETE FROM lease WHERE id = ?1")?;
            for (id, timer) in &changes.leases {
                match timer {
                    Some(t) if !self.leases.contains_key(id) => {
                        let ttl_ms = i64::try_from(t.ttl.as_millis()).unwrap_or(i64::MAX);
                        grant.execute([id, &ttl_ms])?
                    }
                    None if self.leases.contains_key(id) => revoke.execute([id])?,
                    _ => 0,
                };
            }
            tx.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('revision', ?1), ('next_lease', ?2)",
                [changes.revision, changes.next_lease],
            )?;
        }
        tx.commit()
    }

    /// Makes a committed batch visible: leases, mirror, revision, then watch events.
    fn apply(&mut self, changes: Changes) {
        for (id, timer) in changes.leases {
            match timer {
                Some(timer) => {
                    let lease = self.leases.entry(id).or_insert_with(|| Lease { timer, keys: BTreeSet::new() });
                    lease.timer = timer;
                }
                None => {
                    self.leases.remove(&id);
                }
            }
        }
        let mut mirror = self.shared.mirror.write().expect("store mirror lock poisoned");
        for (key, kv) in changes.kvs {
            let old_lease = mirror.kvs.get(&key).and_then(|kv| kv.lease);
            let new_lease = kv.as_ref().and_then(|kv| kv.lease);
            if old_lease != new_lease {
                if let Some(lease) = old_lease.and_then(|id| self.leases.get_mut(&id)) {
                    lease.keys.remove(&key);
                }
                if let Some(lease) = new_lease.and_then(|id| self.leases.get_mut(&id)) {
                    lease.keys.insert(key.clone());
                }
            }
            match kv {
                Some(kv) => mirror.kvs.insert(key, kv),
                None => mirror.kvs.remove(&key),
            };
        }
        mirror.revision = changes.revision;
        self.shared.revision.store(changes.revision, Ordering::Release);
        drop(mirror);
        self.revision = changes.revision;
        self.next_lease = changes.next_lease;

        if !changes.events.is_empty() {
            let mut hub = self.shared.hub();
            for (revision, events) in changes.events {
                hub.publish(revision, events);
            }
        }
    }
}

/// The effects of one batch, not yet durable.
struct Changes {
    kvs: BTreeMap<String, Option<KeyValue>>,
    leases: HashMap<LeaseId, Option<LeaseTimer>>,
    revision: Revision,
    next_lease: LeaseId,
    events: Vec<(Revision, Vec<Event>)>,
}

/// A batch being evaluated: the durable state overlaid with the batch's earlier effects.
struct Stage<'a> {
    mirror: &'a BTreeMap<String, KeyValue>,
    durable: &'a HashMap<LeaseId, Lease>,
    now: Instant,
    /// Staged key states; `None` is a deletion.
    kvs: BTreeMap<String, Option<KeyValue>>,
    /// Staged lease states; `None` is a revocation.
    leases: HashMap<LeaseId, Option<LeaseTimer>>,
    revision: Revision,
    next_lease: LeaseId,
    events: Vec<(Revision, Vec<Event>)>,
}

impl Stage<'_> {
    fn handle(&mut self, request: Request) -> Outcome {
        match request {
            Request::Txn(txn, reply) => Outcome::Txn(reply, self.txn(txn)),
            Request::Grant(ttl, reply) => Outcome::Grant(reply, Ok(self.grant(ttl))),
            Request::KeepAlive(id, reply) => Outcome::Unit(reply, self.keep_alive(id)),
            Request::Revoke(id, reply) => Outcome::Unit(reply, self.revoke(id)),
        }
    }

    fn get(&self, key: &str) -> Option<&KeyValue> {
        match self.kvs.get(key) {
            Some(staged) => staged.as_ref(),
            None => self.mirror.get(key),
        }
    }

    fn lease(&self, id: LeaseId) -> Option<LeaseTimer> {
        match self.leases.get(&id) {
            Some(staged) => *staged,
            None => self.durable.get(&id).map(|l| l.timer),
        }
    }

    fn holds(&self, compare: &Compare) -> bool {
        match compare {
            Compare::ModRevision(key, rev) => self.get(key).map_or(0, |kv| kv.mod_revision) == *rev,
            Compare::PrefixEmpty(prefix) => {
                let staged_live = self
                    .kvs
                    .range::<str, _>((Included(prefix.as_str()), Unbounded))
                    .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                    .any(|(_, v)| v.is_some());
                let durable_live = self
                    .mirror
                    .range::<str, _>((Included(prefix.as_str()), Unbounded))
                    .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                    .any(|(k, _)| !self.kvs.contains_key(k));
                !staged_live && !durable_live
            }
        }
    }

    fn txn(&mut self, txn: Txn) -> Result<TxnResponse> {
        if !txn.compares.iter().all(|c| self.holds(c)) {
            return Ok(TxnResponse { succeeded: false, revision: self.revision });
        }
        for op in &txn.ops {
            if let Op::Put { lease: Some(id), .. } = op
                && self.lease(*id).is_none()
            {
                return Err(StoreError::LeaseNotFound(*id));
            }
        }
        let rev = self.revision + 1;
        let mut events = Vec::new();
        for op in txn.ops {
            match op {
                Op::Put { key, value, lease } => {
                    let prev = self.get(&key).map(|kv| (kv.create_revision, kv.version));
                    let kv = KeyValue {
                        key: key.clone(),
                        value,
                        create_revision: prev.map_or(rev, |(created, _)| created),
                        mod_revision: rev,
                        version: prev.map_or(1, |(_, version)| version + 1),
                        lease,
                    };
                    events.push(Event { kind: EventKind::Put, kv: kv.clone() });
                    self.kvs.insert(key, Some(kv));
                }
                Op::Delete { key } => self.delete(key, rev, &mut events),
            }
        }
        self.bump(events);
        Ok(TxnResponse { succeeded: true, revision: self.revision })
    }

    fn delete(&mut self, key: String, rev: Revision, events: &mut Vec<Event>) {
        if self.get(&key).is_none() {
            return;
        }
        let kv = KeyValue {
            key: key.clone(),
            value: Bytes::new(),
            create_revision: 0,
            mod_revision: rev,
            version: 0,
            lease: None,
        };
        events.push(Event { kind: EventKind::Delete, kv });
        self.kvs.insert(key, None);
    }

    /// Gives the events their own revision; writing nothing keeps the revision.
    fn bump(&mut self, events: Vec<Event>) {
        if !events.is_empty() {
            self.revision += 1;
            self.events.push((self.revision, events));
        }
    }

    fn grant(&mut self, ttl: Duration) -> LeaseId {
        let ttl = ttl.min(MAX_LEASE_TTL);
        let id = self.next_lease;
        self.next_lease += 1;
        self.leases.insert(id, Some(LeaseTimer { ttl, deadline: self.now + ttl }));
        id
    }

    fn keep_alive(&mut self, id: LeaseId) -> Result<()> {
        let ttl = self.lease(id).ok_or(StoreError::LeaseNotFound(id))?.ttl;
        self.leases.insert(id, Some(LeaseTimer { ttl, deadline: self.now + ttl }));
        Ok(())
    }

    /// Deletes the lease and, in one revision, every key attached to it.
    fn revoke(&mut self, id: LeaseId) -> Result<()> {
        self.lease(id).ok_or(StoreError::LeaseNotFound(id))?;
        let durable = self.durable.get(&id).into_iter().flat_map(|l| &l.keys);
        let durable = durable.filter(|k| !self.kvs.contains_key(*k));
        let staged = self.kvs.iter().filter(|(_, kv)| kv.as_ref().is_some_and(|kv| kv.lease == Some(id)));
        let keys: Vec<String> = durable.chain(staged.map(|(k, _)| k)).cloned().collect();
        let rev = self.revision + 1;
        let mut events = Vec::new();
        for key in keys {
            self.delete(key, rev, &mut events);
        }
        self.leases.insert(id, None);
        self.bump(events);
        Ok(())
    }

    fn expire(&mut self, id: LeaseId) {
        if self.lease(id).is_some_and(|t| t.deadline <= self.now) {
            tracing::debug!(lease = id, "lease expired");
            let _ = self.revoke(id);
        }
    }
}

/// A request's answer, held back until its batch is durable.
enum Outcome {
    Txn(Reply<TxnResponse>, Result<TxnResponse>),
    Grant(Reply<LeaseId>, Result<LeaseId>),
    Unit(Reply<()>, Result<()>),
}

impl Outcome {
    fn send(self, failure: Option<&str>) {
        fn finish<T>(reply: Reply<T>, result: Result<T>, failure: Option<&str>) {
            let result = match failure {
                Some(e) => Err(StoreError::Io { context: "committing a write batch", source: e.into() }),
                None => result,
            };
            let _ = reply.send(result); // The caller may have stopped waiting.
        }
        match self {
            Outcome::Txn(reply, result) => finish(reply, result, failure),
            Outcome::Grant(reply, result) => finish(reply, result, failure),
            Outcome::Unit(reply, result) => finish(reply, result, failure),
        }
    }
}

/// Watch registrations and the recent-event history they replay from.
struct Hub {
    history: VecDeque<(Revision, Vec<Event>)>,
    /// Every event with a revision >= this one is still in `history`.
    first_retained: Revision,
    /// Watchers by prefix. An event is offered only to the prefixes of its own key (one
    /// lookup per watched prefix length), not to every watcher: a thousand agents each
    /// watching its own instance key must not make every write cost a thousand offers.
    watchers: HashMap<String, Vec<Watcher>>,
    /// How many watched prefixes have each length.
    lengths: BTreeMap<usize, usize>,
    closed: bool,
}

struct Watcher {
    after: Revision,
    tx: watch_mpsc::Sender<Result<Vec<Event>>>,
}

impl Hub {
    fn new(revision: Revision) -> Self {
        Hub {
            history: VecDeque::new(),
            first_retained: revision + 1,
            watchers: HashMap::new(),
            lengths: BTreeMap::new(),
            closed: false,
        }
    }

    fn watch(&mut self, prefix: &str, after: Revision) -> Result<Watch> {
        if self.closed {
            return Err(StoreError::Closed);
        }
        self.sweep();
        let oldest = self.first_retained - 1;
        if after < oldest {
            let (tx, rx) = watch_mpsc::channel(1);
            let _ = tx.try_send(Err(StoreError::Compacted { requested: after, oldest }));
            return Ok(Watch { rx });
        }
        let start = self.history.partition_point(|(rev, _)| *rev <= after);
        let backlog: Vec<Vec<Event>> = self
            .history
            .range(start..)
            .map(|(_, events)| matching(prefix, events))
            .filter(|batch| !batch.is_empty())
            .collect();
        // Room for the whole replay, plus the live buffer.
        let (tx, rx) = watch_mpsc::channel(backlog.len() + WATCH_BUFFER);
        for batch in backlog {
            let _ = tx.try_send(Ok(batch));
        }
        let list = self.watchers.entry(prefix.to_owned()).or_default();
        if list.is_empty() {
            *self.lengths.entry(prefix.len()).or_default() += 1;
        }
        list.push(Watcher { after, tx });
        Ok(Watch { rx })
    }

    /// Forgets watchers whose receivers were dropped.
    fn sweep(&mut self) {
        let mut emptied = vec![];
        for (prefix, list) in &mut self.watchers {
            list.retain(|w| !w.tx.is_closed());
            if list.is_empty() {
                emptied.push(prefix.clone());
            }
        }
        for prefix in emptied {
            self.forget(&prefix);
        }
    }

    fn forget(&mut self, prefix: &str) {
        self.watchers.remove(prefix);
        if let Some(n) = self.lengths.get_mut(&prefix.len()) {
            *n -= 1;
            if *n == 0 {
                self.lengths.remove(&prefix.len());
            }
        }
    }

    fn clear(&mut self) {
        self.watchers.clear();
        self.lengths.clear();
    }

    fn publish(&mut self, revision: Revision, events: Vec<Event>) {
        // Each watched prefix's batch, events in revision order.
        let mut batches: Vec<(String, Vec<Event>)> = vec![];
        for e in &events {
            let key = e.kv.key.as_str();
            for &len in self.lengths.range(..=key.len()).map(|(len, _)| len) {
                let Some(prefix) = key.get(..len) else { continue };
                if !self.watchers.contains_key(prefix) {
                    continue;
                }
                match batches.iter_mut().find(|(p, _)| p == prefix) {
                    Some((_, batch)) => batch.push(e.clone()),
                    None => batches.push((prefix.to_owned(), vec![e.clone()])),
                }
            }
        }
        for (prefix, batch) in batches {
            let Some(list) = self.watchers.get_mut(&prefix) else { continue };
            list.retain(|w| w.offer(revision, &batch));
            if list.is_empty() {
                self.forget(&prefix);
            }
        }
        self.history.push_back((revision, events));
        while self.history.len() > HISTORY_REVISIONS {
            if let Some((evicted, _)) = self.history.pop_front() {
                self.first_retained = evicted + 1;
            }
        }
    }
}

impl Watcher {
    /// Queues `batch` (this watcher's events of `revision`) without ever blocking; false
    /// means "drop this watcher".
    fn offer(&self, revision: Revision, batch: &[Event]) -> bool {
        if revision <= self.after {
            return !self.tx.is_closed();
        }
        if self.tx.capacity() <= 1 {
            // Full: spend the last slot telling the watcher it fell behind, then drop it.
            let err = StoreError::Compacted { requested: revision - 1, oldest: revision - 1 };
            let _ = self.tx.try_send(Err(err));
            return false;
        }
        self.tx.try_send(Ok(batch.to_vec())).is_ok()
    }
}

fn matching(prefix: &str, events: &[Event]) -> Vec<Event> {
    events.iter().filter(|e| e.kv.key.starts_with(prefix)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bumps_the_last_char() {
        assert_eq!(prefix_end("/a/"), Some("/a0".to_owned()));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".to_owned()));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert_eq!(prefix_end("x\u{D7FF}"), Some("x\u{E000}".to_owned()));
    }
}
