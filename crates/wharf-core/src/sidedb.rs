//! A SQLite database beside the resource store, for high-volume data that is not desired
//! state: log events ([`crate::logs`]) and metric datapoints ([`crate::metrics`]).
//!
//! One writer connection and one reader connection, each behind a mutex and used only from
//! `tokio::task::spawn_blocking`, so SQLite never blocks the async runtime; WAL lets reads run
//! while a write is in progress. `synchronous=FULL` as the resource store: an acknowledged
//! write survives a power loss. It must never hold a connection across an `.await`.

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use wharf_types::{Error, Result};

/// A failure inside a database closure: SQLite's, or a domain error to hand back as is.
pub(crate) enum Fail {
    Sql(rusqlite::Error),
    Domain(Error),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Domain(e)
    }
}

pub(crate) type R<T> = std::result::Result<T, Fail>;

/// A handle on one side database; cheap to clone.
#[derive(Clone)]
pub(crate) struct SideDb {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Connection>,
    /// `None` for an in-memory database, whose one connection serves reads too.
    reader: Option<Mutex<Connection>>,
    location: String,
    /// What the database holds, for error messages ("log store").
    what: &'static str,
}

impl std::fmt::Debug for SideDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(self.inner.what).field("location", &self.inner.location).finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn configure(conn: &Connection, what: &str) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if mode != "wal" && mode != "memory" {
        tracing::warn!(mode, what, "SQLite refused WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

impl SideDb {
    /// Opens (creating if needed) the database at `path` and applies `schema`.
    pub(crate) fn open(path: &Path, schema: &str, what: &'static str) -> rusqlite::Result<SideDb> {
        let writer = Connection::open(path)?;
        configure(&writer, what)?;
        writer.execute_batch(schema)?;
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )?;
        reader.busy_timeout(Duration::from_secs(10))?;
        let inner = Inner {
            writer: Mutex::new(writer),
            reader: Some(Mutex::new(reader)),
            location: path.display().to_string(),
            what,
        };
        Ok(SideDb { inner: Arc::new(inner) })
    }

    /// A private in-memory database (tests).
    pub(crate) fn open_in_memory(schema: &str, what: &'static str) -> rusqlite::Result<SideDb> {
        let conn = Connection::open_in_memory()?;
        configure(&conn, what)?;
        conn.execute_batch(schema)?;
        let inner = Inner { writer: Mutex::new(conn), reader: None, location: ":memory:".into(), what };
        Ok(SideDb { inner: Arc::new(inner) })
    }

    async fn run<T: Send + 'static>(
        &self,
        write: bool,
        f: impl FnOnce(&mut Connection) -> R<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        let what = inner.what;
        let joined = tokio::task::spawn_blocking(move || {
            let m = match (&inner.reader, write) {
                (Some(r), false) => r,
                _ => &inner.writer,
            };
            f(&mut lock(m))
        })
        .await;
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Fail::Domain(e))) => Err(e),
            Ok(Err(Fail::Sql(e))) => Err(Error::Internal(format!("{what} failure: {e}"))),
            Err(e) => Err(Error::Internal(format!("{what} task failed: {e}"))),
        }
    }

    /// Runs `f` on the writer connection.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> R<T> + Send + 'static,
    ) -> Result<T> {
        self.run(true, f).await
    }

    /// Runs `f` on the reader connection (the writer's, in memory).
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> R<T> + Send + 'static,
    ) -> Result<T> {
        self.run(false, f).await
    }
}
