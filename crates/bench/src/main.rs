//! `certflow-bench` (`make bench`): runs the scenarios against a fresh local
//! control plane with certflow's services as separate processes, prints a
//! table and writes the results as JSON.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use certflow_api::KeyAlgorithm;
use certflow_bench::{fairness, floor, scale, scenarios, stats, storm};
use clap::Parser;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

/// Measure certflow: issuance throughput (burst), latency under an
/// open-loop load, memory and API load at scale, a renewal storm, and
/// fairness between namespaces, each repeated and reported as medians.
#[derive(Debug, Parser)]
#[command(name = "certflow-bench", version, about)]
struct Args {
    /// Runs of each scenario; medians are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// ServiceCertificates created at once in the burst scenario.
    #[arg(long, default_value_t = 1000)]
    burst: usize,
    /// ServiceCertificates per second in the latency scenario.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Seconds of load in the latency scenario.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Skip the burst scenario.
    #[arg(long)]
    no_burst: bool,
    /// Skip the floor beside the burst (the driver writing what an
    /// issuance writes, with no certflow running).
    #[arg(long)]
    no_floor: bool,
    /// Skip the latency scenario.
    #[arg(long)]
    no_latency: bool,
    /// Skip the scale scenario.
    #[arg(long)]
    no_scale: bool,
    /// Skip the renewal-storm scenario.
    #[arg(long)]
    no_storm: bool,
    /// Skip the fairness scenario.
    #[arg(long)]
    no_fairness: bool,
    /// Also run scenario 5: certflow's ECDSA burst (--burst certificates)
    /// and cert-manager's CA issuer, interleaved, on a control plane of
    /// their own (needs scripts/install-cert-manager.sh).
    #[arg(long)]
    cert_manager: bool,
    /// Run only the burst configurations with this key algorithm (ECDSA or RSA).
    #[arg(long)]
    burst_algorithm: Option<String>,
    /// Run only the burst configurations with this many signer replicas.
    #[arg(long)]
    burst_signers: Option<usize>,
    /// The watcher's --namespace-in-flight in the burst scenario, whose one
    /// namespace runs into that cap (default: the watcher's default).
    #[arg(long)]
    burst_namespace_in_flight: Option<usize>,
    /// ServiceCertificates issued in the scale scenario.
    #[arg(long, default_value_t = 10_000)]
    scale_certs: usize,
    /// Pods consuming them (Pod i mounts certificate i modulo --scale-certs).
    #[arg(long, default_value_t = 10_000)]
    scale_pods: usize,
    /// Unrelated 1 KiB Secrets in other namespaces.
    #[arg(long, default_value_t = 30_000)]
    scale_secrets: usize,
    /// Seconds of idle over which API requests are counted (twice: with and
    /// without certflow running).
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// ServiceCertificates in the renewal storm.
    #[arg(long, default_value_t = 5_000)]
    storm_certs: usize,
    /// Seconds after issuance at which the storm's certificates fall due
    /// (60 to 599; issuing all of them must take less than this).
    #[arg(long, default_value_t = 180)]
    storm_due_after: u64,
    /// Client-side Kubernetes API limit given to every certflow service in
    /// the renewal storm (`--kube-api-qps`, with an equal burst); 0: none.
    #[arg(long, default_value_t = 0)]
    storm_kube_api_qps: u32,
    /// RSA-4096 certificates (duration 1m, rotationPolicy Always) the
    /// flooding namespace creates in the fairness scenario.
    #[arg(long, default_value_t = 1000)]
    fairness_flood: usize,
    /// The watcher's --namespace-in-flight values the fairness scenario
    /// compares, each run on its own control plane; 0 is no cap.
    #[arg(long, value_delimiter = ',', default_value = "16,0")]
    fairness_in_flight: Vec<usize>,
    /// Signer replicas in the fairness scenario.
    #[arg(long, default_value_t = 1)]
    fairness_signers: usize,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
}

