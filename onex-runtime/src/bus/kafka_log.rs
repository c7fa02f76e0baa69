//! librdkafka's own logs and errors, routed into `tracing` without flooding.
//!
//! While a broker is unreachable librdkafka reports the same failure every
//! reconnect attempt (every ~100 ms at first), from the producer, the
//! consumers and the admin client alike. A node that runs degraded says so
//! once, loudly, from the runtime; librdkafka's repeats are kept to one
//! warning per distinct message every [`REPEAT_INTERVAL`], the rest at debug.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

/// How often one distinct librdkafka message may be logged at warn level.
pub const REPEAT_INTERVAL: Duration = Duration::from_secs(30);

/// Client context for producers and admin clients. It remembers the last
/// TLS or SASL failure, so that a refused certificate or login can be told
/// apart from a broker that is not there.
#[derive(Debug, Clone, Default)]
pub struct QuietContext {
    security_failure: Arc<Mutex<Option<String>>>,
}

impl QuietContext {
    /// The last TLS handshake or SASL authentication failure, if any.
    pub fn security_failure(&self) -> Option<String> {
        self.security_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if is_security_failure(&error) {
            *self
                .security_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(reason.to_string());
        }
        report_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}

/// TLS (`SSL handshake failed: ... certificate verify failed`) and SASL
/// (`SASL authentication error`) failures.
pub fn is_security_failure(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::SSL | RDKafkaErrorCode::Authentication)
    )
}

/// A librdkafka log line at the matching tracing level, repeats muted.
pub fn log(level: RDKafkaLogLevel, fac: &str, message: &str) {
    use RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error | L::Warning => {
            if first_in_interval(&format!("{fac}:{}", without_counters(message))) {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}");
            } else {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}");
            }
        }
        L::Notice | L::Info => tracing::debug!(target: "librdkafka", facility = fac, "{message}"),
        L::Debug => tracing::trace!(target: "librdkafka", facility = fac, "{message}"),
    }
}

/// A client-level librdkafka error, repeats muted.
pub fn report_error(error: &KafkaError, reason: &str) {
    if first_in_interval(&format!("{error:?}:{}", without_counters(reason))) {
        tracing::warn!(target: "librdkafka", "{error}: {reason}");
    } else {
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
    }
}

/// librdkafka appends changing details ("1 identical error(s) suppressed",
/// "after 0ms", "1/1 brokers are down"): digits are dropped for the key.
fn without_counters(message: &str) -> String {
    message.chars().filter(|c| !c.is_ascii_digit()).collect()
}

fn first_in_interval(key: &str) -> bool {
    static SEEN: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let now = Instant::now();
    match seen.get(key) {
        Some(last) if now.duration_since(*last) < REPEAT_INTERVAL => false,
        _ => {
            if seen.len() > 1024 {
                seen.retain(|_, last| now.duration_since(*last) < REPEAT_INTERVAL);
            }
            seen.insert(key.to_owned(), now);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_message_is_reported_once_per_interval() {
        let key = "test:Connect to ipv#...: Connection refused (after ms in state CONNECT)";
        assert!(first_in_interval(key));
        assert!(!first_in_interval(key));
        assert!(first_in_interval("test:another message"));
    }

    #[test]
    fn counters_do_not_make_messages_distinct() {
        assert_eq!(
            without_counters("1/1 brokers are down (after 0ms, 3 identical error(s) suppressed)"),
            without_counters("0/1 brokers are down (after 12ms, 1 identical error(s) suppressed)")
        );
    }
}
