//! Liveness: whether the process itself still makes progress, as opposed to
//! readiness, whether its dependencies are reachable ([`crate::health`]).
//!
//! A task on the service's Tokio runtime beats a [`Watchdog`] every [`TICK`]
//! ([`Watchdog::keep_beating`], started with the health server), and the
//! `liveness` health check asks how long ago the last beat was. When the
//! runtime cannot run a timer task for [`STALE_AFTER`] (its worker threads
//! blocked, a deadlock, starvation), the process is stuck and only a restart
//! helps. NATS or the API server being away leaves the beat untouched, so
//! an outage never restarts a Pod.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How often the runtime beats the watchdog.
pub const TICK: Duration = Duration::from_secs(1);

/// How long without a beat before the process counts as stuck. Ten ticks:
/// a busy runtime (key generation runs on the blocking pool, but a CPU
/// limit throttles every thread) delays a tick by well under a second.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// The time of the last beat, shared by whoever beats and whoever asks.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Watchdog {
    last_beat: Arc<Mutex<Instant>>,
    stale_after: Duration,
}

impl Default for Watchdog {
    fn default() -> Self {
        Self::new(STALE_AFTER)
    }
}

impl Watchdog {
    /// A watchdog beaten just now, stale `stale_after` after its last beat.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            last_beat: Arc::new(Mutex::new(Instant::now())),
            stale_after,
        }
    }

    /// Records that the process made progress now.
    pub fn beat(&self) {
        *self.lock() = Instant::now();
    }

    /// Time since the last beat.
    pub fn since_last_beat(&self) -> Duration {
        self.lock().elapsed()
    }

    /// True while the last beat is more recent than the stale limit.
    pub fn is_alive(&self) -> bool {
        self.since_last_beat() < self.stale_after
    }

    /// Beats every `every` until `stop` fires. Spawn it on the runtime whose
    /// progress the watchdog stands for; a beat that comes late (the runtime
    /// could not run this task on time) is logged with the delay.
    pub async fn keep_beating(self, every: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = stop.cancelled() => return,
            }
            let since = self.since_last_beat();
            if since > every * 2 {
                warn!(
                    stalled_seconds = since.as_secs_f64(),
                    stale_after_seconds = self.stale_after.as_secs_f64(),
                    "the runtime could not run the liveness beat on time"
                );
            }
            self.beat();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Instant> {
        self.last_beat
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_watchdog_nobody_beats_goes_stale_at_its_limit_and_a_beat_revives_it() {
        let watchdog = Watchdog::new(STALE_AFTER);
        tokio::time::sleep(STALE_AFTER - Duration::from_millis(1)).await;
        assert!(watchdog.is_alive());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!watchdog.is_alive());
        assert_eq!(watchdog.since_last_beat(), STALE_AFTER);

        watchdog.beat();
        assert!(watchdog.is_alive());
        assert_eq!(watchdog.since_last_beat(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_runtime_that_keeps_ticking_stays_alive_for_an_hour() {
        let watchdog = Watchdog::default();
        let stop = CancellationToken::new();
        let beating = tokio::spawn(watchdog.clone().keep_beating(TICK, stop.clone()));
        for _ in 0..360 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert!(watchdog.is_alive(), "{:?}", watchdog.since_last_beat());
            assert!(watchdog.since_last_beat() <= TICK);
        }
        stop.cancel();
        assert!(beating.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_ticking_stops_liveness_fails_after_the_stale_limit() {
        let watchdog = Watchdog::default();
        let stop = CancellationToken::new();
        let beating = tokio::spawn(watchdog.clone().keep_beating(TICK, stop.clone()));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(watchdog.is_alive());

        stop.cancel();
        assert!(beating.await.is_ok());
        let remaining = STALE_AFTER - watchdog.since_last_beat();
        tokio::time::sleep(remaining - Duration::from_millis(1)).await;
        assert!(watchdog.is_alive(), "not before the limit");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!watchdog.is_alive());
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_the_beat() {
        let watchdog = Watchdog::new(Duration::from_secs(2));
        let clone = watchdog.clone();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!watchdog.is_alive());
        clone.beat();
        assert!(watchdog.is_alive());
    }
}
