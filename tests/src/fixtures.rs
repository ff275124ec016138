//! Objects every end-to-end test and benchmark sets up the same way.

use certflow_api::{CertificateAuthority, CertificateAuthoritySpec, IssuerPolicy};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};

/// Creates CertificateAuthority `name` whose key pair the signer generates
/// on first use into Secret `<name>-key-pair`, with `policy` if given.
/// Returns that Secret's name.
pub async fn create_generated_ca(
    client: &Client,
    name: &str,
    policy: Option<IssuerPolicy>,
) -> Result<String, kube::Error> {
    let secret_name = format!("{name}-key-pair");
    let ca = CertificateAuthority::new(
        name,
        CertificateAuthoritySpec {
            secret_name: secret_name.clone(),
            generate: Some(true),
            policy,
            ..CertificateAuthoritySpec::default()
        },
    );
    Api::<CertificateAuthority>::all(client.clone())
        .create(&PostParams::default(), &ca)
        .await?;
    Ok(secret_name)
}

/// The bytes under `key` in a Secret's data; empty when absent.
pub fn secret_data(secret: &Secret, key: &str) -> Vec<u8> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| value.0.clone())
        .unwrap_or_default()
}

/// Inspects a certificate Secret's `tls.crt`, `tls.key` and `ca.crt`.
pub fn inspect_secret(secret: &Secret) -> Result<certflow_pki::Inspection, certflow_pki::PkiError> {
    certflow_pki::inspect(
        &secret_data(secret, "tls.crt"),
        &secret_data(secret, "tls.key"),
        &secret_data(secret, "ca.crt"),
    )
}
