fn main() {
    let port = std::env::var("FIXTURE_PORT").unwrap_or_default();
    println!("{port}");
}
