//! The files a generation produces, keyed by their path inside the crate.

use std::collections::BTreeMap;

use serde::Serialize;

/// Who owns a file in a generated crate.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// Rewritten on every run; a hand edit is drift.
    Generated,
    /// Created once with working defaults, never overwritten.
    User,
    /// Generated, and the user may edit it (Cargo.toml, lib.rs, README.md,
    /// ...): stage 6 keeps the base it generated last and merges its
    /// changes with the user's on regeneration.
    Shared,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub contents: String,
    pub owner: Owner,
}

/// Files keyed by their `/`-separated path relative to the crate root. A
/// `BTreeMap` so that iteration (and so every output) is in one order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileSet {
    pub files: BTreeMap<String, GeneratedFile>,
}

impl FileSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, path: impl Into<String>, owner: Owner, contents: impl Into<String>) {
        self.files.insert(
            path.into(),
            GeneratedFile {
                contents: contents.into(),
                owner,
            },
        );
    }

    pub fn get(&self, path: &str) -> Option<&GeneratedFile> {
        self.files.get(path)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &GeneratedFile)> {
        self.files.iter()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}
