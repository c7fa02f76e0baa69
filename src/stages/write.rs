//! Stage 6: write — VerifiedFileSet -> disk + manifest.
//!
//! - All or nothing: every crate of a run is planned (and every conflict
//!   found) before anything is written.
//! - Crash-safe: a crate is staged whole in a folder beside it (unchanged and
//!   user files hard-linked, new contents written) and swapped in with one
//!   atomic exchange of the two folders, so a crate is always the old one or
//!   the new one, with its manifest, whenever the process dies. A failure
//!   after some crates of a run were swapped swaps them back.
//! - Unchanged files are not rewritten (their mtime is kept), and a run that
//!   changes nothing touches nothing.
//! - Three kinds of file ([`Owner`]):
//!   - generated (`src/generated/`, `tests/node.rs`, the vendored runtime):
//!     onex-gen's alone; a hand edit (disk hash differs from the manifest),
//!     or a file at such a path that onex-gen did not write, is a conflict:
//!     nothing is written unless `force`;
//!   - user-owned (`src/handlers.rs`, `tests/handlers.rs`): created once,
//!     never touched again, even with `force`;
//!   - shared ([`SHARED_FILES`]: Cargo.toml, Cargo.lock, lib.rs, main.rs,
//!     README.md, ...): the user may edit them. The text generated last is
//!     kept in `.onex-gen/base/`; a regeneration merges the user's edits
//!     with the generator's changes ([`crate::merge`]). When both changed
//!     the same lines nothing is written (exit 1) and the conflict is shown
//!     with markers, unless `force`, which writes the file with the markers
//!     for the user to resolve.
//! - Files the user added (anywhere but `src/generated/`) are never touched.
//!   Generated files in the old manifest that are no longer generated
//!   (orphans) are removed; a shared one the user edited is left to them.
//!
//! [`Owner`]: crate::fileset::Owner
//! [`SHARED_FILES`]: crate::stages::write::SHARED_FILES

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::GenError;
use crate::fileset::{FileSet, Owner};
use crate::manifest::{
    crate_entry, read_crate_file, sha256_hex, slash, CrateEntry, FileRecord, Manifest,
    MANIFEST_PATH, MAX_CRATE_FILE_BYTES, MAX_MANIFEST_BYTES,
};
use crate::merge::{self, Merged};
use crate::pipeline::Generation;
use crate::stages::verify::VerifiedFileSet;

/// Generated files the user may edit; onex-gen merges its changes with theirs.
pub const SHARED_FILES: &[&str] = &[
    ".dockerignore",
    ".env.template",
    ".gitignore",
    "Cargo.lock",
    "Cargo.toml",
    "Dockerfile",
    "README.md",
    "compose.yaml",
    "src/lib.rs",
    "src/main.rs",
];

/// Where the base of every shared file is kept: the text onex-gen generated
/// for it last, the common ancestor of the next merge.
pub const BASE_DIR: &str = ".onex-gen/base/";

/// The base copy of a shared file.
pub fn base_path(path: &str) -> String {
    format!("{BASE_DIR}{path}")
}

/// What stage 6 adds to a generation's files before anything is written:
/// the crate's `Cargo.lock`, derived from its `Cargo.toml`
/// ([`crate::lockfile::for_manifest`]); the ownership rules (the files in
/// [`SHARED_FILES`] become [`Owner::Shared`]); and the base copy of each
/// shared file under [`BASE_DIR`] (a generated file, recorded in the
/// manifest like any other, so `check` and the golden files see exactly
/// what is written).
pub fn share(mut files: FileSet) -> FileSet {
    // Stage 5 verified that Cargo.toml parses with a package name and version.
    let lock = files
        .get("Cargo.toml")
        .and_then(|m| crate::lockfile::for_manifest(&m.contents).ok());
    if let Some(lock) = lock {
        files.insert("Cargo.lock", Owner::Generated, lock);
    }
    let mut bases = Vec::new();
    for (path, file) in files.files.iter_mut() {
        if file.owner == Owner::Generated && SHARED_FILES.contains(&path.as_str()) {
            file.owner = Owner::Shared;
            bases.push((base_path(path), file.contents.clone()));
        }
    }
    for (path, contents) in bases {
        files.insert(path, Owner::Generated, contents);
    }
    files
}

