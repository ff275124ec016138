//! Objects every end-to-end test and benchmark sets up the same way.

use certflow_api::{CertificateAuthority, CertificateAuthoritySpec, IssuerPolicy};
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
