//! Scenario 3, scale: many issued certificates, Pods consuming them and
//! unrelated Secrets elsewhere; then each service's peak memory, the
//! watcher's cold start and the API requests certflow makes while nothing
//! changes. Each run starts its own control plane, so runs do not inherit
//! each other's objects.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use certflow_api::{KeyAlgorithm, ServiceCertificate, labels};
use certflow_e2e::fixtures::create_generated_ca;
use certflow_e2e::services::Services;
use certflow_testenv::TestEnv;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};

use crate::apiserver::{Counted, RequestCounts};
use crate::poll::{self, Look};
use crate::process::{ensure_running, peak_rss_of};
use crate::scenarios::{spec, track_ready};

/// Objects created at once while setting up; enough to keep the API server
/// busy without queueing thousands of requests in the client.
const CREATE_PARALLELISM: usize = 32;

/// Namespaces the unrelated Secrets are spread over.
const NOISE_NAMESPACES: usize = 10;

/// Every resource a certflow service writes. Nothing else in the local
/// control plane writes these at idle (kube-controller-manager's idle
/// writes are leases, endpoints and the like), so writes to them while
/// nothing changes are certflow's, with no baseline to subtract.
const CERTFLOW_WRITES: &[&str] = &[
    "servicecertificates",
    "certificateauthorities",
    "secrets",
    "events",
];

/// The watcher's counter of published work items (`duplicate` included).
const WORK_ITEMS_PUBLISHED: &str = "certflow_watcher_work_items_published_total";

/// How many objects of each kind scenario 3 creates.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Size {
    pub certificates: usize,
    pub pods: usize,
    pub unrelated_secrets: usize,
}

/// API requests counted over an idle window, by the API server.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Idle {
    pub seconds: f64,
    pub reads: f64,
    pub writes: f64,
    /// Writes to the kinds certflow writes ([`CERTFLOW_WRITES`]).
    pub writes_to_certflow_kinds: f64,
    pub breakdown: Vec<Counted>,
}

impl Idle {
    fn of(counts: &RequestCounts, seconds: f64) -> Self {
        Self {
            seconds,
            reads: counts.reads(),
            writes: counts.writes(),
            writes_to_certflow_kinds: counts.writes_to(CERTFLOW_WRITES),
            breakdown: counts.breakdown(),
        }
    }
}

/// The JSON size of objects a service caches, and how much of it is
/// `metadata.managedFields` (server-side apply's bookkeeping, which no
/// certflow decision reads).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CachedJson {
    pub objects: usize,
    pub json_mib: f64,
    pub managed_fields_mib: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Scale {
    pub size: Size,
    /// Seconds to create the unrelated Secrets and the Pods.
    pub setup_seconds: f64,
    /// Seconds from the first ServiceCertificate create until all were Ready.
    pub issue_seconds: f64,
    /// Peak RSS (VmHWM) in MiB by service. `watcher (issuing)` is the
    /// watcher that saw every certificate issued; `watcher` is the one
    /// restarted afterwards (cold start, then idle).
    pub peak_rss_mib: BTreeMap<String, f64>,
    /// What the watcher holds in its caches, as JSON: the managed Secrets
    /// and the ServiceCertificates.
    pub watcher_cache: BTreeMap<String, CachedJson>,
    /// Seconds from spawning the watcher, with everything in place and one
    /// new ServiceCertificate waiting, until its published-items counter
    /// first reads non-zero (polled every 20 ms).
    pub cold_start_seconds: f64,
    /// Every client of the API server while certflow idles.
    pub idle_with_certflow: Idle,
    /// The same window length with certflow's services stopped.
    pub idle_without_certflow: Idle,
    /// The difference of the two, per minute: what certflow adds at idle.
    pub certflow_reads_per_minute: f64,
    pub certflow_writes_per_minute: f64,
}

