//! Status conditions, shaped like Kubernetes' `metav1.Condition` so that
//! `kubectl describe` and `kubectl wait --for=condition=Ready` work as usual.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition type that says whether the certificate (or CA) is usable.
pub const READY: &str = "Ready";

/// Whether a condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// certflow has not decided yet.
    #[default]
    Unknown,
}

impl ConditionStatus {
    /// The status as written in the API: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// One aspect of the object's current state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect this condition describes; `Ready` says whether the
    /// certificate Secret is issued and valid.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase word for why the condition is in this state, such as
    /// `Issued` or `InvalidDNSName`.
    #[serde(default)]
    pub reason: String,
    /// What happened, for a human: which field is wrong, the value seen and
    /// what to write instead.
    #[serde(default)]
    pub message: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The `metadata.generation` this condition was computed for; when it is
    /// lower than the object's generation, the condition may be stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition of the given type with a reason and message, without a
    /// transition time (see [`set_condition`]) or generation.
    pub fn new(
        type_: impl Into<String>,
        status: ConditionStatus,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message: message.into(),
            last_transition_time: None,
            observed_generation: None,
        }
    }

    /// Whether this condition's status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// Finds the condition of the given type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|condition| condition.type_ == type_)
}

/// Adds `condition`, replacing the one of the same type. The replaced
/// condition's `lastTransitionTime` is kept when the status did not change,
/// so the time says when the status last flipped, not when it was last
/// written; `now` is used when it did change and `condition` carries none.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition, now: Time) {
    match conditions
        .iter_mut()
        .find(|existing| existing.type_ == condition.type_)
    {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time.take();
            }
            condition.last_transition_time.get_or_insert(now);
            *existing = condition;
        }
        None => {
            condition.last_transition_time.get_or_insert(now);
            conditions.push(condition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(second).expect("a valid test timestamp"))
    }

    fn ready(status: ConditionStatus, reason: &str) -> Condition {
        Condition::new(READY, status, reason, "")
    }

    #[test]
    fn setting_the_same_status_keeps_the_transition_time() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "InvalidDNSName"),
            at(1),
        );
        set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "IssuerNotFound"),
            at(2),
        );

        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason, "IssuerNotFound");
        assert_eq!(conditions[0].last_transition_time, Some(at(1)));
    }

    #[test]
    fn a_status_change_moves_the_transition_time() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            ready(ConditionStatus::False, "InvalidDNSName"),
            at(1),
        );
        set_condition(
            &mut conditions,
            ready(ConditionStatus::True, "Issued"),
            at(2),
        );

        let condition = find_condition(&conditions, READY).expect("Ready was set");
        assert!(condition.is_true());
        assert_eq!(condition.last_transition_time, Some(at(2)));
    }

    #[test]
    fn conditions_serialize_like_metav1_conditions() {
        let mut condition = ready(ConditionStatus::True, "Issued");
        condition.last_transition_time = Some(at(0));
        condition.observed_generation = Some(3);

        let json = serde_json::to_value(&condition).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "type": "Ready",
                "status": "True",
                "reason": "Issued",
                "message": "",
                "lastTransitionTime": "1970-01-01T00:00:00Z",
                "observedGeneration": 3,
            })
        );
    }
}
