//! `onex-gen bus publish|consume|replay-dlq`: operate a node's topics by hand.
//!
//! - `publish TOPIC` sends a test envelope (with a chosen or fresh
//!   correlation id) and prints where it landed;
//! - `consume TOPIC` tails a topic, one JSON line per message with the
//!   decoded envelope (or the raw value when it is not one), the headers as
//!   a map (a repeated name has its last value) and as `header_list`, in
//!   wire order with repeats (a value that is not UTF-8 in base64, as in a
//!   dead letter);
//! - `replay-dlq DLQ_TOPIC` moves dead letters back to their original topic
//!   (filtered by error type, event type or correlation id; `--dry-run`
//!   only prints what it would do).
//!
//! Each command reads a topic from the start with a fresh consumer group
//! unless `--group` is given. A named group makes `replay-dlq` resumable: a
//! letter's offset is committed only once it has been replayed (or passed
//! over by the filters), so a run stopped by `--max`, by a failed publish or
//! by a crash leaves every letter it did not replay for the next run, and
//! the first failure stops the run so that letters are replayed in order.
//! `--dry-run` commits nothing and so takes no `--group`. A letter whose
//! original topic is the dead-letter topic itself is never replayed (it
//! would come straight back).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use onex_runtime::bus::kafka::KafkaBus;
use onex_runtime::bus::{handler_fn, BusMessage, EventBus, Membership, Nack};
use onex_runtime::config::{ConfigSource, KafkaSettings, OffsetReset};
use onex_runtime::dlq;
use onex_runtime::metrics::Metrics;
use onex_runtime::topic::TopicNamer;
use onex_runtime::uuid::Uuid;
use onex_runtime::{Envelope, EventSource};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// `onex-gen bus ...`
#[derive(Debug, Args)]
pub struct BusArgs {
    /// Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092).
    #[arg(long, global = true)]
    pub kafka_servers: Option<String>,
    /// Topic prefix applied to every topic (default: $KAFKA_TOPIC_PREFIX).
    #[arg(long, global = true)]
    pub topic_prefix: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: BusCommand,
}

/// The bus subcommands.
#[derive(Debug, Subcommand)]
pub enum BusCommand {
    /// Publish a test event.
    Publish {
        /// Topic (logical; the prefix is applied).
        topic: String,
        /// Event type.
        #[arg(long, default_value = "onex.test.event")]
        event_type: String,
        /// JSON payload.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Correlation id (default: a new one).
        #[arg(long)]
        correlation_id: Option<Uuid>,
        /// Partition key.
        #[arg(long)]
        key: Option<String>,
        /// How many events to send.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Create the topic first if it does not exist.
        #[arg(long)]
        create_topic: bool,
    },
    /// Print a topic's messages as JSON lines.
    Consume {
        /// Topic (logical; the prefix is applied).
        topic: String,
        /// Consumer group (default: a fresh one reading from the start).
        #[arg(long)]
        group: Option<String>,
        /// Stop after this many messages.
        #[arg(long)]
        max: Option<usize>,
        /// Stop after this many seconds without a message.
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
    },
    /// Move dead letters back to their original topic.
    ReplayDlq {
        /// Dead-letter topic (logical; the prefix is applied).
        dlq_topic: String,
        /// Only letters with this `dlq_error_type`.
        #[arg(long)]
        error_type: Option<String>,
        /// Only letters whose envelope has this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// Only letters with this correlation id.
        #[arg(long)]
        correlation_id: Option<Uuid>,
        /// Print what would be replayed; publish nothing.
        #[arg(long)]
        dry_run: bool,
        /// Consumer group (default: a fresh one scanning the whole topic); a
        /// named group resumes where its last run stopped.
        #[arg(long, conflicts_with = "dry_run")]
        group: Option<String>,
        /// Stop after replaying this many.
        #[arg(long)]
        max: Option<usize>,
        /// Stop after this many seconds without a message.
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
    },
}

