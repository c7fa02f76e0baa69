//! In-memory bus publish -> handle throughput against a bare tokio mpsc
//! pipeline moving the same messages. Part of `bench/run.sh memory`.
//!
//! ```sh
//! cargo run --release -p onex-runtime --example bench_memory [EVENTS] [ROUNDS]
//! ```
//!
//! Both pipelines carry EVENTS (default 1,000,000) messages of 250 bytes from
//! one publishing task to one handler that counts them; the clock runs from
//! the first publish until the handler has seen the last message. The
//! in-memory bus goes through its publish path (retry policy, circuit breaker,
//! topic log) and its subscription loop (group cursor, acknowledgement); the
//! baseline is a bounded `tokio::sync::mpsc` channel (capacity 1024) carrying
//! a `BusMessage` built the same way. Rounds alternate; the last line is a
//! `RESULT` line with the median of each.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onex_runtime::bus::memory::{InMemoryBus, MemoryBusSettings};
use onex_runtime::bus::{BusMessage, EventBus, Membership, MessageHandler, Nack};
use onex_runtime::headers::Headers;
use tokio::sync::Notify;

const VALUE_BYTES: usize = 250;
const TOPIC: &str = "bench.memory";

fn rate(events: usize, took: Duration) -> f64 {
    events as f64 / took.as_secs_f64()
}

/// Counts messages; wakes the benchmark at the last one.
struct Counter {
    seen: AtomicUsize,
    events: usize,
    done: Arc<Notify>,
}

#[onex_runtime::async_trait]
impl MessageHandler for Counter {
    async fn on_message(&self, msg: &BusMessage) -> Result<(), Nack> {
        std::hint::black_box(&msg.value);
        if self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.events {
            self.done.notify_one();
        }
        Ok(())
    }
}

async fn bus_round(events: usize) -> Duration {
    let bus = InMemoryBus::new(MemoryBusSettings {
        retention: events,
        max_history: 0,
        ..MemoryBusSettings::default()
    });
    let done = Arc::new(Notify::new());
    let handler = Arc::new(Counter {
        seen: AtomicUsize::new(0),
        events,
        done: done.clone(),
    });
    let _subscription = bus
        .subscribe(
            Membership {
                topic: TOPIC,
                group: "bench",
            },
            handler,
        )
        .await
        .expect("subscribe");
    let value = vec![b'x'; VALUE_BYTES];
    let headers = Headers::default();
    let started = Instant::now();
    for _ in 0..events {
        bus.publish(TOPIC, None, &value, &headers)
            .await
            .expect("publish");
    }
    done.notified().await;
    started.elapsed()
}

async fn mpsc_round(events: usize) -> Duration {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<BusMessage>(1024);
    let consumer = tokio::spawn(async move {
        let mut seen = 0usize;
        while let Some(msg) = rx.recv().await {
            std::hint::black_box(&msg.value);
            seen += 1;
            if seen == events {
                break;
            }
        }
    });
    let value = vec![b'x'; VALUE_BYTES];
    let started = Instant::now();
    for offset in 0..events {
        tx.send(BusMessage {
            topic: TOPIC.to_string(),
            partition: 0,
            offset: offset as i64,
            key: None,
            value: value.clone(),
            headers: Headers::default(),
            raw_headers: Default::default(),
        })
        .await
        .expect("send");
    }
    consumer.await.expect("consumer");
    started.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let (mut bus, mut mpsc) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let b = rate(events, bus_round(events).await);
        let m = rate(events, mpsc_round(events).await);
        println!("round {round}: in-memory bus {b:>12.0} events/s   tokio mpsc {m:>12.0} events/s");
        bus.push(b);
        mpsc.push(m);
    }
    let (b, m) = (median(bus), median(mpsc));
    println!(
        "RESULT events={events} rounds={rounds} bus_rate={b:.0} mpsc_rate={m:.0} ratio={:.3}",
        b / m
    );
}
