//! Regeneration over an existing crate: user code survives byte for byte,
//! hand edits are refused unless --force, orphans are removed, output is
//! deterministic and a failing run leaves nothing behind.

use std::path::{Path, PathBuf};

mod common;

use common::{onex_gen, text};

fn contract() -> String {
    common::effect_contract("regen")
}

/// A temp folder with `contract.yaml`, and the crate generated from it into `out/`.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = common::generated_effect("regen");
    let dir = tmp.path().join("out/node_regen_effect");
    assert!(dir.join(".onex-gen/manifest.json").is_file());
    (tmp, dir)
}

/// Every file under `dir` (relative path -> bytes), skipping build output.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.file_name() != "target")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn a_generated_rs_file(dir: &Path) -> String {
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".onex-gen/manifest.json")).unwrap(),
    )
    .unwrap();
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["owner"] == "generated" && f["path"].as_str().unwrap().starts_with("src/generated/")
        })
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .expect("a generated file under src/generated/")
}

fn user_file(dir: &Path) -> String {
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".onex-gen/manifest.json")).unwrap(),
    )
    .unwrap();
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["owner"] == "user")
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .expect("a user-owned file")
}

#[test]
fn two_runs_give_identical_bytes_and_the_second_rewrites_nothing() {
    let (tmp, dir) = setup();
    let before = snapshot(&dir);
    let cargo = dir.join("Cargo.toml");
    let mtime = std::fs::metadata(&cargo).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let o = onex_gen(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(" 0 created, 0 updated"),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot(&dir), before);
    assert_eq!(
        std::fs::metadata(&cargo).unwrap().modified().unwrap(),
        mtime
    );

    // A second folder generated from the same contract is byte-identical.
    let o = onex_gen(tmp.path(), &["new", "contract.yaml", "-o", "out2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(snapshot(&tmp.path().join("out2/node_regen_effect")), before);
}

#[test]
fn a_user_file_edit_survives_regeneration_byte_for_byte() {
    let (tmp, dir) = setup();
    let user = user_file(&dir);
    let edited = "// my own code, with odd bytes: \u{e9}\r\n\tkept exactly\n";
    std::fs::write(dir.join(&user), edited).unwrap();
    // Change the contract so generated files are rewritten too.
    let changed = contract().replace("A minimal effect node", "A changed effect node");
    std::fs::write(tmp.path().join("contract.yaml"), changed).unwrap();
    let o = onex_gen(
        tmp.path(),
        &["new", "contract.yaml", "-o", "out", "--force"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(dir.join(&user)).unwrap(), edited);
    // And check does not call a user's edit drift.
    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_hand_edited_generated_file_is_refused_then_overwritten_with_force() {
    let (tmp, dir) = setup();
    let gen = a_generated_rs_file(&dir);
    let path = dir.join(&gen);
    let mut edited = std::fs::read_to_string(&path).unwrap();
    edited.push_str("// hand edit\n");
    std::fs::write(&path, &edited).unwrap();
    let before = snapshot(&dir);

    let o = onex_gen(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("edited by hand"), "{err}");
    assert!(err.contains(&gen), "{err}");
    assert_eq!(snapshot(&dir), before, "a refused run writes nothing");

    let o = onex_gen(
        tmp.path(),
        &["new", "contract.yaml", "-o", "out", "--force"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!std::fs::read_to_string(&path)
        .unwrap()
        .contains("// hand edit"));
    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn orphans_are_removed_by_regeneration() {
    let (tmp, dir) = setup();
    // Record a file as generated by an earlier run that no longer generates it.
    let manifest_path = dir.join(".onex-gen/manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    let orphan = "src/generated/retired.rs";
    let contents = "// retired\n";
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(contents.as_bytes()))
    };
    m["files"].as_array_mut().unwrap().push(serde_json::json!({
        "path": orphan, "sha256": sha, "owner": "generated"
    }));
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&m).unwrap() + "\n",
    )
    .unwrap();
    std::fs::write(dir.join(orphan), contents).unwrap();

    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("orphan"),
        "{}",
        text(&o)
    );

    let o = onex_gen(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 removed"),
        "{}",
        text(&o)
    );
    assert!(!dir.join(orphan).exists());
    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_failing_run_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("good.yaml"), contract()).unwrap();
    std::fs::write(
        tmp.path().join("bad.yaml"),
        "name: node_bad\nnode_type: NOT_A_KIND\nevent_bus: [\n",
    )
    .unwrap();
    let o = onex_gen(tmp.path(), &["new", "good.yaml", "bad.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml:"), "{err}");
    assert!(
        !tmp.path().join("out").exists(),
        "nothing is written for anyone"
    );
    let entries: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(entries.len(), 2, "no staging folders left: {entries:?}");
}

#[test]
fn dry_run_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("contract.yaml"), contract()).unwrap();
    let o = onex_gen(
        tmp.path(),
        &["new", "contract.yaml", "-o", "out", "--dry-run"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("would write"), "{out}");
    assert!(out.contains("Cargo.toml"), "{out}");
    assert!(!tmp.path().join("out").exists());
}

