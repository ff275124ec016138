//! rustls configuration: the one crypto provider, PEM files, server and client configs.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::AppError;

/// aws-lc-rs, named explicitly: the workspace graph enables rustls' `ring`
/// feature too, and with both rustls refuses to pick a default.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The certificates in a PEM file (`tls.crt`, `ca.crt`), in file order.
pub(crate) fn certificates_from_pem(
    pem: &[u8],
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, AppError> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| AppError::Pem {
            path: path.to_owned(),
            message: format!("malformed PEM: {error}"),
        })?;
    if certificates.is_empty() {
        return Err(AppError::Pem {
            path: path.to_owned(),
            message: "no CERTIFICATE block".to_owned(),
        });
    }
    Ok(certificates)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1). The error never
/// quotes the file's contents.
pub(crate) fn private_key_from_pem(
    pem: &[u8],
    path: &Path,
) -> Result<PrivateKeyDer<'static>, AppError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| AppError::Pem {
        path: path.to_owned(),
        message: match error {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key block".to_owned(),
            _ => "malformed private key PEM".to_owned(),
        },
    })
}

/// A server config presenting exactly this chain; fails when the key does not
/// belong to the leaf.
pub(crate) fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    dir: &Path,
) -> Result<ServerConfig, AppError> {
    let tls_error = |source| AppError::Tls {
        dir: dir.to_owned(),
        source,
    };
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_error)
}

/// A client config trusting exactly the certificates in `ca_pem`, no system roots.
pub(crate) fn client_config(ca_pem: &[u8], ca_path: &Path) -> Result<ClientConfig, AppError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates_from_pem(ca_pem, ca_path)? {
        roots
            .add(certificate)
            .map_err(|source| AppError::TrustAnchor {
                path: ca_path.to_owned(),
                source,
            })?;
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| AppError::TrustAnchor {
            path: ca_path.to_owned(),
            source,
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
