//! Per-connection rate limiting: a token bucket (`--messages-per-second`,
//! bursts of twice that), and the strike count that turns a flood into a
//! 4008 close.

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
    tokens: f64,
    /// When `tokens` was last topped up.
    last: Instant,
    /// Over-limit frames since the last accepted one.
    strikes: u32,
}

/// What to do with one inbound frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse this frame with a `rate_limited` error.
    Refuse,
    /// Refused too often: close with 4008.
    Close,
}

impl RateLimit {
    /// `rate` frames a second with bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        let burst = f64::from(burst.max(rate).max(1));
        RateLimit {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: Instant::now(),
            strikes: 0,
        }
    }

    /// Takes one token.
    pub fn check(&mut self) -> Verdict {
        if self.rate == 0.0 {
            return Verdict::Allow;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
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
        let mut r = RateLimit::new(1, 3);
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
        assert!((0..10_000).all(|_| r.check() == Verdict::Allow));
    }
}
