//! Realistic mistakes an app owner makes in a ServiceCertificate, and what
//! certflow tells them: the reason, the field path, the value seen, and a
//! fix that appears in the Event sentence.

use certflow_api::{
    IssuerPolicy, IssuerRef, KeyAlgorithm, KeyUsage, PrivateKeySpec, SecretTemplate,
    ServiceCertificateSpec,
};
use certflow_diagnostics::{
    MAX_MESSAGE_BYTES, Reason, Violation, diagnose, issuance_failed, issuer_not_found,
    issuer_not_ready, retries_exhausted, secret_conflict, secret_owned_by_other,
};

const NAMESPACE: &str = "default";
const ISSUER: &str = "internal";

fn names(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// A spec that passes every check: the fixture every case starts from.
fn valid() -> ServiceCertificateSpec {
    ServiceCertificateSpec {
        secret_name: "payments-tls".to_owned(),
        dns_names: names(&["payments.default.svc", "payments.default.svc.cluster.local"]),
        issuer_ref: Some(IssuerRef::named(ISSUER.to_owned())),
        ..Default::default()
    }
}

fn dns(values: &[&str]) -> ServiceCertificateSpec {
    ServiceCertificateSpec {
        dns_names: names(values),
        ..valid()
    }
}

/// The platform team's usual policy: Services of one's own namespace only.
fn policy() -> IssuerPolicy {
    IssuerPolicy {
        allowed_namespaces: names(&["default", "team-*"]),
        allowed_dns_names: names(&["*.{namespace}.svc", "*.{namespace}.svc.cluster.local"]),
        allowed_ip_ranges: names(&["10.0.0.0/8", "fd00::/8"]),
        allowed_uri_prefixes: names(&["spiffe://cluster.local/ns/{namespace}/"]),
        allowed_email_domains: names(&["example.com"]),
        max_duration: Some("2160h".to_owned()),
        ..Default::default()
    }
}

/// What the signer reports for `spec` in namespace "default".
fn signer(spec: ServiceCertificateSpec) -> Option<Violation> {
    diagnose(&spec, NAMESPACE, ISSUER, Some(&policy()))
}

fn signer_with(spec: ServiceCertificateSpec, policy: IssuerPolicy) -> Option<Violation> {
    diagnose(&spec, NAMESPACE, ISSUER, Some(&policy))
}

macro_rules! mistake {
    ($name:ident: $found:expr => $reason:ident at $field:literal, value $value:expr, fix $fix:literal) => {
        #[test]
        fn $name() {
            let found: Option<Violation> = $found;
            let violation = found.expect("the mistake is reported");
            let sentence = violation.sentence("payments-tls");
            assert_eq!(violation.reason, Reason::$reason, "{sentence}");
            assert_eq!(violation.field, $field, "{sentence}");
            assert_eq!(violation.value, $value, "{sentence}");
            let suggestion = violation.suggestion.as_deref().unwrap_or_default();
            assert!(
                suggestion.contains($fix),
                "suggestion {suggestion:?} lacks {:?}",
                $fix
            );
            assert!(sentence.contains($fix), "{sentence}");
            assert!(
                sentence.starts_with("ServiceCertificate \"payments-tls\": "),
                "{sentence}"
            );
            assert!(sentence.len() <= MAX_MESSAGE_BYTES, "{sentence}");
            assert!(!sentence.chars().any(char::is_control), "{sentence}");
        }
    };
}

#[test]
fn a_valid_spec_passes_every_check() {
    assert_eq!(signer(valid()), None);
}

// DNS names against the issuer's policy.

mistake!(a_misspelled_namespace_in_a_dns_name_suggests_the_right_one:
    signer(dns(&["payments.defualt.svc"]))
    => PolicyViolation at "spec.dnsNames[0]", value "payments.defualt.svc",
    fix "did you mean \"payments.default.svc\"?");

mistake!(a_misspelled_cluster_suffix_suggests_cluster_local:
    signer(dns(&["payments.default.svc", "payments.default.svc.cluster.locl"]))
    => PolicyViolation at "spec.dnsNames[1]", value "payments.default.svc.cluster.locl",
    fix "\"payments.default.svc.cluster.local\"");

mistake!(a_name_from_another_namespace_suggests_the_same_service_in_this_one:
    signer(dns(&["api.other-ns.svc"]))
    => PolicyViolation at "spec.dnsNames[0]", value "api.other-ns.svc",
    fix "\"api.default.svc\"");

mistake!(a_bare_service_name_suggests_the_namespaced_name:
    signer(dns(&["payments"]))
    => PolicyViolation at "spec.dnsNames[0]", value "payments",
    fix "\"payments.default.svc\"");

mistake!(a_name_missing_its_namespace_label_suggests_adding_it:
    signer(dns(&["payments.svc.cluster.local"]))
    => PolicyViolation at "spec.dnsNames[0]", value "payments.svc.cluster.local",
    fix "\"payments.default.svc.cluster.local\"");

mistake!(a_name_outside_every_pattern_explains_the_patterns:
    signer(dns(&["payments.example.org"]))
    => PolicyViolation at "spec.dnsNames[0]", value "payments.example.org",
    fix "matching one of those patterns");

mistake!(another_namespaces_name_as_an_upper_case_common_name_is_not_one_of_the_sans:
    signer(ServiceCertificateSpec {
        common_name: Some("API.OTHER-NS.SVC.".to_owned()),
        ..valid()
    })
    => CommonNameNotInSANs at "spec.commonName", value "API.OTHER-NS.SVC.",
    fix "add \"api.other-ns.svc\" to spec.dnsNames");

// DNS names that are something else.

mistake!(an_ip_address_in_dns_names_is_moved_to_ip_addresses:
    signer(dns(&["payments.default.svc", "10.0.0.12"]))
    => DNSNameIsIPAddress at "spec.dnsNames[1]", value "10.0.0.12",
    fix "move \"10.0.0.12\" to spec.ipAddresses");

mistake!(a_url_in_dns_names_suggests_its_hostname_or_uris:
    signer(dns(&["https://payments.default.svc:8443/healthz"]))
    => DNSNameIsURL at "spec.dnsNames[0]", value "https://payments.default.svc:8443/healthz",
    fix "\"payments.default.svc\", or move the whole URL to spec.uris");

mistake!(an_email_address_in_dns_names_is_moved_to_email_addresses:
    signer(dns(&["payments-team@example.com"]))
    => DNSNameIsEmailAddress at "spec.dnsNames[0]", value "payments-team@example.com",
    fix "spec.emailAddresses");

// DNS names with typing mistakes.

mistake!(an_upper_case_dns_name_suggests_lower_case:
    signer(dns(&["Payments.default.svc"]))
    => InvalidDNSName at "spec.dnsNames[0]", value "Payments.default.svc",
    fix "\"payments.default.svc\"");

mistake!(a_trailing_dot_is_dropped:
    signer(dns(&["payments.default.svc."]))
    => InvalidDNSName at "spec.dnsNames[0]", value "payments.default.svc.",
    fix "\"payments.default.svc\"");

mistake!(an_underscore_becomes_a_dash:
    signer(dns(&["payments_api.default.svc"]))
    => InvalidDNSName at "spec.dnsNames[0]", value "payments_api.default.svc",
    fix "\"payments-api.default.svc\"");

mistake!(a_trailing_space_is_trimmed:
    signer(dns(&["payments.default.svc "]))
    => InvalidDNSName at "spec.dnsNames[0]", value "payments.default.svc ",
    fix "\"payments.default.svc\"");

mistake!(two_names_in_one_entry_are_split_into_two_entries:
    signer(dns(&["payments.default.svc, payments.default.svc.cluster.local"]))
    => InvalidDNSName at "spec.dnsNames[0]",
    value "payments.default.svc, payments.default.svc.cluster.local",
    fix "its own list entry: \"payments.default.svc\", \"payments.default.svc.cluster.local\"");

mistake!(a_port_after_a_dns_name_is_dropped:
    signer(dns(&["payments.default.svc:8443"]))
    => InvalidDNSName at "spec.dnsNames[0]", value "payments.default.svc:8443",
    fix "\"payments.default.svc\"");

mistake!(a_leading_dot_suggests_a_wildcard:
    signer(dns(&[".default.svc"]))
    => InvalidDNSName at "spec.dnsNames[0]", value ".default.svc",
    fix "\"*.default.svc\"");

mistake!(a_wildcard_in_the_middle_is_refused:
    signer(dns(&["api.*.default.svc"]))
    => WildcardNotLeftmost at "spec.dnsNames[0]", value "api.*.default.svc",
    fix "whole leftmost label");

mistake!(a_partial_wildcard_suggests_a_whole_label_wildcard:
    signer(dns(&["payments-*.default.svc"]))
    => WildcardNotLeftmost at "spec.dnsNames[0]", value "payments-*.default.svc",
    fix "\"*.default.svc\"");

mistake!(a_bare_wildcard_asks_for_the_domain_it_covers:
    signer_with(dns(&["*"]), IssuerPolicy::default())
    => InvalidDNSName at "spec.dnsNames[0]", value "*",
    fix "add the domain it covers");

mistake!(a_label_over_63_characters_is_refused:
    signer(dns(&[&format!("{}.default.svc", "p".repeat(64))]))
    => DNSLabelTooLong at "spec.dnsNames[0]", value format!("{}.default.svc", "p".repeat(64)),
    fix "63 characters or fewer");

mistake!(a_name_over_253_characters_is_refused:
    signer(dns(&[&format!("{}.default.svc", ["abcdefghij"; 24].join("."))]))
    => DNSNameTooLong at "spec.dnsNames[0]",
    value format!("{}.default.svc", ["abcdefghij"; 24].join(".")),
    fix "shorter name");

// Characters that do not show.

mistake!(a_newline_from_a_yaml_block_scalar_is_shown_and_removed:
    signer(dns(&["payments.default.svc\n"]))
    => ControlCharacters at "spec.dnsNames[0]", value "payments.default.svc\n",
    fix "\"payments.default.svc\"");

mistake!(a_zero_width_space_pasted_from_chat_is_shown_and_removed:
    signer(dns(&["payments\u{200B}.default.svc"]))
    => ControlCharacters at "spec.dnsNames[0]", value "payments\u{200B}.default.svc",
    fix "\"payments.default.svc\"");

mistake!(a_cyrillic_look_alike_letter_suggests_the_ascii_name:
    signer(dns(&["p\u{0430}yments.default.svc"]))
    => NonASCIIName at "spec.dnsNames[0]", value "p\u{0430}yments.default.svc",
    fix "\"payments.default.svc\"");

mistake!(an_internationalized_name_suggests_its_punycode_form:
    signer_with(dns(&["bücher.example.com"]), IssuerPolicy::default())
    => NonASCIIName at "spec.dnsNames[0]", value "bücher.example.com",
    fix "\"xn--bcher-kva.example.com\"");

mistake!(an_en_dash_from_a_word_processor_suggests_a_hyphen:
    signer(dns(&["payments\u{2013}api.default.svc"]))
    => NonASCIIName at "spec.dnsNames[0]", value "payments\u{2013}api.default.svc",
    fix "\"payments-api.default.svc\"");

mistake!(a_repeated_dns_name_is_reported_at_its_second_occurrence:
    signer(dns(&["payments.default.svc", "payments.default.svc"]))
    => DuplicateName at "spec.dnsNames[1]", value "payments.default.svc",
    fix "remove one of them");

mistake!(more_than_a_hundred_names_are_refused:
    signer(ServiceCertificateSpec {
        dns_names: (0..150).map(|i| format!("s{i}.default.svc")).collect(),
        ..valid()
    })
    => TooManyNames at "spec.dnsNames", value "150 entries",
    fix "several ServiceCertificates");

mistake!(a_spec_without_names_is_refused:
    signer(ServiceCertificateSpec { dns_names: vec![], ..valid() })
    => NoNames at "spec.dnsNames", value "",
    fix "\"web.shop.svc\"");

// IP addresses, URIs and email addresses.

mistake!(a_cidr_in_ip_addresses_suggests_the_address:
    signer(ServiceCertificateSpec { ip_addresses: names(&["10.0.0.12/32"]), ..valid() })
    => InvalidIPAddress at "spec.ipAddresses[0]", value "10.0.0.12/32",
    fix "\"10.0.0.12\"");

mistake!(an_address_with_a_port_suggests_the_address_alone:
    signer(ServiceCertificateSpec { ip_addresses: names(&["[fd00::12]:8443"]), ..valid() })
    => InvalidIPAddress at "spec.ipAddresses[0]", value "[fd00::12]:8443",
    fix "\"fd00::12\"");

mistake!(an_address_with_leading_zeros_suggests_the_plain_address:
    signer(ServiceCertificateSpec { ip_addresses: names(&["010.000.000.012"]), ..valid() })
    => InvalidIPAddress at "spec.ipAddresses[0]", value "010.000.000.012",
    fix "\"10.0.0.12\"");

mistake!(a_hostname_in_ip_addresses_is_moved_to_dns_names:
    signer(ServiceCertificateSpec { ip_addresses: names(&["payments.default.svc"]), ..valid() })
    => InvalidIPAddress at "spec.ipAddresses[0]", value "payments.default.svc",
    fix "move \"payments.default.svc\" to spec.dnsNames");

mistake!(an_address_outside_the_allowed_ranges_is_refused:
    signer(ServiceCertificateSpec { ip_addresses: names(&["192.168.1.10"]), ..valid() })
    => PolicyViolation at "spec.ipAddresses[0]", value "192.168.1.10",
    fix "one of those ranges");

mistake!(a_spiffe_id_without_its_scheme_gets_one:
    signer(ServiceCertificateSpec {
        uris: names(&["cluster.local/ns/default/sa/payments"]),
        ..valid()
    })
    => InvalidURI at "spec.uris[0]", value "cluster.local/ns/default/sa/payments",
    fix "\"spiffe://cluster.local/ns/default/sa/payments\"");

mistake!(a_space_in_a_uri_is_percent_encoded:
    signer(ServiceCertificateSpec {
        uris: names(&["https://payments.example.com/my service"]),
        ..valid()
    })
    => InvalidURI at "spec.uris[0]", value "https://payments.example.com/my service",
    fix "\"https://payments.example.com/my%20service\"");

mistake!(a_spiffe_id_of_another_namespace_suggests_this_namespace:
    signer(ServiceCertificateSpec {
        uris: names(&["spiffe://cluster.local/ns/other-ns/sa/payments"]),
        ..valid()
    })
    => PolicyViolation at "spec.uris[0]", value "spiffe://cluster.local/ns/other-ns/sa/payments",
    fix "\"spiffe://cluster.local/ns/default/sa/payments\"");

mistake!(a_dot_segment_escaping_the_namespace_prefix_is_refused:
    signer(ServiceCertificateSpec {
        uris: names(&["spiffe://cluster.local/ns/default/../other-ns/sa/payments"]),
        ..valid()
    })
    => PolicyViolation at "spec.uris[0]",
    value "spiffe://cluster.local/ns/default/../other-ns/sa/payments",
    fix "without \".\" or \"..\" path segments");

mistake!(a_percent_encoded_dot_segment_is_refused_too:
    signer(ServiceCertificateSpec {
        uris: names(&["spiffe://cluster.local/ns/default/%2e%2E/other-ns/sa/payments"]),
        ..valid()
    })
    => PolicyViolation at "spec.uris[0]",
    value "spiffe://cluster.local/ns/default/%2e%2E/other-ns/sa/payments",
    fix "without \".\" or \"..\" path segments");

mistake!(a_prefix_ending_in_the_namespace_does_not_cover_a_longer_namespace:
    signer_with(
        ServiceCertificateSpec {
            uris: names(&["spiffe://cluster.local/ns/default-admin/sa/payments"]),
            ..valid()
        },
        IssuerPolicy {
            allowed_uri_prefixes: names(&["spiffe://cluster.local/ns/{namespace}"]),
            ..policy()
        },
    )
    => PolicyViolation at "spec.uris[0]",
    value "spiffe://cluster.local/ns/default-admin/sa/payments",
    fix "did you mean \"spiffe://cluster.local/ns/default/sa/payments\"?");

#[test]
fn a_prefix_ending_in_the_namespace_covers_the_namespace_itself() {
    let policy = IssuerPolicy {
        allowed_uri_prefixes: names(&["spiffe://cluster.local/ns/{namespace}"]),
        ..policy()
    };
    for uri in [
        "spiffe://cluster.local/ns/default",
        "spiffe://cluster.local/ns/default/sa/payments",
    ] {
        let spec = ServiceCertificateSpec {
            uris: names(&[uri]),
            ..valid()
        };
        assert_eq!(signer_with(spec, policy.clone()), None, "{uri}");
    }
}

mistake!(a_mailto_link_suggests_the_plain_address:
    signer(ServiceCertificateSpec {
        email_addresses: names(&["mailto:payments-team@example.com"]),
        ..valid()
    })
    => InvalidEmailAddress at "spec.emailAddresses[0]", value "mailto:payments-team@example.com",
    fix "\"payments-team@example.com\"");

mistake!(an_address_with_a_display_name_suggests_the_plain_address:
    signer(ServiceCertificateSpec {
        email_addresses: names(&["Payments Team <payments-team@example.com>"]),
        ..valid()
    })
    => InvalidEmailAddress at "spec.emailAddresses[0]",
    value "Payments Team <payments-team@example.com>",
    fix "\"payments-team@example.com\"");

mistake!(a_misspelled_email_domain_suggests_the_allowed_one:
    signer(ServiceCertificateSpec {
        email_addresses: names(&["payments-team@exmaple.com"]),
        ..valid()
    })
    => PolicyViolation at "spec.emailAddresses[0]", value "payments-team@exmaple.com",
    fix "\"payments-team@example.com\"");

// A policy fails closed: what it does not list is refused.

/// The example CertificateAuthority's policy: DNS names only.
fn dns_only() -> IssuerPolicy {
    IssuerPolicy {
        allowed_dns_names: names(&["*.{namespace}.svc", "*.{namespace}.svc.cluster.local"]),
        max_duration: Some("2160h".to_owned()),
        ..Default::default()
    }
}

mistake!(an_ip_address_is_refused_by_a_policy_that_lists_no_ranges:
    signer_with(ServiceCertificateSpec { ip_addresses: names(&["10.0.0.1"]), ..valid() }, dns_only())
    => PolicyViolation at "spec.ipAddresses[0]", value "10.0.0.1",
    fix "spec.policy.allowedIPRanges");

mistake!(another_namespaces_spiffe_id_is_refused_by_a_policy_that_lists_no_uri_prefixes:
    signer_with(
        ServiceCertificateSpec {
            uris: names(&["spiffe://cluster.local/ns/payments/sa/api"]),
            usages: vec![KeyUsage::ClientAuth, KeyUsage::DigitalSignature],
            ..valid()
        },
        dns_only(),
    )
    => PolicyViolation at "spec.uris[0]", value "spiffe://cluster.local/ns/payments/sa/api",
    fix "spec.policy.allowedURIPrefixes");

mistake!(an_email_address_is_refused_by_a_policy_that_lists_no_domains:
    signer_with(ServiceCertificateSpec { email_addresses: names(&["ops@example.com"]), ..valid() }, dns_only())
    => PolicyViolation at "spec.emailAddresses[0]", value "ops@example.com",
    fix "spec.policy.allowedEmailDomains");

mistake!(a_dns_name_is_refused_by_a_policy_that_lists_no_patterns:
    signer_with(valid(), IssuerPolicy { allowed_ip_ranges: names(&["10.0.0.0/8"]), ..Default::default() })
    => PolicyViolation at "spec.dnsNames[0]", value "payments.default.svc",
    fix "spec.policy.allowedDNSNames");

mistake!(a_percent_encoded_slash_and_dot_segment_is_refused:
    signer(ServiceCertificateSpec {
        uris: names(&["spiffe://cluster.local/ns/default%2F..%2Fother-ns/sa/payments"]),
        ..valid()
    })
    => PolicyViolation at "spec.uris[0]",
    value "spiffe://cluster.local/ns/default%2F..%2Fother-ns/sa/payments",
    fix "without \".\" or \"..\" path segments");

mistake!(a_percent_encoded_namespace_is_not_the_namespace:
    signer(ServiceCertificateSpec {
        uris: names(&["spiffe://cluster.local/ns/%64efault/sa/payments"]),
        ..valid()
    })
    => PolicyViolation at "spec.uris[0]", value "spiffe://cluster.local/ns/%64efault/sa/payments",
    fix "did you mean");

mistake!(a_service_account_common_name_is_not_a_name_the_policy_judges:
    signer(ServiceCertificateSpec {
        common_name: Some("system:serviceaccount:payments:api".to_owned()),
        ..valid()
    })
    => CommonNameNotInSANs at "spec.commonName", value "system:serviceaccount:payments:api",
    fix "remove spec.commonName");

mistake!(a_database_user_common_name_is_not_a_name_the_policy_judges:
    signer(ServiceCertificateSpec { common_name: Some("payments_db".to_owned()), ..valid() })
    => CommonNameNotInSANs at "spec.commonName", value "payments_db",
    fix "remove spec.commonName");

mistake!(a_common_name_with_a_doubled_dot_is_not_one_of_the_sans:
    signer(ServiceCertificateSpec { common_name: Some("api.payments.svc..".to_owned()), ..valid() })
    => CommonNameNotInSANs at "spec.commonName", value "api.payments.svc..",
    fix "spec.commonName");

mistake!(a_common_name_missing_from_dns_names_says_which_list_to_add_it_to:
    signer(ServiceCertificateSpec { common_name: Some("api.default.svc".to_owned()), ..valid() })
    => CommonNameNotInSANs at "spec.commonName", value "api.default.svc",
    fix "add \"api.default.svc\" to spec.dnsNames");

mistake!(an_ip_common_name_missing_from_ip_addresses_says_so:
    signer(ServiceCertificateSpec { common_name: Some("10.0.0.7".to_owned()), ..valid() })
    => CommonNameNotInSANs at "spec.commonName", value "10.0.0.7",
    fix "to spec.ipAddresses");

#[test]
fn a_common_name_equal_to_one_of_the_sans_is_judged_with_it() {
    for (common_name, spec) in [
        ("payments.default.svc", valid()),
        ("PAYMENTS.default.svc", valid()),
        (
            "10.0.0.7",
            ServiceCertificateSpec {
                ip_addresses: names(&["10.0.0.7"]),
                ..valid()
            },
        ),
        (
            "spiffe://cluster.local/ns/default/sa/payments",
            ServiceCertificateSpec {
                uris: names(&["spiffe://cluster.local/ns/default/sa/payments"]),
                ..valid()
            },
        ),
    ] {
        let spec = ServiceCertificateSpec {
            common_name: Some(common_name.to_owned()),
            ..spec
        };
        assert_eq!(signer(spec), None, "{common_name}");
    }
}

#[test]
fn a_ca_without_any_policy_signs_any_name_but_no_ca_certificate() {
    let open = |spec: ServiceCertificateSpec| diagnose(&spec, NAMESPACE, ISSUER, None);
    let anything = ServiceCertificateSpec {
        common_name: Some("system:serviceaccount:payments:api".to_owned()),
        uris: names(&["spiffe://cluster.local/ns/payments/sa/api"]),
        ip_addresses: names(&["8.8.8.8"]),
        usages: vec![KeyUsage::CodeSigning],
        ..valid()
    };
    assert_eq!(open(anything), None);
    let ca = open(ServiceCertificateSpec {
        is_ca: Some(true),
        ..valid()
    });
    assert_eq!(ca.map(|v| v.reason), Some(Reason::CANotAllowed));
}

mistake!(a_usage_outside_the_default_allowed_usages_is_refused:
    signer(ServiceCertificateSpec {
        usages: vec![KeyUsage::DigitalSignature, KeyUsage::CodeSigning],
        ..valid()
    })
    => UsageNotAllowed at "spec.usages[1]", value "code signing",
    fix "spec.policy.allowedUsages");

mistake!(a_default_usage_the_policy_narrowed_away_is_refused_at_spec_usages:
    signer_with(valid(), IssuerPolicy { allowed_usages: vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth], ..policy() })
    => UsageNotAllowed at "spec.usages", value "key encipherment",
    fix "remove \"key encipherment\"");

