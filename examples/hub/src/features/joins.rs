//! Joins as abuse sees them: a reconnect loop must neither flood a room's
//! history with join and leave notices nor join without end.
//!
//! - [`Joins::allow`]: `--joins-per-minute` per user over every room (a
//!   token bucket per user; idle full buckets are dropped, so the map
//!   holds only users who joined lately).
//! - [`Joins::save_notice`]: a user's join (or leave) notices in a room are
//!   saved at `--join-notices-per-minute` (a bucket per room, user and
//!   kind); the others go to the room live only, so they never push
//!   messages out of history.

use std::hash::BuildHasher;
use std::time::Instant;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

/// Entries kept before the first sweep drops the stale ones.
const SWEEP_AT: usize = 4096;

/// One token bucket of `per_minute` a minute with bursts of as many (what
/// `RateLimit::per_minute` keeps, in 16 bytes instead of 40: the rate and
/// the burst are the config's and come with every take, and the clock is
/// microseconds since the map's start).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// When `tokens` was last topped up, µs since [`Buckets::start`].
    last_us: u64,
    /// Tokens left then; a refused take leaves them as they are.
    tokens: f32,
}

impl Bucket {
    /// A full bucket.
    fn full(now_us: u64, per_minute: u32) -> Bucket {
        Bucket {
            last_us: now_us,
            tokens: burst(per_minute),
        }
    }

    /// The tokens it holds at `now_us`.
    fn tokens_at(&self, now_us: u64, per_minute: u32) -> f32 {
        let elapsed = now_us.saturating_sub(self.last_us) as f64;
        let added = elapsed * f64::from(per_minute) / 60e6;
        (f64::from(self.tokens) + added).min(f64::from(burst(per_minute))) as f32
    }

    /// Takes one token; false when none is left.
    fn try_take(&mut self, now_us: u64, per_minute: u32) -> bool {
        self.tokens = self.tokens_at(now_us, per_minute);
        self.last_us = now_us;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The most tokens a bucket of `per_minute` holds.
fn burst(per_minute: u32) -> f32 {
    per_minute.max(1) as f32
}

/// Buckets by key; full buckets (nothing taken lately) are swept out once
/// the map has doubled since the last sweep, so a sweep (a walk over every
/// bucket) costs O(1) per insert however many stay live. Sweeping whenever
/// a new key came past a fixed size walked the whole map on every join
/// once 4096 were live: 100 k instructions a join at 6,000 users.
#[derive(Debug)]
struct Buckets<K> {
    /// key -> its bucket.
    map: FxHashMap<K, Bucket>,
    /// Size at which the next new key sweeps first.
    sweep_at: usize,
    /// What the buckets' clock counts from.
    start: Instant,
}

impl<K> Default for Buckets<K> {
    fn default() -> Self {
        Buckets {
            map: FxHashMap::default(),
            sweep_at: SWEEP_AT,
            start: Instant::now(),
        }
    }
}

impl<K: std::hash::Hash + Eq> Buckets<K> {
    /// Takes one token from `key`'s bucket of `per_minute`, made full when new.
    fn take<Q>(&mut self, key: &Q, per_minute: u32) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now_us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(bucket) = self.map.get_mut(key) {
            return bucket.try_take(now_us, per_minute);
        }
        if self.map.len() >= self.sweep_at {
            let full = burst(per_minute);
            self.map
                .retain(|_, bucket| bucket.tokens_at(now_us, per_minute) < full);
            self.sweep_at = (self.map.len() * 2).max(SWEEP_AT);
        }
        let mut bucket = Bucket::full(now_us, per_minute);
        let taken = bucket.try_take(now_us, per_minute);
        self.map.insert(key.to_owned(), bucket);
        taken
    }
}

/// Per-user join allowances and per-(room, user) last saved notices.
///
/// Buckets are keyed by a 64-bit SipHash of the user (or of room, user and
/// kind) under this process's random keys, not by the strings: a bucket is
/// 24 bytes with its key instead of about 300 (two owned strings and their allocations
/// for every user who joined in the last minute). Two keys that collide
/// (about 1 in 2⁶⁴, and unknown keys keep it from being arranged) share a
/// bucket: a join or a saved notice may then be refused a little early.
#[derive(Debug, Default)]
pub struct Joins {
    /// Keys of the buckets below.
    keys: std::collections::hash_map::RandomState,
    /// hash of the user id -> their join bucket.
    rates: Mutex<Buckets<u64>>,
    /// hash of (room, user id, join or leave) -> their notice bucket.
    notices: Mutex<Buckets<u64>>,
}

impl Joins {
    /// Takes one join from `sub`'s allowance of `per_minute` (0: no
    /// limit); false when it is spent.
    pub fn allow(&self, sub: &str, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let key = self.keys.hash_one(sub);
        self.rates.lock().take(&key, per_minute)
    }

    /// True when `sub`'s join (`joined`) or leave notice in `room` should
    /// be saved now: within `per_minute` (0: always).
    pub fn save_notice(&self, room: &str, sub: &str, joined: bool, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let key = self.keys.hash_one((room, sub, joined));
        self.notices.lock().take(&key, per_minute)
    }

    /// Buckets held now: (join rates, notices).
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.rates.lock().map.len(), self.notices.lock().map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_saved_at_their_rate_per_room_user_and_kind() {
        let joins = Joins::default();
        assert!(joins.save_notice("a", "u", true, 2));
        assert!(joins.save_notice("a", "u", true, 2));
        assert!(!joins.save_notice("a", "u", true, 2));
        assert!(joins.save_notice("a", "u", false, 2));
        assert!(joins.save_notice("a", "v", true, 2));
        assert!(joins.save_notice("b", "u", true, 2));
        assert!(joins.save_notice("a", "u", true, 0));
    }

    #[test]
    fn joins_per_minute_is_a_burst_then_refusals() {
        let joins = Joins::default();
        assert!((0..5).all(|_| joins.allow("u", 5)));
        assert!(!joins.allow("u", 5));
        assert!(joins.allow("v", 5));
        assert!((0..100).all(|_| joins.allow("u", 0)));
    }

    #[test]
    fn stale_buckets_are_swept_and_live_ones_kept() {
        let joins = Joins::default();
        // 1 a minute: a taken bucket stays live (not full) for a minute.
        for i in 0..SWEEP_AT {
            assert!(joins.allow(&format!("live{i}"), 1));
        }
        // A bucket of 60 000 a minute is full again within a millisecond.
        for i in 0..SWEEP_AT {
            assert!(joins.save_notice("r", &format!("u{i}"), true, 60_000));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(joins.allow("one-more", 1));
        assert!(joins.save_notice("r", "one-more", true, 60_000));
        // The live join buckets stay (and still refuse); the full notice
        // buckets went in the sweep.
        assert_eq!(joins.held(), (SWEEP_AT + 1, 1));
        assert!(!joins.allow("live0", 1));
        // The next sweep waits until the map has doubled.
        for i in 0..SWEEP_AT - 1 {
            assert!(joins.allow(&format!("more{i}"), 1));
        }
        assert_eq!(joins.held().0, 2 * SWEEP_AT);
    }
}
