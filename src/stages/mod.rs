//! The pipeline's stages, in order; each takes and returns a named type
//! (`onex-gen stages` prints the table, `stages/` at the repository root
//! holds each stage's README and fixture cases).
//!
//! | # | module | in → out |
//! |---|---|---|
//! | 1 | [`parse`] | bytes → RawContract |
//! | 2 | [`validate`] | RawContract → Contract |
//! | 3 | [`model`] | Contract → NodeModel |
//! | 4 | [`render`] | NodeModel → FileSet |
//! | 4.5 | [`wiring`] | FileSet → FileSet (event-bus wiring) |
//! | – | [`format`] | FileSet → FileSet (one rustfmt pass per run) |
//! | 5 | [`verify`] | FileSet → VerifiedFileSet |
//! | 6 | [`write`] | VerifiedFileSet → disk + manifest |

/// Stage 1 parse: bytes → RawContract (YAML with a line:col for every node).
pub mod parse;

/// Stage 2 validate: RawContract → Contract (JSON Schema, dialects, semantic checks).
pub mod validate;

/// Stage 3 model: Contract → NodeModel (every Rust name and type, topic roles).
pub mod model;

/// Stage 4 render: NodeModel → FileSet (embedded minijinja templates).
pub mod render;

/// Stage 4.5 event-bus wiring: FileSet → FileSet (spec, startup, .env.template, compose, AsyncAPI).
pub mod wiring;

/// Between 4.5 and 5, rustfmt: FileSet → FileSet (every `.rs` file of a run through one rustfmt process).
pub mod format;

/// Stage 5 verify: FileSet → VerifiedFileSet (syn, Compose schema, env vars, optional cargo check).
pub mod verify;

/// Stage 6 write: VerifiedFileSet → disk + manifest (staged, all or nothing).
pub mod write;

/// The fixture case folders of `stages/<stage>/cases/`, sorted (at least
/// five, or the stage's fixture test has lost its cases).
#[cfg(test)]
pub(crate) fn fixture_cases(stage: &str) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("stages")
        .join(stage)
        .join("cases");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "fixture cases in {}", root.display());
    cases
}
