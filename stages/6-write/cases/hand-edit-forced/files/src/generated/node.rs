// @generated
pub struct Node;
impl Node {}
