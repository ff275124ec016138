//! Cross-checks against the OpenSSL CLI: what we write, OpenSSL accepts, and
//! what OpenSSL writes, we read.

use certflow_pki::{Authority, KeySpec, PrivateKey, fingerprint_pem};

use crate::support::{
    TlsSecret, key, openssl, sub_ca, sub_ca_request, test_ca, web_name_constraints, web_request,
    write,
};

#[test]
fn openssl_verifies_issued_chains_and_sees_every_name() {
    for spec in [
        KeySpec::EcdsaP256,
        KeySpec::EcdsaP384,
        KeySpec::Ed25519,
        KeySpec::Rsa { bits: 2048 },
    ] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (authority, _) = test_ca(spec);
        let leaf_key = key(spec);
        let issued = authority.issue(&web_request(), &leaf_key).expect("issue");
        write(dir.path(), "ca.pem", authority.cert_pem());
        write(dir.path(), "leaf.pem", &issued.cert_pem);
        write(dir.path(), "key.pem", &leaf_key.to_pkcs8_pem());

        let verified = openssl(dir.path(), &["verify", "-CAfile", "ca.pem", "leaf.pem"]);
        assert_eq!(verified.trim(), "leaf.pem: OK", "{spec}");

        let san = openssl(
            dir.path(),
            &[
                "x509",
                "-in",
                "leaf.pem",
                "-noout",
                "-ext",
                "subjectAltName",
            ],
        );
        for expected in [
            "DNS:web.shop.svc",
            "DNS:web.shop.svc.cluster.local",
            "IP Address:10.0.0.7",
            "IP Address:0:0:0:0:0:0:0:1",
            "URI:spiffe://cluster.local/ns/shop/sa/web",
            "email:ops@example.com",
        ] {
            assert!(
                san.contains(expected),
                "{spec}: {expected} missing from {san}"
            );
        }

        let extensions = openssl(
            dir.path(),
            &[
                "x509",
                "-in",
                "leaf.pem",
                "-noout",
                "-ext",
                "basicConstraints,keyUsage,extendedKeyUsage,subjectKeyIdentifier,authorityKeyIdentifier",
            ],
        );
        for expected in [
            "CA:FALSE",
            "Digital Signature, Key Encipherment",
            "TLS Web Server Authentication, TLS Web Client Authentication",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
        ] {
            assert!(
                extensions.contains(expected),
                "{spec}: {expected} missing from {extensions}"
            );
        }

        let serial = openssl(
            dir.path(),
            &["x509", "-in", "leaf.pem", "-noout", "-serial"],
        );
        assert_eq!(
            serial.trim().to_lowercase(),
            format!("serial={}", issued.serial),
            "{spec}"
        );

        let fingerprint = openssl(
            dir.path(),
            &["x509", "-in", "ca.pem", "-noout", "-fingerprint", "-sha256"],
        );
        let fingerprint = fingerprint
            .trim()
            .rsplit('=')
            .next()
            .unwrap_or_default()
            .replace(':', "");
        assert_eq!(
            fingerprint.to_lowercase(),
            authority.fingerprint(),
            "{spec}"
        );

        // OpenSSL reads the PKCS#8 key we write and agrees it belongs to the leaf.
        let from_key = openssl(dir.path(), &["pkey", "-in", "key.pem", "-pubout"]);
        let from_cert = openssl(
            dir.path(),
            &["x509", "-in", "leaf.pem", "-noout", "-pubkey"],
        );
        assert_eq!(from_key, from_cert, "{spec}");
    }
}

#[test]
fn openssl_verifies_a_chain_through_a_name_constrained_intermediate_served_in_tls_crt() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (root, _) = test_ca(KeySpec::EcdsaP256);
    let intermediate = sub_ca(
        &root,
        &sub_ca_request("certflow intermediate", web_name_constraints()),
    );
    let leaf = intermediate
        .issue(&web_request(), &key(KeySpec::EcdsaP256))
        .expect("issue leaf");
    write(dir.path(), "root.pem", root.cert_pem());
    write(dir.path(), "chain.pem", &leaf.chain_pem);
    write(dir.path(), "leaf.pem", &leaf.cert_pem);

    let verified = openssl(
        dir.path(),
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "leaf.pem",
        ],
    );

    assert_eq!(verified.trim(), "leaf.pem: OK");
}

