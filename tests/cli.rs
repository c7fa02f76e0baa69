//! The command line: exit codes, located diagnostics, JSON output, stages,
//! schema, report and diff.

use std::path::Path;

mod common;

use common::{onex_gen, text};

fn contract() -> String {
    common::effect_contract("cli")
}

fn with_contracts(files: &[(&str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(tmp.path().join(name), body).unwrap();
    }
    tmp
}

#[test]
fn stages_lists_the_pipeline() {
    let o = onex_gen(Path::new("."), &["stages"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "1    parse",
        "bytes -> RawContract",
        "4.5  event-bus wiring",
        "5    verify",
        "FileSet -> VerifiedFileSet",
        "VerifiedFileSet -> disk + manifest",
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }
}

#[test]
fn schema_prints_a_json_schema() {
    let o = onex_gen(Path::new("."), &["schema"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("schema is JSON");
    assert!(
        v.get("properties").is_some() || v.get("$schema").is_some(),
        "{v}"
    );
}

#[test]
fn validate_accepts_a_good_contract_and_locates_errors_in_a_bad_one() {
    let tmp = with_contracts(&[
        ("good.yaml", &contract()),
        (
            "bad.yaml",
            "name: node_bad\nnode_type: EFFECT_GENERIC\nevent_bus:\n  publish_topics:\n    - \"not a topic!\"\n",
        ),
    ]);
    let o = onex_gen(tmp.path(), &["validate", "good.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("node_cli_effect"));

    let o = onex_gen(tmp.path(), &["validate", "good.yaml", "bad.yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml:5:"), "{err}");
    assert!(err.contains("/event_bus/publish_topics/0"), "{err}");

    let o = onex_gen(tmp.path(), &["validate", "bad.yaml", "--format", "json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let e = lines
        .iter()
        .find(|d| d["severity"] == "error")
        .expect("an error line");
    assert_eq!(e["file"], "bad.yaml");
    assert_eq!(e["line"], 5);
    assert_eq!(e["pointer"], "/event_bus/publish_topics/0");
}

#[test]
fn malformed_yaml_exits_2_without_writing() {
    let tmp = with_contracts(&[("broken.yaml", "name: [unclosed\n")]);
    let o = onex_gen(tmp.path(), &["new", "broken.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("broken.yaml:"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn new_writes_the_crate_and_reports_what_it_made() {
    let tmp = with_contracts(&[("c.yaml", &contract())]);
    let o = onex_gen(tmp.path(), &["new", "c.yaml", "-o", "out", "--report"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("node_cli_effect (effect)"), "{out}");
    assert!(
        out.contains("consumes (1): onex.cmd.cli.do-thing.v1"),
        "{out}"
    );
    assert!(out.contains("report: 1 contract(s)"), "{out}");
    let dir = tmp.path().join("out/node_cli_effect");
    for f in [
        "Cargo.toml",
        "src/main.rs",
        ".env.template",
        "compose.yaml",
        ".onex-gen/manifest.json",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".onex-gen/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["contract"]["path"], "../../c.yaml");
    assert_eq!(m["generator_version"], env!("CARGO_PKG_VERSION"));

    let o = onex_gen(
        tmp.path(),
        &[
            "new", "c.yaml", "-o", "out2", "--report", "--format", "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json report");
    assert_eq!(v["contracts"][0]["kind"], "effect");
}

#[test]
fn runtime_path_is_recorded_relative_to_the_crate() {
    let tmp = with_contracts(&[("c.yaml", &contract())]);
    std::fs::create_dir_all(tmp.path().join("rt")).unwrap();
    let o = onex_gen(
        tmp.path(),
        &["new", "c.yaml", "-o", "a/b", "--runtime-path", "rt"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let dir = tmp.path().join("a/b/node_cli_effect");
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".onex-gen/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["options"]["runtime"]["kind"], "path");
    assert_eq!(m["options"]["runtime"]["path"], "../../../rt");
    let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("../../../rt"), "{cargo}");
}

#[test]
fn diff_reports_breaking_changes_and_exits_1() {
    let removed_topic = contract().replace(
        "    - onex.evt.cli.thing-done.v1\n",
        "    - onex.evt.cli.thing-finished.v1\n",
    );
    let bumped = removed_topic.replace("node_version: \"1.0.0\"", "node_version: \"2.0.0\"");
    let new_required = contract()
        .replace(
            "      - path: str\n",
            "      - path: str\n      - token: str\n",
        )
        .replace("node_version: \"1.0.0\"", "node_version: \"1.1.0\"");
    let tmp = with_contracts(&[
        ("v1.yaml", &contract()),
        ("renamed.yaml", &removed_topic),
        ("bumped.yaml", &bumped),
        ("required.yaml", &new_required),
    ]);

    let o = onex_gen(tmp.path(), &["diff", "v1.yaml", "v1.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let o = onex_gen(tmp.path(), &["diff", "v1.yaml", "renamed.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("BREAKING event_bus.publish: topic onex.evt.cli.thing-done.v1 renamed to onex.evt.cli.thing-finished.v1"), "{out}");
    assert!(out.contains("version"), "{out}");

    let o = onex_gen(
        tmp.path(),
        &["diff", "v1.yaml", "bumped.yaml", "--format", "json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kinds: Vec<&str> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"topic_renamed"), "{kinds:?}");
    assert!(!kinds.contains(&"version_not_bumped"), "{kinds:?}");

    let o = onex_gen(tmp.path(), &["diff", "v1.yaml", "required.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("required input token added"), "{out}");
    assert!(
        out.contains("breaking changes need a major version bump"),
        "{out}"
    );

    let o = onex_gen(tmp.path(), &["diff", "v1.yaml", "missing.yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn new_with_json_format_prints_the_plan_as_json() {
    let tmp = with_contracts(&[("c.yaml", &contract())]);
    let o = onex_gen(
        tmp.path(),
        &[
            "new",
            "c.yaml",
            "-o",
            "out",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json plan");
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["crates"][0]["node_name"], "node_cli_effect");
    assert!(v["crates"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["path"] == "Cargo.toml" && a["action"] == "create"));
    assert!(!tmp.path().join("out").exists());
}

/// `onex-gen serve|request|registry|bus` run the `onex-gen-bus` binary found
/// beside `onex-gen` (or on PATH), with the arguments as given, and pass its
/// exit status on; without it they say how to get it and exit 2.
#[cfg(unix)]
#[test]
fn bus_commands_run_the_bus_binary_or_say_how_to_get_it() {
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::Command;

    let tmp = tempfile::tempdir().unwrap();
    let gen = tmp.path().join("onex-gen");
    std::fs::copy(env!("CARGO_BIN_EXE_onex-gen"), &gen).unwrap();
    let empty_path = tmp.path().join("empty");
    std::fs::create_dir(&empty_path).unwrap();
    // Another test's process forked while the copy was open for writing
    // holds it open until that process execs: running the copy meanwhile
    // fails with "text file busy" (ETXTBSY), so it is tried again.
    let run = |args: &[&str]| {
        for _ in 0..100 {
            match Command::new(&gen)
                .args(args)
                .env("PATH", &empty_path)
                .output()
            {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other.unwrap(),
            }
        }
        panic!("{} stayed busy for 2 s", gen.display())
    };

    let o = run(&["serve", "--output-root", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("onex-gen-bus") && err.contains("cargo build --locked -p onex-gen-bus"),
        "{err}"
    );

    let bus = tmp.path().join("onex-gen-bus");
    std::fs::write(&bus, "#!/bin/sh\necho \"got: $*\"\nexit 7\n").unwrap();
    std::fs::set_permissions(&bus, std::fs::Permissions::from_mode(0o755)).unwrap();
    for command in ["serve", "request", "registry", "bus"] {
        let o = run(&[command, "--help", "a b", "-x"]);
        assert_eq!(o.status.code(), Some(7), "{}", text(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("got: {command} --help a b -x\n")
        );
    }
}

/// A reader that goes away (`onex-gen schema | head`) ends the output
/// quietly: exit 0, no panic.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    use std::process::{Command, Stdio};
    for args in [&["schema"][..], &["stages"]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_onex-gen"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        assert!(o.stderr.is_empty(), "{args:?}: {}", text(&o));
    }
}

/// `--format github` prints every diagnostic as a GitHub Actions annotation
/// at its file, line and column.
#[test]
fn validate_with_github_format_prints_annotations() {
    let tmp = with_contracts(&[(
        "bad.yaml",
        "name: node_bad\nnode_type: EFFECT_GENERIC\nevent_bus:\n  publish_topics:\n    - \"not a topic!\"\n",
    )]);
    let o = onex_gen(tmp.path(), &["validate", "bad.yaml", "--format", "github"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines().any(|l| l.starts_with(
            "::error file=bad.yaml,line=5,col=7,title=E-TOPIC-NAME::at /event_bus/publish_topics/0: "
        )),
        "{out}"
    );
    assert!(o.stderr.is_empty(), "{}", text(&o));
}

/// An error from the file system is said once: the binary adds context to
/// the library's error without repeating its cause.
#[cfg(unix)]
#[test]
fn a_file_system_error_names_its_cause_once() {
    let tmp = with_contracts(&[("c.yaml", &contract())]);
    std::fs::create_dir(tmp.path().join("out")).unwrap();
    let name = contract()
        .lines()
        .find_map(|l| l.strip_prefix("name: "))
        .unwrap()
        .to_owned();
    // The crate folder is a link to a folder that does not exist.
    std::os::unix::fs::symlink(tmp.path().join("gone"), tmp.path().join("out").join(&name))
        .unwrap();
    let o = onex_gen(tmp.path(), &["new", "c.yaml", "-o", "out"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!tmp.path().join("gone").exists());
}

/// The manifest records the contract's path (relative to the crate) as
/// UTF-8 text for `check` to find it again; a path that is not UTF-8 would
/// be recorded with replacement characters. `new` refuses it up front:
/// exit 2, a located error, nothing written.
#[cfg(target_os = "linux")]
#[test]
fn a_contract_path_that_is_not_utf8_is_refused() {
    use std::os::unix::ffi::OsStrExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join(std::ffi::OsStr::from_bytes(b"c\xff"));
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("c.yaml"), contract()).unwrap();
    let given = Path::new(std::ffi::OsStr::from_bytes(b"c\xff")).join("c.yaml");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_onex-gen"))
        .current_dir(tmp.path())
        .arg("new")
        .arg(&given)
        .args(["-o", "out"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("error[E-PATH]"), "{err}");
    assert!(err.contains("is not UTF-8"), "{err}");
    assert!(!tmp.path().join("out").exists());
}
