//! Generation of one request: stages 1 to 6 for contract bytes, into the
//! output root, under the node's lock, remembered by idempotency key.
//!
//! This follows [`onex_gen::pipeline::run_jobs`] stage for stage, except that
//! stage 1 reads the request's bytes (under [`REQUEST_CONTRACT_PATH`]) instead
//! of a file, and the contract is written into the crate as `contract.yaml`,
//! where the manifest records it, so `onex-gen check` works on the result.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use onex_gen::diagnostic::Diagnostics;
use onex_gen::error::GenError;
use onex_gen::manifest::{self, sha256_hex};
use onex_gen::pipeline::Generation;
use onex_gen::stages::render::{RenderOptions, RuntimeSource};
use onex_gen::stages::write::{self, WriteOptions};

use super::request::{GenerationRequest, RequestOptions, RuntimeOption, REQUEST_CONTRACT_PATH};
use super::root::{OutputRoot, RootError, StoredResult};

/// Most diagnostics (or warnings) an answer lists; `diagnostics_total`
/// (`warnings_total`) counts them all. A contract within the size limit can
/// hold thousands, and the answer must still fit in one Kafka record.
pub const MAX_LISTED: usize = 100;

/// Name of the contract copy inside a generated crate.
pub const CRATE_CONTRACT_FILE: &str = "contract.yaml";

/// Service-side generation settings (never taken from a request).
#[derive(Debug, Clone, Default)]
pub struct GeneratorSettings {
    /// Runtime folder for `options.runtime = "path"`.
    pub runtime_path: Option<PathBuf>,
}

