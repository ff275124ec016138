//! What the watcher remembers about a ServiceCertificate between
//! reconciles, keyed by uid: the last publication of a decision not yet
//! seen carried out, whether that publication holds one of its namespace's
//! slots ([`crate::fairness`]), and its streak of failed reconciles (the
//! backoff state, [`crate::retry::Streak`]). And, per namespace, the objects
//! whose decisions are held for a slot, in the order they were first held.
//! An object leaves the ledger once its decision no longer asks for work, or
//! when it is deleted (or its name comes back with another uid), so the
//! ledger's size follows the work in progress, not the cluster or its
//! history. It is the watcher's only per-object memory besides kube's
//! caches and the controller's queue, which both follow the cluster.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use certflow_api::ServiceCertificate;
use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;

use crate::fairness::{self, Admission, Cap, Claim, Load};
use crate::metrics::Metrics;
use crate::retry::{Class, Retry, Streak};
use crate::schedule::Publication;

/// Which object a call is about.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    pub uid: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

#[derive(Debug, Default)]
struct Entry {
    namespace: String,
    last: Option<Publication>,
    /// Holds one of its namespace's slots: admitted and published (or being
    /// published), not yet seen done.
    slot: bool,
    /// Failed reconciles since the last one without error.
    streak: Option<Streak>,
}

/// One held object.
#[derive(Debug)]
struct Waiter {
    uid: String,
    name: String,
}

/// One namespace's slots.
#[derive(Debug, Default)]
struct Slots {
    /// Objects holding a slot.
    in_flight: usize,
    /// Held objects, first held first.
    held: VecDeque<Waiter>,
    /// Held objects woken for a freed slot, not yet reconciled since.
    woken: HashSet<String>,
}

impl Slots {
    fn load(&self) -> Load {
        Load {
            in_flight: self.in_flight,
            woken: self.woken.len(),
        }
    }

    fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.held.is_empty() && self.woken.is_empty()
    }
}

#[derive(Debug, Default)]
struct Book {
    entries: HashMap<String, Entry>,
    namespaces: HashMap<String, Slots>,
    /// The namespace of every held or woken object, by uid.
    waiting: HashMap<String, String>,
}

/// Shared by every reconcile and the ServiceCertificate watch, which
/// forgets deleted objects.
#[derive(Debug, Clone)]
pub struct Ledger {
    book: Arc<Mutex<Book>>,
    cap: Cap,
    /// Where a held object is sent when a slot is set aside for it; the
    /// controller reconciles what arrives.
    wake: Option<UnboundedSender<ObjectRef<ServiceCertificate>>>,
    metrics: Metrics,
}

