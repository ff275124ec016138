//! Scenario 5 of issue 6: scenario 1's burst (N certificates, ECDSA P-256,
//! created at once) against cert-manager's CA issuer on the same local API
//! server, interleaved run by run with certflow's own burst so that both see
//! the same machine load, and the ratio of the two rates.
//!
//! Observes cert-manager `Certificate`s (their `Ready` condition) and the
//! CPU time and peak memory of the benchmark's child processes; writes
//! cert-manager's CRDs, and in a namespace of its own per run a CA Secret,
//! an `Issuer` and the `Certificate`s; never touches certflow's objects. cert-manager's
//! controller is the binary `scripts/install-cert-manager.sh` builds (see
//! `docs/design/20261127-cert-manager-comparison.md`), run as a child
//! process scoped to that namespace. cert-manager objects are
//! `DynamicObject`s: the benchmark needs four fields, not cert-manager's
//! Rust types.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use certflow_api::KeyAlgorithm;
use certflow_pki::{Authority, KeySpec};
use certflow_testenv::process::{ManagedProcess, free_ports};
use certflow_testenv::{TestEnv, unique_name};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::{Client, ResourceExt as _};

use crate::apiserver::{Counted, RequestCounts};
use crate::poll::{self, Look};
use crate::process::peak_rss_bytes;
use crate::scenarios::Tracker;
use crate::{scenarios, stats};

/// What builds cert-manager's controller and extracts its CRDs.
const INSTALL_SCRIPT: &str = "scripts/install-cert-manager.sh";
/// Certificates created concurrently, as in certflow's burst.
const CONCURRENT_CREATES: usize = 32;
/// How long one burst may take before the run fails.
const BURST_TIMEOUT: Duration = Duration::from_secs(900);
/// How long the controller may take to report its Issuer Ready.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How often child processes' CPU time and peak RSS are sampled in a burst.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// cert-manager's controller binary and CRD directory, as the install
/// script caches them.
#[derive(Debug, Clone)]
pub struct Installation {
    pub controller: PathBuf,
    pub crds: PathBuf,
    /// The pinned version (`CERT_MANAGER_VERSION`), read from the cache path.
    pub version: String,
}

impl Installation {
    /// Asks the install script where it caches the controller and the CRDs.
    /// Fails, naming the command that builds them, when either is missing:
    /// the comparison is never skipped silently.
    pub fn locate() -> anyhow::Result<Self> {
        let script = certflow_testenv::tools::repo_root().join(INSTALL_SCRIPT);
        let print = |flag: &str| -> anyhow::Result<PathBuf> {
            let output = std::process::Command::new(&script)
                .arg(flag)
                .output()
                .with_context(|| format!("running {} {flag}", script.display()))?;
            anyhow::ensure!(
                output.status.success(),
                "{} {flag} failed: {}",
                script.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
        };
        let bin = print("--print")?;
        let crds = print("--print-crds")?;
        let controller = bin.join("cert-manager-controller");
        for needed in [&controller, &crds.join("cert-manager.io_certificates.yaml")] {
            anyhow::ensure!(
                needed.is_file(),
                "{} is missing: build cert-manager's controller and extract its CRDs with \
                 `{INSTALL_SCRIPT}` (about 5 minutes with an empty Go build cache)",
                needed.display()
            );
        }
        let version = bin
            .parent()
            .and_then(|dir| dir.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            controller,
            crds,
            version,
        })
    }

    /// Server-side-applies the CRDs (three are over the 256 KB limit of
    /// client-side apply's annotation) and waits until they are Established.
    pub async fn apply_crds(&self, env: &TestEnv) -> anyhow::Result<()> {
        let mut apply = env.kubectl();
        apply
            .arg("apply")
            .arg("--server-side")
            .arg("-f")
            .arg(&self.crds);
        run(apply).await?;
        let mut wait = env.kubectl();
        wait.args([
            "wait",
            "--for=condition=Established",
            "--timeout=120s",
            "-f",
        ])
        .arg(&self.crds);
        run(wait).await
    }
}

