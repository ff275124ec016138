//! Observes the active-failure bucket (a JetStream key-value watch); keeps a
//! copy of it by Secret for the question "is the Secret this new Pod
//! consumes failing?"; writes nothing to the bucket (that is
//! [`crate::report`], which also updates this copy at once so that its own
//! writes are never missed).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use certflow_bus::settings::ACTIVE_FAILURE_MAX_AGE;
use certflow_bus::{ActiveFailures, FailureChange, FailureKey};
use certflow_proto::v1::Outcome;
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A failure and when it was last recorded.
#[derive(Clone, Debug, PartialEq)]
struct Active {
    outcome: Outcome,
    at: SystemTime,
}

/// The active failures by `(namespace, secret name)`, then by
/// ServiceCertificate name.
#[derive(Debug, Default)]
pub struct ActiveIndex {
    by_secret: HashMap<(String, String), BTreeMap<String, Active>>,
}

impl ActiveIndex {
    /// Applies one change seen on the bucket.
    pub fn apply(&mut self, change: FailureChange) {
        match change {
            FailureChange::Recorded { outcome, at } => self.record(*outcome, at),
            FailureChange::Removed(key) => self.remove(&key),
            FailureChange::CaughtUp => {}
        }
    }

    /// Records `outcome` (a `Failed` one) as recorded at `at`.
    pub fn record(&mut self, outcome: Outcome, at: SystemTime) {
        let key = FailureKey::of(&outcome);
        let failures = self
            .by_secret
            .entry((key.namespace, key.secret_name))
            .or_default();
        match failures.get(&key.name) {
            Some(existing) if existing.at > at => {}
            _ => {
                failures.insert(key.name, Active { outcome, at });
            }
        }
    }

    /// Forgets the failure of `key`.
    pub fn remove(&mut self, key: &FailureKey) {
        let secret = (key.namespace.clone(), key.secret_name.clone());
        if let Some(failures) = self.by_secret.get_mut(&secret) {
            failures.remove(&key.name);
            if failures.is_empty() {
                self.by_secret.remove(&secret);
            }
        }
    }

    /// The failures of every ServiceCertificate writing Secret
    /// `secret_name` in `namespace`, as of `now` (expired ones excluded).
    pub fn for_secret(&self, namespace: &str, secret_name: &str, now: SystemTime) -> Vec<Outcome> {
        self.by_secret
            .get(&(namespace.to_owned(), secret_name.to_owned()))
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|active| !expired(active.at, now))
            .map(|active| active.outcome.clone())
            .collect()
    }

    /// The `(namespace, secret name)` of every Secret with a failure as of
    /// `now`.
    pub fn secrets(&self, now: SystemTime) -> Vec<(String, String)> {
        self.by_secret
            .iter()
            .filter(|(_, failures)| failures.values().any(|active| !expired(active.at, now)))
            .map(|(secret, _)| secret.clone())
            .collect()
    }

    /// Drops failures the bucket has expired by `now`.
    pub fn prune(&mut self, now: SystemTime) {
        self.by_secret.retain(|_, failures| {
            failures.retain(|_, active| !expired(active.at, now));
            !failures.is_empty()
        });
    }

    /// Failures kept.
    pub fn len(&self) -> usize {
        self.by_secret.values().map(BTreeMap::len).sum()
    }

    /// True when no failure is kept.
    pub fn is_empty(&self) -> bool {
        self.by_secret.is_empty()
    }
}

fn expired(at: SystemTime, now: SystemTime) -> bool {
    now.duration_since(at)
        .is_ok_and(|age| age >= ACTIVE_FAILURE_MAX_AGE)
}

/// The copy shared between the watch that feeds it and its readers.
#[derive(Clone, Debug, Default)]
pub struct SharedActive(Arc<RwLock<ActiveIndex>>);

