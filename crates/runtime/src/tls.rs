//! The process-wide rustls crypto provider, and the start-up check of the
//! PEM files named by `--nats-tls-ca`, `--nats-tls-cert` and
//! `--nats-tls-key`.
//!
//! Reads those files only; the NATS client reads them again for each
//! connection, so renewed files are used from the next reconnect. Errors
//! name the file and what is wrong with it, never a byte of its contents:
//! the key file is secret, and the PEM parser's own messages can quote a
//! line of the file.
//!
//! kube and rcgen are built with the aws-lc-rs backend, async-nats with ring.
//! With both compiled into one binary rustls cannot choose, and every
//! `ClientConfig::builder()` (kube's API-server client, a `tls://` NATS URL)
//! panics unless a default was installed first. [`crate::Service::start`]
//! installs aws-lc-rs, the backend the rest of certflow uses.

use std::path::Path;

use async_nats::rustls::{
    self, RootCertStore,
    crypto::aws_lc_rs,
    pki_types::{CertificateDer, PrivateKeyDer, pem, pem::PemObject},
    sign::CertifiedKey,
};

use crate::RuntimeError;
use crate::args::NatsTls;

/// Installs aws-lc-rs as the default provider; a no-op if one is installed.
pub fn install_crypto_provider() {
    // Err only means a provider was installed already, which is what we want.
    let _already_installed =
        async_nats::rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Checks, before the first connection, that every file of `tls` can be
/// read and holds what its flag promises: CA certificates that can be
/// trusted, a certificate chain, and a private key that belongs to that
/// certificate. The NATS client would otherwise find these mistakes only
/// inside each connection attempt, retried until `--nats-connect-timeout`.
pub fn check_nats_tls_files(tls: &NatsTls) -> Result<(), RuntimeError> {
    if let Some(ca) = &tls.ca {
        let certificates = read_certificates("--nats-tls-ca", ca)?;
        let mut roots = RootCertStore::empty();
        for certificate in certificates {
            roots.add(certificate).map_err(|error| {
                file_error(
                    "--nats-tls-ca",
                    ca,
                    format!("holds a certificate that cannot be trusted as a CA: {error}"),
                )
            })?;
        }
    }
    if let Some(client) = &tls.client {
        let chain = read_certificates("--nats-tls-cert", &client.cert)?;
        let key = read_private_key(&client.key)?;
        let provider = aws_lc_rs::default_provider();
        CertifiedKey::from_der(chain, key, &provider).map_err(|error| {
            let problem = match error {
                rustls::Error::InconsistentKeys(_) => format!(
                    "is not the key of the certificate in {}",
                    client.cert.display()
                ),
                // Says which check failed (an unsupported key type, say);
                // rustls' errors do not quote the key.
                other => format!("cannot be used with {}: {other}", client.cert.display()),
            };
            file_error("--nats-tls-key", &client.key, problem)
        })?;
    }
    Ok(())
}

fn read_certificates(
    flag: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, RuntimeError> {
    let text = read(flag, path)?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error(flag, path, pem_problem(&error, "certificate")))?;
    if certificates.is_empty() {
        return Err(file_error(flag, path, "holds no PEM certificate".into()));
    }
    Ok(certificates)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, RuntimeError> {
    let flag = "--nats-tls-key";
    let text = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&text)
        .map_err(|error| file_error(flag, path, pem_problem(&error, "private key")))
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, RuntimeError> {
    std::fs::read(path).map_err(|error| file_error(flag, path, format!("cannot be read: {error}")))
}

/// What is wrong with a PEM file, in words that never quote it: the
/// parser's own `Display` includes the offending line.
fn pem_problem(error: &pem::Error, item: &str) -> String {
    match error {
        pem::Error::NoItemsFound => format!("holds no PEM {item}"),
        pem::Error::SectionTooLarge => "holds a PEM section that is too large".to_owned(),
        _ => format!("is not valid PEM (a damaged or truncated {item}?)"),
    }
}

fn file_error(flag: &'static str, path: &Path, problem: String) -> RuntimeError {
    RuntimeError::NatsTlsFile {
        flag,
        path: path.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_provider_is_installed_and_a_second_call_is_harmless() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(async_nats::rustls::crypto::CryptoProvider::get_default().is_some());
    }

    /// A CA, a client certificate it signed, and that certificate's key,
    /// written as PEM files into a fresh directory.
    struct Files {
        dir: tempfile::TempDir,
        key_pem: String,
    }

    impl Files {
        fn new() -> Self {
            use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
            let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca =
                CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("ca key")).expect("ca");
            let key = KeyPair::generate().expect("key");
            let cert = CertificateParams::new(vec!["certflow-watcher".to_owned()])
                .and_then(|params| params.signed_by(&key, &ca))
                .expect("cert");
            let dir = tempfile::tempdir().expect("temp dir");
            let key_pem = key.serialize_pem();
            for (name, text) in [
                ("ca.crt", ca.pem()),
                ("tls.crt", cert.pem()),
                ("tls.key", key_pem.clone()),
                (
                    "other.key",
                    KeyPair::generate().expect("key").serialize_pem(),
                ),
            ] {
                std::fs::write(dir.path().join(name), text).expect("write");
            }
            Self { dir, key_pem }
        }

        fn path(&self, name: &str) -> std::path::PathBuf {
            self.dir.path().join(name)
        }

        fn tls(&self, ca: &str, cert: &str, key: &str) -> NatsTls {
            NatsTls {
                ca: Some(self.path(ca)),
                client: Some(crate::ClientCertificate {
                    cert: self.path(cert),
                    key: self.path(key),
                }),
            }
        }

        fn check(&self, ca: &str, cert: &str, key: &str) -> Result<(), String> {
            check_nats_tls_files(&self.tls(ca, cert, key)).map_err(|error| error.to_string())
        }
    }

    #[test]
    fn a_ca_and_a_matching_certificate_and_key_pass() {
        let files = Files::new();
        assert_eq!(files.check("ca.crt", "tls.crt", "tls.key"), Ok(()));
        let ca_only = NatsTls {
            ca: Some(files.path("ca.crt")),
            client: None,
        };
        assert!(check_nats_tls_files(&ca_only).is_ok());
    }

    #[test]
    fn each_problem_names_the_flag_and_the_file() {
        let files = Files::new();
        std::fs::write(files.path("empty.pem"), "no PEM here\n").expect("write");
        let cases = [
            (
                ("missing.crt", "tls.crt", "tls.key"),
                "--nats-tls-ca",
                "missing.crt",
                "cannot be read",
            ),
            (
                ("tls.key", "tls.crt", "tls.key"),
                "--nats-tls-ca",
                "tls.key",
                "holds no PEM certificate",
            ),
            (
                ("ca.crt", "empty.pem", "tls.key"),
                "--nats-tls-cert",
                "empty.pem",
                "holds no PEM certificate",
            ),
            (
                ("ca.crt", "tls.crt", "tls.crt"),
                "--nats-tls-key",
                "tls.crt",
                "holds no PEM private key",
            ),
            (
                ("ca.crt", "tls.crt", "missing.key"),
                "--nats-tls-key",
                "missing.key",
                "cannot be read",
            ),
            (
                ("ca.crt", "tls.crt", "other.key"),
                "--nats-tls-key",
                "other.key",
                "is not the key of the certificate",
            ),
        ];
        for ((ca, cert, key), flag, file, problem) in cases {
            let error = files.check(ca, cert, key).err().unwrap_or_default();
            let path = files.path(file).display().to_string();
            assert!(
                error.contains(flag) && error.contains(&path) && error.contains(problem),
                "{ca} {cert} {key}: expected {flag}, {path} and {problem:?} in {error:?}"
            );
        }
    }

    #[test]
    fn errors_never_quote_the_key_file() {
        let files = Files::new();
        // The key's own body, broken three ways the PEM parser reports with
        // (part of) the file in its message: a bad character, a missing end
        // line, a bad section start.
        let body: String = files
            .key_pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let broken = [
            format!("-----BEGIN PRIVATE KEY-----\n{body}!!\n-----END PRIVATE KEY-----\n"),
            format!("-----BEGIN PRIVATE KEY-----\n{body}\n"),
            format!("-----BEGIN {body}\n"),
        ];
        for (i, text) in broken.iter().enumerate() {
            std::fs::write(files.path("broken.key"), text).expect("write");
            let error = files.check("ca.crt", "tls.crt", "broken.key");
            let Err(error) = error else {
                panic!("broken key {i} was accepted");
            };
            // Exactly our words: the parser's own message would quote the
            // line as a byte list (`illegal section start: [45, 45, ...]`).
            let path = files.path("broken.key");
            assert_eq!(
                error,
                format!(
                    "NATS TLS --nats-tls-key file {}: is not valid PEM (a damaged or truncated private key?)",
                    path.display()
                ),
                "broken key {i}"
            );
        }
    }
}
