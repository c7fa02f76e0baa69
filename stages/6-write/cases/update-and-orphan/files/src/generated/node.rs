// @generated
pub struct Node { pub id: u64 }