impl SharedActive {
    pub fn write<T>(&self, write: impl FnOnce(&mut ActiveIndex) -> T) -> T {
        write(&mut self.0.write().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn read<T>(&self, read: impl FnOnce(&ActiveIndex) -> T) -> T {
        read(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Keeps `copy` in step with the bucket until `shutdown`, re-watching after
/// an error (a re-watch replays every current entry into a fresh copy).
/// `caught_up` becomes true once the first watch delivered the bucket's
/// contents.
pub async fn watch(
    failures: ActiveFailures,
    copy: SharedActive,
    caught_up: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let mut prune = tokio::time::interval(Duration::from_secs(60));
    loop {
        let mut changes = match failures.watch().await {
            Ok(changes) => Box::pin(changes),
            Err(err) => {
                warn!(error = %err, "cannot watch the active-failure bucket; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        // Until the replay is complete, changes go to a fresh copy that then
        // replaces the old one, so a failure removed during an outage does
        // not linger.
        let mut fresh = Some(ActiveIndex::default());
        loop {
            let change = tokio::select! {
                () = shutdown.cancelled() => return,
                _ = prune.tick() => {
                    copy.write(|c| c.prune(SystemTime::now()));
                    continue;
                }
                change = changes.next() => change,
            };
            match change {
                Some(Ok(FailureChange::CaughtUp)) => {
                    if let Some(fresh) = fresh.take() {
                        let count = fresh.len();
                        copy.write(|c| *c = fresh);
                        info!(failures = count, "active failures loaded");
                    }
                    caught_up.send_replace(true);
                }
                Some(Ok(change)) => match fresh.as_mut() {
                    Some(fresh) => fresh.apply(change),
                    None => copy.write(|c| c.apply(change)),
                },
                Some(Err(err)) => {
                    warn!(error = %err, "the active-failure watch failed; re-watching");
                    break;
                }
                None => {
                    warn!("the active-failure watch ended; re-watching");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use certflow_proto::v1::{Failed, outcome};

    use super::*;

    fn failure(name: &str, secret_name: &str, message: &str) -> Outcome {
        Outcome {
            namespace: "shop".into(),
            name: name.into(),
            secret_name: secret_name.into(),
            result: Some(outcome::Result::Failed(Failed {
                reason: "PolicyViolation".into(),
                message: message.into(),
                ..Failed::default()
            })),
            ..Outcome::default()
        }
    }

    fn messages(index: &ActiveIndex, secret: &str, now: SystemTime) -> Vec<String> {
        index
            .for_secret("shop", secret, now)
            .into_iter()
            .filter_map(|o| match o.result {
                Some(outcome::Result::Failed(f)) => Some(f.message),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn failures_are_found_by_secret() {
        let now = SystemTime::now();
        let mut index = ActiveIndex::default();
        index.record(failure("web", "web-tls", "bad"), now);
        index.record(failure("db", "db-tls", "worse"), now);
        assert_eq!(messages(&index, "web-tls", now), ["bad"]);
        assert!(messages(&index, "other-tls", now).is_empty());
        assert!(index.for_secret("elsewhere", "web-tls", now).is_empty());
        let mut secrets = index.secrets(now);
        secrets.sort();
        assert_eq!(
            secrets,
            [
                ("shop".to_owned(), "db-tls".to_owned()),
                ("shop".to_owned(), "web-tls".to_owned())
            ]
        );
    }

    #[test]
    fn a_newer_failure_replaces_the_older_but_not_the_reverse() {
        let now = SystemTime::now();
        let mut index = ActiveIndex::default();
        index.record(failure("web", "web-tls", "second"), now);
        index.record(
            failure("web", "web-tls", "first"),
            now - Duration::from_secs(5),
        );
        assert_eq!(messages(&index, "web-tls", now), ["second"]);
        index.record(
            failure("web", "web-tls", "third"),
            now + Duration::from_secs(5),
        );
        assert_eq!(messages(&index, "web-tls", now), ["third"]);
    }

    #[test]
    fn two_certificates_sharing_a_secret_keep_their_own_failures() {
        let now = SystemTime::now();
        let mut index = ActiveIndex::default();
        index.record(failure("a", "shared-tls", "a failed"), now);
        index.record(failure("b", "shared-tls", "b failed"), now);
        index.apply(FailureChange::Removed(FailureKey {
            namespace: "shop".into(),
            secret_name: "shared-tls".into(),
            name: "a".into(),
        }));
        assert_eq!(messages(&index, "shared-tls", now), ["b failed"]);
    }

    #[test]
    fn failures_expire_with_the_bucket() {
        let then = SystemTime::now();
        let mut index = ActiveIndex::default();
        index.record(failure("web", "web-tls", "bad"), then);
        let later = then + ACTIVE_FAILURE_MAX_AGE;
        assert!(messages(&index, "web-tls", later).is_empty());
        assert!(index.secrets(later).is_empty());
        index.prune(later);
        assert!(index.is_empty());
    }
}
