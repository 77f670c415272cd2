//! Rate limiting: one token bucket, [`RateLimit`], for every limit the hub
//! keeps (a connection's frames, `--messages-per-second` with `--burst`;
//! typing notices, 2 a second), and [`FrameLimit`], the strike count that
//! turns a flood of refused frames into a 4008 close.

use std::time::Instant;

/// Over-limit frames tolerated (each answered with a `rate_limited` error)
/// before the connection is closed with 4008.
pub const MAX_STRIKES: u32 = 10;

/// A token bucket; `rate == 0` turns it off.
#[derive(Debug)]
pub struct RateLimit {
    /// Tokens added per second (0 = unlimited).
    rate: f64,
    /// Most tokens kept: how large a burst may be.
    burst: f64,
    /// Tokens left now; a refused take leaves them as they are.
    tokens: f64,
    /// When `tokens` was last topped up.
    last: Instant,
}

impl RateLimit {
    /// `rate` a second with bursts of `burst` (at least `rate`).
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        let burst = f64::from(burst.max(rate).max(1));
        RateLimit {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// `per_minute` a minute, with bursts of as many.
    pub fn per_minute(per_minute: u32) -> RateLimit {
        let mut bucket = RateLimit::new(0, per_minute);
        bucket.rate = f64::from(per_minute) / 60.0;
        bucket
    }

    /// True when the bucket would be full now (nothing taken lately): it
    /// can be dropped and made anew without changing what it allows.
    pub fn is_full(&self) -> bool {
        self.rate == 0.0
            || self.tokens + self.last.elapsed().as_secs_f64() * self.rate >= self.burst
    }

    /// Takes one token; false when none is left.
    pub fn try_take(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What to do with one inbound frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: handle it.
    Allow,
    /// Refuse this frame with a `rate_limited` error.
    Refuse,
    /// Refused too often: close with 4008.
    Close,
}

/// A connection's inbound frames: a [`RateLimit`] and its strikes.
#[derive(Debug)]
pub struct FrameLimit {
    /// `--messages-per-second` with `--burst`.
    bucket: RateLimit,
    /// Over-limit frames since the last accepted one.
    strikes: u32,
}

impl FrameLimit {
    /// `rate` frames a second with bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> FrameLimit {
        FrameLimit {
            bucket: RateLimit::new(rate, burst),
            strikes: 0,
        }
    }

    /// Counts one frame.
    pub fn check(&mut self) -> Verdict {
        if self.bucket.try_take() {
            self.strikes = 0;
            return Verdict::Allow;
        }
        self.strikes += 1;
        if self.strikes > MAX_STRIKES {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_then_close() {
        let mut r = FrameLimit::new(1, 3);
        for _ in 0..3 {
            assert_eq!(r.check(), Verdict::Allow);
        }
        for _ in 0..MAX_STRIKES {
            assert_eq!(r.check(), Verdict::Refuse);
        }
        assert_eq!(r.check(), Verdict::Close);
    }

    #[test]
    fn zero_rate_is_off() {
        let mut r = RateLimit::new(0, 0);
        assert!((0..10_000).all(|_| r.try_take()));
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refuses() {
        let mut r = RateLimit::new(2, 2);
        assert!(r.try_take() && r.try_take());
        assert!(!r.try_take());
    }
}
