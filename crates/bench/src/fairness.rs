//! Scenario 6, fairness: one namespace floods certflow with slow
//! certificates (by default 1,000 RSA-4096 with `duration: 1m` and
//! `rotationPolicy: Always`, so they never stop asking for keys), and once
//! the watcher has looked at every one of them, a quiet namespace creates
//! its first certificate (ECDSA P-256). The figure is how long that one
//! takes from the create call to Ready, with the watcher's
//! `--namespace-in-flight` cap and without it (0).
//!
//! One watcher watches every namespace, as deployed: the cap is per
//! namespace inside one watcher, which the test services' per-namespace
//! watcher could not show.

use std::time::{Duration, Instant};

use certflow_api::{KeyAlgorithm, PrivateKeySpec, RotationPolicy, ServiceCertificate};
use certflow_e2e::fixtures::create_generated_ca;
use certflow_e2e::services::Services;
use certflow_testenv::TestEnv;
use kube::api::{Api, PostParams};

use crate::poll::{self, Look};
use crate::process::ensure_running;
use crate::scale::create_concurrently;
use crate::scenarios::{spec, track_ready};

/// The flood's certificates: RSA-4096, the slowest key certflow makes.
const FLOOD_KEY_BITS: u32 = 4096;

/// Their lifetime, the shortest certflow accepts: each asks for a new key
/// every few tens of seconds, far more than two cores can make for a
/// thousand, so the flood never drains while the quiet certificate waits.
const FLOOD_DURATION: &str = "1m";

const PUBLISHED: &str = "certflow_watcher_work_items_published_total";
const HELD: &str = "certflow_watcher_decisions_held";
const PENDING: &str = "certflow_watcher_decisions_pending";
const ISSUED: &str = "certflow_signer_certificates_issued_total";

/// How the scenario is run.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Certificates the flooding namespace creates.
    pub flood: usize,
    /// The watcher's `--namespace-in-flight`; 0 for no cap.
    pub namespace_in_flight: usize,
    /// Signer replicas.
    pub signers: usize,
}

/// One run of scenario 6.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fairness {
    pub flood: usize,
    /// The watcher's `--namespace-in-flight`; 0: no cap.
    pub namespace_in_flight: usize,
    pub signers: usize,
    /// The quiet namespace's first certificate, created before the flood:
    /// create call to Ready, in seconds (the unloaded baseline).
    pub quiet_alone_seconds: f64,
    /// The quiet namespace's next certificate, created once the watcher
    /// had looked at every flood certificate: create call to Ready.
    pub quiet_seconds: f64,
    /// Flood certificates the watcher had published and not yet seen done
    /// when the quiet certificate was created
    /// (`certflow_watcher_decisions_pending`).
    pub flood_in_flight: f64,
    /// Flood certificates the watcher held back at that moment
    /// (`certflow_watcher_decisions_held`).
    pub flood_held: f64,
    /// Certificates the signers issued per second from the flood's first
    /// create until the quiet certificate was Ready: the rate at which the
    /// work ahead of it drains.
    pub issued_per_second: f64,
    /// Flood certificates Ready (first issuance) when the quiet one was.
    pub flood_ready: usize,
    /// The machine's 1-minute load average when the quiet certificate was
    /// created.
    pub load_average: f64,
}

/// Runs scenario 6 once against a control plane of its own: the flood's
/// renewals would weigh on every later run.
pub async fn fairness(setup: Setup) -> anyhow::Result<Fairness> {
    let env = TestEnv::start().await?;
    let dir = env.dir().to_owned();
    let result = run(&env, setup).await;
    drop(env);
    let _ = std::fs::remove_dir_all(dir);
    result
}