/// Runs a kubectl command off the async runtime; fails with its output.
async fn run(mut command: std::process::Command) -> anyhow::Result<()> {
    let description = format!("{command:?}");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await?
        .with_context(|| format!("running {description}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{description} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn cert_manager_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", kind),
        plural,
    )
}

/// Whether a cert-manager object's `status.conditions` has `Ready=True`.
fn is_ready(object: &DynamicObject) -> bool {
    object
        .data
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// One cert-manager burst: `count` Certificates created at once; seconds
/// from the first create until every one is Ready (its Secret written and
/// checked by cert-manager's readiness controller), seen through a watch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertManagerBurst {
    pub count: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// The controller's peak resident set size (`VmHWM`), whole process life.
    pub peak_rss_bytes: u64,
    /// Events in the namespace once every Certificate was Ready (the
    /// API server may have merged repeated ones).
    pub events: usize,
    /// CertificateRequests in the namespace once every Certificate was Ready.
    pub certificate_requests: usize,
    /// Every child process during the timed part (the controller and the
    /// control plane).
    pub usage: Vec<Usage>,
    /// Every request the API server served from the first create until all
    /// were Ready (all clients), per certificate.
    pub requests_per_certificate: f64,
    pub requests: Vec<Counted>,
}

/// Runs cert-manager's burst in a fresh namespace with its own CA, Issuer and
/// controller process. The clock starts once the controller has reported the
/// Issuer Ready, so its start-up is not counted.
pub async fn cert_manager_burst(
    env: &TestEnv,
    installation: &Installation,
    count: usize,
) -> anyhow::Result<CertManagerBurst> {
    let client = env.client().await?;
    let ns = env.create_namespace("bench-cert-manager").await?;
    let ca_secret = create_ca_secret(&client, &ns).await?;
    let issuer_resource = cert_manager_resource("Issuer", "issuers");
    let issuers: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &issuer_resource);
    let issuer = DynamicObject::new("bench-ca", &issuer_resource)
        .data(serde_json::json!({"spec": {"ca": {"secretName": ca_secret}}}));
    issuers.create(&PostParams::default(), &issuer).await?;

    let [metrics_port] = free_ports()?;
    let args = vec![
        format!("--kubeconfig={}", env.kubeconfig().display()),
        "--leader-elect=false".to_owned(),
        format!("--namespace={ns}"),
        format!("--metrics-listen-address=127.0.0.1:{metrics_port}"),
    ];
    let log = env
        .dir()
        .join(format!("{}.log", unique_name("cert-manager")));
    let mut controller = ManagedProcess::start(
        "cert-manager-controller",
        &installation.controller,
        args,
        log,
    )?;
    let mut usage = None;
    let result = async {
        wait_until_ready(&issuers, "bench-ca", &mut controller).await?;
        let before = RequestCounts::fetch(&client).await?;
        let sampling = ChildUsage::start();
        let timed = timed_burst(&client, &ns, count, &mut controller).await;
        usage = Some(sampling.finish());
        let during = RequestCounts::fetch(&client)
            .await?
            .since(&before)
            .without_resource("/metrics");
        timed.map(|timed| (timed, during))
    }
    .await;
    let peak_rss = controller.pid().map(peak_rss_bytes).transpose();
    controller.terminate(Duration::from_secs(10));
    let ((seconds, certificate_requests), during) =
        result.map_err(|err| anyhow::anyhow!("{err}\n{}", controller.tail(30)))?;
    let events = Api::<Event>::namespaced(client, &ns)
        .list(&ListParams::default())
        .await?
        .items
        .len();
    Ok(CertManagerBurst {
        count,
        seconds,
        per_second: count as f64 / seconds,
        peak_rss_bytes: peak_rss?.unwrap_or_default(),
        events,
        certificate_requests,
        usage: usage.unwrap_or_default(),
        requests_per_certificate: during.total() / count.max(1) as f64,
        requests: during.breakdown(),
    })
}

