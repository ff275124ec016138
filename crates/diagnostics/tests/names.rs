//! Name validation against its own definition: the chain of checks the
//! signer runs on a `dnsNames` or `ipAddresses` entry refuses it exactly when
//! the name is invalid, the length limits hold at their exact boundaries, and
//! every refusal has one clear reason at the entry's own field. (No-panic
//! and message-shape properties for every check are in `properties.rs`.)

use std::net::IpAddr;

use certflow_api::ServiceCertificateSpec;
use certflow_diagnostics::names::{MAX_DNS_LABEL_LEN, MAX_DNS_NAME_LEN, is_valid_dns_name};
use certflow_diagnostics::{Reason, Violation, validate_spec};
use proptest::prelude::*;

/// What `validate_spec` says about a spec whose only name is `dns_name`.
fn dns_violations(dns_name: &str) -> Vec<Violation> {
    validate_spec(&ServiceCertificateSpec {
        secret_name: "web-tls".to_owned(),
        dns_names: vec![dns_name.to_owned()],
        ..Default::default()
    })
}

fn ip_violations(ip: &str) -> Vec<Violation> {
    validate_spec(&ServiceCertificateSpec {
        secret_name: "web-tls".to_owned(),
        ip_addresses: vec![ip.to_owned()],
        ..Default::default()
    })
}

/// A label of `len` characters from the valid alphabet, not starting or
/// ending with `-`.
fn label(len: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(b"abcdefghijklmnopqrstuvwxyz0123456789-".to_vec()),
        len,
    )
    .prop_map(|bytes| {
        let mut label = String::from_utf8(bytes).expect("ASCII");
        if label.starts_with('-') {
            label.replace_range(..1, "a");
        }
        if label.ends_with('-') {
            let end = label.len() - 1;
            label.replace_range(end.., "z");
        }
        label
    })
}

/// A valid DNS name, often close to the 63- and 253-character limits,
/// sometimes a wildcard.
fn valid_dns_name() -> impl Strategy<Value = String> {
    let label_len = prop_oneof![
        1usize..=10,
        55usize..=MAX_DNS_LABEL_LEN,
        Just(MAX_DNS_LABEL_LEN)
    ];
    (
        prop::collection::vec(label_len.prop_flat_map(label), 1..8),
        any::<bool>(),
    )
        .prop_map(|(labels, wildcard)| {
            let mut name = labels.join(".");
            name.truncate(MAX_DNS_NAME_LEN);
            let mut name = name.trim_end_matches(['.', '-']).to_owned();
            if name.is_empty() || name.split('.').any(|l| l.is_empty() || l.ends_with('-')) {
                name = "web.shop.svc".to_owned();
            }
            if wildcard && name.len() + 2 <= MAX_DNS_NAME_LEN {
                name = format!("*.{name}");
            }
            name
        })
}