#[test]
fn client_auth_is_allowed_by_default_and_a_listed_usage_is_allowed() {
    let client = ServiceCertificateSpec {
        usages: vec![KeyUsage::DigitalSignature, KeyUsage::ClientAuth],
        ..valid()
    };
    assert_eq!(signer(client), None);
    let signing = ServiceCertificateSpec {
        usages: vec![KeyUsage::DigitalSignature, KeyUsage::CodeSigning],
        ..valid()
    };
    let allowing = IssuerPolicy {
        allowed_usages: vec![KeyUsage::DigitalSignature, KeyUsage::CodeSigning],
        ..policy()
    };
    assert_eq!(signer_with(signing, allowing), None);
}

// Common name and Secret name.

mistake!(a_common_name_over_64_characters_is_moved_to_dns_names:
    signer(ServiceCertificateSpec {
        common_name: Some("payments-service-api-gateway.payments-production.svc.cluster.local".to_owned()),
        ..valid()
    })
    => CommonNameTooLong at "spec.commonName",
    value "payments-service-api-gateway.payments-production.svc.cluster.local",
    fix "spec.dnsNames");

mistake!(an_empty_common_name_suggests_removing_it:
    signer(ServiceCertificateSpec { common_name: Some(String::new()), ..valid() })
    => InvalidCommonName at "spec.commonName", value "",
    fix "remove spec.commonName");

