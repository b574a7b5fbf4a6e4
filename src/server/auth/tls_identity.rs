//! The server's TLS identity: a PEM certificate chain and private key
//! loaded into a rustls `ServerConfig` (ring provider), at start and on
//! every SIGHUP with the other auth files.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::server::config::ConfigError;

/// Loads a PEM certificate chain and private key into a server config.
pub(super) fn load_server_config(
    cert: &Path,
    key: &Path,
) -> Result<Arc<ServerConfig>, ConfigError> {
    let cert_pem =
        std::fs::read(cert).map_err(|e| ConfigError::new(cert, format!("cannot read: {e}")))?;
    let key_pem =
        std::fs::read(key).map_err(|e| ConfigError::new(key, format!("cannot read: {e}")))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(cert, format!("not a PEM certificate chain: {e:?}")))?;
    if chain.is_empty() {
        return Err(ConfigError::new(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| ConfigError::new(key, format!("not a PEM private key: {e:?}")))?;
    let mut provider = rustls::crypto::ring::default_provider();
    // Prefer AES-128-GCM over AES-256-GCM (the provider's first choice): as
    // secure for TLS 1.3 and cheaper per byte, which shows with large
    // messages on small gateways.
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(cert, format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            ConfigError::new(
                key,
                format!("certificate and key do not make an identity: {e}"),
            )
        })?;
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}
