//! The bucket of active failures: for every ServiceCertificate whose latest
//! outcome was a failure, that `Failed` outcome, so that any reporter replica
//! (or one restarted after a crash) can warn a Pod that starts consuming the
//! failing Secret later.
//!
//! Keys are `<namespace>.<secret token>.<name token>` (tokens as in
//! [`crate::token`]): a Secret and the ServiceCertificate that fills it.
//! Keying by the ServiceCertificate too means that, when two of them name the
//! same Secret, the issuance of one never clears the failure of the other;
//! all failures of one Secret share the `<namespace>.<secret token>.` prefix.
//! Values are encoded `certflow.v1.Outcome` messages whose result is
//! `Failed`. Each entry expires
//! [`ACTIVE_FAILURE_MAX_AGE`](crate::settings::ACTIVE_FAILURE_MAX_AGE) after
//! its last write.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::context::{
    CreateKeyValueError, CreateKeyValueErrorKind, CreateStreamError,
};
use async_nats::jetstream::{self, kv};
use certflow_proto::v1::{Outcome, SCHEMA_VERSION, outcome};
use futures::{Stream, StreamExt as _};
use prost::Message as _;
use tracing::{debug, instrument};

use crate::delivery::decode_outcome_payload;
use crate::ensure::{self, retry_unanswered};
use crate::token::{name_from_token, name_token, namespace_from_token, namespace_token};
use crate::{BusError, Topology};

/// How long [`ActiveFailures::watch`] waits for the bucket's existing
/// entries before declaring itself caught up anyway (the entries it expected
/// may have expired in the meantime).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// Which Secret and ServiceCertificate a failure belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FailureKey {
    pub namespace: String,
    pub secret_name: String,
    /// The ServiceCertificate's name.
    pub name: String,
}

impl FailureKey {
    /// The key of `outcome`'s ServiceCertificate and Secret.
    pub fn of(outcome: &Outcome) -> Self {
        Self {
            namespace: outcome.namespace.clone(),
            secret_name: outcome.secret_name.clone(),
            name: outcome.name.clone(),
        }
    }

    /// The bucket key: `<namespace>.<secret token>.<name token>`.
    pub fn to_key(&self) -> Result<String, BusError> {
        Ok(format!(
            "{}.{}.{}",
            namespace_token(&self.namespace)?,
            name_token(&self.secret_name)?,
            name_token(&self.name)?
        ))
    }

    /// Takes a bucket key apart; `None` for keys this module does not write.
    pub fn from_key(key: &str) -> Option<Self> {
        let mut tokens = key.split('.');
        let key = Self {
            namespace: namespace_from_token(tokens.next()?)?,
            secret_name: name_from_token(tokens.next()?)?,
            name: name_from_token(tokens.next()?)?,
        };
        tokens.next().is_none().then_some(key)
    }
}

/// A change to the bucket, as seen by [`ActiveFailures::watch`].
#[derive(Clone, Debug, PartialEq)]
pub enum FailureChange {
    /// A failure was recorded (or recorded again) at `at`; the outcome is
    /// `Failed`. The server drops it
    /// [`ACTIVE_FAILURE_MAX_AGE`](crate::settings::ACTIVE_FAILURE_MAX_AGE)
    /// after `at` without telling watchers, so a copy must expire it too.
    Recorded {
        outcome: Box<Outcome>,
        at: SystemTime,
    },
    /// The failure of this key was resolved (or expired and was removed).
    Removed(FailureKey),
    /// Every entry that existed when the watch started has been delivered;
    /// what follows are live changes. Sent exactly once.
    CaughtUp,
}

/// The active-failure bucket of one [`Topology`].
#[derive(Clone, Debug)]
pub struct ActiveFailures {
    store: kv::Store,
    bucket: String,
}

impl ActiveFailures {
    /// Creates the bucket, or updates it to this build's configuration.
    /// Idempotent; safe to run from every replica at start-up.
    #[instrument(skip_all, fields(prefix = topology.prefix()))]
    pub async fn ensure(js: &jetstream::Context, topology: &Topology) -> Result<Self, BusError> {
        let config = topology.active_failures_config();
        let bucket = config.bucket.clone();
        // Create first, update only a bucket whose configuration changed:
        // see `ensure::create_or_update` for why the order matters on a
        // cluster.
        let store = retry_unanswered(&bucket, timed_out, || async {
            match js.create_key_value(config.clone()).await {
                Err(error) if exists_with_another_configuration(&error) => {
                    js.create_or_update_key_value(config.clone()).await
                }
                created => created,
            }
        })
        .await
        .map_err(|source| BusError::Bucket {
            bucket: bucket.clone(),
            source,
        })?;
        debug!(bucket, "active-failure bucket ready");
        Ok(Self { store, bucket })
    }

