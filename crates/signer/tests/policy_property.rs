//! Whatever the policy checks let through, the signed certificate obeys the
//! policy: random policies against random requests (names of this namespace
//! and of others, look-alikes, encoded URIs, common names, usages, sub-CAs),
//! and every certificate certflow would issue is parsed back with
//! x509-parser and judged by a rule written here from the policy's
//! documentation, independent of `certflow-diagnostics`.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use certflow_api::{IssuerPolicy, KeyUsage, ServiceCertificateSpec, parse_go_duration};
use certflow_diagnostics::diagnose;
use certflow_pki::{Authority, KeySpec, PrivateKey};
use certflow_signer::request::leaf_request;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

const NAMESPACE: &str = "shop";
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn authority() -> &'static Authority {
    static CA: OnceLock<Authority> = OnceLock::new();
    CA.get_or_init(|| {
        Authority::generate("certflow policy-property CA", KeySpec::EcdsaP256, YEAR)
            .expect("CA")
            .0
    })
}

fn leaf_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate(KeySpec::EcdsaP256).expect("key"))
}

fn subset(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(pool, 0..=pool.len())
        .prop_map(|picked| picked.into_iter().map(str::to_owned).collect())
}

fn policy() -> impl Strategy<Value = IssuerPolicy> {
    // Not set (the defaults), or the defaults with some others, or a
    // narrower choice.
    let usages = prop_oneof![
        2 => Just(Vec::new()),
        1 => prop::sample::subsequence(KeyUsage::ALL.to_vec(), 0..=4).prop_map(|mut extra| {
            extra.extend(certflow_api::DEFAULT_ALLOWED_USAGES);
            extra
        }),
        1 => prop::sample::subsequence(KeyUsage::ALL.to_vec(), 1..=4),
    ];
    (
        subset(&[
            "*.{namespace}.svc",
            "{namespace}.svc",
            "*.example.com",
            "api.{namespace}.example.com",
        ]),
        subset(&["10.0.0.0/8", "192.168.0.0/16", "fd00::/8"]),
        subset(&[
            "spiffe://cluster.local/ns/{namespace}/",
            "spiffe://cluster.local/ns/{namespace}",
            "https://{namespace}.example.com/",
        ]),
        subset(&["example.com", "corp.example"]),
        usages,
        prop::sample::select(vec![None, None, Some("24h"), Some("720h")]),
        any::<bool>(),
    )
        .prop_map(
            |(dns, ips, uris, emails, usages, max, allow_ca)| IssuerPolicy {
                allowed_dns_names: dns,
                allowed_ip_ranges: ips,
                allowed_uri_prefixes: uris,
                allowed_email_domains: emails,
                allowed_usages: usages,
                max_duration: max.map(str::to_owned),
                allow_ca: Some(allow_ca),
                ..IssuerPolicy::default()
            },
        )
}

const DNS: &[&str] = &[
    "web.shop.svc",
    "web.payments.svc",
    "shop.svc",
    "a.b.shop.svc",
    "api.example.com",
    "api.shop.example.com",
    "api.payments.example.com",
    "*.shop.svc",
];
const IPS: &[&str] = &[
    "10.1.2.3",
    "192.168.1.1",
    "8.8.8.8",
    "fd00::1",
    "2001:db8::1",
    "::ffff:10.0.0.1",
    "::ffff:8.8.8.8",
];
const URIS: &[&str] = &[
    "spiffe://cluster.local/ns/shop/sa/web",
    "spiffe://cluster.local/ns/payments/sa/api",
    "spiffe://cluster.local/ns/shop/../payments/sa/api",
    "spiffe://cluster.local/ns/shop/%2e%2E/payments/sa/api",
    "spiffe://cluster.local/ns/shop%2F..%2Fpayments/sa/api",
    "spiffe://cluster.local/ns/shop-admin/sa/api",
    "spiffe://cluster.local/ns/shop",
    "SPIFFE://cluster.local/ns/shop/sa/web",
    "https://shop.example.com/api",
    "https://payments.example.com/api",
];
const EMAILS: &[&str] = &[
    "ops@example.com",
    "ops@corp.example",
    "ops@evil.example",
    "ops@EXAMPLE.com",
];
const COMMON_NAMES: &[&str] = &[
    "system:serviceaccount:payments:api",
    "payments_db",
    "web.payments.svc",
    "WEB.SHOP.SVC",
];

