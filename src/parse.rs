//! Stage 1: parse. Contract bytes become a [`RawContract`]: a YAML tree with a
//! line and column for every node, plus the path and content hash.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::diagnostic::{Diagnostic, Diagnostics, Position};
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
            Diagnostic::error("E-READ", path, Position::new(1, 1), "", message).expected(expected),
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
            "the contract path is a folder".into(),
            "the path of a contract file (YAML), not of a folder",
        ));
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() > max_bytes {
        let mut d = Diagnostic::error(
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

/// Parses contract bytes with explicit limits.
pub fn parse_with_limits(
    path: &Path,
    bytes: &[u8],
    limits: Limits,
) -> Result<RawContract, Diagnostics> {
    // The size limit comes first: nothing, not even the hash, reads a
    // file past it.
    match yaml::load_bytes(bytes, limits) {
        Ok(root) => Ok(RawContract {
            path: path.to_path_buf(),
            hash: hex::encode(Sha256::digest(bytes)),
            root,
        }),
        Err(e) => {
            let mut d = Diagnostic::error(e.kind.code(), path, e.pos, e.pointer, e.message);
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
        let raw = parse(
            Path::new("c.yaml"),
            b"name: x\nevent_bus:\n  publish_topics: [a, b]\n",
        )
        .unwrap();
        assert_eq!(
            raw.hash,
            hex::encode(Sha256::digest(
                b"name: x\nevent_bus:\n  publish_topics: [a, b]\n"
            ))
        );
        assert_eq!(
            raw.locate("/event_bus/publish_topics/1"),
            Position::new(3, 23)
        );
        assert_eq!(raw.to_json()["event_bus"]["publish_topics"][0], "a");
    }

    #[test]
    fn errors_are_located_diagnostics() {
        let err = parse(Path::new("c.yaml"), b"a: 1\na: 2\n").unwrap_err();
        let d = err.iter().next().unwrap();
        assert_eq!(d.code, "E-YAML-DUPLICATE-KEY");
        assert_eq!(d.position, Position::new(2, 1));
        assert_eq!(d.pointer, "/a");
        assert_eq!(d.file, PathBuf::from("c.yaml"));
    }
}
