//! Kubeconfig files that plain `kubectl` and kube-rs can both read.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Result, io};

/// How a kubeconfig's user proves who it is.
#[derive(Debug)]
pub enum Credentials<'a> {
    ClientCertificate { cert_pem: &'a str, key_pem: &'a str },
    Token(&'a str),
}

/// Writes a single-context kubeconfig for `server` to `path`, readable only
/// by its owner because it carries credentials.
pub fn write(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    creds: Credentials<'_>,
) -> Result<()> {
    let auth = match creds {
        Credentials::ClientCertificate { cert_pem, key_pem } => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            STANDARD.encode(cert_pem),
            STANDARD.encode(key_pem)
        ),
        Credentials::Token(token) => format!("    token: {token}\n"),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: certflow-testenv\n  cluster:\n    \
         server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n{auth}\
         contexts:\n- name: {user}@certflow-testenv\n  context:\n    cluster: certflow-testenv\n    \
         user: {user}\ncurrent-context: {user}@certflow-testenv\n",
        ca = STANDARD.encode(ca_pem),
    );
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))?;
    restrict_to_owner(path)
}

fn restrict_to_owner(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("chmod 600 {}", path.display())))
}

/// A kube client for the kubeconfig at `path`.
pub async fn client(path: &Path) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}
