//! Violations that depend on cluster state the signer looked up: whether the
//! CertificateAuthority exists and is ready, who owns the Secret, and how
//! often issuance has failed. The signer does the reading; these functions
//! only word the outcome.

use crate::reason::Reason;
use crate::suggest;
use crate::text::{self, quote};
use crate::violation::Violation;

/// Field path of the issuer reference.
pub const ISSUER_FIELD: &str = "spec.issuerRef.name";
/// Field path of the Secret name.
pub const SECRET_FIELD: &str = "spec.secretName";
/// CertificateAuthority names listed in a message before "and N more".
const LISTED_ISSUERS: usize = 8;

/// `spec.issuerRef.name` names no existing CertificateAuthority, or (when
/// `requested` is empty) it is unset and no CertificateAuthority is the
/// cluster default. `existing` lists the CertificateAuthorities there are.
pub fn issuer_not_found(requested: &str, existing: &[String]) -> Violation {
    let names = text::list(existing.iter().map(String::as_str), LISTED_ISSUERS);
    if requested.is_empty() {
        let violation = Violation::new(
            Reason::IssuerNotFound,
            ISSUER_FIELD,
            requested,
            "is not set, and no CertificateAuthority is marked as the cluster default \
             (spec.default: true)",
        );
        return if existing.is_empty() {
            violation.with_suggestion(
                "the cluster has no CertificateAuthority yet: ask the platform team to create one",
            )
        } else {
            violation.with_suggestion(format!("set spec.issuerRef.name to one of: {names}"))
        };
    }
    let violation = Violation::new(
        Reason::IssuerNotFound,
        ISSUER_FIELD,
        requested,
        "names a CertificateAuthority that does not exist (list them with `kubectl get \
         certificateauthorities`)",
    );
    if let Some(closest) = suggest::closest(requested, existing.iter().map(String::as_str)) {
        violation.with_suggestion(format!(
            "did you mean {} (existing: {names})?",
            quote(closest)
        ))
    } else if existing.is_empty() {
        violation.with_suggestion(
            "the cluster has no CertificateAuthority yet: ask the platform team to create one",
        )
    } else {
        violation.with_suggestion(format!("use one of: {names}"))
    }
}

/// The CertificateAuthority exists but cannot sign: its key pair is missing
/// or invalid, or it is still being generated. `detail` is the message of
/// its `Ready` condition, if it has one.
pub fn issuer_not_ready(issuer: &str, detail: Option<&str>) -> Violation {
    let mut message = format!(
        "names CertificateAuthority {}, which is not ready to sign",
        quote(issuer)
    );
    if let Some(detail) = detail
        .map(str::trim)
        .filter(|detail| !detail.is_empty() && !text::looks_like_key_material(detail))
    {
        message.push_str(&format!(
            " ({})",
            text::escape(text::truncate_bytes(detail, 300))
        ));
    }
    Violation::new(Reason::IssuerNotReady, ISSUER_FIELD, issuer, message).with_suggestion(
        "nothing to change here: certflow retries on its own once the CertificateAuthority is \
         ready; if this persists, tell the platform team",
    )
}

/// The Secret named by `spec.secretName` exists and certflow did not create
/// it. certflow never overwrites such a Secret.
pub fn secret_conflict(secret_name: &str) -> Violation {
    Violation::new(
        Reason::SecretConflict,
        SECRET_FIELD,
        secret_name,
        "names a Secret that already exists and was not created by certflow, which never \
         overwrites a Secret it does not own",
    )
    .with_suggestion(format!(
        "choose a new name such as {}, or delete the existing Secret if nothing uses it",
        quote(&alternative_secret_name(secret_name))
    ))
}

/// A Secret name close to `taken` that is unlikely to be in use.
fn alternative_secret_name(taken: &str) -> String {
    let taken = text::truncate_bytes(taken, 200);
    match taken.strip_suffix("-tls") {
        Some(stem) => format!("{stem}-certflow-tls"),
        None => format!("{taken}-tls"),
    }
}

/// The Secret named by `spec.secretName` is written by another
/// ServiceCertificate (`owner`) in the same namespace.
pub fn secret_owned_by_other(secret_name: &str, owner: &str) -> Violation {
    Violation::new(
        Reason::SecretOwnedByOther,
        SECRET_FIELD,
        secret_name,
        format!(
            "names a Secret that ServiceCertificate {} already writes; two ServiceCertificates \
             cannot share one Secret",
            quote(owner)
        ),
    )
    .with_suggestion(format!(
        "choose another spec.secretName, or add these names to ServiceCertificate {} instead",
        quote(owner)
    ))
}

/// Issuance failed `attempts` times for transient reasons and the signer
/// gave up; `last_error` says what went wrong last (it is escaped, shortened
/// and redacted before it reaches the message).
pub fn retries_exhausted(attempts: u32, last_error: &str) -> Violation {
    let last = quote(text::truncate_bytes(last_error.trim(), 300));
    Violation::new(
        Reason::RetriesExhausted,
        "",
        "",
        format!("issuance failed {attempts} times in a row and certflow stopped retrying; the last error was {last}"),
    )
    .with_suggestion(
        "any change to the ServiceCertificate starts a new attempt; if the spec is right, tell \
         the platform team",
    )
}

/// Issuance failed in a way no retry fixes, most often the API server
/// refusing the Secret (an admission policy, say); `error` says why (escaped,
/// shortened and redacted like [`retries_exhausted`]'s).
pub fn issuance_failed(error: &str) -> Violation {
    let error = quote(text::truncate_bytes(error.trim(), 300));
    Violation::new(
        Reason::IssuanceFailed,
        "",
        "",
        format!("issuance failed and retrying would not help: {error}"),
    )
    .with_suggestion(
        "if a policy refused the Secret, spec.secretTemplate can add the labels or annotations \
         it asks for; any change to the ServiceCertificate starts a new attempt; otherwise tell \
         the platform team",
    )
}
