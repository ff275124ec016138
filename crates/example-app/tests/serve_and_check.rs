//! `serve` and `check` against each other in one process, with certificates
//! made by rcgen in a temporary directory laid out like a kubelet Secret
//! volume (`tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use certflow_example_app::{Attempt, CheckOptions, ServeOptions, check, check_once, serve};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A CA that signs leaves for `app.example`.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> Result<Self, rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key)?.pem();
        Ok(Self {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        })
    }

    /// A leaf for `app.example` with this serial: (tls.crt, tls.key) PEM.
    fn leaf(&self, serial: &[u8]) -> Result<(String, String), rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec!["app.example".to_owned()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "app.example");
        params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
        Ok((
            params.signed_by(&key, &self.issuer)?.pem(),
            key.serialize_pem(),
        ))
    }
}

/// Writes a new `..<generation>` directory and points `..data` at it, the way
/// the kubelet's atomic writer updates a Secret volume.
fn publish(volume: &Path, generation: u32, files: &[(&str, &str)]) -> std::io::Result<()> {
    let versioned = format!("..gen_{generation}");
    std::fs::create_dir(volume.join(&versioned))?;
    for (name, contents) in files {
        std::fs::write(volume.join(&versioned).join(name), contents)?;
        let link = volume.join(name);
        if !link.exists() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), link)?;
        }
    }
    let staging = volume.join("..data_tmp");
    std::os::unix::fs::symlink(&versioned, &staging)?;
    std::fs::rename(&staging, volume.join("..data"))
}

struct Running {
    addr: String,
    lines: mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), certflow_example_app::AppError>>,
}

async fn start_server(cert_dir: &Path) -> std::io::Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let (sender, lines) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        ServeOptions::new(cert_dir),
        Arc::new(sender),
        shutdown.clone(),
    ));
    Ok(Running {
        addr,
        lines,
        shutdown,
        task,
    })
}

impl Running {
    /// Waits (at most 10 s) for a line starting with `prefix`; returns the
    /// lines written before it too.
    async fn lines_until(&mut self, prefix: &str) -> (Vec<String>, Option<String>) {
        let mut before = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = self.lines.recv().await {
                if line.starts_with(prefix) {
                    return Some(line);
                }
                before.push(line);
            }
            None
        })
        .await
        .ok()
        .flatten();
        (before, found)
    }

    /// Waits (at most 10 s) for a line starting with `prefix`.
    async fn line_starting(&mut self, prefix: &str) -> Option<String> {
        self.lines_until(prefix).await.1
    }

    fn check_options(&self, ca: PathBuf) -> CheckOptions {
        CheckOptions::new(self.addr.clone(), "app.example", ca)
    }
}

fn write_ca(dir: &Path, name: &str, ca: &TestCa) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, &ca.pem)?;
    Ok(path)
}

/// A server for a leaf of `ca` with `serial`, in a fresh volume that also
/// holds `ca.pem`; returns once it serves.
async fn serving(
    ca: &TestCa,
    serial: &[u8],
) -> Result<(tempfile::TempDir, PathBuf, Running, Option<String>), Box<dyn std::error::Error>> {
    let (certificate, key) = ca.leaf(serial)?;
    let volume = tempfile::tempdir()?;
    publish(
        volume.path(),
        1,
        &[("tls.crt", &certificate), ("tls.key", &key)],
    )?;
    let ca_file = write_ca(volume.path(), "ca.pem", ca)?;
    let mut server = start_server(volume.path()).await?;
    let line = server.line_starting("serving serial").await;
    Ok((volume, ca_file, server, line))
}

#[tokio::test]
async fn check_verifies_the_served_leaf_and_prints_its_serial() -> TestResult {
    let ca = TestCa::new("Example CA")?;
    let (_volume, ca_file, server, serving) = serving(&ca, &[0x1f, 0x2e, 0x3d]).await?;
    assert_eq!(
        serving.as_deref().and_then(|line| line.split(' ').nth(2)),
        Some("1f2e3d"),
        "{serving:?}"
    );

    let (sender, mut lines) = mpsc::unbounded_channel();
    let options = server.check_options(ca_file);
    assert!(check(&options, &sender, &CancellationToken::new()).await);
    let line = lines.try_recv()?;
    assert!(
        line.starts_with(&format!(
            "verified app.example at {}: serial 1f2e3d issuer CN=Example CA not after ",
            server.addr
        )),
        "{line}"
    );
    assert!(lines.try_recv().is_err(), "one attempt writes one line");

    server.shutdown.cancel();
    server.task.await??;
    Ok(())
}