#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Overwrite generated files edited by hand, and write shared files
    /// whose merge conflicts with conflict markers (user-owned files are
    /// still kept).
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
    /// A shared file the user edited and the generator has nothing new for
    /// (or no longer generates): left as it is.
    KeepEdits,
    /// A shared file the user edited, the generator's changes merged in.
    Merge,
    /// A generated file edited by hand (or a shared one without a base to
    /// merge with), overwritten because of `force`.
    Overwrite,
    /// A shared file whose merge conflicts, written with conflict markers
    /// because of `force`.
    ConflictMarkers,
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
            Action::KeepEdits => "keep (your edits)",
            Action::Merge => "merge (your edits kept)",
            Action::Overwrite => "overwrite (hand edit, --force)",
            Action::ConflictMarkers => "conflict markers written (--force)",
            Action::Remove => "remove (no longer generated)",
        })
    }
}

impl Action {
    /// Whether the file gets new contents.
    fn writes(self) -> bool {
        matches!(
            self,
            Action::Create
                | Action::Update
                | Action::Overwrite
                | Action::Merge
                | Action::ConflictMarkers
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileAction {
    pub path: String,
    pub action: Action,
    /// What a merge produced (for `Merge` and `ConflictMarkers`).
    #[serde(skip)]
    pub merged: Option<String>,
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
        self.actions.iter().any(|a| {
            !matches!(
                a.action,
                Action::Unchanged | Action::KeepUser | Action::KeepEdits
            )
        })
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

/// The base of a shared file as onex-gen recorded it: `Some` only when the
/// copy in `.onex-gen/base/` is the one the manifest vouches for.
pub fn recorded_base(crate_dir: &Path, record: &FileRecord) -> Option<String> {
    let bytes =
        read_crate_file(crate_dir, &base_path(&record.path), MAX_CRATE_FILE_BYTES).ok()??;
    (sha256_hex(&bytes) == record.sha256)
        .then(|| String::from_utf8(bytes).ok())
        .flatten()
}

/// What regenerating a shared file the user edited gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedOutcome {
    /// Nothing new from the generator: the user's text stays.
    Keep,
    /// The merge of both.
    Merged(String),
    /// Both changed the same lines: the text with conflict markers.
    Conflict(String),
    /// No base to merge with (missing or altered), or a side is not text.
    NoBase,
}

/// Merges a shared file the user edited (`disk` differs from the record)
/// with the generator's `new` text.
pub fn merge_shared(
    crate_dir: &Path,
    record: &FileRecord,
    disk: &[u8],
    new: &str,
) -> SharedOutcome {
    if record.sha256 == sha256_hex(new.as_bytes()) {
        return SharedOutcome::Keep;
    }
    let (Some(base), Ok(ours)) = (recorded_base(crate_dir, record), std::str::from_utf8(disk))
    else {
        return SharedOutcome::NoBase;
    };
    match merge::merge(&record.path, &base, ours, new) {
        Merged::Clean(m) if m == ours => SharedOutcome::Keep,
        Merged::Clean(m) => SharedOutcome::Merged(m),
        Merged::Conflict(m) => SharedOutcome::Conflict(m),
    }
}

/// Plans one crate against what is on disk, given its manifest there
/// (`old`); `Err` lists every conflict. Files are read only as regular
/// files reached without a symbolic link ([`read_crate_file`]): a link or a
/// special file where onex-gen keeps a file is a conflict, even with
/// `force`, so nothing is ever read or written through it.
pub fn plan(
    w: &CrateWrite<'_>,
    old: Option<&Manifest>,
    opts: &WriteOptions,
) -> Result<CratePlan, Vec<String>> {
    let dir = &w.crate_dir;
    let fresh = !dir.exists();
    if !fresh && !dir.is_dir() {
        return Err(vec![format!(
            "{}: is a file, not a folder (expected the crate's folder, or nothing, there)",
            dir.display()
        )]);
    }
    if let Some(outside) = linked_outside(dir) {
        return Err(vec![format!(
            "{}: is a symbolic link to a folder outside the output folder ({}); onex-gen \
             writes only inside the output folder: generate into that folder's parent \
             with -o, or replace the link with the crate",
            dir.display(),
            outside.display()
        )]);
    }
    let mut conflicts = Vec::new();
    let mut actions = Vec::new();
    let files = w.files.files();
    let mut push = |path: &str, action: Action, merged: Option<String>| {
        actions.push(FileAction {
            path: path.to_owned(),
            action,
            merged,
        })
    };

    for (path, file) in files.iter() {
        let dest = dir.join(path);
        if file.owner == Owner::User {
            // The user's, whatever it is (a link too): never read, never written.
            match if fresh {
                Ok(CrateEntry::Missing)
            } else {
                crate_entry(dir, path)
            } {
                Ok(CrateEntry::Missing) => push(path, Action::Create, None),
                Ok(_) => push(path, Action::KeepUser, None),
                Err(e) => conflicts.push(e.to_string()),
            }
            continue;
        }
        let on_disk = if fresh {
            None
        } else {
            match read_crate_file(dir, path, MAX_CRATE_FILE_BYTES) {
                Ok(b) => b,
                Err(e) => {
                    conflicts.push(e.to_string());
                    continue;
                }
            }
        };
        let Some(bytes) = on_disk else {
            push(path, Action::Create, None);
            continue;
        };
        if bytes == file.contents.as_bytes() {
            push(path, Action::Unchanged, None);
            continue;
        }
        // Bases are bookkeeping: always brought up to date.
        if path.starts_with(BASE_DIR) {
            push(path, Action::Update, None);
            continue;
        }
        let recorded = old.and_then(|m| m.file(path));
        let Some(record) = recorded else {
            if opts.force {
                push(path, Action::Overwrite, None);
            } else {
                conflicts.push(format!(
                    "{}: exists but was not written by onex-gen (not in the manifest); \
                     remove it, or pass --force to overwrite it",
                    dest.display()
                ));
            }
            continue;
        };
        if record.sha256 == sha256_hex(&bytes) {
            push(path, Action::Update, None);
            continue;
        }
        if file.owner == Owner::Generated {
            if opts.force {
                push(path, Action::Overwrite, None);
            } else {
                conflicts.push(format!(
                    "{}: generated file was edited by hand (its hash differs from the manifest); \
                     move the change into a user-owned file, or pass --force to overwrite it",
                    dest.display()
                ));
            }
            continue;
        }
        match merge_shared(dir, record, &bytes, &file.contents) {
            SharedOutcome::Keep => push(path, Action::KeepEdits, None),
            SharedOutcome::Merged(m) => push(path, Action::Merge, Some(m)),
            SharedOutcome::Conflict(m) if opts.force => {
                push(path, Action::ConflictMarkers, Some(m))
            }
            SharedOutcome::Conflict(m) => conflicts.push(conflict_message(&dest, path, &m)),
            SharedOutcome::NoBase if opts.force => push(path, Action::Overwrite, None),
            SharedOutcome::NoBase => conflicts.push(format!(
                "{}: edited, and there is no base to merge onex-gen's changes with \
                 ({} is missing or altered); pass --force to overwrite your edits",
                dest.display(),
                base_path(path)
            )),
        }
    }

    if let Some(old) = old {
        for rec in &old.files {
            if rec.owner == Owner::User || files.get(&rec.path).is_some() {
                continue;
            }
            let dest = dir.join(&rec.path);
            let bytes = match read_crate_file(dir, &rec.path, MAX_CRATE_FILE_BYTES) {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    conflicts.push(e.to_string());
                    continue;
                }
            };
            let edited = sha256_hex(&bytes) != rec.sha256 && !rec.path.starts_with(BASE_DIR);
            if !edited || opts.force && rec.owner == Owner::Generated {
                push(&rec.path, Action::Remove, None);
            } else if rec.owner == Owner::Shared {
                // No longer generated, but edited: it is the user's now.
                push(&rec.path, Action::KeepEdits, None);
            } else {
                conflicts.push(format!(
                    "{}: is no longer generated, but was edited by hand so it is not removed; \
                     delete it yourself, or pass --force",
                    dest.display()
                ));
            }
        }
    }

    let manifest_json = w.manifest.to_json();
    let manifest_action = match if fresh {
        Ok(None)
    } else {
        read_crate_file(dir, MANIFEST_PATH, MAX_MANIFEST_BYTES)
    } {
        Ok(None) => Action::Create,
        Ok(Some(b)) if b == manifest_json.as_bytes() => Action::Unchanged,
        Ok(Some(_)) => Action::Update,
        Err(e) => {
            conflicts.push(e.to_string());
            Action::Update
        }
    };
    push(MANIFEST_PATH, manifest_action, None);
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

/// A merge conflict, with each conflicting region between its markers.
fn conflict_message(dest: &Path, path: &str, conflicted: &str) -> String {
    let excerpts = merge::conflict_excerpts(conflicted, 2);
    let mut msg = format!(
        "{}: your edits and onex-gen's changes touch the same lines ({} conflict(s)); \
         change the file or the contract so they agree and run again, or pass --force \
         to write the file with these conflict markers and resolve them there:",
        dest.display(),
        excerpts.len()
    );
    for (line, text) in excerpts {
        msg.push_str(&format!("\n    {path}:{line}:"));
        for l in text.lines() {
            msg.push_str("\n      ");
            msg.push_str(l);
        }
    }
    msg
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
    // One run at a time plans, stages and swaps crates in a folder: a run
    // that planned against a crate another run then replaced would write a
    // crate that is neither, and would take the other's staging folder for
    // a killed run's and delete it. A dry run only reads.
    let mut tx = Transaction::default();
    let _locks = if opts.dry_run {
        Vec::new()
    } else {
        match tx.lock_parents(writes) {
            Ok(locks) => locks,
            Err(e) => {
                tx.rollback();
                return Err(e);
            }
        }
    };
    let result = write_locked(writes, opts, &mut tx);
    if result.is_err() {
        tx.rollback();
    }
    result
}

/// [`write_crates`] once the folders it writes in are held.
fn write_locked(
    writes: &[CrateWrite<'_>],
    opts: &WriteOptions,
    tx: &mut Transaction,
) -> Result<Vec<CratePlan>, GenError> {
    let mut plans = Vec::new();
    let mut conflicts = Vec::new();
    for w in writes {
        // A manifest that cannot be read is an error, not a conflict: the
        // crate's record of what onex-gen wrote is damaged.
        let old = if w.crate_dir.is_dir() {
            Manifest::load(&w.crate_dir)?
        } else {
            None
        };
        match plan(w, old.as_ref(), opts) {
            Ok(p) => plans.push(p),
            Err(c) => conflicts.extend(c),
        }
    }
    if !conflicts.is_empty() {
        // A linked folder is the conflict of every file below it: said once.
        let mut seen = BTreeSet::new();
        conflicts.retain(|c| seen.insert(c.clone()));
        return Err(GenError::Conflict(format!(
            "refusing to write (nothing was written):\n  {}",
            conflicts.join("\n  ")
        )));
    }
    if opts.dry_run {
        return Ok(plans);
    }
    let mut staged = Vec::new();
    for (w, p) in writes.iter().zip(&plans) {
        if p.changes_anything() {
            staged.push(Some(tx.stage(w, p)?));
        } else {
            staged.push(None);
        }
    }
    for stage in staged.into_iter().flatten() {
        tx.commit(stage)?;
    }
    tx.finish();
    Ok(plans)
}

/// One undoable step.
#[derive(Debug)]
enum Undo {
    /// A folder that did not exist before.
    CreatedDir(PathBuf),
    /// `crate_dir` and the staged folder `staged` were exchanged.
    Exchanged { crate_dir: PathBuf, staged: PathBuf },
}

/// A crate staged whole beside its folder, ready to be swapped in.
#[derive(Debug)]
struct Staged {
    /// `<stage>/crate`: the new crate.
    root: PathBuf,
    /// The real crate folder (symbolic links resolved).
    crate_dir: PathBuf,
    fresh: bool,
    node_name: String,
}

#[derive(Debug, Default)]
struct Transaction {
    journal: Vec<Undo>,
    staging: Vec<tempfile::TempDir>,
}

/// The prefix of the staging folders of the crate in `crate_dir`, beside
/// it. Named after the crate's folder, not its node: one run may write two
/// crates of one node into one folder (each given its folder), and each
/// takes only its own stages for a killed run's leftovers.
fn stage_prefix(crate_dir: &Path) -> String {
    let name = crate_dir.file_name().unwrap_or_default().to_string_lossy();
    format!(".onex-gen-stage-{name}-")
}

/// How a run holds the folders a crate is in: `new` holds them
/// exclusively from planning to the swap, `check` shared while it reads, so
/// it waits for a swap in progress and `check` runs never wait for each
/// other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// A lock on a folder: flock(2) on the folder itself, so no file is added
/// to it; released when dropped (or the process ends).
#[derive(Debug)]
pub struct FolderLock(#[allow(dead_code)] std::fs::File);

/// What [`lock_folder`] did.
#[derive(Debug)]
enum Locking {
    Locked(FolderLock),
    /// This run holds the folder already, under another name.
    AlreadyHeld,
    /// The folder was removed while this run waited for it.
    Gone,
}

/// Locks the folder `dir`, waiting while another run holds it in a mode
/// that excludes `mode`. `held` has the ids of the folders this run has
/// locked (a second lock on one would wait for itself).
#[cfg(unix)]
fn lock_folder(
    dir: &Path,
    mode: LockMode,
    held: &mut BTreeSet<(u64, u64)>,
) -> Result<Locking, GenError> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let failed = |e: std::io::Error| GenError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::new(e.kind(), format!("locking the folder: {e}")),
    };
    let operation = match mode {
        LockMode::Shared => libc::LOCK_SH,
        LockMode::Exclusive => libc::LOCK_EX,
    };
    loop {
        // Opened read-only, as a folder and not through a link: a link or
        // a FIFO planted under its name is refused, never opened.
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Locking::Gone),
            Err(e) => return Err(failed(e)),
        };
        let meta = file.metadata().map_err(failed)?;
        let id = (meta.dev(), meta.ino());
        if held.contains(&id) {
            return Ok(Locking::AlreadyHeld);
        }
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // A file system without flock: other runs cannot be kept
                // out there.
                Some(libc::ENOLCK | libc::EOPNOTSUPP) => {}
                _ => return Err(failed(e)),
            }
        }
        // The run that held it may have removed the folder (it created it
        // and then wrote nothing), or put another in its place.
        match std::fs::metadata(dir).map(|m| (m.dev(), m.ino())) {
            Ok(now) if now == id => {
                held.insert(id);
                return Ok(Locking::Locked(FolderLock(file)));
            }
            Ok(_) => continue,
            Err(_) => return Ok(Locking::Gone),
        }
    }
}

