//! `certflow-testenv`: runs the local control plane until interrupted, for
//! the demo, benchmarks and poking around by hand, with the bus set up for
//! the default prefix (`certflow`) so that services started with default
//! flags find their streams. With `--node`, also a local kubelet node with
//! certflow rolled out on it from `deploy/overlays/local-node` (`make demo`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

/// Run a local control plane (etcd, kube-apiserver, kube-controller-manager,
/// nats-server with JetStream) on loopback until SIGINT or SIGTERM, with the
/// NATS streams and consumers of the default bus prefix created.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Directory for state, credentials and logs; created if missing and
    /// wiped first, because a previous run's etcd data would not match the
    /// new credentials.
    #[arg(long, env = "CERTFLOW_TESTENV_DIR", default_value = ".env-state")]
    dir: PathBuf,
    /// Also start a kubelet node (as root; built by `make node-tools`) and
    /// roll certflow out on it from deploy/overlays/local-node, with the
    /// images `make images` built.
    #[arg(long)]
    node: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client::client::builder=off".into()),
        )
        .init();
    let args = Args::parse();
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)
            .with_context(|| format!("removing the old {}", args.dir.display()))?;
    }
    let dir = std::path::absolute(&args.dir)?;
    let env = certflow_testenv::TestEnv::start_in(dir.clone()).await?;
    // The setup step, before the demo's services (default flags) start:
    // they only look the streams up.
    let topology = certflow_bus::Topology::new(certflow_bus::settings::DEFAULT_PREFIX)?;
    let streams = certflow_testenv::nats::setup_bus(&env.nats_url(), &topology).await?;
    for ensured in &streams.changes {
        println!("{}: {}", ensured.what, ensured.change);
    }

    let env_file = dir.join("env.sh");
    std::fs::write(
        &env_file,
        format!(
            "export KUBECONFIG={}\nexport CERTFLOW_NATS_URL={}\nexport PATH={}:$PATH\n",
            env.kubeconfig().display(),
            env.nats_url(),
            env.tools().bin_dir.display(),
        ),
    )?;
    for (name, pid) in env.pids() {
        println!("{name} pid={pid}");
    }
    // Declared after `env`, so dropped before it: the node's kubelet
    // deregisters while the API server still runs.
    let node = if args.node {
        let node = certflow_testenv::Node::start(&env).await?;
        println!(
            "node: {} at {} (logs in {})",
            node.name(),
            node.ip(),
            node.dir().display()
        );
        let certflow = certflow_testenv::CertflowOnNode::deploy(&env, &node).await?;
        println!("certflow rolled out from {}", certflow.overlay().display());
        Some(node)
    } else {
        None
    };
    println!("kube-apiserver: {}", env.api_url());
    println!("nats: {}", env.nats_url());
    println!("logs: {}", dir.display());
    println!("ready: source {}", env_file.display());

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    println!("stopping the local control plane");
    drop(node);
    drop(env);
    Ok(())
}
