//! Builders shared by the integration tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certflow_pki::{
    Authority, ExtendedKeyUsage, GeneratedCa, Issued, KeySpec, KeyUsage, LeafRequest, PrivateKey,
};

pub(crate) const YEAR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

pub(crate) fn test_ca(spec: KeySpec) -> (Authority, GeneratedCa) {
    Authority::generate("certflow test CA", spec, YEAR).expect("CA generation succeeds")
}

pub(crate) fn key(spec: KeySpec) -> PrivateKey {
    PrivateKey::generate(spec).expect("key generation succeeds")
}

/// A server+client certificate request using every kind of name, with
/// sub-second bounds so truncation to whole seconds is exercised.
pub(crate) fn web_request() -> LeafRequest {
    let now = SystemTime::now();
    LeafRequest {
        common_name: Some("web.shop.svc".to_owned()),
        dns_names: vec![
            "web.shop.svc".to_owned(),
            "web.shop.svc.cluster.local".to_owned(),
        ],
        ip_addresses: vec![
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ],
        uris: vec!["spiffe://cluster.local/ns/shop/sa/web".to_owned()],
        email_addresses: vec!["ops@example.com".to_owned()],
        key_usages: vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
        extended_key_usages: vec![ExtendedKeyUsage::ServerAuth, ExtendedKeyUsage::ClientAuth],
        ..LeafRequest::new(
            now - Duration::from_millis(5 * 60 * 1000 - 250),
            now + Duration::from_millis(24 * 60 * 60 * 1000 + 750),
        )
    }
}

/// A time truncated to whole seconds, as a certificate stores it.
pub(crate) fn whole_seconds(time: SystemTime) -> SystemTime {
    let since_epoch = time
        .duration_since(UNIX_EPOCH)
        .expect("test times are after 1970");
    UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs())
}

/// The three fields of a `kubernetes.io/tls` Secret.
pub(crate) struct TlsSecret {
    pub(crate) tls_crt: String,
    pub(crate) tls_key: String,
    pub(crate) ca_crt: String,
}

impl TlsSecret {
    pub(crate) fn issued(authority: &Authority, issued: &Issued, key: &PrivateKey) -> Self {
        Self {
            tls_crt: issued.chain_pem.clone(),
            tls_key: key.to_pkcs8_pem(),
            ca_crt: authority.cert_pem().to_owned(),
        }
    }

    pub(crate) fn inspect(&self) -> Result<certflow_pki::Inspection, certflow_pki::PkiError> {
        certflow_pki::inspect(
            self.tls_crt.as_bytes(),
            self.tls_key.as_bytes(),
            self.ca_crt.as_bytes(),
        )
    }
}