#[cfg(not(unix))]
fn lock_folder(
    _dir: &Path,
    _mode: LockMode,
    _held: &mut BTreeSet<(u64, u64)>,
) -> Result<Locking, GenError> {
    Ok(Locking::AlreadyHeld)
}

/// The folders a crate at `crate_dir` is in, which a run writing it locks:
/// the one it is named in, and the one its real folder is in when it is a
/// link. Not resolved: the folders may not exist yet.
pub fn crate_folders(crate_dir: &Path) -> Vec<PathBuf> {
    let real = std::fs::canonicalize(crate_dir).ok();
    let named = match (crate_dir.components().next_back(), &real) {
        // `.` or `..` names the crate itself, not the folder it is in.
        (Some(std::path::Component::Normal(_)), _) | (_, None) => parent_of(crate_dir),
        (_, Some(real)) => parent_of(real),
    };
    let mut folders = vec![named];
    folders.extend(real.map(|r| parent_of(&r)));
    folders
}

/// Locks the folders `dirs` in `mode`, each once, in their order. They are
/// real paths (links resolved), so every run agrees on the order however it
/// spelled them, and two runs over the same folders cannot wait for each
/// other. For a folder removed while this run waited, `gone` says whether
/// to lock it again (after making it anew).
pub fn lock_folders(
    dirs: &BTreeSet<PathBuf>,
    mode: LockMode,
    mut gone: impl FnMut(&Path) -> Result<bool, GenError>,
) -> Result<Vec<FolderLock>, GenError> {
    let mut locks = Vec::new();
    let mut held = BTreeSet::new();
    for dir in dirs {
        loop {
            match lock_folder(dir, mode, &mut held)? {
                Locking::Locked(lock) => locks.push(lock),
                Locking::AlreadyHeld => {}
                Locking::Gone if gone(dir)? => continue,
                Locking::Gone => {}
            }
            break;
        }
    }
    Ok(locks)
}