mistake!(a_secret_name_in_upper_case_with_underscores_is_repaired:
    signer(ServiceCertificateSpec { secret_name: "Payments_TLS".to_owned(), ..valid() })
    => InvalidSecretName at "spec.secretName", value "Payments_TLS",
    fix "\"payments-tls\"");

mistake!(a_label_value_with_spaces_is_refused_before_any_key_is_generated:
    signer(ServiceCertificateSpec {
        secret_template: Some(SecretTemplate {
            labels: [("team".to_owned(), "Payments Team".to_owned())].into(),
            ..Default::default()
        }),
        ..valid()
    })
    => InvalidSecretTemplate at "spec.secretTemplate.labels[team]", value "Payments Team",
    fix "move free text to spec.secretTemplate.annotations");

mistake!(annotations_over_the_secret_size_limit_are_refused:
    signer(ServiceCertificateSpec {
        secret_template: Some(SecretTemplate {
            annotations: (0..64)
                .map(|i| (format!("example.com/filler-{i}"), "x".repeat(8 * 1024)))
                .collect(),
            ..Default::default()
        }),
        ..valid()
    })
    => InvalidSecretTemplate at "spec.secretTemplate.annotations", value "525622 bytes",
    fix "put it in a ConfigMap");

// Durations.

mistake!(a_duration_in_days_suggests_hours:
    signer(ServiceCertificateSpec { duration: Some("90d".to_owned()), ..valid() })
    => InvalidDuration at "spec.duration", value "90d",
    fix "did you mean \"2160h\" (90 days)?");

