//! Checks on the names a certificate carries: DNS names, IP addresses, URIs,
//! email addresses, the common name, and the Secret name.
//!
//! Each function is named after the violation it finds and returns `None`
//! when the value does not have that problem. They are independent of one
//! another; [`crate::validate_spec`] runs them in an order where the most specific
//! diagnosis comes first (a URL in `dnsNames` is reported as a URL, not as a
//! name with a bad character).

use std::net::{IpAddr, SocketAddr};

use crate::reason::Reason;
use crate::suggest;
use crate::text::{self, quote, quote_fix};
use crate::violation::Violation;

/// Longest DNS name in a certificate, without the root dot (RFC 1035).
pub const MAX_DNS_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
pub const MAX_DNS_LABEL_LEN: usize = 63;
/// Longest common name, in characters (X.509 `ub-common-name`).
pub const MAX_COMMON_NAME_CHARS: usize = 64;
/// Longest Kubernetes object name (a DNS-1123 subdomain).
pub const MAX_SECRET_NAME_LEN: usize = 253;

/// Whether `name` is a valid lower-case DNS name for a certificate: labels of
/// `a-z`, `0-9` and `-`, not starting or ending with `-`, at most 63
/// characters each and 253 in total; the leftmost label may be `*`.
pub fn is_valid_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DNS_NAME_LEN
        && name
            .split('.')
            .enumerate()
            .all(|(i, label)| (i == 0 && label == "*" && name.len() > 2) || is_valid_label(label))
}

fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_DNS_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn describe_invisible(c: char) -> String {
    let name = match c {
        '\n' => "a newline",
        '\r' => "a carriage return",
        '\t' => "a tab",
        '\u{00A0}' => "a non-breaking space",
        '\u{00AD}' => "a soft hyphen",
        '\u{200B}' => "a zero-width space",
        '\u{200C}' | '\u{200D}' => "a zero-width joiner",
        '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {
            "a text-direction mark"
        }
        '\u{FEFF}' => "a byte-order mark",
        _ => "an invisible character",
    };
    format!("{name} (U+{:04X})", u32::from(c))
}

/// A value containing control or invisible characters: a newline from a YAML
/// block scalar, a zero-width space or non-breaking space pasted from a chat
/// tool. Applies to every string field.
pub fn control_characters(field: &str, value: &str) -> Option<Violation> {
    let (position, c) = value
        .chars()
        .enumerate()
        .find(|&(_, c)| text::is_invisible(c))?;
    let mut message = format!(
        "contains {} at character {}, which does not show in most editors",
        describe_invisible(c),
        position + 1
    );
    if value.ends_with('\n') {
        message.push_str(" (a YAML block scalar such as `|` or `>` adds a trailing newline)");
    }
    let cleaned: String = value.chars().filter(|&c| !text::is_invisible(c)).collect();
    let cleaned = cleaned.trim();
    let violation = Violation::new(Reason::ControlCharacters, field, value, message);
    Some(if cleaned.is_empty() {
        violation.with_suggestion("remove the entry")
    } else {
        violation.with_suggestion(format!(
            "retype it as {} without copy and paste",
            quote_fix(cleaned)
        ))
    })
}

