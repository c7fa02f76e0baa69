//! The conformance suite and the debugging helpers on the in-memory bus.

mod conformance;

use std::sync::Arc;
use std::time::Duration;

use conformance::Backend;
use onex_runtime::async_trait;
use onex_runtime::breaker::{CircuitBreakerSettings, CircuitState};
use onex_runtime::bus::memory::{InMemoryBus, MemoryBusSettings};
use onex_runtime::bus::{handler_fn, BusError, BusMessage, EventBus, Membership, Nack};
use onex_runtime::headers::Headers;
use onex_runtime::metrics::Metrics;
use onex_runtime::retry::RetrySettings;
use onex_runtime::{Handled, HandlerContext, HandlerError, InboundEvent, NodeHandler};

struct Memory;

#[async_trait]
impl Backend for Memory {
    /// A bus that takes records as large as Kafka's producer does.
    async fn bus(&self) -> Arc<dyn EventBus> {
        Arc::new(InMemoryBus::new(MemoryBusSettings {
            max_record_bytes: Some(onex_runtime::bus::kafka::PRODUCER_MESSAGE_MAX_BYTES),
            ..MemoryBusSettings::default()
        }))
    }
    fn patience(&self) -> Duration {
        Duration::from_secs(5)
    }
    fn node_config(&self) -> Vec<(String, String)> {
        vec![]
    }
}

conformance::every_scenario!(
    #[tokio::test]
    Memory
);

fn fast_bus(threshold: u32) -> InMemoryBus {
    InMemoryBus::new(MemoryBusSettings {
        publish_retry: RetrySettings {
            max_retries: 2,
            initial_delay_ms: 20,
            max_delay_ms: 100,
            multiplier: 2.0,
            jitter: 0.0,
        },
        breaker: CircuitBreakerSettings {
            failure_threshold: threshold,
            reset_timeout_ms: 200,
            half_open_max_requests: 1,
        },
        ..MemoryBusSettings::default()
    })
}

/// A bus that makes one attempt per publish: each injected failure fails a
/// publish.
fn one_attempt_bus() -> InMemoryBus {
    InMemoryBus::new(MemoryBusSettings {
        publish_retry: RetrySettings {
            max_retries: 0,
            ..RetrySettings::default()
        },
        ..MemoryBusSettings::default()
    })
}

/// A bus that makes one attempt per publish and whose breaker stays
/// closed, so every try reaches it; it takes records up to `max_record_bytes`.
fn every_try_bus(max_record_bytes: Option<usize>) -> InMemoryBus {
    InMemoryBus::new(MemoryBusSettings {
        max_record_bytes,
        publish_retry: RetrySettings {
            max_retries: 0,
            ..RetrySettings::default()
        },
        breaker: CircuitBreakerSettings {
            failure_threshold: u32::MAX,
            ..CircuitBreakerSettings::default()
        },
        ..MemoryBusSettings::default()
    })
}

#[tokio::test]
async fn debugging_helpers() {
    let bus = InMemoryBus::default();
    let h = Headers::default();
    for (t, v) in [("t.a", "1"), ("t.b", "2"), ("t.a", "3")] {
        bus.publish(t, None, v.as_bytes(), &h).await.unwrap();
    }
    assert_eq!(bus.topics(), vec!["t.a".to_string(), "t.b".to_string()]);
    assert_eq!(bus.topic_offset("t.a"), 2);
    assert_eq!(bus.topic_offset("none"), 0);
    let all = bus.history(10, None);
    assert_eq!(
        all.iter().map(|m| m.value.clone()).collect::<Vec<_>>(),
        vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
    );
    let last_a = bus.history(1, Some("t.a"));
    assert_eq!(last_a.len(), 1);
    assert_eq!(last_a[0].value, b"3");
    let (sub, mut rx) =
        conformance::collect(&(Arc::new(bus.clone()) as Arc<dyn EventBus>), "t.a", "g").await;
    assert_eq!(bus.subscriber_count(Some("t.a")), 1);
    assert_eq!(bus.subscriber_count(Some("t.b")), 0);
    conformance::recv_n(&mut rx, 2, Duration::from_secs(2)).await;
    assert_eq!(bus.committed_offset("g", "t.a").await, Some(2));
    sub.unsubscribe().await;
    assert_eq!(bus.subscriber_count(None), 0);
    bus.clear_history();
    assert!(bus.history(10, None).is_empty());
    assert_eq!(bus.topic_offset("t.a"), 2, "clearing history keeps the log");
}

#[tokio::test]
async fn publish_retries_transient_failures_with_backoff() {
    let bus = fast_bus(5);
    bus.inject_transient_failures(2);
    let started = std::time::Instant::now();
    bus.publish("t", None, b"x", &Headers::default())
        .await
        .unwrap();
    // Two retries: 20 ms + 40 ms.
    assert!(started.elapsed() >= Duration::from_millis(60));
    let m = bus.metrics();
    assert_eq!(m.retries.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(bus.circuit_status(), CircuitState::Closed);
}

#[tokio::test]
async fn non_retriable_errors_are_not_retried_and_do_not_trip_the_breaker() {
    let bus = fast_bus(1);
    bus.inject_fatal_failures(3);
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let err = bus
            .publish("t", None, b"x", &Headers::default())
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::NonRetriable { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_millis(20));
    }
    assert_eq!(bus.circuit_status(), CircuitState::Closed);
}

