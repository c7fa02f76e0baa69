//! The output root: the only folder the service writes to.
//!
//! - Crates go to `<root>/<node name>`, where the name is a validated
//!   [`NodeName`] (`[a-z][a-z0-9_]*`), so it can never climb out of the root
//!   or name an absolute path.
//! - The root is resolved once at start-up; a crate folder that is a symlink,
//!   or that holds a symlink anywhere inside, is refused before anything is
//!   written, and so is a leftover staging folder of the crate's that is or
//!   holds one, and a lock file that is one: no write can be redirected
//!   outside the root. Named pipes and other special files there are
//!   refused too, as they would block a reader forever.
//! - What the service tells a requester names paths relative to the root
//!   ([`OutputRoot::relative_json`]), never where the root is on the host.
//! - `<root>/.onex-serve/` (a name no node can have) holds the results index
//!   (`results/<idempotency key>.json`) and the per-node lock files. The
//!   index is bounded ([`Retention`]): each request with new contract bytes
//!   adds an entry, so without a bound a requester could fill the disk.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use onex_gen::contract::NodeName;

/// Folder under the root that holds the service's own state.
pub const STATE_DIR: &str = ".onex-serve";

/// Errors touching the output root.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to write through a symlink: {0}")]
    Symlink(PathBuf),
    #[error("refusing to open {0}: not a regular file or folder")]
    Special(PathBuf),
    #[error("{0} is not a folder")]
    NotADir(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootError + '_ {
    move |source| RootError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How the write stage names the staging folders it builds a crate in,
/// beside the crate: `<prefix><node name>-<random>`.
const STAGE_PREFIX: &str = ".onex-gen-stage-";

/// Refuses `path` if it is, or (a folder) holds, a symlink, or anything
/// else that is neither a regular file nor a folder (a named pipe would
/// block the reader forever; a device or socket is no crate file).
fn refuse_symlinks_in(path: &Path) -> Result<(), RootError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
        Ok(_) => {}
    }
    for entry in walkdir::WalkDir::new(path).follow_links(false) {
        let entry = entry.map_err(|e| RootError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if entry.path_is_symlink() {
            return Err(RootError::Symlink(entry.path().to_path_buf()));
        }
        let kind = entry.file_type();
        if !kind.is_file() && !kind.is_dir() {
            return Err(RootError::Special(entry.path().to_path_buf()));
        }
    }
    Ok(())
}

/// Whether `path` is a regular file (not a symlink, pipe or device).
fn is_regular_file(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// How much of the results index is kept. An answer that has gone is
/// simply generated again when its request comes back (the same contract
/// and generator give the same crate), so the bound costs time, never a
/// wrong answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The most answers kept: past it, the least recently answered go.
    pub max_entries: usize,
    /// How long an answer is kept after it was last given.
    pub max_age: Duration,
}

impl Retention {
    /// Default number of answers kept.
    pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
    /// Default time an answer is kept, in hours (a week).
    pub const DEFAULT_MAX_AGE_HOURS: u64 = 168;

    /// How many new answers may be stored between two pruning passes:
    /// a tenth of the bound, so the index never holds more than 10% over it.
    pub fn prune_every(&self) -> usize {
        (self.max_entries / 10).clamp(1, 1_000)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_entries: Self::DEFAULT_MAX_ENTRIES,
            max_age: Duration::from_secs(Self::DEFAULT_MAX_AGE_HOURS * 3600),
        }
    }
}

/// What one pruning pass removed from the results index.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Answers older than [`Retention::max_age`].
    pub expired: usize,
    /// The least recently given answers beyond [`Retention::max_entries`].
    pub over_limit: usize,
    /// Temporary files of stores that a killed process never finished.
    pub unfinished: usize,
}

impl Pruned {
    /// Every file removed.
    pub fn total(&self) -> usize {
        self.expired + self.over_limit + self.unfinished
    }
}

/// A temporary file of a store is left behind only by a process killed
/// between writing and renaming it; past this age no live store owns it.
const UNFINISHED_STORE_AGE: Duration = Duration::from_secs(3600);

/// Prefix of the temporary files [`OutputRoot::store_result`] writes.
const TEMPORARY_PREFIX: &str = ".tmp";

