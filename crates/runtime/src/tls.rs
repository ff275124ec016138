//! The process-wide rustls crypto provider.
//!
//! kube and rcgen are built with the aws-lc-rs backend, async-nats with ring.
//! With both compiled into one binary rustls cannot choose, and every
//! `ClientConfig::builder()` (kube's API-server client, a `tls://` NATS URL)
//! panics unless a default was installed first. [`crate::Service::start`]
//! installs aws-lc-rs, the backend the rest of certflow uses.

/// Installs aws-lc-rs as the default provider; a no-op if one is installed.
pub fn install_crypto_provider() {
    // Err only means a provider was installed already, which is what we want.
    let _already_installed =
        async_nats::rustls::crypto::aws_lc_rs::default_provider().install_default();
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
}
