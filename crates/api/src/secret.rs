//! The shape of the Secrets certflow reads and writes: a `kubernetes.io/tls`
//! Secret, for issued certificates and CA key pairs alike.

/// The Secret type of every Secret certflow writes.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

/// Data key of the PEM certificate, followed by its chain up to the CA.
pub const TLS_CERT_KEY: &str = "tls.crt";

/// Data key of the PEM private key.
pub const TLS_PRIVATE_KEY_KEY: &str = "tls.key";

/// Data key of the PEM CA certificate that clients should trust.
pub const CA_CERT_KEY: &str = "ca.crt";
