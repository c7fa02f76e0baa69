//! The manifest every generated crate carries in `.onex-gen/manifest.json`.
//!
//! It records what was generated from what: the generator version, the
//! contract (path relative to the crate, and its sha256), the template set
//! hash, the render options, and every file with its sha256 and owner. `check`
//! uses it to tell a changed contract from a generator change, a hand edit and
//! an orphaned file; stage 6 uses it to refuse clobbering hand edits and to
//! remove files it no longer generates.
//!
//! The JSON is deterministic: fields in declaration order, files sorted by
//! path, two-space indentation, a trailing newline. For user-owned files the
//! recorded hash is that of the default contents onex-gen would create, so the
//! manifest depends only on the generation and never on what is on disk.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::GenError;
use crate::fileset::{FileSet, Owner};
use crate::stages::render::RuntimeSource;

/// Where the manifest lives inside a generated crate.
pub const MANIFEST_PATH: &str = ".onex-gen/manifest.json";

/// The name recorded in the `generator` field.
pub const GENERATOR_NAME: &str = "onex-gen";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub generator: String,
    pub generator_version: String,
    pub node_name: String,
    pub contract: ContractRecord,
    pub template_set_hash: String,
    pub options: RecordedOptions,
    pub files: Vec<FileRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractRecord {
    /// `/`-separated, relative to the crate folder when it can be, so the
    /// crate and its contract can move together.
    pub path: String,
    pub sha256: String,
}

/// The render options needed to regenerate the crate exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecordedOptions {
    /// How the crate reaches onex-runtime; a path is relative to the crate folder.
    pub runtime: RuntimeSource,
    /// Template override folder, relative to the crate folder, when one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_dir: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub sha256: String,
    pub owner: Owner,
}

impl Manifest {
    /// Builds the manifest for `files`, a generation's output.
    pub fn new(
        node_name: &str,
        contract: ContractRecord,
        template_set_hash: &str,
        options: RecordedOptions,
        files: &FileSet,
    ) -> Self {
        let mut records: Vec<FileRecord> = files
            .iter()
            .filter(|(path, _)| path.as_str() != MANIFEST_PATH)
            .map(|(path, file)| FileRecord {
                path: path.clone(),
                sha256: sha256_hex(file.contents.as_bytes()),
                owner: file.owner,
            })
            .collect();
        records.sort_by(|a, b| a.path.cmp(&b.path));
        Self {
            generator: GENERATOR_NAME.to_owned(),
            generator_version: crate::GENERATOR_VERSION.to_owned(),
            node_name: node_name.to_owned(),
            contract,
            template_set_hash: template_set_hash.to_owned(),
            options,
            files: records,
        }
    }

    /// The manifest's on-disk form: pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut sorted = self.clone();
        sorted.files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut out = serde_json::to_string_pretty(&sorted).unwrap_or_default();
        out.push('\n');
        out
    }

    /// Parses a manifest. Every file it records must be a path inside the
    /// crate ([`is_crate_path`]): the manifest sits in a folder anyone may
    /// edit, and `new` and `check` read, hash and remove what it names.
    pub fn from_json(path: &Path, text: &str) -> Result<Self, GenError> {
        let m: Self = serde_json::from_str(text).map_err(|e| GenError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(bad) = m.files.iter().find(|f| !is_crate_path(&f.path)) {
            return Err(GenError::Manifest {
                path: path.to_path_buf(),
                message: format!(
                    "file {:?} is not a path inside the crate (expected a relative, \
                     /-separated path without . or .. components)",
                    bad.path
                ),
            });
        }
        Ok(m)
    }

    /// Reads `<crate_dir>/.onex-gen/manifest.json`; `Ok(None)` when there is
    /// none. Like every file onex-gen reads in a crate, it is read only as a
    /// regular file reached without a symbolic link ([`read_crate_file`]),
    /// and only up to [`MAX_MANIFEST_BYTES`].
    pub fn load(crate_dir: &Path) -> Result<Option<Self>, GenError> {
        let path = crate_dir.join(MANIFEST_PATH);
        let bad = |message: String| GenError::Manifest {
            path: path.clone(),
            message,
        };
        let bytes = match read_crate_file(crate_dir, MANIFEST_PATH, MAX_MANIFEST_BYTES) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) => return Err(bad(e.to_string())),
        };
        let text = String::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
        Self::from_json(&path, &text).map(Some)
    }

    pub fn file(&self, path: &str) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.path == path)
    }

    /// The contract's location on disk, resolved against the crate folder.
    pub fn contract_path(&self, crate_dir: &Path) -> PathBuf {
        let p = Path::new(&self.contract.path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            normalize(&crate_dir.join(p))
        }
    }
}

