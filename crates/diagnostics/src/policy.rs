//! Checks of a request against a CertificateAuthority's policy: may this
//! namespace use the CA, for these names, this long, with this key.
//!
//! Each check is named after the violation it finds; [`policy_violations`]
//! chains them, and [`check_policy`] returns the first. A policy with a
//! malformed entry is reported as [`Reason::InvalidIssuerPolicy`] before
//! anything else: judging a request by a broken rule would blame the app
//! owner for the operator's mistake.
//!
//! A policy fails closed: a kind of name whose allow-list is empty is
//! refused, a common name must be one of the certificate's own subject
//! alternative names (each of which the policy judges), and only the
//! allowed usages are signed. Only a CertificateAuthority with no policy at
//! all is open ([`open_policy_violations`]), and it says so in its status.

use std::net::IpAddr;

use certflow_api::{
    DEFAULT_DURATION, DEFAULT_MIN_RSA_KEY_SIZE, IssuerPolicy, KeyAlgorithm, KeyUsage,
    ServiceCertificateSpec, format_go_duration, parse_go_duration,
};

use crate::context::ISSUER_FIELD;
use crate::names::is_valid_dns_name;
use crate::reason::Reason;
use crate::suggest;
use crate::text::{self, quote};
use crate::validate::{MAX_NAMES, first_violation};
use crate::violation::Violation;

/// The placeholder for the requesting namespace in policy patterns.
pub const NAMESPACE_PLACEHOLDER: &str = "{namespace}";
/// Patterns listed in a message before "and N more".
const LISTED_PATTERNS: usize = 6;
/// Policy entries considered per list (the CRD allows 64).
const MAX_POLICY_ENTRIES: usize = 64;

fn ca(issuer: &str) -> String {
    format!("CertificateAuthority {}", quote(issuer))
}

/// A name of a kind (`what`, plural) that the policy's `list` leaves empty:
/// the policy fails closed, so no such name is signed.
fn kind_not_allowed(issuer: &str, field: &str, value: &str, what: &str, list: &str) -> Violation {
    Violation::new(
        Reason::PolicyViolation,
        field,
        value,
        format!(
            "is refused because {} signs no {what} (its spec.policy.{list} is empty)",
            ca(issuer)
        ),
    )
    .with_suggestion(format!(
        "remove it from the ServiceCertificate, or ask the platform team to list what this \
         namespace may use in spec.policy.{list}"
    ))
}

