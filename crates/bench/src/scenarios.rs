//! The scenarios `make bench` runs. Each creates its own namespace, CA and
//! services, so runs do not disturb each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certflow_api::{
    IssuerPolicy, IssuerRef, KeyAlgorithm, PrivateKeySpec, ServiceCertificate,
    ServiceCertificateSpec,
};
use certflow_e2e::fixtures::create_generated_ca;
use certflow_e2e::services::Services;
use certflow_testenv::TestEnv;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};

use crate::apiserver::{Counted, RequestCounts};
use crate::poll::{self, Look};
use crate::process::ensure_running;
use crate::stats::Percentiles;

/// When each object first reached the state a tracker looks for, seen
/// through a watch that stops when the tracker is dropped.
pub(crate) struct Tracker {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tracker {
    /// Watches `api` and records, under the key `key` returns, when an
    /// object first was seen with that key (`None`: not there yet).
    pub(crate) fn watch<K>(api: Api<K>, key: impl Fn(&K) -> Option<String> + Send + 'static) -> Self
    where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    {
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            futures::pin_mut!(stream);
            // A watch error (a timed-out watch, a restarted API server) is
            // retried by the backoff; ending here would leave the count short
            // and the driver waiting for its timeout.
            while let Some(next) = stream.next().await {
                let Ok(object) = next else { continue };
                if let Some(key) = key(&object) {
                    let mut seen = record.lock().expect("lock");
                    seen.entry(key).or_insert_with(Instant::now);
                }
            }
        });
        Self { seen, task }
    }

    pub(crate) fn len(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    pub(crate) fn snapshot(&self) -> HashMap<String, Instant> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits until `count` objects were seen, failing at `timeout` or as
    /// soon as one of `services` exits (with that service's log tail).
    pub(crate) async fn wait_for(
        &self,
        count: usize,
        timeout: Duration,
        services: &mut Services,
    ) -> anyhow::Result<()> {
        poll::until(timeout, Duration::from_millis(20), async || {
            let have = self.len();
            if have >= count {
                return Ok(Look::Done(()));
            }
            ensure_running(services)?;
            Ok(Look::NotYet(format!("only {have} of {count} reached")))
        })
        .await
    }
}

/// Records, for every ServiceCertificate in `namespace`, when it first was Ready.
pub(crate) fn track_ready(client: Client, namespace: &str) -> Tracker {
    let api: Api<ServiceCertificate> = Api::namespaced(client, namespace);
    Tracker::watch(api, |scert| {
        scert
            .ready_condition()
            .is_some_and(|c| c.is_true())
            .then(|| scert.name_any())
    })
}

/// Records, for every Pod in `namespace`, when a Warning from
/// certflow-reporter about it first appeared.
fn track_pod_warnings(client: Client, namespace: &str) -> Tracker {
    let api: Api<Event> = Api::namespaced(client, namespace);
    Tracker::watch(api, |event: &Event| {
        let regarding = event.regarding.as_ref()?;
        let from_reporter = event.reporting_controller.as_deref() == Some("certflow-reporter");
        let warning_on_pod =
            event.type_.as_deref() == Some("Warning") && regarding.kind.as_deref() == Some("Pod");
        (from_reporter && warning_on_pod).then(|| regarding.name.clone().unwrap_or_default())
    })
}

pub(crate) fn spec(
    name: &str,
    issuer: &str,
    algorithm: KeyAlgorithm,
    dns: String,
) -> ServiceCertificateSpec {
    ServiceCertificateSpec {
        secret_name: format!("{name}-tls"),
        dns_names: vec![dns],
        issuer_ref: Some(IssuerRef::named(issuer.to_owned())),
        private_key: Some(PrivateKeySpec {
            algorithm: Some(algorithm),
            ..PrivateKeySpec::default()
        }),
        ..ServiceCertificateSpec::default()
    }
}

/// Scenario 1: `count` ServiceCertificates created at once; seconds until
/// every one is Ready (its Secret written and status updated).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Burst {
    pub count: usize,
    pub algorithm: String,
    pub signers: usize,
    /// Flags the watcher ran with on top of the test services' own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub watcher_args: Vec<String>,
    pub seconds: f64,
    pub per_second: f64,
    /// The namespace the certificates were issued in (the floor copies a
    /// Secret from it).
    pub namespace: String,
    /// Every request the API server served from the first create until all
    /// were Ready (all clients: the driver's creates and watch, certflow's
    /// services, kube-controller-manager), per certificate.
    pub requests_per_certificate: f64,
    /// Those of the kinds the signer's issuance path uses (reads and writes
    /// of Secrets and ServiceCertificates, status patches), per
    /// certificate. The driver's own creates (`POST servicecertificates`)
    /// are not among them.
    pub issuance_requests_per_certificate: f64,
    pub requests: Vec<Counted>,
}

