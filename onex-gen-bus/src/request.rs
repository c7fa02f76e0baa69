//! `onex-gen request CONTRACT`: publishes a generation request and waits for
//! the service's answer over the bus (request/response with a timeout).
//!
//! The answer is matched by correlation id on the completed and failed
//! topics, which a [`Requester`] follows with a consumer group of its own
//! (every requester sees every answer; it keeps only its own). One requester
//! can have many requests in flight.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use onex_runtime::bus::kafka::KafkaBus;
use onex_runtime::bus::{BusError, EventBus};
use onex_runtime::config::{ConfigSource, RuntimeConfig};
use onex_runtime::request::RequestClient;
pub use onex_runtime::request::RequestError;
use onex_runtime::uuid::Uuid;
use onex_runtime::{Envelope, EventSource};
use serde_json::Value;

use crate::serve::{
    GenerationRequest, RequestOptions, RuntimeOption, ServeTopics, REQUEST_EVENT_TYPE,
};

/// The service's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Completed (else failed).
    pub completed: bool,
    /// The answer's envelope (correlation id = the request's, causation id =
    /// the request's event id).
    pub envelope: Envelope,
    /// The request's envelope as sent.
    pub request: Envelope,
}

/// Sends generation requests and awaits their answers: onex-runtime's
/// request/response client following the completed and failed topics.
pub struct Requester {
    client: RequestClient,
    topics: ServeTopics,
}

impl Requester {
    /// Follows the answer topics as `group` (make it unique to this process).
    pub async fn new(
        bus: Arc<dyn EventBus>,
        topics: &ServeTopics,
        group: &str,
    ) -> Result<Self, BusError> {
        let source = EventSource::new("onex-gen-request", Uuid::new_v4().to_string());
        let answers = [topics.completed.as_str(), topics.failed.as_str()];
        let client = RequestClient::following(bus, &answers, group, source).await?;
        Ok(Requester {
            client,
            topics: topics.clone(),
        })
    }

    /// Publishes `req` and waits up to `timeout` for its answer.
    pub async fn request(
        &self,
        req: &GenerationRequest,
        timeout: Duration,
    ) -> Result<Response, RequestError> {
        let source = self.client.source().clone();
        let env = Envelope::new(REQUEST_EVENT_TYPE, req.to_payload(), source);
        self.request_envelope(env, timeout).await
    }

    /// Publishes a prepared request envelope and waits for its answer.
    pub async fn request_envelope(
        &self,
        env: Envelope,
        timeout: Duration,
    ) -> Result<Response, RequestError> {
        let reply = self
            .client
            .send(&self.topics.request, env.clone(), timeout)
            .await?;
        Ok(Response {
            completed: reply.topic == self.topics.completed,
            envelope: reply.envelope,
            request: env,
        })
    }

    /// Stops following the answer topics.
    pub async fn close(self) {
        self.client.close().await;
    }
}

/// A response as text: a summary line, then the diagnostics or files.
pub fn render_text(resp: &Response) -> String {
    let p = &resp.envelope.payload;
    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut out = String::new();
    if resp.completed {
        let files = p.get("files").and_then(Value::as_array).map_or(0, Vec::len);
        out.push_str(&format!(
            "completed: {} -> <output root>/{} ({files} files, manifest sha256 {}, {} ms)\n",
            s("node_name"),
            s("crate_dir"),
            s("manifest_sha256"),
            p.get("duration_ms").and_then(Value::as_u64).unwrap_or(0)
        ));
    } else {
        out.push_str(&format!("failed [{}]: {}\n", s("error_type"), s("message")));
    }
    let key = if resp.completed {
        "warnings"
    } else {
        "diagnostics"
    };
    let listed = p.get(key).and_then(Value::as_array);
    for d in listed.into_iter().flatten() {
        let f = |k: &str| {
            d.get(k)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .unwrap_or_default()
        };
        let pointer = f("pointer");
        out.push_str(&format!(
            "  {}:{}:{}: {}[{}] at {}: {}",
            f("file"),
            f("line"),
            f("col"),
            f("severity"),
            f("code"),
            if pointer.is_empty() { "/" } else { &pointer },
            f("message")
        ));
        if let Some(e) = d.get("expected").and_then(Value::as_str) {
            out.push_str(&format!(" (expected {e})"));
        }
        out.push('\n');
    }
    let total = p.get(format!("{key}_total")).and_then(Value::as_u64);
    let shown = listed.map_or(0, Vec::len) as u64;
    if let Some(more) = total.and_then(|t| t.checked_sub(shown)).filter(|m| *m > 0) {
        out.push_str(&format!("  ... and {more} more {key}\n"));
    }
    out
}

/// `onex-gen request` flags.
#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    /// The contract file (YAML) to send.
    pub contract: PathBuf,
    /// Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS, else localhost:9092).
    #[arg(long)]
    pub kafka_servers: Option<String>,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Ask for a path dependency on the service's runtime instead of a vendored copy.
    #[arg(long)]
    pub runtime_path: bool,
    #[command(flatten)]
    pub topics: ServeTopics,
    /// Print the answer's envelope as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `onex-gen request`: exit 0 completed, 1 failed, 2 no answer or error.
pub fn run_cli(args: RequestArgs) -> anyhow::Result<u8> {
    use anyhow::Context as _;
    let contract = std::fs::read_to_string(&args.contract)
        .with_context(|| format!("reading {}", args.contract.display()))?;
    let req = GenerationRequest {
        contract,
        options: RequestOptions {
            runtime: if args.runtime_path {
                RuntimeOption::Path
            } else {
                RuntimeOption::Vendored
            },
        },
    };
    let mut source = ConfigSource::from_env();
    if let Some(s) = &args.kafka_servers {
        source.set("KAFKA_BOOTSTRAP_SERVERS", s.clone());
    }
    let config = RuntimeConfig::from_source(&source)?;
    let topics = args.topics.clone();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let bus = KafkaBus::connect(
            config.kafka.clone(),
            Arc::new(onex_runtime::metrics::Metrics::new()),
            config.connect_timeout,
        )
        .await
        .context("connecting to Kafka")?;
        let bus: Arc<dyn EventBus> = Arc::new(bus);
        let group = format!("onex-gen.request.{}", Uuid::new_v4());
        let requester = Requester::new(bus.clone(), &topics, &group).await?;
        let result = requester
            .request(&req, Duration::from_secs(args.timeout))
            .await;
        requester.close().await;
        let _ = bus.close().await;
        match result {
            Ok(resp) => {
                if args.json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&resp.envelope).unwrap_or_default()
                    );
                } else {
                    print!("{}", render_text(&resp));
                }
                Ok(if resp.completed { 0 } else { 1 })
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(2)
            }
        }
    })
}
