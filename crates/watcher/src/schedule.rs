//! When the watcher publishes an unchanged decision again. Pure: the
//! controller passes what it published when and the clock, so the whole
//! schedule is tested without a bus or a cluster.
//!
//! A work item can be lost after JetStream stored it: a signer gave up and
//! could not write status either, the item ran out of deliveries or aged out
//! of the stream, the stream was purged, or NATS came back without its
//! storage. Nothing the watcher watches changes then; the only sign is time,
//! a decision that still holds long after it was published. So a decision
//! is published again `--republish-after` after it was, then after doubling
//! intervals up to [`MAX_REPUBLISH_MULTIPLE`] times that, each time under a
//! new message id: JetStream drops a message whose id it has seen inside its
//! de-duplication window, even when that message itself is gone since.

use std::time::{Duration, SystemTime};

use certflow_proto::v1::Trigger;

/// The interval between publications of one unchanged decision doubles
/// from `--republish-after` up to this multiple of it. A decision can hold
/// for long without anything being lost (a backlog, a signer retrying a
/// failing write for an hour); doubling keeps the copies that adds to the
/// work stream few, the limit keeps the promise's bound.
pub const MAX_REPUBLISH_MULTIPLE: u32 = 8;

/// The shortest interval between publications of one decision, whatever
/// `--republish-after` says: a reconcile is not a busy loop.
pub const MIN_REPUBLISH_AFTER: Duration = Duration::from_secs(1);

/// One publication of a decision, as the watcher remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The decision's id (`Decision::Publish::dedup_id`).
    pub dedup_id: String,
    /// 0 for the decision's first publication, n for its n-th republication.
    pub attempt: u32,
    /// When JetStream stored it.
    pub at: SystemTime,
    /// The issuer it was decided with ([`crate::decide::issuer_version`]).
    pub issuer_version: String,
}

/// What to do about a decision to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Publish now with this `Nats-Msg-Id` ([`message_id`]).
    Publish { message_id: String, attempt: u32 },
    /// Already published and not yet overdue: look again at this time.
    WaitUntil(SystemTime),
}

/// The watcher's timing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// `--republish-after`: how long a decision may hold after it was
    /// published before it is published again.
    pub republish_after: Duration,
    /// `--failure-retry`: the period of a refused request's re-examination.
    pub failure_retry: Duration,
}

impl Schedule {
    /// Whether to publish decision `dedup_id` (of `trigger`) now, given the
    /// last publication remembered for the object.
    ///
    /// Another decision, or none remembered (a new object, a restarted
    /// watcher), is published at once under its own id, which every watcher
    /// agrees on. The same decision is published again once it is overdue
    /// ([`Schedule::due`]), as attempt n + 1.
    ///
    /// One exception: the first re-examination of a refusal that answers
    /// the generation's own work item, with the issuer unchanged since, waits
    /// `--failure-retry` from that item. The signer has just looked at
    /// exactly this; asking again at once would only repeat its refusal
    /// (and its Warning).
    pub fn step(
        &self,
        last: Option<&Publication>,
        trigger: Trigger,
        dedup_id: &str,
        now: SystemTime,
    ) -> Step {
        if trigger == Trigger::Resync
            && let Some(last) = last
            && answers(last, dedup_id)
        {
            let due = last.at + self.failure_retry.max(MIN_REPUBLISH_AFTER);
            if now < due {
                return Step::WaitUntil(due);
            }
        }
        let Some(last) = last.filter(|last| last.dedup_id == dedup_id) else {
            return Step::Publish {
                message_id: dedup_id.to_owned(),
                attempt: 0,
            };
        };
        let due = self.due(last, trigger);
        if now < due {
            return Step::WaitUntil(due);
        }
        let attempt = last.attempt.saturating_add(1);
        Step::Publish {
            message_id: message_id(dedup_id, attempt),
            attempt,
        }
    }

    /// When `publication`, if its decision still holds, is published again.
    ///
    /// A refused request's re-examination ([`Trigger::Resync`]) already
    /// gets a new id every `--failure-retry` (its epoch is part of the id),
    /// so it is never published early; should its id not have changed by
    /// then, it is published again at that time like any other.
    pub fn due(&self, publication: &Publication, trigger: Trigger) -> SystemTime {
        let wait = if trigger == Trigger::Resync {
            self.failure_retry.max(MIN_REPUBLISH_AFTER)
        } else {
            self.republish_interval(publication.attempt)
        };
        publication.at + wait
    }

    /// How long after publication number `attempt` the next one comes:
    /// `--republish-after`, doubling with each attempt up to
    /// [`MAX_REPUBLISH_MULTIPLE`] times it.
    pub fn republish_interval(&self, attempt: u32) -> Duration {
        let factor = 1_u32
            .checked_shl(attempt)
            .unwrap_or(u32::MAX)
            .min(MAX_REPUBLISH_MULTIPLE);
        self.republish_after
            .max(MIN_REPUBLISH_AFTER)
            .saturating_mul(factor)
    }

    /// The longest time between two publications of a decision that still
    /// holds: the bound of the self-healing promise, past the fault.
    pub fn republish_bound(&self) -> Duration {
        self.republish_interval(u32::MAX)
    }
}

/// Whether re-examination `resync_id` (`<generation's id>/retry/<issuer
/// version>/<epoch>`, see `decide`) follows `last`, the generation's own
/// work item, with the issuer it was published under.
fn answers(last: &Publication, resync_id: &str) -> bool {
    resync_id
        .strip_prefix(last.dedup_id.as_str())
        .and_then(|rest| rest.strip_prefix("/retry/"))
        .and_then(|rest| rest.strip_prefix(last.issuer_version.as_str()))
        .is_some_and(|rest| rest.starts_with('/') && !rest[1..].contains('/'))
}

/// The `Nats-Msg-Id` of publication `attempt` of decision `dedup_id`: the
/// decision's id for the first, so racing watchers and replayed watch events
/// are de-duplicated by JetStream; `<dedup_id>/again/<attempt>` for a
/// republication, a new message that JetStream stores even inside the
/// de-duplication window, and that two watchers republishing the same
/// decision still agree on.
pub fn message_id(dedup_id: &str, attempt: u32) -> String {
    if attempt == 0 {
        dedup_id.to_owned()
    } else {
        format!("{dedup_id}/again/{attempt}")
    }
}

#[cfg(test)]
mod tests;
