//! A single thing wrong with a request, and the sentence an app owner reads.

use std::fmt;

use certflow_api::Failure;

use crate::reason::Reason;
use crate::text;

/// The longest message certflow puts in an Event or in `status.lastFailure`,
/// in bytes. Events are capped by the API server at 1 KiB of note anyway;
/// staying under it ourselves means the fix at the end is never cut off by
/// someone else.
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// One failed check: which field, what was seen, why it is wrong, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Why, as a stable word.
    pub reason: Reason,
    /// JSON path of the offending field in the ServiceCertificate, such as
    /// `spec.dnsNames[1]`; empty when the failure is not about one field.
    pub field: String,
    /// The value seen, as written (capped at 512 bytes, and replaced by a
    /// placeholder if it looks like key material). Escaped only when rendered.
    pub value: String,
    /// Why the value is wrong, as the rest of a sentence that starts with the
    /// field and the quoted value: `is not a valid DNS name: ...`. Every
    /// user-supplied string in it is already quoted and escaped.
    pub message: String,
    /// What to write instead, as the end of the sentence: `did you mean
    /// "payments.default.svc"?` or `move it to spec.ipAddresses`.
    pub suggestion: Option<String>,
}

impl Violation {
    /// A violation without a suggestion; `value` is stored capped and redacted.
    pub fn new(
        reason: Reason,
        field: impl Into<String>,
        value: &str,
        message: impl Into<String>,
    ) -> Self {
        Violation {
            reason,
            field: field.into(),
            value: text::stored_value(value),
            message: message.into(),
            suggestion: None,
        }
    }

    /// The same violation with `suggestion` as its fix.
    #[must_use]
    pub fn with_suggestion(mut self, suggestion: impl Into<String>) -> Self {
        self.suggestion = Some(suggestion.into());
        self
    }

    /// The same violation with a "did you mean" fix for `replacement`, if
    /// it can be shown whole (otherwise the violation is returned unchanged).
    #[must_use]
    pub fn did_you_mean(self, replacement: &str) -> Self {
        match text::quote_whole(replacement) {
            Some(quoted) => self.with_suggestion(format!("did you mean {quoted}?")),
            None => self,
        }
    }

    /// The full sentence for an Event on Pods and the ServiceCertificate, and
    /// for `status.lastFailure.message`:
    ///
    /// `ServiceCertificate "payments-tls": spec.dnsNames[1] "payments.defualt.svc"
    /// is not allowed by CertificateAuthority "internal" for namespace "default"
    /// (allowed: *.default.svc, *.default.svc.cluster.local): "defualt" looks
    /// like a misspelling of the namespace; did you mean "payments.default.svc"?`
    ///
    /// At most [`MAX_MESSAGE_BYTES`] bytes, with no control characters. When
    /// too long, the middle of the explanation is cut, never the object, the
    /// field, the value or the fix.
    pub fn sentence(&self, certificate_name: &str) -> String {
        let object = format!("ServiceCertificate {}: ", text::quote(certificate_name));
        self.compose(&object)
    }

    /// The `status.lastFailure` for this violation (without a time, which
    /// the writer sets): the sentence as message, and the value escaped and
    /// shortened as it appears in the sentence, never raw.
    pub fn failure(&self, certificate_name: &str) -> Failure {
        Failure {
            reason: self.reason.as_str().to_owned(),
            message: self.sentence(certificate_name),
            field_path: (!self.field.is_empty()).then(|| self.field.clone()),
            value: (!self.field.is_empty()).then(|| {
                if text::looks_like_key_material(&self.value) {
                    text::REDACTED.to_owned()
                } else {
                    text::escape(&self.value)
                }
            }),
            ..Failure::default()
        }
    }

    fn compose(&self, object: &str) -> String {
        let mut head = object.to_owned();
        if !self.field.is_empty() {
            head.push_str(&text::escape(&self.field));
            head.push(' ');
            head.push_str(&text::quote(&self.value));
            head.push(' ');
        }
        let mut tail = String::new();
        if let Some(suggestion) = &self.suggestion {
            tail.push_str("; ");
            tail.push_str(suggestion);
        }
        let finished = |s: &str| s.ends_with(['.', '?']);
        let already_finished = if tail.is_empty() {
            finished(&self.message)
        } else {
            finished(&tail)
        };
        if !already_finished {
            tail.push('.');
        }
        // Checks escape what they embed; this is the last line of defence
        // should one forget, so an Event can never carry a raw newline.
        let printable = |s: &str| -> String {
            s.chars()
                .map(|c| if text::is_invisible(c) { ' ' } else { c })
                .collect()
        };
        let (head, tail) = (printable(&head), printable(&tail));
        let budget = MAX_MESSAGE_BYTES.saturating_sub(head.len() + tail.len());
        let message = text::bounded(printable(&self.message), budget);
        text::bounded(format!("{head}{message}{tail}"), MAX_MESSAGE_BYTES)
    }
}

/// The sentence without the object name: `spec.dnsNames[1] "x" is ...; fix.`
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.compose(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentence_names_the_object_field_value_reason_and_fix() {
        let violation = Violation::new(
            Reason::PolicyViolation,
            "spec.dnsNames[1]",
            "payments.defualt.svc",
            "is not allowed by CertificateAuthority \"internal\" for namespace \"default\"",
        )
        .did_you_mean("payments.default.svc");
        assert_eq!(
            violation.sentence("payments-tls"),
            "ServiceCertificate \"payments-tls\": spec.dnsNames[1] \"payments.defualt.svc\" \
             is not allowed by CertificateAuthority \"internal\" for namespace \"default\"; \
             did you mean \"payments.default.svc\"?"
        );
    }

    #[test]
    fn a_sentence_without_a_field_starts_with_the_message() {
        let violation = Violation::new(Reason::RetriesExhausted, "", "", "issuance failed 5 times");
        assert_eq!(
            violation.sentence("web"),
            "ServiceCertificate \"web\": issuance failed 5 times."
        );
    }

    #[test]
    fn the_status_failure_carries_the_sentence_and_an_escaped_value() {
        let violation = Violation::new(
            Reason::ControlCharacters,
            "spec.dnsNames[0]",
            "web.shop.svc\n",
            "contains a newline",
        );
        let failure = violation.failure("web");
        assert_eq!(failure.reason, "ControlCharacters");
        assert_eq!(failure.field_path.as_deref(), Some("spec.dnsNames[0]"));
        assert_eq!(failure.value.as_deref(), Some("web.shop.svc\\n"));
        assert_eq!(failure.message, violation.sentence("web"));
    }

    #[test]
    fn a_huge_message_is_cut_to_one_kibibyte() {
        let violation = Violation::new(Reason::InvalidURI, "spec.uris[0]", "x", "y".repeat(5000));
        assert!(violation.sentence(&"n".repeat(5000)).len() <= MAX_MESSAGE_BYTES);
    }
}
