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

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::rate_limit::RateLimit;

/// Entries kept before a sweep drops the stale ones.
const SWEEP_AT: usize = 4096;

/// Per-user join allowances and per-(room, user) last saved notices.
#[derive(Debug, Default)]
pub struct Joins {
    /// user id -> their join bucket.
    rates: Mutex<FxHashMap<String, RateLimit>>,
    /// (room, user id, join or leave) -> their notice bucket.
    notices: Mutex<FxHashMap<(String, String, bool), RateLimit>>,
}

impl Joins {
    /// Takes one join from `sub`'s allowance of `per_minute` (0: no
    /// limit); false when it is spent.
    pub fn allow(&self, sub: &str, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let mut rates = self.rates.lock();
        if rates.len() >= SWEEP_AT && !rates.contains_key(sub) {
            rates.retain(|_, bucket| !bucket.is_full());
        }
        rates
            .entry(sub.to_owned())
            .or_insert_with(|| RateLimit::per_minute(per_minute))
            .try_take()
    }

    /// True when `sub`'s join (`joined`) or leave notice in `room` should
    /// be saved now: within `per_minute` (0: always).
    pub fn save_notice(&self, room: &str, sub: &str, joined: bool, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let mut notices = self.notices.lock();
        let key = (room.to_owned(), sub.to_owned(), joined);
        if notices.len() >= SWEEP_AT && !notices.contains_key(&key) {
            notices.retain(|_, bucket| !bucket.is_full());
        }
        notices
            .entry(key)
            .or_insert_with(|| RateLimit::per_minute(per_minute))
            .try_take()
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
}