impl Transaction {
    /// Creates the folder each crate goes in (journalled, so a run that
    /// then writes nothing removes it again) and locks it, waiting for a
    /// run that holds it. Each folder is locked once, in one order, so two
    /// runs over the same folders cannot wait for each other.
    fn lock_parents(&mut self, writes: &[CrateWrite<'_>]) -> Result<Vec<FolderLock>, GenError> {
        let parents: BTreeSet<PathBuf> = writes
            .iter()
            .flat_map(|w| crate_folders(&w.crate_dir))
            .collect();
        let mut real = BTreeSet::new();
        for dir in parents {
            self.create_dirs(&dir)?;
            real.insert(std::fs::canonicalize(&dir).map_err(|e| GenError::io(&dir, e))?);
        }
        lock_folders(&real, LockMode::Exclusive, |dir| {
            self.create_dirs(dir)?;
            Ok(true)
        })
    }

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
            match std::fs::create_dir(&d) {
                Ok(()) => self.journal.push(Undo::CreatedDir(d)),
                // `a/..` exists once `a` was made.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(GenError::io(&d, e)),
            }
        }
        Ok(())
    }

    /// Builds the new crate in a staging folder beside the crate: every
    /// file of the old crate that stays as it is hard-linked (copied where
    /// links are not possible), every new or changed file written, the
    /// manifest last.
    fn stage(&mut self, w: &CrateWrite<'_>, p: &CratePlan) -> Result<Staged, GenError> {
        let crate_dir = if w.crate_dir.is_symlink() {
            std::fs::canonicalize(&w.crate_dir).map_err(|e| GenError::io(&w.crate_dir, e))?
        } else {
            w.crate_dir.clone()
        };
        let parent = parent_of(&crate_dir);
        self.create_dirs(&parent)?;
        remove_stale_stages(&parent, &crate_dir);
        let stage = tempfile::Builder::new()
            .prefix(&stage_prefix(&crate_dir))
            .tempdir_in(&parent)
            .map_err(|e| GenError::io(&parent, e))?;
        let root = stage.path().join("crate");
        let fresh = p.fresh && !crate_dir.exists();
        let replaced: BTreeSet<&str> = p
            .actions
            .iter()
            .filter(|a| a.action.writes() || a.action == Action::Remove)
            .map(|a| a.path.as_str())
            .collect();
        if fresh {
            std::fs::create_dir(&root).map_err(|e| GenError::io(&root, e))?;
        } else {
            mirror(&crate_dir, &root, &replaced)?;
        }
        let manifest_json = w.manifest.to_json();
        for a in &p.actions {
            if !a.action.writes() {
                continue;
            }
            let contents: &str = if a.path == MANIFEST_PATH {
                &manifest_json
            } else if let Some(m) = &a.merged {
                m
            } else {
                match w.files.files().get(&a.path) {
                    Some(f) => &f.contents,
                    None => continue,
                }
            };
            write_new(&root.join(&a.path), contents)?;
        }
        for a in &p.actions {
            if a.action == Action::Remove {
                remove_empty_parents(&root.join(&a.path), &root);
            }
        }
        self.staging.push(stage);
        Ok(Staged {
            root,
            crate_dir,
            fresh,
            node_name: p.node_name.clone(),
        })
    }

    /// Swaps the staged crate in: one rename for a new crate, one atomic
    /// exchange of the two folders for an existing one.
    fn commit(&mut self, s: Staged) -> Result<(), GenError> {
        #[cfg(test)]
        if tests::FAIL_COMMIT_OF.with(|f| f.borrow().as_deref() == Some(s.node_name.as_str())) {
            return Err(GenError::Conflict(format!(
                "injected failure committing {}",
                s.node_name
            )));
        }
        if s.fresh {
            rename_new(&s.root, &s.crate_dir)?;
            self.journal.push(Undo::CreatedDir(s.crate_dir));
        } else {
            exchange(&s.root, &s.crate_dir).map_err(|e| GenError::Io {
                path: s.crate_dir.clone(),
                source: std::io::Error::new(
                    e.kind(),
                    format!(
                        "swapping in the new {} crate from {}: {e}",
                        s.node_name,
                        s.root.display()
                    ),
                ),
            })?;
            self.journal.push(Undo::Exchanged {
                crate_dir: s.crate_dir,
                staged: s.root,
            });
        }
        Ok(())
    }

    fn rollback(&mut self) {
        while let Some(step) = self.journal.pop() {
            let _ = match step {
                Undo::CreatedDir(d) => std::fs::remove_dir_all(&d),
                Undo::Exchanged { crate_dir, staged } => exchange(&staged, &crate_dir),
            };
        }
        self.staging.clear();
    }

    /// Drops the staging folders, which now hold the old crates.
    fn finish(&mut self) {
        self.journal.clear();
        self.staging.clear();
    }
}

