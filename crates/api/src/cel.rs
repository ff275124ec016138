//! The CEL validation rules (`x-kubernetes-validations`) shared by both CRDs.
//!
//! They catch structural mistakes when an object is applied, with messages
//! that quote the value seen and say what to write instead. Anything needing
//! context (does the issuer exist, does its policy allow the name) is left
//! to the signer.
//!
//! Every rule only reads strings and lists that have a `maxLength` or
//! `maxItems` in the schema, so the API server's cost estimate stays within
//! budget. Rules that call `duration()` first check the string against the
//! duration pattern, so a malformed value is reported by the format rule
//! instead of failing evaluation.

use kube::core::{Message, Rule};

use crate::KeyAlgorithm;

/// Longest accepted duration string; `2562047h47m16.854775807s` is 24.
pub(crate) const DURATION_MAX_LENGTH: u32 = 32;

/// A DNS-1123 subdomain, the format of Secret and most object names.
const DNS1123_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A regular expression as a single-quoted CEL string literal.
fn literal(pattern: &str) -> String {
    format!("'{}'", pattern.replace('\\', "\\\\"))
}

fn matches_duration(operand: &str) -> String {
    format!("{operand}.matches({})", literal(crate::GO_DURATION_PATTERN))
}

fn expression(text: String) -> Message {
    Message::Expression(text)
}

/// `self` (a string) is a DNS-1123 subdomain, such as a Secret name.
pub(crate) fn dns1123_subdomain(what: &str, example: &str) -> Rule {
    Rule::new(format!(
        "self.matches({})",
        literal(DNS1123_SUBDOMAIN_PATTERN)
    ))
    .message(expression(format!(
        "'\"' + self + '\" is not a valid {what}: use lowercase letters, digits, dashes and dots, \
         starting and ending with a letter or digit, such as \"{example}\"'"
    )))
}

/// `self` (a string) is a Go-style duration. A value in days is told to use
/// hours. (The message cannot compute the hours: the API server's cost
/// estimate rejects `string(int)` in a message expression as unbounded; the
/// signer's diagnostics give the exact figure.)
pub(crate) fn go_duration() -> Rule {
    Rule::new(matches_duration("self")).message(expression(
        "self.matches('^[0-9]{1,6}d$') \
         ? '\"' + self + '\" is in days, which durations do not accept: write hours instead, \
           24h per day, such as 2160h for 90 days' \
         : '\"' + self + '\" is not a duration: write a number and a unit (h, m or s), \
           such as 2160h (90 days), 1h30m or 45m; days are not accepted, so write 2160h for 90 days'"
            .to_owned(),
    ))
}

/// `self` (a well-formed duration) is at least one minute.
pub(crate) fn go_duration_at_least_a_minute() -> Rule {
    Rule::new(format!(
        "!{} || duration(self) >= duration('1m')",
        matches_duration("self")
    ))
    .message(expression(
        "'\"' + self + '\" is too short: the shortest accepted duration is 1m'".to_owned(),
    ))
}

/// `self` (a well-formed duration) is longer than zero.
pub(crate) fn go_duration_positive() -> Rule {
    Rule::new(format!(
        "!{} || duration(self) > duration('0s')",
        matches_duration("self")
    ))
    .message(expression(
        "'\"' + self + '\" must be longer than zero, such as 720h (30 days)'".to_owned(),
    ))
}

/// On `ServiceCertificateSpec`: at least one name is requested.
pub(crate) fn at_least_one_name() -> Rule {
    Rule::new(
        "(has(self.commonName) && size(self.commonName) > 0) \
         || (has(self.dnsNames) && size(self.dnsNames) > 0) \
         || (has(self.ipAddresses) && size(self.ipAddresses) > 0) \
         || (has(self.uris) && size(self.uris) > 0) \
         || (has(self.emailAddresses) && size(self.emailAddresses) > 0)",
    )
    .message(
        "a ServiceCertificate needs at least one name: set spec.commonName, spec.dnsNames, \
         spec.ipAddresses, spec.uris or spec.emailAddresses",
    )
}

/// On `ServiceCertificateSpec`: `cert sign` only together with `isCA: true`
/// (RFC 5280 §4.2.1.3 allows keyCertSign only on a CA certificate).
pub(crate) fn cert_sign_only_on_a_ca() -> Rule {
    Rule::new(
        "!has(self.usages) || !self.usages.exists(u, u == 'cert sign') \
         || (has(self.isCA) && self.isCA)",
    )
    .message(
        "spec.usages has \"cert sign\", which only a CA certificate may have: remove it \
         (a service certificate does not sign others), or set spec.isCA: true",
    )
}