/// A DNS name with non-ASCII characters: either look-alike letters from
/// another script (a Cyrillic `а` in `pаyments`) or a real internationalized
/// name that must be written in its punycode `xn--` form.
pub fn non_ascii_name(field: &str, value: &str) -> Option<Violation> {
    let c = value.chars().find(|c| !c.is_ascii())?;
    if let Some(ascii) = suggest::ascii_look_alike(c)
        && let Some(folded) = suggest::fold_look_alikes(value)
    {
        let message = format!(
            "contains \"{c}\" (U+{:04X}), which looks like the ASCII \"{ascii}\" but is a different \
             character, so clients would never match this name",
            u32::from(c)
        );
        let violation = Violation::new(Reason::NonASCIIName, field, value, message);
        let folded = folded.to_lowercase();
        return Some(if is_valid_dns_name(&folded) {
            violation.did_you_mean(&folded)
        } else {
            violation.with_suggestion(format!("retype it with the ASCII \"{ascii}\""))
        });
    }
    let message = format!(
        "contains the non-ASCII character \"{}\" (U+{:04X}); certificates carry \
         internationalized names in their ASCII punycode form, starting with \"xn--\"",
        text::escape(&c.to_string()),
        u32::from(c)
    );
    let violation = Violation::new(Reason::NonASCIIName, field, value, message);
    Some(
        match suggest::to_ascii_hostname(&value.trim().to_lowercase()) {
            Some(ascii) if is_valid_dns_name(&ascii) => violation.with_suggestion(format!(
                "write the punycode form {} instead",
                quote_fix(&ascii)
            )),
            _ => violation.with_suggestion(
                "write its punycode form (\"xn--...\"), for example as printed by `idn2 <name>`",
            ),
        },
    )
}

/// The host of a URL-looking value (`https://user@api.example.com:8443/x`).
fn url_host(value: &str) -> Option<&str> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_port.starts_with('[') {
        host_port
            .split(']')
            .next()
            .unwrap_or_default()
            .trim_start_matches('[')
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then_some(host)
}

/// A URL written where a hostname belongs: `https://api.example.com/`.
pub fn dns_name_is_url(field: &str, value: &str) -> Option<Violation> {
    if !value.contains("://") {
        return None;
    }
    let message = "is a URL; dnsNames holds bare hostnames, and URLs belong in spec.uris";
    let violation = Violation::new(Reason::DNSNameIsURL, field, value, message);
    Some(match url_host(value).map(str::to_lowercase) {
        Some(host) if host.parse::<IpAddr>().is_ok() => violation.with_suggestion(format!(
            "move the address {} to spec.ipAddresses",
            quote_fix(&host)
        )),
        Some(host) => violation.with_suggestion(format!(
            "write just the hostname {}, or move the whole URL to spec.uris",
            quote_fix(&host)
        )),
        None => violation.with_suggestion("write just the hostname, or move the URL to spec.uris"),
    })
}

/// An email address written in `dnsNames`.
pub fn dns_name_is_email_address(field: &str, value: &str) -> Option<Violation> {
    let (local, domain) = value.split_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(
        Violation::new(
            Reason::DNSNameIsEmailAddress,
            field,
            value,
            "is an email address, which a DNS name cannot be",
        )
        .with_suggestion(format!(
            "move {} to spec.emailAddresses",
            quote_fix(value.trim())
        )),
    )
}

/// The address in a value like `10.0.0.1`, `[fd00::1]`, `10.0.0.1:8443` or
/// `fe80::1%eth0`.
fn loose_ip_address(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = value.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let unbracketed = value.trim_start_matches('[').trim_end_matches(']');
    let without_zone = unbracketed.split('%').next().unwrap_or_default();
    without_zone.parse::<IpAddr>().ok()
}

/// An IP address written in `dnsNames`; it belongs in `ipAddresses`, where
/// clients look for it (a client connecting to 10.0.0.1 ignores DNS SANs).
pub fn dns_name_is_ip_address(field: &str, value: &str) -> Option<Violation> {
    let ip = loose_ip_address(value)?;
    Some(
        Violation::new(
            Reason::DNSNameIsIPAddress,
            field,
            value,
            "is an IP address; clients only match addresses listed in spec.ipAddresses",
        )
        .with_suggestion(format!(
            "move {} to spec.ipAddresses",
            quote_fix(&ip.to_string())
        )),
    )
}

/// A DNS name longer than 253 characters (a trailing root dot not counted).
pub fn dns_name_too_long(field: &str, value: &str) -> Option<Violation> {
    let len = value.strip_suffix('.').unwrap_or(value).len();
    (len > MAX_DNS_NAME_LEN).then(|| {
        Violation::new(
            Reason::DNSNameTooLong,
            field,
            value,
            format!("is {len} characters long; a DNS name has at most {MAX_DNS_NAME_LEN}"),
        )
        .with_suggestion("use a shorter name, or a wildcard such as \"*.<parent domain>\"")
    })
}

