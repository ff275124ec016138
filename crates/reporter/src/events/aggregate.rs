//! Folding repeats into one Event per (object, type, reason, note, and the
//! `Report` caller if any), and deciding when to write it.
//!
//! Each observation of a notice about an object is counted. The first one
//! creates the Event; repeats grow its `series.count`, written at most once
//! per [`AggregationSettings::series_interval`] (the latest count wins), and
//! every write needs a token from the (object, reason) bucket of
//! [`super::limit`]. A notice whose note changed is a different key and so a
//! different Event: the API server refuses to change a note, and
//! `kubectl describe` must show the new message.
//!
//! Event names are derived from the key ([`event_name`]), so two replicas,
//! or a replica restarted since, name the same Event the same way; the
//! writer turns "already exists" into a series update instead of a duplicate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use super::limit::{Limiter, RateLimit};
use super::{EventType, Notice, ObjectRef};

/// The longest Kubernetes object name.
const MAX_NAME_BYTES: usize = 253;

/// How aggregation and the rate limit behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AggregationSettings {
    /// The per-(object, reason) token bucket.
    pub limit: RateLimit,
    /// Shortest time between two series updates of one Event.
    pub series_interval: Duration,
    /// An Event not observed for this long is forgotten (a later repeat
    /// finds it again by name).
    pub idle: Duration,
    /// The most Events remembered; the least recently observed go first.
    pub max_entries: usize,
}

impl Default for AggregationSettings {
    fn default() -> Self {
        Self {
            limit: RateLimit::default(),
            series_interval: Duration::from_secs(10),
            idle: Duration::from_secs(15 * 60),
            max_entries: 20_000,
        }
    }
}

/// Identifies one Event: the object, the type, the reason, the note and,
/// for a `Report` call, the caller. Two callers sending the same words get
/// an Event each, so none is counted under another's name (their notes
/// differ already; the caller is keyed too so that this never depends on
/// how a note is worded or cut).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventKey {
    uid: String,
    type_: EventType,
    reason: String,
    note_hash: u64,
    caller: Option<String>,
}

impl EventKey {
    pub fn new(regarding: &ObjectRef, notice: &Notice) -> Self {
        Self {
            uid: regarding.uid.clone(),
            type_: notice.type_(),
            reason: notice.reason().to_owned(),
            note_hash: fnv1a(&[notice.note()]),
            caller: notice.caller().map(str::to_owned),
        }
    }

    /// The object's uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    fn limit_key(&self) -> (String, String) {
        (self.uid.clone(), self.reason.clone())
    }
}

/// The Event's name: the object's name and a hash of the key, so that every
/// replica names the same Event the same way. certflow's own Events hash
/// exactly what they did before `Report` callers were keyed, so their names
/// (which a new replica looks up to see whether a Pod was told) did not
/// change.
pub fn event_name(regarding: &ObjectRef, notice: &Notice) -> String {
    let mut parts = vec![
        regarding.uid.as_str(),
        notice.type_().as_str(),
        notice.reason(),
        notice.note(),
    ];
    parts.extend(notice.caller());
    let hash = fnv1a(&parts);
    let suffix = format!(".{hash:016x}");
    let mut prefix: String = regarding
        .name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    prefix.truncate(MAX_NAME_BYTES - suffix.len());
    let prefix = prefix.trim_matches(|c| c == '-' || c == '.');
    let prefix = if prefix.is_empty() { "event" } else { prefix };
    format!("{prefix}{suffix}")
}

/// A write the aggregator asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Write {
    pub key: EventKey,
    pub kind: WriteKind,
    /// The Event's name.
    pub name: String,
    pub regarding: ObjectRef,
    pub notice: Notice,
    /// Observations so far; a count of 2 or more is written as `series`.
    pub count: i32,
    /// The part of `count` the API server already has.
    pub written: i32,
    /// The Event's `resourceVersion` after this replica's last write: the
    /// precondition of the next update, so that two replicas never lower
    /// each other's count.
    pub resource_version: Option<String>,
    /// When the notice was first observed (the Event's `eventTime`).
    pub first_observed: Timestamp,
    /// When it was last observed (`series.lastObservedTime`).
    pub last_observed: Timestamp,
}

/// Whether a [`Write`] creates the Event or updates its series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteKind {
    Create,
    UpdateSeries,
}

/// What became of one observation.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The write to make now, if any.
    pub write: Option<Write>,
    /// True when the observation was a repeat folded into an existing series.
    pub repeat: bool,
    /// True when a write was due but the rate limit deferred it.
    pub rate_limited: bool,
}

#[derive(Debug)]
struct Entry {
    name: String,
    regarding: ObjectRef,
    notice: Notice,
    count: i32,
    written: i32,
    resource_version: Option<String>,
    first_observed: Timestamp,
    last_observed: Timestamp,
    last_write: Option<Instant>,
    last_seen: Instant,
    in_flight: bool,
}

impl Entry {
    fn dirty(&self) -> bool {
        self.count > self.written
    }
}

/// Remembered Events and their rate-limit buckets.
#[derive(Debug)]
pub struct Aggregator {
    settings: AggregationSettings,
    entries: HashMap<EventKey, Entry>,
    limiter: Limiter<(String, String)>,
}

impl Aggregator {
    pub fn new(settings: AggregationSettings) -> Self {
        Self {
            settings,
            entries: HashMap::new(),
            limiter: Limiter::new(settings.limit),
        }
    }

