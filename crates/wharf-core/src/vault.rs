//! Secrets at rest: SSM `SecureString` values and Secrets Manager secret values are sealed
//! with ChaCha20-Poly1305 under one key per data dir (`<data-dir>/secrets.key`, 32 random
//! bytes, mode 0600) before they reach the store, so the store's file and its backups hold
//! only ciphertext. Each sealed value carries its own random nonce and is bound to the store
//! key it lives under (the associated data), so a sealed value copied to another record does
//! not open there.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;
use std::sync::Arc;
use wharf_types::{Error, Result};

const KEY_LEN: usize = 32;
/// Prefix of a sealed value's text, naming the scheme so a later one can be told apart.
const SCHEME: &str = "v1:";

/// Seals and opens secret values. Cheap to clone (one shared key).
#[derive(Clone)]
pub struct Vault {
    key: Arc<LessSafeKey>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(..)")
    }
}

impl Vault {
    /// The vault of a data dir: its key file, created (0600, synced) on first use.
    pub fn open(path: &Path) -> std::io::Result<Vault> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; KEY_LEN];
                SystemRandom::new().fill(&mut key).map_err(|_| std::io::Error::other("no randomness"))?;
                wharf_store::files::write_private(path, &key)?;
                key.to_vec()
            }
            Err(e) => return Err(e),
        };
        Self::from_key(&bytes).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a {KEY_LEN}-byte key", path.display()),
            )
        })
    }

    /// A vault with a fresh random key that lives as long as the process (tests, tools).
    pub fn ephemeral() -> Vault {
        let mut key = [0u8; KEY_LEN];
        // The system's randomness failing is not recoverable here; a zero key would be worse.
        SystemRandom::new().fill(&mut key).expect("system randomness");
        Self::from_key(&key).expect("a 32-byte key")
    }

    fn from_key(bytes: &[u8]) -> Option<Vault> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).ok()?;
        Some(Vault { key: Arc::new(LessSafeKey::new(unbound)) })
    }

    /// `plaintext` sealed for the record at `bound_to`, as text to store.
    pub fn seal(&self, bound_to: &str, plaintext: &[u8]) -> Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| Error::Internal("no randomness for a nonce".into()))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(bound_to.as_bytes()), &mut buf)
            .map_err(|_| Error::Internal("sealing a secret failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{SCHEME}{}", STANDARD.encode(out)))
    }

    /// The plaintext of a value [`Vault::seal`]ed for `bound_to`.
    pub fn open_sealed(&self, bound_to: &str, sealed: &str) -> Result<Vec<u8>> {
        let corrupt =
            || Error::Internal(format!("a sealed value under {bound_to} does not open with this data dir's key"));
        let b64 = sealed.strip_prefix(SCHEME).ok_or_else(corrupt)?;
        let bytes = STANDARD.decode(b64).map_err(|_| corrupt())?;
        if bytes.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
        let mut body = body.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(bound_to.as_bytes()), &mut body).map_err(|_| corrupt())?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_record() {
        let v = Vault::ephemeral();
        let sealed = v.seal("/ssm/a", b"hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(v.open_sealed("/ssm/a", &sealed).unwrap(), b"hunter2");
        assert!(v.open_sealed("/ssm/b", &sealed).is_err(), "bound to its record");
        assert!(Vault::ephemeral().open_sealed("/ssm/a", &sealed).is_err(), "another key");
        assert_ne!(v.seal("/ssm/a", b"hunter2").unwrap(), sealed, "fresh nonce each time");
    }

    #[test]
    fn the_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let sealed = Vault::open(&path).unwrap().seal("k", b"x").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(Vault::open(&path).unwrap().open_sealed("k", &sealed).unwrap(), b"x");
    }
}