#[derive(Debug, serde::Serialize)]
struct Results {
    runs: usize,
    bursts: Vec<scenarios::Burst>,
    floors: Vec<floor::Floor>,
    latencies: Vec<scenarios::Latency>,
    scales: Vec<scale::Scale>,
    storms: Vec<storm::Storm>,
    fairness: Vec<fairness::Fairness>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_manager: Option<certflow_bench::cert_manager::Comparison>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_client=off".into()),
        )
        .init();
    let args = Args::parse();
    let mut results = Results {
        runs: args.runs,
        bursts: Vec::new(),
        floors: Vec::new(),
        latencies: Vec::new(),
        scales: Vec::new(),
        storms: Vec::new(),
        fairness: Vec::new(),
        cert_manager: None,
    };
    if !(args.no_burst && args.no_latency) {
        // Scenarios 1 and 2 share one control plane, each run in its own namespace.
        let env = certflow_testenv::TestEnv::start().await?;
        if !args.no_burst {
            run_bursts(&env, &args, &mut results).await?;
        }
        if !args.no_latency {
            run_latencies(&env, &args, &mut results).await?;
        }
    }
    // Scenarios 3 and 4 start a control plane per run: their objects would
    // weigh on every later run.
    for run in (1..=args.runs).filter(|_| !args.no_scale) {
        let size = scale::Size {
            certificates: args.scale_certs,
            pods: args.scale_pods,
            unrelated_secrets: args.scale_secrets,
        };
        let scale = scale::scale(size, Duration::from_secs(args.idle_seconds)).await?;
        eprintln!(
            "scale run {run}: {}",
            serde_json::to_string(&scale).unwrap_or_default()
        );
        results.scales.push(scale);
    }
    for run in (1..=args.runs).filter(|_| !args.no_storm) {
        let storm = storm::storm(
            args.storm_certs,
            Duration::from_secs(args.storm_due_after),
            args.storm_kube_api_qps,
        )
        .await?;
        eprintln!(
            "storm run {run}: {}",
            serde_json::to_string(&storm).unwrap_or_default()
        );
        results.storms.push(storm);
    }
    for run in (1..=args.runs).filter(|_| !args.no_fairness) {
        // Interleaved, so outside load falls on both alike.
        for &namespace_in_flight in &args.fairness_in_flight {
            let setup = fairness::Setup {
                flood: args.fairness_flood,
                namespace_in_flight,
                signers: args.fairness_signers,
            };
            let fairness = fairness::fairness(setup).await?;
            eprintln!(
                "fairness run {run}: {}",
                serde_json::to_string(&fairness).unwrap_or_default()
            );
            results.fairness.push(fairness);
        }
    }
    if args.cert_manager {
        let comparison = certflow_bench::cert_manager::compare(args.burst, args.runs).await?;
        results.cert_manager = Some(comparison);
    }
    print_table(&results);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)?;
    println!("\nresults: {}", args.out.display());
    Ok(())
}

async fn run_bursts(
    env: &certflow_testenv::TestEnv,
    args: &Args,
    results: &mut Results,
) -> anyhow::Result<()> {
    let bursts = [
        (KeyAlgorithm::Ecdsa, 1),
        (KeyAlgorithm::Ecdsa, 2),
        (KeyAlgorithm::Rsa, 1),
        (KeyAlgorithm::Rsa, 2),
    ];
    let selected = bursts.into_iter().filter(|(algorithm, signers)| {
        let algorithm_wanted = args
            .burst_algorithm
            .as_ref()
            .is_none_or(|wanted| wanted.eq_ignore_ascii_case(algorithm.as_str()));
        algorithm_wanted && args.burst_signers.is_none_or(|wanted| wanted == *signers)
    });
    let cap = args
        .burst_namespace_in_flight
        .map(|cap| format!("--namespace-in-flight={cap}"));
    let watcher_args: Vec<&str> = cap.iter().map(String::as_str).collect();
    for (index, (algorithm, signers)) in selected.enumerate() {
        for run in 1..=args.runs {
            let burst = scenarios::burst_with_watcher_args(
                env,
                args.burst,
                algorithm,
                signers,
                &watcher_args,
            )
            .await?;
            eprintln!(
                "burst {algorithm} x{signers} run {run}: {:.1} certificates/s, {:.2} requests per \
                 certificate ({:.2} of the issuance's kinds)",
                burst.per_second,
                burst.requests_per_certificate,
                burst.issuance_requests_per_certificate
            );
            // The floor follows the first configuration's runs one by one,
            // so outside load falls on both alike.
            if index == 0 && !args.no_floor {
                let secrets: Api<Secret> = Api::namespaced(env.client().await?, &burst.namespace);
                let issued = secrets.get("burst-0-tls").await?;
                let floor = floor::floor(env, args.burst, &issued).await?;
                eprintln!(
                    "floor run {run}: {:.1} certificates' writes/s, {:.2} requests per certificate",
                    floor.per_second, floor.requests_per_certificate
                );
                results.floors.push(floor);
            }
            results.bursts.push(burst);
        }
    }
    Ok(())
}

async fn run_latencies(
    env: &certflow_testenv::TestEnv,
    args: &Args,
    results: &mut Results,
) -> anyhow::Result<()> {
    for run in 1..=args.runs {
        let latency = scenarios::latency(env, args.rate, Duration::from_secs(args.seconds)).await?;
        eprintln!("latency run {run}: {latency:?}");
        results.latencies.push(latency);
    }
    Ok(())
}

