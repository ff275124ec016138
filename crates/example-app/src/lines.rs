use std::io::Write;

/// Where the application's protocol lines go (the `serving …`, `verified …`
/// and `FAILED …` lines): stdout in the binary, a channel in tests. Kept apart
/// from `tracing`, whose output carries timestamps and levels, so the lines a
/// test greps in `kubectl logs` have exactly the documented form.
pub trait Lines: Send + Sync + std::fmt::Debug {
    /// Writes one line (without its trailing newline).
    fn line(&self, line: &str);
}

/// Writes each line to stdout and flushes, so `kubectl logs` sees it at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl Lines for Stdout {
    fn line(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        // A closed stdout must not stop the server; the line is lost either way.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

impl Lines for tokio::sync::mpsc::UnboundedSender<String> {
    fn line(&self, line: &str) {
        // The receiver may be gone (a test that stopped listening): nothing to do.
        let _ = self.send(line.to_owned());
    }
}
