//! CA rotation: a cross-signed successor keeps clients of the old CA working.

use std::time::{SystemTime, UNIX_EPOCH};

use certflow_pki::{Authority, KeySpec, NameConstraints, PkiError};
use tempfile::TempDir;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use crate::support::{
    YEAR, certificate_der, key, openssl_verify, sub_ca, sub_ca_request, web_request, write,
};

/// An old CA, its successor, a leaf the successor signed and the cross
/// certificate, written to a directory as `old.pem`, `new.pem`, `leaf.pem`
/// and `cross.pem`.
struct Rotation {
    dir: TempDir,
    context: String,
}

impl Rotation {
    fn new(old_name: &str, new_name: &str, old_spec: KeySpec, new_spec: KeySpec) -> Self {
        let (old, _) = Authority::generate(old_name, old_spec, YEAR).expect("old CA");
        let (new, _) = Authority::generate(new_name, new_spec, 2 * YEAR).expect("new CA");
        let leaf = new
            .issue(&web_request(), &key(KeySpec::EcdsaP256))
            .expect("issue leaf");
        let cross = old.cross_sign(&new).expect("cross-sign");
        let dir = tempfile::tempdir().expect("temporary directory");
        write(dir.path(), "old.pem", old.cert_pem());
        write(dir.path(), "new.pem", new.cert_pem());
        write(dir.path(), "leaf.pem", &leaf.cert_pem);
        write(dir.path(), "cross.pem", &cross);
        Self {
            dir,
            context: format!("{old_name:?} ({old_spec}) -> {new_name:?} ({new_spec})"),
        }
    }

    fn verify(&self, args: &[&str]) -> Result<String, String> {
        openssl_verify(self.dir.path(), args)
    }
}

/// Distinct subjects, and the same subject for both CAs (a rotation that
/// keeps the CA's name), where only key identifiers tell the CAs apart.
fn rotations() -> Vec<Rotation> {
    vec![
        Rotation::new(
            "certflow root A",
            "certflow root B",
            KeySpec::EcdsaP256,
            KeySpec::EcdsaP256,
        ),
        Rotation::new(
            "certflow root",
            "certflow root",
            KeySpec::Rsa { bits: 2048 },
            KeySpec::Ed25519,
        ),
    ]
}

#[test]
fn clients_that_trust_only_the_old_ca_accept_a_new_leaf_served_with_the_cross_certificate() {
    for rotation in rotations() {
        let verified =
            rotation.verify(&["-CAfile", "old.pem", "-untrusted", "cross.pem", "leaf.pem"]);

        assert!(verified.is_ok(), "{}: {verified:?}", rotation.context);
    }
}

#[test]
fn clients_that_trust_only_the_new_ca_accept_the_new_leaf_even_with_the_cross_certificate() {
    for rotation in rotations() {
        let verified =
            rotation.verify(&["-CAfile", "new.pem", "-untrusted", "cross.pem", "leaf.pem"]);

        assert!(verified.is_ok(), "{}: {verified:?}", rotation.context);
    }
}

#[test]
fn clients_that_trust_only_the_old_ca_reject_a_new_leaf_served_without_the_cross_certificate() {
    for rotation in rotations() {
        let verified = rotation.verify(&["-CAfile", "old.pem", "leaf.pem"]);

        assert!(verified.is_err(), "{}: {verified:?}", rotation.context);
    }
}

fn subject_key_identifier<'a>(certificate: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    certificate
        .extensions()
        .iter()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(identifier) => Some(identifier.0),
            _ => None,
        })
}

fn authority_key_identifier<'a>(certificate: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    certificate
        .extensions()
        .iter()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(identifier) => {
                identifier.key_identifier.as_ref().map(|id| id.0)
            }
            _ => None,
        })
}