/// Runs a bus command against Kafka; returns the process exit code.
pub fn run(args: BusArgs) -> anyhow::Result<i32> {
    let env = ConfigSource::from_env();
    let servers = args
        .kafka_servers
        .clone()
        .or_else(|| env.get("KAFKA_BOOTSTRAP_SERVERS"))
        .unwrap_or_else(|| "localhost:9092".into());
    let prefix = args
        .topic_prefix
        .clone()
        .or_else(|| env.get("KAFKA_TOPIC_PREFIX"))
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let mut settings = KafkaSettings::new(servers.clone());
        settings.auto_offset_reset = OffsetReset::Earliest;
        settings.timeout = Duration::from_secs(10);
        // Each letter's offset is committed as soon as it is replayed, so a
        // resumed replay after a crash repeats at most the letter in hand.
        settings.enable_auto_commit = false;
        let bus = KafkaBus::connect(settings, Arc::new(Metrics::new()), Duration::from_secs(10))
            .await
            .with_context(|| format!("connecting to Kafka at {servers}"))?;
        let bus: Arc<dyn EventBus> = Arc::new(bus);
        let mut out = std::io::stdout().lock();
        let code = run_on(&bus, &TopicNamer::new(prefix), args.command, &mut out).await;
        bus.close().await.context("closing the bus")?;
        code
    })
}

/// Runs a command on any bus, writing JSON lines to `out`.
pub async fn run_on(
    bus: &Arc<dyn EventBus>,
    namer: &TopicNamer,
    command: BusCommand,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    match command {
        BusCommand::Publish {
            topic,
            event_type,
            payload,
            correlation_id,
            key,
            count,
            create_topic,
        } => {
            let topic = namer.physical(&topic);
            let payload: Value =
                serde_json::from_str(&payload).context("--payload is not valid JSON")?;
            if create_topic {
                bus.ensure_topics(std::slice::from_ref(&topic)).await?;
            }
            let correlation_id = correlation_id.unwrap_or_else(Uuid::new_v4);
            let source = EventSource {
                node_id: "onex-gen-bus".into(),
                ..EventSource::new("onex-gen", format!("onex-gen-{}", std::process::id()))
            };
            for _ in 0..count {
                let env = Envelope::new(event_type.clone(), payload.clone(), source.clone())
                    .with_correlation_id(correlation_id);
                let r = bus.publish_envelope(&topic, &env, key.as_deref()).await?;
                let line = json!({
                    "topic": topic,
                    "partition": r.partition,
                    "offset": r.offset,
                    "event_id": env.event_id,
                    "correlation_id": correlation_id,
                });
                writeln!(out, "{line}")?;
            }
            Ok(0)
        }
        BusCommand::Consume {
            topic,
            group,
            max,
            idle_secs,
        } => {
            let topic = namer.physical(&topic);
            let group =
                group.unwrap_or_else(|| format!("onex-gen-tail-{}", Uuid::new_v4().simple()));
            let mut reader =
                Reader::open(bus, &topic, &group, Duration::from_secs(idle_secs)).await?;
            let mut seen = 0usize;
            let mut written = Ok(());
            while max.is_none_or(|n| seen < n) {
                let Some(delivery) = reader.next().await else {
                    break;
                };
                written = writeln!(out, "{}", describe(&delivery.message));
                if written.is_err() {
                    break;
                }
                delivery.done();
                seen += 1;
            }
            reader.close().await;
            written?;
            Ok(0)
        }
        BusCommand::ReplayDlq {
            dlq_topic,
            error_type,
            event_type,
            correlation_id,
            dry_run,
            group,
            max,
            idle_secs,
        } => {
            if dry_run && group.is_some() {
                anyhow::bail!("--dry-run commits nothing, so it cannot use --group");
            }
            let topic = namer.physical(&dlq_topic);
            let group =
                group.unwrap_or_else(|| format!("onex-gen-replay-{}", Uuid::new_v4().simple()));
            let filter = Filter {
                error_type,
                event_type,
                correlation_id,
            };
            let mut reader =
                Reader::open(bus, &topic, &group, Duration::from_secs(idle_secs)).await?;
            let (mut taken, mut replayed, mut failed) = (0usize, 0usize, 0usize);
            let mut written = Ok(());
            while failed == 0 && max.is_none_or(|n| taken < n) {
                let Some(delivery) = reader.next().await else {
                    break;
                };
                let m = &delivery.message;
                let letter = filter.matches(m).then(|| dlq::replay(m)).flatten();
                let Some(msg) = letter else {
                    delivery.done();
                    continue;
                };
                taken += 1;
                let mut line = json!({
                    "dlq_offset": m.offset,
                    "to": msg.topic,
                    "correlation_id": msg.headers.correlation_id,
                    "error_type": dlq::inspect(m).and_then(|i| i.error_type),
                    "dry_run": dry_run,
                });
                let published = if dry_run {
                    None
                } else if msg.topic == topic {
                    Some(Err(anyhow::anyhow!(
                        "the letter names its own dead-letter topic"
                    )))
                } else {
                    // The record's headers exactly as the dead letter lists
                    // them: in order, a repeated name as often as it came.
                    let sent = bus.send(msg.record()).await;
                    Some(sent.map_err(anyhow::Error::from))
                };
                match published {
                    Some(Ok(r)) => {
                        replayed += 1;
                        line["offset"] = json!(r.offset);
                        delivery.done();
                    }
                    Some(Err(e)) => {
                        failed += 1;
                        line["error"] = json!(e.to_string());
                    }
                    None => delivery.done(),
                }
                written = writeln!(out, "{line}");
                if written.is_err() {
                    break;
                }
            }
            reader.close().await;
            written?;
            writeln!(
                out,
                "{}",
                json!({"replayed": replayed, "failed": failed, "dry_run": dry_run})
            )?;
            Ok(if failed > 0 { 1 } else { 0 })
        }
    }
}

