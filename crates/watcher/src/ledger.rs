//! What the watcher remembers about a ServiceCertificate between
//! reconciles, keyed by uid: the last publication of a decision not yet
//! seen carried out, and how many reconciles in a row failed. An object
//! leaves the ledger once its decision no longer asks for work, or when it
//! is deleted, so the ledger's size follows the work in progress, not the
//! cluster or its history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::metrics::Metrics;
use crate::schedule::Publication;

#[derive(Debug, Default)]
struct Entry {
    last: Option<Publication>,
    failures: u32,
}

/// Shared by every reconcile and the ServiceCertificate watch, which
/// forgets deleted objects.
#[derive(Debug, Clone)]
pub struct Ledger {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    metrics: Metrics,
}

impl Ledger {
    /// An empty ledger reporting its size as `certflow_watcher_decisions_pending`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            entries: Arc::default(),
            metrics,
        }
    }

    /// The last publication remembered for `uid`.
    pub fn last_publication(&self, uid: &str) -> Option<Publication> {
        self.lock().get(uid).and_then(|entry| entry.last.clone())
    }

    /// Remembers that `publication` was stored; ends an error streak.
    pub fn published(&self, uid: &str, publication: Publication) {
        self.update(|entries| {
            let entry = entries.entry(uid.to_owned()).or_default();
            entry.last = Some(publication);
            entry.failures = 0;
        });
    }

    /// Counts a failed reconcile of `uid`; returns the failures in a row,
    /// this one included.
    pub fn failed(&self, uid: &str) -> u32 {
        let mut failures = 0;
        self.update(|entries| {
            let entry = entries.entry(uid.to_owned()).or_default();
            entry.failures = entry.failures.saturating_add(1);
            failures = entry.failures;
        });
        failures
    }

    /// A reconcile of `uid` succeeded and its decision still asks for the
    /// work published last: ends an error streak, keeps the publication.
    pub fn waiting(&self, uid: &str) {
        self.update(|entries| {
            if let Some(entry) = entries.get_mut(uid) {
                entry.failures = 0;
            }
        });
    }

    /// Forgets `uid`: its decision asks for no work (what was published is
    /// done), or it was deleted.
    pub fn forget(&self, uid: &str) {
        self.update(|entries| {
            entries.remove(uid);
        });
    }

    /// Forgets every object for which `exists` is false: after a re-list,
    /// whatever was deleted while the watch was down.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        self.update(|entries| entries.retain(|uid, _| exists(uid)));
    }

    /// How many objects the ledger holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the ledger holds no object.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn update(&self, change: impl FnOnce(&mut HashMap<String, Entry>)) {
        let mut entries = self.lock();
        change(&mut entries);
        self.metrics.pending(entries.len());
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn publication(dedup_id: &str) -> Publication {
        Publication {
            dedup_id: dedup_id.to_owned(),
            attempt: 0,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_publication_is_remembered_until_the_object_is_forgotten() {
        let ledger = Ledger::new(Metrics::default());
        ledger.published("a", publication("a/1"));
        assert_eq!(ledger.last_publication("a"), Some(publication("a/1")));
        ledger.forget("a");
        assert_eq!(ledger.last_publication("a"), None);
        assert!(ledger.is_empty());
    }

    #[test]
    fn failures_count_in_a_row_and_a_publication_or_a_wait_ends_the_streak() {
        let ledger = Ledger::new(Metrics::default());
        assert_eq!(ledger.failed("a"), 1);
        assert_eq!(ledger.failed("a"), 2);
        ledger.published("a", publication("a/1"));
        assert_eq!(ledger.failed("a"), 1);
        ledger.waiting("a");
        assert_eq!(ledger.failed("a"), 1);
        assert_eq!(ledger.last_publication("a"), Some(publication("a/1")));
    }

    #[test]
    fn after_a_re_list_only_existing_objects_are_kept() {
        let ledger = Ledger::new(Metrics::default());
        for uid in ["a", "b", "c"] {
            ledger.published(uid, publication(uid));
        }
        ledger.failed("d");
        ledger.retain(|uid| uid == "b" || uid == "d");
        assert_eq!(ledger.len(), 2);
        assert!(ledger.last_publication("a").is_none());
        assert!(ledger.last_publication("b").is_some());
    }
}
