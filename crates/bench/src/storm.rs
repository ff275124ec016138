//! Scenario 4, renewal storm: many certificates issued together with a
//! lifetime such that all fall due for renewal within the same minute; then
//! how long renewing all of them takes and the API request rate meanwhile.
//! Uses only the API (`spec.duration`, `spec.renewBefore`): renewal is due
//! at notAfter - renewBefore, so certificates issued within a minute of each
//! other fall due within a minute of each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use certflow_api::{KeyAlgorithm, ServiceCertificate};
use certflow_e2e::fixtures::create_generated_ca;
use certflow_e2e::services::Services;
use certflow_testenv::TestEnv;
use futures::{StreamExt as _, TryStreamExt as _};
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, PostParams};

use crate::apiserver::{Counted, RequestCounts};
use crate::scenarios::{Tracker, spec, track_ready};

/// The certificates' lifetime; renewal comes `due_after` into it.
const LIFETIME: Duration = Duration::from_secs(600);

const CREATE_PARALLELISM: usize = 32;

/// How often the API server's request counters are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, serde::Serialize)]
pub struct Storm {
    pub certificates: usize,
    /// Seconds between the first and the last certificate falling due.
    pub due_spread_seconds: f64,
    /// Seconds from the first certificate falling due until every one
    /// holds a new certificate (new serial, Ready).
    pub completion_seconds: f64,
    /// Seconds from the last certificate falling due until the last renewal.
    pub after_last_due_seconds: f64,
    /// Highest one-second request rate the API server served during the
    /// storm (every client; the sampler's own `/metrics` reads excluded).
    pub peak_requests_per_second: f64,
    pub peak_writes_per_second: f64,
    /// Requests per second averaged over the storm.
    pub mean_requests_per_second: f64,
    /// The client-side limit each certflow service ran with
    /// (`--kube-api-qps`, burst equal); 0 for none.
    pub client_qps_per_service: u32,
    /// Every request the API server served from the first certificate
    /// falling due until the last renewal, per renewed certificate.
    pub requests_per_renewal: f64,
    pub writes_per_renewal: f64,
    /// Those requests by verb and resource.
    pub requests_during_storm: Vec<Counted>,
}

/// Runs scenario 4 once against a control plane of its own.
pub async fn storm(count: usize, due_after: Duration, client_qps: u32) -> anyhow::Result<Storm> {
    anyhow::ensure!(
        due_after >= Duration::from_secs(60) && due_after < LIFETIME,
        "renewal must fall due between 60 s and {} s after issuance",
        LIFETIME.as_secs()
    );
    let env = TestEnv::start().await?;
    let dir = env.dir().to_owned();
    let result = run(&env, count, due_after, client_qps).await;
    drop(env);
    let _ = std::fs::remove_dir_all(dir);
    result
}