/// A request against `policy`: each kind of name is often absent (so that
/// enough requests pass to be signed), otherwise drawn from pools that mix
/// this namespace's names with other namespaces' and with look-alikes.
fn request(policy: &IssuerPolicy) -> impl Strategy<Value = ServiceCertificateSpec> + use<> {
    let pick = |pool: &'static [&'static str]| {
        prop_oneof![
            1 => Just(Vec::new()),
            1 => prop::sample::subsequence(pool, 1..=2),
        ]
    };
    let allowed_usages = policy.allowed_usages().to_vec();
    let usages = prop_oneof![
        2 => Just(Vec::new()),
        2 => prop::sample::subsequence(allowed_usages.clone(), 0..=allowed_usages.len()),
        1 => prop::sample::subsequence(KeyUsage::ALL.to_vec(), 0..=3),
    ];
    (
        (pick(DNS), pick(IPS), pick(URIS), pick(EMAILS)),
        (0..4usize, prop::sample::select(COMMON_NAMES)),
        usages,
        prop::sample::select(vec![Some("1h"), Some("1h"), Some("720h"), None]),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |((dns, ips, uris, emails), (cn_kind, odd_cn), usages, duration, is_ca)| {
                let owned =
                    |v: Vec<&str>| -> Vec<String> { v.into_iter().map(str::to_owned).collect() };
                let (dns, ips, uris, emails) = (owned(dns), owned(ips), owned(uris), owned(emails));
                // No common name, one of the request's own names, or an odd one.
                let common_name = match cn_kind {
                    0 | 1 => None,
                    2 => dns
                        .iter()
                        .chain(&ips)
                        .chain(&uris)
                        .chain(&emails)
                        .next()
                        .cloned(),
                    _ => Some(odd_cn.to_owned()),
                };
                // `cert sign` without isCA is refused at apply (and by
                // CertSignWithoutCA); only CA requests ask for it.
                let mut usages: Vec<KeyUsage> = usages
                    .into_iter()
                    .filter(|usage| is_ca || *usage != KeyUsage::CertSign)
                    .collect();
                if is_ca && !usages.contains(&KeyUsage::CertSign) {
                    usages.push(KeyUsage::CertSign);
                }
                ServiceCertificateSpec {
                    secret_name: "web-tls".into(),
                    dns_names: dns,
                    ip_addresses: ips,
                    uris,
                    email_addresses: emails,
                    common_name,
                    usages,
                    duration: duration.map(str::to_owned),
                    is_ca: Some(is_ca),
                    ..ServiceCertificateSpec::default()
                }
            },
        )
}

// The policy, as docs/errors.md states it, written out again.

fn dns_allowed(policy: &IssuerPolicy, name: &str) -> bool {
    policy.allowed_dns_names.iter().any(|pattern| {
        let pattern = pattern.replace("{namespace}", NAMESPACE);
        let (p, n): (Vec<&str>, Vec<&str>) =
            (pattern.split('.').collect(), name.split('.').collect());
        p.len() == n.len()
            && p.iter().zip(&n).enumerate().all(|(i, (p, n))| {
                (i == 0 && *p == "*" && !n.is_empty()) || p.eq_ignore_ascii_case(n)
            })
    })
}

fn ip_allowed(policy: &IssuerPolicy, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    policy.allowed_ip_ranges.iter().any(|range| {
        let (network, prefix) = range.split_once('/').expect("a CIDR");
        let network: IpAddr = network.parse().expect("an address");
        let prefix: u32 = prefix.parse().expect("a prefix");
        match (network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix == 0 || u32::from(n) >> (32 - prefix) == u32::from(a) >> (32 - prefix)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                prefix == 0 || u128::from(n) >> (128 - prefix) == u128::from(a) >> (128 - prefix)
            }
            _ => false,
        }
    })
}