async fn run(env: &TestEnv, setup: Setup) -> anyhow::Result<Fairness> {
    let client = env.client().await?;
    let flood_ns = env.create_namespace("bench-flood").await?;
    let quiet_ns = env.create_namespace("bench-quiet").await?;
    let mut services = Services::launch(env, &flood_ns, setup.signers, &[], &[]).await;
    services.kill_watcher();
    services.start_watcher_of_every_namespace(&[&format!(
        "--namespace-in-flight={}",
        setup.namespace_in_flight
    )]);
    let issuer = certflow_testenv::unique_name("bench-ca");
    create_generated_ca(&client, &issuer, None).await?;

    let quiet: Api<ServiceCertificate> = Api::namespaced(client.clone(), &quiet_ns);
    let quiet_ready = track_ready(client.clone(), &quiet_ns);
    let create_quiet = async |name: &str| -> anyhow::Result<Instant> {
        let spec = spec(
            name,
            &issuer,
            KeyAlgorithm::Ecdsa,
            format!("{name}.{quiet_ns}.svc"),
        );
        let applied = Instant::now();
        quiet
            .create(&PostParams::default(), &ServiceCertificate::new(name, spec))
            .await?;
        Ok(applied)
    };
    // Also makes the signer generate the CA's key pair before the flood.
    let applied = create_quiet("quiet-alone").await?;
    quiet_ready
        .wait_for(1, Duration::from_secs(120), &mut services)
        .await?;
    let quiet_alone_seconds = ready_after(&quiet_ready, "quiet-alone", applied)?;

    let flood_ready = track_ready(client.clone(), &flood_ns);
    let issued_before = services.signer_metric_sum(ISSUED).await;
    let flood_started = Instant::now();
    create_flood(&client, &flood_ns, &issuer, setup.flood).await?;
    let (flood_in_flight, flood_held) = looked_at_all(&mut services, setup.flood).await?;

    let load_average = load_average()?;
    let applied = create_quiet("quiet").await?;
    let result = quiet_ready
        .wait_for(2, Duration::from_secs(3600), &mut services)
        .await;
    let flood_ready_count = flood_ready.len();
    let issued = services.signer_metric_sum(ISSUED).await - issued_before;
    let issuing_seconds = flood_started.elapsed().as_secs_f64();
    services.stop();
    result.map_err(|err| anyhow::anyhow!("{err}\n{}", services.logs()))?;
    Ok(Fairness {
        flood: setup.flood,
        namespace_in_flight: setup.namespace_in_flight,
        signers: setup.signers,
        quiet_alone_seconds,
        quiet_seconds: ready_after(&quiet_ready, "quiet", applied)?,
        flood_in_flight,
        flood_held,
        issued_per_second: issued / issuing_seconds,
        flood_ready: flood_ready_count,
        load_average,
    })
}

async fn create_flood(
    client: &kube::Client,
    namespace: &str,
    issuer: &str,
    count: usize,
) -> anyhow::Result<()> {
    let api: Api<ServiceCertificate> = Api::namespaced(client.clone(), namespace);
    create_concurrently(count, |i| {
        let api = api.clone();
        let name = format!("flood-{i}");
        let mut spec = spec(
            &name,
            issuer,
            KeyAlgorithm::Rsa,
            format!("{name}.{namespace}.svc"),
        );
        spec.private_key = Some(PrivateKeySpec {
            algorithm: Some(KeyAlgorithm::Rsa),
            size: Some(FLOOD_KEY_BITS),
            rotation_policy: Some(RotationPolicy::Always),
        });
        spec.duration = Some(FLOOD_DURATION.to_owned());
        async move {
            api.create(
                &PostParams::default(),
                &ServiceCertificate::new(&name, spec),
            )
            .await
        }
    })
    .await
}

/// Waits until the watcher has looked at every flood certificate: each has
/// been published or is held (`published + held >= flood`; later
/// publications only add). Returns the watcher's pending and held gauges
/// at that moment.
async fn looked_at_all(services: &mut Services, flood: usize) -> anyhow::Result<(f64, f64)> {
    poll::until(
        Duration::from_secs(300),
        Duration::from_millis(50),
        async || {
            ensure_running(services)?;
            let watcher = services
                .watcher
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("the watcher is not running"))?;
            let text = watcher.metrics().await;
            let sum = |metric| certflow_e2e::services::sum_metric(&text, metric);
            let (published, held) = (sum(PUBLISHED), sum(HELD));
            // Less the quiet namespace's first certificate.
            let looked_at = published - 1.0 + held;
            if looked_at >= flood as f64 {
                return Ok(Look::Done((sum(PENDING), held)));
            }
            Ok(Look::NotYet(format!(
                "the watcher looked at only {looked_at} of {flood} flood certificates"
            )))
        },
    )
    .await
}

/// Seconds from `applied` until `name` was first seen Ready.
fn ready_after(
    tracker: &crate::scenarios::Tracker,
    name: &str,
    applied: Instant,
) -> anyhow::Result<f64> {
    let ready = tracker
        .snapshot()
        .get(name)
        .copied()
        .ok_or_else(|| anyhow::anyhow!("{name} was never seen Ready"))?;
    Ok(ready.duration_since(applied).as_secs_f64())
}

/// The 1-minute load average (`/proc/loadavg`).
fn load_average() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/loadavg")?;
    text.split_whitespace()
        .next()
        .and_then(|first| first.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("/proc/loadavg reads {text:?}"))
}
