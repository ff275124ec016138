//! Rendering the CustomResourceDefinitions committed under `deploy/crds`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{CertificateAuthority, ServiceCertificate};

/// The command that regenerates the committed CRD files.
pub const REGENERATE_COMMAND: &str = "cargo run -p certflow-api --bin crdgen";

/// Every CRD certflow defines, with the file name it is committed under in
/// `deploy/crds`.
pub fn crds() -> [(&'static str, CustomResourceDefinition); 2] {
    [
        (
            "servicecertificates.certflow.io.yaml",
            ServiceCertificate::crd(),
        ),
        (
            "certificateauthorities.certflow.io.yaml",
            CertificateAuthority::crd(),
        ),
    ]
}

/// A CRD as committed: a do-not-edit header, then the YAML document.
pub fn render_crd(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    let yaml = serde_yaml::to_string(crd)?;
    Ok(format!(
        "# Generated from the Rust types in crates/api by `{REGENERATE_COMMAND}`.\n\
         # Do not edit: change the types and regenerate.\n\
         ---\n\
         {yaml}"
    ))
}
