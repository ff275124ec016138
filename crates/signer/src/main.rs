fn main() {
    eprintln!("certflow-signer: not implemented yet");
    std::process::exit(2);
}