impl GeneratorSettings {
    /// Everything besides the request that decides what a request comes to:
    /// the generator version, the template set (templates and vendored
    /// runtime), the formatter, and the runtime folder when the request
    /// asks for it. Part of every idempotency key.
    pub fn fingerprint(&self, options: &RequestOptions) -> String {
        let runtime = match (options.runtime, &self.runtime_path) {
            (RuntimeOption::Path, Some(p)) => p.display().to_string(),
            _ => String::new(),
        };
        let rustfmt = onex_gen::stages::format::rustfmt_version().unwrap_or_default();
        let mut h = Sha256::new();
        for part in [
            onex_gen::GENERATOR_VERSION,
            &onex_gen::stages::render::template_set_hash(),
            rustfmt,
            &runtime,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

/// What a request came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The completed event's payload.
    Completed(Value),
    /// The failed event's payload.
    Failed(Value),
}

impl Outcome {
    pub fn payload(&self) -> &Value {
        match self {
            Outcome::Completed(v) | Outcome::Failed(v) => v,
        }
    }

    pub fn is_completed(&self) -> bool {
        matches!(self, Outcome::Completed(_))
    }
}

/// How a request was answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub outcome: Outcome,
    /// Whether the outcome came from the results index (nothing generated).
    pub replayed: bool,
}

/// A failure payload; `started` is when the service took the request, if
/// it knows.
pub fn failed_payload(
    error_type: &str,
    message: &str,
    diagnostics: &Diagnostics,
    key: Option<&str>,
    started: Option<Instant>,
) -> Value {
    json!({
        "error_type": error_type,
        "message": message,
        "diagnostics": listed(diagnostics),
        "diagnostics_total": diagnostics.len(),
        "idempotency_key": key,
        "generator_version": onex_gen::GENERATOR_VERSION,
        "duration_ms": started.map(|s| s.elapsed().as_millis() as u64),
    })
}

/// The first [`MAX_LISTED`] of `diagnostics`, errors before warnings.
fn listed(diagnostics: &Diagnostics) -> Vec<&onex_gen::diagnostic::Diagnostic> {
    diagnostics
        .errors()
        .chain(diagnostics.warnings())
        .take(MAX_LISTED)
        .collect()
}

/// Internal errors: worth another delivery (the disk may recover).
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Root(#[from] RootError),
    #[error(transparent)]
    Gen(#[from] GenError),
}

/// Answers one request: replays a stored outcome, or generates and stores it.
/// Deterministic refusals (invalid contract, unsafe folder, conflicting hand
/// edits) are `Ok(Failed)`; `Err` is left for failures worth retrying.
pub fn answer(
    root: &OutputRoot,
    settings: &GeneratorSettings,
    req: &GenerationRequest,
) -> Result<Answer, GenerateError> {
    let started = Instant::now();
    let key = req.idempotency_key(&settings.fingerprint(&req.options));
    // Failures name places inside the root relative to it.
    let fail = |t: &str, m: &str, d: &Diagnostics| {
        root.relative_json(failed_payload(t, m, d, Some(&key), Some(started)))
    };
    if let Err(e) = root.check_state_dir() {
        let payload = fail("unsafe_path", &e.to_string(), &Diagnostics::new());
        return Ok(Answer {
            outcome: Outcome::Failed(payload),
            replayed: false,
        });
    }
    if let Some(stored) = root.load_result(&key) {
        return Ok(replay(stored));
    }
    let bytes = req.contract.as_bytes();

    // Stages 1 and 2, from the bytes.
    let validated = onex_gen::stages::parse::parse(Path::new(REQUEST_CONTRACT_PATH), bytes)
        .and_then(|raw| onex_gen::stages::validate::validate(&raw));
    let validated = match validated {
        Ok(v) => v,
        Err(mut diags) => {
            diags.sort();
            let payload = fail("invalid_contract", "the contract is invalid", &diags);
            // The same bytes are always invalid in the same way: remember it.
            root.store_result(&StoredResult {
                key: key.clone(),
                outcome: "failed".into(),
                payload: payload.clone(),
            })?;
            return Ok(Answer {
                outcome: Outcome::Failed(payload),
                replayed: false,
            });
        }
    };
    let name = validated.contract.name.clone();
    let crate_dir = root.crate_dir(&name);

    let runtime = match (req.options.runtime, &settings.runtime_path) {
        (RuntimeOption::Vendored, _) => RuntimeSource::Vendored,
        (RuntimeOption::Path, Some(p)) => RuntimeSource::Path(manifest::relative_to(p, &crate_dir)),
        (RuntimeOption::Path, None) => return Ok(Answer {
            outcome: Outcome::Failed(fail(
                "unsupported_option",
                "options.runtime = \"path\" needs the service to be started with --runtime-path",
                &validated.warnings,
            )),
            replayed: false,
        }),
    };

    let unsafe_path = |e: RootError| Answer {
        outcome: Outcome::Failed(fail("unsafe_path", &e.to_string(), &validated.warnings)),
        replayed: false,
    };
    let _lock = match root.lock_node(&name) {
        Ok(lock) => lock,
        Err(e @ (RootError::Symlink(_) | RootError::Special(_))) => return Ok(unsafe_path(e)),
        Err(e) => return Err(e.into()),
    };
    // Another process may have answered while we waited for the lock.
    if let Some(stored) = root.load_result(&key) {
        return Ok(replay(stored));
    }
    if let Err(e) = root.check_crate_dir(&crate_dir) {
        return Ok(unsafe_path(e));
    }

    let mut contract = validated.contract;
    contract.path = crate_dir.join(CRATE_CONTRACT_FILE);
    let warnings = validated.warnings;
    match render_and_verify(contract, warnings.clone(), &crate_dir, runtime) {
        Err(diags) => Ok(Answer {
            outcome: Outcome::Failed(fail("generation_failed", "generation failed", &diags)),
            replayed: false,
        }),
        Ok(gen) => {
            let plans = match write::write(std::slice::from_ref(&gen), &WriteOptions::default()) {
                Ok(p) => p,
                Err(GenError::Conflict(msg)) => {
                    return Ok(Answer {
                        outcome: Outcome::Failed(fail("write_conflict", &msg, &warnings)),
                        replayed: false,
                    })
                }
                Err(e) => return Err(e.into()),
            };
            write_contract_copy(&crate_dir, bytes)?;
            let manifest_json = gen.manifest().to_json();
            let files: Vec<Value> = plans
                .iter()
                .flat_map(|p| &p.actions)
                .map(|a| {
                    let owner = gen.files.files().get(&a.path).map(|f| f.owner);
                    json!({"path": a.path, "action": a.action, "owner": owner})
                })
                .collect();
            let payload = root.relative_json(json!({
                "node_name": name.as_str(),
                "crate_dir": name.as_str(),
                "contract_sha256": sha256_hex(bytes),
                "idempotency_key": key,
                "generator_version": onex_gen::GENERATOR_VERSION,
                "manifest_sha256": sha256_hex(manifest_json.as_bytes()),
                "files": files,
                "warnings": listed(&warnings),
                "warnings_total": warnings.len(),
                "duration_ms": started.elapsed().as_millis() as u64,
            }));
            root.store_result(&StoredResult {
                key,
                outcome: "completed".into(),
                payload: payload.clone(),
            })?;
            Ok(Answer {
                outcome: Outcome::Completed(payload),
                replayed: false,
            })
        }
    }
}

fn replay(stored: StoredResult) -> Answer {
    let outcome = if stored.outcome == "completed" {
        Outcome::Completed(stored.payload)
    } else {
        Outcome::Failed(stored.payload)
    };
    Answer {
        outcome,
        replayed: true,
    }
}

/// Stages 3, 4, 4.5, the formatter pass and 5 for one validated contract.
fn render_and_verify(
    contract: onex_gen::contract::Contract,
    warnings: Diagnostics,
    crate_dir: &Path,
    runtime: RuntimeSource,
) -> Result<Generation, Diagnostics> {
    let options = RenderOptions {
        runtime,
        template_dir: None,
    };
    let rendered = onex_gen::pipeline::render_contract(
        contract,
        warnings,
        Path::new(REQUEST_CONTRACT_PATH),
        crate_dir.to_path_buf(),
        options.clone(),
        &options,
    );
    onex_gen::pipeline::format_and_verify(vec![rendered], false)
        .pop()
        .expect("one result per input")
}

/// Writes the contract into the crate (temporary file, then rename), unless
/// it is already there byte for byte.
fn write_contract_copy(crate_dir: &Path, bytes: &[u8]) -> Result<(), RootError> {
    let path = crate_dir.join(CRATE_CONTRACT_FILE);
    if std::fs::read(&path).is_ok_and(|b| b == bytes) {
        return Ok(());
    }
    let err = |source| RootError::Io {
        path: path.clone(),
        source,
    };
    let mut tmp = tempfile::NamedTempFile::new_in(crate_dir).map_err(err)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(err)?;
    tmp.persist(&path).map_err(|e| err(e.error))?;
    Ok(())
}
