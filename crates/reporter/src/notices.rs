//! What certflow says in its own words: the Warning for a failure, the
//! Normal Event for an issuance, and the reason words a `Report` caller may
//! not use. Pure; observes nothing and writes nothing.

use certflow_diagnostics::Reason;
use certflow_proto::v1::{Failed, Issued, Outcome};

use crate::events::{EventType, Notice};

/// The `action` of Events about issuance.
pub const ISSUE_ACTION: &str = "Issue";

/// The `reason` of the Normal Event written when a certificate is issued.
pub const ISSUED_REASON: &str = "Issued";

/// The `reason` of a failure whose outcome names none.
pub const FAILED_REASON: &str = "Failed";

/// The word certflow writes itself that `reason` is, ignoring case: a
/// reason of the failure catalog ([`Reason::ALL`]), [`ISSUED_REASON`] or
/// [`FAILED_REASON`]. A `Report` caller may use none of them, so that an
/// Event with one of these reasons is always certflow's own diagnosis, for
/// an app owner reading `kubectl describe` and for an alert selecting on
/// `reason`. Case is ignored so that `POLICYVIOLATION` cannot pass for the
/// real one either.
pub fn reserved_reason(reason: &str) -> Option<&'static str> {
    Reason::ALL
        .iter()
        .map(|reason| reason.as_str())
        .chain([ISSUED_REASON, FAILED_REASON])
        .find(|word| word.eq_ignore_ascii_case(reason))
}

/// The Warning for a failed outcome: the signer's sentence (which names
/// the field, the value and the fix) under its reason word.
pub fn failure_notice(failed: &Failed) -> Notice {
    let message = if failed.message.is_empty() {
        compose(
            "The certificate could not be issued.",
            &failed.field_path,
            &failed.value,
            &failed.suggestion,
        )
    } else {
        failed.message.clone()
    };
    let reason = if failed.reason.is_empty() {
        FAILED_REASON
    } else {
        &failed.reason
    };
    Notice::new(EventType::Warning, reason, ISSUE_ACTION, &message)
}

/// The Normal Event for a certificate whose issuance ended a failure;
/// `resolved` names that failure's reason.
pub fn issued_notice(outcome: &Outcome, issued: &Issued, resolved: &str) -> Notice {
    let valid_until = issued
        .not_after
        .as_ref()
        .and_then(|t| k8s_openapi::jiff::Timestamp::new(t.seconds, t.nanos).ok())
        .map(|t| format!(", valid until {t}"))
        .unwrap_or_default();
    let note = format!(
        "ServiceCertificate {:?}: certificate issued into Secret {:?} by CertificateAuthority {:?} (serial {}{valid_until}). The earlier {resolved} failure is resolved.",
        outcome.name, outcome.secret_name, issued.issuer, issued.serial_number
    );
    Notice::new(EventType::Normal, ISSUED_REASON, ISSUE_ACTION, &note)
}

/// `message`, followed by the field, value and suggestion when it does not
/// mention them already (reports from other services may give them apart).
pub fn compose(message: &str, field_path: &str, value: &str, suggestion: &str) -> String {
    let mut text = message.trim().to_owned();
    if !field_path.is_empty() && !text.contains(field_path) {
        let seen = if value.is_empty() {
            String::new()
        } else {
            format!(" (value {value:?})")
        };
        text = format!("{field_path}{seen}: {text}");
    }
    if !suggestion.is_empty() && !text.contains(suggestion) {
        let end = if text.ends_with(['.', '?', '!']) {
            " "
        } else {
            "; "
        };
        text.push_str(end);
        text.push_str(suggestion);
    }
    text
}

#[cfg(test)]
mod tests;
