//! Key material never appears in `Debug` output or error messages.

use certflow_pki::{Authority, KeySpec, PkiError};

use crate::support::{key, test_ca};

#[test]
fn private_key_debug_names_the_algorithm_and_nothing_else() {
    assert_eq!(
        format!("{:?}", key(KeySpec::EcdsaP256)),
        "PrivateKey(<redacted> ECDSA P-256)"
    );
    assert_eq!(
        format!("{:?}", key(KeySpec::Rsa { bits: 2048 })),
        "PrivateKey(<redacted> RSA 2048)"
    );
}

#[test]
fn no_debug_output_contains_a_private_key() {
    for spec in [
        KeySpec::EcdsaP256,
        KeySpec::EcdsaP384,
        KeySpec::Ed25519,
        KeySpec::Rsa { bits: 2048 },
    ] {
        let private_key = key(spec);
        let (authority, generated) = test_ca(spec);
        let key_body = base64_body(&generated.key_pem);

        for debug in [
            format!("{private_key:?}"),
            format!("{private_key:#?}"),
            format!("{authority:?}"),
            format!("{authority:#?}"),
            format!("{generated:?}"),
        ] {
            assert!(!debug.contains("PRIVATE KEY"), "{spec}: {debug}");
            assert!(!debug.contains(&key_body[..32]), "{spec}: {debug}");
        }
        assert!(format!("{authority:?}").contains(&spec.name()));
    }
}

#[test]
fn errors_about_a_ca_key_do_not_quote_it() {
    let (_, generated) = test_ca(KeySpec::EcdsaP256);
    let stranger = key(KeySpec::EcdsaP256).to_pkcs8_pem();
    let mut corrupted = generated.key_pem.clone();
    corrupted.insert_str(40, "AAAA");

    for key_pem in [stranger.as_str(), corrupted.as_str()] {
        let error: PkiError =
            Authority::from_pem(&generated.cert_pem, key_pem).expect_err("refused");
        let message = error_chain(&error);
        assert!(!message.contains("PRIVATE KEY"), "{message}");
        assert!(!message.contains(&base64_body(key_pem)[..32]), "{message}");
    }
}

fn base64_body(pem: &str) -> String {
    pem.lines()
        .filter(|line| !line.starts_with("-----"))
        .collect()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause} / {cause:?}"));
        source = cause.source();
    }
    message
}
