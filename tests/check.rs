//! `onex-gen check`: every cause of drift, the output formats and the exit codes.

use std::path::{Path, PathBuf};

mod common;

use common::{onex_gen, text};

fn contract() -> String {
    common::effect_contract("check")
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = common::generated_effect("check");
    (tmp, PathBuf::from("out/node_check_effect"))
}

fn manifest(tmp: &Path, dir: &Path) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(tmp.join(dir).join(".onex-gen/manifest.json")).unwrap(),
    )
    .unwrap()
}

fn write_manifest(tmp: &Path, dir: &Path, m: &serde_json::Value) {
    std::fs::write(
        tmp.join(dir).join(".onex-gen/manifest.json"),
        serde_json::to_string_pretty(m).unwrap() + "\n",
    )
    .unwrap();
}

fn generated_file(tmp: &Path, dir: &Path) -> String {
    manifest(tmp, dir)["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["owner"] == "generated" && f["path"].as_str().unwrap().starts_with("src/generated/")
        })
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .unwrap()
}

/// Runs `check --format json` and returns (exit code, the causes per path).
fn check_json(tmp: &Path) -> (i32, Vec<(String, Vec<String>)>, serde_json::Value) {
    let o = onex_gen(tmp, &["check", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("json output ({e}): {}", text(&o)));
    let mut causes = Vec::new();
    for c in v["crates"].as_array().unwrap() {
        for f in c["findings"].as_array().into_iter().flatten() {
            causes.push((
                f["path"].as_str().unwrap().to_owned(),
                f["causes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap().to_owned())
                    .collect(),
            ));
        }
    }
    (o.status.code().unwrap(), causes, v)
}

fn has_cause(causes: &[(String, Vec<String>)], path: &str, cause: &str) -> bool {
    causes
        .iter()
        .any(|(p, c)| p == path && c.iter().any(|x| x == cause))
}

#[test]
fn a_fresh_crate_is_in_sync_from_its_folder_and_by_default() {
    let (tmp, dir) = setup();
    let o = onex_gen(tmp.path(), &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("in sync"));
    let o = onex_gen(&tmp.path().join(&dir), &["check", "."]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_hand_edit_is_drift_with_a_unified_diff() {
    let (tmp, dir) = setup();
    let gen = generated_file(tmp.path(), &dir);
    let path = tmp.path().join(&dir).join(&gen);
    let mut s = std::fs::read_to_string(&path).unwrap();
    s.push_str("// hand edit\n");
    std::fs::write(&path, s).unwrap();
    let (code, causes, _) = check_json(tmp.path());
    assert_eq!(code, 1);
    assert!(has_cause(&causes, &gen, "edited_by_hand"), "{causes:?}");
    let o = onex_gen(tmp.path(), &["check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("--- a/{gen}")), "{out}");
    assert!(out.contains("-// hand edit"), "{out}");
    assert!(out.contains("generated file edited by hand"), "{out}");
}

#[test]
fn a_changed_contract_is_named_as_the_cause() {
    let (tmp, _dir) = setup();
    let changed = contract().replace(
        "    - onex.evt.check.thing-done.v1\n",
        "    - onex.evt.check.thing-done.v1\n    - onex.evt.check.thing-failed.v1\n",
    );
    std::fs::write(tmp.path().join("contract.yaml"), changed).unwrap();
    let (code, causes, _) = check_json(tmp.path());
    assert_eq!(code, 1);
    assert!(!causes.is_empty());
    assert!(
        causes
            .iter()
            .all(|(_, c)| c == &["contract_changed".to_owned()]),
        "{causes:?}"
    );
    assert!(has_cause(
        &causes,
        ".onex-gen/manifest.json",
        "contract_changed"
    ));
}

#[test]
fn a_changed_generator_is_named_as_the_cause() {
    let (tmp, dir) = setup();
    // Simulate output of an older generator: different file contents, a
    // manifest that records them, and another template set hash.
    let gen = generated_file(tmp.path(), &dir);
    let old = "// written by an older onex-gen\n";
    std::fs::write(tmp.path().join(&dir).join(&gen), old).unwrap();
    let mut m = manifest(tmp.path(), &dir);
    m["template_set_hash"] = "0000".into();
    for f in m["files"].as_array_mut().unwrap() {
        if f["path"] == gen.as_str() {
            use sha2::Digest;
            f["sha256"] = hex::encode(sha2::Sha256::digest(old.as_bytes())).into();
        }
    }
    write_manifest(tmp.path(), &dir, &m);
    let (code, causes, _) = check_json(tmp.path());
    assert_eq!(code, 1);
    assert!(has_cause(&causes, &gen, "generator_changed"), "{causes:?}");
    assert!(!has_cause(&causes, &gen, "edited_by_hand"), "{causes:?}");
}

#[test]
fn missing_orphan_and_unknown_files_are_reported() {
    let (tmp, dir) = setup();
    let crate_dir = tmp.path().join(&dir);
    let gen = generated_file(tmp.path(), &dir);
    std::fs::remove_file(crate_dir.join(&gen)).unwrap();
    std::fs::write(crate_dir.join("src/generated/stray.rs"), "// stray\n").unwrap();
    let mut m = manifest(tmp.path(), &dir);
    m["files"].as_array_mut().unwrap().push(serde_json::json!({
        "path": "src/generated/retired.rs", "sha256": "00", "owner": "generated"
    }));
    write_manifest(tmp.path(), &dir, &m);
    std::fs::write(crate_dir.join("src/generated/retired.rs"), "// retired\n").unwrap();

    let (code, causes, _) = check_json(tmp.path());
    assert_eq!(code, 1);
    assert!(has_cause(&causes, &gen, "missing"), "{causes:?}");
    assert!(
        has_cause(&causes, "src/generated/stray.rs", "unknown_file"),
        "{causes:?}"
    );
    assert!(
        has_cause(&causes, "src/generated/retired.rs", "orphan"),
        "{causes:?}"
    );
}

#[test]
fn github_format_prints_annotations() {
    let (tmp, dir) = setup();
    let gen = generated_file(tmp.path(), &dir);
    let path = tmp.path().join(&dir).join(&gen);
    std::fs::write(&path, "// replaced\n").unwrap();
    let o = onex_gen(tmp.path(), &["check", "--format", "github"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("::error file="))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&format!("{}/{gen},line=1", dir.display())),
        "{line}"
    );
    assert!(line.contains("edited by hand"), "{line}");
    assert!(!line[2..].contains('\n'));
}

#[test]
fn errors_exit_2() {
    let (tmp, dir) = setup();
    // No crate here.
    let empty = tempfile::tempdir().unwrap();
    let o = onex_gen(empty.path(), &["check"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // The contract the manifest points at is gone.
    std::fs::remove_file(tmp.path().join("contract.yaml")).unwrap();
    let o = onex_gen(tmp.path(), &["check", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("contract.yaml"),
        "{}",
        text(&o)
    );
    // A path that is a file, not a crate folder.
    let o = onex_gen(tmp.path(), &["check", "out/node_check_effect/Cargo.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("out/node_check_effect/Cargo.toml: is a file, not a folder"),
        "{}",
        text(&o)
    );
    // A broken manifest.
    std::fs::write(tmp.path().join(&dir).join(".onex-gen/manifest.json"), "{").unwrap();
    let o = onex_gen(tmp.path(), &["check"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// A manifest is data from the crate folder, which anyone may edit: a file
/// record naming a path outside the crate (absolute, or climbing with `..`)
/// is refused by `check` and `new` alike, and nothing there is read, shown
/// or removed.
#[test]
fn a_manifest_naming_files_outside_the_crate_is_refused() {
    let (tmp, dir) = setup();
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "TOKEN=hunter2\n").unwrap();
    let hash = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(b"TOKEN=hunter2\n"))
    };
    let good = manifest(tmp.path(), &dir);
    for path in [
        secret.to_str().unwrap().to_owned(),
        "../../secret.txt".to_owned(),
        "src/../../../secret.txt".to_owned(),
    ] {
        let mut m = good.clone();
        m["files"].as_array_mut().unwrap().push(serde_json::json!({
            "path": path, "sha256": hash, "owner": "generated"
        }));
        write_manifest(tmp.path(), &dir, &m);
        let o = onex_gen(tmp.path(), &["check"]);
        assert_eq!(o.status.code(), Some(2), "{path}: {}", text(&o));
        let shown = text(&o);
        assert!(!shown.contains("hunter2"), "{path}: {shown}");
        assert!(
            shown.contains("is not a path inside the crate"),
            "{path}: {shown}"
        );
        let o = onex_gen(
            tmp.path(),
            &["new", "contract.yaml", "-o", "out", "--force"],
        );
        assert_eq!(o.status.code(), Some(2), "{path}: {}", text(&o));
        assert!(
            text(&o).contains("is not a path inside the crate"),
            "{path}: {}",
            text(&o)
        );
        assert!(secret.is_file());
    }
    write_manifest(tmp.path(), &dir, &good);
    assert_eq!(check_json(tmp.path()).0, 0);
}

/// `check` reads no file through a symbolic link: a generated file replaced
/// by a link is drift, named as a link, and what it points at is not shown.
#[cfg(unix)]
#[test]
fn check_does_not_read_through_links() {
    let (tmp, dir) = setup();
    let secret = tmp.path().join("secret.txt");
    std::fs::write(&secret, "TOKEN=hunter2\n").unwrap();
    let file = generated_file(tmp.path(), &dir);
    let at = tmp.path().join(&dir).join(&file);
    std::fs::remove_file(&at).unwrap();
    std::os::unix::fs::symlink(&secret, &at).unwrap();
    let (code, causes, v) = check_json(tmp.path());
    assert_eq!(code, 1, "{v:#}");
    assert!(
        has_cause(&causes, &file, "not_a_regular_file"),
        "{causes:?}"
    );
    assert!(!v.to_string().contains("hunter2"), "{v:#}");
}

/// flock(2) held on a folder from the test, as a run of `new` (`LOCK_EX`)
/// or `check` (`LOCK_SH`) holds it; released when dropped.
#[cfg(unix)]
struct FolderFlock(#[allow(dead_code)] std::fs::File);

#[cfg(unix)]
impl FolderFlock {
    fn hold(dir: &Path, mode: libc::c_int) -> Self {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::File::open(dir).unwrap();
        // SAFETY: flock(2) on a descriptor this test owns.
        assert_eq!(unsafe { libc::flock(file.as_raw_fd(), mode) }, 0);
        Self(file)
    }
}

/// Starts `check PATH` in `cwd`.
fn spawn_check(cwd: &Path, path: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_onex-gen"))
        .current_dir(cwd)
        .args(["check", path])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Whether `child` is still running after `wait`.
fn still_running_after(child: &mut std::process::Child, wait: std::time::Duration) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < wait {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    true
}

/// `check` while `new --force` keeps swapping new crates into the same
/// folder: it never reads a crate half swapped (one crate's manifest,
/// another's files), so every run is in sync.
#[cfg(unix)]
#[test]
fn check_during_regeneration_reads_one_whole_crate() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (tmp, _dir) = setup();
    // Two copies of one contract: the crate names the copy it was generated
    // from, so each run swaps in another crate, and each is in sync.
    std::fs::write(tmp.path().join("same.yaml"), contract()).unwrap();
    let stop = AtomicBool::new(false);
    let (runs, checks) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut runs = 0;
            for c in ["same.yaml", "contract.yaml"].iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let o = onex_gen(tmp.path(), &["new", c, "-o", "out", "--force"]);
                assert_eq!(o.status.code(), Some(0), "{}", text(&o));
                runs += 1;
            }
            runs
        });
        let checks: Vec<_> = (0..12)
            .map(|_| onex_gen(tmp.path(), &["check", "out"]))
            .collect();
        stop.store(true, Ordering::Relaxed);
        (writer.join().unwrap(), checks)
    });
    assert!(runs >= 2, "the crate was regenerated {runs} time(s)");
    for o in &checks {
        assert_eq!(o.status.code(), Some(0), "{}", text(o));
    }
}

/// `check` runs do not wait for each other: a shared lock on the output
/// folder, as another `check` holds it, lets `check` through.
#[cfg(unix)]
#[test]
fn checks_do_not_wait_for_each_other() {
    let (tmp, _dir) = setup();
    let other_check = FolderFlock::hold(&tmp.path().join("out"), libc::LOCK_SH);
    let mut child = spawn_check(tmp.path(), "out");
    let waited = still_running_after(&mut child, std::time::Duration::from_secs(10));
    drop(other_check);
    let o = child.wait_with_output().unwrap();
    assert!(!waited, "check waited for another check: {}", text(&o));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// `check` waits while a run of `new` holds the output folder (an exclusive
/// lock), then reads the crate as that run left it. Meanwhile the crate is
/// parked in a staging folder, as a swap by two renames leaves it for a
/// moment: a `check` that did not wait would find no crate there.
#[cfg(unix)]
#[test]
fn check_waits_for_a_run_writing_the_folder() {
    let (tmp, dir) = setup();
    let crate_dir = tmp.path().join(&dir);
    let new_run = FolderFlock::hold(&tmp.path().join("out"), libc::LOCK_EX);
    let stage = tmp
        .path()
        .join("out/.onex-gen-stage-node_check_effect-swapping");
    std::fs::create_dir(&stage).unwrap();
    std::fs::rename(&crate_dir, stage.join("old")).unwrap();
    let mut children = [
        spawn_check(tmp.path(), "out"),
        spawn_check(tmp.path(), dir.to_str().unwrap()),
    ];
    std::thread::sleep(std::time::Duration::from_millis(300));
    let waited: Vec<bool> = children
        .iter_mut()
        .map(|c| c.try_wait().unwrap().is_none())
        .collect();
    std::fs::rename(stage.join("old"), &crate_dir).unwrap();
    std::fs::remove_dir(&stage).unwrap();
    drop(new_run);
    for (child, waited) in children.into_iter().zip(waited) {
        let o = child.wait_with_output().unwrap();
        assert!(waited, "check did not wait for the folder: {}", text(&o));
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
}
