//! The agent's credentials for Wharf's own registry. An image named `<host:port>/<repo>…`
//! where `host:port` is the registry of the Wharf the agent reports to is pulled with an ECR
//! authorization token the agent obtains itself (a SigV4-signed `GetAuthorizationToken`,
//! like any AWS client), so agent hosts never need `docker login`. The token is cached and
//! renewed well before its 12 hours run out. Images of other registries get no credentials.

use crate::client::Client;
use crate::runtime::RegistryAuth;
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Renew a token this long before it expires, so a pull never starts with a dying one.
const RENEW_BEFORE_SECS: f64 = 30.0 * 60.0;

#[derive(Debug, Clone)]
struct Cached {
    /// `host:port` of the registry (from `proxyEndpoint`).
    host: String,
    password: String,
    expires_at: f64,
}

#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    slot: Mutex<Option<Cached>>,
}

/// The registry host of a Docker image reference, if it names one: the first path
/// component when it looks like a host (has a `.` or `:`, or is `localhost`).
pub(crate) fn registry_host(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Decodes `authorizationData[0]` of a `GetAuthorizationToken` answer.
fn decode(out: &Value) -> Option<Cached> {
    let data = out.get("authorizationData")?.get(0)?;
    let token = base64::engine::general_purpose::STANDARD.decode(data.get("authorizationToken")?.as_str()?).ok()?;
    let (user, password) = std::str::from_utf8(&token).ok()?.split_once(':')?;
    if user != "AWS" {
        return None;
    }
    let endpoint = data.get("proxyEndpoint")?.as_str()?;
    let host = endpoint.split_once("://").map_or(endpoint, |(_, h)| h).trim_end_matches('/').to_string();
    let expires_at = data.get("expiresAt")?.as_f64()?;
    Some(Cached { host, password: password.to_string(), expires_at })
}

impl TokenCache {
    /// Credentials for pulling `image`, when it lives in this Wharf's registry.
    pub(crate) async fn auth_for(&self, client: &Client, image: &str) -> Option<RegistryAuth> {
        let host = registry_host(image)?;
        // One caller fetches; concurrent pulls wait for its token.
        let mut slot = self.slot.lock().await;
        let fresh = slot.as_ref().is_some_and(|c| c.expires_at - now() > RENEW_BEFORE_SECS);
        if !fresh {
            match client.ecr("GetAuthorizationToken", &json!({})).await {
                Ok(out) => match decode(&out) {
                    Some(c) => *slot = Some(c),
                    None => tracing::warn!("GetAuthorizationToken answered without a usable token"),
                },
                // Not fatal: the pull then fails with the registry's own error.
                Err(e) => tracing::warn!(error = %e, "cannot obtain a registry token"),
            }
        }
        let cached = slot.as_ref()?;
        (cached.host == host).then(|| RegistryAuth {
            username: "AWS".into(),
            password: cached.password.clone(),
            server: cached.host.clone(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("127.0.0.1:5000/app:v1"), Some("127.0.0.1:5000"));
        assert_eq!(registry_host("localhost/app@sha256:ab"), Some("localhost"));
        assert_eq!(registry_host("registry.example.com/team/app"), Some("registry.example.com"));
        assert_eq!(registry_host("wharf-echo:latest"), None);
        assert_eq!(registry_host("library/nginx:1"), None);
    }

    #[test]
    fn decodes_ecr_tokens() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:secret-password");
        let out = json!({"authorizationData": [{"authorizationToken": token, "expiresAt": 1.7e9, "proxyEndpoint": "http://127.0.0.1:4566"}]});
        let c = decode(&out).unwrap();
        assert_eq!((c.host.as_str(), c.password.as_str()), ("127.0.0.1:4566", "secret-password"));
        let bad = base64::engine::general_purpose::STANDARD.encode("root:pw");
        assert!(decode(&json!({"authorizationData": [{"authorizationToken": bad, "expiresAt": 1, "proxyEndpoint": "http://h"}]})).is_none());
    }
}