/// A DNS name with a label longer than 63 characters.
pub fn dns_label_too_long(field: &str, value: &str) -> Option<Violation> {
    let (index, label) = value
        .split('.')
        .enumerate()
        .find(|(_, label)| label.len() > MAX_DNS_LABEL_LEN)?;
    Some(
        Violation::new(
            Reason::DNSLabelTooLong,
            field,
            value,
            format!(
                "has a {} label {} characters long; each dot-separated part of a DNS name has at \
                 most {MAX_DNS_LABEL_LEN}",
                ordinal(index + 1),
                label.len()
            ),
        )
        .with_suggestion(format!(
            "shorten that label to {MAX_DNS_LABEL_LEN} characters or fewer"
        )),
    )
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A `*` anywhere but as the whole leftmost label: `api.*.svc`, `api-*.example.com`.
pub fn wildcard_not_leftmost(field: &str, value: &str) -> Option<Violation> {
    let labels: Vec<&str> = value.split('.').collect();
    let (index, label) = labels
        .iter()
        .enumerate()
        .find(|&(i, label)| label.contains('*') && !(i == 0 && *label == "*"))?;
    let rest = labels.get(index + 1..).unwrap_or_default().join(".");
    let message = if index == 0 {
        format!(
            "uses \"*\" inside the label {}; a wildcard must be the whole leftmost label and \
             matches exactly one label",
            quote(label)
        )
    } else {
        format!(
            "has \"*\" in its {} label; a wildcard may only be the whole leftmost label, as in \
             \"*.example.com\"",
            ordinal(index + 1)
        )
    };
    let violation = Violation::new(Reason::WildcardNotLeftmost, field, value, message);
    let wildcard = format!("*.{rest}");
    Some(
        if index == 0 && is_valid_dns_name(&wildcard) && rest.contains('.') {
            violation.did_you_mean(&wildcard)
        } else {
            violation.with_suggestion(
                "list each name explicitly, or use a wildcard as the whole leftmost label",
            )
        },
    )
}

/// What is wrong with a DNS name, in the words an app owner would use.
fn dns_name_problem(value: &str) -> Option<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Some("is empty".to_owned());
    }
    if let Some(c) = trimmed.chars().find(|c| *c == ',' || c.is_whitespace()) {
        let what = if c == ',' { "a comma" } else { "a space" };
        return Some(format!(
            "contains {what}; each entry of dnsNames is one name"
        ));
    }
    if trimmed != value {
        return Some("has leading or trailing spaces".to_owned());
    }
    if value.chars().any(|c| c.is_ascii_uppercase()) {
        return Some(
            "contains upper-case letters; certflow requires lower-case DNS names so that \
             policy matching and duplicate detection are exact"
                .to_owned(),
        );
    }
    if value.len() > 1 && value.ends_with('.') {
        return Some("ends with a dot; certificates hold names without the root dot".to_owned());
    }
    if value.starts_with('.') {
        return Some(
            "starts with a dot; to cover every name under a domain, use a wildcard".to_owned(),
        );
    }
    if value.contains("..") {
        return Some("has an empty label (two dots in a row)".to_owned());
    }
    if value.contains('_') {
        return Some(
            "contains \"_\", which hostnames may not contain (Kubernetes Service names use \"-\")"
                .to_owned(),
        );
    }
    if let Some((_, port)) = value.rsplit_once(':')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return Some("has a port; a certificate covers a host on every port".to_owned());
    }
    if value.contains('/') {
        return Some("contains \"/\"; a DNS name has no path".to_owned());
    }
    if let Some(label) = value
        .split('.')
        .find(|label| label.starts_with('-') || label.ends_with('-'))
    {
        return Some(format!(
            "has the label {}, which starts or ends with \"-\"",
            quote(label)
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '*')))
    {
        return Some(format!(
            "contains {}, which DNS names may not contain (only a-z, 0-9, \"-\" and \".\")",
            quote(&c.to_string())
        ));
    }
    if value == "*" {
        return Some(
            "is a wildcard with no domain after it; a wildcard is the leftmost label of a longer \
             name and covers one label under that domain"
                .to_owned(),
        );
    }
    (!is_valid_dns_name(value)).then(|| "is not a valid DNS name".to_owned())
}