/// Whether `name` is an entry of the results index: `<hex digits>.json`.
fn is_result_name(name: &str) -> bool {
    name.strip_suffix(".json")
        .is_some_and(|key| !key.is_empty() && key.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A stored outcome, republished as it is for a repeated request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResult {
    pub key: String,
    /// `completed` or `failed`.
    pub outcome: String,
    pub payload: Value,
}

/// The resolved output root.
#[derive(Debug, Clone)]
pub struct OutputRoot {
    root: PathBuf,
}

impl OutputRoot {
    /// Creates the root if needed and resolves it (symlinks in the path
    /// given on the command line are the operator's choice and are followed
    /// once, here).
    pub fn open(path: &Path) -> Result<Self, RootError> {
        std::fs::create_dir_all(path).map_err(io(path))?;
        let root = std::fs::canonicalize(path).map_err(io(path))?;
        if !root.is_dir() {
            return Err(RootError::NotADir(root));
        }
        let me = OutputRoot { root };
        for sub in ["results", "locks"] {
            let dir = me.state_dir().join(sub);
            me.refuse_symlink(&me.state_dir())?;
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        me.check_state_dir()?;
        Ok(me)
    }

    /// Refuses a state folder (or its `results/` or `locks/`) that is a
    /// symlink: checked at start-up and again before every request, as the
    /// root may change while the service runs.
    pub fn check_state_dir(&self) -> Result<(), RootError> {
        let state = self.state_dir();
        for dir in [state.clone(), state.join("results"), state.join("locks")] {
            self.refuse_symlink(&dir)?;
        }
        Ok(())
    }

    /// The resolved root folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `text` as a requester may read it: a path inside the root named
    /// relative to the root, the root itself as `<output root>`, so that
    /// where the service keeps its files on the host is not told.
    pub fn relative_text(&self, text: &str) -> String {
        let root = self.root.display().to_string();
        if self.root.parent().is_none() {
            return text.to_string();
        }
        text.replace(&format!("{root}{}", std::path::MAIN_SEPARATOR), "")
            .replace(&root, "<output root>")
    }

    /// Every string of `v` through [`Self::relative_text`].
    pub fn relative_json(&self, v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.relative_text(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|v| self.relative_json(v)).collect()),
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k, self.relative_json(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// `<root>/<name>`: inside the root by construction of [`NodeName`].
    pub fn crate_dir(&self, name: &NodeName) -> PathBuf {
        self.root.join(name.as_str())
    }

    fn refuse_symlink(&self, path: &Path) -> Result<(), RootError> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => Err(RootError::Symlink(path.to_path_buf())),
            _ => Ok(()),
        }
    }

    /// Refuses a crate folder that is, or contains, a symlink, and one
    /// whose staging folders left in the root by an interrupted write are,
    /// or contain, one: the write stage puts a parked old crate back from
    /// there before it writes, so a planted link would move a folder from
    /// outside the root into it.
    pub fn check_crate_dir(&self, dir: &Path) -> Result<(), RootError> {
        if !dir.starts_with(&self.root) || dir == self.root {
            return Err(RootError::Symlink(dir.to_path_buf()));
        }
        refuse_symlinks_in(dir)?;
        let Some(name) = dir.file_name().map(|n| n.to_string_lossy()) else {
            return Ok(());
        };
        let prefix = format!("{STAGE_PREFIX}{name}-");
        for entry in std::fs::read_dir(&self.root).map_err(io(&self.root))? {
            let entry = entry.map_err(io(&self.root))?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                refuse_symlinks_in(&entry.path())?;
            }
        }
        Ok(())
    }

    fn result_path(&self, key: &str) -> PathBuf {
        // Keys are hex digests; anything else is not a key we made.
        let safe: String = key.chars().filter(char::is_ascii_hexdigit).collect();
        self.state_dir()
            .join("results")
            .join(format!("{safe}.json"))
    }

    /// The stored outcome for `key`, if any (an unreadable entry counts as
    /// none, so the request is simply generated again). An answer given
    /// again counts as recent for [`Retention`].
    pub fn load_result(&self, key: &str) -> Option<StoredResult> {
        let path = self.result_path(key);
        if !is_regular_file(&path) {
            return None;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let stored: StoredResult = serde_json::from_str(&text).ok()?;
        if stored.key != key {
            return None;
        }
        // Best effort: an entry that cannot be touched just ages sooner.
        if let Ok(file) = open_no_follow(&path) {
            let _ = file.set_modified(SystemTime::now());
        }
        Some(stored)
    }

    /// Bounds the results index as `retention` says, ages counted back from
    /// `now`: removes answers older than its age, then the least recently
    /// given ones beyond its count, and temporary files a killed process
    /// left. Only names the index writes are touched, and never through a
    /// link. Several processes may prune one root at once: an entry another
    /// one removed first is not an error.
    pub fn prune_results(
        &self,
        retention: &Retention,
        now: SystemTime,
    ) -> Result<Pruned, RootError> {
        self.check_state_dir()?;
        let dir = self.state_dir().join("results");
        let mut pruned = Pruned::default();
        let mut kept: Vec<(SystemTime, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let result = is_result_name(&name);
            if !result && !name.starts_with(TEMPORARY_PREFIX) {
                continue;
            }
            // `DirEntry::metadata` does not follow a link.
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.file_type().is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(now);
            let age = now.duration_since(modified).unwrap_or_default();
            let path = entry.path();
            if !result {
                if age >= UNFINISHED_STORE_AGE && remove(&path)? {
                    pruned.unfinished += 1;
                }
            } else if age >= retention.max_age {
                if remove(&path)? {
                    pruned.expired += 1;
                }
            } else {
                kept.push((modified, path));
            }
        }
        if kept.len() > retention.max_entries {
            kept.sort();
            let excess = kept.len() - retention.max_entries;
            for (_, path) in &kept[..excess] {
                if remove(path)? {
                    pruned.over_limit += 1;
                }
            }
        }
        Ok(pruned)
    }

    /// Records an outcome atomically (temporary file, fsync, rename).
    pub fn store_result(&self, stored: &StoredResult) -> Result<(), RootError> {
        let path = self.result_path(&stored.key);
        let dir = self.state_dir().join("results");
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io(&dir))?;
        let text = serde_json::to_string_pretty(stored).unwrap_or_default();
        tmp.write_all(text.as_bytes()).map_err(io(&path))?;
        tmp.as_file().sync_all().map_err(io(&path))?;
        tmp.persist(&path).map_err(|e| RootError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Takes the lock of node `name`, shared by every service process on
    /// this root; blocks until it is free. Released when the guard drops or
    /// the process dies. A lock file that is a symlink is refused, never
    /// followed (opening it would create its target), and so is one that is
    /// not a regular file.
    pub fn lock_node(&self, name: &NodeName) -> Result<NodeLock, RootError> {
        let path = self
            .state_dir()
            .join("locks")
            .join(format!("{}.lock", name.as_str()));
        self.refuse_symlink(&path)?;
        if path.exists() && !is_regular_file(&path) {
            return Err(RootError::Special(path));
        }
        let mut options = File::options();
        options.create(true).truncate(false).write(true);
        // O_NONBLOCK: a pipe put there after the check fails to open
        // instead of blocking; it does not change a regular file.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            &mut options,
            libc::O_NOFOLLOW | libc::O_NONBLOCK,
        );
        let file = options.open(&path).map_err(|e| {
            #[cfg(unix)]
            let followed = e.raw_os_error() == Some(libc::ELOOP);
            #[cfg(not(unix))]
            let followed = false;
            if followed {
                RootError::Symlink(path.clone())
            } else {
                io(&path)(e)
            }
        })?;
        flock(&file, true).map_err(io(&path))?;
        Ok(NodeLock { file })
    }
}

/// An exclusive lock on one node's crate folder.
#[derive(Debug)]
pub struct NodeLock {
    file: File,
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        let _ = flock(&self.file, false);
    }
}

/// Opens `path` for writing its times, refusing a link put in its place.
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    let mut options = File::options();
    options.append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    options.open(path)
}

