//! Checks on `spec.secretTemplate`: labels and annotations that Kubernetes
//! would refuse on the Secret. The CRD schema only bounds how many there are;
//! without these checks the signer would generate a key and sign a
//! certificate, and only then have the Secret write refused.

use std::collections::BTreeMap;

use certflow_api::SecretTemplate;

use crate::names::is_dns_1123_subdomain;
use crate::reason::Reason;
use crate::violation::Violation;

/// Kubernetes' limit on all of one object's annotations, keys included
/// (`TotalAnnotationSizeLimitB`).
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// Room kept for the annotations certflow itself puts on the Secret.
const RESERVED_ANNOTATION_BYTES: usize = 2 * 1024;
/// Longest label value, and longest name part of a label or annotation key.
const MAX_NAME_LEN: usize = 63;
/// Entries examined per map (the CRD allows 64).
const MAX_ENTRIES: usize = 64;

/// Letters, digits, `-`, `_` and `.`, starting and ending with a letter or
/// digit: a label value or the name part of a key.
fn is_name(value: &str) -> bool {
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    alphanumeric(value.chars().next())
        && alphanumeric(value.chars().last())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Why `key` is not a Kubernetes label or annotation key, if it is not.
fn key_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if prefix.is_some_and(|prefix| !is_dns_1123_subdomain(prefix)) {
        return Some("its prefix before \"/\" is not a lower-case DNS name");
    }
    if name.len() > MAX_NAME_LEN {
        return Some("its name after any \"/\" is longer than 63 characters");
    }
    (!is_name(name)).then_some(
        "its name may only contain letters, digits, \"-\", \"_\" and \".\", starting and ending \
         with a letter or digit, after at most one \"/\"",
    )
}

fn invalid_key(map: &str, key: &str) -> Option<Violation> {
    // Kubernetes checks annotation keys in lower case (a prefix such as
    // "Example.com/" is accepted there) but label keys as written.
    let problem = if map == "annotations" {
        key_problem(&key.to_ascii_lowercase())?
    } else {
        key_problem(key)?
    };
    Some(
        Violation::new(
            Reason::InvalidSecretTemplate,
            format!("spec.secretTemplate.{map}"),
            key,
            format!("has a key that Kubernetes refuses on a Secret: {problem}"),
        )
        .with_suggestion("write keys like \"app.kubernetes.io/name\" or \"reloader\""),
    )
}

/// A label value Kubernetes refuses: longer than 63 characters or with
/// characters other than letters, digits, `-`, `_` and `.`.
fn invalid_label_value(key: &str, value: &str) -> Option<Violation> {
    if value.is_empty() || (value.len() <= MAX_NAME_LEN && is_name(value)) {
        return None;
    }
    let problem = if value.len() > MAX_NAME_LEN {
        format!(
            "is {} characters long; Kubernetes allows label values of at most {MAX_NAME_LEN}",
            value.len()
        )
    } else {
        "is not a label value Kubernetes accepts: only letters, digits, \"-\", \"_\" and \".\", \
         starting and ending with a letter or digit"
            .to_owned()
    };
    Some(
        Violation::new(
            Reason::InvalidSecretTemplate,
            // The key passed `invalid_key`: a bounded, printable name.
            format!("spec.secretTemplate.labels[{key}]"),
            value,
            problem,
        )
        .with_suggestion(
            "use a short identifier as the label value, or move free text to \
             spec.secretTemplate.annotations",
        ),
    )
}

/// Annotations too large for a Secret once certflow adds its own.
fn annotations_too_large(annotations: &BTreeMap<String, String>) -> Option<Violation> {
    let total: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    let budget = MAX_ANNOTATIONS_BYTES - RESERVED_ANNOTATION_BYTES;
    (total > budget).then(|| {
        Violation::new(
            Reason::InvalidSecretTemplate,
            "spec.secretTemplate.annotations",
            &format!("{total} bytes"),
            format!(
                "are too large for a Secret: Kubernetes allows {MAX_ANNOTATIONS_BYTES} bytes of \
                 annotations per object, keys included, and certflow adds its own, which leaves \
                 {budget} bytes for the template"
            ),
        )
        .with_suggestion(
            "keep large data out of annotations: put it in a ConfigMap and annotate the Secret \
             with the ConfigMap's name",
        )
    })
}

/// The first label or annotation in `spec.secretTemplate` that Kubernetes
/// would refuse on the Secret: a malformed key, a label value that is not a
/// short identifier, or annotations over the size limit.
pub fn invalid_secret_template(template: &SecretTemplate) -> Option<Violation> {
    template
        .labels
        .iter()
        .take(MAX_ENTRIES)
        .find_map(|(key, value)| {
            invalid_key("labels", key).or_else(|| invalid_label_value(key, value))
        })
        .or_else(|| {
            template
                .annotations
                .keys()
                .take(MAX_ENTRIES)
                .find_map(|key| invalid_key("annotations", key))
        })
        .or_else(|| annotations_too_large(&template.annotations))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> SecretTemplate {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        SecretTemplate {
            labels: map(labels),
            annotations: map(annotations),
        }
    }

    #[test]
    fn what_kubernetes_accepts_passes() {
        let ok = template(
            &[
                ("app.kubernetes.io/name", "web"),
                ("tier", ""),
                ("v", "1.2_3-a"),
            ],
            &[
                ("reloader.stakater.com/match", "true"),
                ("note", "any text\nat all"),
                ("Example.com/Owner", "team"),
            ],
        );
        assert_eq!(invalid_secret_template(&ok), None);
    }

    #[test]
    fn what_kubernetes_refuses_is_found() {
        let cases = [
            template(&[("app", "has spaces")], &[]),
            template(&[("app", "v".repeat(64).as_str())], &[]),
            template(&[("Example.com/app", "web")], &[]),
            template(&[("a/b/c", "web")], &[]),
            template(&[], &[("-bad", "x")]),
            template(&[], &[("big", "x".repeat(MAX_ANNOTATIONS_BYTES).as_str())]),
        ];
        for case in cases {
            let found = invalid_secret_template(&case);
            assert_eq!(
                found.map(|v| v.reason),
                Some(Reason::InvalidSecretTemplate),
                "{case:?}"
            );
        }
    }
}