/// The largest manifest read: a crate's manifest is a few tens of KiB.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// The largest file read where onex-gen keeps one in a crate: what it
/// generates is at most a few hundred KiB, and a file this large was not
/// written by it (it is not read into memory to find that out).
pub const MAX_CRATE_FILE_BYTES: u64 = 64 << 20;

/// Whether `path` names a file inside a crate as file sets and manifests key
/// them: relative, `/`-separated, every component a plain name (not empty,
/// `.` or `..`, no backslash or NUL).
pub fn is_crate_path(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(['\\', '\0']))
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// What is at a path inside a crate, found without following symbolic links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrateEntry {
    Missing,
    File,
    /// The path itself is a symbolic link (never followed).
    Link,
    /// A folder, FIFO, socket or device where a file is expected.
    Other,
}

/// Why a path inside a crate cannot be used as a file.
#[derive(Debug, thiserror::Error)]
pub enum CratePathError {
    /// A folder on the way is a symbolic link, or not a folder.
    #[error("{path}: {what}")]
    Unusable { path: PathBuf, what: &'static str },
    /// Larger than anything onex-gen writes there: not read.
    #[error(
        "{path}: is larger than {max} bytes, more than onex-gen ever writes there (remove it)"
    )]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What is at `rel` (a [`is_crate_path`] path) inside `crate_dir`. Every
/// folder on the way must be a real folder: one that is a symbolic link
/// (which could lead out of the crate) or a file is an error naming it.
/// The crate folder itself may be a link.
pub fn crate_entry(crate_dir: &Path, rel: &str) -> Result<CrateEntry, CratePathError> {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut cur = crate_dir.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        cur.push(part);
        let meta = match std::fs::symlink_metadata(&cur) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CrateEntry::Missing),
            Err(source) => return Err(CratePathError::Io { path: cur, source }),
        };
        let kind = meta.file_type();
        if i + 1 == parts.len() {
            return Ok(if kind.is_symlink() {
                CrateEntry::Link
            } else if kind.is_file() {
                CrateEntry::File
            } else {
                CrateEntry::Other
            });
        }
        let what = if kind.is_symlink() {
            "is a symbolic link; onex-gen does not follow links inside a crate \
             (replace it with a real folder)"
        } else if !kind.is_dir() {
            "is not a folder"
        } else {
            continue;
        };
        return Err(CratePathError::Unusable { path: cur, what });
    }
    Ok(CrateEntry::Missing)
}

/// The bytes of the regular file at `rel` inside `crate_dir` (`None` when
/// nothing is there), read without following a symbolic link on the way
/// and refusing more than `max_bytes`; a link, folder, FIFO or device at
/// `rel` is an error naming it.
pub fn read_crate_file(
    crate_dir: &Path,
    rel: &str,
    max_bytes: u64,
) -> Result<Option<Vec<u8>>, CratePathError> {
    use std::io::Read as _;
    let path = crate_dir.join(rel);
    let what = match crate_entry(crate_dir, rel)? {
        CrateEntry::Missing => return Ok(None),
        CrateEntry::File => None,
        CrateEntry::Link => Some(NOT_FOLLOWED),
        CrateEntry::Other => Some(NOT_A_FILE),
    };
    if let Some(what) = what {
        return Err(CratePathError::Unusable { path, what });
    }
    let io = |source| CratePathError::Io {
        path: path.clone(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .map_err(io)?
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max_bytes {
        return Err(CratePathError::TooLarge {
            path,
            max: max_bytes,
        });
    }
    Ok(Some(bytes))
}

/// How a symbolic link where onex-gen keeps a file is described.
pub const NOT_FOLLOWED: &str =
    "is a symbolic link; onex-gen never reads or writes through a link inside a crate \
     (replace it with the file, or remove it)";

/// How a folder, FIFO, socket or device where onex-gen keeps a file is described.
pub const NOT_A_FILE: &str = "is not a regular file (a folder, FIFO, socket or device); \
     onex-gen keeps a file there (remove it)";

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Makes `path` absolute against the current folder and removes `.` and `..`
/// lexically (without touching the file system).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        normalize(path)
    } else {
        let cwd = std::env::current_dir().unwrap_or_default();
        normalize(&cwd.join(path))
    }
}