/// Inserts `line` after the first line of `text` that starts with `after`.
fn insert_after(text: &str, after: &str, line: &str) -> String {
    let mut out = String::new();
    let mut done = false;
    for l in text.split_inclusive('\n') {
        out.push_str(l);
        if !done && l.starts_with(after) {
            out.push_str(line);
            out.push('\n');
            done = true;
        }
    }
    assert!(done, "no line starting with {after:?} in:\n{text}");
    out
}

fn read(dir: &Path, path: &str) -> String {
    std::fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The contract with another description and version, and a second
/// published topic: Cargo.toml, Cargo.lock, lib.rs, README.md and more change.
fn changed_contract() -> String {
    contract()
        .replace(
            "A minimal effect node for regen tests.",
            "An effect node for regen tests, changed.",
        )
        .replace("node_version: \"1.0.0\"", "node_version: \"1.1.0\"")
        .replace(
            "    - onex.evt.regen.thing-done.v1\n",
            "    - onex.evt.regen.thing-done.v1\n    - onex.evt.regen.thing-audited.v1\n",
        )
}

/// A user's dependency as cargo would record it after `cargo add url`.
fn add_user_dependency(dir: &Path) {
    let toml = insert_after(&read(dir, "Cargo.toml"), "uuid = ", "url = \"2\"");
    std::fs::write(dir.join("Cargo.toml"), toml).unwrap();
    let lock = read(dir, "Cargo.lock");
    let root = "name = \"node-regen-effect\"";
    assert!(lock.contains(root), "{lock}");
    let mut edited = String::new();
    let mut in_root = false;
    for l in lock.split_inclusive('\n') {
        if l.starts_with("name = ") {
            in_root = l.trim_end() == root;
        }
        if in_root && l.starts_with(" \"uuid") {
            edited.push_str(" \"url\",\n");
        }
        edited.push_str(l);
    }
    edited.push_str(
        "\n[[package]]\nname = \"url\"\nversion = \"2.5.4\"\n\
         source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
         checksum = \"32f8b686cadd1473f4bd0117a5d28d36b1ade384ea9b5069a1c40aefed7fda60\"\n",
    );
    std::fs::write(dir.join("Cargo.lock"), edited).unwrap();
}

#[test]
fn user_dependency_module_and_handler_edits_survive_a_contract_change() {
    let (tmp, dir) = setup();
    add_user_dependency(&dir);
    let lib = read(&dir, "src/lib.rs") + "pub mod db;\n";
    std::fs::write(dir.join("src/lib.rs"), &lib).unwrap();
    let db = "//! My database access.\n\npub fn connect() {}\n";
    std::fs::write(dir.join("src/db.rs"), db).unwrap();
    let handlers = read(&dir, "src/handlers.rs").replace("Ok(", "Ok(/* mine */ ");
    std::fs::write(dir.join("src/handlers.rs"), &handlers).unwrap();
    std::fs::create_dir_all(dir.join("tests/support")).unwrap();
    let mine = "#[test]\nfn mine() {}\n";
    std::fs::write(dir.join("tests/mine.rs"), mine).unwrap();
    std::fs::write(dir.join("tests/support/mod.rs"), "// helpers\n").unwrap();

    // The user's edits are theirs: check is clean and names the edited files.
    let o = onex_gen(tmp.path(), &["check", "out", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        report["crates"][0]["user_edits"],
        serde_json::json!(["Cargo.lock", "Cargo.toml", "src/lib.rs"]),
        "{}",
        text(&o)
    );

    std::fs::write(tmp.path().join("contract.yaml"), changed_contract()).unwrap();
    // check reports what the generator changes, not the user's lines.
    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("+version = \"1.1.0\""), "{out}");
    assert!(!out.contains("-url"), "a user's line is no drift: {out}");
    assert!(!out.contains("-pub mod db;"), "{out}");
    assert!(out.contains("Cargo.toml: has your edits"), "{out}");

    let o = onex_gen(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("3 merged"),
        "{}",
        text(&o)
    );

    let toml = read(&dir, "Cargo.toml");
    assert!(toml.contains("url = \"2\""), "{toml}");
    assert!(toml.contains("version = \"1.1.0\""), "{toml}");
    assert!(toml.contains("changed."), "{toml}");
    let lock = read(&dir, "Cargo.lock");
    assert!(lock.contains("name = \"url\""), "{lock}");
    assert!(lock.contains("\"url\",\n"), "{lock}");
    assert!(
        lock.contains("name = \"node-regen-effect\"\nversion = \"1.1.0\""),
        "{lock}"
    );
    let lib_now = read(&dir, "src/lib.rs");
    assert!(lib_now.contains("pub mod db;"), "{lib_now}");
    assert!(lib_now.contains("changed."), "{lib_now}");
    assert!(read(&dir, "README.md").contains("thing-audited"));
    assert_eq!(read(&dir, "src/db.rs"), db);
    assert_eq!(read(&dir, "src/handlers.rs"), handlers);
    assert_eq!(read(&dir, "tests/mine.rs"), mine);
    assert_eq!(read(&dir, "tests/support/mod.rs"), "// helpers\n");

    // In sync again, the user's edits still named and never orphans.
    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("src/lib.rs: has your edits"), "{out}");
    assert!(!out.contains("tests/mine.rs"), "{out}");
    assert!(!out.contains("src/db.rs"), "{out}");

    // And a second run changes nothing.
    let before = snapshot(&dir);
    let o = onex_gen(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn a_conflict_is_reported_with_exit_1_and_nothing_changes() {
    let (tmp, dir) = setup();
    // The user and the contract change the same line of Cargo.toml.
    let toml = read(&dir, "Cargo.toml").replace(
        "description = \"A minimal effect node for regen tests.\"",
        "description = \"My own description.\"",
    );
    assert!(toml.contains("My own description."));
    std::fs::write(dir.join("Cargo.toml"), &toml).unwrap();
    std::fs::write(tmp.path().join("contract.yaml"), changed_contract()).unwrap();
    let before = snapshot(&dir);
    let outside_before: Vec<_> = std::fs::read_dir(tmp.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    let o = onex_gen(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nothing was written"), "{err}");
    assert!(
        err.contains("Cargo.toml: your edits and onex-gen's changes touch the same lines"),
        "{err}"
    );
    assert!(err.contains("<<<<<<< yours (on disk)"), "{err}");
    assert!(
        err.contains("description = \"My own description.\""),
        "{err}"
    );
    assert!(
        err.contains("description = \"An effect node for regen tests, changed.\""),
        "{err}"
    );
    assert!(err.contains(">>>>>>> onex-gen (generated now)"), "{err}");
    assert_eq!(snapshot(&dir), before, "nothing changed");
    let outside: Vec<_> = std::fs::read_dir(tmp.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, outside_before, "no staging folder left");

    let o = onex_gen(tmp.path(), &["check", "out", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let finding = v["crates"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "Cargo.toml")
        .expect("a Cargo.toml finding")
        .clone();
    assert_eq!(
        finding["causes"],
        serde_json::json!(["contract_changed", "conflict"])
    );

    // --force writes the conflict markers for the user to resolve; check
    // points at them until they are gone.
    let o = onex_gen(
        tmp.path(),
        &["new", "contract.yaml", "-o", "out", "--force"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let toml = read(&dir, "Cargo.toml");
    assert!(toml.contains("<<<<<<< yours (on disk)\n"), "{toml}");
    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("unresolved conflict markers"),
        "{}",
        text(&o)
    );
    let resolved = toml
        .lines()
        .filter(|l| {
            !l.starts_with("<<<<<<< ")
                && !l.starts_with("||||||| ")
                && !l.starts_with("=======")
                && !l.starts_with(">>>>>>> ")
                && !l.contains("A minimal effect node")
                && !l.contains("changed.")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    std::fs::write(dir.join("Cargo.toml"), resolved).unwrap();
    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn edits_to_generated_folders_stay_drift() {
    let (tmp, dir) = setup();
    std::fs::write(dir.join("src/generated/mine.rs"), "// mine\n").unwrap();
    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("unknown file inside a generated folder"),
        "{}",
        text(&o)
    );
}

/// A small xorshift generator, seeded from the clock (the seed is printed so
/// a failing run can be repeated with ONEX_CRASH_SEED).
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::env::var("ONEX_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("crash test seed: {seed} (ONEX_CRASH_SEED)");
        Rng(seed)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn restore(dir: &Path, files: &[(String, Vec<u8>)]) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    for (rel, bytes) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

fn stage_folders(out: &Path) -> usize {
    std::fs::read_dir(out)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".onex-gen-stage-")
        })
        .count()
}

/// SIGKILL at a random moment of `onex-gen new` over an existing crate (with
/// user edits to merge), 100 times: the crate is always exactly the old one
/// or exactly the new one, manifest included, and the next run cleans up.
#[cfg(unix)]
#[test]
fn sigkill_during_new_leaves_the_old_or_the_new_crate() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let (tmp, dir) = setup();
    add_user_dependency(&dir);
    let lib = read(&dir, "src/lib.rs") + "pub mod db;\n";
    std::fs::write(dir.join("src/lib.rs"), lib).unwrap();
    std::fs::write(dir.join("src/db.rs"), "pub fn connect() {}\n").unwrap();
    let old = snapshot(&dir);
    std::fs::write(tmp.path().join("contract.yaml"), changed_contract()).unwrap();

    let run = || {
        Command::new(env!("CARGO_BIN_EXE_onex-gen"))
            .current_dir(tmp.path())
            .args(["new", "contract.yaml", "-o", "out"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("onex-gen starts")
    };
    // How long an uninterrupted run takes here (the fastest and the slowest
    // of three: on a loaded machine a run can take several times as long).
    let mut full = Duration::MAX;
    let mut slow = Duration::ZERO;
    let mut new = Vec::new();
    for _ in 0..3 {
        restore(&dir, &old);
        let started = Instant::now();
        assert!(run().wait().unwrap().success());
        full = full.min(started.elapsed());
        slow = slow.max(started.elapsed());
        new = snapshot(&dir);
    }
    assert_ne!(new, old);
    assert!(
        new.iter()
            .any(|(p, b)| p == "Cargo.toml" && String::from_utf8_lossy(b).contains("url = \"2\"")),
        "the new crate merged the user's edits"
    );

    let out = tmp.path().join("out");
    let mut rng = Rng::new();
    let (mut was_old, mut was_new, mut finished, mut mid_write) = (0, 0, 0, 0);
    for i in 0..100 {
        restore(&dir, &old);
        // Half the kills anywhere in a fast run, half from its last third
        // (where the crate is staged and swapped in) to twice the slowest
        // run, so that some land at the swap however loaded the machine is.
        let late_end = slow.mul_f64(2.0).as_secs_f64() / full.as_secs_f64();
        let at = if i % 2 == 0 {
            rng.unit()
        } else {
            0.66 + (late_end - 0.66) * rng.unit()
        };
        let mut child = run();
        std::thread::sleep(full.mul_f64(at));
        let exited_already = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        child.wait().unwrap();
        let now = snapshot(&dir);
        if stage_folders(&out) > 0 {
            mid_write += 1;
            for e in std::fs::read_dir(&out).unwrap() {
                let e = e.unwrap();
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(".onex-gen-stage-")
                {
                    std::fs::remove_dir_all(e.path()).unwrap();
                }
            }
        }
        if now == old {
            was_old += 1;
        } else if now == new {
            if exited_already {
                finished += 1;
            } else {
                was_new += 1;
            }
        } else {
            let differs: Vec<&str> = now
                .iter()
                .filter(|f| !old.contains(f) && !new.contains(f))
                .map(|(p, _)| p.as_str())
                .collect();
            panic!(
                "kill {i} at {:.0}% of a run left a crate that is neither old nor new \
                 (files matching neither: {differs:?})",
                at * 100.0
            );
        }
    }
    eprintln!(
        "crash test: 100 kills: {was_old} left the old crate, {was_new} the new one, \
         {finished} runs had finished; {mid_write} kills left a staging folder \
         (killed while staging or swapping); an uninterrupted run took {full:?}"
    );
    assert!(was_old > 0, "no kill landed before the swap");
    assert!(was_new + finished > 0, "no run got as far as the swap");

    // The next run finishes the job and removes what a killed run left.
    restore(&dir, &old);
    let stale = out.join(".onex-gen-stage-node_regen_effect-killed/crate/src");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("lib.rs"), "// half written\n").unwrap();
    let o = onex_gen(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(snapshot(&dir), new);
    assert_eq!(stage_folders(&out), 0, "stale staging folders are removed");
}

/// Runs `onex-gen ARGS` in `cwd`; kills it and fails the test when it runs
/// longer than 20 s (a run here takes well under a second).
#[cfg(unix)]
fn onex_gen_bounded(cwd: &Path, args: &[&str]) -> std::process::Output {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_onex-gen"))
        .current_dir(cwd)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("onex-gen starts");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("onex-gen {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A symbolic link inside the crate, where onex-gen writes, is never
/// followed: not a linked folder (new files would land outside the crate),
/// not a linked file (even with --force), and a FIFO there is not read
/// (it would block). Each is refused with the path named; nothing is
/// written, inside the crate or outside it.
#[cfg(unix)]
#[test]
fn links_and_special_files_in_the_crate_are_never_written_through() {
    let (tmp, dir) = setup();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let before = snapshot(&dir);

    // src/generated/ is a link to a folder outside the crate.
    let generated = dir.join("src/generated");
    let moved = tmp.path().join("generated.moved");
    std::fs::rename(&generated, &moved).unwrap();
    std::os::unix::fs::symlink(&outside, &generated).unwrap();
    let o = onex_gen_bounded(
        tmp.path(),
        &["new", "contract.yaml", "-o", "out", "--force"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("src/generated: is a symbolic link").count(),
        1,
        "said once: {}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote through the link"
    );
    std::fs::remove_file(&generated).unwrap();
    std::fs::rename(&moved, &generated).unwrap();
    assert_eq!(snapshot(&dir), before);

    // A generated file is a link to a file outside the crate.
    let file = a_generated_rs_file(&dir);
    let saved = std::fs::read(dir.join(&file)).unwrap();
    std::fs::remove_file(dir.join(&file)).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join(&file)).unwrap();
    let o = onex_gen_bounded(
        tmp.path(),
        &["new", "contract.yaml", "-o", "out", "--force"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("{file}: is a symbolic link")),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    std::fs::remove_file(dir.join(&file)).unwrap();

    // A FIFO at a generated path.
    let fifo = std::ffi::CString::new(dir.join(&file).to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let o = onex_gen_bounded(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("{file}: is not a regular file")),
        "{}",
        text(&o)
    );
    std::fs::remove_file(dir.join(&file)).unwrap();
    std::fs::write(dir.join(&file), saved).unwrap();
    assert_eq!(snapshot(&dir), before);
    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// Two `onex-gen new` writing into one folder take turns: while one holds
/// the folder (planning, staging, swapping), another waits, and does not
/// take the first one's staging folder for a killed run's leftovers and
/// delete it (which lost the user's files when the first then swapped in
/// what was left of its stage).
#[cfg(unix)]
#[test]
fn runs_writing_into_one_folder_take_turns() {
    use std::os::fd::AsRawFd as _;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let (tmp, dir) = setup();
    let out = tmp.path().join("out");
    std::fs::write(tmp.path().join("contract.yaml"), changed_contract()).unwrap();
    // A run in progress: it holds the folder and is staging its crate.
    let held = std::fs::File::open(&out).unwrap();
    // SAFETY: flock(2) on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let stage = out.join(".onex-gen-stage-node_regen_effect-running/crate");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::write(stage.join("Cargo.toml"), "# being staged\n").unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_onex-gen"))
        .current_dir(tmp.path())
        .args(["new", "contract.yaml", "-o", "out"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let waited = child.try_wait().unwrap().is_none();
    let stage_kept = stage.join("Cargo.toml").is_file();
    drop(held);
    let o = child.wait_with_output().unwrap();
    assert!(waited, "the second run did not wait: {}", text(&o));
    assert!(stage_kept, "the second run deleted the first one's stage");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        read(&dir, "Cargo.toml").contains("version = \"1.1.0\""),
        "the new crate is in"
    );
    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// The crate folder itself may be a link within the output folder, but not
/// one that leads out of it: `new` writes only inside `-o`.
#[cfg(unix)]
#[test]
fn a_crate_folder_linked_outside_the_output_folder_is_refused() {
    let (tmp, dir) = setup();
    std::fs::write(tmp.path().join("contract.yaml"), changed_contract()).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::rename(&dir, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &dir).unwrap();
    let before = snapshot(&elsewhere);
    let o = onex_gen_bounded(
        tmp.path(),
        &["new", "contract.yaml", "-o", "out", "--force"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is a symbolic link to a folder outside"),
        "{}",
        text(&o)
    );
    assert_eq!(snapshot(&elsewhere), before);
    assert!(dir.is_symlink());

    // A link to a folder inside the output folder is followed.
    std::fs::remove_file(&dir).unwrap();
    let inside = tmp.path().join("out/real");
    std::fs::rename(&elsewhere, &inside).unwrap();
    std::os::unix::fs::symlink("real", &dir).unwrap();
    let o = onex_gen_bounded(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(dir.is_symlink());
    assert!(read(&inside, "Cargo.toml").contains("version = \"1.1.0\""));
}

/// Leftover staging folders are cleared before a run, and a killed run's
/// parked crate is put back from them; a link planted under a staging
/// folder's name, or under the name of the crate it parked, is never
/// followed: the folder it leads to stays where it is, untouched.
#[cfg(unix)]
#[test]
fn links_planted_as_staging_folders_are_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("contract.yaml"), contract()).unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(elsewhere.join("old/src")).unwrap();
    std::fs::write(elsewhere.join("old/src/secret.rs"), "// not onex-gen's\n").unwrap();
    let before = snapshot(&elsewhere);
    // A link named like a stage, leading outside.
    std::os::unix::fs::symlink(&elsewhere, out.join(".onex-gen-stage-node_regen_effect-a"))
        .unwrap();
    // A real stage whose parked crate is a link leading outside.
    let stage = out.join(".onex-gen-stage-node_regen_effect-b");
    std::fs::create_dir(&stage).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("old"), stage.join("old")).unwrap();

    let o = onex_gen_bounded(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        snapshot(&elsewhere),
        before,
        "the outside folder is untouched"
    );
    let dir = out.join("node_regen_effect");
    assert!(!dir.is_symlink() && dir.join("Cargo.toml").is_file());
    assert!(
        !dir.join("src/secret.rs").exists(),
        "nothing was moved in from outside"
    );
    let o = onex_gen(tmp.path(), &["check", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// One run may write several crates of one node into one folder, each
/// given its own folder (the library's exact destinations): staging one
/// does not take another's stage for a killed run's leftovers, nor one of a
/// folder whose name starts with its own.
#[test]
fn crates_of_one_node_in_one_folder_are_all_written() {
    use onex_gen::pipeline::{run_jobs, Destination};
    use onex_gen::stages::write::{write, WriteOptions};

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("contract.yaml");
    std::fs::write(&path, contract()).unwrap();
    let out = tmp.path().join("out");
    let mut jobs = common::path_jobs(&[path.clone(), path.clone(), path], &out);
    jobs[2].destination = Destination::Exact(out.join("0-again"));
    let gens: Vec<_> = run_jobs(&jobs, false)
        .into_iter()
        .map(|r| r.expect("generates"))
        .collect();
    write(&gens, &WriteOptions::default()).expect("writes every crate");
    let mut entries: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, ["0", "0-again", "1"], "no stage left behind");
    for dir in &entries {
        let manifest = out.join(dir).join(".onex-gen/manifest.json");
        assert!(manifest.is_file(), "{dir} was not written");
    }
}