impl Ledger {
    /// An empty ledger without a cap, reporting its size as
    /// `certflow_watcher_decisions_pending`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            book: Arc::default(),
            cap: Cap::Unlimited,
            wake: None,
            metrics,
        }
    }

    /// The same ledger holding each namespace to `cap`: a held object is
    /// sent to `wake` when a slot is set aside for it, in the order objects
    /// were first held.
    pub fn with_cap(self, cap: Cap, wake: UnboundedSender<ObjectRef<ServiceCertificate>>) -> Self {
        Self {
            cap,
            wake: Some(wake),
            ..self
        }
    }

    /// The last publication remembered for `uid`.
    pub fn last_publication(&self, uid: &str) -> Option<Publication> {
        self.lock()
            .entries
            .get(uid)
            .and_then(|entry| entry.last.clone())
    }

    /// Whether `key`'s decision may be published now. When it may and its
    /// decision takes a slot ([`fairness::takes_slot`]), the slot is taken
    /// at once, so reconciles running side by side never exceed the cap.
    /// When not, the object joins its namespace's held objects (keeping its
    /// place if it already waits) and is woken when its turn comes.
    pub fn admit(&self, key: Key<'_>, takes_slot: bool) -> Admission {
        let cap = self.cap;
        let mut admission = Admission::Publish;
        self.update(Some(key.namespace), |book| {
            let holds_slot = book.entries.get(key.uid).is_some_and(|entry| entry.slot);
            let slots = book.namespaces.entry(key.namespace.to_owned()).or_default();
            let woken = slots.woken.remove(key.uid);
            let claim = Claim { holds_slot, woken };
            let mut load = slots.load();
            load.woken += usize::from(woken);
            admission = fairness::admit(cap, claim, load);
            match admission {
                Admission::Publish => {
                    slots.held.retain(|waiter| waiter.uid != key.uid);
                    book.waiting.remove(key.uid);
                    if takes_slot && !holds_slot {
                        slots.in_flight += 1;
                        let entry = book.entries.entry(key.uid.to_owned()).or_default();
                        entry.namespace = key.namespace.to_owned();
                        entry.slot = true;
                    }
                }
                Admission::Hold => {
                    let waiter = Waiter {
                        uid: key.uid.to_owned(),
                        name: key.name.to_owned(),
                    };
                    if woken {
                        // Its slot went to another object first; it stays next.
                        slots.held.push_front(waiter);
                    } else if !book.waiting.contains_key(key.uid) {
                        slots.held.push_back(waiter);
                    }
                    book.waiting
                        .insert(key.uid.to_owned(), key.namespace.to_owned());
                }
            }
        });
        admission
    }

    /// Remembers that `publication` of `key`'s decision was stored; ends an
    /// error streak. The object keeps its slot only if the decision takes
    /// one (a re-examination gives it back).
    pub fn published(&self, key: Key<'_>, publication: Publication, takes_slot: bool) {
        self.update(Some(key.namespace), |book| {
            let entry = book.entries.entry(key.uid.to_owned()).or_default();
            entry.namespace = key.namespace.to_owned();
            entry.last = Some(publication);
            entry.streak = None;
            let released = entry.slot && !takes_slot;
            entry.slot = entry.slot && takes_slot;
            if released {
                release(book, key.namespace);
            }
        });
    }

    /// Publishing `key`'s admitted decision failed: a slot taken for a
    /// first publication is given back (the object claims again when
    /// retried); one whose earlier work may be on the bus is kept.
    pub fn not_published(&self, key: Key<'_>) {
        self.update(Some(key.namespace), |book| {
            let Some(entry) = book.entries.get_mut(key.uid) else {
                return;
            };
            if entry.slot && entry.last.is_none() {
                entry.slot = false;
                release(book, key.namespace);
            }
        });
    }

    /// Counts a failed reconcile of `key`, of `class`; says when to try
    /// again ([`Streak::failed`]: a transient error backs off from the
    /// object's last delay, a permanent one waits `failure_retry`).
    pub fn failed(&self, key: Key<'_>, class: Class, failure_retry: Duration) -> Retry {
        let mut retry = None;
        self.update(Some(key.namespace), |book| {
            let entry = book.entries.entry(key.uid.to_owned()).or_default();
            entry.namespace = key.namespace.to_owned();
            let streak = entry.streak.get_or_insert_with(Streak::new);
            retry = Some(streak.failed(class, failure_retry));
        });
        retry.unwrap_or_else(|| Streak::new().failed(class, failure_retry))
    }

    /// A reconcile of `uid` ended without error and its decision still asks
    /// for work (the work published last, or a slot it waits for): ends an
    /// error streak, so the next error backs off from the start; keeps the
    /// publication.
    pub fn succeeded(&self, uid: &str) {
        let mut book = self.lock();
        if let Some(entry) = book.entries.get_mut(uid) {
            entry.streak = None;
        }
        self.report(&book);
    }

    /// Failed reconciles of `uid` in a row; 0 when its last one ended
    /// without error or nothing is remembered about it.
    pub fn failures(&self, uid: &str) -> u32 {
        self.lock()
            .entries
            .get(uid)
            .and_then(|entry| entry.streak.as_ref())
            .map_or(0, Streak::failures)
    }

    /// Forgets `uid`: its decision asks for no work (what was published is
    /// done), or it was deleted. Its slot, if it held one, goes to the next
    /// held object of its namespace.
    pub fn forget(&self, uid: &str) {
        let mut book = self.lock();
        if let Some(namespace) = forget(&mut book, uid) {
            self.wake_held(&mut book, &namespace);
        }
        self.report(&book);
    }

    /// Forgets every object for which `exists` is false: after a re-list,
    /// whatever was deleted while the watch was down.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        self.update(None, |book| {
            let gone: Vec<String> = book
                .entries
                .keys()
                .chain(book.waiting.keys())
                .filter(|uid| !exists(uid))
                .cloned()
                .collect();
            for uid in gone {
                let _ = forget(book, &uid);
            }
        });
    }

    /// How many objects the ledger holds a publication or an error streak
    /// for (held objects not included).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// How many objects' last reconcile failed with a permanent error.
    pub fn stalled(&self) -> usize {
        stalled(&self.lock())
    }

    /// Whether the ledger remembers anything about `uid`: a publication,
    /// an error streak, or a place among its namespace's held objects.
    pub fn remembers(&self, uid: &str) -> bool {
        let book = self.lock();
        book.entries.contains_key(uid) || book.waiting.contains_key(uid)
    }

    /// Whether the ledger holds no publication or error streak.
    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// How many objects' decisions are held for a slot (woken ones not yet
    /// reconciled included).
    pub fn held(&self) -> usize {
        self.lock().waiting.len()
    }

    /// How many objects of `namespace` hold a slot.
    pub fn in_flight(&self, namespace: &str) -> usize {
        self.lock()
            .namespaces
            .get(namespace)
            .map_or(0, |slots| slots.in_flight)
    }

    /// Applies `change`, then wakes held objects for the slots it freed:
    /// in `namespace`, or in every namespace when `None`.
    fn update(&self, namespace: Option<&str>, change: impl FnOnce(&mut Book)) {
        let mut book = self.lock();
        change(&mut book);
        match namespace {
            Some(namespace) => self.wake_held(&mut book, namespace),
            None => {
                let namespaces: Vec<String> = book.namespaces.keys().cloned().collect();
                for namespace in namespaces {
                    self.wake_held(&mut book, &namespace);
                }
            }
        }
        self.report(&book);
    }

    fn report(&self, book: &Book) {
        self.metrics.pending(book.entries.len());
        self.metrics.held(book.waiting.len());
        self.metrics.stalled(stalled(book));
    }

    /// Sets a free slot of `namespace` aside for each of its first held
    /// objects and sends them to be reconciled; drops the namespace's
    /// record once nothing of it is in flight or held.
    fn wake_held(&self, book: &mut Book, namespace: &str) {
        let Some(slots) = book.namespaces.get_mut(namespace) else {
            return;
        };
        let wake = fairness::to_wake(self.cap, slots.load(), slots.held.len());
        for waiter in slots.held.drain(..wake) {
            slots.woken.insert(waiter.uid);
            if let Some(sender) = &self.wake {
                // Closed only when the controller stopped.
                let _ = sender.unbounded_send(ObjectRef::new(&waiter.name).within(namespace));
            }
        }
        if slots.is_idle() {
            book.namespaces.remove(namespace);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Objects whose last reconcile failed with a permanent error. A scan:
/// the entries are the work in progress, and this runs under the lock
/// already taken for the change it reports.
fn stalled(book: &Book) -> usize {
    book.entries
        .values()
        .filter(|entry| entry.streak.as_ref().is_some_and(Streak::is_stalled))
        .count()
}

/// Gives one of `namespace`'s slots back.
fn release(book: &mut Book, namespace: &str) {
    if let Some(slots) = book.namespaces.get_mut(namespace) {
        slots.in_flight = slots.in_flight.saturating_sub(1);
    }
}

/// Removes `uid` from the book; returns the namespace whose slots that
/// changed, if any.
fn forget(book: &mut Book, uid: &str) -> Option<String> {
    let mut changed = None;
    if let Some(entry) = book.entries.remove(uid)
        && entry.slot
    {
        release(book, &entry.namespace);
        changed = Some(entry.namespace);
    }
    if let Some(namespace) = book.waiting.remove(uid) {
        if let Some(slots) = book.namespaces.get_mut(&namespace) {
            slots.woken.remove(uid);
            slots.held.retain(|waiter| waiter.uid != uid);
        }
        changed = Some(namespace);
    }
    changed
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use futures::channel::mpsc::{UnboundedReceiver, unbounded};

    use super::*;

    fn publication(dedup_id: &str) -> Publication {
        Publication {
            dedup_id: dedup_id.to_owned(),
            attempt: 0,
            at: SystemTime::UNIX_EPOCH,
            issuer_version: "absent".to_owned(),
        }
    }

    /// Object `uid` in namespace `shop`, named after its uid.
    fn shop(uid: &str) -> Key<'_> {
        Key {
            uid,
            namespace: "shop",
            name: uid,
        }
    }

    fn capped(objects: usize) -> (Ledger, UnboundedReceiver<ObjectRef<ServiceCertificate>>) {
        let (wake, woken) = unbounded();
        let ledger = Ledger::new(Metrics::default()).with_cap(Cap::from_flag(objects), wake);
        (ledger, woken)
    }

    /// The names of the objects woken so far.
    fn woken(receiver: &mut UnboundedReceiver<ObjectRef<ServiceCertificate>>) -> Vec<String> {
        std::iter::from_fn(|| receiver.try_recv().ok())
            .map(|object| object.name)
            .collect()
    }

    /// Admits `key`'s decision and, when published, records it.
    fn publish(ledger: &Ledger, key: Key<'_>, takes_slot: bool) -> Admission {
        let admission = ledger.admit(key, takes_slot);
        if admission == Admission::Publish {
            ledger.published(key, publication(key.uid), takes_slot);
        }
        admission
    }

    #[test]
    fn a_publication_is_remembered_until_the_object_is_forgotten() {
        let ledger = Ledger::new(Metrics::default());
        ledger.published(shop("a"), publication("a/1"), true);
        assert_eq!(ledger.last_publication("a"), Some(publication("a/1")));
        ledger.forget("a");
        assert_eq!(ledger.last_publication("a"), None);
        assert!(ledger.is_empty());
    }

    const FAILURE_RETRY: Duration = Duration::from_secs(600);

    fn fail(ledger: &Ledger, key: Key<'_>, class: Class) -> Retry {
        ledger.failed(key, class, FAILURE_RETRY)
    }

    #[test]
    fn failures_count_in_a_row_and_a_publication_or_a_success_ends_the_streak() {
        let ledger = Ledger::new(Metrics::default());
        assert_eq!(fail(&ledger, shop("a"), Class::Transient).failures, 1);
        assert_eq!(fail(&ledger, shop("a"), Class::Transient).failures, 2);
        ledger.published(shop("a"), publication("a/1"), true);
        assert_eq!(ledger.failures("a"), 0);
        assert_eq!(fail(&ledger, shop("a"), Class::Transient).failures, 1);
        ledger.succeeded("a");
        assert_eq!(fail(&ledger, shop("a"), Class::Transient).failures, 1);
        assert_eq!(ledger.last_publication("a"), Some(publication("a/1")));
    }

    #[test]
    fn a_transient_error_backs_off_per_object_and_starts_over_after_a_success() {
        let ledger = Ledger::new(Metrics::default());
        for _ in 0..4 {
            fail(&ledger, shop("a"), Class::Transient);
        }
        let fifth = fail(&ledger, shop("a"), Class::Transient).after;
        assert!(fifth >= Duration::from_secs(16), "{fifth:?}");
        let other = fail(&ledger, shop("b"), Class::Transient).after;
        assert!(
            other < Duration::from_secs(2),
            "b has its own streak: {other:?}"
        );
        ledger.succeeded("a");
        let again = fail(&ledger, shop("a"), Class::Transient).after;
        assert!(again < Duration::from_secs(2), "a starts over: {again:?}");
    }

    #[test]
    fn a_permanent_error_waits_the_failure_retry_and_counts_the_object_as_stalled() {
        let ledger = Ledger::new(Metrics::default());
        let retry = fail(&ledger, shop("a"), Class::Permanent);
        assert!(retry.after >= FAILURE_RETRY, "{:?}", retry.after);
        fail(&ledger, shop("b"), Class::Transient);
        assert_eq!(ledger.stalled(), 1);
        ledger.published(shop("a"), publication("a/1"), true);
        assert_eq!(ledger.stalled(), 0, "a publication ends the stall");
        fail(&ledger, shop("a"), Class::Permanent);
        ledger.succeeded("a");
        assert_eq!(ledger.stalled(), 0, "so does a reconcile without error");
    }

    #[test]
    fn a_deleted_object_leaves_nothing_behind() {
        let (ledger, _receiver) = capped(1);
        // a publishes and holds the slot; b is held; c keeps failing.
        assert_eq!(publish(&ledger, shop("a"), true), Admission::Publish);
        fail(&ledger, shop("a"), Class::Transient);
        assert_eq!(publish(&ledger, shop("b"), true), Admission::Hold);
        fail(&ledger, shop("c"), Class::Permanent);
        for uid in ["a", "b", "c"] {
            assert!(ledger.remembers(uid), "{uid}");
            ledger.forget(uid);
            assert!(!ledger.remembers(uid), "{uid} is forgotten");
        }
        assert!(ledger.is_empty());
        assert_eq!((ledger.held(), ledger.stalled()), (0, 0));
        assert_eq!(ledger.in_flight("shop"), 0);
        assert!(ledger.lock().namespaces.is_empty(), "no namespace record");
    }

    #[test]
    fn a_name_back_with_another_uid_starts_afresh_and_the_old_uid_is_forgotten() {
        let ledger = Ledger::new(Metrics::default());
        let old = Key {
            uid: "uid-1",
            namespace: "shop",
            name: "api",
        };
        let new = Key {
            uid: "uid-2",
            ..old
        };
        ledger.published(old, publication("uid-1/1"), true);
        fail(&ledger, old, Class::Permanent);
        // The Delete was missed (the watch was down); the re-list has the
        // new object only.
        ledger.retain(|uid| uid == "uid-2");
        assert!(!ledger.remembers("uid-1"));
        assert_eq!(ledger.last_publication("uid-2"), None);
        assert_eq!(fail(&ledger, new, Class::Transient).failures, 1);
        assert_eq!(ledger.stalled(), 0);
    }

    #[test]
    fn after_a_re_list_only_existing_objects_are_kept() {
        let ledger = Ledger::new(Metrics::default());
        for uid in ["a", "b", "c"] {
            ledger.published(shop(uid), publication(uid), true);
        }
        fail(&ledger, shop("d"), Class::Permanent);
        ledger.retain(|uid| uid == "b" || uid == "d");
        assert_eq!(ledger.len(), 2);
        assert!(ledger.last_publication("a").is_none());
        assert!(ledger.last_publication("b").is_some());
    }

    #[test]
    fn without_a_cap_nothing_is_held() {
        let ledger = Ledger::new(Metrics::default());
        for uid in ["a", "b", "c", "d"] {
            assert_eq!(publish(&ledger, shop(uid), true), Admission::Publish);
        }
        assert_eq!(ledger.held(), 0);
        assert_eq!(ledger.in_flight("shop"), 4);
    }

    #[test]
    fn a_namespace_at_its_cap_holds_further_decisions_and_publishes_them_first_held_first() {
        let (ledger, mut receiver) = capped(2);
        for uid in ["a", "b"] {
            assert_eq!(publish(&ledger, shop(uid), true), Admission::Publish);
        }
        for uid in ["c", "d", "e"] {
            assert_eq!(publish(&ledger, shop(uid), true), Admission::Hold, "{uid}");
        }
        // A held object looked at again keeps its place.
        assert_eq!(publish(&ledger, shop("c"), true), Admission::Hold);
        assert_eq!(ledger.held(), 3);
        assert_eq!(ledger.len(), 2, "held objects are not pending on the bus");
        assert!(woken(&mut receiver).is_empty());

        ledger.forget("a");
        assert_eq!(woken(&mut receiver), ["c"]);
        assert_eq!(
            publish(&ledger, shop("f"), true),
            Admission::Hold,
            "a newcomer does not take the slot set aside for c"
        );
        assert_eq!(publish(&ledger, shop("c"), true), Admission::Publish);
        assert_eq!(ledger.in_flight("shop"), 2);

        ledger.forget("b");
        ledger.forget("c");
        assert_eq!(woken(&mut receiver), ["d", "e"]);
        for uid in ["d", "e"] {
            assert_eq!(publish(&ledger, shop(uid), true), Admission::Publish);
        }
        ledger.forget("d");
        assert_eq!(woken(&mut receiver), ["f"]);
        assert_eq!(publish(&ledger, shop("f"), true), Admission::Publish);
        assert_eq!(ledger.held(), 0);
    }

    #[test]
    fn another_namespace_is_not_held_by_a_full_one() {
        let (ledger, _receiver) = capped(1);
        assert_eq!(publish(&ledger, shop("a"), true), Admission::Publish);
        assert_eq!(publish(&ledger, shop("b"), true), Admission::Hold);
        let quiet = Key {
            uid: "q",
            namespace: "quiet",
            name: "q",
        };
        assert_eq!(publish(&ledger, quiet, true), Admission::Publish);
    }

    #[test]
    fn an_object_in_flight_publishes_again_over_the_cap() {
        let (ledger, _receiver) = capped(1);
        assert_eq!(publish(&ledger, shop("a"), true), Admission::Publish);
        assert_eq!(publish(&ledger, shop("b"), true), Admission::Hold);
        assert_eq!(ledger.admit(shop("a"), true), Admission::Publish);
        assert_eq!(ledger.in_flight("shop"), 1, "the same slot");
    }

    #[test]
    fn a_woken_object_that_no_longer_needs_its_slot_passes_it_on() {
        let (ledger, mut receiver) = capped(1);
        for uid in ["a", "b", "c"] {
            publish(&ledger, shop(uid), true);
        }
        ledger.forget("a");
        assert_eq!(woken(&mut receiver), ["b"]);
        // b's decision now asks for nothing (its Secret came back, say).
        ledger.forget("b");
        assert_eq!(woken(&mut receiver), ["c"]);
    }

    #[test]
    fn a_held_object_deleted_leaves_the_queue() {
        let (ledger, mut receiver) = capped(1);
        for uid in ["a", "b", "c"] {
            publish(&ledger, shop(uid), true);
        }
        ledger.forget("b");
        assert_eq!(ledger.held(), 1);
        ledger.retain(|uid| uid != "a");
        assert_eq!(woken(&mut receiver), ["c"]);
        assert_eq!(ledger.in_flight("shop"), 0);
    }

    #[test]
    fn a_re_examination_holds_no_slot() {
        let (ledger, mut receiver) = capped(1);
        assert_eq!(publish(&ledger, shop("a"), true), Admission::Publish);
        assert_eq!(publish(&ledger, shop("b"), true), Admission::Hold);
        // a was refused; its re-examination gives the slot back.
        assert_eq!(publish(&ledger, shop("a"), false), Admission::Publish);
        assert_eq!(ledger.in_flight("shop"), 0);
        assert_eq!(woken(&mut receiver), ["b"]);
        assert_eq!(
            ledger.admit(shop("a"), false),
            Admission::Hold,
            "at the cap, a re-examination waits like any other decision"
        );
    }

    #[test]
    fn a_first_publication_that_failed_gives_its_slot_back() {
        let (ledger, mut receiver) = capped(1);
        assert_eq!(ledger.admit(shop("a"), true), Admission::Publish);
        assert_eq!(publish(&ledger, shop("b"), true), Admission::Hold);
        ledger.not_published(shop("a"));
        assert_eq!(ledger.in_flight("shop"), 0);
        assert_eq!(woken(&mut receiver), ["b"]);

        // A republication that failed keeps the slot: the first may be queued.
        assert_eq!(publish(&ledger, shop("b"), true), Admission::Publish);
        assert_eq!(ledger.admit(shop("b"), true), Admission::Publish);
        ledger.not_published(shop("b"));
        assert_eq!(ledger.in_flight("shop"), 1);
    }
}
