//! Counters and the publish latency histogram, rendered as Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the publish latency histogram buckets.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Picks one counter out of [`Metrics`].
type CounterField = fn(&Metrics) -> &AtomicU64;

/// The counters [`Metrics`] keeps, in the order they are rendered: the name
/// after its `onex_` prefix, the help text and the field that counts.
#[rustfmt::skip]
const COUNTERS: [(&str, &str, CounterField); 9] = [
    ("events_consumed_total", "Messages handed to a subscriber.", |m| &m.consumed),
    ("events_published_total", "Messages published.", |m| &m.published),
    ("events_publish_failed_total", "Publishes that failed for good.", |m| &m.publish_failed),
    ("handler_failures_total", "Handler invocations that failed.", |m| &m.handler_failures),
    ("retries_total", "Publish and handler retries.", |m| &m.retries),
    ("events_dead_lettered_total", "Messages sent to a dead-letter topic.", |m| &m.dead_lettered),
    ("duplicates_skipped_total", "Duplicate messages skipped.", |m| &m.duplicates_skipped),
    ("producer_rebuilds_total", "Producers replaced after a fatal error.", |m| &m.producer_rebuilds),
    ("partitions_revoked_total", "Consumed partitions taken away: a rebalance, or a lost session.", |m| &m.partitions_revoked),
];