mistake!(a_duration_in_years_suggests_hours:
    signer(ServiceCertificateSpec { duration: Some("1y".to_owned()), ..valid() })
    => InvalidDuration at "spec.duration", value "1y",
    fix "\"8760h\"");

mistake!(a_duration_in_words_suggests_hours:
    signer(ServiceCertificateSpec { duration: Some("30 days".to_owned()), ..valid() })
    => InvalidDuration at "spec.duration", value "30 days",
    fix "\"720h\"");

mistake!(an_iso_8601_duration_suggests_hours:
    signer(ServiceCertificateSpec { renew_before: Some("P30D".to_owned()), ..valid() })
    => InvalidDuration at "spec.renewBefore", value "P30D",
    fix "\"720h\"");

mistake!(an_upper_case_unit_suggests_lower_case:
    signer(ServiceCertificateSpec { duration: Some("720H".to_owned()), ..valid() })
    => InvalidDuration at "spec.duration", value "720H",
    fix "\"720h\"");

mistake!(a_duration_below_a_minute_is_refused:
    signer(ServiceCertificateSpec { duration: Some("30s".to_owned()), ..valid() })
    => DurationTooShort at "spec.duration", value "30s",
    fix "\"1m\" or more");

mistake!(renew_before_equal_to_the_duration_suggests_a_third:
    signer(ServiceCertificateSpec {
        duration: Some("720h".to_owned()),
        renew_before: Some("720h".to_owned()),
        ..valid()
    })
    => RenewBeforeTooLong at "spec.renewBefore", value "720h",
    fix "\"240h\"");

