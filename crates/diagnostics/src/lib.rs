//! The diagnostic catalog: named checks that turn a bad ServiceCertificate into a reason, field, value and fix.
#![forbid(unsafe_code)]
