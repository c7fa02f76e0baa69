//! Stage 1: parse. Contract bytes become a [`RawContract`]: a YAML tree with a
//! line and column for every node, plus the path and content hash.
//!
//! [`RawContract`]: crate::stages::parse::RawContract

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::diagnostic::{Diagnostic, Diagnostics, Position, Severity};
use crate::yaml::{self, Limits, Node};

/// A contract that is well-formed YAML, not yet validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RawContract {
    /// The path the contract was read from, as given.
    pub path: PathBuf,
    /// sha256 of the contract bytes, lower-case hex.
    pub hash: String,
    /// The document's root node.
    pub root: Node,
    /// What the YAML loader had to interpret (duplicate keys).
    pub warnings: Diagnostics,
}

impl RawContract {
    /// The document as JSON, for JSON Schema validation.
    pub fn to_json(&self) -> serde_json::Value {
        self.root.to_json()
    }

    /// The position of the node at a JSON pointer, or of the deepest node on
    /// the way there.
    pub fn locate(&self, pointer: &str) -> Position {
        self.root.locate(pointer).pos
    }
}

/// The contract files that `paths` name: a file as given; a folder, every
/// `*.yaml` / `*.yml` file under it (hidden folders skipped), sorted, so a
/// whole folder of contracts can be generated or reported on at once. A
/// folder with no contract in it stays as given, for stage 1 to refuse.
pub fn contract_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = walkdir::WalkDir::new(p)
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(walkdir::DirEntry::into_path)
            .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        found.sort();
        if found.is_empty() {
            // Stage 1 refuses it with a located error instead of a run that
            // generates nothing and succeeds.
            out.push(p.clone());
        }
        out.extend(found);
    }
    out
}

/// Parses contract bytes with the default [`Limits`].
pub fn parse(path: &Path, bytes: &[u8]) -> Result<RawContract, Diagnostics> {
    parse_with_limits(path, bytes, Limits::default())
}

/// Stage 1 from a file: reads at most the size limit (a device, a pipe or
/// a huge file is never read whole) and parses it.
pub fn parse_file(path: &Path) -> Result<RawContract, Diagnostics> {
    let limits = Limits::default();
    let bytes = read_bounded(path, limits.max_bytes)?;
    parse_with_limits(path, &bytes, limits)
}

/// The file's bytes, or a located error: a folder, an unreadable file, or
/// more than `max_bytes` (read no further than one byte past the limit).
fn read_bounded(path: &Path, max_bytes: usize) -> Result<Vec<u8>, Diagnostics> {
    use std::io::Read as _;
    let error = |message: String, expected: &str| {
        Diagnostics::from(
            Diagnostic::new(
                Severity::Error,
                "E-READ",
                path,
                Position::new(1, 1),
                "",
                message,
            )
            .expected(expected),
        )
    };
    let unreadable = |e: std::io::Error| {
        error(
            format!("cannot read the contract: {e}"),
            "a readable YAML file",
        )
    };
    if path.is_dir() {
        return Err(error(
            "the folder holds no contract (*.yaml or *.yml)".into(),
            "a contract file, or a folder of contract files",
        ));
    }
    let file = open_for_reading(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() > max_bytes {
        let mut d = Diagnostic::new(
            Severity::Error,
            yaml::YamlErrorKind::TooLarge.code(),
            path,
            Position::new(1, 1),
            "",
            format!("the file is larger than the limit of {max_bytes} bytes"),
        );
        d.expected = Some(format!("a contract of at most {max_bytes} bytes"));
        return Err(d.into());
    }
    Ok(bytes)
}

/// Opens a contract for reading without waiting for a writer: opening a
/// FIFO blocks until something opens it for writing, so it is opened
/// non-blocking (then reads are made blocking again). A FIFO with no writer
/// reads as empty; a pipe with one (`<(cat contract.yaml)`) reads as usual.
#[cfg(unix)]
fn open_for_reading(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl(2) on a descriptor owned by `file`, which outlives both calls.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(not(unix))]
fn open_for_reading(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// Parses contract bytes with explicit limits.
pub fn parse_with_limits(
    path: &Path,
    bytes: &[u8],
    limits: Limits,
) -> Result<RawContract, Diagnostics> {
    // The size limit comes first: nothing, not even the hash, reads a
    // file past it.
    match yaml::load_bytes_with_warnings(bytes, limits) {
        Ok(loaded) => {
            let mut warnings = Diagnostics::new();
            for w in loaded.warnings {
                warnings.push(
                    Diagnostic::new(Severity::Warning, w.code, path, w.pos, w.pointer, w.message)
                        .expected(w.expected),
                );
            }
            Ok(RawContract {
                path: path.to_path_buf(),
                hash: hex::encode(Sha256::digest(bytes)),
                root: loaded.root,
                warnings,
            })
        }
        Err(e) => {
            let mut d = Diagnostic::new(
                Severity::Error,
                e.kind.code(),
                path,
                e.pos,
                e.pointer,
                e.message,
            );
            d.expected = e.expected;
            Err(d.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_hashes_and_locates() {
        let text = b"name: x\nevent_bus:\n  publish_topics: [a, b]\n";
        let raw = parse(Path::new("c.yaml"), text).unwrap();
        assert_eq!(raw.hash, hex::encode(Sha256::digest(text)));
        assert_eq!(
            raw.locate("/event_bus/publish_topics/1"),
            Position::new(3, 23)
        );
        assert_eq!(raw.to_json()["event_bus"]["publish_topics"][0], "a");
    }

    #[test]
    fn folders_expand_to_their_contracts() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("b/.hidden")).unwrap();
        for f in ["b/z.yaml", "a.yml", "b/.hidden/x.yaml", "notes.txt"] {
            std::fs::write(d.join(f), "x: 1\n").unwrap();
        }
        let files = contract_files(&[d.to_path_buf(), PathBuf::from("given.yaml")]);
        assert_eq!(
            files,
            [
                d.join("a.yml"),
                d.join("b/z.yaml"),
                PathBuf::from("given.yaml")
            ]
        );
    }

    #[test]
    fn errors_are_located_diagnostics() {
        let err = parse(Path::new("c.yaml"), b"a: [1\n").unwrap_err();
        let d = err.iter().next().unwrap();
        assert_eq!(d.code, "E-YAML-SYNTAX");
        assert_eq!(d.file, PathBuf::from("c.yaml"));
    }

    #[test]
    fn duplicate_keys_are_located_warnings() {
        let raw = parse(Path::new("c.yaml"), b"a: 1\na: 2\n").unwrap();
        assert_eq!(raw.root.get("a").unwrap().value, yaml::Value::Int(2));
        let d = raw.warnings.iter().next().unwrap();
        assert_eq!(d.code, "W-DUPLICATE-KEY");
        assert_eq!(d.position, Position::new(2, 1));
        assert_eq!(d.pointer, "/a");
        assert_eq!(d.file, PathBuf::from("c.yaml"));
    }
}