#[test]
fn the_cross_certificate_names_the_new_ca_as_subject_and_the_old_ca_as_issuer() {
    let (old, _) = Authority::generate("old root", KeySpec::EcdsaP384, YEAR).expect("old CA");
    let (new, _) = Authority::generate("new root", KeySpec::EcdsaP256, YEAR).expect("new CA");
    let cross_der = certificate_der(&old.cross_sign(&new).expect("cross-sign"));
    let (_, cross) = x509_parser::parse_x509_certificate(&cross_der).expect("parse cross");
    let (_, old) = x509_parser::parse_x509_certificate(old.cert_der()).expect("parse old");
    let (_, new) = x509_parser::parse_x509_certificate(new.cert_der()).expect("parse new");

    assert_eq!(cross.subject().as_raw(), new.subject().as_raw());
    assert_eq!(cross.public_key().raw, new.public_key().raw);
    assert_eq!(subject_key_identifier(&cross), subject_key_identifier(&new));
    assert_eq!(cross.issuer().as_raw(), old.subject().as_raw());
    assert_eq!(
        authority_key_identifier(&cross),
        subject_key_identifier(&old)
    );
    assert!(cross.verify_signature(Some(old.public_key())).is_ok());
    assert!(cross.is_ca());
    let usage = cross
        .key_usage()
        .expect("one keyUsage")
        .expect("present")
        .value;
    assert!(usage.key_cert_sign() && usage.crl_sign() && usage.digital_signature());
    assert_eq!(cross.validity().not_before, new.validity().not_before);
    assert_eq!(cross.validity().not_after, new.validity().not_after);
}

#[test]
fn the_cross_certificate_expires_no_later_than_the_old_ca() {
    let (old, _) = Authority::generate("old root", KeySpec::EcdsaP256, YEAR).expect("old CA");
    let (new, _) = Authority::generate("new root", KeySpec::EcdsaP256, 3 * YEAR).expect("new CA");
    let cross_der = certificate_der(&old.cross_sign(&new).expect("cross-sign"));
    let (_, cross) = x509_parser::parse_x509_certificate(&cross_der).expect("parse cross");
    let seconds = |time: SystemTime| {
        let since_epoch = time.duration_since(UNIX_EPOCH).expect("after 1970");
        i64::try_from(since_epoch.as_secs()).expect("fits")
    };

    assert_eq!(
        cross.validity().not_after.timestamp(),
        seconds(old.not_after())
    );
    assert_eq!(
        cross.validity().not_before.timestamp(),
        seconds(new.not_before())
    );
}

#[test]
fn a_ca_that_only_starts_after_the_old_ca_expires_cannot_be_cross_signed() {
    let (root, _) = Authority::generate("root", KeySpec::EcdsaP256, 10 * YEAR).expect("root");
    let later = SystemTime::now() + 2 * YEAR;
    let successor = sub_ca(
        &root,
        &certflow_pki::LeafRequest {
            not_before: later,
            not_after: later + YEAR,
            ..sub_ca_request("starts in two years", NameConstraints::default())
        },
    );
    let (old, _) = Authority::generate("old root", KeySpec::EcdsaP256, YEAR).expect("old CA");

    let refused = old.cross_sign(&successor);

    assert!(
        matches!(refused, Err(PkiError::CrossSignOutsideValidity { .. })),
        "{refused:?}"
    );
}

#[test]
fn cross_signing_keeps_the_limits_of_the_new_cas_own_certificate() {
    let (root, _) = Authority::generate("root", KeySpec::EcdsaP256, YEAR).expect("root");
    let constraints = NameConstraints {
        dns_subtrees: vec!["shop.svc".to_owned()],
        ..NameConstraints::default()
    };
    let tenant = sub_ca(&root, &sub_ca_request("shop tenant CA", constraints));
    let (old, _) = Authority::generate("old root", KeySpec::EcdsaP256, YEAR).expect("old CA");

    let cross_der = certificate_der(&old.cross_sign(&tenant).expect("cross-sign"));
    let (_, cross) = x509_parser::parse_x509_certificate(&cross_der).expect("parse cross");
    let (_, tenant) = x509_parser::parse_x509_certificate(tenant.cert_der()).expect("parse tenant");

    let path_length = |certificate: &X509Certificate<'_>| {
        certificate
            .basic_constraints()
            .expect("one basicConstraints")
            .map(|constraints| constraints.value.path_len_constraint)
    };
    assert_eq!(path_length(&cross), Some(Some(0)));
    let name_constraints = |certificate: &X509Certificate<'_>| {
        certificate
            .extensions()
            .iter()
            .find(|extension| {
                extension.oid == x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS
            })
            .map(|extension| (extension.critical, extension.value.to_vec()))
    };
    assert!(name_constraints(&cross).is_some());
    assert_eq!(name_constraints(&cross), name_constraints(&tenant));
}