/// Where the crate folder `dir` leads when it is a symbolic link to a
/// folder outside the folder it is in.
fn linked_outside(dir: &Path) -> Option<PathBuf> {
    if !dir.is_symlink() {
        return None;
    }
    let real = std::fs::canonicalize(dir).ok()?;
    let out = std::fs::canonicalize(parent_of(dir)).ok()?;
    (!real.starts_with(&out)).then_some(real)
}

/// The folder `dir` is in (`.` for a bare name).
fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Removes staging folders a killed run left beside the crate (the folder
/// is locked, so no other run is staging there). If a run
/// died between the two renames of [`exchange`]'s fallback, the old crate
/// is put back first.
fn remove_stale_stages(parent: &Path, crate_dir: &Path) {
    let prefix = stage_prefix(crate_dir);
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        // The rest is the stage's random suffix: a crate folder whose name
        // merely starts with this one's (`x` and `x-y`) has stages of its own.
        let name = e.file_name();
        let ours =
            (name.to_string_lossy().strip_prefix(&prefix)).is_some_and(|rest| !rest.contains('-'));
        if !ours {
            continue;
        }
        // Only a real folder is a stage, and only a real folder in it the
        // crate it parked: a link planted under either name is left alone,
        // so nothing outside the output folder is ever moved in.
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let old = e.path().join(OLD_CRATE);
        let parked = std::fs::symlink_metadata(&old).is_ok_and(|m| m.is_dir());
        if parked && std::fs::symlink_metadata(crate_dir).is_err() {
            let _ = std::fs::rename(&old, crate_dir);
        }
        let _ = std::fs::remove_dir_all(e.path());
    }
}

