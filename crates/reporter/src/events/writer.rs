//! Observes notices about objects; writes `events.k8s.io/v1` Events (create,
//! or a merge patch of `series`); never touches anything but Events.
//!
//! The decisions come from [`Aggregator`]; this layer only carries them to
//! the API server and handles the two races of deterministic names: "already
//! exists" on create (another replica or an earlier run wrote it: read its
//! count and continue its series) and "not found" on update (the Event
//! expired: create it again).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;
use tracing::{debug, instrument, warn};

use super::aggregate::{AggregationSettings, Aggregator, Write, WriteKind, event_name};
use super::{Notice, ObjectRef, REPORTING_CONTROLLER};
use crate::Error;
use crate::error::is_status;
use crate::metrics::Metrics;

/// How often owed series updates are looked for.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How the writer identifies itself and aggregates.
#[derive(Clone, Debug)]
pub struct WriterSettings {
    /// `reportingInstance` of certflow's own Events: this replica (its Pod
    /// name). An Event written for a `Report` call names its caller instead.
    pub instance: String,
    pub aggregation: AggregationSettings,
}

/// What the API server holds after a write.
#[derive(Debug)]
struct Stored {
    count: i32,
    resource_version: Option<String>,
}

/// What [`EventWriter::record`] did with one notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// An Event was created or its series updated.
    Written,
    /// Counted; the write follows with a later series update.
    Aggregated,
    /// Counted; the write waits for the rate limit.
    RateLimited,
}

/// Writes Events through the aggregator. Cheap to clone.
#[derive(Clone)]
pub struct EventWriter {
    client: Client,
    instance: String,
    aggregator: Arc<Mutex<Aggregator>>,
    metrics: Metrics,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl EventWriter {
    pub fn new(client: Client, settings: WriterSettings, metrics: Metrics) -> Self {
        Self {
            client,
            instance: settings.instance,
            aggregator: Arc::new(Mutex::new(Aggregator::new(settings.aggregation))),
            metrics,
        }
    }

    /// Records one observation of `notice` about `regarding`, writing now if
    /// the aggregator says so. An error means the write was due and failed;
    /// if the failure is transient, the observation stays owed and the
    /// flusher writes it later.
    #[instrument(skip_all, fields(kind = %regarding.kind, name = %regarding.name, reason = notice.reason()))]
    pub async fn record(&self, regarding: &ObjectRef, notice: &Notice) -> Result<Recorded, Error> {
        let decision = self
            .with_aggregator(|a| a.observe(regarding, notice, Instant::now(), Timestamp::now()));
        if decision.repeat {
            self.metrics.event_aggregated(notice.type_());
        }
        if decision.rate_limited {
            self.metrics.event_rate_limited(notice.type_());
            debug!("rate limited; the write waits for a token");
            return Ok(Recorded::RateLimited);
        }
        match decision.write {
            Some(write) => self.execute(write).await.map(|()| Recorded::Written),
            None => Ok(Recorded::Aggregated),
        }
    }

    /// True when the Event of `notice` about `regarding` exists (written by
    /// any replica, at any time, and not yet expired): Events are named
    /// after what they say, so one read answers "was this object told?".
    pub async fn exists(&self, regarding: &ObjectRef, notice: &Notice) -> Result<bool, Error> {
        let name = event_name(regarding, notice);
        self.api(regarding)
            .get_opt(&name)
            .await
            .map(|event| event.is_some())
            .map_err(Error::kube("reading an Event"))
    }

    /// Stops writing Warnings still owed about the object `uid` (its
    /// failure was resolved).
    pub fn forget_warnings(&self, uid: &str) {
        self.with_aggregator(|a| a.forget_warnings(uid));
    }

    /// Writes owed series updates every second until `shutdown`, then once
    /// more without waiting for the series interval.
    pub async fn run_flusher(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = Instant::now();
            let writes = self.with_aggregator(|a| a.due(now));
            self.execute_all(writes).await;
            if now.duration_since(pruned) >= Duration::from_secs(60) {
                let remembered = self.with_aggregator(|a| {
                    a.prune(now);
                    a.len()
                });
                self.metrics.set_events_remembered(remembered);
                pruned = now;
            }
        }
        let writes = self.with_aggregator(|a| a.owed(Instant::now()));
        self.execute_all(writes).await;
    }

    async fn execute_all(&self, writes: Vec<Write>) {
        for write in writes {
            if let Err(err) = self.execute(write).await {
                warn!(error = %err, "writing an owed Event failed; trying again later");
            }
        }
    }

