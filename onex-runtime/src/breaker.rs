//! Circuit breaker: closed → open at the failure threshold → half-open after
//! the reset timeout → closed on a success, open again on a failure.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

/// Breaker tuning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreakerSettings {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before letting a trial call through.
    pub reset_timeout_ms: u64,
    /// Trial calls allowed at once while half-open.
    pub half_open_max_requests: u32,
}

impl CircuitBreakerSettings {
    /// The circuit breaker of an ONEX contract that declares none: it opens
    /// after 5 consecutive failures and lets one trial call through after
    /// 60 s.
    pub const CONTRACT_DEFAULT: CircuitBreakerSettings = CircuitBreakerSettings {
        failure_threshold: 5,
        reset_timeout_ms: 60_000,
        half_open_max_requests: 1,
    };
}

impl Default for CircuitBreakerSettings {
    fn default() -> Self {
        CircuitBreakerSettings {
            failure_threshold: 5,
            reset_timeout_ms: 30_000,
            half_open_max_requests: 1,
        }
    }
}

/// Breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// Calls are refused until the reset timeout passes.
    Open,
    /// A limited number of trial calls flow.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    /// Numeric gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> u8 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call refused because the circuit is open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit open; retry after {retry_after:?} (correlation_id {})",
        correlation_id.map(|c| c.to_string()).unwrap_or_else(|| "none".into()))]
pub struct CircuitOpenError {
    /// How long until a trial call will be let through.
    pub retry_after: Duration,
    /// The correlation id of the refused call, if known.
    pub correlation_id: Option<Uuid>,
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    half_open_in_flight: u32,
    opens: u64,
}

/// A thread-safe circuit breaker. The `*_at` methods take the current time
/// explicitly so the state machine can be tested without sleeping.
#[derive(Debug)]
pub struct CircuitBreaker {
    settings: CircuitBreakerSettings,
    inner: Mutex<Inner>,
    /// Closed with no failure counted: the common case, answered without
    /// taking the lock.
    clear: AtomicBool,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(settings: CircuitBreakerSettings) -> Self {
        CircuitBreaker {
            settings,
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                consecutive_failures: 0,
                opened_at: None,
                half_open_in_flight: 0,
                opens: 0,
            }),
            clear: AtomicBool::new(true),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &CircuitBreakerSettings {
        &self.settings
    }