fn uri_allowed(policy: &IssuerPolicy, uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    let climbs = ["/../", "/./", "/%2e%2e/", "%2f..%2f", "/%2e/"]
        .iter()
        .any(|dots| lower.contains(dots))
        || lower.ends_with("/..");
    !climbs
        && policy.allowed_uri_prefixes.iter().any(|template| {
            let prefix = template.replace("{namespace}", NAMESPACE);
            uri.strip_prefix(&prefix).is_some_and(|rest| {
                !template.ends_with("{namespace}") || rest.is_empty() || rest.starts_with('/')
            })
        })
}

fn email_allowed(policy: &IssuerPolicy, email: &str) -> bool {
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    policy
        .allowed_email_domains
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(domain))
}

fn usage_words(cert: &X509Certificate<'_>) -> Vec<KeyUsage> {
    let mut found = Vec::new();
    if let Ok(Some(ku)) = cert.key_usage() {
        let ku = ku.value;
        for (set, usage) in [
            (ku.digital_signature(), KeyUsage::DigitalSignature),
            (ku.key_encipherment(), KeyUsage::KeyEncipherment),
            (ku.key_agreement(), KeyUsage::KeyAgreement),
            (ku.non_repudiation(), KeyUsage::ContentCommitment),
            (ku.data_encipherment(), KeyUsage::DataEncipherment),
            (ku.key_cert_sign(), KeyUsage::CertSign),
            (ku.crl_sign(), KeyUsage::CrlSign),
        ] {
            if set {
                found.push(usage);
            }
        }
    }
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        let eku = eku.value;
        for (set, usage) in [
            (eku.server_auth, KeyUsage::ServerAuth),
            (eku.client_auth, KeyUsage::ClientAuth),
            (eku.code_signing, KeyUsage::CodeSigning),
            (eku.email_protection, KeyUsage::EmailProtection),
            (eku.ocsp_signing, KeyUsage::OcspSigning),
            (eku.time_stamping, KeyUsage::Timestamping),
        ] {
            if set {
                found.push(usage);
            }
        }
    }
    found
}

fn der_of(pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    pem.contents
}

/// Every way the parsed certificate breaks `policy`, in words.
fn breaches(policy: &IssuerPolicy, der: &[u8], issued_at: SystemTime) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).expect("the issued certificate parses");
    let mut found = Vec::new();
    let mut sans: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    sans.push(dns.to_ascii_lowercase());
                    if !dns_allowed(policy, dns) {
                        found.push(format!("DNS name {dns}"));
                    }
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("4 bytes")),
                        _ => IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("16 bytes")),
                    };
                    sans.push(ip.to_string());
                    if !ip_allowed(policy, ip) {
                        found.push(format!("IP address {ip}"));
                    }
                }
                GeneralName::URI(uri) => {
                    sans.push((*uri).to_owned());
                    if !uri_allowed(policy, uri) {
                        found.push(format!("URI {uri}"));
                    }
                }
                GeneralName::RFC822Name(email) => {
                    sans.push((*email).to_owned());
                    if !email_allowed(policy, email) {
                        found.push(format!("email {email}"));
                    }
                }
                other => found.push(format!("unexpected name {other:?}")),
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        let cn = cn.as_str().expect("a UTF-8 common name");
        let listed = sans.iter().any(|san| {
            san.eq_ignore_ascii_case(cn)
                || matches!((san.parse::<IpAddr>(), cn.parse::<IpAddr>()), (Ok(a), Ok(b)) if a == b)
        });
        if !listed {
            found.push(format!("common name {cn} is no SAN"));
        }
    }
    let allowed_usages = policy.allowed_usages();
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    for usage in usage_words(&cert) {
        let ca_usage = matches!(usage, KeyUsage::CertSign | KeyUsage::CrlSign);
        if (ca_usage && !policy.allows_ca()) || (!ca_usage && !allowed_usages.contains(&usage)) {
            found.push(format!("usage {}", usage.as_str()));
        }
    }
    if is_ca && !policy.allows_ca() {
        found.push("a CA certificate".to_owned());
    }
    if is_ca && cert.name_constraints().ok().flatten().is_none() {
        found.push("a CA certificate without name constraints".to_owned());
    }
    let not_after = cert.validity().not_after.timestamp();
    let issued = issued_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    if let Some(max) = &policy.max_duration {
        let max = parse_go_duration(max).expect("a duration").as_secs() as i64;
        if not_after > issued + max + 1 {
            found.push(format!(
                "valid {}s past issue, over {max}s",
                not_after - issued
            ));
        }
    }
    let ca = authority();
    let ca_not_after = ca
        .not_after()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    if not_after > ca_not_after {
        found.push("outlives the CA".to_owned());
    }
    let ca_not_before = ca
        .not_before()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    if cert.validity().not_before.timestamp() < ca_not_before {
        found.push("valid before the CA".to_owned());
    }
    found
}

