//! The test cluster's own credentials: a serving CA and certificate for
//! kube-apiserver, a client CA and an admin client certificate, the client
//! certificate kube-apiserver presents to kubelets, and the service-account
//! token signing key. All generated fresh per environment; further client
//! certificates (a kubelet's `system:node:<name>`) come from
//! [`Pki::client_certificate`].

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
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
    /// What kube-apiserver presents to a kubelet (`kubectl logs`):
    /// `kube-apiserver-kubelet-client` in `system:masters`.
    pub kubelet_client_cert: PathBuf,
    pub kubelet_client_key: PathBuf,
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

        let (kubelet_client_cert, kubelet_client_key) = client_certificate(
            &client_ca,
            "kube-apiserver-kubelet-client",
            "system:masters",
        )?;

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
            kubelet_client_cert: write(dir, "kubelet-client.crt", &kubelet_client_cert)?,
            kubelet_client_key: write(dir, "kubelet-client.key", &kubelet_client_key)?,
        })
    }

    /// A new client certificate for `common_name` in `organization` (the
    /// user and group the API server sees), signed by the client CA:
    /// `(certificate PEM, key PEM)`.
    pub fn client_certificate(
        &self,
        common_name: &str,
        organization: &str,
    ) -> Result<(String, String)> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))
        };
        let key = KeyPair::from_pem(&read(&self.client_ca_key)?)?;
        let issuer = Issuer::from_ca_cert_pem(&read(&self.client_ca)?, key)?;
        client_certificate(&issuer, common_name, organization)
    }
}

fn client_certificate(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    organization: &str,
) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, organization);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}