fn print_table(results: &Results) {
    if !results.bursts.is_empty() {
        print_bursts(results);
    }
    if !results.latencies.is_empty() {
        print_latencies(results);
    }
    if !results.scales.is_empty() {
        print_scales(&results.scales);
    }
    if !results.storms.is_empty() {
        print_storms(&results.storms);
    }
    if !results.fairness.is_empty() {
        print_fairness(&results.fairness);
    }
    if let Some(comparison) = &results.cert_manager {
        comparison.print_table();
    }
}

fn print_bursts(results: &Results) {
    println!(
        "\nBurst: {} ServiceCertificates created at once (median of {} runs)",
        results.bursts.first().map_or(0, |b| b.count),
        results.runs
    );
    if let Some(burst) = results.bursts.first()
        && !burst.watcher_args.is_empty()
    {
        println!("watcher: {}", burst.watcher_args.join(" "));
    }
    let floors = &results.floors;
    let floor = stats::median(&floors.iter().map(|f| f.per_second).collect::<Vec<_>>());
    println!(
        "{:<10} {:>8} {:>16} {:>10} {:>10} {:>14} {:>9}",
        "algorithm", "signers", "certificates/s", "seconds", "req/cert", "issuance req", "of floor"
    );
    let mut keys: Vec<(String, usize)> = results
        .bursts
        .iter()
        .map(|b| (b.algorithm.clone(), b.signers))
        .collect();
    keys.dedup();
    for (algorithm, signers) in keys {
        let runs: Vec<&scenarios::Burst> = results
            .bursts
            .iter()
            .filter(|b| b.algorithm == algorithm && b.signers == signers)
            .collect();
        let rate = stats::median(&runs.iter().map(|b| b.per_second).collect::<Vec<_>>())
            .unwrap_or_default();
        let secs =
            stats::median(&runs.iter().map(|b| b.seconds).collect::<Vec<_>>()).unwrap_or_default();
        let requests = median_of(&runs, |b| b.requests_per_certificate);
        let issuance = median_of(&runs, |b| b.issuance_requests_per_certificate);
        let share = floor.map_or(f64::NAN, |floor| rate / floor * 100.0);
        println!(
            "{algorithm:<10} {signers:>8} {rate:>16.1} {secs:>10.2} {requests:>10.2} \
             {issuance:>14.2} {share:>8.0}%"
        );
    }
    if let Some(rate) = floor {
        let requests = median_of(floors, |f| f.requests_per_certificate);
        let secs = median_of(floors, |f| f.seconds);
        println!(
            "{:<19} {rate:>16.1} {secs:>10.2} {requests:>10.2}   (the driver's own \
             ServiceCertificate, Secret and status writes, no certflow; {} runs)",
            "floor",
            floors.len()
        );
    }
    println!(
        "req/cert: every request the API server served during the burst, per certificate; \
         issuance req: of those, the kinds the signer uses ({})",
        scenarios::ISSUANCE_KINDS
            .iter()
            .map(|(verb, resource)| format!("{verb} {resource}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn print_latencies(results: &Results) {
    println!(
        "\nLatency: open loop, half valid, half with a typo (median of {} runs, milliseconds)",
        results.runs
    );
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>8}",
        "", "p50", "p90", "p99", "max"
    );
    for (label, pick) in [("apply -> Secret ready", 0), ("apply -> Warning on Pod", 1)] {
        let of = |f: fn(&stats::Percentiles) -> f64| {
            let values: Vec<f64> = results
                .latencies
                .iter()
                .filter_map(|l| {
                    if pick == 0 {
                        l.apply_to_ready
                    } else {
                        l.apply_to_pod_warning
                    }
                })
                .map(|p| f(&p))
                .collect();
            stats::median(&values).unwrap_or(f64::NAN)
        };
        println!(
            "{label:<24} {:>8.0} {:>8.0} {:>8.0} {:>8.0}",
            of(|p| p.p50_ms),
            of(|p| p.p90_ms),
            of(|p| p.p99_ms),
            of(|p| p.max_ms)
        );
    }
}

/// A table row: its label and the figure it shows from one run.
type Row<T> = (&'static str, fn(&T) -> f64);

/// The median of `value` over `runs`.
fn median_of<T>(runs: &[T], value: impl Fn(&T) -> f64) -> f64 {
    stats::median(&runs.iter().map(value).collect::<Vec<_>>()).unwrap_or(f64::NAN)
}

fn print_scales(scales: &[scale::Scale]) {
    let size = scales[0].size;
    println!(
        "\nScale: {} certificates, {} Pods, {} unrelated Secrets (median of {} runs)",
        size.certificates,
        size.pods,
        size.unrelated_secrets,
        scales.len()
    );
    let mut services: Vec<&String> = scales.iter().flat_map(|s| s.peak_rss_mib.keys()).collect();
    services.sort();
    services.dedup();
    for service in services {
        let rss = median_of(scales, |s| {
            s.peak_rss_mib.get(service).copied().unwrap_or(f64::NAN)
        });
        println!("{:<40} {rss:>10.1} MiB", format!("peak RSS {service}"));
    }
    for kind in scales[0].watcher_cache.keys() {
        let json = median_of(scales, |s| s.watcher_cache[kind].json_mib);
        let managed = median_of(scales, |s| s.watcher_cache[kind].managed_fields_mib);
        println!(
            "{:<40} {json:>10.1} MiB JSON, {managed:.1} MiB of it managedFields",
            format!("watcher cache: {kind}")
        );
    }
    let rows: [Row<scale::Scale>; 7] = [
        ("issue all (s)", |s| s.issue_seconds),
        ("watcher cold start to first publish (s)", |s| {
            s.cold_start_seconds
        }),
        ("idle reads/min, certflow (subtraction)", |s| {
            s.certflow_reads_per_minute
        }),
        ("idle writes/min, certflow (subtraction)", |s| {
            s.certflow_writes_per_minute
        }),
        ("idle writes/min to certflow's kinds", |s| {
            s.idle_with_certflow.writes_to_certflow_kinds * 60.0 / s.idle_with_certflow.seconds
        }),
        ("idle writes/min, everything", |s| {
            s.idle_with_certflow.writes * 60.0 / s.idle_with_certflow.seconds
        }),
        ("idle writes/min, without certflow", |s| {
            s.idle_without_certflow.writes * 60.0 / s.idle_without_certflow.seconds
        }),
    ];
    for (label, value) in rows {
        println!("{label:<40} {:>10.2}", median_of(scales, value));
    }
}

fn print_storms(storms: &[storm::Storm]) {
    println!(
        "\nRenewal storm: {} certificates due together (median of {} runs)",
        storms[0].certificates,
        storms.len()
    );
    let rows: [Row<storm::Storm>; 8] = [
        ("spread of due times (s)", |s| s.due_spread_seconds),
        ("first due -> all renewed (s)", |s| s.completion_seconds),
        ("last due -> all renewed (s)", |s| s.after_last_due_seconds),
        ("peak API requests/s (all clients)", |s| {
            s.peak_requests_per_second
        }),
        ("peak API writes/s (all clients)", |s| {
            s.peak_writes_per_second
        }),
        ("mean API requests/s during the storm", |s| {
            s.mean_requests_per_second
        }),
        ("API requests per renewal (all clients)", |s| {
            s.requests_per_renewal
        }),
        ("API writes per renewal (all clients)", |s| {
            s.writes_per_renewal
        }),
    ];
    for (label, value) in rows {
        println!("{label:<40} {:>10.1}", median_of(storms, value));
    }
    match storms[0].client_qps_per_service {
        0 => println!("client rate limit per certflow service: none"),
        qps => println!("client rate limit per certflow service: {qps} requests/s, burst {qps}"),
    }
}

fn print_fairness(runs: &[fairness::Fairness]) {
    println!(
        "\nFairness: {} RSA-4096 certificates (duration 1m) in one namespace, then one ECDSA \
         certificate in another; {} signer(s); medians, seconds",
        runs[0].flood, runs[0].signers,
    );
    println!(
        "{:<22} {:>5} {:>12} {:>9} {:>10} {:>6} {:>9} {:>6}",
        "--namespace-in-flight",
        "runs",
        "quiet alone",
        "quiet",
        "in flight",
        "held",
        "issued/s",
        "load"
    );
    let mut caps: Vec<usize> = runs.iter().map(|r| r.namespace_in_flight).collect();
    caps.sort_unstable();
    caps.dedup();
    for cap in caps {
        let of_cap: Vec<&fairness::Fairness> = runs
            .iter()
            .filter(|r| r.namespace_in_flight == cap)
            .collect();
        let median = |value: fn(&fairness::Fairness) -> f64| median_of(&of_cap, |run| value(run));
        let label = match cap {
            0 => "0 (no cap)".to_owned(),
            cap => cap.to_string(),
        };
        println!(
            "{label:<22} {:>5} {:>12.2} {:>9.2} {:>10.0} {:>6.0} {:>9.2} {:>6.1}",
            of_cap.len(),
            median(|r| r.quiet_alone_seconds),
            median(|r| r.quiet_seconds),
            median(|r| r.flood_in_flight),
            median(|r| r.flood_held),
            median(|r| r.issued_per_second),
            median(|r| r.load_average),
        );
    }
}
