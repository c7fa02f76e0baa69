// @generated
pub struct Retired;
