//! Exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// How often and how patiently to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Retries after the first attempt (0 = try once).
    pub max_retries: u32,
    /// Delay before the first retry.
    pub initial_delay_ms: u64,
    /// Upper bound of any delay (before jitter).
    pub max_delay_ms: u64,
    /// Growth factor per retry (>= 1.0).
    pub multiplier: f64,
    /// Relative jitter in `[0, 1]`: a delay `d` becomes uniform in
    /// `[d * (1 - jitter), d * (1 + jitter)]`.
    pub jitter: f64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 3,
            initial_delay_ms: 1000,
            max_delay_ms: 30_000,
            multiplier: 2.0,
            jitter: 0.1,
        }
    }
}

impl RetrySettings {
    /// The retry policy of an ONEX contract that declares none: 3 retries
    /// from 100 ms, doubling up to 5 s, 10% jitter.
    pub const CONTRACT_DEFAULT: RetrySettings = RetrySettings {
        max_retries: 3,
        initial_delay_ms: 100,
        max_delay_ms: 5_000,
        multiplier: 2.0,
        jitter: 0.1,
    };

    /// The delay before retry number `retry` (1-based), with the jitter
    /// factor drawn from `unit`, a number in `[-1, 1]` (0 = no jitter).
    pub fn delay_with(&self, retry: u32, unit: f64) -> Duration {
        let exp = retry.saturating_sub(1).min(64) as i32;
        let base = self.initial_delay_ms as f64 * self.multiplier.max(1.0).powi(exp);
        let capped = base.min(self.max_delay_ms as f64).max(0.0);
        let jitter = self.jitter.clamp(0.0, 1.0) * unit.clamp(-1.0, 1.0);
        Duration::from_secs_f64(capped * (1.0 + jitter) / 1000.0)
    }

    /// The delay before retry number `retry` (1-based) with random jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let unit = if self.jitter > 0.0 {
            rand::thread_rng().gen_range(-1.0..=1.0)
        } else {
            0.0
        };
        self.delay_with(retry, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RetrySettings {
        RetrySettings {
            max_retries: 5,
            initial_delay_ms: 100,
            max_delay_ms: 1000,
            multiplier: 2.0,
            jitter: 0.5,
        }
    }

    #[test]
    fn grows_exponentially_then_caps() {
        let s = settings();
        let ms: Vec<u128> = (1..=6).map(|r| s.delay_with(r, 0.0).as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_bounds() {
        let s = settings();
        assert_eq!(s.delay_with(1, -1.0).as_millis(), 50);
        assert_eq!(s.delay_with(1, 1.0).as_millis(), 150);
        for _ in 0..200 {
            let d = s.delay(2).as_millis();
            assert!((100..=300).contains(&d), "{d}");
        }
    }

    #[test]
    fn no_jitter_is_deterministic() {
        let s = RetrySettings {
            jitter: 0.0,
            ..settings()
        };
        assert_eq!(s.delay(3), Duration::from_millis(400));
    }

    #[test]
    fn huge_retry_numbers_do_not_overflow() {
        assert_eq!(settings().delay_with(u32::MAX, 0.0).as_millis(), 1000);
    }
}