/// With a limit, the in-memory bus takes a record of exactly that many
/// bytes as Kafka's producer counts them, and refuses one byte more as too
/// large, at once and without touching the breaker.
#[tokio::test]
async fn a_record_over_the_limit_is_refused_as_too_large() {
    use onex_runtime::bus::{record_wire_size, Record};
    let headers = Headers::default().with_extra("h", "v");
    let record = |value: &[u8]| {
        record_wire_size(&Record {
            topic: "t",
            partition: None,
            key: Some(b"k"),
            value,
            headers: &headers,
            raw_headers: None,
        })
    };
    // 36 bytes of record fields, the key, and the header: 1 + 1 + 1 + 1.
    assert_eq!(record(b"x"), 36 + 1 + 1 + 4);
    // A length of 64 or more takes two bytes as a zig-zag varint.
    let wide = Headers::default().with_extra("n".repeat(64), "");
    let wide_size = record_wire_size(&Record {
        topic: "t",
        partition: None,
        key: None,
        value: b"",
        headers: &wide,
        raw_headers: None,
    });
    assert_eq!(wide_size, 36 + 2 + 64 + 1);
    let limit = record(&[b'x'; 100]);
    let bus = InMemoryBus::new(MemoryBusSettings {
        max_record_bytes: Some(limit),
        breaker: CircuitBreakerSettings {
            failure_threshold: 1,
            ..CircuitBreakerSettings::default()
        },
        ..MemoryBusSettings::default()
    });
    assert_eq!(bus.max_record_bytes(), Some(limit));
    bus.publish("t", Some(b"k"), &[b'x'; 100], &headers)
        .await
        .unwrap();
    let err = bus
        .publish("t", Some(b"k"), &[b'x'; 101], &headers)
        .await
        .unwrap_err();
    assert!(matches!(err, BusError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains(&format!("{}", limit + 1)), "{err}");
    assert_eq!(bus.circuit_status(), CircuitState::Closed);
    assert_eq!(bus.topic_offset("t"), 1);
}

#[tokio::test]
async fn breaker_state_sequence_on_publish() {
    let bus = fast_bus(2);
    let h = Headers {
        correlation_id: Some(uuid::Uuid::new_v4()),
        ..Headers::default()
    };
    // Each failed publish makes 3 attempts; two failed publishes open the circuit.
    bus.inject_transient_failures(6);
    for _ in 0..2 {
        assert!(matches!(
            bus.publish("t", None, b"x", &h).await,
            Err(BusError::Transient { attempts: 3, .. })
        ));
    }
    assert_eq!(bus.circuit_status(), CircuitState::Open);
    match bus.publish("t", None, b"x", &h).await {
        Err(BusError::CircuitOpen(e)) => {
            assert!(e.retry_after <= Duration::from_millis(200));
            assert_eq!(e.correlation_id, h.correlation_id);
        }
        other => panic!("expected an open circuit, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(220)).await;
    assert_eq!(bus.circuit_status(), CircuitState::HalfOpen);
    // The trial fails: open again.
    bus.inject_transient_failures(3);
    assert!(bus.publish("t", None, b"x", &h).await.is_err());
    assert_eq!(bus.circuit_status(), CircuitState::Open);
    tokio::time::sleep(Duration::from_millis(220)).await;
    bus.publish("t", None, b"x", &h).await.unwrap();
    assert_eq!(bus.circuit_status(), CircuitState::Closed);
    assert_eq!(bus.breaker().opens(), 2);
    // Manual reset helper.
    bus.inject_transient_failures(6);
    for _ in 0..2 {
        let _ = bus.publish("t", None, b"x", &h).await;
    }
    assert_eq!(bus.circuit_status(), CircuitState::Open);
    bus.reset_circuit();
    assert_eq!(bus.circuit_status(), CircuitState::Closed);
}

#[tokio::test]
async fn shared_metrics_count_publishes() {
    let metrics = Arc::new(Metrics::new());
    let bus = InMemoryBus::with_metrics(MemoryBusSettings::default(), metrics.clone());
    bus.publish("t", None, b"x", &Headers::default())
        .await
        .unwrap();
    let text = metrics.render("n", 0, 0);
    assert!(
        text.contains("onex_events_published_total{node=\"n\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn invalid_topic_names_are_refused() {
    let bus = InMemoryBus::default();
    assert!(matches!(
        bus.publish("bad topic", None, b"x", &Headers::default())
            .await,
        Err(BusError::Topic(_))
    ));
}

/// A subscription the bus refuses (an invalid topic name, a closed bus)
/// makes nothing: no topic, no consumer.
#[tokio::test]
async fn a_refused_subscription_makes_no_consumer() {
    let bus = InMemoryBus::default();
    let member = |topic| Membership { topic, group: "g" };
    let handler = || handler_fn(|_m: BusMessage| async { Ok::<(), Nack>(()) });
    let refused = bus.subscribe(member("bad topic"), handler()).await;
    assert!(matches!(refused, Err(BusError::Topic(_))), "{refused:?}");
    bus.close().await.unwrap();
    let refused = bus.subscribe(member("t"), handler()).await;
    assert!(matches!(refused, Err(BusError::Closed)), "{refused:?}");
    assert!(bus.topics().is_empty(), "{:?}", bus.topics());
    assert_eq!(bus.subscriber_count(None), 0);
}

/// The bus has the one partition 0: a record for it lands there, one for
/// any other is refused at once, neither published nor counted as failed.
#[tokio::test]
async fn only_partition_zero_takes_records() {
    let bus = InMemoryBus::default();
    let h = Headers::default();
    let receipt = bus
        .publish_to_partition("t", 0, b"k", b"x", &h)
        .await
        .unwrap();
    assert_eq!((receipt.partition, receipt.offset), (0, 0));
    assert_eq!(bus.history(1, Some("t"))[0].key.as_deref(), Some(&b"k"[..]));
    let err = bus
        .publish_to_partition("t", 1, b"k", b"y", &h)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BusError::NonRetriable { topic, message }
            if topic == "t" && message == "the in-memory bus has no partition 1"),
        "{err}"
    );
    let m = bus.metrics();
    assert_eq!(m.published.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        m.publish_failed.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(bus.topic_offset("t"), 1);
}

struct Quiet;

#[async_trait]
impl onex_runtime::NodeHandler for Quiet {
    async fn handle(
        &self,
        _: &onex_runtime::HandlerContext,
        _: &onex_runtime::InboundEvent,
    ) -> Result<Vec<onex_runtime::OutboundEvent>, onex_runtime::HandlerError> {
        Ok(vec![])
    }
}

/// Introspection on request (answering with the request's correlation id),
/// on the heartbeat, and on shutdown, all with the topic prefix applied.
#[tokio::test]
async fn introspection_on_request_heartbeat_and_shutdown() {
    use onex_runtime::introspection::{INTROSPECTION_REQUEST_TOPIC, INTROSPECTION_TOPIC};
    use onex_runtime::{Envelope, EventSource, NodeKind, NodeSpec};

    let spec = NodeSpec {
        subscribe_topics: vec!["onex.evt.x.y.v1".into()],
        consumer_group: "quiet".into(),
        heartbeat_interval_secs: 1,
        ..NodeSpec::new("node_quiet_reducer", NodeKind::Reducer, "2.0.0")
    };
    let service =
        conformance::node_service(spec, Arc::new(Quiet), [("KAFKA_TOPIC_PREFIX", "dev.")]);
    let mem = service.memory_bus();
    let bus: Arc<dyn EventBus> = Arc::new(mem.clone());
    let (_sub, mut rx) =
        conformance::collect(&bus, &format!("dev.{INTROSPECTION_TOPIC}"), "watch").await;
    service.start(bus.clone(), false).await.unwrap();
    let reasons = |msgs: Vec<onex_runtime::bus::BusMessage>| -> Vec<(String, String)> {
        msgs.iter()
            .map(|m| {
                let e = Envelope::from_bytes(&m.value).unwrap();
                (
                    e.payload["reason"].as_str().unwrap().to_string(),
                    e.payload["correlation_id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let first = reasons(conformance::recv_n(&mut rx, 1, Duration::from_secs(2)).await);
    assert_eq!(first[0].0, "startup");

    let request = Envelope::new(
        "request-introspection",
        serde_json::json!({}),
        EventSource::default(),
    );
    bus.publish_envelope(
        &format!("dev.{INTROSPECTION_REQUEST_TOPIC}"),
        &request,
        None,
    )
    .await
    .unwrap();
    let answer = reasons(conformance::recv_n(&mut rx, 1, Duration::from_secs(2)).await);
    assert_eq!(
        answer[0],
        ("request".to_string(), request.correlation_id.to_string())
    );

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    service.spawn_heartbeat(Duration::from_millis(300), stop);
    let beat = reasons(conformance::recv_n(&mut rx, 1, Duration::from_secs(2)).await);
    assert_eq!(beat[0].0, "heartbeat");
    let _ = stop_tx.send(true);

    service.shutdown().await;
    let last = mem.history(1, Some(&format!("dev.{INTROSPECTION_TOPIC}")));
    let e = Envelope::from_bytes(&last[0].value).unwrap();
    assert_eq!(e.payload["reason"], "shutdown");
    assert_eq!(e.payload["current_state"], "stopping");
    assert_eq!(e.payload["node_type"], "reducer");
}

/// A dead-letter topic the node consumes is refused at start-up: a dead
/// letter written there would come back, fail to decode and be
/// dead-lettered again, for ever. Explicit (variable or contract) or
/// derived (`<topic>.dlq`), compared after the topic prefix.
#[test]
fn a_dead_letter_topic_the_node_consumes_is_refused() {
    use onex_runtime::config::{ConfigSource, RuntimeConfig};
    use onex_runtime::service::NodeService;
    use onex_runtime::{strings, NodeKind, NodeSpec};

    let start = |topics: &[&str], dlq: Option<&str>, vars: &[(&str, &str)]| {
        let spec = NodeSpec {
            subscribe_topics: strings(topics),
            dlq_topic: dlq.map(str::to_string),
            ..NodeSpec::new("node_loop_effect", NodeKind::Effect, "1.0.0")
        };
        let src = ConfigSource::from_pairs(vars.iter().copied());
        let config = RuntimeConfig::from_source(&src).expect("valid configuration");
        NodeService::new(spec, Arc::new(Quiet), config, &src).map(|_| ())
    };
    let input = "onex.evt.loop.in.v1";
    let refused = [
        start(&[input], None, &[("KAFKA_DEAD_LETTER_TOPIC", input)]),
        start(&[input], Some(input), &[]),
        start(&[input, "onex.evt.loop.in.v1.dlq"], None, &[]),
        start(
            &[input, "onex.evt.loop.in.v1.dlq"],
            None,
            &[("KAFKA_TOPIC_PREFIX", "dev.")],
        ),
    ];
    let said: Vec<String> = refused
        .into_iter()
        .map(|r| r.expect_err("refused").to_string())
        .collect();
    let named = [
        "KAFKA_DEAD_LETTER_TOPIC=\"onex.evt.loop.in.v1\" is invalid",
        "the contract's dead-letter topic=\"onex.evt.loop.in.v1\"",
        "the dead-letter topic of onex.evt.loop.in.v1=\"onex.evt.loop.in.v1.dlq\"",
        "the dead-letter topic of onex.evt.loop.in.v1=\"dev.onex.evt.loop.in.v1.dlq\"",
    ];
    for (said, named) in said.iter().zip(named) {
        assert!(said.starts_with(named), "{said}");
        assert!(said.contains("a topic the node does not consume"), "{said}");
    }
    start(&[input], None, &[]).expect("its own .dlq");
    start(
        &[input],
        None,
        &[("KAFKA_DEAD_LETTER_TOPIC", "onex.dlq.loop.failed.v1")],
    )
    .expect("a topic of its own");
}

/// Records the event id of every delivery; the first one fails for good
/// and makes its dead letter fail too, so the record is delivered again.
struct IdRecorder {
    bus: InMemoryBus,
    seen: std::sync::Mutex<Vec<uuid::Uuid>>,
}

#[async_trait]
impl NodeHandler for IdRecorder {
    async fn handle(&self, _: &HandlerContext, event: &InboundEvent) -> Handled {
        let mut seen = self.seen.lock().unwrap();
        seen.push(event.envelope.event_id);
        if seen.len() == 1 {
            // Every dead letter fails, until the test lets them through:
            // the input stays unacknowledged.
            self.bus.inject_fatal_failures(u32::MAX);
            return Err(HandlerError::Fatal("first delivery".into()));
        }
        Ok(vec![])
    }
}

/// A record without an event id of its own (a group command
/// `{"command", "payload"}`, or a producer that leaves it out) decodes to
/// the same id on every delivery: its `message_id` header, else an id
/// derived from its topic, partition and offset. Duplicate detection by
/// event id, and the ids of the results of a node that keeps state (the
/// same when an input is applied again after a crash), rest on it. Here
/// the first record is delivered again to the next process, after the
/// first stopped with it unacknowledged (its dead letter failing).
#[tokio::test]
async fn a_record_without_an_event_id_has_one_id_on_every_delivery() {
    use onex_runtime::{strings, NodeKind, NodeSpec};

    let mem = InMemoryBus::default();
    let bus: Arc<dyn EventBus> = Arc::new(mem.clone());
    let topic = "onex.cmd.ids.run.v1";
    let handler = Arc::new(IdRecorder {
        bus: mem.clone(),
        seen: std::sync::Mutex::new(Vec::new()),
    });
    let spec = NodeSpec {
        subscribe_topics: strings(&[topic]),
        retry: RetrySettings {
            max_retries: 0,
            ..RetrySettings::default()
        },
        heartbeat_interval_secs: 0,
        ..NodeSpec::new("node_ids_effect", NodeKind::Effect, "1.0.0")
    };
    // A process: the node's dispatcher, subscribed in its group.
    let start = async || {
        let dispatcher =
            conformance::dispatcher_of(&bus, spec.clone(), handler.clone(), "g", topic);
        bus.subscribe(Membership { topic, group: "g" }, Arc::new(dispatcher))
            .await
            .unwrap()
    };
    let first = start().await;
    let command = br#"{"command": "reload", "payload": {}}"#;
    let message_id = uuid::Uuid::new_v4();
    let with_id = Headers {
        message_id: Some(message_id),
        ..Headers::default()
    };
    bus.publish(topic, None, command, &Headers::default())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while handler.seen.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.unsubscribe().await;
    mem.inject_fatal_failures(0);
    let second = start().await;
    for headers in [&Headers::default(), &with_id] {
        bus.publish(topic, None, command, headers).await.unwrap();
    }
    while handler.seen.lock().unwrap().len() < 4 {
        assert!(std::time::Instant::now() < deadline, "{:?}", handler.seen);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = handler.seen.lock().unwrap().clone();
    assert_eq!(seen[0], seen[1], "one record, delivered to both processes");
    assert_ne!(seen[1], seen[2], "another record");
    assert_eq!(seen[3], message_id);
    second.unsubscribe().await;
}

/// [`conformance::Doubling`]'s node, started on `bus`, and what collects the
/// windows it publishes.
async fn doubling_node(
    bus: &Arc<dyn EventBus>,
) -> (
    Arc<onex_runtime::service::NodeService>,
    onex_runtime::bus::Subscription,
    tokio::sync::mpsc::UnboundedReceiver<onex_runtime::bus::BusMessage>,
) {
    use conformance::{Doubling, WINDOW_IN, WINDOW_OUT};
    use onex_runtime::reducer::JsonReducer;
    use onex_runtime::{NodeKind, NodeSpec};

    let spec = NodeSpec {
        subscribe_topics: vec![WINDOW_IN.into()],
        publish_topics: vec![WINDOW_OUT.into()],
        heartbeat_interval_secs: 0,
        ..NodeSpec::new("node_doubling_reducer", NodeKind::Reducer, "1.0.0")
    };
    let handler = Arc::new(JsonReducer::<Doubling, Doubling>::new(Doubling));
    let service = conformance::node_service(spec, handler, Vec::<(String, String)>::new());
    let (sub, out) = conformance::collect(bus, WINDOW_OUT, "watch").await;
    service.start(bus.clone(), false).await.unwrap();
    (service, sub, out)
}

/// Sends [`conformance::Doubling`]'s node an input of aggregate `key`.
async fn send_pad(bus: &Arc<dyn EventBus>, key: &str, pad: &str) {
    let input = onex_runtime::Envelope::new(
        "thing",
        serde_json::json!({ "pad": pad }),
        onex_runtime::EventSource::default(),
    );
    bus.publish_envelope(conformance::WINDOW_IN, &input, Some(key))
        .await
        .unwrap();
}

/// A closed aggregation window whose publish fails for a while (the
/// broker away) stays open and is published on a later tick, once; the
/// window published before it on the same tick is recorded closed and is
/// not published again.
#[tokio::test]
async fn a_window_that_fails_to_publish_is_published_later_once() {
    use std::sync::atomic::Ordering;

    let mem = one_attempt_bus();
    mem.inject_transient_failures_for(conformance::WINDOW_OUT, b"b", 3);
    let bus: Arc<dyn EventBus> = Arc::new(mem);
    let (service, sub, mut out) = doubling_node(&bus).await;
    for key in ["a", "b"] {
        send_pad(&bus, key, key).await;
    }
    let got = conformance::recv_n(&mut out, 2, Duration::from_secs(5)).await;
    let mut keys: Vec<Option<Vec<u8>>> = got.into_iter().map(|m| m.key).collect();
    keys.sort();
    assert_eq!(keys, [Some(b"a".to_vec()), Some(b"b".to_vec())]);
    conformance::expect_silence(&mut out, Duration::from_millis(500)).await;
    let failed = bus.metrics().publish_failed.load(Ordering::Relaxed);
    assert_eq!(failed, 3, "the window of b failed three times first");
    service.shutdown().await;
    sub.unsubscribe().await;
}

/// A window whose publish may have gone out (the broker's answer lost) is
/// published again with the same content: an input that comes after its
/// end goes to the next window. A consumer keeping one copy per event id
/// (what the derived ids are for) then counts every input once.
#[tokio::test]
async fn a_window_whose_publish_may_be_out_is_published_again_the_same() {
    use std::collections::BTreeMap;

    let mem = every_try_bus(None);
    mem.inject_unanswered_publishes_for(conformance::WINDOW_OUT, b"a", u32::MAX);
    let bus: Arc<dyn EventBus> = Arc::new(mem.clone());
    let (service, sub, mut out) = doubling_node(&bus).await;

    send_pad(&bus, "a", "first").await;
    // The window ended, and a copy is out though the node was told it failed.
    let mut copies = conformance::recv_n(&mut out, 1, Duration::from_secs(5)).await;
    send_pad(&bus, "a", "second").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    mem.inject_unanswered_publishes_for(conformance::WINDOW_OUT, b"a", 0);
    tokio::time::sleep(Duration::from_millis(800)).await;
    while let Ok(m) = out.try_recv() {
        copies.push(m);
    }

    let mut windows: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for m in &copies {
        let env: serde_json::Value = serde_json::from_slice(&m.value).unwrap();
        let id = env["event_id"].as_str().unwrap().to_string();
        windows.entry(id).or_default().push(env["payload"].clone());
    }
    for (id, payloads) in &windows {
        assert!(
            payloads.iter().all(|p| p == &payloads[0]),
            "the copies of {id} differ: {payloads:#?}"
        );
    }
    let first_copies: Vec<&serde_json::Value> = windows.values().map(|p| &p[0]).collect();
    let inputs: u64 = first_copies
        .iter()
        .map(|p| p["window"]["inputs"].as_u64().unwrap())
        .sum();
    assert_eq!(
        inputs, 2,
        "one copy per id counts every input once: {first_copies:#?}"
    );
    assert!(
        copies.len() > windows.len(),
        "no window was published twice: nothing tested"
    );
    service.shutdown().await;
    sub.unsubscribe().await;
}

/// An input whose snapshot record would be larger than the bus takes only
/// because an ended window waits in it (its publish failing) waits for the
/// window to be published; it is not dead-lettered as `state_too_large`.
#[tokio::test]
async fn an_input_waits_for_the_windows_that_make_its_state_too_large() {
    use conformance::{WINDOW_IN, WINDOW_OUT};

    // The state holds its pad twice: an open window's record is about 6,500
    // bytes (the state and the one before the window), one with an ended
    // window waiting in it about 9,700.
    let mem = every_try_bus(Some(8000));
    mem.inject_transient_failures_for(WINDOW_OUT, b"a", u32::MAX);
    let bus: Arc<dyn EventBus> = Arc::new(mem.clone());
    let (dsub, mut dead) = conformance::collect(&bus, &format!("{WINDOW_IN}.dlq"), "dead").await;
    let (service, sub, mut out) = doubling_node(&bus).await;

    send_pad(&bus, "a", &"1".repeat(1500)).await;
    // The first window ends and fails to publish; the second input opens
    // the next one while the first waits in the record.
    tokio::time::sleep(Duration::from_millis(700)).await;
    send_pad(&bus, "a", &"2".repeat(1500)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    mem.inject_transient_failures_for(WINDOW_OUT, b"a", 0);

    let windows = conformance::recv_n(&mut out, 2, Duration::from_secs(5)).await;
    let payloads: Vec<serde_json::Value> = windows
        .iter()
        .map(|m| serde_json::from_slice::<serde_json::Value>(&m.value).unwrap()["payload"].clone())
        .collect();
    let digits: Vec<(u64, String)> = payloads
        .iter()
        .map(|p| {
            let inputs = p["window"]["inputs"].as_u64().unwrap();
            let pad = p["state"]["pad"].as_str().unwrap();
            (inputs, pad[..1].to_string())
        })
        .collect();
    assert_eq!(
        digits,
        [(1, "1".to_string()), (1, "2".to_string())],
        "each input in its own window, in order"
    );
    conformance::expect_silence(&mut dead, Duration::from_millis(300)).await;
    conformance::expect_silence(&mut out, Duration::from_millis(300)).await;
    service.shutdown().await;
    sub.unsubscribe().await;
    dsub.unsubscribe().await;
}

/// An effect that counts its calls and answers each input with its `n`,
/// under the record key `k`; an input whose `n` is 0 fails for good.
#[derive(Default)]
struct Calls {
    out_topic: &'static str,
    /// Where the handler publishes a note itself first (under the key `k`),
    /// unless empty.
    notes_topic: &'static str,
    calls: std::sync::atomic::AtomicU32,
}

#[async_trait]
impl NodeHandler for Calls {
    async fn handle(&self, ctx: &HandlerContext, event: &InboundEvent) -> Handled {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let n = &event.envelope.payload["n"];
        if n == 0 {
            return Err(HandlerError::Fatal("no call for 0".into()));
        }
        if !self.notes_topic.is_empty() {
            let note = onex_runtime::OutboundEvent::new(
                self.notes_topic,
                "noted",
                serde_json::json!({ "n": n }),
            );
            ctx.publish(note.with_partition_key("k")).await?;
        }
        Ok(vec![onex_runtime::OutboundEvent::new(
            self.out_topic,
            "called",
            serde_json::json!({ "n": n }),
        )
        .with_partition_key("k")])
    }
}

/// An input of [`Calls`].
fn call(n: i64) -> onex_runtime::Envelope {
    let payload = serde_json::json!({ "n": n });
    onex_runtime::Envelope::new("call", payload, onex_runtime::EventSource::default())
}

/// The spec of an effect node of [`Calls`] consuming `input`.
fn calls_spec(input: &str, output: &str) -> onex_runtime::NodeSpec {
    use onex_runtime::{NodeKind, NodeSpec};
    NodeSpec {
        subscribe_topics: vec![input.into()],
        publish_topics: vec![output.into()],
        heartbeat_interval_secs: 0,
        ..NodeSpec::new("node_later_effect", NodeKind::Effect, "1.0.0")
    }
}

/// Starts a node of `spec` and `handler` on `bus` and sends it `inputs`
/// (key `k`) on its first topic.
async fn calls_node(
    bus: &Arc<dyn EventBus>,
    spec: onex_runtime::NodeSpec,
    handler: Arc<Calls>,
    inputs: &[onex_runtime::Envelope],
) -> Arc<onex_runtime::service::NodeService> {
    let input = spec.subscribe_topics[0].clone();
    let service = conformance::node_service(spec, handler, Vec::<(String, String)>::new());
    service.start(bus.clone(), false).await.unwrap();
    for e in inputs {
        bus.publish_envelope(&input, e, Some("k")).await.unwrap();
    }
    service
}

/// A handler whose own publish meets a bus that cannot take it for now
/// (the broker away) is neither retried by the contract nor dead-lettered:
/// nothing it did is at fault. Its input is delivered again and handled
/// once the bus takes the publish. Before, the contract's one retry ran out
/// and the input was dead-lettered, unanswered.
#[tokio::test]
async fn a_handler_whose_publish_waits_for_the_bus_is_not_dead_lettered() {
    let (input, output) = ("onex.cmd.later.note.v1", "onex.evt.later.answered.v1");
    let notes = "onex.evt.later.noted.v1";
    let mem = one_attempt_bus();
    mem.inject_transient_failures_for(notes, b"k", 3);
    let bus: Arc<dyn EventBus> = Arc::new(mem);
    let (osub, mut out) = conformance::collect(&bus, output, "watch").await;
    let (nsub, mut noted) = conformance::collect(&bus, notes, "watch").await;
    let dlq = format!("{input}.dlq");
    let (dsub, mut dead) = conformance::collect(&bus, &dlq, "watch").await;
    let handler = Arc::new(Calls {
        out_topic: output,
        notes_topic: notes,
        ..Calls::default()
    });
    let mut spec = calls_spec(input, output);
    spec.publish_topics.push(notes.into());
    spec.retry = RetrySettings {
        max_retries: 1,
        initial_delay_ms: 10,
        ..RetrySettings::default()
    };
    let service = calls_node(&bus, spec, handler.clone(), &[call(7)]).await;
    let answers = conformance::recv_n(&mut out, 1, Duration::from_secs(5)).await;
    assert_eq!(answers.len(), 1);
    assert_eq!(
        conformance::recv_n(&mut noted, 1, Duration::from_secs(1))
            .await
            .len(),
        1
    );
    conformance::expect_silence(&mut dead, Duration::from_millis(300)).await;
    conformance::expect_silence(&mut out, Duration::from_millis(10)).await;
    let calls = handler.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        calls, 4,
        "three calls met the bus away, the fourth went through"
    );
    service.shutdown().await;
    for s in [osub, nsub, dsub] {
        s.unsubscribe().await;
    }
}

/// A failure the bus cannot announce for now (the broker away) holds its
/// input back instead of being dropped: the input is delivered again, the
/// failure announced and then dead-lettered, and the handler is not run
/// again. A requester waiting on the failure topic hears of it. Before, the
/// announcement was logged and lost, and the input dead-lettered.
#[tokio::test]
async fn a_failure_announced_while_the_bus_is_away_is_not_lost() {
    let (input, output) = ("onex.cmd.later.doomed.v1", "onex.evt.later.done.v1");
    let announced = "onex.evt.later.doomed-failed.v1";
    let dlq = format!("{input}.dlq");
    let mem = one_attempt_bus();
    mem.inject_transient_failures_on(announced, 2);
    let bus: Arc<dyn EventBus> = Arc::new(mem);
    let (asub, mut failures) = conformance::collect(&bus, announced, "watch").await;
    let (dsub, mut dead) = conformance::collect(&bus, &dlq, "watch").await;
    let handler = Arc::new(Calls {
        out_topic: output,
        ..Calls::default()
    });
    let spec = onex_runtime::NodeSpec {
        failure_topic: Some(announced.into()),
        ..calls_spec(input, output)
    };
    let service = calls_node(&bus, spec, handler.clone(), &[call(0)]).await;
    let told = conformance::recv_n(&mut failures, 1, Duration::from_secs(5)).await;
    assert_eq!(told.len(), 1, "the failure is announced");
    assert_eq!(
        conformance::recv_n(&mut dead, 1, Duration::from_secs(1))
            .await
            .len(),
        1
    );
    conformance::expect_silence(&mut failures, Duration::from_millis(300)).await;
    conformance::expect_silence(&mut dead, Duration::from_millis(10)).await;
    let calls = handler.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(calls, 1, "the handler ran once");
    service.shutdown().await;
    for s in [asub, dsub] {
        s.unsubscribe().await;
    }
}

/// An effect whose result the bus cannot take for now is not run again
/// when its input is delivered again: what it returned is kept and
/// published once the bus takes it. The handler (the call to the outside
/// system) runs once per input, each input is answered once, and nothing
/// is dead-lettered. Before, the handler ran again at each redelivery:
/// 5 calls for 2 inputs here.
#[tokio::test]
async fn an_effect_whose_result_waits_for_the_bus_is_not_run_again() {
    use std::sync::atomic::Ordering;

    let (input, output) = ("onex.cmd.later.call.v1", "onex.evt.later.called.v1");
    let mem = one_attempt_bus();
    mem.inject_transient_failures_for(output, b"k", 3);
    let bus: Arc<dyn EventBus> = Arc::new(mem);
    let (osub, mut out) = conformance::collect(&bus, output, "watch").await;
    let dlq = format!("{input}.dlq");
    let (dsub, mut dead) = conformance::collect(&bus, &dlq, "watch").await;
    let handler = Arc::new(Calls {
        out_topic: output,
        ..Calls::default()
    });
    let service = calls_node(
        &bus,
        calls_spec(input, output),
        handler.clone(),
        &[call(1), call(2)],
    )
    .await;
    let got = conformance::recv_n(&mut out, 2, Duration::from_secs(5)).await;
    let ns: Vec<_> = got
        .iter()
        .map(|m| {
            onex_runtime::Envelope::from_bytes(&m.value)
                .unwrap()
                .payload["n"]
                .clone()
        })
        .collect();
    assert_eq!(ns, [1, 2], "each input answered once, in order");
    conformance::expect_silence(&mut dead, Duration::from_millis(300)).await;
    conformance::expect_silence(&mut out, Duration::from_millis(10)).await;
    let failed = bus.metrics().publish_failed.load(Ordering::Relaxed);
    assert_eq!(failed, 3, "the result of input 1 failed three times first");
    assert_eq!(
        handler.calls.load(Ordering::SeqCst),
        2,
        "one call per input"
    );
    service.shutdown().await;
    for s in [osub, dsub] {
        s.unsubscribe().await;
    }
}

/// The same for an input that failed for good: while its dead letter
/// cannot be written, the input comes back, and the failure is what it
/// came to; the handler is not run again. The failure is announced on the
/// contract's failure topic at each delivery, under one event id.
#[tokio::test]
async fn an_effect_whose_dead_letter_waits_for_the_bus_is_not_run_again() {
    use std::sync::atomic::Ordering;

    let (input, output) = ("onex.cmd.later.fail.v1", "onex.evt.later.failed.v1");
    let dlq = format!("{input}.dlq");
    let mem = one_attempt_bus();
    mem.inject_transient_failures_for(&dlq, b"k", 3);
    let bus: Arc<dyn EventBus> = Arc::new(mem);
    let (dsub, mut dead) = conformance::collect(&bus, &dlq, "watch").await;
    let announced = "onex.evt.later.call-failed.v1";
    let (asub, mut failures) = conformance::collect(&bus, announced, "watch").await;
    let handler = Arc::new(Calls {
        out_topic: output,
        ..Calls::default()
    });
    let service = calls_node(
        &bus,
        onex_runtime::NodeSpec {
            failure_topic: Some(announced.into()),
            ..calls_spec(input, output)
        },
        handler.clone(),
        &[call(0)],
    )
    .await;
    let letters = conformance::recv_n(&mut dead, 1, Duration::from_secs(5)).await;
    assert_eq!(letters.len(), 1);
    conformance::expect_silence(&mut dead, Duration::from_millis(300)).await;
    let failed = bus.metrics().publish_failed.load(Ordering::Relaxed);
    assert_eq!(failed, 3, "the dead letter failed three times first");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1, "one call");
    let mut ids = std::collections::BTreeSet::new();
    while let Ok(m) = failures.try_recv() {
        ids.insert(
            onex_runtime::Envelope::from_bytes(&m.value)
                .unwrap()
                .event_id,
        );
    }
    assert_eq!(ids.len(), 1, "one failure, announced under one id: {ids:?}");
    service.shutdown().await;
    for s in [dsub, asub] {
        s.unsubscribe().await;
    }
}

/// The same for an input handled and answered whose entry in the ledger of
/// handled inputs cannot be written for now: delivered again, it is
/// recorded then, and neither run nor answered again.
#[tokio::test]
async fn an_effect_whose_ledger_entry_waits_for_the_bus_is_not_run_again() {
    use std::sync::atomic::Ordering;

    let (input, output) = ("onex.cmd.later.record.v1", "onex.evt.later.recorded.v1");
    let spec = onex_runtime::NodeSpec {
        idempotency: Some(onex_runtime::Idempotency::EventId),
        ..calls_spec(input, output)
    };
    let ledger = &onex_runtime::ledger::ledger_topic(&spec);
    let mem = one_attempt_bus();
    let once = call(1);
    mem.inject_transient_failures_for(ledger, once.event_id.to_string().as_bytes(), 3);
    let bus: Arc<dyn EventBus> = Arc::new(mem);
    let (osub, mut out) = conformance::collect(&bus, output, "watch").await;
    let (lsub, mut recorded) = conformance::collect(&bus, ledger, "watch").await;
    let handler = Arc::new(Calls {
        out_topic: output,
        ..Calls::default()
    });
    let service = calls_node(&bus, spec, handler.clone(), &[once]).await;
    assert_eq!(
        conformance::recv_n(&mut recorded, 1, Duration::from_secs(5))
            .await
            .len(),
        1
    );
    let answers = conformance::recv_n(&mut out, 1, Duration::from_secs(1)).await;
    assert_eq!(answers.len(), 1);
    conformance::expect_silence(&mut out, Duration::from_millis(300)).await;
    let failed = bus.metrics().publish_failed.load(Ordering::Relaxed);
    assert_eq!(failed, 3, "the ledger entry failed three times first");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1, "one call");
    service.shutdown().await;
    for s in [osub, lsub] {
        s.unsubscribe().await;
    }
}

/// A result the bus cannot take for now (the broker away for longer than
/// the bus's own retries; here only the output topic's records, as when
/// one broker of several is down) is not the input's fault: the input is
/// not dead-lettered but delivered again, and handled again from the state
/// before it once the bus takes the result. Every input is answered, in
/// order, and applied once.
#[tokio::test]
async fn an_input_whose_result_the_bus_cannot_take_for_now_is_handled_again() {
    use conformance::Tally;
    use onex_runtime::{Envelope, EventSource, NodeKind, NodeSpec};
    use std::sync::atomic::Ordering;

    let (input, output) = ("onex.cmd.later.in.v1", "onex.evt.later.out.v1");
    let mem = one_attempt_bus();
    mem.inject_transient_failures_for(output, b"tally", 3);
    let bus: Arc<dyn EventBus> = Arc::new(mem);
    let spec = NodeSpec {
        subscribe_topics: vec![input.into()],
        publish_topics: vec![output.into()],
        heartbeat_interval_secs: 0,
        ..NodeSpec::new("node_later_reducer", NodeKind::Reducer, "1.0.0")
    };
    let handler = Arc::new(Tally {
        out_topic: output.into(),
        store: Default::default(),
    });
    let service = conformance::node_service(spec, handler, Vec::<(String, String)>::new());
    let (osub, mut out) = conformance::collect(&bus, output, "watch").await;
    let dlq = format!("{input}.dlq");
    let (dsub, mut dead) = conformance::collect(&bus, &dlq, "watch").await;
    service.start(bus.clone(), false).await.unwrap();
    for n in [1, 2] {
        let e = Envelope::new(
            "thing",
            serde_json::json!({ "n": n }),
            EventSource::default(),
        );
        bus.publish_envelope(input, &e, Some("tally"))
            .await
            .unwrap();
    }
    let got = conformance::recv_n(&mut out, 2, Duration::from_secs(5)).await;
    let counts = conformance::tallies(&got);
    assert_eq!(
        counts,
        [(1, 1), (2, 2)],
        "each input answered and applied once"
    );
    conformance::expect_silence(&mut dead, Duration::from_millis(300)).await;
    conformance::expect_silence(&mut out, Duration::from_millis(10)).await;
    let failed = bus.metrics().publish_failed.load(Ordering::Relaxed);
    assert_eq!(failed, 3, "the result of input 1 failed three times first");
    service.shutdown().await;
    for s in [osub, dsub] {
        s.unsubscribe().await;
    }
}