/// Recreates the tree `from` at `to` with hard links to its files, except
/// the files at the `skip` paths (`/`-separated, relative).
fn mirror(from: &Path, to: &Path, skip: &BTreeSet<&str>) -> Result<(), GenError> {
    for entry in walkdir::WalkDir::new(from).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(from).to_path_buf();
            GenError::io(path, std::io::Error::other(e.to_string()))
        })?;
        let rel = entry
            .path()
            .strip_prefix(from)
            .expect("walkdir stays under its root");
        let dest = to.join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir(&dest).map_err(|e| GenError::io(&dest, e))?;
            if let Ok(meta) = entry.metadata() {
                let _ = std::fs::set_permissions(&dest, meta.permissions());
            }
        } else if kind.is_symlink() {
            let target =
                std::fs::read_link(entry.path()).map_err(|e| GenError::io(entry.path(), e))?;
            symlink(&target, &dest).map_err(|e| GenError::io(&dest, e))?;
        } else {
            let rel_str = slash(rel);
            if skip.contains(rel_str.as_str()) {
                continue;
            }
            if let Err(e) = std::fs::hard_link(entry.path(), &dest) {
                // Copying a FIFO or a device would read it (and block).
                if !kind.is_file() {
                    return Err(GenError::io(entry.path(), e));
                }
                std::fs::copy(entry.path(), &dest).map_err(|e| GenError::io(entry.path(), e))?;
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    let resolved = link.parent().unwrap_or(Path::new(".")).join(target);
    if resolved.is_dir() {
        std::os::windows::fs::symlink_dir(target, link)
    } else {
        std::os::windows::fs::symlink_file(target, link)
    }
}

fn write_new(dest: &Path, contents: &str) -> Result<(), GenError> {
    if let Some(d) = dest.parent() {
        std::fs::create_dir_all(d).map_err(|e| GenError::io(d, e))?;
    }
    std::fs::write(dest, contents).map_err(|e| GenError::io(dest, e))
}

fn rename_new(from: &Path, to: &Path) -> Result<(), GenError> {
    std::fs::rename(from, to).map_err(|e| GenError::Io {
        path: to.to_path_buf(),
        source: std::io::Error::new(
            e.kind(),
            format!("moving {} into place: {e}", from.display()),
        ),
    })
}

/// Where [`exchange`]'s fallback parks the old crate inside the stage.
const OLD_CRATE: &str = "old";

/// Swaps the folders `a` and `b` in one atomic step (Linux `renameat2`
/// with `RENAME_EXCHANGE`, macOS `renamex_np` with `RENAME_SWAP`). Where the
/// system or file system cannot, it falls back to two renames through
/// `<a's parent>/old`; a run killed between them leaves `b` missing and the
/// old folder in the stage, which the next run puts back.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    match exchange_atomic(a, b) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(code) if code == libc::EINVAL || code == libc::ENOSYS || code == libc::ENOTSUP
            ) =>
        {
            let parked = a.parent().unwrap_or(Path::new(".")).join(OLD_CRATE);
            std::fs::rename(b, &parked)?;
            if let Err(e) = std::fs::rename(a, b) {
                let _ = std::fs::rename(&parked, b);
                return Err(e);
            }
            std::fs::rename(&parked, a)
        }
        Err(e) => Err(e),
    }
}