    /// Name of the bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Records `outcome` (which must be `Failed`) as the active failure of
    /// its ServiceCertificate and Secret, replacing any earlier one.
    #[instrument(skip_all, fields(namespace = %outcome.namespace, name = %outcome.name))]
    pub async fn record(&self, outcome: &Outcome) -> Result<(), BusError> {
        if outcome.schema_version != SCHEMA_VERSION {
            return Err(invalid(format!(
                "schema_version is {}, expected {SCHEMA_VERSION}",
                outcome.schema_version
            )));
        }
        if !matches!(outcome.result, Some(outcome::Result::Failed(_))) {
            return Err(invalid("the result is not Failed".to_owned()));
        }
        let key = FailureKey::of(outcome).to_key()?;
        self.store
            .put(&key, outcome.encode_to_vec().into())
            .await
            .map_err(|source| self.error("put", &key, source))?;
        Ok(())
    }

    /// The active failure of `key`, if there is one.
    pub async fn get(&self, key: &FailureKey) -> Result<Option<Outcome>, BusError> {
        let key = key.to_key()?;
        let value = self
            .store
            .get(&key)
            .await
            .map_err(|source| self.error("get", &key, source))?;
        value
            .map(|bytes| decode_outcome_payload(&self.subject(&key), &bytes))
            .transpose()
    }

    /// Removes the active failure of `key` (a no-op if there is none).
    pub async fn remove(&self, key: &FailureKey) -> Result<(), BusError> {
        let key = key.to_key()?;
        self.store
            .delete(&key)
            .await
            .map_err(|source| self.error("delete", &key, source))
    }

    /// Every current failure, then every change as it happens. The stream
    /// yields [`FailureChange::CaughtUp`] once the entries that existed at
    /// the start were delivered. Entries that do not decode are skipped.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = Result<FailureChange, BusError>> + use<>, BusError> {
        let mut stream = self.store.stream.clone();
        let existing = stream
            .info()
            .await
            .map(|info| info.state.messages)
            .map_err(|source| self.error("info", ">", source))?;
        let watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|source| self.error("watch", ">", source))?;
        let this = self.clone();
        let entries = watch.map(move |entry| this.change(entry));
        Ok(caught_up_after(entries, existing == 0))
    }

    fn change(&self, entry: Result<kv::Entry, kv::WatcherError>) -> Option<Entry> {
        let entry = match entry {
            Ok(entry) => entry,
            Err(source) => {
                return Some(Entry {
                    change: Err(self.error("watch", ">", source)),
                    current: false,
                });
            }
        };
        let current = entry.seen_current || entry.delta == 0;
        let change = match entry.operation {
            kv::Operation::Put => {
                match decode_outcome_payload(&self.subject(&entry.key), &entry.value) {
                    Ok(outcome) => FailureChange::Recorded {
                        outcome: Box::new(outcome),
                        at: SystemTime::from(entry.created),
                    },
                    Err(err) => {
                        debug!(key = %entry.key, error = %err, "skipping an undecodable failure");
                        return Some(Entry {
                            change: Ok(None),
                            current,
                        });
                    }
                }
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                match FailureKey::from_key(&entry.key) {
                    Some(key) => FailureChange::Removed(key),
                    None => {
                        return Some(Entry {
                            change: Ok(None),
                            current,
                        });
                    }
                }
            }
        };
        Some(Entry {
            change: Ok(Some(change)),
            current,
        })
    }

    fn subject(&self, key: &str) -> String {
        format!("$KV.{}.{key}", self.bucket)
    }

    fn error(
        &self,
        operation: &'static str,
        key: &str,
        source: impl Into<async_nats::Error>,
    ) -> BusError {
        BusError::KeyValue {
            bucket: self.bucket.clone(),
            operation,
            key: key.to_owned(),
            source: source.into(),
        }
    }
}

/// The bucket's stream exists with another configuration. async-nats
/// reports errors of the bucket's stream with the stream's error as source.
fn exists_with_another_configuration(error: &CreateKeyValueError) -> bool {
    stream_error(error).is_some_and(ensure::exists_with_another_configuration)
}

/// The request for the bucket or its stream got no answer in time.
fn timed_out(error: &CreateKeyValueError) -> bool {
    error.kind() == CreateKeyValueErrorKind::TimedOut
        || stream_error(error).is_some_and(ensure::timed_out)
}

fn stream_error(error: &CreateKeyValueError) -> Option<&CreateStreamError> {
    std::error::Error::source(error)?.downcast_ref::<CreateStreamError>()
}

