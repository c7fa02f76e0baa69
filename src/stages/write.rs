//! Stage 6: write — VerifiedFileSet -> disk + manifest.
//!
//! - All or nothing, across every crate of a run: every crate is planned (and
//!   every conflict found) before anything is written; new contents are staged
//!   in a temporary folder beside the destination and then moved into place;
//!   if any move fails, every change already made is undone.
//! - A crate that does not exist yet is staged whole and moved with one rename.
//! - Unchanged files are not rewritten (their mtime is kept).
//! - User-owned files are created once and never touched again, even with `force`.
//! - Generated files edited by hand (disk hash differs from the manifest), and
//!   files at a generated path that onex-gen did not write, are a conflict:
//!   nothing is written unless `force`.
//! - Generated files in the old manifest that are no longer generated
//!   (orphans) are removed.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::GenError;
use crate::fileset::Owner;
use crate::manifest::{sha256_hex, Manifest, MANIFEST_PATH};
use crate::pipeline::Generation;
use crate::stages::verify::VerifiedFileSet;

#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Overwrite generated files edited by hand (user-owned files are still kept).
    pub force: bool,
    /// Plan only; touch nothing.
    pub dry_run: bool,
}

/// What stage 6 does to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    /// A user-owned file that exists: left exactly as it is.
    KeepUser,
    /// A generated file edited by hand, overwritten because of `force`.
    Overwrite,
    /// An orphan: generated before, no longer generated.
    Remove,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::KeepUser => "keep (user-owned)",
            Action::Overwrite => "overwrite (hand edit, --force)",
            Action::Remove => "remove (no longer generated)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileAction {
    pub path: String,
    pub action: Action,
}

/// The plan (and, after a write, the record) for one crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CratePlan {
    pub crate_dir: PathBuf,
    pub node_name: String,
    /// Whether the crate folder did not exist before.
    pub fresh: bool,
    pub actions: Vec<FileAction>,
}

impl CratePlan {
    pub fn count(&self, action: Action) -> usize {
        self.actions.iter().filter(|a| a.action == action).count()
    }

    /// Whether the write changes anything on disk.
    pub fn changes_anything(&self) -> bool {
        self.actions
            .iter()
            .any(|a| !matches!(a.action, Action::Unchanged | Action::KeepUser))
    }
}

/// One crate to write.
#[derive(Debug, Clone)]
pub struct CrateWrite<'a> {
    pub crate_dir: PathBuf,
    pub files: &'a VerifiedFileSet,
    pub manifest: Manifest,
}

impl Generation {
    pub fn to_write(&self) -> CrateWrite<'_> {
        CrateWrite {
            crate_dir: self.crate_dir.clone(),
            files: &self.files,
            manifest: self.manifest(),
        }
    }
}

/// Writes every generation (all or nothing). Returns one plan per crate.
pub fn write(gens: &[Generation], opts: &WriteOptions) -> Result<Vec<CratePlan>, GenError> {
    let writes: Vec<CrateWrite<'_>> = gens.iter().map(Generation::to_write).collect();
    write_crates(&writes, opts)
}

