//! `onex-gen bus publish|consume|replay-dlq`: operate a node's topics by hand.
//!
//! - `publish TOPIC` sends a test envelope (with a chosen or fresh
//!   correlation id) and prints where it landed;
//! - `consume TOPIC` tails a topic, one JSON line per message with the
//!   decoded envelope (or the raw value when it is not one);
//! - `replay-dlq DLQ_TOPIC` moves dead letters back to their original topic
//!   (filtered by error type, event type or correlation id; `--dry-run`
//!   only prints what it would do).
//!
//! Each command reads a topic from the start with a fresh consumer group
//! unless `--group` is given (a named group makes `replay-dlq` resumable).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use onex_runtime::bus::kafka::KafkaBus;
use onex_runtime::bus::{handler_fn, BusMessage, EventBus};
use onex_runtime::config::{ConfigSource, KafkaSettings, OffsetReset};
use onex_runtime::dlq;
use onex_runtime::metrics::Metrics;
use onex_runtime::topic::TopicNamer;
use onex_runtime::uuid::Uuid;
use onex_runtime::{Envelope, EventSource};
use serde_json::{json, Value};
use tokio::sync::mpsc;

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
        /// Consumer group (default: a fresh one scanning the whole topic).
        #[arg(long)]
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
            let mut seen = 0usize;
            drain(bus, &topic, &group, Duration::from_secs(idle_secs), |m| {
                writeln!(out, "{}", describe(&m))?;
                seen += 1;
                Ok(max.is_some_and(|n| seen >= n))
            })
            .await?;
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
            let topic = namer.physical(&dlq_topic);
            let group =
                group.unwrap_or_else(|| format!("onex-gen-replay-{}", Uuid::new_v4().simple()));
            let filter = Filter {
                error_type,
                event_type,
                correlation_id,
            };
            let mut replayed = 0usize;
            let mut failed = 0usize;
            let mut pending = Vec::new();
            drain(bus, &topic, &group, Duration::from_secs(idle_secs), |m| {
                if filter.matches(&m) {
                    pending.push(m);
                }
                Ok(max.is_some_and(|n| pending.len() >= n))
            })
            .await?;
            for m in pending {
                let Some(msg) = dlq::replay(&m) else {
                    continue;
                };
                let mut line = json!({
                    "dlq_offset": m.offset,
                    "to": msg.topic,
                    "correlation_id": msg.headers.correlation_id,
                    "error_type": dlq::inspect(&m).and_then(|i| i.error_type),
                    "dry_run": dry_run,
                });
                if !dry_run {
                    match bus
                        .publish(&msg.topic, msg.key.as_deref(), &msg.value, &msg.headers)
                        .await
                    {
                        Ok(r) => {
                            replayed += 1;
                            line["offset"] = json!(r.offset);
                        }
                        Err(e) => {
                            failed += 1;
                            line["error"] = json!(e.to_string());
                        }
                    }
                }
                writeln!(out, "{line}")?;
            }
            writeln!(
                out,
                "{}",
                json!({"replayed": replayed, "failed": failed, "dry_run": dry_run})
            )?;
            Ok(if failed > 0 { 1 } else { 0 })
        }
    }
}

/// Reads `topic` as `group` until `idle` passes without a message or `each`
/// returns `true`.
async fn drain(
    bus: &Arc<dyn EventBus>,
    topic: &str,
    group: &str,
    idle: Duration,
    mut each: impl FnMut(BusMessage) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sub = bus
        .subscribe(
            topic,
            group,
            handler_fn(move |m| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(m);
                    Ok(())
                }
            }),
        )
        .await?;
    let mut result = Ok(());
    while let Ok(Some(m)) = tokio::time::timeout(idle, rx.recv()).await {
        match each(m) {
            Ok(false) => {}
            Ok(true) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    sub.unsubscribe().await;
    result
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
    use onex_runtime::dlq::{dead_letter, Failure};
    use onex_runtime::headers::Headers;

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
            BusCommand::Consume {
                topic: "onex.evt.t.x.v1".into(),
                group: None,
                max: Some(2),
                idle_secs: 5,
            },
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

    async fn letter(bus: &Arc<dyn EventBus>, error_type: &str, cid: Uuid) {
        let env =
            Envelope::new("thing", json!({}), EventSource::default()).with_correlation_id(cid);
        let original = BusMessage {
            topic: "onex.evt.t.in.v1".into(),
            partition: 0,
            offset: 7,
            key: None,
            value: env.to_bytes(),
            headers: env.headers(),
        };
        let failure = Failure {
            error_type: error_type.into(),
            reason: "r".into(),
            retry_count: 1,
            failed_at: onex_runtime::chrono::Utc::now(),
            correlation_id: Some(cid),
        };
        let dl = dead_letter(&original, "onex.evt.t.in.v1.dlq", "g", "n", &failure);
        bus.publish(&dl.topic, None, &dl.value, &dl.headers)
            .await
            .unwrap();
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
        run_on(
            &bus,
            &namer,
            BusCommand::Consume {
                topic: "onex.evt.t.in.v1".into(),
                group: None,
                max: None,
                idle_secs: 1,
            },
            &mut out,
        )
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
        run_on(
            &bus,
            &namer,
            BusCommand::Consume {
                topic: "onex.evt.t.in.v1".into(),
                group: None,
                max: None,
                idle_secs: 1,
            },
            &mut out,
        )
        .await
        .unwrap();
        let back = lines(&out);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0]["envelope"]["correlation_id"], keep.to_string());
        assert!(back[0]["headers"].get("dlq_error_type").is_none());
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
        let consume = BusCommand::Consume {
            topic: "onex.evt.t.in.v1".into(),
            group: None,
            max: None,
            idle_secs: 1,
        };
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
