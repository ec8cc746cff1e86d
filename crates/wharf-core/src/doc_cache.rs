//! Decoded documents of one kind, each kept with the revision it was decoded at. A reader
//! that lists thousands of documents (a controller reading every task of a cluster on each
//! activation) then decodes only the ones written since its last read: the store's range
//! read is cheap (shared bytes), the JSON decode is not. The cache never answers on its own:
//! every lookup starts from a store read, and an entry is used only when its revision is
//! the one the store returned, so it cannot serve anything stale.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use wharf_store::{KeyValue, Revision};
use wharf_types::Result;

use crate::db::Versioned;

type Entries<T> = BTreeMap<String, (Revision, Arc<T>)>;

#[derive(Debug)]
pub(crate) struct DocCache<T> {
    entries: Arc<Mutex<Entries<T>>>,
}

impl<T> Clone for DocCache<T> {
    fn clone(&self) -> Self {
        DocCache { entries: self.entries.clone() }
    }
}

impl<T> Default for DocCache<T> {
    fn default() -> Self {
        DocCache { entries: Default::default() }
    }
}

impl<T> DocCache<T> {
    fn lock(&self) -> MutexGuard<'_, Entries<T>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The documents of `kvs` (every key under `prefix`, in key order, as one store read
    /// returned them), decoding those the cache does not hold at their revision. Entries
    /// under `prefix` that the read no longer returned are forgotten.
    pub(crate) fn resolve(
        &self,
        prefix: &str,
        kvs: Vec<KeyValue>,
        decode: impl Fn(&str, &[u8]) -> Result<T>,
    ) -> Result<Vec<Versioned<Arc<T>>>> {
        let mut docs: Vec<Option<Arc<T>>> = {
            let entries = self.lock();
            kvs.iter()
                .map(|kv| match entries.get(&kv.key) {
                    Some((rev, doc)) if *rev == kv.mod_revision => Some(doc.clone()),
                    _ => None,
                })
                .collect()
        };
        // Decoded outside the lock: other readers are not held up by this one's misses.
        let mut fresh = vec![];
        for (kv, doc) in kvs.iter().zip(&mut docs) {
            if doc.is_none() {
                let d = Arc::new(decode(&kv.key, &kv.value)?);
                fresh.push((kv.key.clone(), kv.mod_revision, d.clone()));
                *doc = Some(d);
            }
        }
        let mut entries = self.lock();
        let gone: Vec<String> = entries
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k)
            .filter(|k| kvs.binary_search_by(|kv| kv.key.as_str().cmp(k.as_str())).is_err())
            .cloned()
            .collect();
        for k in gone {
            entries.remove(&k);
        }
        for (key, rev, doc) in fresh {
            // A concurrent reader may have stored a newer revision meanwhile: keep the newer.
            match entries.get(&key) {
                Some((held, _)) if *held > rev => {}
                _ => {
                    entries.insert(key, (rev, doc));
                }
            }
        }
        drop(entries);
        Ok(kvs
            .into_iter()
            .zip(docs)
            .filter_map(|(kv, doc)| Some(Versioned { doc: doc?, rev: kv.mod_revision, key: kv.key }))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn kv(key: &str, rev: Revision, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Bytes::from(value.to_string()),
            create_revision: 1,
            mod_revision: rev,
            version: 1,
            lease: None,
        }
    }

    #[test]
    fn decodes_only_what_changed_and_forgets_what_went() {
        let cache: DocCache<String> = DocCache::default();
        let decodes = AtomicUsize::new(0);
        let decode = |_: &str, b: &[u8]| {
            decodes.fetch_add(1, Ordering::Relaxed);
            Ok(String::from_utf8_lossy(b).into_owned())
        };
        let read = |kvs: Vec<KeyValue>| -> Vec<(String, String)> {
            cache.resolve("/t/", kvs, decode).unwrap().into_iter().map(|v| (v.key, v.doc.as_ref().clone())).collect()
        };
        let first = read(vec![kv("/t/a", 1, "a1"), kv("/t/b", 2, "b2")]);
        assert_eq!(first, vec![("/t/a".into(), "a1".into()), ("/t/b".into(), "b2".into())]);
        assert_eq!(decodes.load(Ordering::Relaxed), 2);
        // b rewritten at revision 3: only b is decoded again.
        let second = read(vec![kv("/t/a", 1, "a1"), kv("/t/b", 3, "b3")]);
        assert_eq!(second[1], ("/t/b".into(), "b3".into()));
        assert_eq!(decodes.load(Ordering::Relaxed), 3);
        // a deleted, then recreated at a new revision: decoded again, never served from before.
        read(vec![kv("/t/b", 3, "b3")]);
        assert_eq!(cache.lock().len(), 1);
        let third = read(vec![kv("/t/a", 7, "a7"), kv("/t/b", 3, "b3")]);
        assert_eq!(third[0], ("/t/a".into(), "a7".into()));
        assert_eq!(decodes.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_narrower_read_forgets_only_inside_its_prefix() {
        let cache: DocCache<String> = DocCache::default();
        let decode = |_: &str, b: &[u8]| Ok(String::from_utf8_lossy(b).into_owned());
        cache.resolve("/t/", vec![kv("/t/x/1", 1, "1"), kv("/t/y/1", 2, "2")], decode).unwrap();
        cache.resolve("/t/x/", vec![], decode).unwrap();
        assert_eq!(cache.lock().keys().cloned().collect::<Vec<_>>(), vec!["/t/y/1".to_string()]);
    }
}