/// Plans one crate against what is on disk; `Err` lists every conflict.
pub fn plan(w: &CrateWrite<'_>, opts: &WriteOptions) -> Result<CratePlan, Vec<String>> {
    let dir = &w.crate_dir;
    let fresh = !dir.exists();
    let old = if fresh {
        None
    } else {
        Manifest::load(dir).map_err(|e| vec![e.to_string()])?
    };
    let mut conflicts = Vec::new();
    let mut actions = Vec::new();
    let files = w.files.files();

    for (path, file) in files.iter() {
        let dest = dir.join(path);
        let on_disk = if fresh {
            None
        } else {
            read_if_exists(&dest).map_err(|e| vec![e])?
        };
        let action = match (file.owner, on_disk) {
            (_, None) => Action::Create,
            (Owner::User, Some(_)) => Action::KeepUser,
            (Owner::Generated, Some(bytes)) => {
                if bytes == file.contents.as_bytes() {
                    Action::Unchanged
                } else {
                    let disk_hash = sha256_hex(&bytes);
                    let recorded = old.as_ref().and_then(|m| m.file(path));
                    match recorded {
                        Some(r) if r.sha256 == disk_hash => Action::Update,
                        Some(_) if opts.force => Action::Overwrite,
                        Some(_) => {
                            conflicts.push(format!(
                                "{}: generated file was edited by hand (its hash differs from the manifest); \
                                 move the change into a user-owned file, or pass --force to overwrite it",
                                dest.display()
                            ));
                            continue;
                        }
                        None if opts.force => Action::Overwrite,
                        None => {
                            conflicts.push(format!(
                                "{}: exists but was not written by onex-gen (not in the manifest); \
                                 remove it, or pass --force to overwrite it",
                                dest.display()
                            ));
                            continue;
                        }
                    }
                }
            }
        };
        actions.push(FileAction {
            path: path.clone(),
            action,
        });
    }

    if let Some(old) = &old {
        for rec in &old.files {
            if rec.owner != Owner::Generated || files.get(&rec.path).is_some() {
                continue;
            }
            let dest = dir.join(&rec.path);
            let Some(bytes) = read_if_exists(&dest).map_err(|e| vec![e])? else {
                continue;
            };
            if sha256_hex(&bytes) != rec.sha256 && !opts.force {
                conflicts.push(format!(
                    "{}: is no longer generated, but was edited by hand so it is not removed; \
                     delete it yourself, or pass --force",
                    dest.display()
                ));
                continue;
            }
            actions.push(FileAction {
                path: rec.path.clone(),
                action: Action::Remove,
            });
        }
    }

    let manifest_json = w.manifest.to_json();
    let manifest_action = match if fresh {
        None
    } else {
        read_if_exists(&dir.join(MANIFEST_PATH)).map_err(|e| vec![e])?
    } {
        None => Action::Create,
        Some(b) if b == manifest_json.as_bytes() => Action::Unchanged,
        Some(_) => Action::Update,
    };
    actions.push(FileAction {
        path: MANIFEST_PATH.to_owned(),
        action: manifest_action,
    });
    actions.sort_by(|a, b| a.path.cmp(&b.path));

    if conflicts.is_empty() {
        Ok(CratePlan {
            crate_dir: dir.clone(),
            node_name: w.manifest.node_name.clone(),
            fresh,
            actions,
        })
    } else {
        Err(conflicts)
    }
}

fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes several crates, all or nothing.
pub fn write_crates(
    writes: &[CrateWrite<'_>],
    opts: &WriteOptions,
) -> Result<Vec<CratePlan>, GenError> {
    let mut seen = BTreeSet::new();
    for w in writes {
        if !seen.insert(crate::manifest::absolute(&w.crate_dir)) {
            return Err(GenError::Conflict(format!(
                "two contracts generate the same crate folder {}",
                w.crate_dir.display()
            )));
        }
    }
    let mut plans = Vec::new();
    let mut conflicts = Vec::new();
    for w in writes {
        match plan(w, opts) {
            Ok(p) => plans.push(p),
            Err(c) => conflicts.extend(c),
        }
    }
    if !conflicts.is_empty() {
        return Err(GenError::Conflict(format!(
            "refusing to write (nothing was written):\n  {}",
            conflicts.join("\n  ")
        )));
    }
    if opts.dry_run {
        return Ok(plans);
    }

    let mut tx = Transaction::default();
    let result = (|| {
        let mut staged = Vec::new();
        for (w, p) in writes.iter().zip(&plans) {
            staged.push(tx.stage(w, p)?);
        }
        for ((w, p), stage) in writes.iter().zip(&plans).zip(&staged) {
            tx.commit(w, p, *stage)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            tx.finish();
            Ok(plans)
        }
        Err(e) => {
            tx.rollback();
            Err(e)
        }
    }
}

/// One undoable step.
#[derive(Debug)]
enum Undo {
    /// A folder that did not exist before.
    CreatedDir(PathBuf),
    /// A file that did not exist before.
    CreatedFile(PathBuf),
    /// `original` was moved to `backup`.
    Replaced { original: PathBuf, backup: PathBuf },
}

#[derive(Debug, Default)]
struct Transaction {
    journal: Vec<Undo>,
    staging: Vec<tempfile::TempDir>,
}

impl Transaction {
    /// Creates `dir` and any missing parents, journalling each one.
    fn create_dirs(&mut self, dir: &Path) -> Result<(), GenError> {
        let mut missing = Vec::new();
        let mut cur = Some(dir);
        while let Some(d) = cur {
            if d.as_os_str().is_empty() || d.exists() {
                break;
            }
            missing.push(d.to_path_buf());
            cur = d.parent();
        }
        for d in missing.into_iter().rev() {
            std::fs::create_dir(&d).map_err(|e| GenError::io(&d, e))?;
            self.journal.push(Undo::CreatedDir(d));
        }
        Ok(())
    }

    /// Writes every new or changed file (and the manifest) into a staging
    /// folder beside the crate; returns the staging folder's index.
    fn stage(&mut self, w: &CrateWrite<'_>, p: &CratePlan) -> Result<usize, GenError> {
        let parent = match w.crate_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        self.create_dirs(&parent)?;
        let stage = tempfile::Builder::new()
            .prefix(&format!(".onex-gen-stage-{}-", p.node_name))
            .tempdir_in(&parent)
            .map_err(|e| GenError::io(&parent, e))?;
        let root = stage.path().join("crate");
        std::fs::create_dir(&root).map_err(|e| GenError::io(&root, e))?;
        std::fs::create_dir(stage.path().join("backup"))
            .map_err(|e| GenError::io(stage.path(), e))?;
        let manifest_json = w.manifest.to_json();
        for a in &p.actions {
            if !matches!(
                a.action,
                Action::Create | Action::Update | Action::Overwrite
            ) {
                continue;
            }
            let contents: &[u8] = if a.path == MANIFEST_PATH {
                manifest_json.as_bytes()
            } else {
                match w.files.files().get(&a.path) {
                    Some(f) => f.contents.as_bytes(),
                    None => continue,
                }
            };
            let dest = root.join(&a.path);
            if let Some(d) = dest.parent() {
                std::fs::create_dir_all(d).map_err(|e| GenError::io(d, e))?;
            }
            std::fs::write(&dest, contents).map_err(|e| GenError::io(&dest, e))?;
        }
        self.staging.push(stage);
        Ok(self.staging.len() - 1)
    }

    /// Moves the staged files into place.
    fn commit(&mut self, w: &CrateWrite<'_>, p: &CratePlan, stage: usize) -> Result<(), GenError> {
        #[cfg(test)]
        if tests::FAIL_COMMIT_OF.with(|f| f.borrow().as_deref() == Some(p.node_name.as_str())) {
            return Err(GenError::Conflict(format!(
                "injected failure committing {}",
                p.node_name
            )));
        }
        let stage_root = self.staging[stage].path().to_path_buf();
        let staged = stage_root.join("crate");
        let backup = stage_root.join("backup");
        if p.fresh && !w.crate_dir.exists() {
            rename(&staged, &w.crate_dir)?;
            self.journal.push(Undo::CreatedDir(w.crate_dir.clone()));
            return Ok(());
        }
        for a in &p.actions {
            let dest = w.crate_dir.join(&a.path);
            match a.action {
                Action::Create | Action::Update | Action::Overwrite => {
                    if let Some(d) = dest.parent() {
                        self.create_dirs(d)?;
                    }
                    if dest.exists() {
                        let b = backup.join(&a.path);
                        if let Some(d) = b.parent() {
                            std::fs::create_dir_all(d).map_err(|e| GenError::io(d, e))?;
                        }
                        rename(&dest, &b)?;
                        self.journal.push(Undo::Replaced {
                            original: dest.clone(),
                            backup: b,
                        });
                    }
                    rename(&staged.join(&a.path), &dest)?;
                    self.journal.push(Undo::CreatedFile(dest));
                }
                Action::Remove => {
                    let b = backup.join(&a.path);
                    if let Some(d) = b.parent() {
                        std::fs::create_dir_all(d).map_err(|e| GenError::io(d, e))?;
                    }
                    rename(&dest, &b)?;
                    self.journal.push(Undo::Replaced {
                        original: dest.clone(),
                        backup: b,
                    });
                    remove_empty_parents(&dest, &w.crate_dir);
                }
                Action::Unchanged | Action::KeepUser => {}
            }
        }
        Ok(())
    }

    fn rollback(&mut self) {
        while let Some(step) = self.journal.pop() {
            let _ = match step {
                Undo::CreatedDir(d) => std::fs::remove_dir_all(&d),
                Undo::CreatedFile(f) => std::fs::remove_file(&f),
                Undo::Replaced { original, backup } => {
                    if let Some(d) = original.parent() {
                        let _ = std::fs::create_dir_all(d);
                    }
                    std::fs::rename(&backup, &original)
                }
            };
        }
        self.staging.clear();
    }

    fn finish(&mut self) {
        self.journal.clear();
        self.staging.clear();
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), GenError> {
    std::fs::rename(from, to).map_err(|e| GenError::Io {
        path: to.to_path_buf(),
        source: std::io::Error::new(
            e.kind(),
            format!("moving {} into place: {e}", from.display()),
        ),
    })
}

/// Removes folders emptied by an orphan's removal, up to (not including) `root`.
fn remove_empty_parents(file: &Path, root: &Path) {
    let mut cur = file.parent();
    while let Some(d) = cur {
        if d == root || !d.starts_with(root) {
            break;
        }
        if std::fs::remove_dir(d).is_err() {
            break;
        }
        cur = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fileset::FileSet;
    use crate::manifest::{ContractRecord, RecordedOptions};

    fn files(extra: &[(&str, Owner, &str)]) -> VerifiedFileSet {
        let mut fs = FileSet::new();
        fs.insert("Cargo.toml", Owner::Generated, "[package]\nname = \"n\"\n");
        fs.insert("src/generated/mod.rs", Owner::Generated, "// @generated\n");
        fs.insert("src/handlers.rs", Owner::User, "// yours\n");
        for (p, o, c) in extra {
            fs.insert(*p, *o, *c);
        }
        VerifiedFileSet::unchecked(fs)
    }

    thread_local! {
        pub(super) static FAIL_COMMIT_OF: std::cell::RefCell<Option<String>> =
            const { std::cell::RefCell::new(None) };
    }

    fn cw<'a>(dir: &Path, f: &'a VerifiedFileSet, contract_hash: &str) -> CrateWrite<'a> {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        CrateWrite {
            crate_dir: dir.to_path_buf(),
            files: f,
            manifest: Manifest::new(
                &name,
                ContractRecord {
                    path: "c.yaml".into(),
                    sha256: contract_hash.into(),
                },
                "t",
                RecordedOptions::default(),
                f.files(),
            ),
        }
    }

    fn run(
        dir: &Path,
        f: &VerifiedFileSet,
        opts: WriteOptions,
    ) -> Result<Vec<CratePlan>, GenError> {
        write_crates(&[cw(dir, f, "h")], &opts)
    }

    #[test]
    fn a_fresh_crate_is_written_whole_with_its_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out/n");
        let f = files(&[]);
        let plans = run(&dir, &f, WriteOptions::default()).unwrap();
        assert!(plans[0].fresh);
        assert_eq!(plans[0].count(Action::Create), 4);
        assert_eq!(
            std::fs::read_to_string(dir.join("src/handlers.rs")).unwrap(),
            "// yours\n"
        );
        let m = Manifest::load(&dir).unwrap().unwrap();
        assert_eq!(m.files.len(), 3);
        // No staging folders are left behind.
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("out")).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn rewriting_the_same_files_changes_nothing_and_keeps_mtimes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n");
        let f = files(&[]);
        run(&dir, &f, WriteOptions::default()).unwrap();
        let before = std::fs::metadata(dir.join("Cargo.toml"))
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let plans = run(&dir, &f, WriteOptions::default()).unwrap();
        assert!(!plans[0].changes_anything(), "{:?}", plans[0].actions);
        let after = std::fs::metadata(dir.join("Cargo.toml"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn user_files_survive_and_orphans_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n");
        let v1 = files(&[("src/generated/old/gone.rs", Owner::Generated, "// old\n")]);
        run(&dir, &v1, WriteOptions::default()).unwrap();
        std::fs::write(dir.join("src/handlers.rs"), "// my edit\n").unwrap();
        let v2 = files(&[("src/generated/new.rs", Owner::Generated, "// new\n")]);
        let plans = run(
            &dir,
            &v2,
            WriteOptions {
                force: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(plans[0].count(Action::Remove), 1);
        assert_eq!(plans[0].count(Action::KeepUser), 1);
        assert_eq!(
            std::fs::read_to_string(dir.join("src/handlers.rs")).unwrap(),
            "// my edit\n"
        );
        assert!(!dir.join("src/generated/old").exists());
        assert!(dir.join("src/generated/new.rs").exists());
        let m = Manifest::load(&dir).unwrap().unwrap();
        assert!(m.file("src/generated/old/gone.rs").is_none());
    }

    #[test]
    fn hand_edits_are_refused_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n");
        let v1 = files(&[]);
        run(&dir, &v1, WriteOptions::default()).unwrap();
        std::fs::write(dir.join("src/generated/mod.rs"), "// hand edit\n").unwrap();
        let v2 = files(&[("src/generated/new.rs", Owner::Generated, "// new\n")]);
        let err = run(&dir, &v2, WriteOptions::default()).unwrap_err();
        assert!(err.to_string().contains("edited by hand"), "{err}");
        assert!(
            !dir.join("src/generated/new.rs").exists(),
            "nothing is written"
        );
        run(
            &dir,
            &v2,
            WriteOptions {
                force: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("src/generated/mod.rs")).unwrap(),
            "// @generated\n"
        );
    }

    #[test]
    fn a_foreign_file_at_a_generated_path_is_a_conflict() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "mine").unwrap();
        let err = run(&dir, &files(&[]), WriteOptions::default()).unwrap_err();
        assert!(err.to_string().contains("not written by onex-gen"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join("Cargo.toml")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn a_conflict_in_one_crate_writes_no_crate() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("Cargo.toml"), "mine").unwrap();
        let f = files(&[]);
        let err = write_crates(
            &[cw(&a, &f, "h"), cw(&b, &f, "h")],
            &WriteOptions::default(),
        );
        assert!(err.is_err());
        assert!(!a.exists());
    }

    #[test]
    fn a_failing_commit_is_rolled_back() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        let f = files(&[]);
        run(&b, &f, WriteOptions::default()).unwrap();
        let v2 = files(&[("src/generated/x.rs", Owner::Generated, "// x\n")]);
        FAIL_COMMIT_OF.with(|f| *f.borrow_mut() = Some("b".into()));
        let err = write_crates(
            &[cw(&a, &v2, "h"), cw(&b, &v2, "h")],
            &WriteOptions {
                force: true,
                ..Default::default()
            },
        );
        FAIL_COMMIT_OF.with(|f| *f.borrow_mut() = None);
        assert!(err.unwrap_err().to_string().contains("injected"));
        assert!(!a.exists(), "the crate written first was rolled back");
        assert!(!b.join("src/generated/x.rs").exists());
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no staging folders are left: {left:?}");
        assert_eq!(
            Manifest::load(&b).unwrap().unwrap().files.len(),
            3,
            "b's manifest is the old one"
        );
    }

    #[test]
    fn dry_run_touches_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n");
        let plans = run(
            &dir,
            &files(&[]),
            WriteOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(plans[0].count(Action::Create), 4);
        assert!(!dir.exists());
        assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
    }

    fn read_tree(dir: &Path) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                (rel, std::fs::read_to_string(e.path()).unwrap())
            })
            .collect();
        out.sort();
        out
    }

    fn fixture_files(dir: &Path) -> VerifiedFileSet {
        let mut fs = FileSet::new();
        for (rel, text) in read_tree(dir) {
            let owner = if rel == "src/handlers.rs" {
                Owner::User
            } else {
                Owner::Generated
            };
            fs.insert(rel, owner, text);
        }
        VerifiedFileSet::unchecked(fs)
    }

    /// Runs the fixture cases in `stages/6-write/cases/` (see its README).
    #[test]
    fn stage_fixtures() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("stages/6-write/cases");
        let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        cases.sort();
        assert!(cases.len() >= 5, "fixture cases in {}", root.display());
        let update = std::env::var_os("UPDATE_GOLDEN").is_some();
        let mut failures = Vec::new();
        for case in cases {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("crate");
            if case.join("previous").is_dir() {
                let prev = fixture_files(&case.join("previous"));
                run(&dir, &prev, WriteOptions::default()).unwrap();
            }
            if case.join("edits").is_dir() {
                for (rel, text) in read_tree(&case.join("edits")) {
                    std::fs::write(dir.join(rel), text).unwrap();
                }
            }
            let files = fixture_files(&case.join("files"));
            let opts = WriteOptions {
                force: case.join("force").exists(),
                dry_run: false,
            };
            let mut got = String::new();
            match run(&dir, &files, opts) {
                Ok(plans) => {
                    for a in &plans[0].actions {
                        got.push_str(&format!("{} {}\n", a.action, a.path));
                    }
                }
                Err(e) => {
                    let msg = e.to_string().replace(&dir.display().to_string(), "<crate>");
                    got.push_str(&format!("{msg}\n"));
                }
            }
            got.push_str("-- after:\n");
            for (rel, text) in read_tree(&dir) {
                let shown = if rel == MANIFEST_PATH {
                    "{...}".to_owned()
                } else {
                    text.lines().collect::<Vec<_>>().join(" | ")
                };
                got.push_str(&format!("{rel}: {shown}\n"));
            }
            let expected_path = case.join("expected.txt");
            if update {
                std::fs::write(&expected_path, &got).unwrap();
            }
            let want = std::fs::read_to_string(&expected_path).unwrap_or_default();
            if got != want {
                failures.push(format!(
                    "{}:\n--- expected\n{want}+++ got\n{got}",
                    case.display()
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
