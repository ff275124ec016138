//! The certflow.io/v1alpha1 API types: ServiceCertificate and CertificateAuthority.
#![forbid(unsafe_code)]
