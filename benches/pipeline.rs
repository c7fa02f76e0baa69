//! Benchmarks of generation and of the drift check over every real contract,
//! each next to a baseline measured in the same run:
//!
//! - `validate`: stages 1-2 for every contract.
//! - `generate`: stages 1-5 in memory, rustfmt results served from the
//!   formatter cache (the steady state: regeneration, `check`, `serve`).
//! - `generate, formatter cache off`: the same with every file through
//!   rustfmt (a first run on a machine).
//! - `rustfmt alone`: the same `.rs` files through rustfmt, nothing else; the
//!   floor any generator that hands its output to rustfmt pays.
//! - `new (write)`: stages 1-6 into an empty folder.
//! - `copy (write)`: writing the same bytes with `std::fs`, no pipeline; the
//!   I/O floor of `new`.
//! - `check`: regenerate in memory and compare with disk, for every crate.
//! - `hash walk`: read and sha256 every file of the same crates; the floor of
//!   any drift check that looks at the bytes.
//!
//! `cargo bench --bench pipeline` (release build). `ONEX_CONTRACTS_DIR`
//! changes the corpus; `BENCH_RUNS` the number of runs (default 10). Prints
//! a Markdown table of medians.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use onex_gen::fileset::FileSet;
use onex_gen::pipeline::run_jobs;
use onex_gen::stages::validate::load;
use onex_gen::stages::write::{write, WriteOptions, BASE_DIR};
use sha2::{Digest, Sha256};

fn corpus() -> Vec<PathBuf> {
    let dir = std::env::var_os("ONEX_CONTRACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/onex-contracts"));
    common::contract_files(&dir)
}

fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn write_plain(files: &[FileSet], out: &Path) {
    for (i, set) in files.iter().enumerate() {
        for (path, file) in set.iter() {
            let p = out.join(i.to_string()).join(path);
            std::fs::create_dir_all(p.parent().expect("a file has a parent")).expect("writable");
            std::fs::write(&p, &file.contents).expect("writable");
        }
    }
}

fn rustfmt_alone(files: &[FileSet], dir: &Path) {
    let mut paths = Vec::new();
    for (i, set) in files.iter().enumerate() {
        // What the pipeline's rustfmt pass formats: not the copies of the
        // last output kept for merging, which are formatted already.
        let formatted = |p: &str| p.ends_with(".rs") && !p.starts_with(BASE_DIR);
        for (path, file) in set.iter().filter(|(p, _)| formatted(p)) {
            let p = dir.join(i.to_string()).join(path);
            std::fs::create_dir_all(p.parent().expect("a file has a parent")).expect("writable");
            std::fs::write(&p, &file.contents).expect("writable");
            paths.push(p);
        }
    }
    let status = std::process::Command::new("rustfmt")
        .args(["--edition", "2021"])
        .args(&paths)
        .status()
        .expect("rustfmt runs");
    assert!(status.success());
}

fn hash_walk(root: &Path) -> usize {
    let mut n = 0;
    for entry in walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
    {
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).expect("readable");
            std::hint::black_box(Sha256::digest(&bytes));
            n += 1;
        }
    }
    n
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let contracts = corpus();
    let scratch = tempfile::tempdir().expect("a temp folder");
    let out = scratch.path().join("crates");

    let generated: Vec<FileSet> = run_jobs(&common::path_jobs(&contracts, &out), false)
        .into_iter()
        .map(|r| {
            r.expect("every corpus contract generates")
                .files
                .into_inner()
        })
        .collect();
    let file_count: usize = generated.iter().map(FileSet::len).sum();

    let validate = median(runs, || {
        for c in &contracts {
            std::hint::black_box(load(c).expect("valid"));
        }
    });
    let generate = median(runs, || {
        std::hint::black_box(run_jobs(&common::path_jobs(&contracts, &out), false));
    });
    std::env::set_var("ONEX_GEN_CACHE", "off");
    let generate_cold = median(runs, || {
        std::hint::black_box(run_jobs(&common::path_jobs(&contracts, &out), false));
    });
    std::env::remove_var("ONEX_GEN_CACHE");
    let mut n = 0;
    let fmt = median(runs, || {
        n += 1;
        rustfmt_alone(&generated, &scratch.path().join(format!("fmt{n}")));
    });
    let new = median(runs, || {
        n += 1;
        let dest = scratch.path().join(format!("new{n}"));
        let gens: Vec<_> = run_jobs(&common::path_jobs(&contracts, &dest), false)
            .into_iter()
            .map(|r| r.expect("generates"))
            .collect();
        write(&gens, &WriteOptions::default()).expect("writes");
    });
    let copy = median(runs, || {
        n += 1;
        write_plain(&generated, &scratch.path().join(format!("copy{n}")));
    });

    // The drift check runs over crates written once, with their manifests.
    let checked = scratch.path().join("checked");
    let gens: Vec<_> = run_jobs(&common::path_jobs(&contracts, &checked), false)
        .into_iter()
        .map(|r| r.expect("generates"))
        .collect();
    write(&gens, &WriteOptions::default()).expect("writes");
    let check = median(runs, || {
        let report = onex_gen::commands::check::check(std::slice::from_ref(&checked));
        assert_eq!(report.exit_code(), 0, "freshly written crates are in sync");
    });
    let walk = median(runs, || {
        std::hint::black_box(hash_walk(&checked));
    });

    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let ratio = |a: Duration, b: Duration| format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64());
    println!(
        "{} contracts, {} generated files, median of {} runs\n",
        contracts.len(),
        file_count,
        runs
    );
    println!("| what | median | baseline | baseline median | ratio |");
    println!("|---|---|---|---|---|");
    println!(
        "| validate (stages 1-2) | {} | rustfmt alone | {} | {} |",
        ms(validate),
        ms(fmt),
        ratio(validate, fmt)
    );
    println!(
        "| generate, formatter cache off | {} | rustfmt alone | {} | {} |",
        ms(generate_cold),
        ms(fmt),
        ratio(generate_cold, fmt)
    );
    println!(
        "| generate (stages 1-5, in memory) | {} | rustfmt alone | {} | {} |",
        ms(generate),
        ms(fmt),
        ratio(generate, fmt)
    );
    println!(
        "| new (stages 1-6, written) | {} | copy (write) | {} | {} |",
        ms(new),
        ms(copy),
        ratio(new, copy)
    );
    println!(
        "| check (all crates in sync) | {} | hash walk | {} | {} |",
        ms(check),
        ms(walk),
        ratio(check, walk)
    );
}
