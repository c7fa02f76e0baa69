//! The pipeline driver: runs stages 1 to 5 for every contract, with one
//! rustfmt pass across all of them, and hands stage 6 a [`Generation`] per
//! contract. Stage 6 ([`crate::stages::write`]) is separate so that `check` can run
//! the same generation in memory and never write.
//!
//! All or nothing: [`generate`] returns either a generation for every contract
//! or the diagnostics of every contract (errors and warnings), never a mix.
//!
//! Paths given on the command line (contract, `--runtime-path`, `--templates`)
//! are relative to the current folder; everything recorded in the crate (the
//! manifest, Cargo.toml's runtime path, the contract path the templates see)
//! is relative to the crate folder, so output does not depend on where
//! onex-gen ran.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::contract::{Contract, NodeName};
use crate::diagnostic::{Diagnostic, Diagnostics, Position, Severity};
use crate::error::GenError;
use crate::fileset::FileSet;
use crate::manifest::{self, ContractRecord, Manifest, RecordedOptions};
use crate::stages::render::{RenderOptions, RuntimeSource};
use crate::stages::validate::{self, Validated};
use crate::stages::verify::{VerifiedFileSet, VerifyOptions};

/// One stage of the pipeline, as `onex-gen stages` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stage {
    pub number: &'static str,
    pub name: &'static str,
    pub input: &'static str,
    pub output: &'static str,
    /// The module under `src/stages/` that implements it.
    pub module: &'static str,
    pub owns: &'static str,
}

/// The stage table: the single source for `onex-gen stages` and the docs.
pub const STAGES: &[Stage] = &[
    Stage {
        number: "1",
        name: "parse",
        input: "bytes",
        output: "RawContract",
        module: "parse",
        owns: "YAML with a line:col for every node; size, depth and alias limits",
    },
    Stage {
        number: "2",
        name: "validate",
        input: "RawContract",
        output: "Contract",
        module: "validate",
        owns: "JSON Schema check; normalising the dialects real contracts use; semantic checks; warnings for unknown keys",
    },
    Stage {
        number: "3",
        name: "model",
        input: "Contract",
        output: "NodeModel",
        module: "model",
        owns: "Rust types for inputs/outputs/io_operations, topic bindings, FSM, workflow steps",
    },
    Stage {
        number: "4",
        name: "render",
        input: "NodeModel",
        output: "FileSet",
        module: "render",
        owns: "minijinja templates per node kind",
    },
    Stage {
        number: "4.5",
        name: "event-bus wiring",
        input: "FileSet",
        output: "FileSet",
        module: "wiring",
        owns: "bus start-up, introspection publishing, startup binary, .env.template, compose entry",
    },
    Stage {
        number: "-",
        name: "rustfmt",
        input: "FileSet",
        output: "FileSet",
        module: "format",
        owns: "every .rs file of a run through rustfmt at once, with a pinned configuration and a content-addressed cache, so generated code is exactly what cargo fmt gives",
    },
    Stage {
        number: "5",
        name: "verify",
        input: "FileSet",
        output: "VerifiedFileSet",
        module: "verify",
        owns: "every .rs parses; Cargo.toml parses; compose.yaml validates against the Compose schema; every env var read is in .env.template; optionally cargo check",
    },
    Stage {
        number: "6",
        name: "write",
        input: "VerifiedFileSet",
        output: "disk + manifest",
        module: "write",
        owns: "atomic, deterministic writes; never clobbers a file the user owns or edited; removes orphans; .onex-gen/manifest.json",
    },
];

