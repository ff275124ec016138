//! The test cluster's own credentials: a serving CA and certificate for
//! kube-apiserver, a client CA and an admin client certificate, and the
//! service-account token signing key. All generated fresh per environment.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::error::{Result, io};

/// Paths of the PEM files written into the environment's directory, plus the
/// PEM text the kubeconfig embeds.
#[derive(Debug, Clone)]
pub struct Pki {
    pub serving_ca: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub client_ca: PathBuf,
    pub client_ca_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
    pub serving_ca_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

fn ca(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(io(format!("writing {}", path.display())))?;
    Ok(path)
}

impl Pki {
    /// Generates every key and certificate and writes them under `dir`.
    pub fn generate(dir: &Path) -> Result<Self> {
        let serving_ca = ca("certflow-testenv-serving-ca")?;
        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default.svc".to_owned(),
        ])?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &serving_ca)?;

        let client_ca = ca("certflow-testenv-client-ca")?;
        let admin_key = KeyPair::generate()?;
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin.distinguished_name.push(DnType::CommonName, "admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &client_ca)?;

        let service_account = KeyPair::generate()?;

        Ok(Self {
            serving_ca: write(dir, "serving-ca.crt", &serving_ca.pem())?,
            serving_cert: write(dir, "serving.crt", &serving_cert.pem())?,
            serving_key: write(dir, "serving.key", &serving_key.serialize_pem())?,
            client_ca: write(dir, "client-ca.crt", &client_ca.pem())?,
            client_ca_key: write(dir, "client-ca.key", &client_ca.key().serialize_pem())?,
            service_account_key: write(dir, "sa.key", &service_account.serialize_pem())?,
            service_account_pub: write(dir, "sa.pub", &service_account.public_key_pem())?,
            serving_ca_pem: serving_ca.pem(),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
        })
    }
}
