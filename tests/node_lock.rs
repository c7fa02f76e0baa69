//! The Cargo.lock every generated crate ships: `templates/Cargo.lock` (the
//! runtime's dependency closure) plus the node's own package. It must be
//! exactly what cargo resolves, so `cargo build --locked` works in every
//! generated crate, and pin the versions this workspace tests.
//!
//! `UPDATE_GOLDEN=1 cargo test --test node_lock` (the first step of
//! `scripts/update-golden.sh`) refreshes `templates/Cargo.lock` from the
//! workspace's `Cargo.lock`: it lets cargo resolve a generated crate
//! offline, starting from the workspace's lock, and keeps every package but
//! the node's own. Run it after a change to onex-runtime's or the
//! templates' dependencies.

use std::path::{Path, PathBuf};
use std::process::Command;

use onex_gen::lockfile::Lockfile;
use onex_gen::pipeline::{run_jobs, Destination, Job, RuntimeChoice};
use onex_gen::stages::write::{write, WriteOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Generates `contracts/<stem>.yaml` into `<out>/<stem>`.
fn generate(out: &Path, stem: &str, runtime: RuntimeChoice) -> PathBuf {
    let dir = out.join(stem);
    let job = Job {
        contract: root().join("contracts").join(format!("{stem}.yaml")),
        destination: Destination::Exact(dir.clone()),
        runtime,
        template_dir: None,
    };
    let gens: Vec<_> = run_jobs(&[job], false)
        .into_iter()
        .map(|r| r.unwrap_or_else(|d| panic!("{stem} generates:\n{d}")))
        .collect();
    write(&gens, &WriteOptions::default()).expect("written");
    dir
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(mut cmd: Command) -> Result<(), String> {
    let out = cmd
        .stdout(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The platform cargo builds for here (packages for other platforms are in
/// the lock but never downloaded, so offline commands leave them out).
fn host() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// Resolves the crate as a build would, refusing to change its lock.
fn resolve_locked(dir: &Path) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .args(["--filter-platform", &host()])
        .current_dir(dir);
    run(cmd)
}

fn package_name(dir: &Path) -> String {
    let manifest: toml::Table = std::fs::read_to_string(dir.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    manifest["package"]["name"].as_str().unwrap().to_owned()
}

/// Rewrites templates/Cargo.lock from cargo's resolution of a generated
/// crate, seeded with the workspace's lock (so the versions stay those).
fn refresh() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = generate(tmp.path(), "minimal_reducer", RuntimeChoice::Vendored);
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let mut cmd = cargo();
    cmd.args(["update", "--workspace", "--offline"])
        .current_dir(&dir);
    run(cmd).expect("cargo resolves the crate offline");
    let resolved = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap();
    let mut lock = Lockfile::parse(&resolved).expect("cargo's lock parses");
    let node = package_name(&dir);
    lock.packages.retain(|p| p.name != node);
    std::fs::write(root().join("templates/Cargo.lock"), lock.render()).unwrap();
}

#[test]
fn every_generated_lock_is_what_cargo_resolves() {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        refresh();
        eprintln!("templates/Cargo.lock refreshed; rebuild onex-gen to use it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut crates = Vec::new();
    for stem in [
        "minimal_effect",
        "minimal_compute",
        "minimal_reducer",
        "minimal_orchestrator",
    ] {
        crates.push(generate(tmp.path(), stem, RuntimeChoice::Vendored));
    }
    let path_out = tmp.path().join("path");
    crates.push(generate(
        &path_out,
        "node_pr_lifecycle_state_reducer",
        RuntimeChoice::Path(root().join("onex-runtime")),
    ));
    let mut failures = Vec::new();
    for dir in &crates {
        let before = std::fs::read(dir.join("Cargo.lock")).unwrap();
        if let Err(e) = resolve_locked(dir) {
            failures.push(format!("{}: {e}", dir.display()));
        }
        assert_eq!(
            std::fs::read(dir.join("Cargo.lock")).unwrap(),
            before,
            "cargo left the lock as generated"
        );
    }
    assert!(
        failures.is_empty(),
        "a generated Cargo.lock is not what cargo resolves (the runtime's or the \
         templates' dependencies changed?); refresh templates/Cargo.lock with \
         scripts/update-golden.sh:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_lock_is_the_same_bytes_on_every_run() {
    let tmp = tempfile::tempdir().unwrap();
    let a = generate(
        &tmp.path().join("a"),
        "minimal_effect",
        RuntimeChoice::Vendored,
    );
    let b = generate(
        &tmp.path().join("b"),
        "minimal_effect",
        RuntimeChoice::Vendored,
    );
    let lock = std::fs::read(a.join("Cargo.lock")).unwrap();
    assert_eq!(lock, std::fs::read(b.join("Cargo.lock")).unwrap());
    let golden = std::fs::read(root().join("golden/minimal_effect/Cargo.lock")).unwrap();
    assert_eq!(lock, golden, "the same as the golden crate's");
}

#[test]
fn the_node_closure_pins_what_the_workspace_tests() {
    let text = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
    let closure = Lockfile::parse(&text("templates/Cargo.lock")).unwrap();
    let workspace = Lockfile::parse(&text("Cargo.lock")).unwrap();
    assert!(
        closure.packages.iter().any(|p| p.name == "onex-runtime"),
        "the closure holds the runtime"
    );
    let stale: Vec<String> = closure
        .packages
        .iter()
        .filter(|p| p.source.is_some())
        .filter(|p| {
            !workspace
                .packages
                .iter()
                .any(|w| w.name == p.name && w.version == p.version && w.checksum == p.checksum)
        })
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    assert!(
        stale.is_empty(),
        "templates/Cargo.lock pins versions the workspace does not use: {stale:?}; \
         refresh it with scripts/update-golden.sh"
    );
}
