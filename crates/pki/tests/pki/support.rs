//! Builders shared by the integration tests.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certflow_pki::{
    Authority, ExtendedKeyUsage, GeneratedCa, Issued, KeySpec, KeyUsage, LeafRequest,
    NameConstraints, PrivateKey,
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

/// Constraints that permit every name in [`web_request`], each kind of
/// name by its own subtree.
pub(crate) fn web_name_constraints() -> NameConstraints {
    NameConstraints {
        dns_subtrees: vec!["shop.svc".to_owned(), "shop.svc.cluster.local".to_owned()],
        ip_ranges: vec![
            (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
            (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
        ],
        email_domains: vec!["example.com".to_owned()],
        uri_hosts: vec!["cluster.local".to_owned()],
    }
}

/// A tenant CA certificate request, valid for half of [`YEAR`] from now.
pub(crate) fn sub_ca_request(common_name: &str, constraints: NameConstraints) -> LeafRequest {
    let now = SystemTime::now();
    LeafRequest {
        common_name: Some(common_name.to_owned()),
        key_usages: vec![KeyUsage::CertSign, KeyUsage::CrlSign],
        is_ca: true,
        name_constraints: Some(constraints),
        ..LeafRequest::new(now, now + YEAR / 2)
    }
}

/// Issues a CA certificate under `parent` and loads it back as an
/// [`Authority`] with its chain, ready to sign.
pub(crate) fn sub_ca(parent: &Authority, request: &LeafRequest) -> Authority {
    let sub_ca_key = key(KeySpec::EcdsaP256);
    let issued = parent.issue(request, &sub_ca_key).expect("issue CA");
    Authority::from_pem(&issued.chain_pem, &sub_ca_key.to_pkcs8_pem())
        .expect("an issued CA certificate loads as an authority")
}

/// Runs the OpenSSL CLI in `dir`. A missing binary fails the test: these
/// checks are the only outside opinion on what we write.
fn run_openssl(dir: &Path, args: &[&str]) -> Output {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(output) => output,
        Err(error) if error.kind() == ErrorKind::NotFound => panic!(
            "the openssl CLI is not installed ({error}); install it with `apt-get install -y openssl`"
        ),
        Err(error) => panic!("running openssl {args:?}: {error}"),
    }
}

/// Runs OpenSSL and returns its stdout, failing the test if it fails.
pub(crate) fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = run_openssl(dir, args);
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `openssl verify` with `args`: what it printed, as `Ok` if it accepted
/// the certificate and `Err` if it rejected it.
pub(crate) fn openssl_verify(dir: &Path, args: &[&str]) -> Result<String, String> {
    let mut verify = vec!["verify"];
    verify.extend(args);
    let output = run_openssl(dir, &verify);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(printed)
    } else {
        Err(printed)
    }
}

pub(crate) fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).expect("write to the temporary directory");
}

/// The DER of the first certificate in `pem`.
pub(crate) fn certificate_der(pem: &str) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("a PEM block");
    block.contents
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