async fn run(
    env: &TestEnv,
    count: usize,
    due_after: Duration,
    client_qps: u32,
) -> anyhow::Result<Storm> {
    let client = env.client().await?;
    let ns = env.create_namespace("bench-storm").await?;
    let limit = [
        format!("--kube-api-qps={client_qps}"),
        format!("--kube-api-burst={client_qps}"),
    ];
    let limit: Vec<&str> = limit.iter().map(String::as_str).collect();
    let mut services = Services::start_with_common_args(env, &ns, 1, &limit).await;
    let issuer = certflow_testenv::unique_name("bench-ca");
    create_generated_ca(&client, &issuer, None).await?;
    let scerts: Api<ServiceCertificate> = Api::namespaced(client.clone(), &ns);

    let ready = track_ready(client.clone(), &ns);
    let renew_before = format!("{}s", (LIFETIME - due_after).as_secs());
    futures::stream::iter(0..count)
        .map(|i| {
            let scerts = scerts.clone();
            let name = format!("storm-{i}");
            let mut spec = spec(
                &name,
                &issuer,
                KeyAlgorithm::Ecdsa,
                format!("{name}.{ns}.svc"),
            );
            spec.duration = Some(format!("{}s", LIFETIME.as_secs()));
            spec.renew_before = Some(renew_before.clone());
            async move {
                scerts
                    .create(
                        &PostParams::default(),
                        &ServiceCertificate::new(&name, spec),
                    )
                    .await
            }
        })
        .buffer_unordered(CREATE_PARALLELISM)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    ready
        .wait_for(count, Duration::from_secs(900), &mut services)
        .await?;
    drop(ready);

    // The serial and renewal time each certificate was first issued with.
    let mut first = HashMap::new();
    for scert in scerts.list(&ListParams::default()).await? {
        let status = scert.status.clone().unwrap_or_default();
        let due = status
            .renewal_time
            .map(|t| SystemTime::from(t.0))
            .ok_or_else(|| anyhow::anyhow!("{} has no renewal time", scert.name_any()))?;
        first.insert(
            scert.name_any(),
            (status.serial_number.unwrap_or_default(), due),
        );
    }
    let first_due = first
        .values()
        .map(|(_, due)| *due)
        .min()
        .unwrap_or(SystemTime::now());
    let last_due = first
        .values()
        .map(|(_, due)| *due)
        .max()
        .unwrap_or(SystemTime::now());
    anyhow::ensure!(
        SystemTime::now() < first_due,
        "issuing took longer than --storm-due-after: the storm started before it could be observed"
    );
    eprintln!(
        "storm: {count} certificates due within {:.0} s, the first in {:.0} s",
        seconds_between(first_due, last_due),
        seconds_between(SystemTime::now(), first_due)
    );

    let clock = Clock::now();
    let samples = sample_requests(client.clone());
    let serials: HashMap<String, String> = first
        .iter()
        .map(|(name, (serial, _))| (name.clone(), serial.clone()))
        .collect();
    let renewed = Tracker::watch(scerts.clone(), move |scert: &ServiceCertificate| {
        let name = scert.name_any();
        let serial = scert.status.as_ref()?.serial_number.as_ref()?;
        let is_new = serials.get(&name).is_some_and(|old| old != serial);
        (is_new && scert.ready_condition().is_some_and(|c| c.is_true())).then_some(name)
    });
    let until_due = last_due
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let result = renewed
        .wait_for(count, until_due + Duration::from_secs(900), &mut services)
        .await;
    services.stop();
    samples.task.abort();
    result?;

    let last_renewed = renewed
        .snapshot()
        .values()
        .max()
        .map(|at| clock.system_time(*at))
        .unwrap_or(last_due);
    let samples = samples.taken.lock().expect("lock").clone();
    let in_storm: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= first_due && s.at <= last_renewed + SAMPLE_EVERY)
        .collect();
    let peak = |rate: fn(&Sample) -> f64| in_storm.iter().map(|s| rate(s)).fold(0.0, f64::max);
    let mean =
        in_storm.iter().map(|s| s.requests_per_second).sum::<f64>() / in_storm.len().max(1) as f64;
    let before_storm = samples.iter().rev().find(|s| s.at < first_due);
    let during = match (before_storm, in_storm.last()) {
        (Some(start), Some(end)) => end.counts.since(&start.counts),
        _ => RequestCounts::default(),
    }
    .without_resource("/metrics");
    Ok(Storm {
        certificates: count,
        due_spread_seconds: seconds_between(first_due, last_due),
        completion_seconds: seconds_between(first_due, last_renewed),
        after_last_due_seconds: seconds_between(last_due, last_renewed),
        peak_requests_per_second: peak(|s| s.requests_per_second),
        peak_writes_per_second: peak(|s| s.writes_per_second),
        mean_requests_per_second: mean,
        client_qps_per_service: client_qps,
        requests_per_renewal: during.total() / count.max(1) as f64,
        writes_per_renewal: during.writes() / count.max(1) as f64,
        requests_during_storm: during.breakdown(),
    })
}

/// Converts the tracker's monotonic instants to wall-clock time, which the
/// renewal times in status are written in.
struct Clock {
    instant: Instant,
    system: SystemTime,
}

impl Clock {
    fn now() -> Self {
        Self {
            instant: Instant::now(),
            system: SystemTime::now(),
        }
    }

    fn system_time(&self, at: Instant) -> SystemTime {
        self.system + at.saturating_duration_since(self.instant)
    }
}

/// The API server's request rate over one sampling interval, ending `at`.
#[derive(Debug, Clone)]
struct Sample {
    at: SystemTime,
    requests_per_second: f64,
    writes_per_second: f64,
    /// The API server's counters at `at`.
    counts: RequestCounts,
}

/// Samples taken so far by a background task.
struct Samples {
    taken: Arc<Mutex<Vec<Sample>>>,
    task: tokio::task::JoinHandle<()>,
}

fn sample_requests(client: kube::Client) -> Samples {
    let taken: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let record = taken.clone();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SAMPLE_EVERY);
        let mut previous: Option<(Instant, RequestCounts)> = None;
        loop {
            ticker.tick().await;
            let Ok(counts) = RequestCounts::fetch(&client).await else {
                continue;
            };
            let now = Instant::now();
            if let Some((then, before)) = &previous {
                let delta = counts.since(before).without_resource("/metrics");
                let seconds = now.duration_since(*then).as_secs_f64();
                record.lock().expect("lock").push(Sample {
                    at: SystemTime::now(),
                    requests_per_second: delta.total() / seconds,
                    writes_per_second: delta.writes() / seconds,
                    counts: counts.clone(),
                });
            }
            previous = Some((now, counts));
        }
    });
    Samples { taken, task }
}

fn seconds_between(earlier: SystemTime, later: SystemTime) -> f64 {
    match later.duration_since(earlier) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}