/// Removes `.` and resolves `..` lexically.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let climbable = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if climbable {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `target` expressed relative to the folder `base`, `/`-separated. Both are
/// made absolute first. Falls back to the absolute target when no relative
/// path exists (e.g. different roots).
pub fn relative_to(target: &Path, base: &Path) -> String {
    slash(&relative_path(target, base))
}

/// [`relative_to`] before it becomes text: a path that is not UTF-8 would
/// be recorded with replacement characters, and could not be found again
/// from the record.
pub fn relative_path(target: &Path, base: &Path) -> PathBuf {
    let target = absolute(target);
    let base = absolute(base);
    let t: Vec<Component> = target.components().collect();
    let b: Vec<Component> = base.components().collect();
    if t.first() != b.first() {
        return target;
    }
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    // Sharing nothing but the root: a relative path would only climb to `/`.
    if common <= 1 && target.has_root() {
        return target;
    }
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c.as_os_str());
    }
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// A path as text with `/` separators, as manifests and file sets key files.
pub fn slash(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut files = FileSet::new();
        files.insert("src/main.rs", Owner::Generated, "fn main() {}\n");
        files.insert("Cargo.toml", Owner::Generated, "[package]\n");
        files.insert("src/handlers.rs", Owner::User, "// yours\n");
        Manifest::new(
            "node_x",
            ContractRecord {
                path: "../../contracts/x.yaml".into(),
                sha256: sha256_hex(b"name: x\n"),
            },
            "abc",
            RecordedOptions {
                runtime: RuntimeSource::Path("../../onex-runtime".into()),
                template_dir: None,
            },
            &files,
        )
    }

    #[test]
    fn json_is_sorted_pretty_and_round_trips() {
        let m = sample();
        let json = m.to_json();
        assert!(json.ends_with("}\n"));
        let paths: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["Cargo.toml", "src/handlers.rs", "src/main.rs"]);
        assert!(json.contains("\"owner\": \"user\""));
        assert!(json.contains("\"kind\": \"path\""));
        let back = Manifest::from_json(Path::new("m.json"), &json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_json(), json);
    }

    #[test]
    fn bad_json_names_the_file() {
        let err = Manifest::from_json(Path::new("x/manifest.json"), "{").unwrap_err();
        assert!(err.to_string().contains("x/manifest.json"), "{err}");
    }

    #[test]
    fn relative_paths_walk_up_and_down() {
        assert_eq!(
            relative_to(Path::new("/r/contracts/a.yaml"), Path::new("/r/golden/a")),
            "../../contracts/a.yaml"
        );
        assert_eq!(relative_to(Path::new("/r/a"), Path::new("/r/a")), ".");
        assert_eq!(
            relative_to(Path::new("/x/c.yaml"), Path::new("/tmp/o/n")),
            "/x/c.yaml"
        );
        assert_eq!(
            normalize(Path::new("/r/golden/a/../../onex-runtime")),
            PathBuf::from("/r/onex-runtime")
        );
        assert_eq!(
            normalize(Path::new("./../../c.yaml")),
            PathBuf::from("../../c.yaml")
        );
        assert_eq!(normalize(Path::new("a/../../b")), PathBuf::from("../b"));
        assert_eq!(normalize(Path::new("/../b")), PathBuf::from("/b"));
        let m = sample();
        assert_eq!(
            m.contract_path(Path::new("/r/golden/x")),
            PathBuf::from("/r/contracts/x.yaml")
        );
    }

    #[test]
    fn sha256_is_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
