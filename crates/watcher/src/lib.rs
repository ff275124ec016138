//! Watches ServiceCertificates, CertificateAuthorities and managed Secrets; publishes work items.
#![forbid(unsafe_code)]