/// Removes a file; `false` if it was already gone.
fn remove(path: &Path) -> Result<bool, RootError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(unix)]
fn flock(file: &File, lock: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let op = if lock { libc::LOCK_EX } else { libc::LOCK_UN };
    loop {
        // SAFETY: the descriptor is owned by `file`, which outlives the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(not(unix))]
fn flock(_file: &File, _lock: bool) -> std::io::Result<()> {
    // Without flock the service is safe with one process per root only.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip_and_keys_are_sanitised() {
        let tmp = tempfile::tempdir().unwrap();
        let root = OutputRoot::open(tmp.path()).unwrap();
        let key = "ab".repeat(32);
        assert!(root.load_result(&key).is_none());
        let r = StoredResult {
            key: key.clone(),
            outcome: "completed".into(),
            payload: serde_json::json!({"n": 1}),
        };
        root.store_result(&r).unwrap();
        assert_eq!(root.load_result(&key), Some(r));
        // A key with path characters stays inside results/.
        assert_eq!(
            root.result_path("../../etc/passwd").parent().unwrap(),
            root.state_dir().join("results")
        );
        // Results live in the state folder and nowhere else under the root.
        let entries: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from(STATE_DIR)]);
    }

    fn keeping(max_entries: usize, max_age: Duration) -> Retention {
        Retention {
            max_entries,
            max_age,
        }
    }

    /// Stores an answer for `key` last given `age` before `now`.
    fn stored(root: &OutputRoot, key: &str, now: SystemTime, age: Duration) -> PathBuf {
        root.store_result(&StoredResult {
            key: key.into(),
            outcome: "failed".into(),
            payload: serde_json::json!({"key": key}),
        })
        .unwrap();
        let path = root.result_path(key);
        File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .set_modified(now - age)
            .unwrap();
        path
    }

    fn results_left(root: &OutputRoot) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root.state_dir().join("results"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_results_index_keeps_the_most_recent_answers_within_its_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let root = OutputRoot::open(tmp.path()).unwrap();
        let now = SystemTime::now();
        let retention = keeping(3, Duration::from_secs(3600));
        let minutes = |m: u64| Duration::from_secs(60 * m);
        // Keys a..f, answered 50, 40, ... 0 minutes ago; `b` is answered
        // again now, which makes it recent.
        for (i, key) in ["aa", "bb", "cc", "dd", "ee", "ff"].iter().enumerate() {
            stored(&root, key, now, minutes(50 - 10 * i as u64));
        }
        assert!(root.load_result("bb").is_some());
        let pruned = root.prune_results(&retention, SystemTime::now()).unwrap();
        assert_eq!(pruned.over_limit, 3, "{pruned:?}");
        assert_eq!(results_left(&root), ["bb.json", "ee.json", "ff.json"]);
        // A pruned answer is no longer replayed: its request is generated again.
        assert!(root.load_result("aa").is_none());
        assert_eq!(
            root.prune_results(&retention, now).unwrap(),
            Pruned::default()
        );
    }

    #[test]
    fn old_answers_and_unfinished_stores_are_removed_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let root = OutputRoot::open(tmp.path()).unwrap();
        let now = SystemTime::now();
        let retention = keeping(100, Duration::from_secs(24 * 3600));
        let hours = |h: u64| Duration::from_secs(3600 * h);
        stored(&root, "0a", now, hours(25));
        stored(&root, "0b", now, hours(23));
        let results = root.state_dir().join("results");
        let age_file = |name: &str, age: Duration| {
            let f = File::create(results.join(name)).unwrap();
            f.set_modified(now - age).unwrap();
        };
        age_file(".tmpKILLED", hours(2));
        age_file(".tmpWRITING", Duration::from_secs(5));
        age_file("README", hours(1000));
        age_file("notes.json", hours(1000));
        let pruned = root.prune_results(&retention, now).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                expired: 1,
                over_limit: 0,
                unfinished: 1
            }
        );
        assert_eq!(
            results_left(&root),
            [".tmpWRITING", "0b.json", "README", "notes.json"]
        );
    }

    #[cfg(unix)]
    #[test]
    fn pruning_removes_a_link_never_what_it_points_to() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim.json");
        std::fs::write(&victim, "keep").unwrap();
        let root = OutputRoot::open(&tmp.path().join("out")).unwrap();
        let link = root.state_dir().join("results").join("abc.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let retention = keeping(1, Duration::ZERO);
        root.prune_results(&retention, SystemTime::now()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(root.load_result("abc").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_crate_folders_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = OutputRoot::open(&tmp.path().join("out")).unwrap();
        let name = NodeName::parse("node_x").unwrap();
        let dir = root.crate_dir(&name);
        assert!(dir.starts_with(root.path()));
        root.check_crate_dir(&dir).unwrap();
        std::os::unix::fs::symlink(outside.path(), &dir).unwrap();
        assert!(matches!(
            root.check_crate_dir(&dir),
            Err(RootError::Symlink(_))
        ));
        std::fs::remove_file(&dir).unwrap();
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.join("src/generated")).unwrap();
        assert!(matches!(
            root.check_crate_dir(&dir),
            Err(RootError::Symlink(_))
        ));
    }

    #[test]
    fn node_lock_is_exclusive_across_handles() {
        let tmp = tempfile::tempdir().unwrap();
        let root = OutputRoot::open(tmp.path()).unwrap();
        let name = NodeName::parse("node_x").unwrap();
        let guard = root.lock_node(&name).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let r2 = root.clone();
        let n2 = name.clone();
        let t = std::thread::spawn(move || {
            let _g = r2.lock_node(&n2).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(guard);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        t.join().unwrap();
    }
}
