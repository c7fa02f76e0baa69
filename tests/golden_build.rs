//! Every golden crate must build cleanly: `cargo check`, `cargo clippy
//! --all-targets -- -D warnings` and `cargo fmt --check`, with one shared
//! target folder (`target/golden-build`) so onex-runtime and its
//! dependencies are compiled once for all of them.
//!
//! Not part of a plain `cargo test` (`test = false` in Cargo.toml) because it
//! compiles the runtime (rdkafka included) and every node: run it with
//! `scripts/golden-build.sh`, which is
//! `cargo test --test golden_build -- --nocapture`. Set
//! `GOLDEN_ONLY=<stem>[,<stem>...]` to build only some crates.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn golden_crates() -> Vec<PathBuf> {
    let only: Option<Vec<String>> = std::env::var("GOLDEN_ONLY")
        .ok()
        .map(|s| s.split(',').map(|p| p.trim().to_owned()).collect());
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join("golden"))
        .expect("golden/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .filter(|p| {
            only.as_ref().is_none_or(|o| {
                o.iter()
                    .any(|s| p.file_name().is_some_and(|n| n.to_string_lossy() == *s))
            })
        })
        .collect();
    out.sort();
    out
}

fn cargo(dir: &Path, args: &[&str]) -> Result<(), String> {
    let target = root().join("target/golden-build");
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`cargo {}` in {} failed:\n{}{}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn every_golden_crate_checks_lints_and_is_formatted() {
    let crates = golden_crates();
    assert!(!crates.is_empty(), "no golden crates found");
    let mut failures = Vec::new();
    for dir in &crates {
        eprintln!("golden-build: {}", dir.display());
        // A build writes Cargo.lock; golden crates do not carry one.
        let lock = dir.join("Cargo.lock");
        let had_lock = lock.exists();
        for args in [
            &["check", "--all-targets", "--quiet"][..],
            &["clippy", "--all-targets", "--quiet", "--", "-D", "warnings"][..],
            &["fmt", "--check"][..],
        ] {
            if let Err(e) = cargo(dir, args) {
                failures.push(e);
                break;
            }
        }
        if !had_lock {
            let _ = std::fs::remove_file(&lock);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden crate(s) failed:\n{}",
        failures.len(),
        crates.len(),
        failures.join("\n")
    );
}
