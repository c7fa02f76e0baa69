//! The one formatter pass: every generated `.rs` file goes through rustfmt.
//!
//! Templates lay code out roughly; rustfmt makes it exactly what `cargo fmt`
//! would, so generated crates pass `cargo fmt --check` as they are. All files
//! of all crates in one generation go through a single rustfmt process (one
//! start-up instead of one per file), with a pinned configuration so that a
//! `rustfmt.toml` around the output folder cannot change the result.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::GenError;
use crate::fileset::FileSet;

/// Settings passed to rustfmt: the defaults `cargo fmt` uses in a crate
/// without a rustfmt.toml, written out so they cannot drift.
const RUSTFMT_CONFIG: &str =
    "edition = \"2021\"\nstyle_edition = \"2021\"\nnewline_style = \"Unix\"\n";

/// Formats the Rust files of every file set in one rustfmt run.
pub fn format_filesets(sets: &mut [&mut FileSet]) -> Result<(), GenError> {
    let rust_files: Vec<(usize, String)> = sets
        .iter()
        .enumerate()
        .flat_map(|(i, set)| {
            set.iter()
                .filter(|(p, _)| is_formatted(p))
                .map(move |(p, _)| (i, p.clone()))
        })
        .collect();
    if rust_files.is_empty() {
        return Ok(());
    }
    let dir = tempfile::Builder::new()
        .prefix("onex-gen-fmt-")
        .tempdir()
        .map_err(|e| GenError::io(std::env::temp_dir(), e))?;
    let config = dir.path().join("rustfmt.toml");
    std::fs::write(&config, RUSTFMT_CONFIG).map_err(|e| GenError::io(&config, e))?;

    let mut paths: Vec<PathBuf> = Vec::with_capacity(rust_files.len());
    for (i, rel) in &rust_files {
        let path = dir.path().join(i.to_string()).join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GenError::io(parent, e))?;
        }
        let contents = &sets[*i].get(rel).expect("listed above").contents;
        std::fs::write(&path, contents).map_err(|e| GenError::io(&path, e))?;
        paths.push(path);
    }

    run_rustfmt(&config, &paths)?;

    for ((i, rel), path) in rust_files.iter().zip(&paths) {
        let formatted = std::fs::read_to_string(path).map_err(|e| GenError::io(path, e))?;
        let owner = sets[*i].get(rel).expect("listed above").owner;
        sets[*i].insert(rel.clone(), owner, formatted);
    }
    Ok(())
}

/// Vendored runtime sources are already formatted and are copied verbatim.
fn is_formatted(path: &str) -> bool {
    path.ends_with(".rs") && !path.starts_with("vendor/")
}

fn run_rustfmt(config: &Path, files: &[PathBuf]) -> Result<(), GenError> {
    let rustfmt = std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into());
    // Out-of-line modules are listed explicitly, so rustfmt need not follow `mod` items.
    let output = Command::new(&rustfmt)
        .arg("--edition")
        .arg("2021")
        .arg("--config-path")
        .arg(config)
        .args(files)
        .output()
        .map_err(|e| {
            GenError::Format(format!(
                "could not run {}: {e} (install it with `rustup component add rustfmt`, or set RUSTFMT)",
                Path::new(&rustfmt).display()
            ))
        })?;
    if !output.status.success() {
        return Err(GenError::Format(format!(
            "rustfmt rejected generated code (a template defect):\n{}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}
