//! Stage 4.5: event-bus wiring — FileSet -> FileSet.

use crate::error::GenError;
use crate::fileset::FileSet;
use crate::model::NodeModel;
use crate::render::RenderOptions;

pub fn wire(files: FileSet, _model: &NodeModel, _opts: &RenderOptions) -> Result<FileSet, GenError> {
    Ok(files)
}
