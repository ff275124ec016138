//! Every reason certflow can give for refusing a certificate, in one place.
//!
//! The words returned by [`Reason::as_str`] are a public contract: they appear
//! as the Event `reason`, in `status.lastFailure.reason` and in
//! `docs/errors.md`, and users write alerts on them. Never rename one; add a
//! new variant instead.

use std::fmt;

macro_rules! reasons {
    ($( $(#[doc = $doc:literal])+ $variant:ident ),+ $(,)?) => {
        /// Why a `ServiceCertificate` could not be issued.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Reason {
            /// Every reason, in catalog order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),+];

            /// The stable CamelCase word used as the Event reason.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$variant => stringify!($variant),)+
                }
            }

            /// The one-line meaning, as written in the variant's doc comment.
            pub fn summary(self) -> &'static str {
                match self {
                    $(Reason::$variant => concat!($($doc),+).trim(),)+
                }
            }
        }
    };
}

reasons! {
    /// The spec lists no name at all: no commonName, dnsNames, ipAddresses, uris or emailAddresses.
    NoNames,
    /// The spec lists more subject alternative names than one certificate may carry.
    TooManyNames,
    /// The same name appears twice in one list.
    DuplicateName,
    /// A value contains control or invisible characters (newline, tab, zero-width space, BOM).
    ControlCharacters,
    /// A DNS name contains non-ASCII characters (an internationalized name or a look-alike letter).
    NonASCIIName,
    /// A DNS name is not a valid lowercase hostname (bad characters, upper case, trailing dot, empty label).
    InvalidDNSName,
    /// An IP address was written in spec.dnsNames instead of spec.ipAddresses.
    DNSNameIsIPAddress,
    /// A URL was written in spec.dnsNames instead of a bare hostname or spec.uris.
    DNSNameIsURL,
    /// An email address was written in spec.dnsNames instead of spec.emailAddresses.
    DNSNameIsEmailAddress,
    /// A `*` wildcard appears somewhere other than as the whole leftmost label.
    WildcardNotLeftmost,
    /// A DNS name is longer than 253 characters.
    DNSNameTooLong,
    /// A label of a DNS name is longer than 63 characters.
    DNSLabelTooLong,
    /// An entry of spec.ipAddresses is not a single IPv4 or IPv6 address.
    InvalidIPAddress,
    /// An entry of spec.uris is not an absolute URI with a scheme.
    InvalidURI,
    /// An entry of spec.emailAddresses is not a plain `local@domain` address.
    InvalidEmailAddress,
    /// spec.commonName is empty or not printable text.
    InvalidCommonName,
    /// spec.commonName is longer than the 64 characters X.509 allows.
    CommonNameTooLong,
    /// spec.secretName is not a valid Kubernetes Secret name.
    InvalidSecretName,
    /// A label or annotation in spec.secretTemplate is one Kubernetes refuses on a Secret (a malformed key, a label value that is not a short identifier, annotations over 256 KiB).
    InvalidSecretTemplate,
    /// spec.duration or spec.renewBefore is not a Go duration such as `2160h`.
    InvalidDuration,
    /// spec.duration is shorter than the one-minute minimum.
    DurationTooShort,
    /// spec.renewBefore is not shorter than the certificate's duration.
    RenewBeforeTooLong,
    /// spec.renewBefore is zero, so renewal would start only after expiry.
    RenewBeforeTooShort,
    /// spec.privateKey.size is not a size the chosen algorithm supports.
    InvalidKeySize,
    /// spec.usages asks for cert sign, which only a CA certificate may have, but spec.isCA is not true.
    CertSignWithoutCA,
    /// spec.issuerRef names a CertificateAuthority that does not exist (or none is the default).
    IssuerNotFound,
    /// The CertificateAuthority exists but cannot sign yet.
    IssuerNotReady,
    /// The CertificateAuthority's own policy is malformed; platform operators must fix it.
    InvalidIssuerPolicy,
    /// The CertificateAuthority does not serve this namespace.
    NamespaceNotAllowed,
    /// A requested name is not allowed for this namespace by the CertificateAuthority's policy.
    PolicyViolation,
    /// The requested duration is longer than the CertificateAuthority allows.
    DurationExceedsPolicy,
    /// The key algorithm is not one the CertificateAuthority allows.
    KeyAlgorithmNotAllowed,
    /// The RSA key is smaller than the CertificateAuthority's minimum.
    KeyTooWeak,
    /// spec.isCA is true, or spec.usages asks for cert sign or crl sign, but the CertificateAuthority does not issue CA certificates.
    CANotAllowed,
    /// spec.usages asks for a usage the CertificateAuthority's policy does not allow.
    UsageNotAllowed,
    /// spec.commonName is not one of the certificate's own DNS names, IP addresses, URIs or email addresses.
    CommonNameNotInSANs,
    /// The Secret named by spec.secretName exists and was not created by certflow.
    SecretConflict,
    /// The Secret named by spec.secretName belongs to another ServiceCertificate.
    SecretOwnedByOther,
    /// Issuance kept failing for a transient reason and certflow stopped retrying.
    RetriesExhausted,
    /// Issuance failed in a way retrying cannot fix, such as an admission policy refusing the Secret.
    IssuanceFailed,
}

impl Reason {
    /// Whether waiting can fix this failure without anyone editing a
    /// resource. Every other reason needs a change to the ServiceCertificate,
    /// the CertificateAuthority or the Secret, and that change is itself a new
    /// work item, so the signer reports it instead of retrying.
    pub const fn is_transient(self) -> bool {
        matches!(self, Reason::IssuerNotReady)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Reason {
    type Err = UnknownReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .iter()
            .copied()
            .find(|reason| reason.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

/// A string that is not the `as_str()` of any [`Reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown certflow failure reason {0:?}")]
pub struct UnknownReason(pub String);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_reason_word_is_unique_camel_case_and_round_trips() {
        let mut seen = HashSet::new();
        for &reason in Reason::ALL {
            let word = reason.as_str();
            assert!(seen.insert(word), "{word} listed twice");
            assert!(word.chars().all(|c| c.is_ascii_alphanumeric()), "{word}");
            assert!(word.starts_with(|c: char| c.is_ascii_uppercase()), "{word}");
            assert_eq!(word.parse::<Reason>(), Ok(reason));
        }
    }

    #[test]
    fn every_reason_has_a_one_line_summary() {
        for &reason in Reason::ALL {
            let summary = reason.summary();
            assert!(summary.ends_with('.'), "{reason}: {summary}");
            assert!(!summary.contains('\n'), "{reason}: {summary}");
        }
    }
}
