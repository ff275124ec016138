//! Issuing leaves and reading them back with `inspect`.

use std::time::Duration;

use certflow_pki::{Authority, KeySpec, LeafRequest, PkiError, fingerprint_pem};
use x509_parser::extensions::GeneralName;

use crate::support::{
    TlsSecret, certificate_der, key, sub_ca_request, test_ca, web_name_constraints, web_request,
    whole_seconds,
};

/// CA and leaf algorithm pairs; mixed pairs check that a CA signs keys of
/// another algorithm. RSA 4096 appears once because generating it takes seconds.
const PAIRS: [(KeySpec, KeySpec); 6] = [
    (KeySpec::EcdsaP256, KeySpec::EcdsaP256),
    (KeySpec::EcdsaP384, KeySpec::EcdsaP384),
    (KeySpec::Ed25519, KeySpec::Ed25519),
    (KeySpec::Rsa { bits: 2048 }, KeySpec::Rsa { bits: 2048 }),
    (KeySpec::EcdsaP256, KeySpec::Rsa { bits: 3072 }),
    (KeySpec::Ed25519, KeySpec::Rsa { bits: 4096 }),
];

#[test]
fn inspect_reports_exactly_what_was_issued_for_every_key_spec() {
    for (ca_spec, leaf_spec) in PAIRS {
        let context = format!("CA {ca_spec}, leaf {leaf_spec}");
        let (authority, _) = test_ca(ca_spec);
        let leaf_key = key(leaf_spec);
        let request = web_request();

        let issued = authority.issue(&request, &leaf_key).expect(&context);
        let inspection = TlsSecret::issued(&authority, &issued, &leaf_key)
            .inspect()
            .expect(&context);

        assert!(inspection.key_matches, "{context}");
        assert!(inspection.signed_by_ca, "{context}");
        assert_eq!(
            inspection.ca_fingerprint.as_deref(),
            Some(authority.fingerprint()),
            "{context}"
        );
        assert_eq!(inspection.key_spec, Some(leaf_spec), "{context}");
        assert_eq!(leaf_key.spec(), Some(leaf_spec), "{context}");
        assert_eq!(authority.key_spec(), Some(ca_spec), "{context}");
        assert_eq!(inspection.serial, issued.serial, "{context}");
        assert_eq!(inspection.common_name, request.common_name, "{context}");
        assert_eq!(inspection.dns_names, request.dns_names, "{context}");
        assert_eq!(inspection.ip_addresses, request.ip_addresses, "{context}");
        assert_eq!(inspection.uris, request.uris, "{context}");
        assert_eq!(
            inspection.email_addresses, request.email_addresses,
            "{context}"
        );
        assert_eq!(
            inspection.not_before,
            whole_seconds(request.not_before),
            "{context}"
        );
        assert_eq!(
            inspection.not_after,
            whole_seconds(request.not_after),
            "{context}"
        );
        assert_eq!(issued.not_before, inspection.not_before, "{context}");
        assert_eq!(issued.not_after, inspection.not_after, "{context}");
        assert!(!inspection.is_ca, "{context}");
    }
}

#[test]
fn a_key_from_another_generation_is_reported_as_not_matching() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let issued_for = key(KeySpec::EcdsaP256);
    let issued = authority.issue(&web_request(), &issued_for).expect("issue");
    let mut secret = TlsSecret::issued(&authority, &issued, &issued_for);
    secret.tls_key = key(KeySpec::EcdsaP256).to_pkcs8_pem();

    let inspection = secret
        .inspect()
        .expect("a mismatch is reported, not an error");

    assert!(!inspection.key_matches);
    assert!(inspection.signed_by_ca);
}

#[test]
fn a_key_of_another_algorithm_is_reported_as_not_matching() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let issued_for = key(KeySpec::EcdsaP256);
    let issued = authority.issue(&web_request(), &issued_for).expect("issue");
    let mut secret = TlsSecret::issued(&authority, &issued, &issued_for);
    secret.tls_key = key(KeySpec::Ed25519).to_pkcs8_pem();

    assert!(!secret.inspect().expect("inspect").key_matches);
}

#[test]
fn a_leaf_from_another_ca_is_reported_as_not_signed() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let (other, _) = test_ca(KeySpec::EcdsaP256);
    let leaf_key = key(KeySpec::EcdsaP256);
    let issued = authority.issue(&web_request(), &leaf_key).expect("issue");
    let mut secret = TlsSecret::issued(&authority, &issued, &leaf_key);
    secret.ca_crt = other.cert_pem().to_owned();

    let inspection = secret.inspect().expect("inspect");

    assert!(inspection.key_matches);
    assert!(!inspection.signed_by_ca);
    assert_eq!(inspection.ca_fingerprint, None);
}

