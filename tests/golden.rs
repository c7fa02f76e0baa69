//! Golden files: `golden/<contract stem>/` holds the expected crate for every
//! contract in `contracts/`, generated with the runtime as a path dependency
//! on this repository's `onex-runtime` (`../../onex-runtime`).
//!
//! This test regenerates every crate in memory and fails with a unified diff
//! when anything differs. `scripts/update-golden.sh` (which is
//! `UPDATE_GOLDEN=1 cargo test --test golden`) rewrites them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use onex_gen::commands::check::unified_diff;
use onex_gen::manifest::MANIFEST_PATH;
use onex_gen::pipeline::{run_jobs, Destination, Generation, Job, RuntimeChoice};
use onex_gen::stages::write::{write, WriteOptions};

/// Files a build leaves in a golden crate; not part of the expectation.
const IGNORED: &[&str] = &["target"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn contracts() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(root().join("contracts"))
        .expect("contracts/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            // Relative to the repository root, as a person would type it.
            (stem, p.strip_prefix(root()).unwrap().to_path_buf())
        })
        .collect();
    out.sort();
    out
}

/// The expected files of one golden crate (path -> contents), manifest included.
fn expected(g: &Generation) -> BTreeMap<String, String> {
    let mut files: BTreeMap<String, String> = g
        .files
        .files()
        .iter()
        .map(|(p, f)| (p.clone(), f.contents.clone()))
        .collect();
    files.insert(MANIFEST_PATH.to_owned(), g.manifest().to_json());
    files
}

fn on_disk(dir: &Path) -> BTreeMap<String, String> {
    if !dir.is_dir() {
        return BTreeMap::new();
    }
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || !IGNORED.iter().any(|i| e.file_name() == *i))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let bytes = std::fs::read(e.path()).unwrap();
            (rel, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect()
}

#[test]
fn golden_crates_match_a_fresh_generation() {
    // Integration tests run with the package root as the current folder.
    std::env::set_current_dir(root()).unwrap();
    let contracts = contracts();
    assert!(
        contracts.len() >= 8,
        "contracts/ holds the golden contracts"
    );
    let jobs: Vec<Job> = contracts
        .iter()
        .map(|(stem, path)| Job {
            contract: path.clone(),
            destination: Destination::Exact(PathBuf::from("golden").join(stem)),
            runtime: RuntimeChoice::Path(PathBuf::from("onex-runtime")),
            template_dir: None,
        })
        .collect();
    let mut gens = Vec::new();
    for (r, (stem, _)) in run_jobs(&jobs, false).into_iter().zip(&contracts) {
        match r {
            Ok(g) => gens.push(g),
            Err(d) => panic!("contracts/{stem} does not generate:\n{d}"),
        }
    }

    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        for g in &gens {
            // Golden crates hold exactly one generation: start from empty so
            // user-owned defaults are refreshed too.
            let _ = std::fs::remove_dir_all(&g.crate_dir);
        }
        write(
            &gens,
            &WriteOptions {
                force: true,
                dry_run: false,
            },
        )
        .expect("golden files written");
        let stems: Vec<&str> = contracts.iter().map(|(s, _)| s.as_str()).collect();
        for e in std::fs::read_dir("golden").unwrap().filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && !stems.contains(&name.as_str()) {
                std::fs::remove_dir_all(e.path()).unwrap();
            }
        }
    }

    let mut failures = String::new();
    for g in &gens {
        let dir = &g.crate_dir;
        let want = expected(g);
        let have = on_disk(dir);
        for (path, contents) in &want {
            let got = have.get(path).map(String::as_str).unwrap_or("");
            if got != contents {
                let (diff, _) = unified_diff(path, got, contents);
                failures.push_str(&format!("{}/{path} differs:\n{diff}\n", dir.display()));
            }
        }
        for path in have.keys().filter(|p| !want.contains_key(*p)) {
            failures.push_str(&format!(
                "{}/{path} is no longer generated\n",
                dir.display()
            ));
        }
    }
    let stems: Vec<&str> = contracts.iter().map(|(s, _)| s.as_str()).collect();
    if let Ok(entries) = std::fs::read_dir("golden") {
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && !stems.contains(&name.as_str()) {
                failures.push_str(&format!("golden/{name} has no contract in contracts/\n"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden files are stale; run scripts/update-golden.sh and review the diff:\n{failures}"
    );
}