/// Whether `value` matches a glob where `*` stands for any run of characters.
fn glob_matches(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '*' {
            backtrack = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            vi = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// An IP range written as a CIDR.
#[derive(Debug, Clone, Copy)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = text.trim().split_once('/')?;
        let network: IpAddr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    /// The range's first address: the written address with its host bits
    /// cleared, as a name constraint needs it.
    fn network_address(self) -> IpAddr {
        match self.network {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        }
    }

    fn contains(self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        // An IPv4-mapped IPv6 address is the IPv4 address to the clients
        // that match it (Go's crypto/x509 compares them equal), so it is
        // judged as one: inside IPv4 ranges, outside IPv6 ranges such as
        // ::/0 that never meant to allow IPv4.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        if self.network.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let (network, width) = bits(self.network);
        let (address, _) = bits(ip);
        let host_bits = width - u32::from(self.prefix);
        if host_bits >= width {
            return true;
        }
        network >> host_bits == address >> host_bits
    }
}

/// A policy DNS pattern with the namespace filled in, lower case.
fn instantiate(pattern: &str, namespace: &str) -> String {
    pattern
        .replace(NAMESPACE_PLACEHOLDER, namespace)
        .to_lowercase()
}

/// Whether `name` matches an instantiated pattern: same number of labels,
/// equal labels, and a leading `*` matching exactly one label.
fn dns_pattern_matches(pattern: &str, name: &str) -> bool {
    let name = name.to_lowercase();
    let (mut p, mut n) = (pattern.split('.'), name.split('.'));
    let mut first = true;
    loop {
        match (p.next(), n.next()) {
            (None, None) => return true,
            (Some(pl), Some(nl)) => {
                let wildcard = first && pl == "*" && !nl.is_empty();
                if !wildcard && pl != nl {
                    return false;
                }
            }
            _ => return false,
        }
        first = false;
    }
}

/// A malformed entry in the CA's policy. The app owner cannot fix it, so the
/// violation points at `spec.issuerRef.name` and says who can.
pub fn invalid_issuer_policy(issuer: &str, policy: &IssuerPolicy) -> Option<Violation> {
    let broken = |policy_field: String, value: &str, why: &str| {
        Some(
            Violation::new(
                Reason::InvalidIssuerPolicy,
                ISSUER_FIELD,
                issuer,
                format!(
                    "names {} whose spec.policy.{policy_field} {} {why}, so certflow cannot \
                     decide what it allows",
                    ca(issuer),
                    quote(value)
                ),
            )
            .with_suggestion(
                "this is not a mistake in the ServiceCertificate: ask the platform team to fix \
                 the CertificateAuthority; certflow retries when it changes",
            ),
        )
    };
    if let Some(max) = &policy.max_duration
        && parse_go_duration(max).is_err()
    {
        return broken("maxDuration".to_owned(), max, "is not a Go duration");
    }
    for (i, range) in policy
        .allowed_ip_ranges
        .iter()
        .take(MAX_POLICY_ENTRIES)
        .enumerate()
    {
        if Cidr::parse(range).is_none() {
            return broken(format!("allowedIPRanges[{i}]"), range, "is not a CIDR");
        }
    }
    for (i, pattern) in policy
        .allowed_dns_names
        .iter()
        .take(MAX_POLICY_ENTRIES)
        .enumerate()
    {
        if !is_valid_dns_name(&instantiate(pattern, "namespace")) {
            return broken(
                format!("allowedDNSNames[{i}]"),
                pattern,
                "is not a DNS name pattern",
            );
        }
    }
    None
}

/// The CA does not serve `namespace`: it is not in `allowedNamespaces`.
pub fn namespace_not_allowed(
    issuer: &str,
    namespace: &str,
    allowed_namespaces: &[String],
) -> Option<Violation> {
    if allowed_namespaces.is_empty()
        || allowed_namespaces
            .iter()
            .take(MAX_POLICY_ENTRIES)
            .any(|pattern| glob_matches(pattern, namespace))
    {
        return None;
    }
    Some(
        Violation::new(
            Reason::NamespaceNotAllowed,
            ISSUER_FIELD,
            issuer,
            format!(
                "names {}, which does not serve namespace {} (it serves: {})",
                ca(issuer),
                quote(namespace),
                text::list(
                    allowed_namespaces.iter().map(String::as_str),
                    LISTED_PATTERNS
                )
            ),
        )
        .with_suggestion(
            "set spec.issuerRef.name to a CertificateAuthority that serves this namespace, or ask \
             the platform team to add it to the CA's spec.policy.allowedNamespaces",
        ),
    )
}

/// `isCA: true` against a CA that does not issue CA certificates.
pub fn ca_not_allowed(issuer: &str, is_ca: bool, allow_ca: bool) -> Option<Violation> {
    (is_ca && !allow_ca).then(|| {
        Violation::new(
            Reason::CANotAllowed,
            "spec.isCA",
            "true",
            format!(
                "requests a CA certificate, which {} does not issue",
                ca(issuer)
            ),
        )
        .with_suggestion(
            "remove spec.isCA (a service certificate does not need it), or ask the platform team \
             for a CertificateAuthority with spec.policy.allowCA: true",
        )
    })
}

/// `usages` asking for `cert sign` or `crl sign` against a CA that does not
/// issue CA certificates. Those usages are what make a certificate sign
/// others (RFC 5280 allows keyCertSign only on a CA); refusing `isCA` alone
/// would let them through on a certificate marked as no CA.
pub fn ca_usage_not_allowed(
    issuer: &str,
    usages: &[KeyUsage],
    allow_ca: bool,
) -> Option<Violation> {
    if allow_ca {
        return None;
    }
    let (index, usage) = usages
        .iter()
        .enumerate()
        .find(|(_, usage)| matches!(usage, KeyUsage::CertSign | KeyUsage::CrlSign))?;
    Some(
        Violation::new(
            Reason::CANotAllowed,
            format!("spec.usages[{index}]"),
            usage.as_str(),
            format!(
                "is a usage only CA certificates have, and {} does not issue CA certificates",
                ca(issuer)
            ),
        )
        .with_suggestion(
            "remove \"cert sign\" and \"crl sign\" from spec.usages (a service certificate needs \
             neither), or ask the platform team for a CertificateAuthority with \
             spec.policy.allowCA: true",
        ),
    )
}

/// A key algorithm the CA does not allow. `requested` is the field as
/// written; `None` means the ECDSA default.
pub fn key_algorithm_not_allowed(
    issuer: &str,
    requested: Option<KeyAlgorithm>,
    allowed: &[KeyAlgorithm],
) -> Option<Violation> {
    let algorithm = requested.unwrap_or_default();
    if allowed.is_empty() || allowed.contains(&algorithm) {
        return None;
    }
    let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
    let default_note = if requested.is_none() {
        "(the default, as spec.privateKey.algorithm is not set) "
    } else {
        ""
    };
    let first = allowed.first().copied().unwrap_or_default();
    Some(
        Violation::new(
            Reason::KeyAlgorithmNotAllowed,
            "spec.privateKey.algorithm",
            algorithm.as_str(),
            format!(
                "{default_note}is not allowed by {} (allowed: {})",
                ca(issuer),
                names.join(", ")
            ),
        )
        .with_suggestion(format!(
            "set spec.privateKey.algorithm to {}",
            quote(first.as_str())
        )),
    )
}

/// An RSA key smaller than the CA's `minRSAKeySize`.
pub fn key_too_weak(
    issuer: &str,
    algorithm: KeyAlgorithm,
    size: Option<u32>,
    min_rsa_key_size: u32,
) -> Option<Violation> {
    let size = size?;
    (algorithm == KeyAlgorithm::Rsa && size < min_rsa_key_size).then(|| {
        Violation::new(
            Reason::KeyTooWeak,
            "spec.privateKey.size",
            &size.to_string(),
            format!(
                "is smaller than the {min_rsa_key_size}-bit minimum for RSA keys set by {}",
                ca(issuer)
            ),
        )
        .with_suggestion(format!("did you mean {min_rsa_key_size}?"))
    })
}

/// A certificate longer-lived than the CA's `maxDuration`. `requested` is
/// `spec.duration` as written; `None` means the 90-day default.
pub fn duration_exceeds_policy(
    issuer: &str,
    requested: Option<&str>,
    max_duration: &str,
) -> Option<Violation> {
    let max = parse_go_duration(max_duration).ok()?;
    let (value, duration, note) = match requested {
        Some(value) => (value.to_owned(), parse_go_duration(value).ok()?, ""),
        None => (
            format_go_duration(DEFAULT_DURATION),
            DEFAULT_DURATION,
            "(the default, as spec.duration is not set) ",
        ),
    };
    if duration <= max {
        return None;
    }
    Some(
        Violation::new(
            Reason::DurationExceedsPolicy,
            "spec.duration",
            &value,
            format!(
                "{note}is longer than the {} that {} allows",
                format_go_duration(max),
                ca(issuer)
            ),
        )
        .with_suggestion(format!(
            "set spec.duration to {} or less",
            quote(&format_go_duration(max))
        )),
    )
}

/// What the app owner probably meant by a DNS name that the policy refuses,
/// and a note on why it was refused, if a near miss exists.
fn dns_near_miss(name: &str, namespace: &str, patterns: &[String]) -> Option<(String, String)> {
    let name = name.to_lowercase();
    let name_labels: Vec<&str> = name.split('.').collect();
    // A name written for another namespace, or with the namespace misspelled:
    // the pattern matches once its {namespace} label may be anything.
    for pattern in patterns.iter().take(MAX_POLICY_ENTRIES) {
        let labels: Vec<&str> = pattern.split('.').collect();
        let Some(slot) = labels.iter().position(|l| *l == NAMESPACE_PLACEHOLDER) else {
            continue;
        };
        if labels.len() != name_labels.len() {
            continue;
        }
        let other = name_labels[slot];
        let mut probe = labels.clone();
        probe[slot] = other;
        if !dns_pattern_matches(&instantiate(&probe.join("."), namespace), &name) {
            continue;
        }
        let mut fixed = name_labels.clone();
        fixed[slot] = namespace;
        let note = if suggest::edit_distance_within(
            other,
            namespace,
            suggest::typo_budget(namespace.len()),
        )
        .is_some()
        {
            format!("{} looks like a misspelling of the namespace", quote(other))
        } else {
            format!(
                "{} is another namespace; a ServiceCertificate may only request names of its own \
                 namespace",
                quote(other)
            )
        };
        return Some((fixed.join("."), note));
    }
    // Otherwise the closest name each pattern would allow, with the wildcard
    // filled by the requested name's first label.
    let candidates: Vec<String> = patterns
        .iter()
        .take(MAX_POLICY_ENTRIES)
        .map(|pattern| {
            let pattern = instantiate(pattern, namespace);
            match pattern.strip_prefix("*.") {
                Some(rest) => format!("{}.{rest}", name_labels[0]),
                None => pattern,
            }
        })
        .filter(|candidate| is_valid_dns_name(candidate) && *candidate != name)
        .collect();
    // Labels left out (`api` or `api.svc.cluster.local`): the name's labels
    // appear, in order, in the candidate. Prefer the shortest such candidate.
    let is_subsequence = |candidate: &str| {
        let mut labels = candidate.split('.');
        name_labels
            .iter()
            .all(|wanted| labels.any(|l| l == *wanted))
    };
    if let Some(candidate) = candidates
        .iter()
        .filter(|candidate| is_subsequence(candidate))
        .min_by_key(|candidate| candidate.len())
    {
        return Some((
            candidate.clone(),
            "it is missing part of the allowed suffix".to_owned(),
        ));
    }
    let closest = suggest::closest(&name, candidates.iter().map(String::as_str))?;
    Some((closest.to_owned(), "it looks like a misspelling".to_owned()))
}

/// A DNS name that no `allowedDNSNames` pattern allows for this namespace.
pub fn dns_name_not_allowed(
    issuer: &str,
    namespace: &str,
    field: &str,
    name: &str,
    patterns: &[String],
) -> Option<Violation> {
    if patterns.is_empty() {
        return Some(kind_not_allowed(
            issuer,
            field,
            name,
            "DNS names",
            "allowedDNSNames",
        ));
    }
    if patterns
        .iter()
        .take(MAX_POLICY_ENTRIES)
        .any(|pattern| dns_pattern_matches(&instantiate(pattern, namespace), name))
    {
        return None;
    }
    let allowed: Vec<String> = patterns
        .iter()
        .map(|pattern| instantiate(pattern, namespace))
        .collect();
    let mut message = format!(
        "is not allowed by {} for namespace {} (allowed: {})",
        ca(issuer),
        quote(namespace),
        text::list(allowed.iter().map(String::as_str), LISTED_PATTERNS)
    );
    let violation = match dns_near_miss(name, namespace, patterns) {
        Some((fixed, note)) => {
            message.push_str(&format!(": {note}"));
            Violation::new(Reason::PolicyViolation, field, name, message).did_you_mean(&fixed)
        }
        None => Violation::new(Reason::PolicyViolation, field, name, message).with_suggestion(
            "request a name matching one of those patterns (\"*\" stands for exactly one label), \
             or ask the platform team for a CertificateAuthority that allows this one",
        ),
    };
    Some(violation)
}

/// An IP address outside every `allowedIPRanges` CIDR.
pub fn ip_address_not_allowed(
    issuer: &str,
    field: &str,
    address: &str,
    ranges: &[String],
) -> Option<Violation> {
    let ip: IpAddr = address.parse().ok()?;
    if ranges.is_empty() {
        return Some(kind_not_allowed(
            issuer,
            field,
            address,
            "IP addresses",
            "allowedIPRanges",
        ));
    }
    if ranges
        .iter()
        .take(MAX_POLICY_ENTRIES)
        .filter_map(|range| Cidr::parse(range))
        .any(|cidr| cidr.contains(ip))
    {
        return None;
    }
    Some(
        Violation::new(
            Reason::PolicyViolation,
            field,
            address,
            format!(
                "is outside the IP ranges {} allows ({})",
                ca(issuer),
                text::list(ranges.iter().map(String::as_str), LISTED_PATTERNS)
            ),
        )
        .with_suggestion(
            "use the Service's or Pod's address from one of those ranges, or ask the platform team",
        ),
    )
}

/// A URI that starts with none of the `allowedURIPrefixes`.
pub fn uri_not_allowed(
    issuer: &str,
    namespace: &str,
    field: &str,
    uri: &str,
    prefixes: &[String],
) -> Option<Violation> {
    let prefixes: Vec<&String> = prefixes.iter().take(MAX_POLICY_ENTRIES).collect();
    let instantiated: Vec<String> = prefixes
        .iter()
        .map(|prefix| prefix.replace(NAMESPACE_PLACEHOLDER, namespace))
        .collect();
    if prefixes.is_empty() {
        return Some(kind_not_allowed(
            issuer,
            field,
            uri,
            "URIs",
            "allowedURIPrefixes",
        ));
    }
    // As written, and as a reader that decodes first sees it (a decoded
    // "%3F" could otherwise hide a later segment from the second look).
    let decoded = percent_decoded(uri);
    if let Some(segment) = dot_segment(uri).or_else(|| dot_segment(&decoded)) {
        return Some(
            Violation::new(
                Reason::PolicyViolation,
                field,
                uri,
                format!(
                    "is not allowed by {} for namespace {}: it has the path segment {}, which URI \
                     parsers resolve, so it may name another identity than the allowed prefix \
                     it starts with (allowed prefixes: {})",
                    ca(issuer),
                    quote(namespace),
                    quote(segment),
                    text::list(instantiated.iter().map(String::as_str), LISTED_PATTERNS)
                ),
            )
            .with_suggestion("write the URI without \".\" or \"..\" path segments"),
        );
    }
    if prefixes
        .iter()
        .zip(&instantiated)
        .any(|(template, prefix)| uri_prefix_matches(template, prefix, uri))
    {
        return None;
    }
    let message = format!(
        "is not allowed by {} for namespace {} (allowed prefixes: {})",
        ca(issuer),
        quote(namespace),
        text::list(instantiated.iter().map(String::as_str), LISTED_PATTERNS)
    );
    let violation = Violation::new(Reason::PolicyViolation, field, uri, message);
    Some(
        match uri_near_miss(uri, namespace, &prefixes, &instantiated) {
            Some(fixed) => violation.did_you_mean(&fixed),
            None => violation.with_suggestion("use a URI that starts with one of those prefixes"),
        },
    )
}

fn uri_near_miss(
    uri: &str,
    namespace: &str,
    prefixes: &[&String],
    instantiated: &[String],
) -> Option<String> {
    // Another namespace in the {namespace} slot.
    for prefix in prefixes {
        let Some((before, after)) = prefix.split_once(NAMESPACE_PLACEHOLDER) else {
            continue;
        };
        let Some(rest) = uri.strip_prefix(before) else {
            continue;
        };
        let end = if after.is_empty() {
            rest.find('/').unwrap_or(rest.len())
        } else {
            let Some(end) = rest.find(after) else {
                continue;
            };
            end
        };
        let other = &rest[..end];
        if !other.is_empty() && !other.contains('/') {
            return Some(format!("{before}{namespace}{}", &rest[end..]));
        }
    }
    // A typo in the prefix: compare the URI's start, cut near the prefix's
    // length, and keep the rest of the URI.
    let mut best: Option<(usize, String)> = None;
    for prefix in instantiated {
        let len = prefix.chars().count();
        if len > suggest::MAX_COMPARED_CHARS {
            continue;
        }
        let boundaries: Vec<usize> = uri
            .char_indices()
            .map(|(index, _)| index)
            .chain(std::iter::once(uri.len()))
            .take(len + 4)
            .collect();
        for cut in len.saturating_sub(3)..=len + 3 {
            let Some(&index) = boundaries.get(cut) else {
                continue;
            };
            let Some(distance) =
                suggest::edit_distance_within(&uri[..index], prefix, suggest::typo_budget(len))
            else {
                continue;
            };
            if distance > 0 && best.as_ref().is_none_or(|(d, _)| distance < *d) {
                best = Some((distance, format!("{prefix}{}", &uri[index..])));
            }
        }
    }
    best.map(|(_, fixed)| fixed)
}

/// Whether `uri` starts with `prefix` (the policy's `template` with the
/// namespace filled in). A template that ends with `{namespace}` matches
/// only up to a segment boundary: `spiffe://cluster.local/ns/{namespace}`
/// must give namespace `team` its own identities, not `team-b`'s.
fn uri_prefix_matches(template: &str, prefix: &str, uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix(prefix) else {
        return false;
    };
    !template.ends_with(NAMESPACE_PLACEHOLDER)
        || rest.is_empty()
        || rest.starts_with(['/', '?', '#'])
}

/// `uri` with every `%XX` escape decoded (an invalid escape, or bytes that
/// do not decode as UTF-8, are kept as written). A URI must start with an
/// allowed prefix as written, and must not climb out of it once a reader
/// decodes it: `ns/shop%2F..%2Fpayments` reads as payments' identity to a
/// verifier that decodes before resolving dot segments.
fn percent_decoded(uri: &str) -> String {
    let bytes = uri.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded).unwrap_or_else(|_| uri.to_owned())
}