/// One message read, committed only when [`Delivery::done`] says it was
/// dealt with; dropped, it stays for the group's next reader.
struct Delivery {
    message: BusMessage,
    dealt_with: oneshot::Sender<()>,
}

impl Delivery {
    fn done(self) {
        let _ = self.dealt_with.send(());
    }
}

/// Reads a topic as a consumer group, one message at a time: the group's
/// offset moves past a message only once the caller is done with it.
struct Reader {
    deliveries: mpsc::Receiver<Delivery>,
    subscription: onex_runtime::bus::Subscription,
    idle: Duration,
}

impl Reader {
    async fn open(
        bus: &Arc<dyn EventBus>,
        topic: &str,
        group: &str,
        idle: Duration,
    ) -> anyhow::Result<Self> {
        let (tx, deliveries) = mpsc::channel(1);
        // Hands each message over and waits until the reader is done with it.
        let hand_over = handler_fn(move |message| {
            let tx = tx.clone();
            async move {
                let (dealt_with, done) = oneshot::channel();
                let delivery = Delivery {
                    message,
                    dealt_with,
                };
                let not_done = || Nack::new("left for the group's next reader");
                tx.send(delivery).await.map_err(|_| not_done())?;
                done.await.map_err(|_| not_done())
            }
        });
        let subscription = bus
            .subscribe(Membership { topic, group }, hand_over)
            .await?;
        Ok(Reader {
            deliveries,
            subscription,
            idle,
        })
    }

    /// The next message, or `None` once `idle` passes without one.
    async fn next(&mut self) -> Option<Delivery> {
        tokio::time::timeout(self.idle, self.deliveries.recv())
            .await
            .ok()
            .flatten()
    }

    /// Stops reading; what was done is committed, nothing else.
    async fn close(self) {
        // Dropping the channel first refuses every delivery in flight, so
        // the subscription has nothing left to wait for.
        drop(self.deliveries);
        self.subscription.unsubscribe().await;
    }
}

/// One consumed message as a JSON line.
fn describe(m: &BusMessage) -> Value {
    let headers: serde_json::Map<String, Value> = m
        .headers
        .to_pairs()
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let body = match Envelope::from_bytes(&m.value) {
        Ok(env) => json!({"envelope": env}),
        Err(_) => json!({"raw": String::from_utf8_lossy(&m.value)}),
    };
    let mut line = json!({
        "topic": m.topic,
        "partition": m.partition,
        "offset": m.offset,
        "key": m.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": headers,
        // As on the wire: in order, a repeated name as often as it came.
        "header_list": m
            .wire_headers()
            .iter()
            .map(|(name, value)| dlq::HeaderEntry::new(name, value))
            .collect::<Vec<_>>(),
    });
    if let (Some(l), Value::Object(b)) = (line.as_object_mut(), body) {
        l.extend(b);
    }
    line
}

/// Which dead letters to replay.
struct Filter {
    error_type: Option<String>,
    event_type: Option<String>,
    correlation_id: Option<Uuid>,
}