/// `value` with the usual mistakes undone, if that yields a valid name.
fn repaired_dns_name(value: &str) -> Option<String> {
    let mut name = value.trim().to_lowercase();
    if let Some((host, _)) = name.split_once('/') {
        name = host.to_owned();
    }
    if let Some((host, port)) = name.rsplit_once(':')
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        name = host.to_owned();
    }
    name = name.replace('_', "-");
    name = name.trim_end_matches('.').to_owned();
    if let Some(rest) = name.strip_prefix('.') {
        name = format!("*.{}", rest.trim_start_matches('.'));
    }
    let labels: Vec<&str> = name
        .split('.')
        .filter(|label| !label.is_empty())
        .map(|label| label.trim_matches('-'))
        .collect();
    let name = labels.join(".");
    (is_valid_dns_name(&name) && name != value).then_some(name)
}

/// A value that is not a valid lower-case DNS name for another reason: empty,
/// spaces, upper case, a trailing dot, an underscore, a port, a bad character.
pub fn invalid_dns_name(field: &str, value: &str) -> Option<Violation> {
    let problem = dns_name_problem(value)?;
    let violation = Violation::new(Reason::InvalidDNSName, field, value, problem);
    let parts: Vec<&str> = value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .collect();
    Some(if parts.len() > 1 {
        let names: Vec<String> = parts.iter().take(5).map(|part| quote_fix(part)).collect();
        violation.with_suggestion(format!(
            "write each name as its own list entry: {}",
            names.join(", ")
        ))
    } else if let Some(repaired) = repaired_dns_name(value) {
        violation.did_you_mean(&repaired)
    } else if value.trim().is_empty() {
        violation
            .with_suggestion("remove the entry or write a hostname such as \"api.default.svc\"")
    } else if value == "*" {
        violation.with_suggestion("add the domain it covers, such as \"*.api.default.svc\"")
    } else {
        violation.with_suggestion(
            "use lower-case letters, digits, \"-\" and \".\", such as \"api.default.svc\"",
        )
    })
}

/// The address meant by an almost-valid IP address, and what was wrong.
fn repaired_ip_address(value: &str) -> Option<(IpAddr, &'static str)> {
    let trimmed = value.trim();
    if trimmed != value
        && let Ok(ip) = trimmed.parse()
    {
        return Some((ip, "has leading or trailing spaces"));
    }
    if let Some((address, prefix)) = trimmed.split_once('/')
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && let Ok(ip) = address.parse()
    {
        return Some((
            ip,
            "is a range (CIDR); a certificate lists single addresses, not ranges",
        ));
    }
    if trimmed.starts_with('[') || trimmed.contains('%') || trimmed.parse::<SocketAddr>().is_ok() {
        let ip = loose_ip_address(trimmed)?;
        return Some((
            ip,
            "is not a plain address (it has a port, brackets or a zone); write the address alone",
        ));
    }
    // Leading zeros, which many tools read as octal: 010.0.0.1.
    let octets: Vec<&str> = trimmed.split('.').collect();
    if octets.len() == 4
        && octets
            .iter()
            .all(|o| !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()))
    {
        let cleaned: Vec<&str> = octets
            .iter()
            .map(|o| {
                let stripped = o.trim_start_matches('0');
                if stripped.is_empty() { "0" } else { stripped }
            })
            .collect();
        if let Ok(ip) = cleaned.join(".").parse() {
            return Some((ip, "has leading zeros, which some software reads as octal"));
        }
    }
    None
}