mistake!(renew_before_longer_than_the_default_duration_names_the_default:
    signer(ServiceCertificateSpec { renew_before: Some("2400h".to_owned()), ..valid() })
    => RenewBeforeTooLong at "spec.renewBefore", value "2400h",
    fix "\"720h\"");

mistake!(a_zero_renew_before_is_refused:
    signer(ServiceCertificateSpec { renew_before: Some("0s".to_owned()), ..valid() })
    => RenewBeforeTooShort at "spec.renewBefore", value "0s",
    fix "remove it");

mistake!(the_default_duration_beyond_the_issuers_maximum_names_the_maximum:
    signer_with(valid(), IssuerPolicy { max_duration: Some("720h".to_owned()), ..policy() })
    => DurationExceedsPolicy at "spec.duration", value "2160h",
    fix "\"720h\" or less");

// Keys.

mistake!(an_rsa_size_without_an_algorithm_suggests_setting_rsa:
    signer(ServiceCertificateSpec {
        private_key: Some(PrivateKeySpec { size: Some(2048), ..Default::default() }),
        ..valid()
    })
    => InvalidKeySize at "spec.privateKey.size", value "2048",
    fix "spec.privateKey.algorithm to \"RSA\"");

mistake!(a_1024_bit_rsa_key_suggests_2048:
    signer(ServiceCertificateSpec {
        private_key: Some(PrivateKeySpec {
            algorithm: Some(KeyAlgorithm::Rsa),
            size: Some(1024),
            ..Default::default()
        }),
        ..valid()
    })
    => InvalidKeySize at "spec.privateKey.size", value "1024",
    fix "did you mean 2048?");

