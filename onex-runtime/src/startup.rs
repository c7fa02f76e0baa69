//! The node binary: flags, logging, configuration, health endpoint, bus
//! connection (with in-memory fallback), consumption until SIGINT/SIGTERM
//! and graceful shutdown.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::bus::kafka::KafkaBus;
use crate::bus::{BusError, EventBus};
use crate::config::{ConfigSource, RuntimeConfig};
use crate::health;
use crate::introspection;
use crate::node::{NodeHandler, NodeSpec};
use crate::service::NodeService;

/// Exit code for bad flags, bad configuration or missing required variables.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for other start-up failures.
pub const EXIT_STARTUP: u8 = 1;

/// Parsed command-line flags.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `--introspect`.
    pub introspect: bool,
    /// `--kafka-servers`.
    pub kafka_servers: Option<String>,
    /// `--skip-event-bus`.
    pub skip_event_bus: bool,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--help`.
    pub help: bool,
    /// `--version`.
    pub version: bool,
}

/// The command-line flags of every node: `(flag, name of its value if it
/// takes one, meaning)`; `--help` prints them and `--introspect` lists them.
pub const FLAGS: &[(&str, Option<&str>, &str)] = &[
    ("--serve", None, "run the node: consume, handle and publish until SIGINT or SIGTERM (the default)"),
    ("--introspect", None, "print the node's introspection document as JSON and exit"),
    ("--version", None, "print the node version and the contract version, and exit"),
    ("--kafka-servers", Some("LIST"), "Kafka bootstrap servers (overrides KAFKA_BOOTSTRAP_SERVERS)"),
    ("--skip-event-bus", None, "run on the in-memory bus"),
    ("--config", Some("FILE"), "read settings from FILE: KEY=VALUE lines, or flat YAML with variable names or the lower-case KAFKA_* keys (bootstrap_servers, group, ...)"),
    ("-h, --help", None, "print this help"),
];

/// Parses the flags (without the program name).
pub fn parse_flags<I: IntoIterator<Item = String>>(args: I) -> Result<Flags, String> {
    let mut flags = Flags::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match name.as_str() {
            "--introspect" => flags.introspect = true,
            // The normal mode, accepted as the ONEX Python nodes document it.
            "--serve" => {}
            "--version" | "-V" => flags.version = true,
            "--skip-event-bus" => flags.skip_event_bus = true,
            "--help" | "-h" => flags.help = true,
            "--kafka-servers" => flags.kafka_servers = Some(value("--kafka-servers")?),
            "--config" => flags.config = Some(PathBuf::from(value("--config")?)),
            other => return Err(format!("unknown argument `{other}` (see --help)")),
        }
    }
    Ok(flags)
}

fn usage(spec: &NodeSpec) -> String {
    let mut out = format!(
        "{name} {version} ({kind} node)\n{description}\n\nUSAGE: {name} [OPTIONS]\n\nOPTIONS:\n",
        name = spec.name,
        version = spec.version,
        kind = spec.kind,
        description = spec.description,
    );
    for (flag, value, meaning) in FLAGS {
        let left = match value {
            Some(value) => format!("{flag} {value}"),
            None => flag.to_string(),
        };
        out.push_str(&format!("  {left:<22}  {meaning}\n"));
    }
    out.push_str("\nSettings come from the environment (see --introspect for the list).\n");
    out
}

/// What `--version` prints: the node version and the version of the
/// contract it was generated from.
pub fn version_line(spec: &NodeSpec) -> String {
    format!(
        "{} {} (contract version {})",
        spec.name, spec.version, spec.contract_version
    )
}

/// SIGINT and SIGTERM, listened for from the moment this is made: a signal
/// that arrives while the node is still starting is not lost and does not
/// kill the process before a graceful shutdown.
#[cfg(unix)]
struct ShutdownSignals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl ShutdownSignals {
    fn listen() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind| {
            signal(kind)
                .inspect_err(|e| tracing::warn!("cannot listen for {kind:?}: {e}"))
                .ok()
        };
        ShutdownSignals {
            interrupt: listen(SignalKind::interrupt()),
            terminate: listen(SignalKind::terminate()),
        }
    }

    async fn received(mut self) {
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.interrupt) => {}
            _ = next(&mut self.terminate) => {}
        }
    }
}

#[cfg(not(unix))]
struct ShutdownSignals;

#[cfg(not(unix))]
impl ShutdownSignals {
    fn listen() -> Self {
        ShutdownSignals
    }