/// A self-signed ECDSA P-256 CA as the `kubernetes.io/tls` Secret that
/// cert-manager's CA issuer reads. Returns the Secret's name.
async fn create_ca_secret(client: &Client, namespace: &str) -> anyhow::Result<String> {
    let (_, ca) = Authority::generate(
        "certflow-bench cert-manager CA",
        KeySpec::EcdsaP256,
        Duration::from_secs(365 * 24 * 3600),
    )?;
    let name = "bench-ca-key-pair".to_owned();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": ca.cert_pem, "tls.key": ca.key_pem},
    }))?;
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(name)
}

/// Polls until cert-manager object `name` is Ready, failing as soon as the
/// controller exits.
async fn wait_until_ready(
    api: &Api<DynamicObject>,
    name: &str,
    controller: &mut ManagedProcess,
) -> anyhow::Result<()> {
    poll::until(START_TIMEOUT, Duration::from_millis(100), async || {
        controller.check_running()?;
        if api.get_opt(name).await?.is_some_and(|o| is_ready(&o)) {
            return Ok(Look::Done(()));
        }
        Ok(Look::NotYet(format!(
            "{} {name} was not Ready",
            api.resource_url()
        )))
    })
    .await
}

/// Creates `count` Certificates like certflow's burst creates
/// ServiceCertificates and waits until all are Ready. Returns the seconds
/// that took and how many CertificateRequests cert-manager made.
async fn timed_burst(
    client: &Client,
    ns: &str,
    count: usize,
    controller: &mut ManagedProcess,
) -> anyhow::Result<(f64, usize)> {
    let resource = cert_manager_resource("Certificate", "certificates");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
    let ready = Tracker::watch(api.clone(), |object| {
        is_ready(object).then(|| object.name_any())
    });

    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let name = format!("burst-{i}");
            let certificate = DynamicObject::new(&name, &resource).data(serde_json::json!({
                "spec": {
                    "secretName": format!("{name}-tls"),
                    "dnsNames": [format!("burst-{i}.{ns}.svc")],
                    "privateKey": {"algorithm": "ECDSA", "size": 256},
                    "issuerRef": {"name": "bench-ca", "kind": "Issuer", "group": "cert-manager.io"},
                }
            }));
            async move { api.create(&PostParams::default(), &certificate).await }
        })
        .buffer_unordered(CONCURRENT_CREATES)
        .try_collect::<Vec<_>>()
        .await?;
    let deadline = started + BURST_TIMEOUT;
    loop {
        let have = ready.len();
        if have >= count {
            break;
        }
        controller.check_running()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {have} of {count} Certificates were Ready within {BURST_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let requests = cert_manager_resource("CertificateRequest", "certificaterequests");
    let requests = Api::<DynamicObject>::namespaced_with(client.clone(), ns, &requests)
        .list(&ListParams::default())
        .await?
        .items
        .len();
    Ok((seconds, requests))
}

/// What each child process of this one (the control plane, certflow's
/// services, cert-manager's controller) used while a burst ran, sampled on a
/// thread of its own every [`SAMPLE_INTERVAL`]: certflow's burst starts and
/// stops its services itself, so they are read while they run. CPU time
/// comes from `/proc/<pid>/stat`, the peak from `VmHWM`; both only grow, so
/// the last sample before a process exits is at most one interval short.
struct ChildUsage {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<BTreeMap<u32, Sample>>,
}

#[derive(Debug, Clone)]
struct Sample {
    program: String,
    /// CPU nanoseconds when first seen: for a process already running when
    /// sampling started, what it used before the burst; 0 for one started
    /// during the burst.
    first_cpu_ns: u64,
    last_cpu_ns: u64,
    peak_rss_bytes: u64,
}

impl ChildUsage {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples: BTreeMap<u32, Sample> = BTreeMap::new();
            let mut first_round = true;
            while !stopped.load(Ordering::Relaxed) {
                for (pid, program) in children() {
                    let (Ok(cpu_ns), Ok(rss)) = (cpu_ns(pid), peak_rss_bytes(pid)) else {
                        continue;
                    };
                    let sample = samples.entry(pid).or_insert_with(|| Sample {
                        program,
                        first_cpu_ns: if first_round { cpu_ns } else { 0 },
                        last_cpu_ns: cpu_ns,
                        peak_rss_bytes: rss,
                    });
                    sample.last_cpu_ns = cpu_ns;
                    sample.peak_rss_bytes = rss;
                }
                first_round = false;
                std::thread::sleep(SAMPLE_INTERVAL);
            }
            samples
        });
        Self { stop, thread }
    }

    /// Per program (`kube-apiserver`, `certflow-signer`, …): CPU seconds used
    /// while sampling, summed over its processes, and the largest peak RSS.
    fn finish(self) -> Vec<Usage> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        let mut by_program: BTreeMap<String, Usage> = BTreeMap::new();
        for sample in samples.into_values() {
            let usage = by_program
                .entry(sample.program.clone())
                .or_insert_with(|| Usage {
                    program: sample.program.clone(),
                    cpu_seconds: 0.0,
                    peak_rss_bytes: 0,
                });
            usage.cpu_seconds +=
                sample.last_cpu_ns.saturating_sub(sample.first_cpu_ns) as f64 / 1e9;
            usage.peak_rss_bytes = usage.peak_rss_bytes.max(sample.peak_rss_bytes);
        }
        by_program.into_values().collect()
    }
}

