//! The content-addressed blob store: layers, configs and manifest bytes under
//! `<algorithm>/<hex>` on `object_store` (a `LocalFileSystem` under `<registry root>/blobs`).
//!
//! A blob becomes visible only by an atomic rename of a fully written, digest-verified upload
//! file (`_uploads/<id>`); nothing here ever holds a whole blob in memory: uploads are
//! appended chunk by chunk and downloads stream in 1 MiB reads (with byte ranges). This module
//! knows nothing about repositories or accounts: which repository may see which blob is the
//! metadata's business (blob links in the store).

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Bytes read per chunk when streaming a blob out.
const READ_CHUNK: usize = 1 << 20;

/// A digest algorithm the registry verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A parsed, validated `algorithm:hex` digest (lowercase hex of the right length).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    pub algorithm: Algorithm,
    pub hex: String,
}

impl Digest {
    /// Parses `sha256:<64 hex>` or `sha512:<128 hex>`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Digest> {
        let (algo, hex) = s.split_once(':')?;
        let algorithm = match algo {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return None,
        };
        let valid = hex.len() == algorithm.hex_len() && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Digest { algorithm, hex: hex.to_string() })
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(algorithm);
        h.update(bytes);
        h.finish()
    }

    fn object_path(&self) -> ObjectPath {
        ObjectPath::from(format!("{}/{}", self.algorithm.name(), self.hex))
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// An incremental hash of either algorithm.
#[derive(Debug, Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest { algorithm: Algorithm::Sha256, hex: hex::encode(h.finalize()) },
            Hasher::Sha512(h) => Digest { algorithm: Algorithm::Sha512, hex: hex::encode(h.finalize()) },
        }
    }
}

/// A stream of blob bytes; an I/O error mid-way ends it early (the response then falls short
/// of its Content-Length and the client sees a broken transfer, never wrong bytes).
pub type ByteStream = Pin<Box<dyn Stream<Item = Bytes> + Send>>;

/// One stored blob's metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlobMeta {
    pub size: u64,
    /// Seconds since the epoch of the last write (GC's grace period counts from here).
    pub modified: f64,
}

#[derive(Debug)]
pub(crate) struct BlobStore {
    store: LocalFileSystem,
    root: PathBuf,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl BlobStore {
    pub(crate) fn open(root: &Path) -> std::io::Result<BlobStore> {
        std::fs::create_dir_all(root.join("_uploads"))?;
        let store = LocalFileSystem::new_with_prefix(root).map_err(io_err)?;
        Ok(BlobStore { store, root: root.to_path_buf() })
    }

    /// The file an upload session appends to (outside every content path).
    pub(crate) fn upload_file(&self, id: &str) -> PathBuf {
        self.root.join("_uploads").join(id)
    }

    pub(crate) fn upload_ids(&self) -> Vec<String> {
        std::fs::read_dir(self.root.join("_uploads"))
            .map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default()
    }

    pub(crate) async fn stat(&self, digest: &Digest) -> Option<BlobMeta> {
        let meta = self.store.head(&digest.object_path()).await.ok()?;
        Some(BlobMeta { size: meta.size, modified: meta.last_modified.timestamp_millis() as f64 / 1000.0 })
    }

    /// Streams `digest` (optionally `range`, inclusive start..exclusive end, clamped to the
    /// size). `None` if the blob does not exist or the range starts beyond its end.
    pub(crate) async fn read(
        &self,
        digest: &Digest,
        range: Option<std::ops::Range<u64>>,
    ) -> Option<(BlobMeta, std::ops::Range<u64>, ByteStream)> {
        let opts = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
        let got = self.store.get_opts(&digest.object_path(), opts).await.ok()?;
        let meta =
            BlobMeta { size: got.meta.size, modified: got.meta.last_modified.timestamp_millis() as f64 / 1000.0 };
        let range = got.range.clone();
        let stream: ByteStream = match got.payload {
            GetResultPayload::File(file, _) => Box::pin(file_stream(tokio::fs::File::from_std(file), range.clone())),
            GetResultPayload::Stream(s) => {
                Box::pin(s.take_while(|r| std::future::ready(r.is_ok())).filter_map(|r| async { r.ok() }))
            }
        };
        Some((meta, range, stream))
    }

    /// Reads a small blob (a manifest) whole.
    pub(crate) async fn read_small(&self, digest: &Digest) -> Option<Bytes> {
        let got = self.store.get(&digest.object_path()).await.ok()?;
        got.bytes().await.ok()
    }

    /// Stores small bytes (a manifest) under their digest, atomically.
    pub(crate) async fn put_small(&self, digest: &Digest, bytes: Bytes) -> std::io::Result<()> {
        self.store.put(&digest.object_path(), bytes.into()).await.map_err(io_err)?;
        // object_store renames its temporary file into place without syncing: the manifest
        // is made durable here, before the push is acknowledged.
        let path = self.root.join(digest.object_path().as_ref());
        tokio::task::spawn_blocking(move || wharf_store::files::sync_with_dir(&path)).await.map_err(io_err)?
    }

    /// Publishes a finished upload file under `digest` by an atomic rename (after fsync).
    pub(crate) async fn publish(&self, upload_id: &str, digest: &Digest) -> std::io::Result<()> {
        let file = tokio::fs::File::open(self.upload_file(upload_id)).await?;
        file.sync_all().await?;
        drop(file);
        let from = ObjectPath::from(format!("_uploads/{upload_id}"));
        self.store.rename(&from, &digest.object_path()).await.map_err(io_err)?;
        let path = self.root.join(digest.object_path().as_ref());
        tokio::task::spawn_blocking(move || wharf_store::files::sync_with_dir(&path)).await.map_err(io_err)?
    }

    pub(crate) async fn delete(&self, digest: &Digest) -> std::io::Result<()> {
        match self.store.delete(&digest.object_path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_err(e)),
        }
    }