/// The stage table as aligned text.
pub fn stage_table() -> String {
    let header = ["#", "stage", "in -> out", "owns"];
    let rows: Vec<[String; 4]> = STAGES
        .iter()
        .map(|s| {
            [
                s.number.to_owned(),
                s.name.to_owned(),
                format!("{} -> {}", s.input, s.output),
                s.owns.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 4]| {
        let text = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
    out
}

/// How a crate reaches onex-runtime, as asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RuntimeChoice {
    /// A copy of the runtime inside the crate.
    #[default]
    Vendored,
    /// A path dependency on this folder (absolute, or relative to the current
    /// folder); recorded relative to each crate.
    Path(PathBuf),
}

/// Where a generated crate goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `<dir>/<node name>/`
    UnderDir(PathBuf),
    /// Exactly this folder (golden files, regeneration of an existing crate).
    Exact(PathBuf),
}

/// One contract to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub contract: PathBuf,
    pub destination: Destination,
    pub runtime: RuntimeChoice,
    /// Template override folder (absolute, or relative to the current folder).
    pub template_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// Crates go to `<out_dir>/<node name>/`; default the current folder.
    pub out_dir: Option<PathBuf>,
    pub runtime: RuntimeChoice,
    pub template_dir: Option<PathBuf>,
    /// Also run `cargo check` in stage 5.
    pub cargo_check: bool,
}

impl GenerateOptions {
    pub fn job(&self, contract: &Path) -> Job {
        Job {
            contract: contract.to_path_buf(),
            destination: Destination::UnderDir(
                self.out_dir.clone().unwrap_or_else(|| PathBuf::from(".")),
            ),
            runtime: self.runtime.clone(),
            template_dir: self.template_dir.clone(),
        }
    }
}

/// The result of stages 1 to 5 for one contract.
#[derive(Debug, Clone)]
pub struct Generation {
    pub contract: Contract,
    /// Warnings from every stage (never errors).
    pub warnings: Diagnostics,
    pub files: VerifiedFileSet,
    pub node_name: NodeName,
    /// Where the crate goes.
    pub crate_dir: PathBuf,
    /// The options the files were rendered with (paths relative to `crate_dir`).
    pub render_options: RenderOptions,
    pub template_set_hash: String,
}

impl Generation {
    /// The manifest stage 6 writes for this generation.
    pub fn manifest(&self) -> Manifest {
        let runtime = self.render_options.runtime.clone();
        let template_dir = self
            .render_options
            .template_dir
            .as_ref()
            .map(|p| manifest::slash(p));
        Manifest::new(
            self.node_name.as_str(),
            ContractRecord {
                path: manifest::relative_to(&self.contract.path, &self.crate_dir),
                sha256: self.contract.hash.clone(),
            },
            &self.template_set_hash,
            RecordedOptions {
                runtime,
                template_dir,
            },
            self.files.files(),
        )
    }
}

/// Runs stages 1 to 5 for every contract. All or nothing: on any error the
/// result holds every contract's diagnostics (errors and warnings, sorted).
pub fn generate(paths: &[PathBuf], opts: &GenerateOptions) -> Result<Vec<Generation>, Diagnostics> {
    let jobs: Vec<Job> = paths.iter().map(|p| opts.job(p)).collect();
    collect_all(run_jobs(&jobs, opts.cargo_check))
}

/// Turns per-job results into all-or-nothing.
pub fn collect_all(
    results: Vec<Result<Generation, Diagnostics>>,
) -> Result<Vec<Generation>, Diagnostics> {
    if results.iter().all(Result::is_ok) {
        return Ok(results.into_iter().flatten().collect());
    }
    let mut all = Diagnostics::new();
    for r in results {
        match r {
            Ok(g) => all.extend(g.warnings),
            Err(d) => all.extend(d),
        }
    }
    all.sort();
    Err(all)
}

/// A contract after stages 3 to 4.5, waiting for the formatter pass and
/// stage 5.
#[derive(Debug)]
pub struct Rendered {
    pub contract: Contract,
    pub warnings: Diagnostics,
    pub files: FileSet,
    pub crate_dir: PathBuf,
    /// The options as the manifest records them (paths relative to the crate).
    pub render_options: RenderOptions,
    /// Where diagnostics about this contract point (its file, as given).
    pub source: PathBuf,
}