#[tokio::test]
async fn check_against_another_ca_fails_naming_the_unknown_issuer() -> TestResult {
    let ca = TestCa::new("Example CA")?;
    let stranger = TestCa::new("Some Other CA")?;
    let (volume, _, server, _) = serving(&ca, &[0x42]).await?;
    let other_ca_file = write_ca(volume.path(), "other-ca.pem", &stranger)?;

    let (sender, mut lines) = mpsc::unbounded_channel();
    let options = server.check_options(other_ca_file);
    assert!(!check(&options, &sender, &CancellationToken::new()).await);
    let line = lines.try_recv()?;
    assert!(line.starts_with("FAILED app.example at "), "{line}");
    assert!(line.contains("unknown issuer"), "{line}");

    server.shutdown.cancel();
    server.task.await??;
    Ok(())
}

#[tokio::test]
async fn check_with_the_wrong_name_fails_naming_the_name() -> TestResult {
    let ca = TestCa::new("Example CA")?;
    let (_volume, ca_file, server, _) = serving(&ca, &[0x43]).await?;

    let options = CheckOptions::new(server.addr.clone(), "other.example", ca_file);
    let line = check_once(&options).await.line(&options);
    assert!(line.starts_with("FAILED other.example at "), "{line}");
    assert!(line.contains("not valid for name"), "{line}");

    server.shutdown.cancel();
    server.task.await??;
    Ok(())
}

#[tokio::test]
async fn a_swapped_secret_volume_is_served_without_restart() -> TestResult {
    let ca = TestCa::new("Example CA")?;
    let volume = tempfile::tempdir()?;
    let ca_file = write_ca(volume.path(), "ca.pem", &ca)?;
    let (certificate, key) = ca.leaf(&[0x01, 0x01])?;
    publish(
        volume.path(),
        1,
        &[("tls.crt", &certificate), ("tls.key", &key)],
    )?;

    let mut server = start_server(volume.path()).await?;
    server.line_starting("serving serial 0101 ").await;
    let options = server.check_options(ca_file);
    assert!(
        matches!(check_once(&options).await, Attempt::Verified(facts) if facts.serial == "0101")
    );

    let (renewed, renewed_key) = ca.leaf(&[0x02, 0x02])?;
    publish(
        volume.path(),
        2,
        &[("tls.crt", &renewed), ("tls.key", &renewed_key)],
    )?;
    let reloaded = server.line_starting("serving serial 0202 ").await;
    assert!(
        reloaded.is_some(),
        "the renewed certificate was not loaded within 10 s"
    );
    let after = check_once(&options).await;
    assert!(
        matches!(&after, Attempt::Verified(facts) if facts.serial == "0202"),
        "{after:?}"
    );

    server.shutdown.cancel();
    server.task.await??;
    Ok(())
}

#[tokio::test]
async fn a_missing_volume_is_reported_once_and_served_once_it_appears() -> TestResult {
    let ca = TestCa::new("Example CA")?;
    let volume = tempfile::tempdir()?;
    let ca_file = write_ca(volume.path(), "ca.pem", &ca)?;

    let mut server = start_server(volume.path()).await?;
    let error = server.line_starting("cannot load certificate").await;
    assert!(
        error
            .as_deref()
            .is_some_and(|line| line.contains("tls.crt")),
        "{error:?}"
    );
    let options = server.check_options(ca_file);
    assert!(!check_once(&options).await.succeeded());

    let (certificate, key) = ca.leaf(&[0x77])?;
    publish(
        volume.path(),
        1,
        &[("tls.crt", &certificate), ("tls.key", &key)],
    )?;
    let (between, serving) = server.lines_until("serving serial 77 ").await;
    assert!(serving.is_some(), "{between:?}");
    // Only the one error line was written while the files were missing.
    assert!(between.is_empty(), "{between:?}");
    assert!(check_once(&options).await.succeeded());

    server.shutdown.cancel();
    server.task.await??;
    Ok(())
}

#[tokio::test]
async fn check_with_count_stops_after_that_many_attempts() -> TestResult {
    let volume = tempfile::tempdir()?;
    let ca = TestCa::new("Example CA")?;
    let ca_file = write_ca(volume.path(), "ca.pem", &ca)?;
    // Nothing listens on this port once the listener is dropped.
    let addr = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let options = CheckOptions {
        every: Some(Duration::from_millis(10)),
        count: Some(3),
        ..CheckOptions::new(addr.to_string(), "app.example", ca_file)
    };
    let (sender, mut lines) = mpsc::unbounded_channel();
    assert!(!check(&options, &sender, &CancellationToken::new()).await);
    let mut written = Vec::new();
    while let Ok(line) = lines.try_recv() {
        written.push(line);
    }
    assert_eq!(written.len(), 3, "{written:?}");
    assert!(
        written
            .iter()
            .all(|line| line.starts_with("FAILED app.example at ") && line.contains("connect")),
        "{written:?}"
    );
    Ok(())
}