/// Runs scenario 3 once against a control plane of its own.
pub async fn scale(size: Size, idle: Duration) -> anyhow::Result<Scale> {
    let env = TestEnv::start().await?;
    let dir = env.dir().to_owned();
    let result = run(&env, size, idle).await;
    drop(env);
    // Tens of thousands of objects leave hundreds of MB of etcd data behind.
    let _ = std::fs::remove_dir_all(dir);
    result
}

async fn run(env: &TestEnv, size: Size, idle: Duration) -> anyhow::Result<Scale> {
    let client = env.client().await?;
    let ns = env.create_namespace("bench-scale").await?;
    let mut services = Services::start(env, &ns, 1).await;
    let issuer = certflow_testenv::unique_name("bench-ca");
    create_generated_ca(&client, &issuer, None).await?;

    let setup = Instant::now();
    let mut noise = Vec::new();
    for _ in 0..NOISE_NAMESPACES {
        noise.push(env.create_namespace("bench-noise").await?);
    }
    create_concurrently(size.unrelated_secrets, |i| {
        let api: Api<Secret> = Api::namespaced(client.clone(), &noise[i % noise.len()]);
        async move {
            api.create(&PostParams::default(), &unrelated_secret(i))
                .await
        }
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let certificates = size.certificates.max(1);
    create_concurrently(size.pods, |i| {
        let pods = pods.clone();
        let pod = pod(&format!("app-{i}"), &secret_name(i % certificates));
        async move { pods.create(&PostParams::default(), &pod).await }
    })
    .await?;
    let setup_seconds = setup.elapsed().as_secs_f64();
    eprintln!(
        "scale: {} unrelated Secrets and {} Pods created in {setup_seconds:.0} s",
        size.unrelated_secrets, size.pods
    );

    let ready = track_ready(client.clone(), &ns);
    let scerts: Api<ServiceCertificate> = Api::namespaced(client.clone(), &ns);
    let issuing = Instant::now();
    create_concurrently(size.certificates, |i| {
        let scerts = scerts.clone();
        let scert = certificate(i, &issuer, &ns);
        async move { scerts.create(&PostParams::default(), &scert).await }
    })
    .await?;
    ready
        .wait_for(size.certificates, Duration::from_secs(1800), &mut services)
        .await?;
    let issue_seconds = issuing.elapsed().as_secs_f64();
    eprintln!(
        "scale: {} certificates Ready in {issue_seconds:.0} s",
        size.certificates
    );

    let mut peak_rss_mib = BTreeMap::new();
    for (name, bytes) in peak_rss_of(&services)?
        .into_iter()
        .filter(|(name, _)| name == "watcher")
    {
        peak_rss_mib.insert(format!("{name} (issuing)"), mib(bytes));
    }

    let managed = ListParams::default().labels(labels::MANAGED_SELECTOR);
    let watcher_cache = BTreeMap::from([
        (
            "secrets".to_owned(),
            cached_json(&Api::<Secret>::namespaced(client.clone(), &ns), &managed).await?,
        ),
        (
            "servicecertificates".to_owned(),
            cached_json(&scerts, &ListParams::default()).await?,
        ),
    ]);

    // Cold start: everything exists, and one certificate was added while
    // the watcher was down, so the restarted watcher has exactly one item
    // to publish once it has listed and reconciled everything.
    services.kill_watcher();
    scerts
        .create(
            &PostParams::default(),
            &certificate(size.certificates, &issuer, &ns),
        )
        .await?;
    let spawned = Instant::now();
    services.start_watcher();
    wait_for_first_publish(&mut services, Duration::from_secs(600)).await?;
    let cold_start_seconds = spawned.elapsed().as_secs_f64();
    eprintln!("scale: watcher cold start {cold_start_seconds:.2} s");
    ready
        .wait_for(
            size.certificates + 1,
            Duration::from_secs(300),
            &mut services,
        )
        .await?;
    drop(ready);

    // Let the last issuance's watch events settle before counting.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let with_certflow = idle_window(&client, idle, Some(&mut services)).await?;
    for (name, bytes) in peak_rss_of(&services)? {
        peak_rss_mib.insert(name, mib(bytes));
    }
    services.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let without_certflow = idle_window(&client, idle, None).await?;

    let per_minute = 60.0 / idle.as_secs_f64();
    Ok(Scale {
        size,
        setup_seconds,
        issue_seconds,
        peak_rss_mib,
        watcher_cache,
        cold_start_seconds,
        certflow_reads_per_minute: (with_certflow.reads - without_certflow.reads) * per_minute,
        certflow_writes_per_minute: (with_certflow.writes - without_certflow.writes) * per_minute,
        idle_with_certflow: with_certflow,
        idle_without_certflow: without_certflow,
    })
}

/// Counts API requests over `length` of idle, checking that `services`
/// (when given) keep running.
async fn idle_window(
    client: &kube::Client,
    length: Duration,
    mut services: Option<&mut Services>,
) -> anyhow::Result<Idle> {
    let before = RequestCounts::fetch(client).await?;
    let started = Instant::now();
    while started.elapsed() < length {
        if let Some(services) = services.as_deref_mut() {
            ensure_running(services)?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let after = RequestCounts::fetch(client).await?;
    Ok(Idle::of(
        &after.since(&before).without_resource("/metrics"),
        started.elapsed().as_secs_f64(),
    ))
}

async fn wait_for_first_publish(services: &mut Services, timeout: Duration) -> anyhow::Result<()> {
    poll::until(timeout, Duration::from_millis(20), async || {
        ensure_running(services)?;
        if let Some(watcher) = &services.watcher
            && watcher.metric_sum(WORK_ITEMS_PUBLISHED).await > 0.0
        {
            return Ok(Look::Done(()));
        }
        Ok(Look::NotYet(format!(
            "the restarted watcher published nothing\n{}",
            services.logs()
        )))
    })
    .await
}

/// Lists `api` page by page and adds up the objects' JSON sizes.
async fn cached_json<K>(api: &Api<K>, params: &ListParams) -> anyhow::Result<CachedJson>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let mut total = CachedJson::default();
    let mut params = params.clone().limit(500);
    loop {
        let page = api.list(&params).await?;
        for object in &page.items {
            total.objects += 1;
            total.json_mib += mib(serde_json::to_vec(object)?.len() as u64);
            let managed_fields = &object.meta().managed_fields;
            total.managed_fields_mib += mib(serde_json::to_vec(managed_fields)?.len() as u64);
        }
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(total),
        }
    }
}

/// Runs `create(i)` for every `i` below `count`, [`CREATE_PARALLELISM`] at once.
pub(crate) async fn create_concurrently<T, F, Fut>(count: usize, create: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    futures::stream::iter(0..count)
        .map(create)
        .buffer_unordered(CREATE_PARALLELISM)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

fn secret_name(i: usize) -> String {
    format!("scale-{i}-tls")
}

fn certificate(i: usize, issuer: &str, ns: &str) -> ServiceCertificate {
    let name = format!("scale-{i}");
    let mut spec = spec(
        &name,
        issuer,
        KeyAlgorithm::Ecdsa,
        format!("{name}.{ns}.svc"),
    );
    spec.secret_name = secret_name(i);
    ServiceCertificate::new(&name, spec)
}

/// An Opaque Secret certflow has no business with: 1 KiB of data, no labels.
fn unrelated_secret(i: usize) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("unrelated-{i}")),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "blob".to_owned(),
            ByteString(vec![b'x'; 1024]),
        )])),
        ..Secret::default()
    }
}

/// A bare Pod `name` mounting Secret `secret`. Nothing schedules it; it stays
/// Pending, which is all the reporter's Pod index needs.
fn pod(name: &str, secret: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "containers": [{"name": "app", "image": "registry.example/app:1",
                "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls"}]}],
            "volumes": [{"name": "tls", "secret": {"secretName": secret}}]
        }
    }))
    .expect("a valid Pod")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