#[test]
fn a_ca_bundle_reports_the_certificate_that_signed_the_leaf() {
    let (old, _) = test_ca(KeySpec::EcdsaP256);
    let (new, _) = test_ca(KeySpec::EcdsaP384);
    let leaf_key = key(KeySpec::EcdsaP256);
    let issued = new.issue(&web_request(), &leaf_key).expect("issue");
    let mut secret = TlsSecret::issued(&new, &issued, &leaf_key);
    secret.ca_crt = format!("{}{}", old.cert_pem(), new.cert_pem());

    let inspection = secret.inspect().expect("inspect");

    assert_eq!(
        inspection.ca_fingerprint.as_deref(),
        Some(new.fingerprint())
    );
}

#[test]
fn a_missing_ca_crt_means_not_signed_rather_than_an_error() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let leaf_key = key(KeySpec::EcdsaP256);
    let issued = authority.issue(&web_request(), &leaf_key).expect("issue");
    let mut secret = TlsSecret::issued(&authority, &issued, &leaf_key);
    secret.ca_crt = " \n".to_owned();

    assert!(!secret.inspect().expect("inspect").signed_by_ca);
}

#[test]
fn unreadable_fields_are_errors_that_name_the_field() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let leaf_key = key(KeySpec::EcdsaP256);
    let issued = authority.issue(&web_request(), &leaf_key).expect("issue");
    let good = TlsSecret::issued(&authority, &issued, &leaf_key);

    let cases: [(&str, TlsSecret); 4] = [
        (
            "tls.crt",
            TlsSecret {
                tls_crt: String::new(),
                ..TlsSecret::issued(&authority, &issued, &leaf_key)
            },
        ),
        (
            "tls.key",
            TlsSecret {
                tls_key: good.tls_crt.clone(),
                ..TlsSecret::issued(&authority, &issued, &leaf_key)
            },
        ),
        (
            "ca.crt",
            TlsSecret {
                ca_crt: "not a certificate".to_owned(),
                ..TlsSecret::issued(&authority, &issued, &leaf_key)
            },
        ),
        (
            "tls.crt",
            TlsSecret {
                tls_crt: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
                    .to_owned(),
                ..TlsSecret::issued(&authority, &issued, &leaf_key)
            },
        ),
    ];
    for (field, secret) in cases {
        let error = secret.inspect().expect_err(field);
        assert!(error.to_string().starts_with(field), "{field}: {error}");
    }
}

#[test]
fn the_generated_ca_reloads_to_the_same_authority() {
    let (generated_authority, generated) = test_ca(KeySpec::EcdsaP384);

    let reloaded = Authority::from_pem(&generated.cert_pem, &generated.key_pem).expect("reload");

    assert_eq!(reloaded.fingerprint(), generated_authority.fingerprint());
    assert_eq!(reloaded.serial(), generated_authority.serial());
    assert_eq!(reloaded.not_after(), generated_authority.not_after());
    assert_eq!(reloaded.cert_pem(), generated.cert_pem);
    assert_eq!(reloaded.subject(), "CN=certflow test CA");
    assert_eq!(
        fingerprint_pem(generated.cert_pem.as_bytes()).expect("fingerprint"),
        generated_authority.fingerprint()
    );
}

#[test]
fn the_ca_is_valid_from_now_for_the_requested_duration() {
    let before = whole_seconds(std::time::SystemTime::now());
    let (authority, _) =
        Authority::generate("short", KeySpec::EcdsaP256, Duration::from_secs(3600))
            .expect("generate");
    let after = std::time::SystemTime::now();

    assert!(authority.not_after() >= before + Duration::from_secs(3600));
    assert!(authority.not_after() <= after + Duration::from_secs(3600));
}

#[test]
fn a_ca_certificate_with_someone_elses_key_is_refused() {
    let (_, generated) = test_ca(KeySpec::EcdsaP256);
    let stranger = key(KeySpec::EcdsaP256).to_pkcs8_pem();

    let refused = Authority::from_pem(&generated.cert_pem, &stranger);

    assert!(
        matches!(refused, Err(PkiError::AuthorityKeyMismatch { .. })),
        "{refused:?}"
    );
}

