//! Parsers face whatever is in a Secret: no input may panic them.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use certflow_pki::{KeySpec, PrivateKey, fingerprint_pem, inspect};
use proptest::prelude::*;

use crate::support::{TlsSecret, key, test_ca, web_request};

/// One well-formed Secret, generated once, for mutation.
fn valid_secret() -> &'static TlsSecret {
    static SECRET: OnceLock<TlsSecret> = OnceLock::new();
    SECRET.get_or_init(|| {
        let (authority, _) = test_ca(KeySpec::EcdsaP256);
        let leaf_key = key(KeySpec::EcdsaP256);
        let issued = authority.issue(&web_request(), &leaf_key).expect("issue");
        TlsSecret::issued(&authority, &issued, &leaf_key)
    })
}

/// The DER inside the first PEM block of `pem`.
fn first_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    STANDARD.decode(body).expect("valid base64")
}

fn armor(label: &str, der: &[u8]) -> String {
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        STANDARD.encode(der)
    )
}

/// Overwrites bytes of `der` at the given (position, value) pairs, positions
/// taken modulo the length so every mutation lands inside the structure.
fn mutate(mut der: Vec<u8>, edits: &[(usize, u8)], truncate_to: Option<usize>) -> Vec<u8> {
    for (position, value) in edits {
        let len = der.len();
        der[position % len] = *value;
    }
    if let Some(limit) = truncate_to {
        der.truncate(limit % (der.len() + 1));
    }
    der
}

proptest! {
    #[test]
    fn inspect_never_panics_on_arbitrary_bytes(
        tls_crt in proptest::collection::vec(any::<u8>(), 0..2048),
        tls_key in proptest::collection::vec(any::<u8>(), 0..512),
        ca_crt in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let _ = inspect(&tls_crt, &tls_key, &ca_crt);
        let _ = fingerprint_pem(&tls_crt);
        let _ = PrivateKey::from_pem(&String::from_utf8_lossy(&tls_key));
    }

    #[test]
    fn inspect_never_panics_on_arbitrary_pem_bodies(
        body in proptest::collection::vec(any::<u8>(), 0..1024),
        label in prop::sample::select(vec!["CERTIFICATE", "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"]),
    ) {
        let secret = valid_secret();
        let armored = armor(label, &body);
        let _ = inspect(armored.as_bytes(), secret.tls_key.as_bytes(), secret.ca_crt.as_bytes());
        let _ = inspect(secret.tls_crt.as_bytes(), armored.as_bytes(), secret.ca_crt.as_bytes());
        let _ = inspect(secret.tls_crt.as_bytes(), secret.tls_key.as_bytes(), armored.as_bytes());
    }

    #[test]
    fn inspect_never_panics_on_corrupted_certificates_and_keys(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        truncate_to in proptest::option::of(any::<usize>()),
        field in 0usize..3,
    ) {
        let secret = valid_secret();
        let (mut tls_crt, mut tls_key, mut ca_crt) =
            (secret.tls_crt.clone(), secret.tls_key.clone(), secret.ca_crt.clone());
        match field {
            0 => tls_crt = armor("CERTIFICATE", &mutate(first_der(&tls_crt), &edits, truncate_to)),
            1 => tls_key = armor("PRIVATE KEY", &mutate(first_der(&tls_key), &edits, truncate_to)),
            _ => ca_crt = armor("CERTIFICATE", &mutate(first_der(&ca_crt), &edits, truncate_to)),
        }
        let _ = inspect(tls_crt.as_bytes(), tls_key.as_bytes(), ca_crt.as_bytes());
    }
}

#[test]
fn the_unmutated_secret_inspects_cleanly() {
    // Guards the properties above: they only mean something if the base case parses.
    let secret = valid_secret();
    let inspection = secret.inspect().expect("inspect");
    assert!(inspection.key_matches && inspection.signed_by_ca);
    let reencoded = armor("CERTIFICATE", &first_der(&secret.tls_crt));
    assert!(
        inspect(
            reencoded.as_bytes(),
            secret.tls_key.as_bytes(),
            secret.ca_crt.as_bytes()
        )
        .is_ok()
    );
}
