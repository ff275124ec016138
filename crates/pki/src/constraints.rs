//! Name constraints for the CA certificates an [`Authority`](crate::Authority)
//! issues, and their DER encoding.
//!
//! rcgen's own `NameConstraints` cannot express URI subtrees, so the
//! nameConstraints extension (RFC 5280 §4.2.1.10) is written here by hand. The
//! writer covers exactly the shapes certflow emits: tag, definite length,
//! contents.

use std::net::IpAddr;

use crate::PkiError;

/// nameConstraints, 2.5.29.30.
pub(crate) const NAME_CONSTRAINTS_OID: [u64; 4] = [2, 5, 29, 30];

/// The reserved top-level name (RFC 2606) that no real DNS name, mailbox host
/// or URI host can fall under.
const NOTHING: &str = "invalid";

// DER tags. GeneralName's alternatives are IMPLICIT context tags: primitive
// for the string and octet alternatives, constructed for the subtree lists.
const SEQUENCE: u8 = 0x30;
const PERMITTED_SUBTREES: u8 = 0xa0;
const EXCLUDED_SUBTREES: u8 = 0xa1;
const RFC822_NAME: u8 = 0x81;
const DNS_NAME: u8 = 0x82;
const URI: u8 = 0x86;
const IP_ADDRESS: u8 = 0x87;

/// The names a sub-CA may certify, one list per name type.
///
/// **Fail closed: an empty list permits nothing of that kind.** A CA issued
/// with `NameConstraints::default()` can sign no certificate that any
/// verifier honouring name constraints accepts, except one naming nothing
/// but a directory name.
///
/// Matching is the verifier's, per RFC 5280 §4.2.1.10:
/// - `dns_subtrees`: `"shop.svc"` permits `shop.svc` and every name under it
///   (`api.shop.svc`), not `myshop.svc`.
/// - `ip_ranges`: `(network, prefix length)`; host bits of `network` are
///   cleared. IPv4 and IPv6 are one name type, so ranges of only one family
///   permit no address of the other.
/// - `email_domains`: `"example.com"` permits every mailbox at exactly that
///   host; `".example.com"` permits mailboxes at hosts under it; a full
///   address permits that mailbox alone.
/// - `uri_hosts`: `"cluster.local"` permits URIs whose host is exactly
///   `cluster.local` (such as SPIFFE IDs of that trust domain);
///   `".cluster.local"` permits hosts under it.
///
/// Directory names and other name types are not constrained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameConstraints {
    pub dns_subtrees: Vec<String>,
    pub ip_ranges: Vec<(IpAddr, u8)>,
    pub email_domains: Vec<String>,
    pub uri_hosts: Vec<String>,
}

impl NameConstraints {
    /// The critical nameConstraints extension, ready for rcgen.
    pub(crate) fn to_extension(&self) -> Result<rcgen::CustomExtension, PkiError> {
        let mut extension =
            rcgen::CustomExtension::from_oid_content(&NAME_CONSTRAINTS_OID, self.to_der()?);
        // RFC 5280 §4.2.1.10: conforming CAs MUST mark it critical, so that
        // a verifier that cannot enforce it rejects the chain instead of
        // ignoring it.
        extension.set_criticality(true);
        Ok(extension)
    }