#[test]
fn a_leaf_certificate_is_refused_as_a_ca() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let leaf_key = key(KeySpec::EcdsaP256);
    let issued = authority.issue(&web_request(), &leaf_key).expect("issue");

    let refused = Authority::from_pem(&issued.cert_pem, &leaf_key.to_pkcs8_pem());

    assert!(
        matches!(refused, Err(PkiError::NotAnAuthority { .. })),
        "{refused:?}"
    );
}

#[test]
fn a_ca_leaf_can_act_as_an_intermediate_and_chains_to_the_root() {
    let (root, _) = test_ca(KeySpec::EcdsaP256);
    let intermediate_key = key(KeySpec::EcdsaP256);
    let request = LeafRequest {
        common_name: Some("certflow intermediate".to_owned()),
        key_usages: vec![
            certflow_pki::KeyUsage::CertSign,
            certflow_pki::KeyUsage::CrlSign,
        ],
        is_ca: true,
        name_constraints: Some(web_name_constraints()),
        ..LeafRequest::new(
            std::time::SystemTime::now(),
            std::time::SystemTime::now() + Duration::from_secs(7200),
        )
    };
    let intermediate_cert = root
        .issue(&request, &intermediate_key)
        .expect("issue intermediate");
    assert!(
        TlsSecret::issued(&root, &intermediate_cert, &intermediate_key)
            .inspect()
            .expect("inspect")
            .is_ca
    );

    let intermediate = Authority::from_pem(
        &intermediate_cert.chain_pem,
        &intermediate_key.to_pkcs8_pem(),
    )
    .expect("an issued CA certificate loads as an authority");
    let leaf_key = key(KeySpec::EcdsaP256);
    let leaf_request = LeafRequest {
        not_after: std::time::SystemTime::now() + Duration::from_secs(3600),
        ..web_request()
    };
    let leaf = intermediate
        .issue(&leaf_request, &leaf_key)
        .expect("issue leaf");

    assert_eq!(
        leaf.chain_pem,
        format!(
            "{}{}{}",
            leaf.cert_pem,
            intermediate.cert_pem(),
            root.cert_pem()
        )
    );
}

#[test]
fn a_ca_certificate_is_refused_without_name_constraints() {
    let (root, _) = test_ca(KeySpec::EcdsaP256);
    let request = LeafRequest {
        name_constraints: None,
        ..sub_ca_request("unconstrained", web_name_constraints())
    };

    let refused = root
        .issue(&request, &key(KeySpec::EcdsaP256))
        .expect_err("refused");

    assert!(
        matches!(refused, PkiError::CaWithoutNameConstraints),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("any name"), "{refused}");
}

#[test]
fn a_ca_certificate_has_path_length_zero_and_critical_name_constraints() {
    let (root, _) = test_ca(KeySpec::EcdsaP256);
    let issued = root
        .issue(
            &sub_ca_request("tenant CA", web_name_constraints()),
            &key(KeySpec::EcdsaP256),
        )
        .expect("issue");
    let der = certificate_der(&issued.cert_pem);
    let (_, certificate) = x509_parser::parse_x509_certificate(&der).expect("parse");

    let basic = certificate
        .basic_constraints()
        .expect("one basicConstraints")
        .expect("present");
    assert!(basic.value.ca);
    assert_eq!(basic.value.path_len_constraint, Some(0));
    let constraints = certificate
        .name_constraints()
        .expect("one nameConstraints")
        .expect("present");
    assert!(constraints.critical);
    let permitted: Vec<_> = constraints
        .value
        .permitted_subtrees
        .iter()
        .flatten()
        .map(|subtree| subtree.base.clone())
        .collect();
    assert!(
        permitted.contains(&GeneralName::DNSName("shop.svc"))
            && permitted.contains(&GeneralName::URI("cluster.local")),
        "{permitted:?}"
    );
}

#[test]
fn leaves_ignore_name_constraints() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let request = LeafRequest {
        name_constraints: Some(web_name_constraints()),
        ..web_request()
    };
    let issued = authority
        .issue(&request, &key(KeySpec::EcdsaP256))
        .expect("issue");
    let der = certificate_der(&issued.cert_pem);
    let (_, certificate) = x509_parser::parse_x509_certificate(&der).expect("parse");

    assert!(!certificate.is_ca());
    assert_eq!(certificate.name_constraints().expect("readable"), None);
}