/// Stages 3, 4 and 4.5 for one validated contract. `recorded` options are
/// what the manifest keeps; `effective` ones are usable from the current
/// folder (a template folder is read from here).
pub fn render_contract(
    contract: Contract,
    warnings: Diagnostics,
    source: &Path,
    crate_dir: PathBuf,
    recorded: RenderOptions,
    effective: &RenderOptions,
) -> Result<Rendered, Diagnostics> {
    let located = |e: GenError| stage_error(source, &warnings, e);
    // Stages 3 and 4 see the contract path as the manifest records it
    // (relative to the crate), so the output is the same whatever the current
    // folder and however the path was spelled.
    let mut for_render = contract.clone();
    for_render.path = PathBuf::from(manifest::relative_to(&contract.path, &crate_dir));
    let model = crate::stages::model::build(&for_render);
    let files = crate::stages::render::render(&model, effective).map_err(located)?;
    let files = crate::stages::wiring::wire(files, &model, effective).map_err(located)?;
    Ok(Rendered {
        contract,
        warnings,
        files,
        crate_dir,
        render_options: recorded,
        source: source.to_path_buf(),
    })
}

/// The one formatter pass over every file set that got this far, then stage
/// 5 for each (on every core). One result per input, in order.
pub fn format_and_verify(
    rendered: Vec<Result<Rendered, Diagnostics>>,
    cargo_check: bool,
) -> Vec<Result<Generation, Diagnostics>> {
    let mut rendered = rendered;
    let format_error = {
        let mut sets: Vec<&mut FileSet> = rendered
            .iter_mut()
            .filter_map(|r| r.as_mut().ok().map(|r| &mut r.files))
            .collect();
        crate::stages::format::format_filesets(&mut sets)
            .err()
            .map(|e| e.to_string())
    };
    let template_set_hash = crate::stages::render::template_set_hash();
    parallel_map(rendered, |r| {
        let r = r?;
        if let Some(msg) = &format_error {
            let mut d = r.warnings.clone();
            d.push(Diagnostic::new(
                Severity::Error,
                "E-FORMAT",
                &r.source,
                Position::new(1, 1),
                "",
                format!("formatting the generated code failed: {msg}"),
            ));
            return Err(d);
        }
        let verify_opts = VerifyOptions {
            cargo_check,
            crate_dir: Some(r.crate_dir.clone()),
        };
        let files = crate::stages::verify::verify(r.files, &r.contract, &verify_opts).map_err(
            |mut d| {
                d.extend(r.warnings.clone());
                d
            },
        )?;
        Ok(Generation {
            node_name: r.contract.name.clone(),
            contract: r.contract,
            warnings: r.warnings,
            files: files.shared(),
            crate_dir: r.crate_dir,
            render_options: r.render_options,
            template_set_hash: template_set_hash.clone(),
        })
    })
}

/// Runs stages 1 to 5 for each job independently (the formatter pass still
/// runs once over all of them); one result per job, in order.
pub fn run_jobs(jobs: &[Job], cargo_check: bool) -> Vec<Result<Generation, Diagnostics>> {
    let rendered = jobs
        .iter()
        .map(|job| {
            let Validated { contract, warnings } = validate::load(&job.contract)?;
            let crate_dir = match &job.destination {
                Destination::UnderDir(dir) => dir.join(contract.name.as_str()),
                Destination::Exact(dir) => dir.clone(),
            };
            if let Some(d) = unrecordable_path(job, &crate_dir, &warnings) {
                return Err(d);
            }
            let recorded = RenderOptions {
                runtime: match &job.runtime {
                    RuntimeChoice::Vendored => RuntimeSource::Vendored,
                    RuntimeChoice::Path(p) => {
                        RuntimeSource::Path(manifest::relative_to(p, &crate_dir))
                    }
                },
                template_dir: job
                    .template_dir
                    .as_ref()
                    .map(|p| PathBuf::from(manifest::relative_to(p, &crate_dir))),
            };
            let effective = RenderOptions {
                runtime: recorded.runtime.clone(),
                template_dir: job.template_dir.clone(),
            };
            render_contract(
                contract,
                warnings,
                &job.contract,
                crate_dir,
                recorded,
                &effective,
            )
        })
        .collect();
    format_and_verify(rendered, cargo_check)
}

