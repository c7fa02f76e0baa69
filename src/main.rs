//! The `onex-gen` command line: a thin clap layer over the library.
//!
//! Exit codes: 0 ok; 1 drift, refusal to overwrite, or a breaking contract
//! change; 2 invalid input (located diagnostics on stderr, JSON lines on
//! stdout with `--format json`, GitHub annotations on stdout with `--format
//! github`) or any other error. Output to a reader that goes away
//! (`onex-gen schema | head`) ends quietly.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use onex_gen::commands::check;
use onex_gen::commands::report::{self, ContractReport};
use onex_gen::diagnostic::{Diagnostics, OutputFormat};
use onex_gen::error::GenError;
use onex_gen::pipeline::{self, GenerateOptions, RuntimeChoice};
use onex_gen::stages::validate::Validated;
use onex_gen::stages::write::{self, Action, WriteOptions};

#[derive(Debug, Parser)]
#[command(
    name = "onex-gen",
    version,
    about = "Generates complete, runnable Rust node crates from ONEX node contracts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per subcommand; each has its own args struct and `run_*`
/// function, so adding a command is one variant, one struct, one match arm.
#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a node crate per contract into DIR/<node name>/ (stages 1-6).
    New(NewArgs),
    /// Check contracts (stages 1-2 only).
    Validate(ValidateArgs),
    /// Print the contract JSON Schema.
    Schema,
    /// List the pipeline stages with what each takes and gives.
    Stages,
    /// Regenerate crates in memory and report drift from what is on disk; never writes.
    Check(CheckArgs),
    /// Report breaking changes between two versions of a contract.
    Diff(DiffArgs),
    /// Publish, consume and inspect ONEX events on the bus (runs onex-gen-bus).
    #[command(disable_help_flag = true)]
    Bus(BusCommand),
    /// Generate nodes from requests on the bus until stopped (runs onex-gen-bus).
    #[command(disable_help_flag = true)]
    Serve(BusCommand),
    /// Ask a running `serve` to generate CONTRACT and wait for the answer (runs onex-gen-bus).
    #[command(disable_help_flag = true)]
    Request(BusCommand),
    /// Keep a catalog of live nodes from their introspection events (runs onex-gen-bus).
    #[command(disable_help_flag = true)]
    Registry(BusCommand),
}

