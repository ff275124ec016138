//! A certflow service against a nats-server that requires mutual TLS
//! (`tls { cert_file, key_file, ca_file, verify: true }`): with
//! `--nats-tls-ca`, `--nats-tls-cert` and `--nats-tls-key` the setup step
//! (`certflow-watcher setup-bus`) creates the streams over TLS and the
//! watcher connects over TLS and becomes ready; without the CA it refuses the
//! server's certificate; without a client certificate the server refuses it;
//! and with the flags against a plain-text server it refuses to send its
//! traffic in the clear.
//!
//! The CA and both certificates are made with certflow-pki, as the signer
//! makes them. The control plane is the shared one; each test runs its own
//! nats-server and watcher.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use certflow_e2e::eventually;
use certflow_e2e::services::{Service, binary};
use certflow_pki::{Authority, ExtendedKeyUsage, KeySpec, LeafRequest, PrivateKey};
use certflow_testenv::process::{ManagedProcess, free_ports};
use certflow_testenv::{TestEnv, unique_name};

/// Start-up of a watcher (NATS, streams, the first watch) or the setup step
/// on a busy 2-core machine, or its exit after `--nats-connect-timeout`.
const WAIT: Duration = Duration::from_secs(30);

/// A CA, the server's certificate for 127.0.0.1, and a client certificate,
/// as PEM files in one directory.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn generate(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).expect("certificate dir");
        let day = Duration::from_secs(24 * 3600);
        let (ca, ca_pem) =
            Authority::generate("certflow-nats-e2e-ca", KeySpec::EcdsaP256, day).expect("CA");
        let now = SystemTime::now();
        let issue = |name: &str, request: LeafRequest| {
            let key = PrivateKey::generate(KeySpec::EcdsaP256).expect("key");
            let issued = ca.issue(&request, &key).expect("certificate");
            std::fs::write(dir.join(format!("{name}.crt")), issued.chain_pem).expect("write");
            std::fs::write(dir.join(format!("{name}.key")), key.to_pkcs8_pem()).expect("write");
        };
        issue(
            "server",
            LeafRequest {
                common_name: Some("certflow-nats".to_owned()),
                dns_names: vec!["localhost".to_owned()],
                ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                extended_key_usages: vec![ExtendedKeyUsage::ServerAuth],
                ..LeafRequest::new(now, now + day / 2)
            },
        );
        issue(
            "client",
            LeafRequest {
                common_name: Some("certflow-watcher".to_owned()),
                extended_key_usages: vec![ExtendedKeyUsage::ClientAuth],
                ..LeafRequest::new(now, now + day / 2)
            },
        );
        std::fs::write(dir.join("ca.crt"), ca_pem.cert_pem).expect("write");
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// A JetStream nats-server that accepts only TLS clients presenting a
/// certificate signed by `certificates`' CA.
struct TlsNats {
    _process: ManagedProcess,
    port: u16,
    monitoring_port: u16,
    log: PathBuf,
}

impl TlsNats {
    async fn start(env: &TestEnv, dir: &Path, certificates: &Certificates) -> Self {
        let [port, monitoring_port] = free_ports().expect("ports");
        let config = format!(
            "server_name: certflow-tls-e2e\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitoring_port}\n\
             jetstream {{ store_dir: {store:?} }}\n\
             tls {{\n  cert_file: {cert:?}\n  key_file: {key:?}\n  ca_file: {ca:?}\n  verify: true\n  timeout: 2\n}}\n",
            store = dir.join("jetstream").display().to_string(),
            cert = certificates.path("server.crt"),
            key = certificates.path("server.key"),
            ca = certificates.path("ca.crt"),
        );
        let config_path = dir.join("nats.conf");
        std::fs::write(&config_path, config).expect("nats.conf");
        let log = dir.join("nats-server.log");
        let process = ManagedProcess::start(
            "nats-server (tls)",
            &env.tools().nats_server,
            vec!["--config".to_owned(), config_path.display().to_string()],
            log.clone(),
        )
        .expect("nats-server starts");
        let nats = Self {
            _process: process,
            port,
            monitoring_port,
            log,
        };
        let what = format!("the TLS nats-server to be healthy\n{}", nats.log_text());
        eventually(&what, WAIT, || async {
            let health = nats.monitoring("/healthz").await?;
            health.contains("\"ok\"").then_some(())
        })
        .await;
        nats
    }