/// Runs many random (policy, request) pairs; every request `diagnose` lets
/// through is signed and must obey the policy. Fails if too few were
/// signed for the run to mean anything.
#[test]
fn every_certificate_the_policy_checks_let_through_obeys_the_policy() {
    let signed = AtomicUsize::new(0);
    let pairs = policy().prop_flat_map(|policy| (Just(policy.clone()), request(&policy)));
    let mut runner = TestRunner::new(ProptestConfig::with_cases(4000));
    let result = runner.run(&pairs, |(policy, spec)| {
        if diagnose(&spec, NAMESPACE, "internal", Some(&policy)).is_some() {
            return Ok(());
        }
        let now = SystemTime::now();
        let request = leaf_request(&spec, NAMESPACE, Some(&policy), now, authority());
        prop_assert!(request.is_ok(), "{:?}", request.err());
        let issued = authority().issue(&request.expect("checked"), leaf_key());
        prop_assert!(issued.is_ok(), "{:?}: {:?}", spec, issued.err());
        let der = der_of(&issued.expect("checked").cert_pem);
        let found = breaches(&policy, &der, now);
        prop_assert!(
            found.is_empty(),
            "issued against {:?} for {:?}: {:?}",
            policy,
            spec,
            found
        );
        signed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    });
    if let Err(err) = result {
        panic!("{err}");
    }
    let signed = signed.load(Ordering::Relaxed);
    assert!(signed >= 50, "only {signed} of 4000 requests were signed");
}

/// The rule above is not a rubber stamp: a certificate the open (policy-less)
/// path signs for another namespace's identity breaks the shipped policy.
#[test]
fn the_independent_rule_finds_another_namespaces_identity() {
    let spec = ServiceCertificateSpec {
        secret_name: "web-tls".into(),
        uris: vec!["spiffe://cluster.local/ns/payments/sa/api".into()],
        common_name: Some("system:serviceaccount:payments:api".into()),
        usages: vec![KeyUsage::ClientAuth, KeyUsage::CodeSigning],
        ..ServiceCertificateSpec::default()
    };
    let shipped = IssuerPolicy {
        allowed_dns_names: vec!["*.{namespace}.svc".into()],
        max_duration: Some("2160h".into()),
        ..IssuerPolicy::default()
    };
    assert!(diagnose(&spec, NAMESPACE, "internal", Some(&shipped)).is_some());
    let now = SystemTime::now();
    let request = leaf_request(&spec, NAMESPACE, None, now, authority()).expect("request");
    let issued = authority().issue(&request, leaf_key()).expect("issued");
    let found = breaches(&shipped, &der_of(&issued.cert_pem), now);
    assert_eq!(found.len(), 3, "{found:?}");
}