/// The arguments of a bus-facing command, passed on to `onex-gen-bus` as they are.
#[derive(Debug, Args)]
struct BusCommand {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

#[derive(Debug, Args)]
struct NewArgs {
    /// Contract files (YAML), or folders of them.
    #[arg(required = true)]
    contracts: Vec<PathBuf>,
    /// Folder the crates go into (each in DIR/<node name>/).
    #[arg(short = 'o', long = "out", value_name = "DIR", default_value = ".")]
    out: PathBuf,
    /// Show what would be written; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Overwrite generated files that were edited by hand (user-owned files are always kept).
    #[arg(long)]
    force: bool,
    /// Print what was generated from each contract, what was interpreted and
    /// what was ignored, with a summary line.
    #[arg(long)]
    report: bool,
    /// Depend on onex-runtime at this path (relative to the current folder)
    /// instead of vendoring a copy into each crate.
    #[arg(long, value_name = "PATH")]
    runtime_path: Option<PathBuf>,
    /// Folder of templates that override the embedded ones by name.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Also run `cargo check` on every generated crate before writing.
    #[arg(long)]
    cargo_check: bool,
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    #[arg(required = true)]
    contracts: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// Crate folders, or folders to search for crates (default: the current folder).
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,
}

#[derive(Debug, Args)]
struct DiffArgs {
    old: PathBuf,
    new: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    format: OutputFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::New(a) => run_new(a),
        Command::Validate(a) => run_validate(a),
        Command::Schema => run_schema(),
        Command::Stages => out(pipeline::stage_table()).map(|()| 0),
        Command::Check(a) => run_check(a),
        Command::Diff(a) => run_diff(a),
        Command::Bus(a) => run_bus_command("bus", a),
        Command::Serve(a) => run_bus_command("serve", a),
        Command::Request(a) => run_bus_command("request", a),
        Command::Registry(a) => run_bus_command("registry", a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes, `: `-separated like anyhow's `{:#}`, leaving
/// out a cause its error already says (the library's I/O errors name their
/// path and their cause in one line).
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let said = cause.to_string();
        if last.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
        last = said;
    }
    text
}

/// Writes `text` to stdout. A reader that has gone away (`onex-gen schema |
/// head`) is not an error: the output just ends.
fn out(text: impl AsRef<str>) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_ref().as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Diagnostics for people on stderr, or as JSON lines or GitHub annotations
/// on stdout.
fn print_diagnostics(diags: &Diagnostics, format: OutputFormat) -> anyhow::Result<()> {
    let line = match format {
        OutputFormat::Text => {
            let _ = write!(std::io::stderr(), "{diags}");
            return Ok(());
        }
        OutputFormat::Json => |d: &onex_gen::diagnostic::Diagnostic| d.to_json_line(),
        OutputFormat::Github => |d: &onex_gen::diagnostic::Diagnostic| d.to_github_line(),
    };
    out(diags.iter().map(|d| line(d) + "\n").collect::<String>())
}

fn run_new(a: NewArgs) -> anyhow::Result<u8> {
    if let Some(refusal) = unusable_out_dir(&a.out) {
        eprintln!("error: -o {}: {refusal}", a.out.display());
        eprintln!("error: nothing was written");
        return Ok(2);
    }
    let opts = GenerateOptions {
        out_dir: Some(a.out.clone()),
        runtime: a
            .runtime_path
            .map_or(RuntimeChoice::Vendored, RuntimeChoice::Path),
        template_dir: a.templates,
        cargo_check: a.cargo_check,
    };
    let contracts = onex_gen::stages::parse::contract_files(&a.contracts);
    let gens = match pipeline::generate(&contracts, &opts) {
        Ok(g) => g,
        Err(diags) => {
            print_diagnostics(&diags, a.format)?;
            let errors = diags.errors().count();
            if a.format != OutputFormat::Json {
                eprintln!("error: {errors} error(s); nothing was written");
            }
            return Ok(2);
        }
    };
    let mut warnings = Diagnostics::new();
    for g in &gens {
        warnings.extend(g.warnings.clone());
    }
    if a.report {
        // The report comes first: it says how each contract was read, which
        // holds even when writing then refuses (two contracts, one folder).
        let reports: Vec<ContractReport> = gens.iter().map(ContractReport::of).collect();
        out(match a.format {
            OutputFormat::Json => report::render_json(&reports),
            OutputFormat::Text | OutputFormat::Github => report::render_text(&reports),
        })?;
    } else {
        print_diagnostics(&warnings, a.format)?;
    }
    let wopts = WriteOptions {
        force: a.force,
        dry_run: a.dry_run,
    };
    let plans = match write::write(&gens, &wopts) {
        Ok(p) => p,
        Err(GenError::Conflict(msg)) => {
            eprintln!("error: {msg}");
            return Ok(1);
        }
        Err(e) => return Err(e).context("writing the generated crates"),
    };
    if a.format != OutputFormat::Json && !a.report {
        let mut text = String::new();
        for p in &plans {
            let verb = if a.dry_run { "would write" } else { "wrote" };
            writeln!(
                text,
                "{verb} {} ({}: {} created, {} updated, {} merged, {} unchanged, {} user-owned kept, {} removed{}{})",
                p.crate_dir.display(),
                p.node_name,
                p.count(Action::Create),
                p.count(Action::Update) + p.count(Action::Overwrite),
                p.count(Action::Merge),
                p.count(Action::Unchanged),
                p.count(Action::KeepUser) + p.count(Action::KeepEdits),
                p.count(Action::Remove),
                if p.count(Action::Overwrite) > 0 {
                    format!(", {} hand edit(s) overwritten", p.count(Action::Overwrite))
                } else {
                    String::new()
                },
                if p.count(Action::ConflictMarkers) > 0 {
                    format!(
                        ", {} file(s) with conflict markers to resolve",
                        p.count(Action::ConflictMarkers)
                    )
                } else {
                    String::new()
                }
            )?;
            if a.dry_run {
                for fa in &p.actions {
                    writeln!(text, "  {:<32} {}", fa.action.to_string(), fa.path)?;
                }
            }
        }
        out(text)?;
    }
    if a.format == OutputFormat::Json && !a.report {
        let v = serde_json::json!({ "dry_run": a.dry_run, "crates": plans });
        out(format!("{v}\n"))?;
    }
    Ok(0)
}

/// Why `dir` (or the first of its ancestors that exists) cannot hold the
/// generated crates, checked before anything is generated.
fn unusable_out_dir(dir: &std::path::Path) -> Option<String> {
    let existing = dir
        .ancestors()
        .find(|p| p.as_os_str().is_empty() || p.exists())?;
    if existing.as_os_str().is_empty() || existing.is_dir() {
        return None;
    }
    Some(if existing == dir {
        "is a file, not a folder (expected a folder for the generated crates; it is created if missing)".into()
    } else {
        format!(
            "{} is a file, so no folder can be made under it (expected a folder for the generated crates)",
            existing.display()
        )
    })
}

fn run_validate(a: ValidateArgs) -> anyhow::Result<u8> {
    let mut all = Diagnostics::new();
    let mut failed = false;
    let mut oks = String::new();
    for path in &onex_gen::stages::parse::contract_files(&a.contracts) {
        match onex_gen::stages::validate::load(path) {
            Ok(Validated { contract, warnings }) => {
                all.extend(warnings);
                if a.format != OutputFormat::Json {
                    writeln!(
                        oks,
                        "ok: {} ({}, {})",
                        path.display(),
                        contract.name,
                        contract.kind
                    )?;
                }
            }
            Err(diags) => {
                failed = true;
                all.extend(diags);
            }
        }
    }
    out(oks)?;
    print_diagnostics(&all, a.format)?;
    Ok(if failed { 2 } else { 0 })
}

fn run_schema() -> anyhow::Result<u8> {
    out(format!(
        "{}\n",
        onex_gen::stages::validate::contract_schema()
    ))?;
    Ok(0)
}

fn run_check(a: CheckArgs) -> anyhow::Result<u8> {
    let report = check::check(&a.paths);
    out(report.render(a.format))?;
    Ok(u8::try_from(report.exit_code()).unwrap_or(2))
}

fn run_diff(a: DiffArgs) -> anyhow::Result<u8> {
    match onex_gen::commands::diff::diff_files(&a.old, &a.new) {
        Ok(r) => {
            out(match a.format {
                OutputFormat::Json => r.render_json(),
                OutputFormat::Text | OutputFormat::Github => r.render_text(),
            })?;
            Ok(u8::try_from(r.exit_code()).unwrap_or(1))
        }
        Err(diags) => {
            print_diagnostics(&diags, a.format)?;
            Ok(2)
        }
    }
}

/// The binary that holds the bus-facing commands.
const BUS_BINARY: &str = "onex-gen-bus";

/// Runs `onex-gen-bus COMMAND ARGS...` (found beside this executable, else on
/// PATH) and returns its exit status, the way git and cargo run external
/// subcommands. The bus commands live in their own crate so that the
/// generator links no Kafka client.
fn run_bus_command(command: &str, a: BusCommand) -> anyhow::Result<u8> {
    let Some(binary) = find_bus_binary() else {
        eprintln!(
            "error: `onex-gen {command}` needs the {BUS_BINARY} binary (the bus-facing commands, \
             built apart so that onex-gen links no Kafka client), and it is neither beside \
             this executable nor on PATH.\n\
             Build it from the onex-gen repository with `cargo build --locked -p {BUS_BINARY}` \
             (it lands beside onex-gen in target/) or install it with \
             `cargo install --locked --path {BUS_BINARY}`."
        );
        return Ok(2);
    };
    let status = std::process::Command::new(&binary)
        .arg(command)
        .args(&a.args)
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    // A signal-terminated child has no code; report it as a failure.
    Ok(status
        .code()
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(2))
}

fn find_bus_binary() -> Option<PathBuf> {
    let name = format!("{BUS_BINARY}{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)));
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|dir| dir.join(&name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    beside.into_iter().chain(on_path).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}