/// Strings near the edge of validity: valid names with one character
/// inserted, replaced or appended from a hostile alphabet.
fn almost_dns_name() -> impl Strategy<Value = String> {
    let hostile = prop::sample::select(vec![
        '*', '.', '-', '_', 'A', 'Z', ' ', '\n', '\r', '\t', '\0', '\u{1b}', '\u{7f}', '\u{85}',
        '\u{200B}', '\u{FEFF}', '\u{00E9}', '\u{0430}', '\u{0435}', '/', ':', '@', '%', ',',
    ]);
    (
        valid_dns_name(),
        hostile,
        any::<prop::sample::Index>(),
        0u8..3,
    )
        .prop_map(|(name, c, at, how)| {
            let mut chars: Vec<char> = name.chars().collect();
            let i = at.index(chars.len() + 1);
            match how {
                0 => chars.insert(i, c),
                1 if i < chars.len() => chars[i] = c,
                _ => chars.push(c),
            }
            chars.into_iter().collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn a_valid_dns_name_passes_every_check(name in valid_dns_name()) {
        prop_assert!(is_valid_dns_name(&name), "{name:?}");
        let found = dns_violations(&name);
        prop_assert!(found.is_empty(), "{name:?}: {found:?}");
    }

    #[test]
    fn the_checks_refuse_a_dns_name_exactly_when_it_is_invalid(
        name in prop_oneof![almost_dns_name(), valid_dns_name(), "[a-z0-9.*-]{0,12}"]
    ) {
        let found = dns_violations(&name);
        let refused: Vec<&Violation> = found.iter().filter(|v| v.field == "spec.dnsNames[0]").collect();
        prop_assert_eq!(
            refused.is_empty(),
            is_valid_dns_name(&name),
            "{:?}: {:?}", name, found
        );
        prop_assert!(refused.len() <= 1, "one reason per entry: {found:?}");
        if let Some(violation) = refused.first() {
            let expected_for_control = name.chars().any(|c| c.is_control() || matches!(c, '\u{200B}' | '\u{FEFF}'));
            prop_assert_eq!(
                violation.reason == Reason::ControlCharacters,
                expected_for_control,
                "{:?}: {:?}", name, violation
            );
        }
    }

    #[test]
    fn a_label_one_character_past_its_limit_is_refused_for_that_limit(
        rest in valid_dns_name(),
        at in any::<prop::sample::Index>(),
    ) {
        // A 64-character label inserted anywhere into a valid name that
        // leaves room for it, so only the label is too long.
        let rest = rest.trim_start_matches("*.");
        let mut labels: Vec<&str> = rest.split('.').collect();
        while labels.join(".").len() > MAX_DNS_NAME_LEN - (MAX_DNS_LABEL_LEN + 2) {
            labels.remove(0);
        }
        let long_label = "l".repeat(MAX_DNS_LABEL_LEN + 1);
        labels.insert(at.index(labels.len() + 1), &long_label);
        let name = labels.join(".");
        let found = dns_violations(&name);
        prop_assert_eq!(found.first().map(|v| v.reason), Some(Reason::DNSLabelTooLong), "{:?}", name);
    }

    #[test]
    fn a_name_one_character_past_its_limit_is_refused_for_that_limit(
        lengths in prop::collection::vec(2usize..=MAX_DNS_LABEL_LEN, 4..130),
    ) {
        // Labels of any valid length joined until the name is too long,
        // then cut at the front to exactly 254 characters.
        let mut labels: Vec<String> = Vec::new();
        for (i, len) in lengths.iter().cycle().enumerate() {
            if labels.join(".").len() > MAX_DNS_NAME_LEN {
                break;
            }
            let letter = char::from(b'a' + (i % 26) as u8);
            labels.insert(0, letter.to_string().repeat(*len));
        }
        let joined = labels.join(".");
        let mut name = joined[joined.len() - (MAX_DNS_NAME_LEN + 1)..].to_owned();
        if name.starts_with('.') {
            // ".ab..." becomes "x.b...": same length, every label non-empty.
            name.replace_range(..2, "x.");
        }
        prop_assert_eq!(name.len(), MAX_DNS_NAME_LEN + 1);
        prop_assert!(name.split('.').all(|l| !l.is_empty() && l.len() <= MAX_DNS_LABEL_LEN), "{:?}", name);
        let found = dns_violations(&name);
        prop_assert_eq!(found.first().map(|v| v.reason), Some(Reason::DNSNameTooLong), "{:?}", name);
    }

    #[test]
    fn every_ip_address_is_accepted_as_rust_prints_it(ip in any::<IpAddr>()) {
        let found = ip_violations(&ip.to_string());
        prop_assert!(found.is_empty(), "{ip}: {found:?}");
        // ... and written in dnsNames it is moved, never accepted as a name.
        let found = dns_violations(&ip.to_string());
        prop_assert_eq!(found.first().map(|v| v.reason), Some(Reason::DNSNameIsIPAddress));
    }

    #[test]
    fn an_ip_address_entry_is_refused_exactly_when_it_does_not_parse(
        text in prop_oneof!["[0-9a-fA-F:.%/\\[\\] ]{0,45}", any::<IpAddr>().prop_map(|ip| ip.to_string())]
    ) {
        let found = ip_violations(&text);
        let refused = found.iter().any(|v| v.field == "spec.ipAddresses[0]");
        prop_assert_eq!(refused, text.parse::<IpAddr>().is_err(), "{:?}: {:?}", text, found);
    }
}

#[test]
fn the_exact_limits_are_accepted_and_one_more_is_refused() {
    let label_63 = "a".repeat(MAX_DNS_LABEL_LEN);
    let at_limit = [label_63.as_str(), &label_63, &label_63, &"b".repeat(61)].join(".");
    assert_eq!(at_limit.len(), MAX_DNS_NAME_LEN);
    assert!(dns_violations(&at_limit).is_empty(), "253 characters");
    assert!(
        dns_violations(&format!("{label_63}.svc")).is_empty(),
        "a 63-character label"
    );

    assert_eq!(
        dns_violations(&format!("c{label_63}.svc"))
            .first()
            .map(|v| v.reason),
        Some(Reason::DNSLabelTooLong),
        "a 64-character label"
    );
    let past_limit = [
        label_63.as_str(),
        &label_63,
        &label_63,
        &"b".repeat(59),
        "bb",
    ]
    .join(".");
    assert_eq!(past_limit.len(), MAX_DNS_NAME_LEN + 1);
    assert_eq!(
        dns_violations(&past_limit).first().map(|v| v.reason),
        Some(Reason::DNSNameTooLong)
    );
}
