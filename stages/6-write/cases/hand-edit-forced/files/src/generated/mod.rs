// @generated
pub mod node;