    /// The body of a GET on the monitoring port (plain HTTP).
    async fn monitoring(&self, path: &str) -> Option<String> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.monitoring_port))
            .await
            .ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One test's nats-server, certificates and watcher settings.
struct Fixture {
    env: &'static TestEnv,
    nats: TlsNats,
    certificates: Certificates,
    namespace: String,
    /// The test's own streams on the server.
    bus_prefix: String,
    dir: PathBuf,
}

impl Fixture {
    async fn start(prefix: &str) -> Self {
        let env = certflow_testenv::shared();
        let dir = env.dir().join(unique_name(prefix));
        std::fs::create_dir_all(&dir).expect("test dir");
        let certificates = Certificates::generate(dir.join("certificates"));
        let nats = TlsNats::start(env, &dir, &certificates).await;
        let namespace = env.create_namespace(prefix).await.expect("namespace");
        Self {
            env,
            nats,
            certificates,
            namespace,
            bus_prefix: unique_name("t").replace('-', "_"),
            dir,
        }
    }

    /// Runs the setup step, `certflow-watcher setup-bus`, on `url` with
    /// `extra` flags, as an operator does before the services start: they
    /// only look their streams up. Panics with its output unless it exits 0.
    async fn setup_bus(&self, url: &str, extra: &[String]) {
        let mut args = vec![
            format!("--nats-url={url}"),
            format!("--bus-prefix={}", self.bus_prefix),
        ];
        args.extend_from_slice(extra);
        args.push("setup-bus".to_owned());
        let run = tokio::process::Command::new(binary("certflow-watcher"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(WAIT, run)
            .await
            .expect("certflow-watcher setup-bus finishes")
            .expect("run certflow-watcher setup-bus");
        assert!(
            output.status.success(),
            "certflow-watcher {args:?} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `--nats-tls-ca`, `--nats-tls-cert` and `--nats-tls-key`, leaving out
    /// the ones named in `without`.
    fn tls_flags(&self, without: &[&str]) -> Vec<String> {
        [
            ("--nats-tls-ca", "ca.crt"),
            ("--nats-tls-cert", "client.crt"),
            ("--nats-tls-key", "client.key"),
        ]
        .into_iter()
        .filter(|(flag, _)| !without.contains(flag))
        .map(|(flag, file)| format!("{flag}={}", self.certificates.path(file)))
        .collect()
    }

    /// Starts certflow-watcher on `url` with `extra` flags.
    fn watcher(&self, url: &str, extra: &[String]) -> Service {
        let [metrics_port, health_port] = free_ports().expect("ports");
        let mut args = vec![
            format!("--nats-url={url}"),
            format!("--bus-prefix={}", self.bus_prefix),
            format!("--watch-namespace={}", self.namespace),
            format!("--metrics-addr=127.0.0.1:{metrics_port}"),
            format!("--health-addr=127.0.0.1:{health_port}"),
            "--nats-connect-timeout=2s".to_owned(),
        ];
        args.extend_from_slice(extra);
        let envs = vec![
            (
                "KUBECONFIG".to_owned(),
                self.env.kubeconfig().display().to_string(),
            ),
            ("RUST_LOG".to_owned(), "info".to_owned()),
        ];
        let log = self.dir.join(format!("{}.log", unique_name("watcher")));
        let process =
            ManagedProcess::start_with_env("watcher", &binary("certflow-watcher"), args, envs, log)
                .expect("start the watcher");
        Service {
            process,
            metrics_port,
            health_port,
            grpc_port: None,
        }
    }

    fn tls_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.nats.port)
    }
}

/// Waits for `service` to exit and returns its exit status and the
/// `Error: ...` line `main` prints on its way out, read from the whole log
/// (with RUST_BACKTRACE set, a backtrace follows that line).
async fn final_error(service: &mut Service) -> (String, String) {
    let status = eventually("the watcher to give up", WAIT, || {
        let exited = match service.process.check_running() {
            Err(certflow_testenv::Error::Exited { status, .. }) => Some(status),
            _ => None,
        };
        async move { exited }
    })
    .await;
    let log = std::fs::read_to_string(service.process.log_path()).expect("the watcher's log");
    let error = log
        .lines()
        .rev()
        .find(|line| line.starts_with("Error: "))
        .unwrap_or_else(|| panic!("the watcher exited ({status}) without an error line:\n{log}"))
        .to_owned();
    (status, error)
}

#[tokio::test]
async fn with_the_three_flags_a_service_connects_over_mutual_tls_and_becomes_ready() {
    let fixture = Fixture::start("nats-tls-ok").await;
    fixture
        .setup_bus(&fixture.tls_url(), &fixture.tls_flags(&[]))
        .await;
    let watcher = fixture.watcher(&fixture.tls_url(), &fixture.tls_flags(&[]));

    let what = format!(
        "the watcher to become ready over TLS\n{}",
        watcher.process.tail(30)
    );
    eventually(&what, WAIT, || async {
        watcher.serving().await.filter(|ready| *ready)
    })
    .await;

    // The server saw a TLS connection from the watcher, and it presented the
    // client certificate (the server requires one, but check it was ours).
    let what = "the watcher's connection in the server's /connz";
    let connection = eventually(what, WAIT, || async {
        let connz = fixture.nats.monitoring("/connz").await?;
        let connz: serde_json::Value = serde_json::from_str(&connz).ok()?;
        connz["connections"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == "certflow-watcher")
            .cloned()
    })
    .await;
    assert!(
        connection["tls_version"]
            .as_str()
            .is_some_and(|version| version.starts_with("1.")),
        "the watcher's connection is not TLS: {connection:#}"
    );
    let log = std::fs::read_to_string(watcher.process.log_path()).unwrap_or_default();
    assert!(
        !log.contains("PRIVATE KEY"),
        "the watcher logged key material:\n{log}"
    );
}

#[tokio::test]
async fn without_the_ca_a_service_refuses_the_servers_certificate_as_from_an_unknown_issuer() {
    let fixture = Fixture::start("nats-tls-noca").await;
    let mut watcher = fixture.watcher(&fixture.tls_url(), &fixture.tls_flags(&["--nats-tls-ca"]));
    let (status, error) = final_error(&mut watcher).await;
    assert_ne!(status, "exit status: 0");
    let lower = error.to_lowercase();
    assert!(
        lower.contains("unknownissuer") || lower.contains("unknown issuer"),
        "the final error should name the untrusted issuer of the server's certificate: {error}"
    );
}

#[tokio::test]
async fn without_a_client_certificate_the_server_refuses_the_service() {
    let fixture = Fixture::start("nats-tls-nocert").await;
    let flags = fixture.tls_flags(&["--nats-tls-cert", "--nats-tls-key"]);
    let mut watcher = fixture.watcher(&fixture.tls_url(), &flags);
    let (status, error) = final_error(&mut watcher).await;
    assert_ne!(status, "exit status: 0");
    assert!(
        error.contains("NATS at tls://127.0.0.1") && error.to_lowercase().contains("certificate"),
        "the watcher should give up on NATS for want of a certificate: {error}"
    );
    // The refusal is the server's: it asked for a certificate and got none.
    let what = "the server to log the refused handshake";
    let line = eventually(what, WAIT, || async {
        fixture
            .nats
            .log_text()
            .lines()
            .find(|line| line.contains("TLS handshake error"))
            .map(str::to_owned)
    })
    .await;
    assert!(
        line.to_lowercase().contains("certificate"),
        "the server refused the handshake for another reason: {line}"
    );
}

#[tokio::test]
async fn with_a_tls_flag_a_service_never_falls_back_to_plain_text() {
    let fixture = Fixture::start("nats-tls-plain").await;
    // The environment's own nats-server speaks plain text only.
    let plain_url = fixture.env.nats_url();
    let mut watcher = fixture.watcher(&plain_url, &fixture.tls_flags(&[]));
    let (status, error) = final_error(&mut watcher).await;
    assert_ne!(status, "exit status: 0");
    // The client never sends CONNECT (with the password) before the TLS
    // handshake, which a plain-text server cannot complete; the client's
    // own error is only "received corrupt message", so certflow's says
    // that TLS was required.
    assert!(
        error.contains("over TLS (required by --nats-tls-*"),
        "the final error should say that TLS is required: {error}"
    );
}