impl Filter {
    fn matches(&self, m: &BusMessage) -> bool {
        let Some(info) = dlq::inspect(m) else {
            return false;
        };
        let error_ok = self
            .error_type
            .as_ref()
            .is_none_or(|want| info.error_type.as_ref() == Some(want));
        let event_ok = self
            .event_type
            .as_ref()
            .is_none_or(|want| info.event_type.as_ref() == Some(want));
        let corr_ok = self
            .correlation_id
            .is_none_or(|want| info.correlation_id == Some(want));
        error_ok && event_ok && corr_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onex_runtime::bus::memory::InMemoryBus;
    use onex_runtime::bus::BusMessage;
    use onex_runtime::bus::{OutgoingMessage, TopicPartition};
    use onex_runtime::dlq::{dead_letter, Failure};
    use onex_runtime::headers::{Headers, RawHeaders};

    fn bus() -> Arc<dyn EventBus> {
        Arc::new(InMemoryBus::default())
    }

    fn lines(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn publish_then_consume() {
        let bus = bus();
        let namer = TopicNamer::new("dev.");
        let cid = Uuid::new_v4();
        let mut out = Vec::new();
        let code = run_on(
            &bus,
            &namer,
            BusCommand::Publish {
                topic: "onex.evt.t.x.v1".into(),
                event_type: "x.happened".into(),
                payload: "{\"a\":1}".into(),
                correlation_id: Some(cid),
                key: Some("k".into()),
                count: 2,
                create_topic: true,
            },
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(code, 0);
        let published = lines(&out);
        assert_eq!(published.len(), 2);
        assert_eq!(published[0]["topic"], "dev.onex.evt.t.x.v1");
        assert_eq!(published[1]["correlation_id"], cid.to_string());

        let mut out = Vec::new();
        run_on(
            &bus,
            &namer,
            consume("onex.evt.t.x.v1", Some(2), 5),
            &mut out,
        )
        .await
        .unwrap();
        let consumed = lines(&out);
        assert_eq!(consumed.len(), 2);
        assert_eq!(consumed[0]["envelope"]["payload"]["a"], 1);
        assert_eq!(consumed[0]["envelope"]["correlation_id"], cid.to_string());
        assert_eq!(consumed[0]["headers"]["correlation_id"], cid.to_string());
        assert_eq!(consumed[0]["key"], "k");
    }

    /// The headers of the records [`letter_of`] dead-letters: the envelope's,
    /// then `x-hop` twice.
    fn hop_headers(env: &Envelope) -> RawHeaders {
        RawHeaders::from(&env.headers())
            .with("x-hop", "a")
            .with("x-hop", "b")
    }

    #[tokio::test]
    async fn consume_lists_repeated_headers_in_wire_order() {
        let bus = bus();
        let raw = RawHeaders::new()
            .with("x-hop", "first")
            .with("x-hop", "second")
            .with("x-blob", vec![0xff, 0x00]);
        let message = OutgoingMessage {
            topic: "onex.evt.t.hops.v1".into(),
            key: None,
            value: b"{}".to_vec(),
            headers: Headers::default(),
            raw_headers: None,
        }
        .with_raw_headers(raw);
        bus.send(message.record()).await.unwrap();
        let mut out = Vec::new();
        let consume = consume("onex.evt.t.hops.v1", Some(1), 5);
        run_on(&bus, &TopicNamer::default(), consume, &mut out)
            .await
            .unwrap();
        let line = &lines(&out)[0];
        assert_eq!(line["headers"]["x-hop"], "second");
        assert_eq!(
            line["header_list"],
            json!([
                {"name": "x-hop", "value": "first"},
                {"name": "x-hop", "value": "second"},
                {"name": "x-blob", "value": "/wA=", "encoding": "base64"},
            ])
        );
    }

    async fn letter(bus: &Arc<dyn EventBus>, error_type: &str, cid: Uuid) {
        let (topic, dlq_topic) = ("onex.evt.t.in.v1", "onex.evt.t.in.v1.dlq");
        letter_of(bus, topic, dlq_topic, error_type, cid).await;
    }

    #[tokio::test]
    async fn replay_dlq_with_filter_and_dry_run() {
        let bus = bus();
        let namer = TopicNamer::default();
        let keep = Uuid::new_v4();
        letter(&bus, "fatal", keep).await;
        letter(&bus, "invalid_input", Uuid::new_v4()).await;
        let replay = |dry_run| BusCommand::ReplayDlq {
            dlq_topic: "onex.evt.t.in.v1.dlq".into(),
            error_type: Some("fatal".into()),
            event_type: Some("thing".into()),
            correlation_id: None,
            dry_run,
            group: None,
            max: None,
            idle_secs: 1,
        };

        let mut out = Vec::new();
        assert_eq!(
            run_on(&bus, &namer, replay(true), &mut out).await.unwrap(),
            0
        );
        let l = lines(&out);
        assert_eq!(l.len(), 2, "{l:?}");
        assert_eq!(l[0]["to"], "onex.evt.t.in.v1");
        assert_eq!(l[1]["replayed"], 0);
        let mut out = Vec::new();
        run_on(&bus, &namer, consume("onex.evt.t.in.v1", None, 1), &mut out)
            .await
            .unwrap();
        assert!(out.is_empty(), "dry run published nothing");

        let mut out = Vec::new();
        assert_eq!(
            run_on(&bus, &namer, replay(false), &mut out).await.unwrap(),
            0
        );
        assert_eq!(lines(&out).last().unwrap()["replayed"], 1);
        let mut out = Vec::new();
        run_on(&bus, &namer, consume("onex.evt.t.in.v1", None, 1), &mut out)
            .await
            .unwrap();
        let back = lines(&out);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0]["envelope"]["correlation_id"], keep.to_string());
        assert!(back[0]["headers"].get("dlq_error_type").is_none());
        // Every header as the record had it, in order, `x-hop` twice.
        let replayed = bus
            .read_partition(TopicPartition::new("onex.evt.t.in.v1", 0))
            .await
            .unwrap();
        let env = Envelope::from_bytes(&replayed[0].value).unwrap();
        assert_eq!(replayed[0].raw_headers, hop_headers(&env));
    }

    /// A `fatal` dead letter of `original_topic` on `onex.evt.t.in.v1.dlq`.
    async fn fatal_letter(bus: &Arc<dyn EventBus>, original_topic: &str, cid: Uuid) {
        letter_of(bus, original_topic, "onex.evt.t.in.v1.dlq", "fatal", cid).await;
    }

    /// A dead letter of `original_topic` for a message with correlation id
    /// `cid` that failed as `error_type`, on `dlq_topic`.
    async fn letter_of(
        bus: &Arc<dyn EventBus>,
        original_topic: &str,
        dlq_topic: &str,
        error_type: &str,
        cid: Uuid,
    ) {
        let env =
            Envelope::new("thing", json!({}), EventSource::default()).with_correlation_id(cid);
        let raw_headers = hop_headers(&env);
        let original = BusMessage {
            topic: original_topic.into(),
            partition: 0,
            offset: 7,
            key: None,
            value: env.to_bytes(),
            headers: raw_headers.decode().0,
            raw_headers,
        };
        let failure = Failure {
            error_type: error_type.into(),
            reason: "r".into(),
            retry_count: 1,
            failed_at: onex_runtime::chrono::Utc::now(),
            correlation_id: Some(cid),
        };
        let dl = dead_letter(&original, dlq_topic, "g", "n", &failure);
        bus.publish(&dl.topic, None, &dl.value, &dl.headers)
            .await
            .unwrap();
    }

    fn replay_as(group: &str, max: Option<usize>) -> BusCommand {
        BusCommand::ReplayDlq {
            dlq_topic: "onex.evt.t.in.v1.dlq".into(),
            error_type: None,
            event_type: None,
            correlation_id: None,
            dry_run: false,
            group: Some(group.into()),
            max,
            idle_secs: 1,
        }
    }

    /// `bus consume TOPIC` without a group: at most `max` records, until
    /// none has come for `idle_secs`.
    fn consume(topic: &str, max: Option<usize>, idle_secs: u64) -> BusCommand {
        BusCommand::Consume {
            topic: topic.into(),
            group: None,
            max,
            idle_secs,
        }
    }

    /// Runs `command`; its exit code and the JSON lines it printed.
    async fn outcome(bus: &Arc<dyn EventBus>, command: BusCommand) -> (i32, Vec<Value>) {
        let mut out = Vec::new();
        let code = run_on(bus, &TopicNamer::default(), command, &mut out)
            .await
            .unwrap();
        (code, lines(&out))
    }

    #[tokio::test]
    async fn a_resumable_replay_never_passes_over_a_letter_it_did_not_replay() {
        let bus = bus();
        let cids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for cid in &cids {
            fatal_letter(&bus, "onex.evt.t.in.v1", *cid).await;
        }
        let (_, first) = outcome(&bus, replay_as("ops", Some(2))).await;
        assert_eq!(first.last().unwrap()["replayed"], 2, "{first:?}");
        let (_, rest) = outcome(&bus, replay_as("ops", None)).await;
        assert_eq!(rest.last().unwrap()["replayed"], 3, "{rest:?}");
        let (_, none) = outcome(&bus, replay_as("ops", None)).await;
        assert_eq!(none.last().unwrap()["replayed"], 0, "{none:?}");
        let replayed: Vec<String> = first[..2]
            .iter()
            .chain(&rest[..3])
            .map(|l| l["correlation_id"].as_str().unwrap().to_string())
            .collect();
        let expected: Vec<String> = cids.iter().map(Uuid::to_string).collect();
        assert_eq!(replayed, expected);
    }

    #[tokio::test]
    async fn a_letter_that_could_not_be_replayed_stays_for_the_next_run() {
        let bus = bus();
        // The original topic is not a valid topic name: the publish fails.
        fatal_letter(&bus, "bad topic", Uuid::new_v4()).await;
        fatal_letter(&bus, "onex.evt.t.in.v1", Uuid::new_v4()).await;
        for _ in 0..2 {
            let (code, l) = outcome(&bus, replay_as("ops", None)).await;
            assert_eq!(code, 1, "{l:?}");
            let summary = l.last().unwrap();
            assert_eq!(
                (&summary["replayed"], &summary["failed"]),
                (&json!(0), &json!(1)),
                "{l:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_letter_naming_its_own_dead_letter_topic_is_not_replayed() {
        let bus = bus();
        fatal_letter(&bus, "onex.evt.t.in.v1.dlq", Uuid::new_v4()).await;
        let (code, l) = tokio::time::timeout(
            Duration::from_secs(20),
            outcome(&bus, replay_as("ops", None)),
        )
        .await
        .expect("the replay ends");
        assert_eq!(code, 1, "{l:?}");
        assert_eq!(l.last().unwrap()["failed"], 1, "{l:?}");
    }

    #[tokio::test]
    async fn a_dry_run_never_moves_a_named_group() {
        let bus = bus();
        fatal_letter(&bus, "onex.evt.t.in.v1", Uuid::new_v4()).await;
        let mut dry = replay_as("ops", None);
        if let BusCommand::ReplayDlq { dry_run, .. } = &mut dry {
            *dry_run = true;
        }
        let mut out = Vec::new();
        let refused = run_on(&bus, &TopicNamer::default(), dry, &mut out).await;
        assert!(refused.is_err(), "{:?}", lines(&out));
        let (_, l) = outcome(&bus, replay_as("ops", None)).await;
        assert_eq!(l.last().unwrap()["replayed"], 1, "{l:?}");
    }

    /// A dead letter as an ONEX Python service writes it (the document
    /// only: no exact bytes, no original headers) is replayed too.
    #[tokio::test]
    async fn replay_dlq_reads_the_python_services_dead_letters() {
        let bus = bus();
        let namer = TopicNamer::default();
        let cid = Uuid::new_v4();
        let original = Envelope::new("thing", json!({"n": 1}), EventSource::default())
            .with_correlation_id(cid);
        let doc = json!({
            "original_topic": "onex.evt.t.in.v1",
            "original_message": {
                "key": "k-1",
                "value": String::from_utf8(original.to_bytes()).unwrap(),
                "offset": 12,
                "partition": 0
            },
            "failure_reason": "ValueError: bad",
            "failure_timestamp": "2025-10-18T10:00:00.123456+00:00",
            "correlation_id": cid.to_string(),
            "retry_count": 3,
            "error_type": "ValueError"
        });
        bus.publish(
            "onex.evt.t.in.v1.dlq",
            Some(b"k-1"),
            doc.to_string().as_bytes(),
            &Headers::default(),
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        let replay = BusCommand::ReplayDlq {
            dlq_topic: "onex.evt.t.in.v1.dlq".into(),
            error_type: Some("ValueError".into()),
            event_type: Some("thing".into()),
            correlation_id: Some(cid),
            dry_run: false,
            group: None,
            max: None,
            idle_secs: 1,
        };
        run_on(&bus, &namer, replay, &mut out).await.unwrap();
        assert_eq!(
            lines(&out).last().unwrap()["replayed"],
            1,
            "{:?}",
            lines(&out)
        );
        let mut out = Vec::new();
        let consume = consume("onex.evt.t.in.v1", None, 1);
        run_on(&bus, &namer, consume, &mut out).await.unwrap();
        let back = lines(&out);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0]["key"], "k-1");
        assert_eq!(
            back[0]["envelope"]["event_id"],
            original.event_id.to_string()
        );
        assert_eq!(back[0]["headers"]["correlation_id"], cid.to_string());
    }
}