    /// `NameConstraints ::= SEQUENCE { permittedSubtrees [0], excludedSubtrees [1] }`.
    ///
    /// A permitted list constrains only the name types that appear in it, so
    /// leaving a kind out of it would permit every name of that kind. An
    /// empty DNS, email or URI list therefore becomes one permitted subtree
    /// under "invalid", which no real name matches. No IP range matches
    /// nothing, so an empty IP list instead excludes `0.0.0.0/0` and `::/0`;
    /// exclusions win over permissions, and these two cover every address.
    fn to_der(&self) -> Result<Vec<u8>, PkiError> {
        let mut permitted = Vec::new();
        for (tag, kind, names) in [
            (DNS_NAME, "DNS subtree", &self.dns_subtrees),
            (RFC822_NAME, "email domain", &self.email_domains),
            (URI, "URI host", &self.uri_hosts),
        ] {
            if names.is_empty() {
                permitted.extend(subtree(tag, NOTHING.as_bytes()));
            }
            for name in names {
                permitted.extend(subtree(tag, ia5(kind, name)?));
            }
        }
        for &(network, prefix_length) in &self.ip_ranges {
            permitted.extend(subtree(
                IP_ADDRESS,
                &address_and_mask(network, prefix_length)?,
            ));
        }

        let mut contents = tlv(PERMITTED_SUBTREES, &permitted);
        if self.ip_ranges.is_empty() {
            let mut excluded = subtree(IP_ADDRESS, &[0; 8]);
            excluded.extend(subtree(IP_ADDRESS, &[0; 32]));
            contents.extend(tlv(EXCLUDED_SUBTREES, &excluded));
        }
        Ok(tlv(SEQUENCE, &contents))
    }
}

/// Checks a DNS, email or URI base. An empty base matches every name of its
/// type (RFC 5280 and OpenSSL agree), which would turn a typo into "permit
/// everything", so it is refused.
fn ia5<'a>(kind: &'static str, name: &'a str) -> Result<&'a [u8], PkiError> {
    let invalid = |reason| PkiError::InvalidNameConstraint {
        kind,
        value: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("an empty name would permit every name of its kind"));
    }
    if !name.is_ascii() {
        return Err(invalid(
            "it is not ASCII (IDNs must already be punycode-encoded)",
        ));
    }
    Ok(name.as_bytes())
}

/// `iPAddress` in a subtree: the network address followed by its mask.
fn address_and_mask(network: IpAddr, prefix_length: u8) -> Result<Vec<u8>, PkiError> {
    let octets = match network {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let bits = octets.len() * 8;
    let prefix = usize::from(prefix_length);
    if prefix > bits {
        return Err(PkiError::InvalidNameConstraint {
            kind: "IP range",
            value: format!("{network}/{prefix_length}"),
            reason: "the prefix length is longer than the address",
        });
    }
    let mask: Vec<u8> = (0..octets.len())
        .map(|index| {
            let ones = prefix.saturating_sub(index * 8).min(8) as u32;
            // A byte shifted left by 8 has no bits left: the mask is zero.
            u8::MAX.checked_shl(8 - ones).unwrap_or(0)
        })
        .collect();
    let mut encoded: Vec<u8> = octets.iter().zip(&mask).map(|(o, m)| o & m).collect();
    encoded.extend(mask);
    Ok(encoded)
}

/// `GeneralSubtree ::= SEQUENCE { base GeneralName }`; minimum and maximum
/// keep their defaults and so are absent in DER.
fn subtree(name_tag: u8, name: &[u8]) -> Vec<u8> {
    tlv(SEQUENCE, &tlv(name_tag, name))
}

fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut encoded = vec![tag];
    encoded.extend(length(contents.len()));
    encoded.extend(contents);
    encoded
}