mistake!(a_size_for_ed25519_is_removed:
    signer(ServiceCertificateSpec {
        private_key: Some(PrivateKeySpec {
            algorithm: Some(KeyAlgorithm::Ed25519),
            size: Some(256),
            ..Default::default()
        }),
        ..valid()
    })
    => InvalidKeySize at "spec.privateKey.size", value "256",
    fix "remove spec.privateKey.size");

mistake!(a_key_algorithm_the_issuer_refuses_suggests_an_allowed_one:
    signer_with(
        ServiceCertificateSpec {
            private_key: Some(PrivateKeySpec {
                algorithm: Some(KeyAlgorithm::Ed25519),
                ..Default::default()
            }),
            ..valid()
        },
        IssuerPolicy { allowed_key_algorithms: vec![KeyAlgorithm::Ecdsa, KeyAlgorithm::Rsa], ..policy() },
    )
    => KeyAlgorithmNotAllowed at "spec.privateKey.algorithm", value "Ed25519",
    fix "\"ECDSA\"");

mistake!(an_rsa_key_below_the_issuers_minimum_suggests_the_minimum:
    signer_with(
        ServiceCertificateSpec {
            private_key: Some(PrivateKeySpec {
                algorithm: Some(KeyAlgorithm::Rsa),
                size: Some(2048),
                ..Default::default()
            }),
            ..valid()
        },
        IssuerPolicy { min_rsa_key_size: Some(3072), ..policy() },
    )
    => KeyTooWeak at "spec.privateKey.size", value "2048",
    fix "did you mean 3072?");