    /// Every stored blob with its metadata (for GC).
    pub(crate) async fn list(&self) -> std::io::Result<Vec<(Digest, BlobMeta)>> {
        let mut out = Vec::new();
        for algo in [Algorithm::Sha256, Algorithm::Sha512] {
            let prefix = ObjectPath::from(algo.name());
            let mut listing = self.store.list(Some(&prefix));
            while let Some(item) = listing.next().await {
                let meta = item.map_err(io_err)?;
                let Some(hex) = meta.location.filename() else { continue };
                if let Some(d) = Digest::parse(&format!("{}:{hex}", algo.name())) {
                    let modified = meta.last_modified.timestamp_millis() as f64 / 1000.0;
                    out.push((d, BlobMeta { size: meta.size, modified }));
                }
            }
        }
        Ok(out)
    }
}

/// Streams `range` of `file` in `READ_CHUNK` reads.
fn file_stream(file: tokio::fs::File, range: std::ops::Range<u64>) -> impl Stream<Item = Bytes> + Send {
    futures_util::stream::unfold((file, range.start, range.end, false), |(mut file, pos, end, seeked)| async move {
        if pos >= end {
            return None;
        }
        if !seeked && file.seek(std::io::SeekFrom::Start(pos)).await.is_err() {
            return None;
        }
        let want = (end - pos).min(READ_CHUNK as u64) as usize;
        let mut buf = vec![0u8; want];
        let mut filled = 0;
        while filled < want {
            match file.read(&mut buf[filled..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
        if filled == 0 {
            return None;
        }
        buf.truncate(filled);
        Some((Bytes::from(buf), (file, pos + filled as u64, end, true)))
    })
}

/// Hashes a whole file (when no incremental hash survived, e.g. after a restart).
pub(crate) async fn hash_file(path: &Path, algorithm: Algorithm) -> std::io::Result<(Digest, u64)> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Hasher::new(algorithm);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((h.finish(), total))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn digests_parse_strictly() {
        let d = Digest::of(Algorithm::Sha256, b"hello");
        assert_eq!(d.to_string(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(Digest::parse(&d.to_string()), Some(d));
        let d512 = Digest::of(Algorithm::Sha512, b"hello");
        assert_eq!(Digest::parse(&d512.to_string()).unwrap().algorithm, Algorithm::Sha512);
        assert!(Digest::parse("sha256:ABC").is_none());
        assert!(Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e").is_none());
        assert!(Digest::parse("sha256:").is_none());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_none(), "uppercase hex");
    }
}
