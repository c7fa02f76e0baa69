//! Every golden crate must build cleanly and pass its own tests, as a user
//! would run them: `cargo clippy --all-targets -- -D warnings`, `cargo fmt
//! --check` and `cargo test` (the generated contract tests in tests/node.rs
//! and the starting handler tests in tests/handlers.rs), all `--locked
//! --offline` against the crate's own Cargo.lock, with one shared target
//! folder (`ONEX_NODES_TARGET`, default `target/nodes`, which the corpus and
//! end-to-end builds share too) so onex-runtime and its dependencies are
//! compiled once for all of them. (`cargo check` is not run: clippy checks
//! the same code.)
//!
//! Not part of a plain `cargo test` (`test = false` in Cargo.toml) because it
//! compiles the runtime (rdkafka included) and every node: run it with
//! `scripts/golden-build.sh`, which is
//! `cargo test --test golden_build -- --nocapture`. Set
//! `GOLDEN_ONLY=<stem>[,<stem>...]` to build only some crates.

mod common;

use std::path::PathBuf;
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

use common::{cargo, nodes_target};

#[test]
fn every_golden_crate_lints_is_formatted_and_passes_its_tests() {
    let crates = golden_crates();
    assert!(!crates.is_empty(), "no golden crates found");
    let mut failures = Vec::new();
    for dir in &crates {
        eprintln!("golden-build: {}", dir.display());
        for args in [
            &["fmt", "--check"][..],
            &[
                "clippy",
                "--locked",
                "--offline",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ][..],
            &["test", "--locked", "--offline", "--quiet"][..],
        ] {
            if let Err(e) = cargo(dir, args) {
                failures.push(e);
                break;
            }
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

/// A free port on loopback (the OS picks it; it is released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn health_answers(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.starts_with("HTTP/1.1 200").then_some(body)
}

/// Every golden binary starts (on the in-memory bus, on purpose), answers its
/// health endpoint, and on SIGTERM shuts down cleanly with exit status 0.
#[test]
fn every_golden_binary_starts_and_stops_cleanly() {
    use std::time::{Duration, Instant};
    let target = nodes_target();
    let mut failures = Vec::new();
    for dir in golden_crates() {
        let built = cargo(&dir, &["build", "--locked", "--offline", "--quiet"]);
        if let Err(e) = built {
            failures.push(e);
            continue;
        }
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        let package = manifest
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("a package name");
        let binary = target.join("debug").join(package);
        // Required contract variables get a placeholder value.
        let introspect = Command::new(&binary)
            .arg("--introspect")
            .output()
            .expect("the binary runs");
        let doc: serde_json::Value =
            serde_json::from_slice(&introspect.stdout).expect("--introspect prints JSON");
        let port = free_port();
        let mut cmd = Command::new(&binary);
        cmd.arg("--skip-event-bus")
            .env("ONEX_HEALTH_PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for var in doc["env"]["contract"].as_array().into_iter().flatten() {
            if var["required"] == true {
                cmd.env(var["name"].as_str().expect("a name"), "placeholder");
            }
        }
        let mut child = cmd.spawn().expect("the node starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        let healthy = loop {
            if let Some(body) = health_answers(port) {
                break Some(body);
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let Some(body) = healthy else {
            let _ = child.kill();
            failures.push(format!("{package}: /health never answered"));
            continue;
        };
        if !body.contains("\"bus\":\"in_memory\"") {
            failures.push(format!(
                "{package}: /health does not report the in-memory bus: {body}"
            ));
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                _ if Instant::now() > deadline => break None,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        match status {
            Some(s) if s.success() => {
                eprintln!("golden-run: {package} started and stopped cleanly")
            }
            Some(s) => failures.push(format!("{package}: exited with {s} after SIGTERM")),
            None => {
                let _ = child.kill();
                failures.push(format!("{package}: still running 10 s after SIGTERM"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