    /// Counts one observation of `notice` about `regarding` and says whether
    /// to write now.
    pub fn observe(
        &mut self,
        regarding: &ObjectRef,
        notice: &Notice,
        now: Instant,
        wall: Timestamp,
    ) -> Decision {
        let key = EventKey::new(regarding, notice);
        let entry = self.entries.entry(key.clone()).or_insert_with(|| Entry {
            name: event_name(regarding, notice),
            regarding: regarding.clone(),
            notice: notice.clone(),
            count: 0,
            written: 0,
            resource_version: None,
            first_observed: wall,
            last_observed: wall,
            last_write: None,
            last_seen: now,
            in_flight: false,
        });
        let repeat = entry.count > 0;
        entry.count = entry.count.saturating_add(1);
        entry.last_observed = wall;
        entry.last_seen = now;
        let series_due = entry
            .last_write
            .is_none_or(|at| now.saturating_duration_since(at) >= self.settings.series_interval);
        let due = !entry.in_flight && (entry.written == 0 || series_due);
        if !due {
            return Decision {
                write: None,
                repeat,
                rate_limited: false,
            };
        }
        if !self.limiter.try_acquire(&key.limit_key(), now) {
            return Decision {
                write: None,
                repeat,
                rate_limited: true,
            };
        }
        entry.in_flight = true;
        let write = write(&key, entry);
        Decision {
            write: Some(write),
            repeat,
            rate_limited: false,
        }
    }

    /// Writes that have become due: Events with unwritten observations whose
    /// series interval has passed and whose bucket has a token again.
    pub fn due(&mut self, now: Instant) -> Vec<Write> {
        let interval = self.settings.series_interval;
        let mut writes = Vec::new();
        for (key, entry) in &mut self.entries {
            let waited = entry
                .last_write
                .is_none_or(|at| now.saturating_duration_since(at) >= interval);
            if entry.in_flight || !entry.dirty() || !waited {
                continue;
            }
            if self.limiter.try_acquire(&key.limit_key(), now) {
                entry.in_flight = true;
                writes.push(write(key, entry));
            }
        }
        writes
    }

    /// Every write still owed, whatever the series interval (for shutdown);
    /// the rate limit still applies.
    pub fn owed(&mut self, now: Instant) -> Vec<Write> {
        let mut writes = Vec::new();
        for (key, entry) in &mut self.entries {
            if entry.in_flight || !entry.dirty() {
                continue;
            }
            if self.limiter.try_acquire(&key.limit_key(), now) {
                entry.in_flight = true;
                writes.push(write(key, entry));
            }
        }
        writes
    }

    /// Records that `write` reached the API server with count `stored` (which
    /// differs from `write.count` when another replica had counted too) and
    /// left the Event at `resource_version`.
    pub fn written(
        &mut self,
        write: &Write,
        stored: i32,
        resource_version: Option<String>,
        now: Instant,
    ) {
        if let Some(entry) = self.entries.get_mut(&write.key) {
            entry.count = entry.count.saturating_add(stored - write.count);
            entry.written = stored;
            entry.resource_version = resource_version;
            entry.last_write = Some(now);
            entry.in_flight = false;
        }
    }

    /// Records that `write` failed. After a transient failure the
    /// observations stay owed and are written later; after a permanent one
    /// (the namespace is being deleted, the API refuses the Event) the Event
    /// is forgotten.
    pub fn failed(&mut self, write: &Write, transient: bool) {
        if !transient {
            self.entries.remove(&write.key);
        } else if let Some(entry) = self.entries.get_mut(&write.key) {
            entry.in_flight = false;
            // Not written: its rate-limit token goes back, or an API outage
            // (a try every second) would use up the burst and hold the
            // Event back for minutes after the API server is back.
            self.limiter.refund(&write.key.limit_key());
        }
    }

    /// Forgets certflow's own Warnings about the object `uid`, so that no
    /// series update still owed is written after the failure was resolved.
    /// A `Report` caller's Warning is not certflow's to resolve: its count
    /// is still written.
    pub fn forget_warnings(&mut self, uid: &str) {
        self.entries.retain(|key, _| {
            !(key.uid == uid && key.type_ == EventType::Warning && key.caller.is_none())
        });
    }

    /// Forgets Events not observed for [`AggregationSettings::idle`] and,
    /// above [`AggregationSettings::max_entries`], the least recently
    /// observed; forgets full rate-limit buckets.
    pub fn prune(&mut self, now: Instant) {
        let idle = self.settings.idle;
        self.entries.retain(|_, entry| {
            entry.in_flight || now.saturating_duration_since(entry.last_seen) < idle
        });
        let excess = self.entries.len().saturating_sub(self.settings.max_entries);
        if excess > 0 {
            let mut by_age: Vec<(Instant, EventKey)> = self
                .entries
                .iter()
                .map(|(key, entry)| (entry.last_seen, key.clone()))
                .collect();
            by_age.sort_by_key(|(seen, _)| *seen);
            for (_, key) in by_age.into_iter().take(excess) {
                self.entries.remove(&key);
            }
        }
        self.limiter.prune(now);
    }

    /// Events remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no Event is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn write(key: &EventKey, entry: &Entry) -> Write {
    Write {
        key: key.clone(),
        kind: if entry.written == 0 {
            WriteKind::Create
        } else {
            WriteKind::UpdateSeries
        },
        name: entry.name.clone(),
        regarding: entry.regarding.clone(),
        notice: entry.notice.clone(),
        count: entry.count,
        written: entry.written,
        resource_version: entry.resource_version.clone(),
        first_observed: entry.first_observed,
        last_observed: entry.last_observed,
    }
}

/// 64-bit FNV-1a over `parts`, each followed by a zero byte: stable across
/// builds and platforms (std's hasher is not), which Event names need.
fn fnv1a(parts: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

#[cfg(test)]
mod tests;
