//! `onex-gen check`: regenerates every crate in memory from its manifest
//! (contract path and recorded options), compares with what is on disk, and
//! explains every difference. It never writes.
//!
//! Causes, most specific first:
//! - `edited_by_hand`: a generated file's hash on disk differs from the manifest;
//! - `conflict`: a shared file (one the user may edit, see
//!   [`crate::stages::write::SHARED_FILES`]) whose edits and the generator's changes
//!   touch the same lines, so `onex-gen new` would stop;
//! - `unresolved_conflict`: a shared file still holding the conflict markers
//!   `onex-gen new --force` wrote;
//! - `no_base`: a shared file the user edited, with no base to merge with;
//! - `contract_changed`: the contract's hash differs from the manifest;
//! - `generator_changed`: the generator version or template set hash differs;
//! - `missing`: a file onex-gen generates is not on disk;
//! - `orphan`: in the manifest but no longer generated, still on disk;
//! - `unknown_file`: a file inside `src/generated/` that onex-gen neither
//!   generates nor recorded;
//! - `not_a_regular_file`: a symbolic link, folder or special file where
//!   onex-gen keeps a file, or a link on the way there. `check` reads no
//!   file through a link (a link could show anything on the machine), and
//!   `new` refuses to write through one.
//!
//! User-owned files are never drift (they are the user's), unless missing.
//! Neither are the user's edits to shared files: for those `check` reports
//! what the generator would change (the diff from disk to the merge `new`
//! would write) and, apart from drift, which files carry edits of the user's.
//! Files the user adds outside `src/generated/` are not looked at.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use crate::diagnostic::{github_data, github_property, Diagnostics, OutputFormat};
use crate::fileset::Owner;
use crate::manifest::{
    crate_entry, read_crate_file, sha256_hex, CrateEntry, CratePathError, Manifest, MANIFEST_PATH,
    MAX_CRATE_FILE_BYTES,
};
use crate::pipeline::{Destination, Generation, Job, RuntimeChoice};
use crate::stages::render::RuntimeSource;
use crate::stages::write::{
    crate_folders, lock_folders, merge_shared, LockMode, SharedOutcome, BASE_DIR,
};

/// The folder whose every file must be generated.
pub const GENERATED_DIR: &str = "src/generated/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    EditedByHand,
    Conflict,
    UnresolvedConflict,
    NoBase,
    ContractChanged,
    GeneratorChanged,
    Missing,
    Orphan,
    UnknownFile,
    NotARegularFile,
}

impl Cause {
    pub fn describe(self) -> &'static str {
        match self {
            Cause::EditedByHand => "generated file edited by hand (its hash differs from the manifest)",
            Cause::Conflict => "your edits and the generator's changes touch the same lines: `onex-gen new` would stop with the conflict",
            Cause::UnresolvedConflict => "unresolved conflict markers (written by `onex-gen new --force`)",
            Cause::NoBase => "edited, and no base to merge the generator's changes with (.onex-gen/base/ copy missing or altered)",
            Cause::ContractChanged => "contract changed since generation (its hash differs from the manifest)",
            Cause::GeneratorChanged => "generator or templates changed since generation (version or template set hash differs)",
            Cause::Missing => "generated file missing",
            Cause::Orphan => "file no longer generated (orphan): `onex-gen new` would remove it",
            Cause::UnknownFile => "unknown file inside a generated folder",
            Cause::NotARegularFile => "not a regular file (a symbolic link, folder or special file, or a link on the way): onex-gen neither reads nor writes through it",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Cause::EditedByHand => "move the change into a user-owned file (src/handlers.rs) or the contract, then run `onex-gen new`",
            Cause::Conflict => "make your edit and the contract agree, or run `onex-gen new --force` and resolve the conflict markers it writes",
            Cause::UnresolvedConflict => "keep the lines you want between the markers and delete the markers",
            Cause::NoBase => "run `onex-gen new --force` (it overwrites your edits), then redo them",
            Cause::ContractChanged | Cause::GeneratorChanged | Cause::Missing | Cause::Orphan => {
                "run `onex-gen new` on the contract to regenerate"
            }
            Cause::UnknownFile => "remove it, or move it out of src/generated/",
            Cause::NotARegularFile => "replace the link or special file with the file (or a real folder), then run `onex-gen new`",
        }
    }
}