/// DER definite length: short form below 128, otherwise the minimal
/// big-endian byte count prefixed with 0x80 | count.
fn length(length: usize) -> Vec<u8> {
    if length < 0x80 {
        // Checked just above: fits in seven bits.
        return vec![length as u8];
    }
    let bytes = length.to_be_bytes();
    let first = bytes.iter().position(|byte| *byte != 0).unwrap_or(0);
    let significant = &bytes[first..];
    // At most size_of::<usize>() bytes, far below 0x80.
    let mut encoded = vec![0x80 | significant.len() as u8];
    encoded.extend(significant);
    encoded
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;
    use x509_parser::extensions::{GeneralName, GeneralSubtree};
    use x509_parser::prelude::FromDer as _;

    use super::*;

    fn parsed(der: &[u8]) -> x509_parser::extensions::NameConstraints<'_> {
        let (rest, parsed) =
            x509_parser::extensions::NameConstraints::from_der(der).expect("x509-parser reads it");
        assert!(rest.is_empty(), "trailing bytes after the extension");
        parsed
    }

    fn bases<'a>(subtrees: &'a Option<Vec<GeneralSubtree<'a>>>) -> Vec<&'a GeneralName<'a>> {
        subtrees
            .iter()
            .flatten()
            .map(|subtree| &subtree.base)
            .collect()
    }

    #[test]
    fn every_kind_of_constraint_reads_back_as_a_permitted_subtree() {
        let constraints = NameConstraints {
            dns_subtrees: vec!["shop.svc".to_owned(), "shop.example".to_owned()],
            ip_ranges: vec![
                (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), 8),
                (IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0)), 8),
            ],
            email_domains: vec!["example.com".to_owned()],
            uri_hosts: vec!["cluster.local".to_owned()],
        };
        let der = constraints.to_der().expect("encode");
        let parsed = parsed(&der);

        let mut v6 = vec![0xfd];
        v6.extend([0; 15]);
        v6.push(0xff);
        v6.extend([0; 15]);
        assert_eq!(
            bases(&parsed.permitted_subtrees),
            [
                &GeneralName::DNSName("shop.svc"),
                &GeneralName::DNSName("shop.example"),
                &GeneralName::RFC822Name("example.com"),
                &GeneralName::URI("cluster.local"),
                &GeneralName::IPAddress(&[10, 0, 0, 0, 255, 0, 0, 0]),
                &GeneralName::IPAddress(&v6),
            ]
        );
        assert_eq!(parsed.excluded_subtrees, None);
    }

    #[test]
    fn empty_lists_permit_only_the_reserved_name_invalid_and_exclude_every_address() {
        let der = NameConstraints::default().to_der().expect("encode");
        let parsed = parsed(&der);

        assert_eq!(
            bases(&parsed.permitted_subtrees),
            [
                &GeneralName::DNSName("invalid"),
                &GeneralName::RFC822Name("invalid"),
                &GeneralName::URI("invalid"),
            ]
        );
        assert_eq!(
            bases(&parsed.excluded_subtrees),
            [
                &GeneralName::IPAddress(&[0; 8]),
                &GeneralName::IPAddress(&[0; 32]),
            ]
        );
    }

    #[test]
    fn only_the_empty_kinds_are_closed() {
        let constraints = NameConstraints {
            dns_subtrees: vec!["shop.svc".to_owned()],
            ..NameConstraints::default()
        };
        let der = constraints.to_der().expect("encode");
        let parsed = parsed(&der);

        assert_eq!(
            bases(&parsed.permitted_subtrees),
            [
                &GeneralName::DNSName("shop.svc"),
                &GeneralName::RFC822Name("invalid"),
                &GeneralName::URI("invalid"),
            ]
        );
        assert_eq!(bases(&parsed.excluded_subtrees).len(), 2);
    }

    #[test]
    fn host_bits_of_an_ip_network_are_cleared() {
        let encoded = address_and_mask(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 12).expect("encode");

        assert_eq!(encoded, [10, 0, 0, 0, 255, 240, 0, 0]);
    }

    #[test]
    fn whole_address_prefixes_keep_every_bit() {
        let encoded = address_and_mask(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), 32).expect("encode");

        assert_eq!(encoded, [10, 1, 2, 3, 255, 255, 255, 255]);
    }

    #[test]
    fn a_prefix_longer_than_the_address_is_refused() {
        for (network, prefix_length) in [
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 33),
            (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 129),
        ] {
            let refused = NameConstraints {
                ip_ranges: vec![(network, prefix_length)],
                ..NameConstraints::default()
            }
            .to_der();
            assert!(
                matches!(
                    refused,
                    Err(PkiError::InvalidNameConstraint {
                        kind: "IP range",
                        ..
                    })
                ),
                "{network}/{prefix_length}: {refused:?}"
            );
        }
    }

    #[test]
    fn an_empty_name_is_refused_because_it_would_permit_everything() {
        for constraints in [
            NameConstraints {
                dns_subtrees: vec![String::new()],
                ..NameConstraints::default()
            },
            NameConstraints {
                email_domains: vec![String::new()],
                ..NameConstraints::default()
            },
            NameConstraints {
                uri_hosts: vec![String::new()],
                ..NameConstraints::default()
            },
        ] {
            let refused = constraints.to_der().expect_err("refused");
            assert!(refused.to_string().contains("permit every"), "{refused}");
        }
    }

    #[test]
    fn a_non_ascii_name_is_refused() {
        let refused = NameConstraints {
            dns_subtrees: vec!["bücher.example".to_owned()],
            ..NameConstraints::default()
        }
        .to_der();

        assert!(
            matches!(
                refused,
                Err(PkiError::InvalidNameConstraint {
                    kind: "DNS subtree",
                    ..
                })
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn lengths_use_the_short_form_below_128_and_the_minimal_long_form_above() {
        assert_eq!(length(0), [0x00]);
        assert_eq!(length(127), [0x7f]);
        assert_eq!(length(128), [0x81, 0x80]);
        assert_eq!(length(255), [0x81, 0xff]);
        assert_eq!(length(256), [0x82, 0x01, 0x00]);
        assert_eq!(length(65_536), [0x83, 0x01, 0x00, 0x00]);
    }

    #[test]
    fn the_extension_is_critical() {
        let extension = NameConstraints::default().to_extension().expect("encode");

        assert!(extension.criticality());
        assert_eq!(
            extension.oid_components().collect::<Vec<_>>(),
            NAME_CONSTRAINTS_OID
        );
    }

    fn names() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[a-z0-9.-]{1,70}", 0..4)
    }

    fn ip_ranges() -> impl Strategy<Value = Vec<(IpAddr, u8)>> {
        let v4 = (any::<[u8; 4]>(), 0..=32_u8)
            .prop_map(|(octets, prefix)| (IpAddr::from(octets), prefix));
        let v6 = (any::<[u8; 16]>(), 0..=128_u8)
            .prop_map(|(octets, prefix)| (IpAddr::from(octets), prefix));
        proptest::collection::vec(prop_oneof![v4, v6], 0..4)
    }

    proptest! {
        /// Long names and many subtrees push lengths into the long form;
        /// x509-parser must read back exactly what was asked for.
        #[test]
        fn any_constraints_read_back_unchanged(
            dns_subtrees in names(),
            email_domains in names(),
            uri_hosts in names(),
            ip_ranges in ip_ranges(),
        ) {
            let constraints = NameConstraints { dns_subtrees, ip_ranges, email_domains, uri_hosts };
            let der = constraints.to_der().expect("encode");
            let parsed = parsed(&der);
            let permitted = bases(&parsed.permitted_subtrees);

            let strings_of = |wanted: fn(&GeneralName<'_>) -> Option<String>| {
                permitted.iter().filter_map(|name| wanted(name)).collect::<Vec<_>>()
            };
            let or_nothing = |names: &Vec<String>| {
                if names.is_empty() { vec![NOTHING.to_owned()] } else { names.clone() }
            };
            prop_assert_eq!(
                strings_of(|name| match name { GeneralName::DNSName(n) => Some((*n).to_owned()), _ => None }),
                or_nothing(&constraints.dns_subtrees)
            );
            prop_assert_eq!(
                strings_of(|name| match name { GeneralName::RFC822Name(n) => Some((*n).to_owned()), _ => None }),
                or_nothing(&constraints.email_domains)
            );
            prop_assert_eq!(
                strings_of(|name| match name { GeneralName::URI(n) => Some((*n).to_owned()), _ => None }),
                or_nothing(&constraints.uri_hosts)
            );

            let addresses: Vec<Vec<u8>> = permitted
                .iter()
                .filter_map(|name| match name { GeneralName::IPAddress(a) => Some(a.to_vec()), _ => None })
                .collect();
            let expected: Vec<Vec<u8>> = constraints
                .ip_ranges
                .iter()
                .map(|&(network, prefix)| address_and_mask(network, prefix).expect("valid prefix"))
                .collect();
            prop_assert_eq!(addresses, expected);
            prop_assert_eq!(parsed.excluded_subtrees.is_some(), constraints.ip_ranges.is_empty());
        }
    }
}
