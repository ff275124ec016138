//! The one place where spec checks are chained: which checks run on which
//! field, in which order, and how much of a huge spec is examined.

use std::collections::HashMap;
use std::net::IpAddr;

use certflow_api::ServiceCertificateSpec;

use crate::duration::{
    duration_too_short, invalid_duration, renew_before_too_long, renew_before_too_short,
};
use crate::key::invalid_key_size;
use crate::names::{
    common_name_too_long, control_characters, dns_label_too_long, dns_name_is_email_address,
    dns_name_is_ip_address, dns_name_is_url, dns_name_too_long, invalid_common_name,
    invalid_dns_name, invalid_email_address, invalid_ip_address, invalid_secret_name, invalid_uri,
    non_ascii_name, wildcard_not_leftmost,
};
use crate::reason::Reason;
use crate::template::invalid_secret_template;
use crate::text::quote;
use crate::usage::cert_sign_without_ca;
use crate::violation::Violation;

/// The most subject alternative names (dnsNames, ipAddresses, uris and
/// emailAddresses together) one certificate may carry. Past this, TLS
/// handshakes grow and some clients refuse the certificate; more names
/// belong in several ServiceCertificates. Only this many entries of each list
/// are examined in detail, so a spec with thousands of names is still
/// checked in bounded time.
pub const MAX_NAMES: usize = 100;

/// The most violations [`validate_spec`] returns. Nobody reads the 21st, and
/// every one becomes part of a status update.
pub const MAX_VIOLATIONS: usize = 20;

fn first(checks: &[&dyn Fn() -> Option<Violation>]) -> Option<Violation> {
    checks.iter().find_map(|check| check())
}

/// Checks on one `dnsNames` entry, most specific diagnosis first.
fn check_dns_name(field: &str, value: &str) -> Option<Violation> {
    first(&[
        &|| control_characters(field, value),
        &|| non_ascii_name(field, value),
        &|| dns_name_is_url(field, value),
        &|| dns_name_is_email_address(field, value),
        &|| dns_name_is_ip_address(field, value),
        &|| dns_name_too_long(field, value),
        &|| dns_label_too_long(field, value),
        &|| wildcard_not_leftmost(field, value),
        &|| invalid_dns_name(field, value),
    ])
}

fn check_ip_address(field: &str, value: &str) -> Option<Violation> {
    first(&[&|| control_characters(field, value), &|| {
        invalid_ip_address(field, value)
    }])
}

fn check_uri(field: &str, value: &str) -> Option<Violation> {
    first(&[&|| control_characters(field, value), &|| {
        invalid_uri(field, value)
    }])
}

fn check_email_address(field: &str, value: &str) -> Option<Violation> {
    first(&[&|| control_characters(field, value), &|| {
        invalid_email_address(field, value)
    }])
}

fn check_common_name(field: &str, value: &str) -> Option<Violation> {
    first(&[
        &|| control_characters(field, value),
        &|| invalid_common_name(field, value),
        &|| common_name_too_long(field, value),
    ])
}

fn check_secret_name(field: &str, value: &str) -> Option<Violation> {
    first(&[&|| control_characters(field, value), &|| {
        invalid_secret_name(field, value)
    }])
}

/// No name at all. The CRD schema rejects this at apply time too; the signer
/// checks again because it may read objects written before the rule existed.
pub fn no_names(spec: &ServiceCertificateSpec) -> Option<Violation> {
    let has_common_name = spec.common_name.as_deref().is_some_and(|cn| !cn.is_empty());
    let none = !has_common_name
        && spec.dns_names.is_empty()
        && spec.ip_addresses.is_empty()
        && spec.uris.is_empty()
        && spec.email_addresses.is_empty();
    none.then(|| {
        Violation::new(
            Reason::NoNames,
            "spec.dnsNames",
            "",
            "is empty, and so are spec.commonName, spec.ipAddresses, spec.uris and \
             spec.emailAddresses; a certificate must name what it is for",
        )
        .with_suggestion(
            "add the Service's DNS names, such as \"web.shop.svc\" and \"web.shop.svc.cluster.local\"",
        )
    })
}

/// More than [`MAX_NAMES`] subject alternative names in total.
pub fn too_many_names(spec: &ServiceCertificateSpec) -> Option<Violation> {
    let lists = [
        ("spec.dnsNames", spec.dns_names.len()),
        ("spec.ipAddresses", spec.ip_addresses.len()),
        ("spec.uris", spec.uris.len()),
        ("spec.emailAddresses", spec.email_addresses.len()),
    ];
    let total: usize = lists.iter().map(|(_, n)| n).sum();
    if total <= MAX_NAMES {
        return None;
    }
    let (field, longest) = lists
        .iter()
        .copied()
        .max_by_key(|(_, n)| *n)
        .unwrap_or(("spec.dnsNames", total));
    Some(
        Violation::new(
            Reason::TooManyNames,
            field,
            &format!("{longest} entries"),
            format!(
                "brings the certificate to {total} subject alternative names; certflow issues at \
                 most {MAX_NAMES} per certificate"
            ),
        )
        .with_suggestion(format!(
            "split the names over several ServiceCertificates, or cover a namespace's Services \
             with one wildcard such as {}",
            quote("*.shop.svc")
        )),
    )
}