/// One file that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Path inside the crate.
    pub path: String,
    pub causes: Vec<Cause>,
    /// Unified diff from disk (a/) to the regenerated file (b/).
    pub diff: String,
    /// First differing line of the file on disk (1-based), for annotations.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum CrateStatus {
    InSync,
    Drift {
        findings: Vec<Finding>,
    },
    Error {
        message: String,
        diagnostics: Diagnostics,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrateCheck {
    pub crate_dir: PathBuf,
    pub node_name: Option<String>,
    /// Shared files the user edited (never drift: `onex-gen new` keeps them).
    pub user_edits: Vec<String>,
    #[serde(flatten)]
    pub status: CrateStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct CheckReport {
    pub crates: Vec<CrateCheck>,
    /// Problems not tied to one crate (e.g. nothing found to check).
    pub errors: Vec<String>,
}

impl CheckReport {
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
            || self
                .crates
                .iter()
                .any(|c| matches!(c.status, CrateStatus::Error { .. }))
    }

    pub fn has_drift(&self) -> bool {
        self.crates
            .iter()
            .any(|c| matches!(c.status, CrateStatus::Drift { .. }))
    }

    /// 0 in sync, 1 drift, 2 errors.
    pub fn exit_code(&self) -> i32 {
        if self.has_errors() {
            2
        } else if self.has_drift() {
            1
        } else {
            0
        }
    }

    pub fn summary(&self) -> String {
        let count =
            |f: fn(&CrateStatus) -> bool| self.crates.iter().filter(|c| f(&c.status)).count();
        let files: usize = self
            .crates
            .iter()
            .map(|c| match &c.status {
                CrateStatus::Drift { findings } => findings.len(),
                _ => 0,
            })
            .sum();
        format!(
            "check: {} crate(s): {} in sync, {} drifted ({} file(s)), {} error(s)",
            self.crates.len(),
            count(|s| matches!(s, CrateStatus::InSync)),
            count(|s| matches!(s, CrateStatus::Drift { .. })),
            files,
            count(|s| matches!(s, CrateStatus::Error { .. })) + self.errors.len()
        )
    }

    pub fn render(&self, format: OutputFormat) -> String {
        match format {
            OutputFormat::Text => self.render_text(),
            OutputFormat::Json => {
                let mut v = serde_json::to_value(self).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("exit_code".into(), self.exit_code().into());
                    o.insert("summary".into(), self.summary().into());
                }
                let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
                s.push('\n');
                s
            }
            OutputFormat::Github => {
                let mut out = String::new();
                for c in &self.crates {
                    for path in &c.user_edits {
                        let file = c.crate_dir.join(path);
                        let _ = writeln!(
                            out,
                            "::notice file={},title={}::{}",
                            github_property(&file.to_string_lossy()),
                            github_property("onex-gen check: your edits"),
                            github_data("has your edits; `onex-gen new` keeps them")
                        );
                    }
                    match &c.status {
                        CrateStatus::InSync => {}
                        CrateStatus::Drift { findings } => {
                            for f in findings {
                                let file = c.crate_dir.join(&f.path);
                                let causes: Vec<&str> =
                                    f.causes.iter().map(|c| c.describe()).collect();
                                let hint = f.causes.last().map_or("", |c| c.hint());
                                let _ = writeln!(
                                    out,
                                    "::error file={},line={},title={}::{}",
                                    github_property(&file.to_string_lossy()),
                                    f.line,
                                    github_property("onex-gen check: drift"),
                                    github_data(&format!(
                                        "{}; {hint}\n{}",
                                        causes.join("; "),
                                        f.diff
                                    ))
                                );
                            }
                        }
                        CrateStatus::Error {
                            message,
                            diagnostics,
                        } => {
                            if diagnostics.is_empty() {
                                let _ = writeln!(
                                    out,
                                    "::error file={}::{}",
                                    github_property(&c.crate_dir.to_string_lossy()),
                                    github_data(message)
                                );
                            }
                            for d in diagnostics.errors() {
                                let _ = writeln!(out, "{}", d.to_github_line());
                            }
                        }
                    }
                }
                for e in &self.errors {
                    let _ = writeln!(out, "::error::{}", github_data(e));
                }
                out.push_str(&self.render_text());
                out
            }
        }
    }

    fn render_text(&self) -> String {
        let mut out = String::new();
        for c in &self.crates {
            let dir = c.crate_dir.display();
            match &c.status {
                CrateStatus::InSync => {
                    let _ = writeln!(out, "{dir}: in sync");
                    write_user_edits(&mut out, &c.user_edits);
                }
                CrateStatus::Drift { findings } => {
                    let _ = writeln!(out, "{dir}: drift in {} file(s)", findings.len());
                    write_user_edits(&mut out, &c.user_edits);
                    for f in findings {
                        for cause in &f.causes {
                            let _ = writeln!(out, "  {}: {}", f.path, cause.describe());
                        }
                        // Causes go from the general to the specific.
                        if let Some(cause) = f.causes.last() {
                            let _ = writeln!(out, "    hint: {}", cause.hint());
                        }
                        for line in f.diff.lines() {
                            let _ = writeln!(out, "    {line}");
                        }
                    }
                }
                CrateStatus::Error {
                    message,
                    diagnostics,
                } => {
                    let _ = writeln!(out, "{dir}: error: {message}");
                    for d in diagnostics.iter() {
                        let _ = writeln!(out, "  {d}");
                    }
                }
            }
        }
        for e in &self.errors {
            let _ = writeln!(out, "error: {e}");
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }
}

/// Whether a text holds the markers of a conflicted merge.
fn has_conflict_markers(text: &str) -> bool {
    let marker = format!("<<<<<<< {}", crate::merge::OURS_LABEL);
    text.lines().any(|l| l == marker)
}

/// The conflicting regions of a file, and the line of the first.
fn conflict_lines(path: &str, text: &str) -> (String, usize) {
    let excerpts = crate::merge::conflict_excerpts(text, 0);
    let line = excerpts.first().map_or(1, |(l, _)| *l);
    let mut out = String::new();
    for (l, region) in excerpts {
        let _ = writeln!(out, "{path}:{l}:");
        for r in region.lines() {
            let _ = writeln!(out, "  {r}");
        }
    }
    (out, line)
}

fn write_user_edits(out: &mut String, edits: &[String]) {
    for path in edits {
        let _ = writeln!(
            out,
            "  {path}: has your edits (not drift: `onex-gen new` keeps them)"
        );
    }
}

/// Every folder under `root` holding `.onex-gen/manifest.json`, sorted;
/// `target/` folders and hidden folders are skipped.
pub fn find_crates(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0 || !(name == "target" || (name.starts_with('.') && name != ".onex-gen"))
        })
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().ends_with(MANIFEST_PATH))
        .filter_map(|e| {
            e.path()
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Checks the crates at `paths`: each is a crate folder (with a manifest) or
/// a folder searched for crates. No paths: the current folder.
///
/// `new` swaps a crate in under an exclusive lock on the folder it is in
/// ([`crate::stages::write::lock_folders`]); `check` holds those folders
/// shared from finding the crates to comparing the last one, so it waits for
/// a swap in progress and reads each crate whole, old or new. The lock is
/// flock(2) on the folders themselves: nothing is written anywhere. Where
/// the folders cannot be locked (no flock on their file system, no
/// permission to open one) the crates are read unlocked, as before.
pub fn check(paths: &[PathBuf]) -> CheckReport {
    let roots: Vec<PathBuf> = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    // A crate may be missing for a moment, parked by a run that cannot
    // exchange folders atomically: the folders are locked before looking,
    // the one a crate named here is in, and a folder searched (where `new
    // -o` writes crates). Crates found deeper are looked for again once
    // their folders are held too.
    let mut folders: BTreeSet<PathBuf> = roots
        .iter()
        .flat_map(|r| {
            if r.is_dir() && !r.join(MANIFEST_PATH).is_file() {
                std::fs::canonicalize(r).into_iter().collect()
            } else {
                real_folders(r)
            }
        })
        .collect();
    loop {
        // A folder that cannot be locked leaves the crates unlocked, as
        // where there is no flock: `check` reads them all the same.
        let locks = lock_folders(&folders, LockMode::Shared, |_| Ok(false)).unwrap_or_default();
        let (crates, errors) = find(&roots);
        let needed: BTreeSet<PathBuf> = crates.iter().flat_map(|c| real_folders(c)).collect();
        if needed.is_subset(&folders) {
            let report = CheckReport {
                crates: check_crates(&crates),
                errors,
            };
            drop(locks);
            return report;
        }
        // Locked again from the start, in order, with the new folders.
        drop(locks);
        folders.extend(needed);
    }
}

/// The real folders a crate at `dir` is in ([`crate_folders`]); those that
/// do not exist are left out.
fn real_folders(dir: &Path) -> Vec<PathBuf> {
    crate_folders(dir)
        .iter()
        .filter_map(|f| std::fs::canonicalize(f).ok())
        .collect()
}

/// The crate folders at `roots` ([`check`]), and the roots that are none.
fn find(roots: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut crates = Vec::new();
    let mut errors = Vec::new();
    for root in roots {
        if root.join(MANIFEST_PATH).is_file() {
            crates.push(root.clone());
        } else if root.is_dir() {
            let found = find_crates(root);
            if found.is_empty() {
                errors.push(format!(
                    "{}: no generated crate (no {MANIFEST_PATH}) found here",
                    root.display()
                ));
            }
            crates.extend(found);
        } else if root.exists() {
            errors.push(format!(
                "{}: is a file, not a folder (expected a crate folder, or a folder to search for crates)",
                root.display()
            ));
        } else {
            errors.push(format!("{}: no such folder", root.display()));
        }
    }
    (crates, errors)
}

/// Checks these crate folders (each must hold a manifest).
pub fn check_crates(crate_dirs: &[PathBuf]) -> Vec<CrateCheck> {
    let mut results: Vec<Option<CrateCheck>> = Vec::new();
    let mut jobs = Vec::new();
    let mut loaded = Vec::new();
    for dir in crate_dirs {
        match Manifest::load(dir) {
            Ok(Some(m)) => {
                jobs.push(job_for(dir, &m));
                loaded.push((results.len(), dir.clone(), m));
                results.push(None);
            }
            Ok(None) => results.push(Some(error(
                dir,
                None,
                format!("no {MANIFEST_PATH}"),
                Diagnostics::new(),
            ))),
            Err(e) => results.push(Some(error(dir, None, e.to_string(), Diagnostics::new()))),
        }
    }
    let generated = crate::pipeline::run_jobs(&jobs, false);
    for ((slot, dir, manifest), gen) in loaded.into_iter().zip(generated) {
        let node = Some(manifest.node_name.clone());
        results[slot] = Some(match gen {
            Ok(g) => compare(&dir, &manifest, &g),
            Err(d) => error(
                &dir,
                node,
                format!(
                    "cannot regenerate from {} (recorded in the manifest)",
                    manifest.contract_path(&dir).display()
                ),
                d,
            ),
        });
    }
    results.into_iter().flatten().collect()
}

fn error(
    dir: &Path,
    node_name: Option<String>,
    message: String,
    diagnostics: Diagnostics,
) -> CrateCheck {
    CrateCheck {
        crate_dir: dir.to_path_buf(),
        node_name,
        user_edits: Vec::new(),
        status: CrateStatus::Error {
            message,
            diagnostics,
        },
    }
}

/// The job that regenerates a crate exactly as its manifest recorded.
pub fn job_for(crate_dir: &Path, m: &Manifest) -> Job {
    Job {
        contract: m.contract_path(crate_dir),
        destination: Destination::Exact(crate_dir.to_path_buf()),
        runtime: match &m.options.runtime {
            RuntimeSource::Vendored => RuntimeChoice::Vendored,
            RuntimeSource::Path(p) => RuntimeChoice::Path(crate_dir.join(p)),
        },
        template_dir: m.options.template_dir.as_ref().map(|t| crate_dir.join(t)),
    }
}

/// Compares a regeneration with the crate on disk.
pub fn compare(crate_dir: &Path, old: &Manifest, gen: &Generation) -> CrateCheck {
    let mut findings = Vec::new();
    let mut upstream = Vec::new();
    if old.contract.sha256 != gen.contract.hash {
        upstream.push(Cause::ContractChanged);
    }
    if old.generator_version != crate::GENERATOR_VERSION
        || old.template_set_hash != gen.template_set_hash
    {
        upstream.push(Cause::GeneratorChanged);
    }
    let upstream_or_generator = || {
        if upstream.is_empty() {
            vec![Cause::GeneratorChanged]
        } else {
            upstream.clone()
        }
    };

    let new_manifest = gen.manifest();
    let manifest_json = new_manifest.to_json();
    let mut expected: Vec<(&str, Owner, &str)> = gen
        .files
        .files()
        .iter()
        .map(|(p, f)| (p.as_str(), f.owner, f.contents.as_str()))
        .collect();
    expected.push((MANIFEST_PATH, Owner::Generated, &manifest_json));

    let mut user_edits = Vec::new();
    for (path, owner, contents) in &expected {
        // Bases are bookkeeping, checked through the files they are the base of.
        if path.starts_with(BASE_DIR) {
            continue;
        }
        // A user-owned file is the user's whatever it is: only its absence counts.
        let disk = if *owner == Owner::User {
            crate_entry(crate_dir, path).map(|e| (e != CrateEntry::Missing).then(Vec::new))
        } else {
            read_crate_file(crate_dir, path, MAX_CRATE_FILE_BYTES)
        };
        let bytes = match disk {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                findings.push(finding(path, vec![Cause::Missing], "", contents));
                continue;
            }
            Err(e) => {
                findings.push(unreadable(path, &e));
                continue;
            }
        };
        if *owner == Owner::User || bytes == contents.as_bytes() {
            continue;
        }
        let text = String::from_utf8_lossy(&bytes);
        let recorded = if *path == MANIFEST_PATH {
            None
        } else {
            old.file(path)
        };
        if *owner == Owner::Shared {
            match recorded {
                Some(r) if r.sha256 == sha256_hex(&bytes) => {
                    findings.push(finding(path, upstream_or_generator(), &text, contents));
                }
                Some(r) => {
                    user_edits.push((*path).to_owned());
                    if has_conflict_markers(&text) {
                        let (diff, line) = conflict_lines(path, &text);
                        findings.push(Finding {
                            path: (*path).to_owned(),
                            causes: vec![Cause::UnresolvedConflict],
                            diff,
                            line,
                        });
                        continue;
                    }
                    let mut causes = upstream_or_generator();
                    match merge_shared(crate_dir, r, &bytes, contents) {
                        SharedOutcome::Keep => {}
                        SharedOutcome::Merged(m) => {
                            findings.push(finding(path, causes, &text, &m));
                        }
                        SharedOutcome::Conflict(m) => {
                            causes.push(Cause::Conflict);
                            findings.push(finding(path, causes, &text, &m));
                        }
                        SharedOutcome::NoBase => {
                            causes.push(Cause::NoBase);
                            findings.push(finding(path, causes, &text, contents));
                        }
                    }
                }
                None => findings.push(finding(path, vec![Cause::UnknownFile], &text, contents)),
            }
            continue;
        }
        let causes = match recorded {
            Some(r) if r.sha256 != sha256_hex(&bytes) => vec![Cause::EditedByHand],
            Some(_) => upstream_or_generator(),
            None if *path == MANIFEST_PATH => {
                if upstream.is_empty() && manifest_json != old.to_json() {
                    upstream_or_generator()
                } else if upstream.is_empty() {
                    vec![Cause::EditedByHand]
                } else {
                    upstream.clone()
                }
            }
            None => vec![Cause::UnknownFile],
        };
        findings.push(finding(path, causes, &text, contents));
    }

    let expected_paths: BTreeSet<&str> = expected.iter().map(|(p, _, _)| *p).collect();
    for rec in &old.files {
        if rec.owner == Owner::User
            || rec.path.starts_with(BASE_DIR)
            || expected_paths.contains(rec.path.as_str())
        {
            continue;
        }
        let bytes = match read_crate_file(crate_dir, &rec.path, MAX_CRATE_FILE_BYTES) {
            Ok(b) => b,
            Err(e) => {
                findings.push(unreadable(&rec.path, &e));
                continue;
            }
        };
        if let Some(bytes) = bytes {
            if rec.owner == Owner::Shared && sha256_hex(&bytes) != rec.sha256 {
                // No longer generated, but edited: `new` leaves it to the user.
                user_edits.push(rec.path.clone());
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            findings.push(finding(&rec.path, vec![Cause::Orphan], &text, ""));
        }
    }

    let generated_dir = crate_dir.join(GENERATED_DIR);
    // Not when it is a link (its files are reported as such above).
    let walk = matches!(
        crate_entry(crate_dir, GENERATED_DIR.trim_end_matches('/')),
        Ok(CrateEntry::Other)
    ) && generated_dir.is_dir();
    if walk {
        for entry in walkdir::WalkDir::new(&generated_dir)
            .into_iter()
            .filter_map(Result::ok)
        {
            if entry.file_type().is_dir() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(crate_dir) else {
                continue;
            };
            let rel = crate::manifest::slash(rel);
            if expected_paths.contains(rel.as_str()) || old.file(&rel).is_some() {
                continue;
            }
            let text = read_crate_file(crate_dir, &rel, MAX_CRATE_FILE_BYTES)
                .ok()
                .flatten()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            findings.push(finding(&rel, vec![Cause::UnknownFile], &text, ""));
        }
    }

    findings.sort_by(|a, b| a.path.cmp(&b.path));
    user_edits.sort();
    CrateCheck {
        crate_dir: crate_dir.to_path_buf(),
        node_name: Some(gen.node_name.to_string()),
        user_edits,
        status: if findings.is_empty() {
            CrateStatus::InSync
        } else {
            CrateStatus::Drift { findings }
        },
    }
}

/// A file that could not be read, with why in place of a diff: one too
/// large to be onex-gen's was edited by hand; anything else is not a
/// regular file (or a link is on the way).
fn unreadable(path: &str, e: &CratePathError) -> Finding {
    let cause = match e {
        CratePathError::TooLarge { .. } => Cause::EditedByHand,
        _ => Cause::NotARegularFile,
    };
    Finding {
        path: path.to_owned(),
        causes: vec![cause],
        diff: format!("{e}\n"),
        line: 1,
    }
}

fn finding(path: &str, causes: Vec<Cause>, disk: &str, expected: &str) -> Finding {
    let (diff, line) = unified_diff(path, disk, expected);
    Finding {
        path: path.to_owned(),
        causes,
        diff,
        line,
    }
}

/// A unified diff from the file on disk to the regenerated one, and the
/// first differing line on disk.
pub fn unified_diff(path: &str, disk: &str, expected: &str) -> (String, usize) {
    let diff = TextDiff::from_lines(disk, expected);
    let old_name = if disk.is_empty() {
        "/dev/null".to_owned()
    } else {
        format!("a/{path}")
    };
    let new_name = if expected.is_empty() {
        "/dev/null".to_owned()
    } else {
        format!("b/{path}")
    };
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &new_name)
        .to_string();
    let line = diff
        .iter_all_changes()
        .find(|c| c.tag() != ChangeTag::Equal)
        .and_then(|c| c.old_index().or(c.new_index()))
        .map_or(1, |i| i + 1);
    (text, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_are_unified_and_locate_the_first_change() {
        let (d, line) = unified_diff("src/a.rs", "a\nb\nc\n", "a\nB\nc\n");
        assert!(d.contains("--- a/src/a.rs\n+++ b/src/a.rs\n"), "{d}");
        assert!(d.contains("-b\n+B\n"), "{d}");
        assert_eq!(line, 2);
        let (d, _) = unified_diff("x", "", "new\n");
        assert!(d.starts_with("--- /dev/null"), "{d}");
    }

    #[test]
    fn github_annotations_are_escaped() {
        assert_eq!(github_data("a%b\nc"), "a%25b%0Ac");
        assert_eq!(github_property("a:b,c"), "a%3Ab%2Cc");
    }

    #[test]
    fn exit_codes_follow_the_worst_result() {
        let mut r = CheckReport::default();
        assert_eq!(r.exit_code(), 0);
        r.crates.push(CrateCheck {
            crate_dir: "a".into(),
            node_name: None,
            user_edits: Vec::new(),
            status: CrateStatus::Drift { findings: vec![] },
        });
        assert_eq!(r.exit_code(), 1);
        r.errors.push("x".into());
        assert_eq!(r.exit_code(), 2);
        assert!(r.summary().contains("1 drifted"));
    }

    #[test]
    fn crates_are_found_by_their_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["a/x", "b", "target/y", ".hidden/z"] {
            let m = tmp.path().join(d).join(MANIFEST_PATH);
            std::fs::create_dir_all(m.parent().unwrap()).unwrap();
            std::fs::write(&m, "{}").unwrap();
        }
        let found = find_crates(tmp.path());
        assert_eq!(found, [tmp.path().join("a/x"), tmp.path().join("b")]);
    }
}