    /// Carries out `write`, reporting its result to the aggregator.
    async fn execute(&self, write: Write) -> Result<(), Error> {
        let result = match write.kind {
            WriteKind::Create => self.create(&write).await,
            WriteKind::UpdateSeries => self.update(&write).await,
        };
        match result {
            Ok(Stored {
                count,
                resource_version,
            }) => {
                self.with_aggregator(|a| {
                    a.written(&write, count, resource_version, Instant::now())
                });
                Ok(())
            }
            Err(err) => {
                self.metrics.event_write_failed(err.kind());
                self.with_aggregator(|a| a.failed(&write, err.is_transient()));
                Err(err)
            }
        }
    }

    /// Creates the Event; if it exists already (another replica, or this
    /// one before a restart, wrote it), adds this replica's observations to
    /// its series.
    async fn create(&self, write: &Write) -> Result<Stored, Error> {
        let events = self.api(&write.regarding);
        match events
            .create(&PostParams::default(), &self.event(write))
            .await
        {
            Ok(created) => {
                self.metrics.event_written(write.notice.type_(), "create");
                Ok(Stored {
                    count: write.count,
                    resource_version: created.metadata.resource_version,
                })
            }
            Err(err) if is_status(&err, 409) => {
                debug!(name = %write.name, "the Event exists already; continuing its series");
                self.merge(&events, write).await
            }
            Err(err) => Err(Error::kube("creating an Event")(err)),
        }
    }

    /// Updates the Event's series, on the condition that nobody else wrote
    /// it since this replica did; otherwise merges the counts. If the Event
    /// is gone (expired), creates it again.
    async fn update(&self, write: &Write) -> Result<Stored, Error> {
        let events = self.api(&write.regarding);
        let precondition = write.resource_version.as_deref();
        match self
            .patch_series(&events, write, write.count, precondition)
            .await
        {
            Ok(resource_version) => Ok(Stored {
                count: write.count,
                resource_version,
            }),
            Err(err) if is_status(&err, 404) => {
                debug!(name = %write.name, "the Event expired; creating it again");
                Box::pin(self.create(write)).await
            }
            Err(err) if is_status(&err, 409) => {
                debug!(name = %write.name, "another replica updated the Event; merging counts");
                self.merge(&events, write).await
            }
            Err(err) => Err(Error::kube("updating an Event's series")(err)),
        }
    }

    /// Reads the Event and adds the observations the API server does not
    /// have yet (`count - written`) to its count, conditional on what was read.
    async fn merge(&self, events: &Api<Event>, write: &Write) -> Result<Stored, Error> {
        let existing = events
            .get(&write.name)
            .await
            .map_err(Error::kube("reading an existing Event"))?;
        let count = existing
            .series
            .as_ref()
            .map_or(1, |series| series.count)
            .saturating_add(write.count - write.written);
        let resource_version = self
            .patch_series(
                events,
                write,
                count,
                existing.metadata.resource_version.as_deref(),
            )
            .await
            .map_err(Error::kube("merging an Event's series"))?;
        Ok(Stored {
            count,
            resource_version,
        })
    }

    /// Sets the series of `write`'s Event to `count`; with
    /// `resource_version`, only if the Event is still at that version.
    /// Returns the new resourceVersion.
    async fn patch_series(
        &self,
        events: &Api<Event>,
        write: &Write,
        count: i32,
        resource_version: Option<&str>,
    ) -> Result<Option<String>, kube::Error> {
        let mut patch = serde_json::json!({
            "series": EventSeries {
                count: count.max(2),
                last_observed_time: MicroTime(write.last_observed),
            }
        });
        if let Some(version) = resource_version {
            patch["metadata"] = serde_json::json!({ "resourceVersion": version });
        }
        let patched = events
            .patch(&write.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.metrics.event_written(write.notice.type_(), "update");
        Ok(patched.metadata.resource_version)
    }

    fn event(&self, write: &Write) -> Event {
        let notice = &write.notice;
        Event {
            metadata: ObjectMeta {
                name: Some(write.name.clone()),
                namespace: Some(write.regarding.namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(write.first_observed)),
            series: (write.count >= 2).then_some(EventSeries {
                count: write.count,
                last_observed_time: MicroTime(write.last_observed),
            }),
            reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(notice.reporting_instance(&self.instance)),
            action: Some(notice.action().to_owned()),
            reason: Some(notice.reason().to_owned()),
            note: Some(notice.note().to_owned()),
            type_: Some(notice.type_().as_str().to_owned()),
            regarding: Some(write.regarding.to_reference()),
            ..Event::default()
        }
    }

    fn api(&self, regarding: &ObjectRef) -> Api<Event> {
        Api::namespaced(self.client.clone(), &regarding.namespace)
    }

    fn with_aggregator<T>(&self, f: impl FnOnce(&mut Aggregator) -> T) -> T {
        f(&mut self
            .aggregator
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }
}
