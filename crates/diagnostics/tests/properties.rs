//! Properties that hold for every input: no check panics, every message is
//! bounded and printable, suggestions are themselves valid, and a huge spec
//! is judged in bounded time.

use std::time::{Duration, Instant};

use certflow_api::{
    IssuerPolicy, KeyAlgorithm, KeyUsage, PrivateKeySpec, SecretTemplate, ServiceCertificateSpec,
    parse_go_duration,
};
use certflow_diagnostics::{
    MAX_MESSAGE_BYTES, MAX_VIOLATIONS, Reason, Violation, diagnose, duration, issuer_not_found,
    issuer_not_ready, names, policy, policy_violations, retries_exhausted, secret_conflict,
    secret_owned_by_other, suggest, validate_spec,
};
use proptest::prelude::*;

/// Strings an app owner, a fuzzer or a copy-paste accident might produce.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9._*:/@ ,%\\[\\]\\-]{0,70}",
        "(api|web|Payments|pаyments|bücher)\\.(default|defualt|other-ns|\\*)\\.(svc|svc\\.cluster\\.local|svc\\.cluster\\.locl|com\\.)",
        "[0-9]{0,5}(\\.[0-9])?( )?(h|m|s|d|y|w|ms|us|days|H|hr|months)?",
        "(P|PT)[0-9]{1,4}[DHMYWS]",
        "(https?|spiffe|mailto)?:?/{0,2}[a-z.]{0,20}(/ns/[a-z-]{0,10}/sa/[a-z]{0,8})?",
        "[0-9.:/\\[\\]a-f%]{0,40}",
        "(\u{200B}|\u{FEFF}|\n|\t|\u{00A0}|\u{2013}|\u{0430})?[a-z.]{0,20}(\u{200B}|\n)?",
        ".{200,700}",
    ]
}

fn values() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(value(), 0..6)
}

fn algorithm() -> impl Strategy<Value = Option<KeyAlgorithm>> {
    prop::option::of(prop::sample::select(KeyAlgorithm::ALL.to_vec()))
}

prop_compose! {
    fn spec()(
        secret_name in value(),
        common_name in prop::option::of(value()),
        dns_names in values(),
        ip_addresses in values(),
        uris in values(),
        email_addresses in values(),
        duration in prop::option::of(value()),
        renew_before in prop::option::of(value()),
        key in prop::option::of((algorithm(), prop::option::of(any::<u32>()))),
        is_ca in prop::option::of(any::<bool>()),
        secret_template in prop::option::of((
            prop::collection::btree_map(value(), value(), 0..4),
            prop::collection::btree_map(value(), value(), 0..4),
        )),
    ) -> ServiceCertificateSpec {
        ServiceCertificateSpec {
            secret_name,
            common_name,
            dns_names,
            ip_addresses,
            uris,
            email_addresses,
            duration,
            renew_before,
            private_key: key.map(|(algorithm, size)| PrivateKeySpec {
                algorithm,
                size,
                ..Default::default()
            }),
            is_ca,
            secret_template: secret_template.map(|(labels, annotations)| SecretTemplate { labels, annotations }),
            ..Default::default()
        }
    }
}

prop_compose! {
    fn issuer_policy()(
        allowed_namespaces in prop::collection::vec(prop_oneof![value(), Just("team-*".to_owned())], 0..3),
        allowed_dns_names in prop::collection::vec(
            prop_oneof![value(), Just("*.{namespace}.svc".to_owned()), Just("{namespace}.example.com".to_owned())],
            0..3,
        ),
        allowed_ip_ranges in prop::collection::vec(prop_oneof![value(), Just("10.0.0.0/8".to_owned())], 0..3),
        allowed_uri_prefixes in prop::collection::vec(
            prop_oneof![value(), Just("spiffe://cluster.local/ns/{namespace}/".to_owned())],
            0..3,
        ),
        allowed_email_domains in values(),
        max_duration in prop::option::of(value()),
        allowed_key_algorithms in prop::collection::vec(prop::sample::select(KeyAlgorithm::ALL.to_vec()), 0..3),
        min_rsa_key_size in prop::option::of(any::<u32>()),
        allow_ca in prop::option::of(any::<bool>()),
        allowed_usages in prop::collection::vec(prop::sample::select(KeyUsage::ALL.to_vec()), 0..4),
    ) -> IssuerPolicy {
        IssuerPolicy {
            allowed_namespaces,
            allowed_dns_names,
            allowed_ip_ranges,
            allowed_uri_prefixes,
            allowed_email_domains,
            max_duration,
            allowed_key_algorithms,
            min_rsa_key_size,
            allowed_usages,
            allow_ca,
        }
    }
}