#[test]
fn the_authority_reports_its_certificates_validity() {
    let (authority, generated) = test_ca(KeySpec::EcdsaP256);
    let der = certificate_der(&generated.cert_pem);
    let (_, certificate) = x509_parser::parse_x509_certificate(&der).expect("parse");
    let seconds = |time: std::time::SystemTime| {
        time.duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    };

    assert_eq!(
        i64::try_from(seconds(authority.not_before())).expect("fits"),
        certificate.validity().not_before.timestamp()
    );
    assert_eq!(
        i64::try_from(seconds(authority.not_after())).expect("fits"),
        certificate.validity().not_after.timestamp()
    );
}

#[test]
fn a_leaf_may_not_outlive_its_ca() {
    let (authority, _) =
        Authority::generate("short", KeySpec::EcdsaP256, Duration::from_secs(3600))
            .expect("generate");
    let refused = authority.issue(&web_request(), &key(KeySpec::EcdsaP256));

    assert!(
        matches!(refused, Err(PkiError::OutlivesAuthority { .. })),
        "{refused:?}"
    );
}

#[test]
fn an_empty_validity_window_is_refused() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let now = std::time::SystemTime::now();
    // Both bounds fall in the same second once truncated.
    let request = LeafRequest {
        not_after: whole_seconds(now) + Duration::from_millis(900),
        not_before: whole_seconds(now),
        ..web_request()
    };

    let refused = authority.issue(&request, &key(KeySpec::EcdsaP256));

    assert!(
        matches!(refused, Err(PkiError::EmptyValidity { .. })),
        "{refused:?}"
    );
}

#[test]
fn a_request_without_any_name_is_refused() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let request = LeafRequest {
        common_name: Some(String::new()),
        ..LeafRequest::new(web_request().not_before, web_request().not_after)
    };

    let refused = authority.issue(&request, &key(KeySpec::EcdsaP256));

    assert!(matches!(refused, Err(PkiError::NoSubject)), "{refused:?}");
}

#[test]
fn a_certificate_with_only_sans_has_no_common_name() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let leaf_key = key(KeySpec::EcdsaP256);
    let request = LeafRequest {
        common_name: None,
        ..web_request()
    };
    let issued = authority.issue(&request, &leaf_key).expect("issue");

    let inspection = TlsSecret::issued(&authority, &issued, &leaf_key)
        .inspect()
        .expect("inspect");

    assert_eq!(inspection.common_name, None);
    assert_eq!(inspection.dns_names, request.dns_names);
}

#[test]
fn a_non_ascii_dns_name_is_refused_with_the_name_quoted() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let request = LeafRequest {
        dns_names: vec!["bücher.example".to_owned()],
        ..web_request()
    };

    let refused = authority
        .issue(&request, &key(KeySpec::EcdsaP256))
        .expect_err("refused");

    assert!(matches!(
        refused,
        PkiError::InvalidName {
            kind: "DNS name",
            ..
        }
    ));
    assert!(refused.to_string().contains("bücher.example"), "{refused}");
}

#[test]
fn serials_differ_between_issuances() {
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    let leaf_key = key(KeySpec::EcdsaP256);
    let first = authority.issue(&web_request(), &leaf_key).expect("issue");
    let second = authority.issue(&web_request(), &leaf_key).expect("issue");

    assert_ne!(first.serial, second.serial);
    assert!(
        first.serial.len() <= 32 && first.serial.len() >= 28,
        "{}",
        first.serial
    );
}

#[test]
fn a_private_key_survives_a_pem_round_trip() {
    for spec in [
        KeySpec::EcdsaP256,
        KeySpec::EcdsaP384,
        KeySpec::Ed25519,
        KeySpec::Rsa { bits: 2048 },
    ] {
        let original = key(spec);
        let reloaded =
            certflow_pki::PrivateKey::from_pem(&original.to_pkcs8_pem()).expect("reload");
        assert_eq!(
            reloaded.public_key_der(),
            original.public_key_der(),
            "{spec}"
        );
        assert_eq!(reloaded.spec(), Some(spec));
    }
}

#[test]
fn encrypted_keys_are_refused_by_name() {
    let pem = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";

    let refused = certflow_pki::PrivateKey::from_pem(pem);

    assert!(
        matches!(refused, Err(PkiError::UnsupportedKeyFormat { ref label, .. }) if label == "ENCRYPTED PRIVATE KEY"),
        "{refused:?}"
    );
}

#[test]
fn the_authority_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authority>();
    assert_send_sync::<certflow_pki::PrivateKey>();
    assert_send_sync::<PkiError>();
}
