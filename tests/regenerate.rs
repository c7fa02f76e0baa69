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
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("contract.yaml"), contract()).unwrap();
    let o = onex_gen(tmp.path(), &["new", "contract.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
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
