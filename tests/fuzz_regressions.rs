//! Replays what the fuzz targets (fuzz/, scripts/fuzz.sh) found: every file
//! in `fuzz/regressions/<target>/` goes through the target's own check
//! (onex_gen::fuzzing), so a fixed crash stays fixed. The committed seed
//! contracts (`fuzz/seeds/`) go through the parse and validate checks too.

use std::path::{Path, PathBuf};

use onex_gen::fuzzing::{check_parse, check_pipeline, check_validate};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs `check` on every file, reporting each failing file by name.
fn replay(dir: &Path, check: fn(&[u8])) -> usize {
    let cases = files(dir);
    let mut failed = Vec::new();
    for case in &cases {
        let bytes = std::fs::read(case).unwrap();
        if std::panic::catch_unwind(|| check(&bytes)).is_err() {
            failed.push(case.display().to_string());
        }
    }
    assert!(failed.is_empty(), "failing inputs:\n{}", failed.join("\n"));
    cases.len()
}

#[test]
fn every_fuzz_finding_stays_fixed() {
    type Check = fn(&[u8]);
    let checks: [(&str, Check); 3] = [
        ("parse", check_parse),
        ("validate", check_validate),
        ("pipeline", check_pipeline),
    ];
    for (target, check) in checks {
        let dir = fuzz_dir().join("regressions").join(target);
        if dir.is_dir() {
            replay(&dir, check);
        }
        // Each stage's check also holds for what the earlier targets found.
        for earlier in ["parse", "validate"] {
            let dir = fuzz_dir().join("regressions").join(earlier);
            if dir.is_dir() && earlier != target {
                replay(&dir, check);
            }
        }
    }
}

#[test]
fn the_seed_contracts_pass_the_parse_and_validate_checks() {
    let seeds = fuzz_dir().join("seeds");
    assert!(
        replay(&seeds, check_parse) >= 70,
        "fewer seeds than contracts"
    );
    replay(&seeds, check_validate);
}
