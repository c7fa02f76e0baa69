// Your handlers (new default).
pub fn handle() {}
