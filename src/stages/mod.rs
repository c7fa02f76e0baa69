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
//! | – | [`mod@format`] | FileSet → FileSet (one rustfmt pass per run) |
//! | 5 | [`verify`] | FileSet → VerifiedFileSet |
//! | 6 | [`mod@write`] | VerifiedFileSet → disk + manifest |

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

/// Runs `got` on every fixture case of `stage` and compares its text with
/// the case's `expected.txt` (which `UPDATE_GOLDEN=1` rewrites).
#[cfg(test)]
pub(crate) fn check_fixture_cases(stage: &str, mut got: impl FnMut(&std::path::Path) -> String) {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in fixture_cases(stage) {
        let got = got(&case);
        let expected_path = case.join("expected.txt");
        if update {
            std::fs::write(&expected_path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{}:\n--- expected\n{want}+++ got\n{got}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every file below `dir` as `(path relative to dir, text)`, sorted.
#[cfg(test)]
pub(crate) fn read_tree(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = crate::manifest::slash(e.path().strip_prefix(dir).unwrap());
            (rel, std::fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// A fixture crate's files: `src/handlers.rs` is the user's, the rest generated.
#[cfg(test)]
pub(crate) fn fixture_file_set(files: Vec<(String, String)>) -> crate::fileset::FileSet {
    use crate::fileset::Owner;
    let mut set = crate::fileset::FileSet::new();
    for (rel, text) in files {
        let owner = if rel == "src/handlers.rs" {
            Owner::User
        } else {
            Owner::Generated
        };
        set.insert(rel, owner, text);
    }
    set
}