/// The first `.` or `..` path segment of `uri`, percent-encoded or not.
/// Parsers that resolve dot segments (RFC 3986 section 5.2.4, the WHATWG
/// URL standard of Rust's `url` and JavaScript's `URL`) read
/// `spiffe://cluster.local/ns/shop/../payments/sa/api` as payments'
/// identity, while a prefix check sees shop's.
fn dot_segment(uri: &str) -> Option<&str> {
    let rest = uri.split_once(':').map_or(uri, |(_, rest)| rest);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    path.split('/').find(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// An email address whose domain is not in `allowedEmailDomains`.
pub fn email_domain_not_allowed(
    issuer: &str,
    field: &str,
    address: &str,
    domains: &[String],
) -> Option<Violation> {
    let (local, domain) = address.rsplit_once('@')?;
    if domains.is_empty() {
        return Some(kind_not_allowed(
            issuer,
            field,
            address,
            "email addresses",
            "allowedEmailDomains",
        ));
    }
    if domains
        .iter()
        .take(MAX_POLICY_ENTRIES)
        .any(|allowed| allowed.eq_ignore_ascii_case(domain))
    {
        return None;
    }
    let violation = Violation::new(
        Reason::PolicyViolation,
        field,
        address,
        format!(
            "is in the domain {}, which {} does not allow (allowed: {})",
            quote(domain),
            ca(issuer),
            text::list(domains.iter().map(String::as_str), LISTED_PATTERNS)
        ),
    );
    Some(
        match suggest::closest(
            domain,
            domains.iter().take(MAX_POLICY_ENTRIES).map(String::as_str),
        ) {
            Some(closest) => violation.did_you_mean(&format!("{local}@{closest}")),
            None => violation.with_suggestion("use an address in one of those domains"),
        },
    )
}

/// A common name that is none of the certificate's subject alternative
/// names. Clients that match peers by common name (PostgreSQL `clientcert`,
/// NATS `verify_and_map`, Kafka, many meshes) would otherwise accept an
/// identity the policy never judged: `system:serviceaccount:payments:api`
/// is not a DNS name, so no pattern would ever refuse it. Equal to a SAN, it
/// is judged with that SAN.
pub fn common_name_not_in_sans(spec: &ServiceCertificateSpec) -> Option<Violation> {
    let common_name = spec.common_name.as_deref().filter(|cn| !cn.is_empty())?;
    let same_ip = |written: &String| {
        matches!(
            (written.parse::<IpAddr>(), common_name.parse::<IpAddr>()),
            (Ok(a), Ok(b)) if a == b
        )
    };
    let listed = spec
        .dns_names
        .iter()
        .any(|name| name.eq_ignore_ascii_case(common_name))
        || spec.ip_addresses.iter().any(same_ip)
        || spec.uris.iter().any(|uri| uri == common_name)
        || spec
            .email_addresses
            .iter()
            .any(|email| email == common_name);
    if listed {
        return None;
    }
    let host = common_name.strip_suffix('.').unwrap_or(common_name);
    let list = if common_name.parse::<IpAddr>().is_ok() {
        Some("spec.ipAddresses")
    } else if is_valid_dns_name(&host.to_ascii_lowercase()) {
        Some("spec.dnsNames")
    } else if common_name.contains("://") {
        Some("spec.uris")
    } else if common_name.contains('@') {
        Some("spec.emailAddresses")
    } else {
        None
    };
    let violation = Violation::new(
        Reason::CommonNameNotInSANs,
        "spec.commonName",
        common_name,
        "is not one of the certificate's subject alternative names (spec.dnsNames, \
         spec.ipAddresses, spec.uris, spec.emailAddresses); the CertificateAuthority's policy \
         signs a common name only when it is also one of those names, so that it is judged \
         like them",
    );
    Some(match list {
        Some("spec.dnsNames") if host != common_name || host.to_ascii_lowercase() != host => {
            let lower = host.to_ascii_lowercase();
            violation.with_suggestion(format!(
                "add {} to spec.dnsNames and write spec.commonName the same way (lower case, \
                 no trailing dot), or remove spec.commonName",
                quote(&lower)
            ))
        }
        Some(list) => violation.with_suggestion(format!(
            "add {} to {list} as well, or remove spec.commonName (clients match the subject \
             alternative names)",
            quote(common_name)
        )),
        None => violation.with_suggestion(
            "remove spec.commonName, or set it to one of the certificate's DNS names, IP \
             addresses, URIs or email addresses",
        ),
    })
}

/// A usage the CA's policy does not allow. `cert sign` and `crl sign` are
/// left to [`ca_usage_not_allowed`], which judges them by `allowCA`.
pub fn usage_not_allowed(
    issuer: &str,
    spec: &ServiceCertificateSpec,
    policy: &IssuerPolicy,
) -> Option<Violation> {
    let allowed = policy.allowed_usages();
    let (index, usage) = spec
        .effective_usages()
        .iter()
        .enumerate()
        .find(|(_, usage)| {
            !matches!(usage, KeyUsage::CertSign | KeyUsage::CrlSign) && !allowed.contains(usage)
        })?;
    let allowed_words: Vec<&str> = allowed.iter().map(|usage| usage.as_str()).collect();
    let (field, note) = if spec.usages.is_empty() {
        (
            "spec.usages".to_owned(),
            "(one of the defaults, as spec.usages is not set) ",
        )
    } else {
        (format!("spec.usages[{index}]"), "")
    };
    Some(
        Violation::new(
            Reason::UsageNotAllowed,
            field,
            usage.as_str(),
            format!(
                "{note}is a usage {} does not sign (allowed: {})",
                ca(issuer),
                allowed_words.join(", ")
            ),
        )
        .with_suggestion(format!(
            "remove {} from spec.usages, or ask the platform team to add it to the \
             CertificateAuthority's spec.policy.allowedUsages",
            quote(usage.as_str())
        )),
    )
}

/// Every way `spec` breaks `policy` for a request from `namespace`, in the
/// order an app owner should fix them; at most one per field, and names
/// beyond the first [`MAX_NAMES`] of each list are not examined.
pub fn policy_violations(
    spec: &ServiceCertificateSpec,
    namespace: &str,
    issuer: &str,
    policy: &IssuerPolicy,
) -> Vec<Violation> {
    if let Some(broken) = invalid_issuer_policy(issuer, policy) {
        return vec![broken];
    }
    let algorithm = spec.private_key.as_ref().and_then(|key| key.algorithm);
    let size = spec.key_size();
    let min_rsa = policy.min_rsa_key_size.unwrap_or(DEFAULT_MIN_RSA_KEY_SIZE);
    let mut found: Vec<Violation> = [
        namespace_not_allowed(issuer, namespace, &policy.allowed_namespaces),
        ca_not_allowed(issuer, spec.is_ca.unwrap_or(false), policy.allows_ca()),
        ca_usage_not_allowed(issuer, &spec.usages, policy.allows_ca()),
        usage_not_allowed(issuer, spec, policy),
        key_algorithm_not_allowed(issuer, algorithm, &policy.allowed_key_algorithms),
        key_too_weak(issuer, algorithm.unwrap_or_default(), size, min_rsa),
        policy
            .max_duration
            .as_deref()
            .and_then(|max| duration_exceeds_policy(issuer, spec.duration.as_deref(), max)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if found
        .iter()
        .any(|v| v.reason == Reason::NamespaceNotAllowed)
    {
        // Names are judged per namespace; for a namespace the CA does not
        // serve at all, listing them would only bury the real problem.
        return found;
    }
    found.extend(common_name_not_in_sans(spec));
    for (i, name) in spec.dns_names.iter().take(MAX_NAMES).enumerate() {
        found.extend(dns_name_not_allowed(
            issuer,
            namespace,
            &format!("spec.dnsNames[{i}]"),
            name,
            &policy.allowed_dns_names,
        ));
    }
    for (i, address) in spec.ip_addresses.iter().take(MAX_NAMES).enumerate() {
        found.extend(ip_address_not_allowed(
            issuer,
            &format!("spec.ipAddresses[{i}]"),
            address,
            &policy.allowed_ip_ranges,
        ));
    }
    for (i, uri) in spec.uris.iter().take(MAX_NAMES).enumerate() {
        found.extend(uri_not_allowed(
            issuer,
            namespace,
            &format!("spec.uris[{i}]"),
            uri,
            &policy.allowed_uri_prefixes,
        ));
    }
    for (i, address) in spec.email_addresses.iter().take(MAX_NAMES).enumerate() {
        found.extend(email_domain_not_allowed(
            issuer,
            &format!("spec.emailAddresses[{i}]"),
            address,
            &policy.allowed_email_domains,
        ));
    }
    found
}

/// What a CertificateAuthority without any policy refuses: CA certificates
/// and the usages only they have. Everything else is signed, for any
/// namespace; the CA's status warns its operators of exactly that.
pub fn open_policy_violations(spec: &ServiceCertificateSpec, issuer: &str) -> Vec<Violation> {
    [
        ca_not_allowed(issuer, spec.is_ca.unwrap_or(false), false),
        ca_usage_not_allowed(issuer, &spec.usages, false),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The first way `spec` breaks `policy`, if any. Run [`crate::validate_spec`]
/// first: policy checks assume well-formed names and durations.
pub fn check_policy(
    spec: &ServiceCertificateSpec,
    namespace: &str,
    issuer: &str,
    policy: &IssuerPolicy,
) -> Option<Violation> {
    policy_violations(spec, namespace, issuer, policy)
        .into_iter()
        .next()
}

/// What the signer reports for `spec` from `namespace` against the
/// CertificateAuthority `issuer`: the first spec violation, else the first
/// policy violation. `policy` is `None` for a CA without a policy, which
/// allows any namespace and name but no CA certificates.
pub fn diagnose(
    spec: &ServiceCertificateSpec,
    namespace: &str,
    issuer: &str,
    policy: Option<&IssuerPolicy>,
) -> Option<Violation> {
    first_violation(spec).or_else(|| match policy {
        Some(policy) => check_policy(spec, namespace, issuer, policy),
        None => open_policy_violations(spec, issuer).into_iter().next(),
    })
}

/// The names a CA certificate issued to `namespace` may itself sign, as
/// X.509 name constraints can say them. Each list is what the policy allows
/// that namespace, widened to what name constraints can express: a DNS
/// pattern becomes the subtree below its fixed labels (`*.shop.svc` →
/// `shop.svc`, which also covers deeper names), since constraints cannot
/// count labels. URIs get nothing: X.509 constrains a URI by its host alone,
/// and a prefix such as `spiffe://cluster.local/ns/shop/` is a path, so no
/// constraint could keep a sub-CA inside it. An empty list permits nothing
/// of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubCaNames {
    /// DNS subtrees, lower case, without a leading `*.`.
    pub dns_subtrees: Vec<String>,
    /// IP ranges as (network address, prefix length).
    pub ip_ranges: Vec<(IpAddr, u8)>,
    /// Email domains.
    pub email_domains: Vec<String>,
}

/// The [`SubCaNames`] for a CA certificate requested from `namespace`.
pub fn sub_ca_names(policy: &IssuerPolicy, namespace: &str) -> SubCaNames {
    let mut dns_subtrees: Vec<String> = policy
        .allowed_dns_names
        .iter()
        .take(MAX_POLICY_ENTRIES)
        .map(|pattern| {
            let pattern = instantiate(pattern, namespace);
            pattern
                .strip_prefix("*.")
                .map_or(pattern.clone(), str::to_owned)
        })
        .filter(|subtree| is_valid_dns_name(subtree))
        .collect();
    dns_subtrees.sort();
    dns_subtrees.dedup();
    let ip_ranges = policy
        .allowed_ip_ranges
        .iter()
        .take(MAX_POLICY_ENTRIES)
        .filter_map(|range| Cidr::parse(range))
        .map(|cidr| (cidr.network_address(), cidr.prefix))
        .collect();
    let email_domains = policy
        .allowed_email_domains
        .iter()
        .take(MAX_POLICY_ENTRIES)
        .map(|domain| domain.to_ascii_lowercase())
        .collect();
    SubCaNames {
        dns_subtrees,
        ip_ranges,
        email_domains,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_team_prefixes() {
        assert!(glob_matches("team-*", "team-payments"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("team-*", "payments"));
        assert!(!glob_matches("prod", "prod-2"));
    }

    #[test]
    fn cidrs_contain_their_addresses_only() {
        let ten = Cidr::parse("10.0.0.0/8").expect("valid");
        assert!(ten.contains("10.1.2.3".parse().expect("ip")));
        assert!(!ten.contains("11.0.0.1".parse().expect("ip")));
        assert!(ten.contains("::ffff:10.0.0.1".parse().expect("ip")));
        let all = Cidr::parse("0.0.0.0/0").expect("valid");
        assert!(all.contains("192.168.1.1".parse().expect("ip")));
        let v6 = Cidr::parse("fd00::/8").expect("valid");
        assert!(v6.contains("fd12::1".parse().expect("ip")));
        assert!(!v6.contains("10.0.0.1".parse().expect("ip")));
        let any_v6 = Cidr::parse("::/0").expect("valid");
        assert!(any_v6.contains("fd12::1".parse().expect("ip")));
        assert!(
            !any_v6.contains("::ffff:192.168.1.1".parse().expect("ip")),
            "an IPv4-mapped address is IPv4"
        );
        assert!(Cidr::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn a_wildcard_pattern_matches_exactly_one_label() {
        assert!(dns_pattern_matches("*.default.svc", "api.default.svc"));
        assert!(dns_pattern_matches("*.default.svc", "*.default.svc"));
        assert!(!dns_pattern_matches("*.default.svc", "v1.api.default.svc"));
        assert!(!dns_pattern_matches("*.default.svc", "default.svc"));
    }
}
