//! Could an in-process pretty-printer replace onex-gen's rustfmt process?
//!
//! ```text
//! bench-format [--runs N] [--label L] CRATE_DIR...
//! ```
//!
//! Takes the `.rs` files onex-gen wrote into the given crates (not `vendor/`,
//! not `target/`), which are rustfmt's output, and measures in one run:
//!
//! - rustfmt: one `rustfmt` process over all of them, with onex-gen's pinned
//!   settings (edition 2021, style edition 2021), median of N runs;
//! - prettyplease: `syn::parse_file` + `prettyplease::unparse` of each file
//!   in this process, median of N runs;
//!
//! then whether prettyplease's output could stand in for rustfmt's: how many
//! files come out byte-identical, how many `rustfmt --check` would reject
//! (so `cargo fmt --check` on the crate would fail), and how many `//`
//! comment lines prettyplease drops (syn keeps doc comments only).
//! Prints one markdown table row; with `BENCH_FORMAT_DIFF=1` also the start
//! of rustfmt's diff to stderr.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUSTFMT_CONFIG: &str =
    "edition = \"2021\"\nstyle_edition = \"2021\"\nnewline_style = \"Unix\"\n";

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            if name != "vendor" && name != "target" && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Writes `files` under `dir` at their relative paths (rustfmt follows
/// `mod` items), with the pinned configuration.
fn lay_out(dir: &Path, files: &[(PathBuf, String)]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("temp dir");
    std::fs::write(dir.join("rustfmt.toml"), RUSTFMT_CONFIG).expect("config");
    files
        .iter()
        .map(|(rel, text)| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().expect("file in a folder")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
            p
        })
        .collect()
}

fn rustfmt(dir: &Path, paths: &[PathBuf], check: bool) -> std::process::Output {
    let mut cmd = Command::new(std::env::var_os("RUSTFMT").unwrap_or_else(|| "rustfmt".into()));
    cmd.args(["--edition", "2021", "--config-path"])
        .arg(dir.join("rustfmt.toml"));
    if check {
        cmd.arg("--check");
    }
    cmd.args(paths).output().expect("run rustfmt")
}

fn comment_lines(text: &str) -> usize {
    text.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("//") && !l.starts_with("///") && !l.starts_with("//!"))
        .count()
}

fn main() {
    let mut runs = 10usize;
    let mut label = String::from("crates");
    let mut dirs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--label" => label = args.next().expect("--label L"),
            _ => dirs.push(PathBuf::from(a)),
        }
    }
    // (path relative to a numbered folder per crate, contents)
    let mut originals: Vec<(PathBuf, String)> = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let mut paths = Vec::new();
        rust_files(d, &mut paths);
        for p in paths {
            let rel = Path::new(&i.to_string()).join(p.strip_prefix(d).expect("under its crate"));
            originals.push((rel, std::fs::read_to_string(&p).expect("read")));
        }
    }
    assert!(!originals.is_empty(), "no .rs files under {dirs:?}");
    let bytes: usize = originals.iter().map(|(_, t)| t.len()).sum();

    let tmp = std::env::temp_dir().join(format!("bench-format-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);

    // rustfmt: a fresh copy each run (rustfmt rewrites in place).
    let mut rustfmt_times = Vec::new();
    for run in 0..runs {
        let dir = tmp.join(format!("rustfmt-{run}"));
        let laid = lay_out(&dir, &originals);
        let started = Instant::now();
        let out = rustfmt(&dir, &laid, false);
        rustfmt_times.push(started.elapsed());
        assert!(
            out.status.success(),
            "rustfmt failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut pretty_times = Vec::new();
    let mut pretty = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        pretty = originals
            .iter()
            .map(|(rel, text)| {
                let file = syn::parse_file(text).expect("generated code parses");
                (rel.clone(), prettyplease::unparse(&file))
            })
            .collect::<Vec<(PathBuf, String)>>();
        pretty_times.push(started.elapsed());
    }

    let identical = pretty
        .iter()
        .zip(&originals)
        .filter(|(a, b)| a.1 == b.1)
        .count();
    // One `rustfmt --check` over prettyplease's files; it names each file it
    // would change ("Diff in PATH:LINE:").
    let dir = tmp.join("check");
    let laid = lay_out(&dir, &pretty);
    let check = rustfmt(&dir, &laid, true);
    let stdout = String::from_utf8_lossy(&check.stdout);
    if std::env::var_os("BENCH_FORMAT_DIFF").is_some() {
        eprintln!("{}", stdout.lines().take(80).collect::<Vec<_>>().join("\n"));
    }
    let rejected = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Diff in "))
        .filter_map(|l| l.split(':').next())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let dropped: usize = originals
        .iter()
        .zip(&pretty)
        .map(|(o, p)| comment_lines(&o.1).saturating_sub(comment_lines(&p.1)))
        .sum();
    let _ = std::fs::remove_dir_all(&tmp);

    let (r, p) = (median(rustfmt_times), median(pretty_times));
    println!(
        "| {label} | {} files, {} KiB | {:.1} ms | {:.1} ms | {:.0}x | {identical} of {} | {rejected} of {} | {dropped} |",
        originals.len(),
        bytes / 1024,
        r.as_secs_f64() * 1e3,
        p.as_secs_f64() * 1e3,
        r.as_secs_f64() / p.as_secs_f64(),
        originals.len(),
        originals.len(),
    );
}