/// The verb and resource of every request the signer makes for an
/// issuance: reading the ServiceCertificate and the Secret, creating or
/// applying the Secret, patching status.
pub const ISSUANCE_KINDS: [(&str, &str); 6] = [
    ("GET", "servicecertificates"),
    ("GET", "secrets"),
    ("POST", "secrets"),
    ("APPLY", "secrets"),
    ("PATCH", "secrets"),
    ("PATCH", "servicecertificates/status"),
];

pub async fn burst(
    env: &TestEnv,
    count: usize,
    algorithm: KeyAlgorithm,
    signers: usize,
) -> anyhow::Result<Burst> {
    burst_with_watcher_args(env, count, algorithm, signers, &[]).await
}

/// [`burst`] with the watcher started with `watcher_args` as well (e.g.
/// `--namespace-in-flight`, whose cap a one-namespace burst runs into).
pub async fn burst_with_watcher_args(
    env: &TestEnv,
    count: usize,
    algorithm: KeyAlgorithm,
    signers: usize,
    watcher_args: &[&str],
) -> anyhow::Result<Burst> {
    let client = env.client().await?;
    let ns = env.create_namespace("bench-burst").await?;
    let mut services = Services::start(env, &ns, signers).await;
    if !watcher_args.is_empty() {
        services.kill_watcher();
        services.start_watcher_with_args(watcher_args);
    }
    let issuer = certflow_testenv::unique_name("bench-ca");
    create_generated_ca(&client, &issuer, None).await?;
    let ready = track_ready(client.clone(), &ns);
    let api: Api<ServiceCertificate> = Api::namespaced(client.clone(), &ns);

    let before = RequestCounts::fetch(&client).await?;
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let name = format!("burst-{i}");
            let spec = spec(&name, &issuer, algorithm, format!("burst-{i}.{ns}.svc"));
            async move {
                api.create(
                    &PostParams::default(),
                    &ServiceCertificate::new(&name, spec),
                )
                .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let result = ready
        .wait_for(count, Duration::from_secs(600), &mut services)
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let during = RequestCounts::fetch(&client).await;
    services.stop();
    result.map_err(|err| anyhow::anyhow!("{err}\n{}", services.logs()))?;
    let during = during?.since(&before).without_resource("/metrics");
    let per_certificate = |requests: f64| requests / count.max(1) as f64;
    Ok(Burst {
        count,
        algorithm: algorithm.as_str().to_owned(),
        signers,
        watcher_args: watcher_args.iter().map(|arg| (*arg).to_owned()).collect(),
        seconds,
        per_second: count as f64 / seconds,
        namespace: ns,
        requests_per_certificate: per_certificate(during.total()),
        issuance_requests_per_certificate: per_certificate(
            ISSUANCE_KINDS
                .iter()
                .map(|(verb, resource)| during.count(verb, resource))
                .sum(),
        ),
        requests: during.breakdown(),
    })
}

/// Scenario 2: an open-loop load of `rate` ServiceCertificates per second
/// for `duration`, half valid and half with a typo, each consumed by a
/// one-replica Deployment. Latencies from apply to Ready and from apply to
/// the Warning on the Pod.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub rate_per_second: u32,
    pub seconds: u64,
    pub apply_to_ready: Option<Percentiles>,
    pub apply_to_pod_warning: Option<Percentiles>,
}