/// An entry of `ipAddresses` that is not a single IPv4 or IPv6 address.
pub fn invalid_ip_address(field: &str, value: &str) -> Option<Violation> {
    if value.parse::<IpAddr>().is_ok() {
        return None;
    }
    if let Some((ip, problem)) = repaired_ip_address(value) {
        return Some(
            Violation::new(Reason::InvalidIPAddress, field, value, problem)
                .did_you_mean(&ip.to_string()),
        );
    }
    let lowered = value.trim().to_lowercase();
    let looks_like_hostname = lowered.chars().any(|c| c.is_ascii_alphabetic())
        && is_valid_dns_name(lowered.trim_end_matches('.'));
    let violation = Violation::new(
        Reason::InvalidIPAddress,
        field,
        value,
        if looks_like_hostname {
            "is a DNS name, not an IP address"
        } else {
            "is not an IPv4 or IPv6 address"
        },
    );
    Some(if looks_like_hostname {
        violation.with_suggestion(format!(
            "move {} to spec.dnsNames",
            quote_fix(lowered.trim_end_matches('.'))
        ))
    } else {
        violation.with_suggestion("write a single address such as \"10.0.0.1\" or \"fd00::1\"")
    })
}

fn is_uri_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.'
                | '_'
                | '~'
                | ':'
                | '/'
                | '?'
                | '#'
                | '['
                | ']'
                | '@'
                | '!'
                | '$'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | ';'
                | '='
                | '%'
        )
}

/// The length of a valid scheme at the start of `value` (before the `:`).
fn scheme_len(value: &str) -> Option<usize> {
    let colon = value.find(':')?;
    let scheme = &value[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(colon)
}

/// An entry of `uris` that is not an absolute URI: no scheme, spaces,
/// characters that must be percent-encoded, or a broken `%` escape.
pub fn invalid_uri(field: &str, value: &str) -> Option<Violation> {
    let trimmed = value.trim().trim_start_matches('<').trim_end_matches('>');
    let problem = if trimmed != value {
        "has surrounding spaces or angle brackets".to_owned()
    } else if let Some(c) = value.chars().find(|&c| !is_uri_char(c)) {
        if c == ' ' {
            "contains a space, which URIs write as \"%20\"".to_owned()
        } else {
            format!(
                "contains {}, which a URI must percent-encode",
                quote(&c.to_string())
            )
        }
    } else if let Some(index) = value.find('%').filter(|&i| {
        !value
            .get(i + 1..i + 3)
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
    }) {
        format!(
            "has a \"%\" at character {} that is not followed by two hex digits",
            index + 1
        )
    } else if scheme_len(value).is_none_or(|len| len + 1 == value.len()) {
        "has no scheme; a URI SAN is absolute, such as \"spiffe://cluster.local/ns/default/sa/api\""
            .to_owned()
    } else {
        return None;
    };
    let violation = Violation::new(Reason::InvalidURI, field, value, problem);
    let mut repaired = trimmed.replace(' ', "%20");
    if scheme_len(&repaired).is_none() {
        let spiffe_like = repaired.contains("/ns/") && repaired.contains("/sa/");
        let prefix = if spiffe_like { "spiffe://" } else { "https://" };
        repaired = format!("{prefix}{}", repaired.trim_start_matches('/'));
    }
    let valid = repaired.chars().all(is_uri_char)
        && scheme_len(&repaired).is_some_and(|len| len + 1 < repaired.len());
    Some(if valid && repaired != value {
        violation.did_you_mean(&repaired)
    } else {
        violation.with_suggestion(
            "write an absolute URI such as \"spiffe://cluster.local/ns/default/sa/api\"",
        )
    })
}

fn is_valid_email(value: &str) -> bool {
    let Some((local, domain)) = value.rsplit_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(atext))
        && !domain.contains('*')
        && is_valid_dns_name(&domain.to_lowercase())
}

