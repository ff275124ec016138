//! Turns a validated ServiceCertificate into what gets signed and written:
//! the key spec, the leaf request, the Secret and the status. Pure.

use std::collections::BTreeMap;
use std::time::SystemTime;

use certflow_api::labels;
use certflow_api::secret::{CA_CERT_KEY, TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY, TLS_SECRET_TYPE};
use certflow_api::{
    IssuerPolicy, KeyAlgorithm, KeyUsage, NOT_BEFORE_BACKDATE, ServiceCertificate,
    ServiceCertificateSpec,
};
use certflow_pki::{Authority, ExtendedKeyUsage, Issued, KeySpec, LeafRequest, NameConstraints};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::api::ObjectMeta;

/// The key the spec asks for.
pub fn key_spec(spec: &ServiceCertificateSpec) -> KeySpec {
    key_spec_for(spec.key_algorithm(), spec.key_size())
}

/// The key for an algorithm and optional size, for leaves and generated CAs
/// alike. Sizes were validated before this is called, so an unexpected one
/// falls back to the algorithm's default.
pub fn key_spec_for(algorithm: KeyAlgorithm, size: Option<u32>) -> KeySpec {
    match (algorithm, size) {
        (KeyAlgorithm::Ecdsa, Some(384)) => KeySpec::EcdsaP384,
        (KeyAlgorithm::Ecdsa, _) => KeySpec::EcdsaP256,
        (KeyAlgorithm::Ed25519, _) => KeySpec::Ed25519,
        (KeyAlgorithm::Rsa, Some(bits @ (3072 | 4096))) => KeySpec::Rsa { bits },
        (KeyAlgorithm::Rsa, _) => KeySpec::Rsa { bits: 2048 },
    }
}

/// The certificate to sign for `spec` from `namespace`, signed by `ca`.
///
/// Valid from [`NOT_BEFORE_BACKDATE`] before `now` (never before the CA's
/// own notBefore), so a peer whose clock lags a little accepts it at once,
/// until `now` plus the spec's duration, but never past the CA's notAfter: a
/// certificate cannot outlive its issuer, so it is shortened (and renewed
/// after the CA is rotated) rather than refused. A CA certificate carries
/// the name constraints `policy` allows `namespace`; without a policy it has
/// none, and pki refuses to sign it.
pub fn leaf_request(
    spec: &ServiceCertificateSpec,
    namespace: &str,
    policy: Option<&IssuerPolicy>,
    now: SystemTime,
    ca: &Authority,
) -> Result<LeafRequest, String> {
    let duration = spec.effective_duration().map_err(|err| err.to_string())?;
    let ip_addresses = spec
        .ip_addresses
        .iter()
        .map(|ip| ip.parse().map_err(|_| format!("invalid IP address {ip:?}")))
        .collect::<Result<_, _>>()?;
    let (key_usages, extended_key_usages) = split_usages(spec.effective_usages());
    let name_constraints = policy
        .filter(|_| spec.is_ca())
        .map(|policy| name_constraints(policy, namespace));
    let backdated = now.checked_sub(NOT_BEFORE_BACKDATE).unwrap_or(now);
    Ok(LeafRequest {
        common_name: spec.common_name.clone(),
        dns_names: spec.dns_names.clone(),
        ip_addresses,
        uris: spec.uris.clone(),
        email_addresses: spec.email_addresses.clone(),
        key_usages,
        extended_key_usages,
        is_ca: spec.is_ca(),
        name_constraints,
        not_before: backdated.max(ca.not_before()),
        not_after: (now + duration).min(ca.not_after()),
    })
}

/// The names a CA certificate issued to `namespace` may sign, as its policy
/// allows them (see [`certflow_diagnostics::SubCaNames`]); never URIs.
fn name_constraints(policy: &IssuerPolicy, namespace: &str) -> NameConstraints {
    let names = certflow_diagnostics::sub_ca_names(policy, namespace);
    NameConstraints {
        dns_subtrees: names.dns_subtrees,
        ip_ranges: names.ip_ranges,
        email_domains: names.email_domains,
        uri_hosts: Vec::new(),
    }
}

fn split_usages(usages: &[KeyUsage]) -> (Vec<certflow_pki::KeyUsage>, Vec<ExtendedKeyUsage>) {
    use certflow_pki::KeyUsage as Ku;
    let mut key = Vec::new();
    let mut extended = Vec::new();
    for usage in usages {
        match usage {
            KeyUsage::DigitalSignature => key.push(Ku::DigitalSignature),
            KeyUsage::KeyEncipherment => key.push(Ku::KeyEncipherment),
            KeyUsage::KeyAgreement => key.push(Ku::KeyAgreement),
            KeyUsage::ContentCommitment => key.push(Ku::ContentCommitment),
            KeyUsage::DataEncipherment => key.push(Ku::DataEncipherment),
            KeyUsage::CertSign => key.push(Ku::CertSign),
            KeyUsage::CrlSign => key.push(Ku::CrlSign),
            KeyUsage::ServerAuth => extended.push(ExtendedKeyUsage::ServerAuth),
            KeyUsage::ClientAuth => extended.push(ExtendedKeyUsage::ClientAuth),
            KeyUsage::CodeSigning => extended.push(ExtendedKeyUsage::CodeSigning),
            KeyUsage::EmailProtection => extended.push(ExtendedKeyUsage::EmailProtection),
            KeyUsage::OcspSigning => extended.push(ExtendedKeyUsage::OcspSigning),
            KeyUsage::Timestamping => extended.push(ExtendedKeyUsage::TimeStamping),
        }
    }
    (key, extended)
}

