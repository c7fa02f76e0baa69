//! The `onex-gen-bus` command line (also reached as `onex-gen serve|request|
//! registry|bus ...`): a thin clap layer over this crate.
//!
//! Exit codes as `onex-gen`'s: 0 ok, 1 a refusal or failed answer, 2 invalid
//! input or any other error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "onex-gen",
    version,
    about = "The bus-facing onex-gen commands: serve, request, registry, bus"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish, consume and inspect ONEX events on the bus.
    Bus(onex_gen_bus::bus::BusArgs),
    /// Generate nodes from requests on the bus until stopped (SIGINT/SIGTERM).
    Serve(onex_gen_bus::serve::ServeArgs),
    /// Ask a running `serve` to generate CONTRACT and wait for the answer.
    Request(onex_gen_bus::request::RequestArgs),
    /// Keep a catalog of live nodes from their introspection events, served as JSON over HTTP.
    Registry(onex_gen_bus::registry::RegistryArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bus(a) => onex_gen_bus::bus::run(a).map(|code| u8::try_from(code).unwrap_or(2)),
        Command::Serve(a) => onex_gen_bus::serve::run_cli(a),
        Command::Request(a) => onex_gen_bus::request::run_cli(a),
        Command::Registry(a) => onex_gen_bus::registry::run_cli(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
