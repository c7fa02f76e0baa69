//! The library's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("template {name}: {source}")]
    Template {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// rustfmt could not be run or rejected generated code.
    #[error("formatting generated code: {0}")]
    Format(String),
    /// Writing would destroy something a person owns or edited.
    #[error("{0}")]
    Conflict(String),
    /// A crate's `.onex-gen/manifest.json` could not be read.
    #[error("manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
}

impl GenError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GenError::Io {
            path: path.into(),
            source,
        }
    }
}
