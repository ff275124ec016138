//! Tenant CAs: what OpenSSL lets a name-constrained, path-length-0 CA sign.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use certflow_pki::{Authority, KeySpec, LeafRequest, NameConstraints};

use crate::support::{key, openssl_verify, sub_ca, sub_ca_request, test_ca, write};

const PERMITTED_VIOLATION: &str = "permitted subtree violation";
const EXCLUDED_VIOLATION: &str = "excluded subtree violation";

/// A leaf valid for an hour naming only what `names` fills in.
fn leaf(names: impl FnOnce(&mut LeafRequest)) -> LeafRequest {
    let now = SystemTime::now();
    let mut request = LeafRequest::new(now, now + Duration::from_secs(3600));
    names(&mut request);
    request
}

/// Signs `request` with `issuer` and asks OpenSSL to verify the leaf against
/// `root`, with `issuer`'s chain as untrusted intermediates.
fn verify_leaf(
    root: &Authority,
    issuer: &Authority,
    request: &LeafRequest,
) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let issued = issuer
        .issue(request, &key(KeySpec::EcdsaP256))
        .expect("issue leaf");
    write(dir.path(), "root.pem", root.cert_pem());
    write(dir.path(), "chain.pem", &issued.chain_pem);
    write(dir.path(), "leaf.pem", &issued.cert_pem);
    openssl_verify(
        dir.path(),
        &["-CAfile", "root.pem", "-untrusted", "chain.pem", "leaf.pem"],
    )
}

struct Case {
    leaf: &'static str,
    request: LeafRequest,
    /// `None` if OpenSSL must accept the leaf, else text its refusal contains.
    refused_with: Option<&'static str>,
}

fn check(constraints: NameConstraints, cases: Vec<Case>) {
    let (root, _) = test_ca(KeySpec::EcdsaP256);
    let tenant = sub_ca(
        &root,
        &sub_ca_request("shop tenant CA", constraints.clone()),
    );
    for case in cases {
        let verified = verify_leaf(&root, &tenant, &case.request);
        match (case.refused_with, verified) {
            (None, Ok(_)) => {}
            (Some(expected), Err(printed)) => assert!(
                printed.contains(expected),
                "{constraints:?}: {} refused, but not with {expected:?}: {printed}",
                case.leaf
            ),
            (None, Err(printed)) => {
                panic!("{constraints:?}: {} was refused: {printed}", case.leaf)
            }
            (Some(expected), Ok(printed)) => panic!(
                "{constraints:?}: {} was accepted, expected {expected:?}: {printed}",
                case.leaf
            ),
        }
    }
}

#[test]
fn a_sub_ca_constrained_to_a_dns_subtree_signs_only_names_under_it() {
    let constraints = NameConstraints {
        dns_subtrees: vec!["shop.svc".to_owned()],
        ..NameConstraints::default()
    };
    check(
        constraints,
        vec![
            Case {
                leaf: "DNS api.shop.svc",
                request: leaf(|r| r.dns_names = vec!["api.shop.svc".to_owned()]),
                refused_with: None,
            },
            Case {
                leaf: "DNS api.payments.svc",
                request: leaf(|r| r.dns_names = vec!["api.payments.svc".to_owned()]),
                refused_with: Some(PERMITTED_VIOLATION),
            },
            Case {
                leaf: "CN api.payments.svc without SANs",
                request: leaf(|r| r.common_name = Some("api.payments.svc".to_owned())),
                refused_with: Some(PERMITTED_VIOLATION),
            },
            Case {
                leaf: "IP 10.0.0.1",
                request: leaf(|r| r.ip_addresses = vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))]),
                refused_with: Some(EXCLUDED_VIOLATION),
            },
            Case {
                leaf: "IP ::1",
                request: leaf(|r| r.ip_addresses = vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]),
                refused_with: Some(EXCLUDED_VIOLATION),
            },
            Case {
                leaf: "URI spiffe://cluster.local/ns/payments/sa/api",
                request: leaf(|r| {
                    r.uris = vec!["spiffe://cluster.local/ns/payments/sa/api".to_owned()];
                }),
                refused_with: Some(PERMITTED_VIOLATION),
            },
            Case {
                leaf: "email a@example.com",
                request: leaf(|r| r.email_addresses = vec!["a@example.com".to_owned()]),
                refused_with: Some(PERMITTED_VIOLATION),
            },
        ],
    );
}

