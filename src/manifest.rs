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

    pub fn from_json(path: &Path, text: &str) -> Result<Self, GenError> {
        serde_json::from_str(text).map_err(|e| GenError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads `<crate_dir>/.onex-gen/manifest.json`; `Ok(None)` when there is none.
    pub fn load(crate_dir: &Path) -> Result<Option<Self>, GenError> {
        let path = crate_dir.join(MANIFEST_PATH);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_json(&path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(GenError::io(path, e)),
        }
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
    let target = absolute(target);
    let base = absolute(base);
    let t: Vec<Component> = target.components().collect();
    let b: Vec<Component> = base.components().collect();
    if t.first() != b.first() {
        return slash(&target);
    }
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    // Sharing nothing but the root: a relative path would only climb to `/`.
    if common <= 1 && target.has_root() {
        return slash(&target);
    }
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c.as_os_str());
    }
    if rel.as_os_str().is_empty() {
        ".".to_owned()
    } else {
        slash(&rel)
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
