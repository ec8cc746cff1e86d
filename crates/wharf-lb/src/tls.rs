//! HTTPS listeners: the listener's default certificate (its first `CertificateArn`) served
//! with rustls (ring provider), ALPN `h2` and `http/1.1`.
//!
//! A `CertificateArn` names PEM files the user supplies, as the ELBv2 API documents it
//! ([`wharf_types::elb::certificate_files`]): an absolute path to a PEM file with the chain (and the key, or the key beside it as
//! `<stem>.key`), or `arn:aws:acm:<region>:<account>:certificate/<id>` for
//! `<data dir>/certs/<id>.pem` and `<id>.key`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use wharf_types::elb::certificate_files;

/// The default certificate's ARN of a listener's `Certificates`.
pub fn default_certificate(certificates: &[Value]) -> Option<String> {
    let arn = |c: &Value| c.get("CertificateArn").and_then(Value::as_str).map(str::to_string);
    certificates
        .iter()
        .find(|c| c.get("IsDefault").and_then(Value::as_bool) == Some(true))
        .and_then(arn)
        .or_else(|| certificates.iter().find_map(arn))
}

/// A TLS acceptor for the certificate `arn`, or why there cannot be one.
pub fn acceptor(arn: &str, data_dir: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    let (chain_path, key_path) =
        certificate_files(arn, data_dir).ok_or_else(|| format!("certificate {arn} names no PEM file"))?;
    acceptor_from_files(&chain_path, &key_path, &[b"h2", b"http/1.1"]).map_err(|e| format!("certificate {arn}: {e}"))
}

/// A TLS acceptor serving the PEM chain at `chain_path` with its key (in the same file, or at
/// `key_path`), offering the ALPN protocols `alpn`.
pub fn acceptor_from_files(
    chain_path: &Path,
    key_path: &Path,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::TlsAcceptor, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain_path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read the certificate chain {}: {e}", chain_path.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", chain_path.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(chain_path).or_else(|_| PrivateKeyDer::from_pem_file(key_path)).map_err(|e| {
            format!("cannot read the private key ({} or {}): {e}", chain_path.display(), key_path.display())
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