#[test]
fn a_sub_ca_constrained_to_an_ip_range_signs_only_addresses_in_it() {
    let constraints = NameConstraints {
        ip_ranges: vec![(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8)],
        ..NameConstraints::default()
    };
    check(
        constraints,
        vec![
            Case {
                leaf: "IP 10.1.2.3",
                request: leaf(|r| r.ip_addresses = vec![IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))]),
                refused_with: None,
            },
            Case {
                leaf: "IP 11.0.0.1",
                request: leaf(|r| r.ip_addresses = vec![IpAddr::V4(Ipv4Addr::new(11, 0, 0, 1))]),
                refused_with: Some(PERMITTED_VIOLATION),
            },
            Case {
                leaf: "IPv6 ::1 under IPv4-only ranges",
                request: leaf(|r| r.ip_addresses = vec![IpAddr::V6(Ipv6Addr::LOCALHOST)]),
                refused_with: Some(PERMITTED_VIOLATION),
            },
            Case {
                leaf: "DNS api.shop.svc",
                request: leaf(|r| r.dns_names = vec!["api.shop.svc".to_owned()]),
                refused_with: Some(PERMITTED_VIOLATION),
            },
        ],
    );
}

#[test]
fn a_sub_ca_constrained_to_uri_and_email_hosts_signs_only_those() {
    let constraints = NameConstraints {
        uri_hosts: vec!["cluster.local".to_owned()],
        email_domains: vec!["example.com".to_owned()],
        ..NameConstraints::default()
    };
    check(
        constraints,
        vec![
            Case {
                leaf: "URI spiffe://cluster.local/ns/shop/sa/web",
                request: leaf(|r| {
                    r.uris = vec!["spiffe://cluster.local/ns/shop/sa/web".to_owned()]
                }),
                refused_with: None,
            },
            Case {
                leaf: "URI spiffe://other.domain/ns/shop/sa/web",
                request: leaf(|r| r.uris = vec!["spiffe://other.domain/ns/shop/sa/web".to_owned()]),
                refused_with: Some(PERMITTED_VIOLATION),
            },
            Case {
                leaf: "email a@example.com",
                request: leaf(|r| r.email_addresses = vec!["a@example.com".to_owned()]),
                refused_with: None,
            },
            Case {
                leaf: "email a@example.org",
                request: leaf(|r| r.email_addresses = vec!["a@example.org".to_owned()]),
                refused_with: Some(PERMITTED_VIOLATION),
            },
        ],
    );
}

#[test]
fn a_ca_issued_under_a_sub_ca_cannot_sign_leaves_that_verify() {
    let (root, _) = test_ca(KeySpec::EcdsaP256);
    let constraints = NameConstraints {
        dns_subtrees: vec!["shop.svc".to_owned()],
        ..NameConstraints::default()
    };
    let tenant = sub_ca(
        &root,
        &sub_ca_request("shop tenant CA", constraints.clone()),
    );
    let nested = sub_ca(&tenant, &sub_ca_request("nested CA", constraints));

    let refused = verify_leaf(
        &root,
        &nested,
        &leaf(|r| r.dns_names = vec!["api.shop.svc".to_owned()]),
    )
    .expect_err("OpenSSL refuses a CA below a pathLenConstraint 0 CA");

    assert!(
        refused.contains("path length constraint exceeded"),
        "{refused}"
    );
}
