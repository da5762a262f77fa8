//! The TLS client config an mqtt input hands its client: rustls on the
//! `ring` provider, trusting either the CA file the config names (a private
//! CA, the usual case for a fleet's own broker) or the system's roots.
//! Built once at start, so a missing or empty CA file fails `halyard run`
//! (and `config check`) with the input's name instead of failing every
//! connection attempt later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// Why the TLS settings of an mqtt input are unusable.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The CA file could not be read or holds no certificate.
    #[error("tls.ca_file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// No trusted root at all (no CA file and no system roots).
    #[error("no trusted roots: give tls.ca_file (the system has none)")]
    NoRoots,
    /// rustls refused the protocol versions of its own provider.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A client config trusting `ca_file`, or the system roots when `None`.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_error = |reason: String| TlsSetupError::CaFile {
                path: path.to_path_buf(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_error(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ca_error(e.to_string()))?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ca_error("holds no usable PEM certificate".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::warn!(error = %err, "mqtt input: a system root could not be read");
            }
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(TlsSetupError::NoRoots);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.pem");
        let err = client_config(Some(&missing)).expect_err("missing file");
        assert!(err.to_string().contains("nope.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = client_config(Some(&empty)).expect_err("no certificate");
        assert!(
            err.to_string().contains("no usable PEM certificate"),
            "{err}"
        );
    }
}