/// An entry of `emailAddresses` that is not a plain `local@domain` address.
pub fn invalid_email_address(field: &str, value: &str) -> Option<Violation> {
    if is_valid_email(value) {
        return None;
    }
    let trimmed = value.trim();
    let (problem, candidate) = if let Some(rest) = trimmed
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
        .and_then(|_| trimmed.get(7..))
    {
        ("is a mailto: link; write only the address", rest.to_owned())
    } else if let (Some(open), Some(close)) = (trimmed.rfind('<'), trimmed.rfind('>'))
        && open < close
    {
        (
            "includes a display name; write only the address",
            trimmed[open + 1..close].trim().to_owned(),
        )
    } else if trimmed != value {
        ("has leading or trailing spaces", trimmed.to_owned())
    } else if !value.contains('@') {
        ("has no \"@\"", String::new())
    } else if value.matches('@').count() > 1 {
        ("has more than one \"@\"", String::new())
    } else {
        (
            "is not a plain address of the form name@example.com",
            String::new(),
        )
    };
    let violation = Violation::new(Reason::InvalidEmailAddress, field, value, problem);
    Some(if is_valid_email(&candidate) {
        violation.did_you_mean(&candidate)
    } else {
        violation.with_suggestion("write a plain address such as \"team@example.com\"")
    })
}

/// A `commonName` that is empty or only spaces, or that has surrounding spaces.
pub fn invalid_common_name(field: &str, value: &str) -> Option<Violation> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Some(
            Violation::new(Reason::InvalidCommonName, field, value, "is empty").with_suggestion(
                "remove spec.commonName (it is optional; clients match spec.dnsNames) or set it \
                 to the service's main DNS name",
            ),
        );
    }
    (trimmed != value).then(|| {
        Violation::new(
            Reason::InvalidCommonName,
            field,
            value,
            "has leading or trailing spaces",
        )
        .did_you_mean(trimmed)
    })
}

/// A `commonName` longer than the 64 characters X.509 allows.
pub fn common_name_too_long(field: &str, value: &str) -> Option<Violation> {
    let chars = value.chars().count();
    (chars > MAX_COMMON_NAME_CHARS).then(|| {
        Violation::new(
            Reason::CommonNameTooLong,
            field,
            value,
            format!(
                "is {chars} characters long; X.509 limits a common name to {MAX_COMMON_NAME_CHARS}"
            ),
        )
        .with_suggestion(
            "put the name in spec.dnsNames, which has no such limit, and remove spec.commonName \
             or shorten it",
        )
    })
}

/// Whether `value` is a DNS-1123 subdomain, the format Kubernetes requires of
/// Secret names and of label and annotation key prefixes.
pub(crate) fn is_dns_1123_subdomain(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_SECRET_NAME_LEN
        && value.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A `secretName` that is not a DNS-1123 subdomain, the format Kubernetes
/// requires of Secret names.
pub fn invalid_secret_name(field: &str, value: &str) -> Option<Violation> {
    if is_dns_1123_subdomain(value) {
        return None;
    }
    let problem = if value.trim().is_empty() {
        "is empty".to_owned()
    } else if value.len() > MAX_SECRET_NAME_LEN {
        format!("is longer than {MAX_SECRET_NAME_LEN} characters")
    } else {
        "is not a valid Secret name: use lower-case letters, digits, \"-\" and \".\", starting \
         and ending with a letter or digit"
            .to_owned()
    };
    let repaired: String = value
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c == '_' || c == ' ' { '-' } else { c })
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        .collect();
    let repaired = repaired.trim_matches(['-', '.']);
    let violation = Violation::new(Reason::InvalidSecretName, field, value, problem);
    Some(if is_dns_1123_subdomain(repaired) {
        violation.did_you_mean(repaired)
    } else {
        violation.with_suggestion("name the Secret like \"payments-tls\"")
    })
}
