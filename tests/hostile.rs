//! Hostile input, fed to the real binary as an attacker would: every case
//! ends with exit status 2 and a located error within 10 s, in a process
//! whose address space is limited to 1 GiB, and nothing is written.
//!
//! The contracts are the error fixtures of stages 1 and 2
//! (`stages/1-parse/err`, `stages/2-validate/err`: alias bomb, 20,000-deep
//! nesting, non-UTF-8, YAML tags, an empty file, a non-mapping document,
//! wrong types everywhere, path-like node names, topics with spaces or shell
//! characters, undeclared FSM states...), plus what cannot be a fixture: a
//! 100 MB file, an endless device, a folder with no contract in it, and an
//! output path that is a file. A byte-order mark and CR LF line ends are
//! accepted.

#![cfg(unix)]

mod common;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIME_LIMIT: Duration = Duration::from_secs(10);
const MEMORY_LIMIT: u64 = 1 << 30;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// How one run of the binary ended.
struct Run {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
    max_rss_bytes: u64,
}

/// Runs `onex-gen ARGS` in `cwd` with a 1 GiB address-space limit; kills it
/// and fails the test when it runs past the time limit. The child is reaped
/// with wait4(2), which also gives its peak resident size (an upper bound: it
/// counts the test process's pages shared before exec).
#[allow(clippy::zombie_processes)] // reaped by wait4 below
fn run_limited(cwd: &Path, args: &[&str]) -> Run {
    let err_path = cwd.join(".stderr");
    let err_file = std::fs::File::create(&err_path).expect("stderr file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onex-gen"));
    cmd.current_dir(cwd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: MEMORY_LIMIT,
                rlim_max: MEMORY_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let child = cmd.spawn().expect("onex-gen starts");
    let pid = child.id() as libc::pid_t;
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value to be filled in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waiting on our own child, with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (status, usage);
        }
        assert!(r == 0, "wait4: {}", std::io::Error::last_os_error());
        if started.elapsed() > TIME_LIMIT {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("onex-gen {args:?} ran longer than {TIME_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Run {
        code,
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed,
        // ru_maxrss is in KiB on Linux.
        max_rss_bytes: usage.ru_maxrss as u64 * 1024,
    }
}

/// `onex-gen new CONTRACT -o out` in a fresh folder must refuse within the
/// bounds, point at a place in `shown` (the contract as given), and leave
/// `out` empty.
fn assert_refused(name: &str, contract: &Path, shown: &str, table: &mut Vec<String>) {
    let work = tempfile::tempdir().expect("temp dir");
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let contract = contract.to_str().expect("UTF-8 path");
    let run = run_limited(work.path(), &["new", contract, "-o", "out"]);
    table.push(format!(
        "{name:<40} {:>7.3} s {:>6.1} MiB",
        run.elapsed.as_secs_f64(),
        run.max_rss_bytes as f64 / (1 << 20) as f64
    ));
    assert_eq!(run.code, Some(2), "{name}: exit status\n{}", run.stderr);
    let located = run.stderr.lines().any(|l| {
        l.strip_prefix(shown)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|rest| rest.split_once(": error["))
            .is_some_and(|(at, _)| {
                let mut parts = at.split(':');
                let ok =
                    |p: Option<&str>| p.is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n >= 1));
                ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
            })
    });
    assert!(
        located,
        "{name}: no error located in {shown}:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked"),
        "{name}: a panic\n{}",
        run.stderr
    );
    assert!(
        run.max_rss_bytes < MEMORY_LIMIT,
        "{name}: {} bytes resident",
        run.max_rss_bytes
    );
    let written: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(written.is_empty(), "{name}: wrote {written:?}");
}

/// [`assert_refused`] for one contract, shown as given, with its line of
/// the bounds table printed.
fn assert_refused_alone(name: &str, contract: &Path) {
    let mut table = Vec::new();
    assert_refused(name, contract, contract.to_str().unwrap(), &mut table);
    eprintln!("{}", table.join("\n"));
}

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    out
}

#[test]
fn every_error_fixture_is_refused_within_bounds() {
    let mut table = Vec::new();
    let mut count = 0;
    for dir in ["stages/1-parse/err", "stages/2-validate/err"] {
        for case in fixtures(dir) {
            let name = format!("{dir}/{}", case.file_name().unwrap().to_string_lossy());
            let shown = case.to_str().unwrap().to_owned();
            assert_refused(&name, &case, &shown, &mut table);
            count += 1;
        }
    }
    eprintln!("{}", table.join("\n"));
    // The hostile cases the fixtures must hold (a fixture removed or renamed
    // fails here instead of silently shrinking the list).
    for required in [
        "1-parse/err/alias_bomb.yaml",
        "1-parse/err/nesting_20k.yaml",
        "1-parse/err/invalid_utf8.yaml",
        "1-parse/err/python_tag.yaml",
        "1-parse/err/custom_tag_on_mapping.yaml",
        "2-validate/err/empty.yaml",
        "2-validate/err/not_a_mapping.yaml",
        "2-validate/err/wrong_types_everywhere.yaml",
        "2-validate/err/path_name_parent.yaml",
        "2-validate/err/path_name_absolute.yaml",
        "2-validate/err/topic_shell_characters.yaml",
        "2-validate/err/bad_topic_name.yaml",
        "2-validate/err/fsm_undeclared_state.yaml",
    ] {
        assert!(
            root().join("stages").join(required).is_file(),
            "stages/{required} is missing"
        );
    }
    assert!(count >= 25, "only {count} error fixtures");
}

