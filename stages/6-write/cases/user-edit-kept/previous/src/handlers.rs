// Your handlers.
pub fn handle() {}