/// What every message must be, whatever the input.
fn assert_well_formed(violation: &Violation, object: &str) -> Result<(), TestCaseError> {
    let sentence = violation.sentence(object);
    prop_assert!(
        sentence.len() <= MAX_MESSAGE_BYTES,
        "{} bytes: {sentence}",
        sentence.len()
    );
    prop_assert!(
        !sentence
            .chars()
            .any(|c| c.is_control() || matches!(c, '\u{200B}' | '\u{FEFF}' | '\u{2028}')),
        "{sentence:?}"
    );
    prop_assert!(
        sentence.ends_with(['.', '?', '…']),
        "not a finished sentence: {sentence}"
    );
    prop_assert!(!sentence.contains("-----BEGIN"), "{sentence}");
    prop_assert!(violation.value.len() <= 512);
    Ok(())
}

/// The replacement in a `did you mean "..."` suggestion, if there is one.
fn replacement(violation: &Violation) -> Option<String> {
    let suggestion = violation.suggestion.as_deref()?;
    let rest = suggestion.strip_prefix("did you mean \"")?;
    let end = rest.find('"')?;
    Some(rest[..end].to_owned())
}

type Check = fn(&str, &str) -> Option<Violation>;

const FIELD_CHECKS: &[Check] = &[
    names::control_characters,
    names::non_ascii_name,
    names::dns_name_is_url,
    names::dns_name_is_email_address,
    names::dns_name_is_ip_address,
    names::dns_name_too_long,
    names::dns_label_too_long,
    names::wildcard_not_leftmost,
    names::invalid_dns_name,
    names::invalid_ip_address,
    names::invalid_uri,
    names::invalid_email_address,
    names::invalid_common_name,
    names::common_name_too_long,
    names::invalid_secret_name,
    duration::invalid_duration,
    duration::duration_too_short,
    duration::renew_before_too_short,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_spec_makes_validation_panic_or_write_a_bad_message(spec in spec(), object in value()) {
        let found = validate_spec(&spec);
        prop_assert!(found.len() <= MAX_VIOLATIONS);
        for violation in &found {
            assert_well_formed(violation, &object)?;
        }
    }

    #[test]
    fn no_spec_or_policy_makes_policy_checks_panic_or_write_a_bad_message(
        spec in spec(),
        policy in issuer_policy(),
        namespace in value(),
        issuer in value(),
    ) {
        for violation in policy_violations(&spec, &namespace, &issuer, &policy) {
            assert_well_formed(&violation, "web")?;
        }
        if let Some(violation) = diagnose(&spec, &namespace, &issuer, Some(&policy)) {
            assert_well_formed(&violation, "web")?;
        }
    }

    #[test]
    fn no_value_makes_a_single_check_panic_or_write_a_bad_message(value in value(), other in value()) {
        for check in FIELD_CHECKS {
            if let Some(violation) = check("spec.dnsNames[0]", &value) {
                assert_well_formed(&violation, &other)?;
            }
        }
        let lookups = [
            Some(issuer_not_found(&value, std::slice::from_ref(&other))),
            Some(issuer_not_ready(&value, Some(&other))),
            Some(secret_conflict(&value)),
            Some(secret_owned_by_other(&value, &other)),
            Some(retries_exhausted(3, &other)),
            duration::renew_before_too_long("spec.renewBefore", &value, Some(&other)),
            policy::duration_exceeds_policy(&other, Some(&value), "720h"),
            policy::dns_name_not_allowed("internal", &other, "spec.dnsNames[0]", &value, &["*.{namespace}.svc".to_owned()]),
            policy::uri_not_allowed("internal", &other, "spec.uris[0]", &value, &["spiffe://cluster.local/ns/{namespace}/".to_owned()]),
            policy::email_domain_not_allowed("internal", "spec.emailAddresses[0]", &value, std::slice::from_ref(&other)),
        ];
        for violation in lookups.iter().flatten() {
            assert_well_formed(violation, "web")?;
        }
    }

    #[test]
    fn a_suggested_dns_name_is_itself_valid(value in value()) {
        for check in [names::invalid_dns_name, names::non_ascii_name, names::wildcard_not_leftmost] {
            if let Some(fixed) = check("spec.dnsNames[0]", &value).as_ref().and_then(replacement) {
                prop_assert!(names::is_valid_dns_name(&fixed), "{value:?} -> {fixed:?}");
            }
        }
    }

    #[test]
    fn a_suggested_duration_parses_as_a_go_duration(value in value()) {
        if let Some(fixed) = duration::invalid_duration("spec.duration", &value).as_ref().and_then(replacement) {
            prop_assert!(parse_go_duration(&fixed).is_ok(), "{value:?} -> {fixed:?}");
        }
    }

    #[test]
    fn a_suggested_ip_address_parses(value in value()) {
        if let Some(fixed) = names::invalid_ip_address("spec.ipAddresses[0]", &value).as_ref().and_then(replacement) {
            prop_assert!(fixed.parse::<std::net::IpAddr>().is_ok(), "{value:?} -> {fixed:?}");
        }
    }

    #[test]
    fn a_suggested_secret_name_is_valid(value in value()) {
        if let Some(fixed) = names::invalid_secret_name("spec.secretName", &value).as_ref().and_then(replacement) {
            prop_assert!(names::invalid_secret_name("spec.secretName", &fixed).is_none(), "{value:?} -> {fixed:?}");
        }
    }

    #[test]
    fn a_pasted_private_key_never_reaches_a_message(body in "[A-Za-z0-9+/]{20,64}", field in 0usize..4) {
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        let mut spec = ServiceCertificateSpec { secret_name: "web-tls".to_owned(), ..Default::default() };
        match field {
            0 => spec.dns_names = vec![pem],
            1 => spec.uris = vec![pem],
            2 => spec.common_name = Some(pem),
            _ => spec.duration = Some(pem),
        }
        let found = validate_spec(&spec);
        prop_assert!(!found.is_empty());
        for violation in found {
            let sentence = violation.sentence("web");
            prop_assert!(!sentence.contains(&body), "{sentence}");
            prop_assert!(!violation.value.contains(&body));
        }
    }

    #[test]
    fn the_banded_edit_distance_agrees_with_the_full_one(a in "[a-d.]{0,30}", b in "[a-d.]{0,30}", max in 0usize..8) {
        let full = suggest::edit_distance(&a, &b).filter(|&d| d <= max);
        prop_assert_eq!(suggest::edit_distance_within(&a, &b, max), full);
    }

    #[test]
    fn edit_distance_is_symmetric_and_zero_only_for_equal_strings(a in ".{0,40}", b in ".{0,40}") {
        let ab = suggest::edit_distance(&a, &b);
        prop_assert_eq!(ab, suggest::edit_distance(&b, &a));
        prop_assert_eq!(ab == Some(0), a == b);
        prop_assert!(ab.unwrap_or(usize::MAX) <= a.chars().count().max(b.chars().count()));
    }
}

