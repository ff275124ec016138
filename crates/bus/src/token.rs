//! Turning Kubernetes namespaces and names into NATS subject tokens and back.
//!
//! A subject token may not contain `.`, `*`, `>` or whitespace. Kubernetes
//! namespaces are DNS labels (`[a-z0-9-]`, at most 63 characters) and are used
//! as they are. ServiceCertificate and Secret names are DNS subdomains
//! (`[a-z0-9.-]`, at most 253 characters): their dots become `_`, a character no
//! Kubernetes name can contain, so the mapping is reversible and two different
//! names never share a token. Anything outside those character sets is
//! rejected rather than escaped: such a name cannot come from the API server,
//! so it is a bug worth surfacing.

use crate::BusError;

/// Longest namespace Kubernetes accepts (a DNS label).
const MAX_NAMESPACE_LEN: usize = 63;
/// Longest object name Kubernetes accepts (a DNS subdomain).
const MAX_NAME_LEN: usize = 253;

/// Stands in for `.` inside a name token.
const DOT_REPLACEMENT: char = '_';

/// The subject token for a namespace.
pub fn namespace_token(namespace: &str) -> Result<String, BusError> {
    let invalid = |reason| BusError::InvalidSubjectToken {
        field: "namespace",
        value: namespace.to_owned(),
        reason,
    };
    if namespace.is_empty() {
        return Err(invalid("it is empty"));
    }
    if namespace.len() > MAX_NAMESPACE_LEN {
        return Err(invalid("it is longer than 63 characters"));
    }
    if !namespace
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(invalid("only a-z, 0-9 and '-' are allowed"));
    }
    Ok(namespace.to_owned())
}

/// The subject token for a ServiceCertificate (or Secret) name.
pub fn name_token(name: &str) -> Result<String, BusError> {
    let invalid = |reason| BusError::InvalidSubjectToken {
        field: "name",
        value: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("it is longer than 253 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(invalid("only a-z, 0-9, '-' and '.' are allowed"));
    }
    Ok(name.replace('.', &DOT_REPLACEMENT.to_string()))
}

/// The namespace a token was made from, if it is one [`namespace_token`] makes.
pub fn namespace_from_token(token: &str) -> Option<String> {
    namespace_token(token).ok()
}

/// The name a token was made from, if it is one [`name_token`] makes.
pub fn name_from_token(token: &str) -> Option<String> {
    if token.contains('.') {
        return None;
    }
    let name = token.replace(DOT_REPLACEMENT, ".");
    name_token(&name).ok().map(|_| name)
}

/// True when `token` can be one token of a NATS subject.
#[cfg(test)]
fn is_valid_subject_token(token: &str) -> bool {
    !token.is_empty()
        && !token
            .chars()
            .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn namespaces_are_used_as_they_are() {
        assert_eq!(namespace_token("team-a").ok().as_deref(), Some("team-a"));
    }

    #[test]
    fn dots_in_names_become_underscores() {
        assert_eq!(
            name_token("api.shop.svc").ok().as_deref(),
            Some("api_shop_svc")
        );
        assert_eq!(
            name_from_token("api_shop_svc").as_deref(),
            Some("api.shop.svc")
        );
    }

    #[test]
    fn names_that_differ_only_by_dot_or_dash_get_different_tokens() {
        let dotted = name_token("a.b").ok();
        let dashed = name_token("a-b").ok();
        assert!(dotted.is_some());
        assert_ne!(dotted, dashed);
    }

    #[test]
    fn namespaces_with_dots_or_wildcards_are_rejected() {
        for bad in ["", "a.b", "a*", ">", "a b", "Team", "a_b"] {
            assert!(namespace_token(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(namespace_token(&"a".repeat(64)).is_err());
    }

    #[test]
    fn names_that_kubernetes_would_reject_are_rejected() {
        for bad in ["", "a*", "a>b", "a b", "API", "a_b", "a\tb", "ä"] {
            assert!(name_token(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(name_token(&"a".repeat(254)).is_err());
        assert!(name_token(&"a".repeat(253)).is_ok());
    }

    #[test]
    fn tokens_that_no_name_produces_do_not_decode() {
        assert_eq!(name_from_token("a.b"), None);
        assert_eq!(name_from_token("A"), None);
        assert_eq!(name_from_token(""), None);
        assert_eq!(namespace_from_token("a_b"), None);
    }

    proptest! {
        #[test]
        fn every_kubernetes_name_round_trips_through_a_valid_token(name in "[a-z0-9.-]{1,253}") {
            let token = name_token(&name);
            prop_assert!(token.is_ok());
            let token = token.unwrap_or_default();
            prop_assert!(is_valid_subject_token(&token));
            prop_assert_eq!(name_from_token(&token), Some(name));
        }

        #[test]
        fn every_namespace_round_trips_through_a_valid_token(namespace in "[a-z0-9-]{1,63}") {
            let token = namespace_token(&namespace);
            prop_assert!(token.is_ok());
            let token = token.unwrap_or_default();
            prop_assert!(is_valid_subject_token(&token));
            prop_assert_eq!(namespace_from_token(&token), Some(namespace));
        }

        #[test]
        fn distinct_names_never_share_a_token(a in "[a-z0-9.-]{1,20}", b in "[a-z0-9.-]{1,20}") {
            prop_assume!(a != b);
            prop_assert_ne!(name_token(&a).ok(), name_token(&b).ok());
        }

        #[test]
        fn arbitrary_input_is_either_rejected_or_yields_a_valid_token(input in ".{0,40}") {
            if let Ok(token) = name_token(&input) {
                prop_assert!(is_valid_subject_token(&token));
            }
            if let Ok(token) = namespace_token(&input) {
                prop_assert!(is_valid_subject_token(&token));
            }
        }
    }
}