/// The second and later occurrences of a name in one list. `keys[i]` is
/// what makes entry `i` equal to another (`None`: do not compare it, because
/// it already has a violation of its own).
fn duplicate_names(list: &str, values: &[String], keys: Vec<Option<String>>) -> Vec<Violation> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut found = Vec::new();
    for (i, (value, key)) in values.iter().zip(keys).enumerate() {
        let Some(key) = key else { continue };
        match seen.get(&key) {
            Some(&earlier) => found.push(
                Violation::new(
                    Reason::DuplicateName,
                    format!("{list}[{i}]"),
                    value,
                    format!("repeats {list}[{earlier}]"),
                )
                .with_suggestion("remove one of them"),
            ),
            None => {
                seen.insert(key, i);
            }
        }
    }
    found
}

/// The first violation of each entry of `values` (at most [`MAX_NAMES`]).
fn check_list(
    list: &str,
    values: &[String],
    check: fn(&str, &str) -> Option<Violation>,
) -> Vec<Option<Violation>> {
    values
        .iter()
        .take(MAX_NAMES)
        .enumerate()
        .map(|(i, value)| check(&format!("{list}[{i}]"), value))
        .collect()
}

/// The entries' violations, then duplicates among the entries that have none
/// (so a name is never reported twice), compared by `key`.
fn list_violations(
    list: &str,
    values: &[String],
    check: fn(&str, &str) -> Option<Violation>,
    key: fn(&str) -> Option<String>,
) -> Vec<Violation> {
    let checked = check_list(list, values, check);
    let keys = values
        .iter()
        .zip(&checked)
        .map(|(value, violation)| violation.is_none().then(|| key(value)).flatten())
        .collect();
    let mut found: Vec<Violation> = checked.into_iter().flatten().collect();
    found.extend(duplicate_names(list, values, keys));
    found
}

/// Every problem with `spec` that needs no cluster state, in field order and
/// at most one per field; at most [`MAX_VIOLATIONS`] of them.
///
/// Checks run on the first [`MAX_NAMES`] entries of each list; a longer list
/// is reported as [`Reason::TooManyNames`].
pub fn validate_spec(spec: &ServiceCertificateSpec) -> Vec<Violation> {
    let mut found: Vec<Violation> = Vec::new();
    found.extend(no_names(spec));
    found.extend(too_many_names(spec));
    found.extend(check_secret_name("spec.secretName", &spec.secret_name));
    if let Some(common_name) = &spec.common_name {
        found.extend(check_common_name("spec.commonName", common_name));
    }

    found.extend(list_violations(
        "spec.dnsNames",
        &spec.dns_names,
        check_dns_name,
        |name| Some(name.to_owned()),
    ));
    found.extend(list_violations(
        "spec.ipAddresses",
        &spec.ip_addresses,
        check_ip_address,
        // "fd00::1" and "fd00:0::1" are the same address.
        |ip| ip.parse::<IpAddr>().ok().map(|ip| ip.to_string()),
    ));
    found.extend(list_violations("spec.uris", &spec.uris, check_uri, |uri| {
        Some(uri.to_owned())
    }));
    found.extend(list_violations(
        "spec.emailAddresses",
        &spec.email_addresses,
        check_email_address,
        |email| Some(email.to_lowercase()),
    ));

    if let Some(duration) = &spec.duration {
        let field = "spec.duration";
        found.extend(first(&[
            &|| control_characters(field, duration),
            &|| invalid_duration(field, duration),
            &|| duration_too_short(field, duration),
        ]));
    }
    if let Some(renew_before) = &spec.renew_before {
        let field = "spec.renewBefore";
        found.extend(first(&[
            &|| control_characters(field, renew_before),
            &|| invalid_duration(field, renew_before),
            &|| renew_before_too_short(field, renew_before),
            &|| renew_before_too_long(field, renew_before, spec.duration.as_deref()),
        ]));
    }
    if let Some(key) = &spec.private_key {
        found.extend(invalid_key_size(key.algorithm, key.size));
    }
    found.extend(cert_sign_without_ca(
        &spec.usages,
        spec.is_ca.unwrap_or(false),
    ));
    if let Some(template) = &spec.secret_template {
        found.extend(invalid_secret_template(template));
    }
    found.truncate(MAX_VIOLATIONS);
    found
}

/// The first problem [`validate_spec`] finds, if any: what the signer
/// reports as the reason it did not issue.
pub fn first_violation(spec: &ServiceCertificateSpec) -> Option<Violation> {
    validate_spec(spec).into_iter().next()
}
