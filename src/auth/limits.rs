//! How often one client address, and one handle, may try to register or
//! log in. Counting per address slows a guesser on one machine; counting
//! per handle slows a botnet aimed at one account, which no per-address
//! limit can see.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::error::{Error, Result};

/// Entries past which a check first forgets the keys that have refilled:
/// a flood of distinct handles must not grow the map without end.
const PRUNE_ABOVE: usize = 50_000;

/// Longest handle that gets a key of its own. Longer ones are invalid and
/// refused after the address is counted, so they need no bucket.
const MAX_KEYED_HANDLE: usize = 64;

#[derive(Clone, Hash, PartialEq, Eq)]
enum Key {
    Addr(IpAddr),
    Handle(String),
}

/// A bucket of `per_min` attempts that refills continuously.
struct Bucket {
    tokens: f64,
    last: Instant,
}

pub struct AuthLimits {
    per_min: u32,
    buckets: DashMap<Key, Bucket>,
}

impl AuthLimits {
    /// `per_min` attempts per minute per key; 0 means no limit.
    pub fn new(per_min: u32) -> Self {
        AuthLimits {
            per_min,
            buckets: DashMap::new(),
        }
    }

    /// Counts one attempt from `addr` at `handle`, or refuses it with the
    /// wait until both would allow one. A refused attempt costs nothing,
    /// so a client that waits as told gets in.
    pub fn attempt(&self, addr: IpAddr, handle: &str) -> Result<()> {
        if self.per_min == 0 {
            return Ok(());
        }
        let now = Instant::now();
        if self.buckets.len() > PRUNE_ABOVE {
            self.buckets.retain(|_, bucket| !self.is_full(bucket, now));
        }
        let handle = handle.trim().to_ascii_lowercase();
        let mut keys = vec![Key::Addr(addr)];
        if handle.len() <= MAX_KEYED_HANDLE {
            keys.push(Key::Handle(handle));
        }
        let wait = keys
            .iter()
            .map(|key| self.wait_for(key, now))
            .max()
            .unwrap_or_default();
        if !wait.is_zero() {
            return Err(Error::RateLimited {
                limit: "too many sign-in attempts; wait before trying again".into(),
                retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
            });
        }
        for key in keys {
            if let Some(mut bucket) = self.buckets.get_mut(&key) {
                bucket.tokens -= 1.0;
            }
        }
        Ok(())
    }

    /// Refills `key`'s bucket to `now` and says how long until it holds a
    /// whole attempt (zero when it does).
    fn wait_for(&self, key: &Key, now: Instant) -> Duration {
        let capacity = f64::from(self.per_min);
        let per_sec = capacity / 60.0;
        let mut bucket = self.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec)
        }
    }

    fn is_full(&self, bucket: &Bucket, now: Instant) -> bool {
        let capacity = f64::from(self.per_min);
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens + elapsed * capacity / 60.0 >= capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn refused_for(result: Result<()>) -> u64 {
        match result {
            Err(Error::RateLimited { retry_after_ms, .. }) => retry_after_ms,
            other => panic!("expected rate_limited, got {other:?}"),
        }
    }

    #[test]
    fn an_address_gets_its_allowance_then_waits() {
        let limits = AuthLimits::new(3);
        for n in 0..3 {
            limits.attempt(HOME, &format!("user_{n}")).unwrap();
        }
        let wait = refused_for(limits.attempt(HOME, "user_9"));
        // One attempt refills every 20 s.
        assert!((19_000..=20_000).contains(&wait), "{wait}");
        limits.attempt(AWAY, "user_9").unwrap();
    }

    #[test]
    fn a_handle_is_counted_across_addresses() {
        let limits = AuthLimits::new(2);
        limits.attempt(HOME, "target").unwrap();
        limits.attempt(AWAY, "Target ").unwrap();
        let third = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));
        refused_for(limits.attempt(third, "target"));
        // The refusal cost the new address nothing.
        limits.attempt(third, "someone_else").unwrap();
        limits.attempt(third, "another").unwrap();
    }

    #[test]
    fn zero_means_no_limit() {
        let limits = AuthLimits::new(0);
        for _ in 0..1_000 {
            limits.attempt(HOME, "same").unwrap();
        }
        assert!(limits.buckets.is_empty());
    }
}
