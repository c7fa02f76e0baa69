// My handlers, edited.
pub fn handle() { println!("mine"); }