#[test]
fn keys_written_by_openssl_load_in_every_format() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let cases: [(&str, &[&str], KeySpec); 5] = [
        (
            "sec1-p256.pem",
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
            KeySpec::EcdsaP256,
        ),
        (
            "sec1-p384.pem",
            &["ecparam", "-name", "secp384r1", "-genkey", "-noout"],
            KeySpec::EcdsaP384,
        ),
        (
            "pkcs1-rsa.pem",
            &["genrsa", "-traditional", "2048"],
            KeySpec::Rsa { bits: 2048 },
        ),
        (
            "pkcs8-rsa.pem",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            KeySpec::Rsa { bits: 2048 },
        ),
        (
            "pkcs8-ed25519.pem",
            &["genpkey", "-algorithm", "ED25519"],
            KeySpec::Ed25519,
        ),
    ];
    let (authority, _) = test_ca(KeySpec::EcdsaP256);
    for (file, args, spec) in cases {
        // Options before positional arguments: genrsa takes the size last.
        let (command, options) = args.split_first().expect("a subcommand");
        let mut args = vec![*command, "-out", file];
        args.extend(options);
        openssl(dir.path(), &args);
        let pem = std::fs::read_to_string(dir.path().join(file)).expect("read key");

        let loaded = PrivateKey::from_pem(&pem).unwrap_or_else(|error| panic!("{file}: {error}"));
        assert_eq!(loaded.spec(), Some(spec), "{file}");
        assert!(
            loaded
                .to_pkcs8_pem()
                .starts_with("-----BEGIN PRIVATE KEY-----"),
            "{file}"
        );

        // A Secret holding OpenSSL's key in its original format inspects cleanly.
        let issued = authority.issue(&web_request(), &loaded).expect("issue");
        let inspection = TlsSecret {
            tls_key: pem,
            ..TlsSecret::issued(&authority, &issued, &loaded)
        }
        .inspect()
        .expect("inspect");
        assert!(inspection.key_matches, "{file}");

        // OpenSSL agrees the PKCS#8 we re-encode is the same key.
        write(dir.path(), "reencoded.pem", &loaded.to_pkcs8_pem());
        let original = openssl(dir.path(), &["pkey", "-in", file, "-pubout"]);
        let reencoded = openssl(dir.path(), &["pkey", "-in", "reencoded.pem", "-pubout"]);
        assert_eq!(original, reencoded, "{file}");
    }
}

#[test]
fn a_ca_made_by_openssl_loads_and_issues() {
    let dir = tempfile::tempdir().expect("temporary directory");
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/O=certflow/CN=openssl root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let cert_pem = std::fs::read_to_string(dir.path().join("ca.pem")).expect("read ca.pem");
    let key_pem = std::fs::read_to_string(dir.path().join("ca.key")).expect("read ca.key");

    let authority = Authority::from_pem(&cert_pem, &key_pem).expect("load the OpenSSL CA");
    let request = certflow_pki::LeafRequest {
        not_after: std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
        ..web_request()
    };
    let issued = authority
        .issue(&request, &key(KeySpec::EcdsaP256))
        .expect("issue");
    write(dir.path(), "leaf.pem", &issued.cert_pem);

    assert_eq!(
        openssl(dir.path(), &["verify", "-CAfile", "ca.pem", "leaf.pem"]).trim(),
        "leaf.pem: OK"
    );
    assert_eq!(authority.subject(), "O=certflow, CN=openssl root");
    assert_eq!(
        fingerprint_pem(cert_pem.as_bytes()).expect("fingerprint"),
        authority.fingerprint()
    );
}

#[test]
fn a_ca_without_key_cert_sign_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=signs nothing",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature",
        ],
    );
    let cert_pem = std::fs::read_to_string(dir.path().join("ca.pem")).expect("read ca.pem");
    let key_pem = std::fs::read_to_string(dir.path().join("ca.key")).expect("read ca.key");

    let refused = Authority::from_pem(&cert_pem, &key_pem).expect_err("refused");

    assert!(refused.to_string().contains("keyCertSign"), "{refused}");
}

#[test]
fn a_ca_whose_subject_repeats_an_attribute_type_is_refused() {
    // rcgen would collapse DC=example, DC=com into one DC, breaking chains.
    let dir = tempfile::tempdir().expect("temporary directory");
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/DC=com/DC=example/CN=corp root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    let cert_pem = std::fs::read_to_string(dir.path().join("ca.pem")).expect("read ca.pem");
    let key_pem = std::fs::read_to_string(dir.path().join("ca.key")).expect("read ca.key");

    let refused = Authority::from_pem(&cert_pem, &key_pem);

    assert!(
        matches!(
            refused,
            Err(certflow_pki::PkiError::UnrepresentableAuthoritySubject { .. })
        ),
        "{refused:?}"
    );
}
