//! The client-side limit on the controller's own requests: a token bucket of `burst`
//! requests refilled at `qps` per second, like client-go's. The API server's priority and
//! fairness queues a client that floods it, and then its requests (the Lease renewals among
//! them, on other connections) wait behind the backfill; a bound here keeps a cluster-wide
//! start from being that client. Watches are not counted: they are long-lived and few.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Throttle {
    bucket: Mutex<Bucket>,
}

struct Bucket {
    qps: f64,
    burst: f64,
    /// May go below zero: each waiting request reserves its token and sleeps off the debt.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token at `now`; returns how long the caller must wait before sending.
    fn take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

impl Throttle {
    /// `qps` and `burst` must be above zero (checked with the controller's options).
    pub fn new(qps: f64, burst: u32) -> Throttle {
        let burst = f64::from(burst.max(1));
        Throttle {
            bucket: Mutex::new(Bucket {
                qps: qps.max(f64::MIN_POSITIVE),
                burst,
                tokens: burst,
                at: Instant::now(),
            }),
        }
    }

    /// Waits until one more request may be sent.
    pub async fn acquire(&self) {
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_requests_are_spaced_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket {
            qps: 10.0,
            burst: 3.0,
            tokens: 3.0,
            at: t0,
        };
        for _ in 0..3 {
            assert_eq!(b.take(t0), Duration::ZERO);
        }
        // The 4th, 5th and 6th at the same instant wait 0.1 s, 0.2 s and 0.3 s.
        let waits: Vec<u128> = (0..3).map(|_| b.take(t0).as_millis()).collect();
        assert_eq!(waits, [100, 200, 300]);
        // After the debt is paid and a full second more, the bucket is full again, not over.
        let later = t0 + Duration::from_millis(1300);
        for _ in 0..3 {
            assert_eq!(b.take(later), Duration::ZERO);
        }
        assert_eq!(b.take(later).as_millis(), 100);
    }

    #[test]
    fn a_clock_read_out_of_order_never_adds_tokens() {
        let t0 = Instant::now() + Duration::from_secs(1);
        let mut b = Bucket {
            qps: 1.0,
            burst: 1.0,
            tokens: 1.0,
            at: t0,
        };
        assert_eq!(b.take(t0), Duration::ZERO);
        let earlier = t0 - Duration::from_millis(500);
        assert_eq!(b.take(earlier).as_millis(), 1000);
    }
}