#[test]
fn a_spec_with_five_thousand_long_names_is_judged_in_bounded_time() {
    let bad_names: Vec<String> = (0..5_000)
        .map(|i| match i % 4 {
            0 => format!("{}.defualt.svc.cluster.locl", "a".repeat(240)),
            1 => format!("HTTPS://{}.example.com/{}", i, "p".repeat(300)),
            2 => format!("{}\u{200B}{}", "x".repeat(2_000), i),
            _ => format!("svc-{i}.other-ns.svc"),
        })
        .collect();
    let spec = ServiceCertificateSpec {
        secret_name: "web-tls".to_owned(),
        dns_names: bad_names.clone(),
        ip_addresses: bad_names.clone(),
        uris: bad_names.clone(),
        email_addresses: bad_names,
        ..Default::default()
    };
    let policy = IssuerPolicy {
        allowed_dns_names: (0..64)
            .map(|i| format!("*.{{namespace}}.zone{i}.svc"))
            .collect(),
        allowed_uri_prefixes: (0..64)
            .map(|i| format!("spiffe://zone{i}/ns/{{namespace}}/"))
            .collect(),
        ..Default::default()
    };

    let started = Instant::now();
    let found = validate_spec(&spec);
    let policy_found = policy_violations(&spec, "default", "internal", &policy);
    let elapsed = started.elapsed();

    assert_eq!(found.first().map(|v| v.reason), Some(Reason::TooManyNames));
    assert!(found.len() <= MAX_VIOLATIONS);
    assert!(policy_found.len() <= 4 * certflow_diagnostics::MAX_NAMES + 10);
    // Unoptimised test builds on a shared two-core machine: generous, but a
    // quadratic slip (edit distance over every name and pattern at full
    // length) takes minutes, not seconds.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}