/// On `ServiceCertificateSpec`: `renewBefore` is shorter than the (possibly
/// defaulted) `duration`, or renewal would start before the certificate is
/// issued.
pub(crate) fn renew_before_shorter_than_duration(default_duration: &str) -> Rule {
    Rule::new(format!(
        "!has(self.renewBefore) || !{renew_before_ok} || (has(self.duration) && !{duration_ok}) \
         || duration(self.renewBefore) < (has(self.duration) ? duration(self.duration) : duration('{default_duration}'))",
        renew_before_ok = matches_duration("self.renewBefore"),
        duration_ok = matches_duration("self.duration"),
    ))
    .message(expression(format!(
        "'renewBefore ' + self.renewBefore + ' must be shorter than duration ' \
         + (has(self.duration) ? self.duration : '{default_duration} (the default)') \
         + ': renewal has to start before the certificate expires, for example renewBefore: 720h with duration: 2160h'"
    )))
    .field_path(".renewBefore")
}

/// On a struct with a key algorithm and size field: the size fits the
/// algorithm (a missing algorithm means ECDSA).
pub(crate) fn key_size_fits(
    algorithm: KeyAlgorithm,
    algorithm_field: &str,
    size_field: &str,
) -> Rule {
    let (a, s) = (algorithm_field, size_field);
    let rule = match algorithm {
        KeyAlgorithm::Ecdsa => Rule::new(format!(
            "!has(self.{s}) || (has(self.{a}) && self.{a} != 'ECDSA') || self.{s} in [256, 384]"
        ))
        .message(
            format!(
                "{s} is not an ECDSA key size: use 256 or 384, \
                 or set {a}: RSA for 2048, 3072 or 4096 (ECDSA is the default {a})"
            )
            .as_str(),
        ),
        KeyAlgorithm::Rsa => Rule::new(format!(
            "!has(self.{s}) || !has(self.{a}) || self.{a} != 'RSA' || self.{s} in [2048, 3072, 4096]"
        ))
        .message(format!("{s} is not an RSA key size: use 2048, 3072 or 4096").as_str()),
        KeyAlgorithm::Ed25519 => Rule::new(format!(
            "!has(self.{a}) || self.{a} != 'Ed25519' || !has(self.{s})"
        ))
        .message(format!("Ed25519 keys have a fixed size: remove {s}").as_str()),
    };
    rule.field_path(format!(".{s}"))
}

/// On a label or annotation map: no key under `certflow.io/`.
pub(crate) fn no_reserved_keys(what: &str) -> Rule {
    Rule::new(format!(
        "self.all(k, !k.startsWith('{}'))",
        crate::labels::PREFIX
    ))
    .message(
        format!(
            "{what} keys under {} are set by certflow itself and cannot be templated: remove them",
            crate::labels::PREFIX
        )
        .as_str(),
    )
}

/// On `policy.allowedNamespaces`: names or glob patterns.
pub(crate) fn namespace_patterns() -> Rule {
    Rule::new("self.all(p, p.matches('^[a-z0-9*]([-a-z0-9*]*[a-z0-9*])?$'))").message(
        "each allowedNamespaces entry must be a namespace name or a glob pattern of lowercase \
         letters, digits, dashes and *, such as team-a or team-*",
    )
}

/// On `policy.allowedDNSNames`: `*` only as the whole leftmost label.
pub(crate) fn dns_name_patterns() -> Rule {
    Rule::new(r"self.all(p, p.matches('^(\\*\\.)?[^*]+$'))").message(
        "each allowedDNSNames pattern may use * only as the whole leftmost label, \
         such as *.{namespace}.svc or {namespace}.example.com",
    )
}

/// On `policy.allowedIPRanges`: CIDRs.
pub(crate) fn cidrs() -> Rule {
    Rule::new("self.all(r, isCIDR(r))")
        .message("each allowedIPRanges entry must be a CIDR, such as 10.0.0.0/8 or fd00::/8")
}

/// On `policy.minRSAKeySize`: an RSA size certflow can generate.
pub(crate) fn rsa_key_size() -> Rule {
    Rule::new("self in [2048, 3072, 4096]")
        .message("minRSAKeySize is not an RSA key size: use 2048, 3072 or 4096")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_become_cel_literals_with_escaped_backslashes() {
        assert_eq!(literal(r"^a\.b$"), r"'^a\\.b$'");
    }
}
