//! Per-socket token bucket, with a count of refusals that marks abuse.

use std::time::Instant;

pub struct RateLimit {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    /// Frames refused since the last one let through.
    refused_in_a_row: u32,
}

pub enum Verdict {
    Allow,
    /// Refuse this frame; the client may try again after this many ms.
    Refuse {
        retry_after_ms: u64,
    },
    /// The client kept sending through a long run of refusals.
    Abuse,
}

impl RateLimit {
    pub fn new(per_sec: u32, burst: u32) -> Self {
        RateLimit {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: Instant::now(),
            refused_in_a_row: 0,
        }
    }

    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            return Verdict::Allow;
        }
        self.refused_in_a_row += 1;
        // As many refusals in a row as the burst allows sends is no
        // accident: the client is ignoring `retry_after_ms`.
        if f64::from(self.refused_in_a_row) > self.burst {
            return Verdict::Abuse;
        }
        let wait = (1.0 - self.tokens) / self.per_sec;
        Verdict::Refuse {
            retry_after_ms: (wait * 1000.0).ceil() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn allows_the_burst_then_refuses_then_refills() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10, 3);
        for _ in 0..3 {
            assert!(matches!(limit.check(start), Verdict::Allow));
        }
        match limit.check(start) {
            Verdict::Refuse { retry_after_ms } => assert_eq!(retry_after_ms, 100),
            _ => panic!("fourth frame in the same instant must be refused"),
        }
        assert!(matches!(
            limit.check(start + Duration::from_millis(100)),
            Verdict::Allow
        ));
    }

    #[test]
    fn a_long_run_of_refusals_is_abuse() {
        let start = Instant::now();
        let mut limit = RateLimit::new(1, 2);
        let verdicts: Vec<_> = (0..5).map(|_| limit.check(start)).collect();
        assert!(matches!(verdicts[2], Verdict::Refuse { .. }));
        assert!(matches!(verdicts[3], Verdict::Refuse { .. }));
        assert!(matches!(verdicts[4], Verdict::Abuse));
    }
}
