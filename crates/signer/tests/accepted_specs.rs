//! What the diagnostics accept, the signer can sign, and the certificate
//! says exactly that: no spec passes every check only to fail in signing
//! (which would end as RetriesExhausted instead of a clear reason) or to
//! come out with different names than requested. Inputs sit at the edges
//! the checks allow: 253-character names and 63-character labels,
//! wildcards, every URI and email character the checks admit, non-ASCII
//! common names, IPv4-mapped IPv6 addresses, up to 100 names.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use certflow_api::ServiceCertificateSpec;
use certflow_diagnostics::diagnose;
use certflow_pki::{Authority, KeySpec, PrivateKey, inspect};
use certflow_signer::request::leaf_request;
use proptest::prelude::*;

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn authority() -> &'static Authority {
    static CA: OnceLock<Authority> = OnceLock::new();
    CA.get_or_init(|| {
        Authority::generate("certflow accepted-specs test CA", KeySpec::EcdsaP256, YEAR)
            .expect("CA")
            .0
    })
}

fn leaf_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(KeySpec::EcdsaP256).expect("key"))
}

fn label(max: usize) -> impl Strategy<Value = String> {
    let pattern = format!(
        "[a-z0-9]([a-z0-9-]{{0,{}}}[a-z0-9])?",
        max.saturating_sub(2)
    );
    prop_oneof![
        proptest::string::string_regex(&pattern).expect("a valid pattern"),
        Just("a".repeat(max)),
    ]
}

/// A DNS name the checks accept, often at the length limits.
fn dns_name() -> impl Strategy<Value = String> {
    (prop::collection::vec(label(63), 1..6), any::<bool>()).prop_map(|(labels, wildcard)| {
        let mut name = labels.join(".");
        while name.len() > 253 {
            let cut = name.find('.').map_or(name.len(), |i| i + 1);
            name.drain(..cut);
        }
        if name.is_empty() {
            name = "web.shop.svc".to_owned();
        }
        if wildcard && name.len() <= 251 {
            name = format!("*.{name}");
        }
        name
    })
}

/// A URI with every character the checks admit, percent escapes included.
fn uri() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9+.-]{0,8}",
        "[A-Za-z0-9._~:/?#\\[\\]@!$&'()*+,;=-]{1,80}",
        prop::option::of("%[0-9A-Fa-f]{2}"),
    )
        .prop_map(|(scheme, rest, escape)| format!("{scheme}:{rest}{}", escape.unwrap_or_default()))
}

/// An address with every character the checks admit in the local part.
fn email() -> impl Strategy<Value = String> {
    (
        "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,30}(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10})?",
        dns_name().prop_filter("no wildcard domain", |d| !d.starts_with('*')),
    )
        .prop_map(|(local, domain)| {
            let local = &local[..local.len().min(64)];
            format!("{}@{domain}", local.trim_end_matches('.'))
        })
}

fn ip_address() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<IpAddr>().prop_map(|ip| ip.to_string()),
        any::<[u8; 4]>().prop_map(|o| format!("::ffff:{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
    ]
}

fn common_name() -> impl Strategy<Value = String> {
    "[!-~\u{E9}\u{4E2D}]([ -~\u{E9}\u{4E2D}]{0,62}[!-~\u{E9}\u{4E2D}])?"
}

prop_compose! {
    fn spec()(
        dns_names in prop::collection::vec(dns_name(), 0..40),
        ip_addresses in prop::collection::vec(ip_address(), 0..20),
        uris in prop::collection::vec(uri(), 0..20),
        email_addresses in prop::collection::vec(email(), 0..20),
        common_name in prop::option::of(common_name()),
    ) -> ServiceCertificateSpec {
        let dedup = |mut v: Vec<String>| { v.sort(); v.dedup(); v };
        ServiceCertificateSpec {
            secret_name: "web-tls".to_owned(),
            dns_names: dedup(dns_names),
            ip_addresses: dedup(ip_addresses),
            uris: dedup(uris),
            email_addresses: dedup(email_addresses),
            common_name,
            ..Default::default()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_spec_the_checks_accept_is_signed_with_exactly_its_names(spec in spec()) {
        if let Some(violation) = diagnose(&spec, "shop", "internal", None) {
            // Duplicates across case and the like; the generators aim to
            // stay valid, so this is rare.
            prop_assume!(false, "refused: {}", violation.sentence("web"));
        }
        let ca = authority();
        let request = leaf_request(&spec, "shop", None, SystemTime::now(), ca);
        prop_assert!(request.is_ok(), "{:?}", request.err());
        let request = request.expect("checked");
        let issued = ca.issue(&request, leaf_key());
        prop_assert!(issued.is_ok(), "{:?}: {:?}", spec, issued.err());
        let issued = issued.expect("checked");
        let found = inspect(
            issued.chain_pem.as_bytes(),
            leaf_key().to_pkcs8_pem().as_bytes(),
            ca.cert_pem().as_bytes(),
        );
        prop_assert!(found.is_ok(), "{:?}", found.err());
        let found = found.expect("checked");
        let ips: Vec<IpAddr> = spec.ip_addresses.iter().map(|ip| ip.parse().expect("checked")).collect();
        prop_assert_eq!(&found.dns_names, &spec.dns_names);
        prop_assert_eq!(&found.ip_addresses, &ips);
        prop_assert_eq!(&found.uris, &spec.uris);
        prop_assert_eq!(&found.email_addresses, &spec.email_addresses);
        prop_assert_eq!(&found.common_name, &spec.common_name);
        prop_assert!(!found.is_ca && found.signed_by_ca && found.key_matches);
    }
}