/// `items.into_iter().map(f).collect()`, spread over the available cores,
/// keeping the order.
fn parallel_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < 2 || items.len() < 2 {
        return items.into_iter().map(f).collect();
    }
    let per_thread = items.len().div_ceil(cores);
    let mut chunks: Vec<Vec<T>> = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(per_thread).collect());
    }
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || chunk.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// The manifest records the contract, `--runtime-path` and `--templates`
/// paths relative to the crate, as UTF-8 text for `check` to find them
/// again. A path that is not UTF-8 would be recorded with replacement
/// characters, so it is an error before anything is generated.
fn unrecordable_path(job: &Job, crate_dir: &Path, warnings: &Diagnostics) -> Option<Diagnostics> {
    let mut paths = vec![("contract", job.contract.as_path())];
    if let RuntimeChoice::Path(p) = &job.runtime {
        paths.push(("--runtime-path", p));
    }
    if let Some(t) = &job.template_dir {
        paths.push(("--templates", t));
    }
    let (what, rel) = paths
        .into_iter()
        .map(|(what, p)| (what, manifest::relative_path(p, crate_dir)))
        .find(|(_, rel)| rel.to_str().is_none())?;
    let mut d = warnings.clone();
    d.push(
        Diagnostic::new(
            Severity::Error,
            "E-PATH",
            &job.contract,
            Position::new(1, 1),
            "",
            format!(
                "the {what} path as the crate's manifest would record it, {}, is not UTF-8, \
                 so `onex-gen check` could not find it again",
                rel.display()
            ),
        )
        .expected("file and folder names in UTF-8"),
    );
    Some(d)
}

fn stage_error(contract: &Path, warnings: &Diagnostics, e: GenError) -> Diagnostics {
    let mut d = warnings.clone();
    d.push(Diagnostic::new(
        Severity::Error,
        "E-GENERATE",
        contract,
        Position::new(1, 1),
        "",
        e.to_string(),
    ));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_table_lists_every_stage_in_order() {
        let names: Vec<&str> = STAGES.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "parse",
                "validate",
                "model",
                "render",
                "event-bus wiring",
                "rustfmt",
                "verify",
                "write"
            ]
        );
        let table = stage_table();
        assert!(table.starts_with("#"));
        assert!(
            table.contains("4.5  event-bus wiring  FileSet -> FileSet"),
            "{table}"
        );
        assert!(table.contains("VerifiedFileSet -> disk + manifest"));
        assert_eq!(table.lines().count(), STAGES.len() + 1);
        // The table and the source layout agree: one module per stage.
        let stages = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/stages");
        for s in STAGES {
            let file = stages.join(format!("{}.rs", s.module));
            let folder = stages.join(s.module).join("mod.rs");
            assert!(file.is_file() || folder.is_file(), "{}", s.module);
        }
    }

    #[test]
    fn a_missing_contract_is_a_located_error_and_nothing_is_generated() {
        let err = generate(
            &[PathBuf::from("/nonexistent/contract.yaml")],
            &GenerateOptions::default(),
        )
        .unwrap_err();
        let d = err.errors().next().unwrap();
        assert_eq!(d.code, "E-READ");
        assert_eq!(d.file, PathBuf::from("/nonexistent/contract.yaml"));
        assert!(d
            .to_string()
            .starts_with("/nonexistent/contract.yaml:1:1: error[E-READ]"));
    }
}