#[test]
fn a_100_mb_file_is_refused_without_being_read() {
    let work = tempfile::tempdir().unwrap();
    let big = work.path().join("big.yaml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(100 * 1024 * 1024).unwrap();
    assert_refused_alone("100 MB file", &big);
}

#[test]
fn an_endless_device_is_refused() {
    assert_refused_alone("/dev/zero", Path::new("/dev/zero"));
}

#[test]
fn a_folder_without_contracts_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("contract.yaml");
    std::fs::create_dir(&folder).unwrap();
    assert_refused_alone("folder without contracts", &folder);
}

#[test]
fn an_output_path_that_is_a_file_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let contract = work.path().join("c.yaml");
    std::fs::write(&contract, common::effect_contract("hostile")).unwrap();
    let file = work.path().join("out");
    std::fs::write(&file, "not a folder\n").unwrap();
    let c = contract.to_str().unwrap();
    for (out, says) in [
        ("out", "-o out: is a file, not a folder"),
        ("out/below", "-o out/below: out is a file"),
    ] {
        let run = run_limited(work.path(), &["new", c, "-o", out]);
        assert_eq!(run.code, Some(2), "-o {out}\n{}", run.stderr);
        assert!(
            run.stderr.contains(says),
            "-o {out}: the error names neither the argument nor the file\n{}",
            run.stderr
        );
        assert!(run.elapsed < TIME_LIMIT);
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a folder\n");
    let mut entries: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries, [".stderr", "c.yaml", "out"]);
}

#[test]
fn a_byte_order_mark_and_crlf_line_ends_are_accepted() {
    let work = tempfile::tempdir().unwrap();
    let text = common::effect_contract("crlf").replace('\n', "\r\n");
    let contract = work.path().join("c.yaml");
    std::fs::write(&contract, format!("\u{feff}{text}")).unwrap();
    let c = contract.to_str().unwrap();
    let run = run_limited(work.path(), &["new", c, "-o", "out"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(work
        .path()
        .join("out/node_crlf_effect/Cargo.toml")
        .is_file());
    let fixture = root().join("stages/1-parse/ok/bom_crlf.yaml");
    let bytes = std::fs::read(&fixture).unwrap();
    assert!(bytes.starts_with(b"\xef\xbb\xbf") && bytes.windows(2).any(|w| w == b"\r\n"));
    let run = run_limited(work.path(), &["validate", fixture.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}

#[test]
fn a_fifo_without_a_writer_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let fifo = work.path().join("contract.yaml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    assert_refused_alone("FIFO without a writer", &fifo);
}

/// A huge file where onex-gen keeps a generated one (a sparse 4 GiB file:
/// no disk used) is refused by `new` and reported by `check` without being
/// read into memory.
#[test]
fn a_huge_file_in_the_crate_is_not_read_into_memory() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("c.yaml"),
        common::effect_contract("hostile"),
    )
    .unwrap();
    let run = run_limited(work.path(), &["new", "c.yaml", "-o", "out"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let huge = work
        .path()
        .join("out/node_hostile_effect/src/generated/mod.rs");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&huge)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let run = run_limited(work.path(), &["new", "c.yaml", "-o", "out", "--force"]);
    assert_eq!(run.code, Some(1), "new: {}", run.stderr);
    assert!(
        run.stderr.contains("src/generated/mod.rs: is larger than"),
        "{}",
        run.stderr
    );
    let run = run_limited(work.path(), &["check", "out"]);
    assert_eq!(run.code, Some(1), "check: {}", run.stderr);
    assert!(run.max_rss_bytes < MEMORY_LIMIT);

    // The same for a template in a --templates folder (which the manifest
    // records, so `check` reads it too).
    let templates = work.path().join("templates/generated");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::File::create(templates.join("mod.rs.j2"))
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let run = run_limited(
        work.path(),
        &["new", "c.yaml", "-o", "out2", "--templates", "templates"],
    );
    assert_eq!(run.code, Some(2), "new --templates: {}", run.stderr);
    assert!(
        run.stderr.contains("mod.rs.j2: is larger than"),
        "{}",
        run.stderr
    );
    assert!(!work.path().join("out2").exists());
}
