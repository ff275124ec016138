fn main() {
    eprintln!("certflow-watcher: not implemented yet");
    std::process::exit(2);
}