#[cfg(target_os = "linux")]
fn exchange_atomic(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let b = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call;
    // renameat2 only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(target_os = "macos")]
fn exchange_atomic(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let b = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let rc = unsafe { libc::renamex_np(a.as_ptr(), b.as_ptr(), libc::RENAME_SWAP) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn exchange_atomic(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
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
    use crate::stages::read_tree;

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

    /// A temporary folder and the crate folder `n` in it (not yet created).
    fn tmp_crate() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n");
        (tmp, dir)
    }

    fn forced() -> WriteOptions {
        WriteOptions {
            force: true,
            ..Default::default()
        }
    }

    fn read(dir: &Path, rel: &str) -> String {
        std::fs::read_to_string(dir.join(rel)).unwrap()
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
        assert_eq!(read(&dir, "src/handlers.rs"), "// yours\n");
        let m = Manifest::load(&dir).unwrap().unwrap();
        assert_eq!(m.files.len(), 3);
        // No staging folders are left behind.
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("out")).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    /// A crate is locked through the folder it is in, however it is named:
    /// `n/..` names `out` itself, which is in the temporary folder, and a
    /// crate folder that is a link is also staged beside its target.
    #[cfg(unix)]
    #[test]
    fn the_folders_a_crate_is_in_are_those_it_is_named_and_found_in() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let out = root.join("out");
        std::fs::create_dir_all(out.join("n")).unwrap();
        std::fs::create_dir_all(root.join("real/m")).unwrap();
        std::os::unix::fs::symlink(root.join("real/m"), out.join("m")).unwrap();
        assert_eq!(crate_folders(&out.join("n")), [out.clone(), out.clone()]);
        assert_eq!(
            crate_folders(&out.join("n/..")),
            [root.clone(), root.clone()]
        );
        assert_eq!(
            crate_folders(&out.join("m")),
            [out.clone(), root.join("real")]
        );
        assert_eq!(crate_folders(&out.join("new")), [out]);
    }

    #[test]
    fn an_output_path_through_a_missing_folder_and_back_is_created() {
        // `-o gone/../out`, as `mkdir -p` takes it: `gone` is made, and
        // `gone/..` then exists already.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("gone/../out/n");
        run(&dir, &files(&[]), WriteOptions::default()).unwrap();
        assert_eq!(
            read(&tmp.path().join("out/n"), "src/handlers.rs"),
            "// yours\n"
        );
    }

    #[test]
    fn rewriting_the_same_files_changes_nothing_and_keeps_mtimes() {
        let (_tmp, dir) = tmp_crate();
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
        let (_tmp, dir) = tmp_crate();
        let v1 = files(&[("src/generated/old/gone.rs", Owner::Generated, "// old\n")]);
        run(&dir, &v1, WriteOptions::default()).unwrap();
        std::fs::write(dir.join("src/handlers.rs"), "// my edit\n").unwrap();
        let v2 = files(&[("src/generated/new.rs", Owner::Generated, "// new\n")]);
        let plans = run(&dir, &v2, forced()).unwrap();
        assert_eq!(plans[0].count(Action::Remove), 1);
        assert_eq!(plans[0].count(Action::KeepUser), 1);
        assert_eq!(read(&dir, "src/handlers.rs"), "// my edit\n");
        assert!(!dir.join("src/generated/old").exists());
        assert!(dir.join("src/generated/new.rs").exists());
        let m = Manifest::load(&dir).unwrap().unwrap();
        assert!(m.file("src/generated/old/gone.rs").is_none());
    }

    #[test]
    fn hand_edits_are_refused_unless_forced() {
        let (_tmp, dir) = tmp_crate();
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
        run(&dir, &v2, forced()).unwrap();
        assert_eq!(read(&dir, "src/generated/mod.rs"), "// @generated\n");
    }

    #[test]
    fn a_foreign_file_at_a_generated_path_is_a_conflict() {
        let (_tmp, dir) = tmp_crate();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "mine").unwrap();
        let err = run(&dir, &files(&[]), WriteOptions::default()).unwrap_err();
        assert!(err.to_string().contains("not written by onex-gen"), "{err}");
        assert_eq!(read(&dir, "Cargo.toml"), "mine");
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
        let err = write_crates(&[cw(&a, &v2, "h"), cw(&b, &v2, "h")], &forced());
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
        let (tmp, dir) = tmp_crate();
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

    fn fixture_files(dir: &Path) -> VerifiedFileSet {
        let fs = crate::stages::fixture_file_set(read_tree(dir));
        VerifiedFileSet::unchecked(fs).shared()
    }

    /// Runs the fixture cases in `stages/6-write/cases/` (see its README).
    #[test]
    fn stage_fixtures() {
        crate::stages::check_fixture_cases("6-write", |case| {
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
                let shown = if rel == MANIFEST_PATH || rel.ends_with("Cargo.lock") {
                    "{...}".to_owned()
                } else {
                    text.lines().collect::<Vec<_>>().join(" | ")
                };
                got.push_str(&format!("{rel}: {shown}\n"));
            }
            got
        });
    }
}
