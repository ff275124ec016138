//! Writing `events.k8s.io/v1` Events: what an Event is about ([`ObjectRef`]),
//! what it says ([`Notice`]), and how repeats are folded and limited.
//!
//! The decisions are pure and tested on their own: [`note`] makes a message
//! safe to show, [`limit`] is the per-object token bucket, [`aggregate`]
//! decides for each observation whether to create an Event, update its
//! series, or wait. [`writer`] is the thin layer that carries the decisions
//! to the API server.
//!
//! Why not kube's `Recorder`: it keys its cache without the note, so a
//! failure whose message changed would only bump the count of the Event that
//! shows the old message (and the note of an Event cannot be updated); its
//! names are random, so two replicas (or a restarted one) write duplicates;
//! and it has no rate limit. See `docs/design/20261127-reporter.md`.

pub mod aggregate;
pub mod limit;
pub mod note;
pub mod writer;

use k8s_openapi::api::core::v1::ObjectReference;

pub use writer::{EventWriter, Recorded, WriterSettings};

/// The `reportingController` of every Event certflow writes, including
/// those it writes for a `Report` caller: it names the controller that
/// emitted the Event, as Kubernetes defines the field. Whose words an Event
/// carries is said by its `reason` (certflow's own words are reserved,
/// [`crate::report::reserved_reason`]), its note and its
/// `reportingInstance` ([`Notice::reported_by`]).
pub const REPORTING_CONTROLLER: &str = "certflow-reporter";

/// The longest `reason`, `action` and `reportingInstance` the API accepts.
pub const MAX_WORD_BYTES: usize = 128;

/// What an Event is about: enough for `kubectl describe` to find it
/// (it selects on kind, namespace, name and uid).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ObjectRef {
    /// A ServiceCertificate.
    pub fn service_certificate(namespace: &str, name: &str, uid: &str) -> Self {
        Self {
            api_version: "certflow.io/v1alpha1".to_owned(),
            kind: "ServiceCertificate".to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: uid.to_owned(),
        }
    }

    /// As the Event's `regarding`.
    pub fn to_reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.clone()),
            kind: Some(self.kind.clone()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: Some(self.uid.clone()),
            ..ObjectReference::default()
        }
    }
}

/// The Event `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// What an Event says, and on whose behalf. Built with [`Notice::new`]
/// (certflow's own words) or [`Notice::reported_by`] (a `Report` caller's),
/// both of which make the note safe.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Notice {
    type_: EventType,
    reason: String,
    action: String,
    note: String,
    caller: Option<String>,
}

impl Notice {
    /// certflow's own notice, with `note` sanitized ([`note::sanitize`]) and
    /// `reason` and `action` cut to what the API accepts. `reason` is the
    /// stable CamelCase word (`PolicyViolation`, `Issued`); `action` what
    /// certflow was doing (`Issue`).
    pub fn new(type_: EventType, reason: &str, action: &str, note: &str) -> Self {
        Self {
            type_,
            reason: word(reason, "Unknown"),
            action: word(action, "Report"),
            note: note::sanitize(note),
            caller: None,
        }
    }

    /// A notice that `caller` (the Kubernetes username of an authenticated
    /// `Report` caller, e.g. `system:serviceaccount:platform:quota-checker`)
    /// sent: its note opens with `Reported by "<caller>": `
    /// ([`note::attributed`]), its Event's `reportingInstance` is the caller,
    /// and it is a different Event from the same words sent by anyone else.
    pub fn reported_by(
        caller: &str,
        type_: EventType,
        reason: &str,
        action: &str,
        message: &str,
    ) -> Self {
        Self {
            type_,
            reason: word(reason, "Unknown"),
            action: word(action, "Report"),
            note: note::attributed(caller, message),
            caller: Some(caller.to_owned()),
        }
    }

    pub fn type_(&self) -> EventType {
        self.type_
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn action(&self) -> &str {
        &self.action
    }

    pub fn note(&self) -> &str {
        &self.note
    }

    /// The `Report` caller who sent this notice; `None` for certflow's own.
    pub fn caller(&self) -> Option<&str> {
        self.caller.as_deref()
    }

    /// The Event's `reportingInstance`: the caller, cut to what the API
    /// accepts, for a reported notice; `own` (this replica) for certflow's.
    pub fn reporting_instance(&self, own: &str) -> String {
        self.caller
            .as_deref()
            .map(|caller| note::instance(caller, MAX_WORD_BYTES))
            .filter(|instance| !instance.is_empty())
            .unwrap_or_else(|| own.to_owned())
    }
}

/// `value` reduced to printable ASCII without spaces and at most
/// [`MAX_WORD_BYTES`] bytes; `fallback` when nothing is left.
fn word(value: &str, fallback: &str) -> String {
    let cleaned: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(MAX_WORD_BYTES)
        .collect();
    if cleaned.is_empty() {
        fallback.to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_actions_are_single_bounded_words() {
        let notice = Notice::new(EventType::Warning, "Policy Violation\n", "", "x");
        assert_eq!(notice.reason(), "PolicyViolation");
        assert_eq!(notice.action(), "Report");
        let long = Notice::new(EventType::Normal, &"A".repeat(300), "Issue", "x");
        assert_eq!(long.reason().len(), MAX_WORD_BYTES);
    }

    #[test]
    fn a_reported_notice_is_signed_by_its_caller_and_certflows_by_the_replica() {
        let caller = "system:serviceaccount:platform:quota-checker";
        let reported = Notice::reported_by(
            caller,
            EventType::Warning,
            "QuotaExceeded",
            "Report",
            "Full.",
        );
        assert_eq!(reported.caller(), Some(caller));
        assert_eq!(reported.reporting_instance("certflow-reporter-0"), caller);
        assert_eq!(reported.note(), format!("Reported by \"{caller}\": Full."));
        let own = Notice::new(EventType::Warning, "PolicyViolation", "Issue", "Bad.");
        assert_eq!(own.caller(), None);
        assert_eq!(
            own.reporting_instance("certflow-reporter-0"),
            "certflow-reporter-0"
        );
        assert_eq!(own.note(), "Bad.");
    }

    #[test]
    fn references_carry_what_kubectl_describe_selects_on() {
        let reference = ObjectRef::service_certificate("shop", "web", "u-1").to_reference();
        assert_eq!(reference.kind.as_deref(), Some("ServiceCertificate"));
        assert_eq!(
            reference.api_version.as_deref(),
            Some("certflow.io/v1alpha1")
        );
        assert_eq!(reference.namespace.as_deref(), Some("shop"));
        assert_eq!(reference.name.as_deref(), Some("web"));
        assert_eq!(reference.uid.as_deref(), Some("u-1"));
    }
}