/// One watched entry, before the caught-up marker is inserted.
struct Entry {
    /// The change, `Ok(None)` for entries that are skipped.
    change: Result<Option<FailureChange>, BusError>,
    /// True once this entry is the newest the bucket had at the start.
    current: bool,
}

/// Inserts [`FailureChange::CaughtUp`] after the first entry that is current,
/// immediately when the bucket was `empty`, or after [`CATCH_UP_TIMEOUT`]
/// without one.
fn caught_up_after(
    entries: impl Stream<Item = Option<Entry>> + Send + 'static,
    empty: bool,
) -> impl Stream<Item = Result<FailureChange, BusError>> {
    let entries = Box::pin(entries);
    futures::stream::unfold(
        (entries, !empty, empty),
        |(mut entries, mut waiting, mut announce)| async move {
            loop {
                if announce {
                    return Some((Ok(FailureChange::CaughtUp), (entries, false, false)));
                }
                let next = if waiting {
                    match tokio::time::timeout(CATCH_UP_TIMEOUT, entries.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            waiting = false;
                            announce = true;
                            continue;
                        }
                    }
                } else {
                    entries.next().await
                };
                let entry = next??;
                let now_current = waiting && entry.current;
                if now_current {
                    waiting = false;
                }
                match entry.change {
                    Ok(None) if now_current => announce = true,
                    Ok(None) => {}
                    Ok(Some(change)) => return Some((Ok(change), (entries, waiting, now_current))),
                    Err(err) => return Some((Err(err), (entries, waiting, now_current))),
                }
            }
        },
    )
}

fn invalid(reason: String) -> BusError {
    BusError::InvalidMessage {
        message: "Outcome",
        reason,
    }
}

#[cfg(test)]
mod tests {
    use certflow_proto::v1::Issued;

    use super::*;

    fn key(namespace: &str, secret_name: &str, name: &str) -> FailureKey {
        FailureKey {
            namespace: namespace.into(),
            secret_name: secret_name.into(),
            name: name.into(),
        }
    }

    #[test]
    fn keys_name_namespace_secret_and_certificate() {
        let k = key("shop", "web.tls", "web");
        assert_eq!(k.to_key().ok().as_deref(), Some("shop.web_tls.web"));
        assert_eq!(FailureKey::from_key("shop.web_tls.web"), Some(k));
    }

    #[test]
    fn foreign_keys_do_not_parse() {
        for bad in ["", "shop", "shop.web", "shop.web.tls.x", "Shop.web.x"] {
            assert_eq!(FailureKey::from_key(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_that_cannot_be_keys_are_refused() {
        assert!(key("shop", "Web", "web").to_key().is_err());
        assert!(key("shop", "web", "").to_key().is_err());
    }

    #[test]
    fn the_key_of_an_outcome_uses_its_secret_and_certificate() {
        let outcome = Outcome {
            namespace: "shop".into(),
            name: "web".into(),
            secret_name: "web-tls".into(),
            result: Some(outcome::Result::Issued(Issued::default())),
            ..Outcome::default()
        };
        assert_eq!(FailureKey::of(&outcome), key("shop", "web-tls", "web"));
    }

    fn entry(change: Option<FailureChange>, current: bool) -> Option<Entry> {
        Some(Entry {
            change: Ok(change),
            current,
        })
    }

    async fn collect(entries: Vec<Option<Entry>>, empty: bool) -> Vec<FailureChange> {
        caught_up_after(futures::stream::iter(entries), empty)
            .filter_map(|change| async move { change.ok() })
            .collect()
            .await
    }

    #[tokio::test]
    async fn an_empty_bucket_is_caught_up_at_once() {
        let removed = FailureChange::Removed(key("a", "b", "c"));
        let changes = collect(vec![entry(Some(removed.clone()), true)], true).await;
        assert_eq!(changes, vec![FailureChange::CaughtUp, removed]);
    }

    #[tokio::test]
    async fn caught_up_follows_the_newest_existing_entry() {
        let first = FailureChange::Removed(key("a", "b", "c"));
        let second = FailureChange::Removed(key("a", "b", "d"));
        let live = FailureChange::Removed(key("a", "b", "e"));
        let changes = collect(
            vec![
                entry(Some(first.clone()), false),
                entry(Some(second.clone()), true),
                entry(Some(live.clone()), true),
            ],
            false,
        )
        .await;
        assert_eq!(
            changes,
            vec![first, second, FailureChange::CaughtUp, live],
            "CaughtUp is announced once, after the last existing entry"
        );
    }

    #[tokio::test]
    async fn a_skipped_newest_entry_still_announces_caught_up() {
        let changes = collect(vec![entry(None, true)], false).await;
        assert_eq!(changes, vec![FailureChange::CaughtUp]);
    }
}
