// @generated
pub mod node;
// hand edit
