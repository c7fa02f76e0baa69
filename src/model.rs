//! Stage 3: model — Contract -> NodeModel.

use serde::Serialize;

use crate::contract::Contract;

/// Everything the templates need, derived from a validated contract.
#[derive(Debug, Clone, Serialize)]
pub struct NodeModel {
    pub contract: Contract,
}

pub fn build(contract: &Contract) -> NodeModel {
    NodeModel { contract: contract.clone() }
}
