//! `certflow-bench` (`make bench`): runs the scenarios against a fresh local
//! control plane with certflow's services as separate processes, prints a
//! table and writes the results as JSON.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use certflow_api::KeyAlgorithm;
use certflow_bench::{scenarios, stats};
use clap::Parser;

/// Measure certflow: issuance throughput (burst) and latency under an
/// open-loop load, each repeated and reported as medians.
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
    /// Skip the latency scenario.
    #[arg(long)]
    no_latency: bool,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
}

#[derive(Debug, serde::Serialize)]
struct Results {
    runs: usize,
    bursts: Vec<scenarios::Burst>,
    latencies: Vec<scenarios::Latency>,
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
    let env = certflow_testenv::TestEnv::start().await?;
    let mut results = Results {
        runs: args.runs,
        bursts: Vec::new(),
        latencies: Vec::new(),
    };
    let bursts = [
        (KeyAlgorithm::Ecdsa, 1),
        (KeyAlgorithm::Ecdsa, 2),
        (KeyAlgorithm::Rsa, 1),
        (KeyAlgorithm::Rsa, 2),
    ];
    for (algorithm, signers) in bursts.into_iter().filter(|_| !args.no_burst) {
        for run in 1..=args.runs {
            let burst = scenarios::burst(&env, args.burst, algorithm, signers).await?;
            eprintln!(
                "burst {algorithm} x{signers} run {run}: {:.1} certificates/s",
                burst.per_second
            );
            results.bursts.push(burst);
        }
    }
    for run in (1..=args.runs).filter(|_| !args.no_latency) {
        let latency =
            scenarios::latency(&env, args.rate, Duration::from_secs(args.seconds)).await?;
        eprintln!("latency run {run}: {latency:?}");
        results.latencies.push(latency);
    }
    print_table(&results);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&results)?)?;
    println!("\nresults: {}", args.out.display());
    Ok(())
}

fn print_table(results: &Results) {
    println!(
        "\nBurst: {} ServiceCertificates created at once (median of {} runs)",
        results.bursts.first().map_or(0, |b| b.count),
        results.runs
    );
    println!(
        "{:<10} {:>8} {:>16} {:>10}",
        "algorithm", "signers", "certificates/s", "seconds"
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
        println!("{algorithm:<10} {signers:>8} {rate:>16.1} {secs:>10.2}");
    }
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