/// Nanoseconds process `pid` (all its threads, live and exited) has spent
/// on a CPU: utime + stime from `/proc/<pid>/stat`, in clock ticks.
/// (`/proc/<pid>/schedstat` would be finer but counts the main thread only.)
fn cpu_ns(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the parenthesised command name start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
        anyhow::bail!("{path} has no utime and stime");
    };
    Ok((utime + stime) * (1_000_000_000 / clock_ticks_per_second()))
}

/// `getconf CLK_TCK`, the unit of `/proc/<pid>/stat`'s times (100 on every
/// Linux this runs on; asked once rather than assumed).
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}

/// Process id and program name (argv\[0\]'s file name) of each child of
/// this process.
fn children() -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the parenthesised command name: state, ppid, …
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            if ppid != me {
                return None;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let program = cmdline.split(|b| *b == 0).next()?;
            let name = String::from_utf8_lossy(program)
                .rsplit('/')
                .next()?
                .to_owned();
            Some((pid, name))
        })
        .collect()
}

/// One program's use of the machine during one burst.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    pub program: String,
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

/// One round: certflow's burst, then cert-manager's, back to back.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Round {
    pub certflow: scenarios::Burst,
    /// Every child process during certflow's burst (its services and the
    /// control plane).
    pub certflow_usage: Vec<Usage>,
    pub cert_manager: CertManagerBurst,
}

/// Scenario 5's result: every round, the medians and their ratio.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub count: usize,
    pub cert_manager_version: String,
    pub rounds: Vec<Round>,
    pub certflow_median_per_second: f64,
    pub cert_manager_median_per_second: f64,
    /// certflow's median certificates/s ÷ cert-manager's.
    pub ratio: f64,
}

/// Scenario 5: `runs` rounds of certflow's burst (ECDSA P-256, one signer)
/// followed by cert-manager's, `count` certificates each, on one fresh
/// control plane of their own, so that each pair runs under the same
/// machine load and neither sees another scenario's objects.
pub async fn compare(count: usize, runs: usize) -> anyhow::Result<Comparison> {
    let installation = Installation::locate()?;
    let env = &TestEnv::start().await?;
    installation.apply_crds(env).await?;
    let mut rounds = Vec::with_capacity(runs);
    for run in 1..=runs {
        let usage = ChildUsage::start();
        let certflow = scenarios::burst(env, count, KeyAlgorithm::Ecdsa, 1).await;
        let certflow_usage = usage.finish();
        let certflow = certflow?;
        eprintln!(
            "cert-manager comparison run {run}: certflow {:.1} certificates/s",
            certflow.per_second
        );
        let cert_manager = cert_manager_burst(env, &installation, count).await?;
        eprintln!(
            "cert-manager comparison run {run}: cert-manager {:.1} certificates/s",
            cert_manager.per_second
        );
        rounds.push(Round {
            certflow,
            certflow_usage,
            cert_manager,
        });
    }
    let median = |rate: fn(&Round) -> f64| {
        stats::median(&rounds.iter().map(rate).collect::<Vec<_>>()).unwrap_or(f64::NAN)
    };
    let certflow_median_per_second = median(|r| r.certflow.per_second);
    let cert_manager_median_per_second = median(|r| r.cert_manager.per_second);
    Ok(Comparison {
        count,
        cert_manager_version: installation.version,
        certflow_median_per_second,
        cert_manager_median_per_second,
        ratio: certflow_median_per_second / cert_manager_median_per_second,
        rounds,
    })
}