pub async fn latency(env: &TestEnv, rate: u32, duration: Duration) -> anyhow::Result<Latency> {
    let client = env.client().await?;
    let ns = env.create_namespace("bench-latency").await?;
    let mut services = Services::start(env, &ns, 1).await;
    let issuer = certflow_testenv::unique_name("bench-ca");
    let policy = IssuerPolicy {
        allowed_dns_names: vec!["*.{namespace}.svc".into()],
        ..IssuerPolicy::default()
    };
    create_generated_ca(&client, &issuer, Some(policy)).await?;
    let total = (u64::from(rate) * duration.as_secs()) as usize;

    // The consuming Deployments and their Pods exist before the load starts.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    futures::stream::iter(0..total)
        .map(|i| {
            let deployments = deployments.clone();
            async move {
                deployments
                    .create(&PostParams::default(), &deployment(&format!("app-{i}")))
                    .await
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod_of_app = poll::until(
        Duration::from_secs(600),
        Duration::from_millis(500),
        async || {
            ensure_running(&mut services)?;
            let list = pods.list(&ListParams::default()).await?;
            if list.items.len() < total {
                let created = list.items.len();
                return Ok(Look::NotYet(format!(
                    "only {created} of {total} Pods were created"
                )));
            }
            Ok(Look::Done(
                list.items
                    .iter()
                    .filter_map(|pod| Some((pod.labels().get("app")?.clone(), pod.name_any())))
                    .collect::<HashMap<String, String>>(),
            ))
        },
    )
    .await?;

    let ready = track_ready(client.clone(), &ns);
    let warnings = track_pod_warnings(client.clone(), &ns);
    let api: Api<ServiceCertificate> = Api::namespaced(client.clone(), &ns);
    let mut applied: Vec<(usize, Instant)> = Vec::with_capacity(total);
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = futures::stream::FuturesUnordered::new();
    for i in 0..total {
        ticker.tick().await;
        let name = format!("app-{i}");
        // Odd ones misspell the namespace, which the policy refuses.
        let dns = if i.is_multiple_of(2) {
            format!("app-{i}.{ns}.svc")
        } else {
            format!("app-{i}.{ns}x.svc")
        };
        let scert = ServiceCertificate::new(&name, spec(&name, &issuer, KeyAlgorithm::Ecdsa, dns));
        let api = api.clone();
        applied.push((i, Instant::now()));
        // Open loop: the next apply does not wait for this one.
        in_flight.push(async move { api.create(&PostParams::default(), &scert).await });
        while let Some(done) = futures::FutureExt::now_or_never(in_flight.next()).flatten() {
            done?;
        }
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    let valid = total.div_ceil(2);
    let result = async {
        ready
            .wait_for(valid, Duration::from_secs(300), &mut services)
            .await?;
        warnings
            .wait_for(total - valid, Duration::from_secs(300), &mut services)
            .await
    }
    .await;
    services.stop();
    result.map_err(|err| anyhow::anyhow!("{err}\n{}", services.logs()))?;

    let ready = ready.snapshot();
    let warnings = warnings.snapshot();
    let mut to_ready = Vec::new();
    let mut to_warning = Vec::new();
    for (i, at) in applied {
        let name = format!("app-{i}");
        if i.is_multiple_of(2) {
            to_ready.extend(ready.get(&name).map(|t| t.duration_since(at)));
        } else if let Some(pod) = pod_of_app.get(&name) {
            to_warning.extend(warnings.get(pod).map(|t| t.duration_since(at)));
        }
    }
    Ok(Latency {
        rate_per_second: rate,
        seconds: duration.as_secs(),
        apply_to_ready: Percentiles::of(&to_ready),
        apply_to_pod_warning: Percentiles::of(&to_warning),
    })
}

/// A one-replica Deployment `name` whose Pods mount Secret `<name>-tls`.
fn deployment(name: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "app", "image": "registry.example/app:1",
                        "volumeMounts": [{"name": "tls", "mountPath": "/etc/tls"}]}],
                    "volumes": [{"name": "tls", "secret": {"secretName": format!("{name}-tls")}}]
                }
            }
        }
    }))
    .expect("a valid Deployment")
}
