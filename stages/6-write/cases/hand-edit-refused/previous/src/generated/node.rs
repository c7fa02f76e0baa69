// @generated
pub struct Node;