/// Runtime counters, shared by the bus, the dispatcher and the health endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages handed to a subscriber.
    pub consumed: AtomicU64,
    /// Messages published successfully.
    pub published: AtomicU64,
    /// Publishes that failed for good.
    pub publish_failed: AtomicU64,
    /// Handler invocations that returned an error.
    pub handler_failures: AtomicU64,
    /// Retries (publish and handler).
    pub retries: AtomicU64,
    /// Messages written to a dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Duplicate messages skipped.
    pub duplicates_skipped: AtomicU64,
    /// Kafka producers replaced after librdkafka declared them fatally failed.
    pub producer_rebuilds: AtomicU64,
    /// Consumed partitions taken from this process: by a rebalance, or
    /// because its group session expired (a broker outage longer than the
    /// session, a process stalled past it).
    pub partitions_revoked: AtomicU64,
    /// Consumer lag per consumed topic, where the backend reports it.
    consumer_lag: Mutex<BTreeMap<String, i64>>,
    latency_buckets: [AtomicU64; 13],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// A fresh set.
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Records the consumer lag of `topic` (messages behind the high watermark).
    pub fn set_consumer_lag(&self, topic: &str, lag: i64) {
        self.consumer_lag
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string(), lag);
    }

    /// Records one publish latency.
    pub fn observe_publish_latency(&self, d: Duration) {
        // Each observation lands in its own bucket only; `render` adds them
        // up into Prometheus' cumulative buckets.
        let secs = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| secs <= *bound) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Prometheus text exposition. `breaker_state` is 0 closed, 1 half-open,
    /// 2 open; `breaker_opens` counts openings.
    pub fn render(&self, node: &str, breaker_state: u8, breaker_opens: u64) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        // The breaker keeps its own figures; the caller passes them in.
        let state = u64::from(breaker_state);
        #[rustfmt::skip]
        let breaker = [
            ("circuit_breaker_opens_total", "counter", "Times the circuit opened.", breaker_opens),
            ("circuit_breaker_state", "gauge", "0 closed, 1 half-open, 2 open.", state),
        ];
        let counters =
            COUNTERS.map(|(name, help, field)| (name, "counter", help, get(field(self))));
        for (name, kind, help, value) in counters.into_iter().chain(breaker) {
            let _ = writeln!(out, "# HELP onex_{name} {help}");
            let _ = writeln!(out, "# TYPE onex_{name} {kind}");
            let _ = writeln!(out, "onex_{name}{{node=\"{node}\"}} {value}");
        }
        let lags = self
            .consumer_lag
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !lags.is_empty() {
            let _ = writeln!(
                out,
                "# HELP onex_consumer_lag Messages behind the high watermark."
            );
            let _ = writeln!(out, "# TYPE onex_consumer_lag gauge");
            for (topic, lag) in lags {
                let _ = writeln!(
                    out,
                    "onex_consumer_lag{{node=\"{node}\",topic=\"{topic}\"}} {lag}"
                );
            }
        }
        let _ = writeln!(out, "# HELP onex_publish_latency_seconds Publish latency.");
        let _ = writeln!(out, "# TYPE onex_publish_latency_seconds histogram");
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += get(&self.latency_buckets[i]);
            let _ = writeln!(
                out,
                "onex_publish_latency_seconds_bucket{{node=\"{node}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = get(&self.latency_count);
        let _ = writeln!(
            out,
            "onex_publish_latency_seconds_bucket{{node=\"{node}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "onex_publish_latency_seconds_sum{{node=\"{node}\"}} {}",
            get(&self.latency_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "onex_publish_latency_seconds_count{{node=\"{node}\"}} {count}"
        );
        self.render_event_bus_names(&mut out, node, breaker_state, count);
        out
    }

    /// The event bus metrics under the names the ONEX Python services
    /// report them by (`events_published`, `events_failed`,
    /// `avg_publish_time_ms`, `circuit_breaker_status`, `events_sent_to_dlq`,
    /// `retries_attempted`), so one dashboard reads both.
    fn render_event_bus_names(&self, out: &mut String, node: &str, breaker_state: u8, count: u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let avg_ms = if count == 0 {
            0.0
        } else {
            get(&self.latency_sum_micros) as f64 / count as f64 / 1000.0
        };
        let status = match breaker_state {
            0 => "closed",
            1 => "half_open",
            _ => "open",
        };
        let values = [
            get(&self.published).to_string(),
            get(&self.publish_failed).to_string(),
            format!("{avg_ms:.3}"),
            breaker_state.to_string(),
            get(&self.dead_lettered).to_string(),
            get(&self.retries).to_string(),
        ];
        for ((name, kind, help), value) in EVENT_BUS_NAMES.iter().zip(values) {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            if *name == "circuit_breaker_status" {
                let _ = writeln!(out, "{name}{{node=\"{node}\",state=\"{status}\"}} {value}");
            } else {
                let _ = writeln!(out, "{name}{{node=\"{node}\"}} {value}");
            }
        }
    }
}

/// The event bus metrics the ONEX Python services report, as (name, type,
/// help), in the order [`Metrics::render`] writes them.
const EVENT_BUS_NAMES: [(&str, &str, &str); 6] = [
    ("events_published", "counter", "Events published."),
    (
        "events_failed",
        "counter",
        "Events whose publish failed for good.",
    ),
    (
        "avg_publish_time_ms",
        "gauge",
        "Mean publish time in milliseconds.",
    ),
    (
        "circuit_breaker_status",
        "gauge",
        "Publish circuit: 0 closed, 1 half-open, 2 open (state label).",
    ),
    (
        "events_sent_to_dlq",
        "counter",
        "Messages sent to a dead-letter topic.",
    ),
    (
        "retries_attempted",
        "counter",
        "Publish and handler retries.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::new();
        inc(&m.published);
        inc(&m.published);
        inc(&m.dead_lettered);
        m.observe_publish_latency(Duration::from_millis(3));
        m.observe_publish_latency(Duration::from_secs(20));
        let text = m.render("n", 2, 1);
        assert!(text.contains("onex_events_published_total{node=\"n\"} 2"));
        assert!(text.contains("onex_events_dead_lettered_total{node=\"n\"} 1"));
        assert!(text.contains("onex_circuit_breaker_state{node=\"n\"} 2"));
        assert!(text.contains("le=\"0.0025\"} 0"));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"10\"} 1"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(!text.contains("onex_consumer_lag"));
        // The names the ONEX Python services use.
        assert!(text.contains("# TYPE events_published counter\nevents_published{node=\"n\"} 2\n"));
        assert!(text.contains("events_failed{node=\"n\"} 0\n"));
        assert!(
            text.contains(
                "# TYPE avg_publish_time_ms gauge\navg_publish_time_ms{node=\"n\"} 10001.500\n"
            ),
            "{text}"
        );
        assert!(text.contains("circuit_breaker_status{node=\"n\",state=\"open\"} 2\n"));
        assert!(text.contains("events_sent_to_dlq{node=\"n\"} 1\n"));
        assert!(text.contains("retries_attempted{node=\"n\"} 0\n"));
        m.set_consumer_lag("t", 7);
        assert!(m
            .render("n", 0, 0)
            .contains("onex_consumer_lag{node=\"n\",topic=\"t\"} 7"));
    }

    /// The whole exposition, byte for byte: names, help texts, the order of
    /// the rows and which counter feeds which row.
    #[test]
    fn renders_the_exposition_text_exactly() {
        let m = Metrics::new();
        let counters = [
            &m.consumed,
            &m.published,
            &m.publish_failed,
            &m.handler_failures,
            &m.retries,
            &m.dead_lettered,
            &m.duplicates_skipped,
            &m.producer_rebuilds,
            &m.partitions_revoked,
        ];
        // Each counter gets its own value (1 to 9), so a row that read the
        // wrong counter shows.
        for (times, counter) in (1..).zip(counters) {
            for _ in 0..times {
                inc(counter);
            }
        }
        m.observe_publish_latency(Duration::from_millis(3));
        m.observe_publish_latency(Duration::from_secs(20));
        m.set_consumer_lag("b", 0);
        m.set_consumer_lag("a", 3);
        let expected = r#"# HELP onex_events_consumed_total Messages handed to a subscriber.
# TYPE onex_events_consumed_total counter
onex_events_consumed_total{node="n"} 1
# HELP onex_events_published_total Messages published.
# TYPE onex_events_published_total counter
onex_events_published_total{node="n"} 2
# HELP onex_events_publish_failed_total Publishes that failed for good.
# TYPE onex_events_publish_failed_total counter
onex_events_publish_failed_total{node="n"} 3
# HELP onex_handler_failures_total Handler invocations that failed.
# TYPE onex_handler_failures_total counter
onex_handler_failures_total{node="n"} 4
# HELP onex_retries_total Publish and handler retries.
# TYPE onex_retries_total counter
onex_retries_total{node="n"} 5
# HELP onex_events_dead_lettered_total Messages sent to a dead-letter topic.
# TYPE onex_events_dead_lettered_total counter
onex_events_dead_lettered_total{node="n"} 6
# HELP onex_duplicates_skipped_total Duplicate messages skipped.
# TYPE onex_duplicates_skipped_total counter
onex_duplicates_skipped_total{node="n"} 7
# HELP onex_producer_rebuilds_total Producers replaced after a fatal error.
# TYPE onex_producer_rebuilds_total counter
onex_producer_rebuilds_total{node="n"} 8
# HELP onex_partitions_revoked_total Consumed partitions taken away: a rebalance, or a lost session.
# TYPE onex_partitions_revoked_total counter
onex_partitions_revoked_total{node="n"} 9
# HELP onex_circuit_breaker_opens_total Times the circuit opened.
# TYPE onex_circuit_breaker_opens_total counter
onex_circuit_breaker_opens_total{node="n"} 10
# HELP onex_circuit_breaker_state 0 closed, 1 half-open, 2 open.
# TYPE onex_circuit_breaker_state gauge
onex_circuit_breaker_state{node="n"} 1
# HELP onex_consumer_lag Messages behind the high watermark.
# TYPE onex_consumer_lag gauge
onex_consumer_lag{node="n",topic="a"} 3
onex_consumer_lag{node="n",topic="b"} 0
# HELP onex_publish_latency_seconds Publish latency.
# TYPE onex_publish_latency_seconds histogram
onex_publish_latency_seconds_bucket{node="n",le="0.001"} 0
onex_publish_latency_seconds_bucket{node="n",le="0.0025"} 0
onex_publish_latency_seconds_bucket{node="n",le="0.005"} 1
onex_publish_latency_seconds_bucket{node="n",le="0.01"} 1
onex_publish_latency_seconds_bucket{node="n",le="0.025"} 1
onex_publish_latency_seconds_bucket{node="n",le="0.05"} 1
onex_publish_latency_seconds_bucket{node="n",le="0.1"} 1
onex_publish_latency_seconds_bucket{node="n",le="0.25"} 1
onex_publish_latency_seconds_bucket{node="n",le="0.5"} 1
onex_publish_latency_seconds_bucket{node="n",le="1"} 1
onex_publish_latency_seconds_bucket{node="n",le="2.5"} 1
onex_publish_latency_seconds_bucket{node="n",le="5"} 1
onex_publish_latency_seconds_bucket{node="n",le="10"} 1
onex_publish_latency_seconds_bucket{node="n",le="+Inf"} 2
onex_publish_latency_seconds_sum{node="n"} 20.003
onex_publish_latency_seconds_count{node="n"} 2
# HELP events_published Events published.
# TYPE events_published counter
events_published{node="n"} 2
# HELP events_failed Events whose publish failed for good.
# TYPE events_failed counter
events_failed{node="n"} 3
# HELP avg_publish_time_ms Mean publish time in milliseconds.
# TYPE avg_publish_time_ms gauge
avg_publish_time_ms{node="n"} 10001.500
# HELP circuit_breaker_status Publish circuit: 0 closed, 1 half-open, 2 open (state label).
# TYPE circuit_breaker_status gauge
circuit_breaker_status{node="n",state="half_open"} 1
# HELP events_sent_to_dlq Messages sent to a dead-letter topic.
# TYPE events_sent_to_dlq counter
events_sent_to_dlq{node="n"} 6
# HELP retries_attempted Publish and handler retries.
# TYPE retries_attempted counter
retries_attempted{node="n"} 5
"#;
        assert_eq!(m.render("n", 1, 10), expected);
    }
}
