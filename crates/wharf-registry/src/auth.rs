//! Registry authorization tokens, as ECR's `GetAuthorizationToken` hands them out: base64 of
//! `AWS:<password>`, valid for 12 hours. The password names the account and region it was
//! minted for and carries an HMAC under a key kept in the data dir, so tokens survive restarts
//! and cannot be forged; it never contains `:` (Docker splits `user:password` at the first).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
use subtle::ConstantTimeEq;

/// ECR tokens are valid for 12 hours.
pub const TOKEN_TTL_SECS: u64 = 12 * 60 * 60;

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whom a verified password speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScope {
    pub account: String,
    pub region: String,
    pub expires_at: u64,
}

pub(crate) struct TokenKey([u8; 32]);

impl TokenKey {
    /// Reads the key at `path`, creating it (mode 0600) on first use.
    pub(crate) fn load_or_create(path: &Path) -> std::io::Result<TokenKey> {
        if let Ok(bytes) = std::fs::read(path)
            && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Ok(TokenKey(key));
        }
        let key: [u8; 32] = rand::random();
        wharf_store::files::write_private(path, &key)?;
        Ok(TokenKey(key))
    }

    fn mac(&self, claim: &str) -> String {
        // A 32-byte key is always a valid HMAC key.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(claim.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// (authorizationToken, expiresAt).
    pub(crate) fn mint(&self, account: &str, region: &str, expires_at: u64) -> (String, u64) {
        let claim = format!("{account}.{region}.{expires_at}");
        let password = format!("{claim}.{}", self.mac(&claim));
        (base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}")), expires_at)
    }

    /// A signature for a pre-signed URL: `claim` names the account, region, path and expiry.
    pub(crate) fn sign(&self, claim: &str) -> String {
        self.mac(&format!("presign|{claim}"))
    }

    pub(crate) fn check_signature(&self, claim: &str, signature: &str) -> bool {
        bool::from(self.sign(claim).as_bytes().ct_eq(signature.as_bytes()))
    }

    pub(crate) fn verify(&self, password: &str, now: u64) -> Option<TokenScope> {
        let (claim, mac) = password.rsplit_once('.')?;
        if !bool::from(self.mac(claim).as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let mut parts = claim.splitn(3, '.');
        let (account, region, expires) = (parts.next()?, parts.next()?, parts.next()?);
        let expires_at: u64 = expires.parse().ok()?;
        (expires_at > now).then(|| TokenScope { account: account.into(), region: region.into(), expires_at })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use base64::Engine;

    fn password(token: &str) -> String {
        let raw = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(token).unwrap()).unwrap();
        raw.strip_prefix("AWS:").unwrap().to_string()
    }

    #[test]
    fn tokens_verify_until_they_expire_and_cannot_be_forged() {
        let dir = tempfile::tempdir().unwrap();
        let key = TokenKey::load_or_create(&dir.path().join("k")).unwrap();
        let (token, exp) = key.mint("123456789012", "us-east-1", 1_000);
        let pw = password(&token);
        assert!(!pw.contains(':'));
        let scope = key.verify(&pw, 999).unwrap();
        assert_eq!(
            (scope.account.as_str(), scope.region.as_str(), scope.expires_at),
            ("123456789012", "us-east-1", exp)
        );
        assert_eq!(key.verify(&pw, 1_000), None, "expired");
        assert_eq!(key.verify(&pw.replace("123456789012", "210987654321"), 999), None, "forged account");
        // The key survives a restart; another key does not accept the token.
        let again = TokenKey::load_or_create(&dir.path().join("k")).unwrap();
        assert!(again.verify(&pw, 999).is_some());
        let other = TokenKey::load_or_create(&dir.path().join("other")).unwrap();
        assert_eq!(other.verify(&pw, 999), None);
    }
}