    fn reset_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.reset_timeout_ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update; the
        // counters are still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn advance(&self, inner: &mut Inner, now: Instant) {
        if inner.state == CircuitState::Open {
            if let Some(at) = inner.opened_at {
                if now.saturating_duration_since(at) >= self.reset_timeout() {
                    inner.state = CircuitState::HalfOpen;
                    inner.half_open_in_flight = 0;
                    tracing::info!("circuit breaker half-open");
                }
            }
        }
    }

    /// The state as of `now`.
    pub fn state_at(&self, now: Instant) -> CircuitState {
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        inner.state
    }

    /// The state now.
    pub fn state(&self) -> CircuitState {
        self.state_at(Instant::now())
    }

    /// How many times the circuit has opened.
    pub fn opens(&self) -> u64 {
        self.lock().opens
    }

    /// Asks permission for one call at `now`.
    pub fn try_acquire_at(
        &self,
        now: Instant,
        correlation_id: Option<Uuid>,
    ) -> Result<(), CircuitOpenError> {
        if self.clear.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut inner = self.lock();
        self.advance(&mut inner, now);
        match inner.state {
            CircuitState::Closed => Ok(()),
            CircuitState::HalfOpen
                if inner.half_open_in_flight < self.settings.half_open_max_requests.max(1) =>
            {
                inner.half_open_in_flight += 1;
                Ok(())
            }
            CircuitState::HalfOpen => Err(CircuitOpenError {
                retry_after: Duration::from_millis(100).min(self.reset_timeout()),
                correlation_id,
            }),
            CircuitState::Open => {
                let elapsed = inner
                    .opened_at
                    .map(|at| now.saturating_duration_since(at))
                    .unwrap_or_default();
                Err(CircuitOpenError {
                    retry_after: self.reset_timeout().saturating_sub(elapsed),
                    correlation_id,
                })
            }
        }
    }

    /// Asks permission for one call now.
    pub fn try_acquire(&self, correlation_id: Option<Uuid>) -> Result<(), CircuitOpenError> {
        self.try_acquire_at(Instant::now(), correlation_id)
    }

    /// Records a successful call: closes the circuit.
    pub fn record_success(&self) {
        if self.clear.load(Ordering::Acquire) {
            return;
        }
        let mut inner = self.lock();
        if inner.state != CircuitState::Closed {
            tracing::info!("circuit breaker closed");
        }
        inner.state = CircuitState::Closed;
        inner.consecutive_failures = 0;
        inner.opened_at = None;
        inner.half_open_in_flight = 0;
        self.clear.store(true, Ordering::Release);
    }

    /// Records a failed call at `now`: opens the circuit at the threshold, or
    /// at once when half-open.
    pub fn record_failure_at(&self, now: Instant) {
        let mut inner = self.lock();
        self.clear.store(false, Ordering::Release);
        self.advance(&mut inner, now);
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let open = match inner.state {
            CircuitState::HalfOpen => true,
            CircuitState::Closed => {
                inner.consecutive_failures >= self.settings.failure_threshold.max(1)
            }
            CircuitState::Open => false,
        };
        if open {
            inner.state = CircuitState::Open;
            inner.opened_at = Some(now);
            inner.half_open_in_flight = 0;
            inner.opens += 1;
            tracing::warn!(
                failures = inner.consecutive_failures,
                reset_timeout_ms = self.settings.reset_timeout_ms,
                "circuit breaker open"
            );
        }
    }

    /// Records a failed call now.
    pub fn record_failure(&self) {
        self.record_failure_at(Instant::now())
    }

    /// Forces the circuit closed and clears the failure count.
    pub fn reset(&self) {
        self.record_success();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(CircuitBreakerSettings {
            failure_threshold: 3,
            reset_timeout_ms: 1000,
            half_open_max_requests: 1,
        })
    }

    #[test]
    fn full_state_sequence() {
        let b = breaker();
        let t0 = Instant::now();
        let cid = Uuid::new_v4();
        assert_eq!(b.state_at(t0), CircuitState::Closed);
        b.record_failure_at(t0);
        b.record_failure_at(t0);
        assert_eq!(b.state_at(t0), CircuitState::Closed);
        assert!(b.try_acquire_at(t0, None).is_ok());
        b.record_failure_at(t0);
        assert_eq!(b.state_at(t0), CircuitState::Open);
        assert_eq!(b.opens(), 1);

        let err = b
            .try_acquire_at(t0 + Duration::from_millis(400), Some(cid))
            .unwrap_err();
        assert_eq!(err.retry_after, Duration::from_millis(600));
        assert_eq!(err.correlation_id, Some(cid));
        assert!(err.to_string().contains(&cid.to_string()));

        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(b.state_at(t1), CircuitState::HalfOpen);
        assert!(b.try_acquire_at(t1, None).is_ok());
        // Only one trial call at a time.
        assert!(b.try_acquire_at(t1, None).is_err());
        // The trial fails: open again.
        b.record_failure_at(t1);
        assert_eq!(b.state_at(t1), CircuitState::Open);
        assert_eq!(b.opens(), 2);

        let t2 = t1 + Duration::from_millis(1000);
        assert!(b.try_acquire_at(t2, None).is_ok());
        b.record_success();
        assert_eq!(b.state_at(t2), CircuitState::Closed);
        assert!(b.try_acquire_at(t2, None).is_ok());
    }

    #[test]
    fn success_resets_the_count() {
        let b = breaker();
        let t = Instant::now();
        b.record_failure_at(t);
        b.record_failure_at(t);
        b.record_success();
        b.record_failure_at(t);
        b.record_failure_at(t);
        assert_eq!(b.state_at(t), CircuitState::Closed);
    }

    #[test]
    fn reset_closes() {
        let b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            b.record_failure_at(t);
        }
        assert_eq!(b.state_at(t), CircuitState::Open);
        b.reset();
        assert_eq!(b.state_at(t), CircuitState::Closed);
    }
}