mistake!(a_ca_certificate_from_an_issuer_that_refuses_them_is_refused:
    signer(ServiceCertificateSpec { is_ca: Some(true), ..valid() })
    => CANotAllowed at "spec.isCA", value "true",
    fix "remove spec.isCA");

mistake!(ca_usages_from_an_issuer_that_refuses_ca_certificates_are_refused:
    signer(ServiceCertificateSpec {
        usages: vec![KeyUsage::DigitalSignature, KeyUsage::CrlSign],
        ..valid()
    })
    => CANotAllowed at "spec.usages[1]", value "crl sign",
    fix "remove \"cert sign\" and \"crl sign\" from spec.usages");

mistake!(cert_sign_without_is_ca_is_refused_even_by_an_issuer_that_issues_ca_certificates:
    signer_with(
        ServiceCertificateSpec {
            usages: vec![KeyUsage::DigitalSignature, KeyUsage::CertSign],
            ..valid()
        },
        IssuerPolicy { allow_ca: Some(true), ..policy() },
    )
    => CertSignWithoutCA at "spec.usages[1]", value "cert sign",
    fix "or set spec.isCA: true");

#[test]
fn a_ca_certificate_with_cert_sign_is_allowed_by_an_issuer_that_issues_them() {
    let spec = ServiceCertificateSpec {
        usages: vec![KeyUsage::CertSign, KeyUsage::CrlSign],
        is_ca: Some(true),
        ..valid()
    };
    let allowing = IssuerPolicy {
        allow_ca: Some(true),
        ..policy()
    };
    assert_eq!(signer_with(spec, allowing), None);
}