/// The Secret holding an issued certificate: `kubernetes.io/tls` with the
/// chain, the key and the CA, the managed label, annotations naming the
/// ServiceCertificate, issuer and serial, plus the spec's template (whose
/// keys never override certflow's own).
pub fn secret(
    scert: &ServiceCertificate,
    issuer: &str,
    issued: &Issued,
    key_pem: &str,
    ca_pem: &str,
) -> Secret {
    let template = scert.spec.secret_template.clone().unwrap_or_default();
    let mut labels_map: BTreeMap<String, String> = template.labels;
    labels_map.insert(labels::MANAGED.into(), labels::MANAGED_VALUE.into());
    let mut annotations = template.annotations;
    annotations.extend([
        (labels::SERVICE_CERTIFICATE.into(), scert.name_any()),
        (
            labels::SERVICE_CERTIFICATE_UID.into(),
            scert.uid().unwrap_or_default(),
        ),
        (labels::ISSUER.into(), issuer.to_owned()),
        (labels::SERIAL.into(), issued.serial.clone()),
        (
            labels::GENERATION.into(),
            scert.metadata.generation.unwrap_or_default().to_string(),
        ),
        (labels::NOT_AFTER.into(), rfc3339(issued.not_after)),
    ]);
    let data = BTreeMap::from([
        (
            TLS_CERT_KEY.to_owned(),
            ByteString(issued.chain_pem.clone().into_bytes()),
        ),
        (
            TLS_PRIVATE_KEY_KEY.to_owned(),
            ByteString(key_pem.as_bytes().to_vec()),
        ),
        (
            CA_CERT_KEY.to_owned(),
            ByteString(ca_pem.as_bytes().to_vec()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(scert.spec.secret_name.clone()),
            namespace: scert.namespace(),
            labels: Some(labels_map),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        type_: Some(TLS_SECRET_TYPE.to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

pub fn rfc3339(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use certflow_api::ServiceCertificateSpec;

    /// A ServiceCertificate as the API server would return it.
    pub(crate) fn fixture_scert() -> ServiceCertificate {
        let mut scert = ServiceCertificate::new(
            "payments-tls",
            ServiceCertificateSpec {
                secret_name: "payments-tls".into(),
                dns_names: vec!["payments.shop.svc".into()],
                ip_addresses: vec!["10.0.0.7".into()],
                duration: Some("24h".into()),
                ..ServiceCertificateSpec::default()
            },
        );
        scert.metadata.namespace = Some("shop".into());
        scert.metadata.uid = Some("uid-1".into());
        scert.metadata.generation = Some(1);
        scert
    }

    /// The Secret the signer would write for `scert`, issued now by `ca`.
    pub(crate) fn issued_secret(
        scert: &ServiceCertificate,
        ca: &certflow_pki::Authority,
    ) -> Secret {
        let key = certflow_pki::PrivateKey::generate(key_spec(&scert.spec)).expect("key");
        let request =
            leaf_request(&scert.spec, "shop", None, SystemTime::now(), ca).expect("request");
        let issued = ca.issue(&request, &key).expect("issue");
        secret(
            scert,
            "test-ca",
            &issued,
            &key.to_pkcs8_pem(),
            ca.cert_pem(),
        )
    }

    #[test]
    fn the_secret_template_never_overrides_certflow_labels() {
        let mut scert = fixture_scert();
        scert.spec.secret_template = Some(certflow_api::SecretTemplate {
            labels: BTreeMap::from([
                (labels::MANAGED.into(), "false".into()),
                ("team".into(), "payments".into()),
            ]),
            annotations: BTreeMap::new(),
        });
        let ca = certflow_pki::Authority::generate(
            "ca",
            KeySpec::EcdsaP256,
            std::time::Duration::from_secs(86400 * 7),
        )
        .expect("ca")
        .0;
        let secret = issued_secret(&scert, &ca);
        assert_eq!(
            secret.labels().get(labels::MANAGED).map(String::as_str),
            Some("true")
        );
        assert_eq!(
            secret.labels().get("team").map(String::as_str),
            Some("payments")
        );
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    }

    #[test]
    fn default_usages_are_digital_signature_key_encipherment_and_server_auth() {
        let (key, extended) = split_usages(fixture_scert().spec.effective_usages());
        assert_eq!(key.len(), 2);
        assert_eq!(extended, vec![ExtendedKeyUsage::ServerAuth]);
    }
}