    async fn received(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The whole startup binary of a node; see the crate docs.
pub async fn run_main(mut spec: NodeSpec, handler: impl NodeHandler) -> ExitCode {
    let flags = match parse_flags(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if flags.help {
        print!("{}", usage(&spec));
        return ExitCode::SUCCESS;
    }
    if flags.version {
        println!("{}", version_line(&spec));
        return ExitCode::SUCCESS;
    }
    let mut source = ConfigSource::from_env();
    if let Some(path) = &flags.config {
        source = match source.with_file(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
    }
    if let Some(servers) = &flags.kafka_servers {
        source.set("KAFKA_BOOTSTRAP_SERVERS", servers.clone());
    }
    if flags.skip_event_bus {
        source.set("ONEX_SKIP_EVENT_BUS", "true");
    }
    let config = match RuntimeConfig::from_source(&source) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    crate::service::apply_command_topic(&mut spec, &config);
    if flags.introspect {
        let doc = introspection::document(&spec, &config);
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    init_tracing(&config.log_filter);
    match run(spec, Arc::new(handler), config, &source).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn init_tracing(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: RUST_LOG={filter:?} is not a valid filter ({e}); using info");
        EnvFilter::new("info")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(
    spec: NodeSpec,
    handler: Arc<dyn NodeHandler>,
    config: RuntimeConfig,
    source: &ConfigSource,
) -> Result<(), u8> {
    let heartbeat = Duration::from_secs(
        config
            .heartbeat_interval_secs
            .unwrap_or(spec.heartbeat_interval_secs),
    );
    let signals = ShutdownSignals::listen();
    let node_name = spec.name.clone();
    tracing::info!(node_id = %node_name, version = %spec.version, "node starting");
    let service = match NodeService::new(spec, handler, config, source) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(node_id = %node_name, "cannot start: {e}");
            return Err(EXIT_CONFIG);
        }
    };
    let config = service.config().clone();
    let (stop_tx, stop) = watch::channel(false);

    let (listener, addr) = match health::bind(config.health_addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %config.health_addr, "cannot bind the health endpoint: {e}");
            return Err(EXIT_STARTUP);
        }
    };
    tracing::info!(%addr, path = %service.spec().health_path, "health endpoint listening");
    service.set_health_addr(addr);
    let health_task = tokio::spawn(health::serve(
        listener,
        service.spec().health_path.clone(),
        service.clone(),
        stop.clone(),
    ));

    let (bus, degraded): (Arc<dyn EventBus>, bool) = if config.skip_event_bus {
        tracing::info!("event bus skipped on request: running on the in-memory bus");
        (Arc::new(service.memory_bus()), false)
    } else {
        match KafkaBus::connect(
            config.kafka.clone(),
            service.metrics(),
            config.connect_timeout,
        )
        .await
        {
            Ok(k) => (Arc::new(k), false),
            Err(e @ (BusError::Config(_) | BusError::Security(_))) => {
                // Waiting cannot fix a refused configuration, certificate
                // or login: stop instead of running degraded.
                tracing::error!(
                    servers = %config.kafka.bootstrap_servers,
                    protocol = config.kafka.security.protocol.as_str(),
                    "cannot start: {e}"
                );
                eprintln!("error: {e}");
                let _ = stop_tx.send(true);
                return Err(EXIT_CONFIG);
            }
            Err(e) => {
                tracing::error!(
                    servers = %config.kafka.bootstrap_servers,
                    "KAFKA UNREACHABLE ({e}): running DEGRADED on the in-memory bus; \
                     events are not shared with other nodes until reconnected"
                );
                (Arc::new(service.memory_bus()), true)
            }
        }
    };
    if let Err(e) = service.start(bus, degraded).await {
        tracing::error!("cannot start consuming: {e}");
        let _ = stop_tx.send(true);
        return Err(EXIT_STARTUP);
    }
    service.spawn_heartbeat(heartbeat, stop.clone());
    if degraded {
        service.spawn_reconnect(stop.clone());
    }

    signals.received().await;
    tracing::info!("shutdown signal received");
    let _ = stop_tx.send(true);
    service.shutdown().await;
    let _ = health_task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags() {
        let f = parse_flags(args(&[
            "--introspect",
            "--kafka-servers",
            "h:1,h:2",
            "--config=x.env",
            "--skip-event-bus",
        ]))
        .unwrap();
        assert_eq!(
            f,
            Flags {
                introspect: true,
                kafka_servers: Some("h:1,h:2".into()),
                skip_event_bus: true,
                config: Some("x.env".into()),
                help: false,
                version: false,
            }
        );
        assert!(parse_flags(args(&["--kafka-servers"])).is_err());
        assert!(parse_flags(args(&["--bogus"])).is_err());
        assert!(parse_flags(args(&["-h"])).unwrap().help);
        assert_eq!(parse_flags(args(&["--serve"])).unwrap(), Flags::default());
        assert!(parse_flags(args(&["--version"])).unwrap().version);
    }
}