#[test]
fn ca_usages_are_allowed_by_an_issuer_that_issues_ca_certificates() {
    let spec = ServiceCertificateSpec {
        usages: vec![KeyUsage::CrlSign],
        ..valid()
    };
    let allowing = IssuerPolicy {
        allow_ca: Some(true),
        ..policy()
    };
    assert_eq!(signer_with(spec, allowing), None);
}

// The issuer and the namespace.

mistake!(a_misspelled_issuer_suggests_the_existing_one:
    Some(issuer_not_found("intenral", &names(&["internal", "public-acme"])))
    => IssuerNotFound at "spec.issuerRef.name", value "intenral",
    fix "did you mean \"internal\"");

mistake!(no_issuer_and_no_default_lists_the_issuers:
    Some(issuer_not_found("", &names(&["internal", "public-acme"])))
    => IssuerNotFound at "spec.issuerRef.name", value "",
    fix "one of: internal, public-acme");

mistake!(an_issuer_that_is_not_ready_says_to_wait:
    Some(issuer_not_ready(ISSUER, Some("Secret certflow/internal-ca not found")))
    => IssuerNotReady at "spec.issuerRef.name", value "internal",
    fix "retries on its own");

mistake!(a_namespace_the_issuer_does_not_serve_is_told_where_to_ask:
    diagnose(&valid(), "payments", ISSUER, Some(&policy()))
    => NamespaceNotAllowed at "spec.issuerRef.name", value "internal",
    fix "allowedNamespaces");

mistake!(a_broken_issuer_policy_is_not_blamed_on_the_app_owner:
    signer_with(valid(), IssuerPolicy { allowed_ip_ranges: names(&["10.0.0.0/33"]), ..policy() })
    => InvalidIssuerPolicy at "spec.issuerRef.name", value "internal",
    fix "ask the platform team");

// The Secret and retries.

mistake!(a_secret_certflow_did_not_create_is_never_overwritten:
    Some(secret_conflict("payments-tls"))
    => SecretConflict at "spec.secretName", value "payments-tls",
    fix "\"payments-certflow-tls\"");

mistake!(a_secret_owned_by_another_certificate_names_the_owner:
    Some(secret_owned_by_other("payments-tls", "payments-old"))
    => SecretOwnedByOther at "spec.secretName", value "payments-tls",
    fix "ServiceCertificate \"payments-old\"");

mistake!(exhausted_retries_quote_the_last_error:
    Some(retries_exhausted(5, "connection refused\n"))
    => RetriesExhausted at "", value "",
    fix "new attempt");

mistake!(a_secret_refused_by_an_admission_policy_points_at_secret_template:
    Some(issuance_failed("secrets \"payments-tls\" is forbidden: Secrets need a team label"))
    => IssuanceFailed at "", value "",
    fix "spec.secretTemplate can add the labels or annotations it asks for");

#[test]
fn a_private_key_pasted_into_dns_names_is_never_echoed() {
    let key = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oY4/kTc0fHKvoAoGCCqGSM49\n-----END EC PRIVATE KEY-----\n";
    let violation = signer(dns(&[key])).expect("the mistake is reported");
    let sentence = violation.sentence("payments-tls");
    assert!(!sentence.contains("PRIVATE KEY"), "{sentence}");
    assert!(!sentence.contains("MHcCAQEE"), "{sentence}");
    assert!(!violation.value.contains("MHcCAQEE"), "{violation:?}");
}

#[test]
fn the_event_sentence_reads_as_one_sentence_with_the_fix_last() {
    let violation = signer(dns(&["payments.defualt.svc"])).expect("reported");
    assert_eq!(
        violation.sentence("payments-tls"),
        "ServiceCertificate \"payments-tls\": spec.dnsNames[0] \"payments.defualt.svc\" is not \
         allowed by CertificateAuthority \"internal\" for namespace \"default\" (allowed: \
         *.default.svc, *.default.svc.cluster.local): \"defualt\" looks like a misspelling of \
         the namespace; did you mean \"payments.default.svc\"?"
    );
}

#[test]
fn several_mistakes_are_all_listed_in_field_order() {
    let spec = ServiceCertificateSpec {
        dns_names: names(&["Payments.default.svc", "10.0.0.1"]),
        duration: Some("90d".to_owned()),
        ..valid()
    };
    let reasons: Vec<(Reason, String)> = certflow_diagnostics::validate_spec(&spec)
        .into_iter()
        .map(|v| (v.reason, v.field))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (Reason::InvalidDNSName, "spec.dnsNames[0]".to_owned()),
            (Reason::DNSNameIsIPAddress, "spec.dnsNames[1]".to_owned()),
            (Reason::InvalidDuration, "spec.duration".to_owned()),
        ]
    );
}
