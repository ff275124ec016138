//! The per-object rate limit on Event writes, after client-go's spam filter:
//! a token bucket per (object, reason) that holds [`RateLimit::burst`]
//! tokens and regains one every [`RateLimit::refill`]. Every API write (a
//! create or a series update) takes a token; without one, the write waits
//! (the aggregator keeps counting, so nothing is lost, only delayed).
//!
//! `governor`'s keyed rate limiter does the same arithmetic, and certflow
//! does not use it here: it reads the time from its own clock inside each
//! check, while the aggregator passes one `now` to everything it decides
//! (which series window an Event falls in, whether its write may go, what
//! to prune), so that the pure tests of `aggregate` move one clock for both
//! and a write and its window never disagree about the time. A governor
//! clock fed from that `now` would be more code than the bucket below.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Burst and refill of every bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Writes allowed at once for one key.
    pub burst: u32,
    /// Time to regain one write.
    pub refill: Duration,
}

impl Default for RateLimit {
    /// client-go's `EventSourceObjectSpamFilter`: burst 25, then one every
    /// five minutes.
    fn default() -> Self {
        Self {
            burst: 25,
            refill: Duration::from_secs(5 * 60),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by key.
#[derive(Debug)]
pub struct Limiter<K> {
    limit: RateLimit,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `key` at `now`; false when the bucket is empty.
    pub fn try_acquire(&mut self, key: &K, now: Instant) -> bool {
        let limit = self.limit;
        let bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: f64::from(limit.burst),
            updated: now,
        });
        refill(bucket, limit, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Gives back the token a write took for `key` when the write never
    /// reached the API server: the limit is on Events written, so an
    /// outage's failed attempts must not use up the burst.
    pub fn refund(&mut self, key: &K) {
        let burst = f64::from(self.limit.burst);
        if let Some(bucket) = self.buckets.get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(burst);
        }
    }

    /// Forgets buckets that are full again: they behave exactly like new ones.
    pub fn prune(&mut self, now: Instant) {
        let limit = self.limit;
        self.buckets.retain(|_, bucket| {
            refill(bucket, limit, now);
            bucket.tokens < f64::from(limit.burst)
        });
    }

    /// Buckets currently kept.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no bucket is kept.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn refill(bucket: &mut Bucket, limit: RateLimit, now: Instant) {
    let elapsed = now.saturating_duration_since(bucket.updated);
    let gained = if limit.refill.is_zero() {
        f64::from(limit.burst)
    } else {
        elapsed.as_secs_f64() / limit.refill.as_secs_f64()
    };
    bucket.tokens = (bucket.tokens + gained).min(f64::from(limit.burst));
    bucket.updated = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> Limiter<&'static str> {
        Limiter::new(RateLimit::default())
    }

    #[test]
    fn a_burst_of_twenty_five_passes_then_writes_wait() {
        let mut limiter = limiter();
        let now = Instant::now();
        let passed = (0..100)
            .filter(|_| limiter.try_acquire(&"pod", now))
            .count();
        assert_eq!(passed, 25);
    }

    #[test]
    fn one_write_is_regained_every_five_minutes() {
        let mut limiter = limiter();
        let start = Instant::now();
        while limiter.try_acquire(&"pod", start) {}
        assert!(!limiter.try_acquire(&"pod", start + Duration::from_secs(299)));
        assert!(limiter.try_acquire(&"pod", start + Duration::from_secs(300)));
        assert!(!limiter.try_acquire(&"pod", start + Duration::from_secs(301)));
        assert!(limiter.try_acquire(&"pod", start + Duration::from_secs(600)));
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let mut limiter = limiter();
        let now = Instant::now();
        while limiter.try_acquire(&"pod-a", now) {}
        assert!(limiter.try_acquire(&"pod-b", now));
        assert!(!limiter.try_acquire(&"pod-a", now));
        assert!(limiter.try_acquire(&"never-seen", now));
    }

    #[test]
    fn a_refunded_token_can_be_taken_again_but_never_above_the_burst() {
        let now = Instant::now();
        let mut spent = limiter();
        while spent.try_acquire(&"pod", now) {}
        spent.refund(&"pod");
        assert!(spent.try_acquire(&"pod", now));
        assert!(!spent.try_acquire(&"pod", now));
        let mut fresh = limiter();
        assert!(fresh.try_acquire(&"new", now));
        for _ in 0..10 {
            fresh.refund(&"new");
        }
        let passed = (0..100).filter(|_| fresh.try_acquire(&"new", now)).count();
        assert_eq!(passed, 25);
    }

    #[test]
    fn full_buckets_are_forgotten() {
        let mut limiter = limiter();
        let start = Instant::now();
        assert!(limiter.try_acquire(&"pod", start));
        limiter.prune(start + Duration::from_secs(1));
        assert_eq!(limiter.len(), 1, "still one token short");
        limiter.prune(start + Duration::from_secs(300));
        assert!(limiter.is_empty());
    }
}
