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
//!   (`results/<idempotency key>.json`) and the per-node lock files.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

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
    /// none, so the request is simply generated again).
    pub fn load_result(&self, key: &str) -> Option<StoredResult> {
        let path = self.result_path(key);
        if !is_regular_file(&path) {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        let stored: StoredResult = serde_json::from_str(&text).ok()?;
        (stored.key == key).then_some(stored)
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
