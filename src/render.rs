//! Stage 4: render — NodeModel -> FileSet.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::GenError;
use crate::fileset::FileSet;
use crate::model::NodeModel;

/// How a generated crate reaches onex-runtime.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum RuntimeSource {
    /// A copy of onex-runtime is written into the crate under `vendor/onex-runtime/`.
    #[default]
    Vendored,
    /// A path dependency, relative to the crate root (e.g. `../../onex-runtime`).
    Path(String),
}

#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub runtime: RuntimeSource,
    /// A folder whose templates override the embedded ones by name.
    pub template_dir: Option<PathBuf>,
}

pub fn render(model: &NodeModel, _opts: &RenderOptions) -> Result<FileSet, GenError> {
    let _ = model;
    Ok(FileSet::new())
}

/// A digest of every template and vendored runtime file, recorded in the manifest so
/// `check` can tell a generator change from a contract change.
pub fn template_set_hash() -> String {
    String::new()
}