/// `program cpu-seconds/peak-MiB` for each program matching `wanted`.
fn usage_summary(usage: &[Usage], wanted: impl Fn(&str) -> bool) -> String {
    usage
        .iter()
        .filter(|u| wanted(&u.program))
        .map(|u| {
            format!(
                "{} {:.1}s/{:.0}MiB",
                u.program.trim_start_matches("certflow-"),
                u.cpu_seconds,
                u.peak_rss_bytes as f64 / (1024.0 * 1024.0)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Comparison {
    /// The table `certflow-bench` prints.
    pub fn print_table(&self) {
        println!(
            "\ncert-manager {} side by side: {} certificates (ECDSA P-256, one CA) created at once, \
             rounds interleaved",
            self.cert_manager_version, self.count
        );
        println!(
            "{:<8} {:>12} {:>16} {:>11} {:>15} {:>10} {:>10}",
            "run",
            "certflow/s",
            "cert-manager/s",
            "certflow s",
            "cert-manager s",
            "cf req/c",
            "cm req/c"
        );
        for (i, round) in self.rounds.iter().enumerate() {
            println!(
                "{:<8} {:>12.1} {:>16.1} {:>11.2} {:>15.2} {:>10.2} {:>10.2}",
                i + 1,
                round.certflow.per_second,
                round.cert_manager.per_second,
                round.certflow.seconds,
                round.cert_manager.seconds,
                round.certflow.requests_per_certificate,
                round.cert_manager.requests_per_certificate,
            );
        }
        println!(
            "{:<8} {:>12.1} {:>16.1}",
            "median", self.certflow_median_per_second, self.cert_manager_median_per_second
        );
        println!("ratio (certflow/s ÷ cert-manager/s): {:.2}", self.ratio);
        println!(
            "\nCPU seconds and peak RSS during each burst (control plane: API server and etcd)"
        );
        let controllers = |p: &str| p.starts_with("certflow-") || p == "cert-manager-controller";
        let control_plane = |p: &str| p == "kube-apiserver" || p == "etcd";
        for (i, round) in self.rounds.iter().enumerate() {
            println!(
                "run {}: certflow: {}; control plane: {}",
                i + 1,
                usage_summary(&round.certflow_usage, controllers),
                usage_summary(&round.certflow_usage, control_plane)
            );
            println!(
                "       cert-manager: {}; control plane: {}",
                usage_summary(&round.cert_manager.usage, controllers),
                usage_summary(&round.cert_manager.usage, control_plane)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn certificate_with(status: serde_json::Value) -> DynamicObject {
        let resource = cert_manager_resource("Certificate", "certificates");
        DynamicObject::new("c", &resource).data(json!({ "status": status }))
    }

    #[test]
    fn a_certificate_is_ready_only_with_a_true_ready_condition() {
        let ready = json!({"conditions": [
            {"type": "Issuing", "status": "True"},
            {"type": "Ready", "status": "True"},
        ]});
        assert!(is_ready(&certificate_with(ready)));
        let not_ready = json!({"conditions": [{"type": "Ready", "status": "False"}]});
        assert!(!is_ready(&certificate_with(not_ready)));
        let issuing = json!({"conditions": [{"type": "Issuing", "status": "True"}]});
        assert!(!is_ready(&certificate_with(issuing)));
        assert!(!is_ready(&certificate_with(json!({}))));
    }

    #[test]
    fn this_process_has_a_cpu_time_and_a_peak_rss() {
        let me = std::process::id();
        assert!(cpu_ns(me).is_ok());
        assert!(peak_rss_bytes(me).is_ok_and(|bytes| bytes > 0));
    }
}
