//! Chaos: while valid ServiceCertificates are issued and broken ones are
//! reported, the watcher, both signers, the reporter, each of the three
//! servers of the NATS JetStream cluster (streams replicated on all three,
//! as deploy/ runs them) and kube-apiserver are killed with SIGKILL at
//! random moments, several times each, and restarted; a NATS server comes
//! back without its store one time in three. Afterwards every promise holds
//! (see [`Workload::problems`]), no service exited on its own, and no log
//! holds a panic.
//!
//! The schedule (which process, when, for how long) comes from a seed, so a
//! failing run can be replayed; thread timing still varies. `make test` runs
//! the small default; `make chaos` runs the full size (500 valid, 100
//! broken, 30 kills). Environment variables: `CERTFLOW_CHAOS_SEED`,
//! `CERTFLOW_CHAOS_VALID`, `CERTFLOW_CHAOS_BROKEN`, `CERTFLOW_CHAOS_KILLS`.
//! Results of full runs are in docs/reliability.md.

use std::time::{Duration, Instant};

use certflow_e2e::services::Services;
use certflow_e2e::workload::Workload;
use certflow_testenv::{NatsCluster, TestEnv};
use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};

/// How long every promise has to hold after the last restart: longer than
/// the signer's first retry delays and the watcher's failure retry in tests.
const SETTLE: Duration = Duration::from_secs(240);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    Watcher,
    Signer(usize),
    Reporter,
    /// One server of the NATS cluster; one at a time, so the other two
    /// keep the quorum.
    Nats(usize),
    ApiServer,
}

const VICTIMS: [Victim; 8] = [
    Victim::Watcher,
    Victim::Signer(0),
    Victim::Signer(1),
    Victim::Reporter,
    Victim::Nats(0),
    Victim::Nats(1),
    Victim::Nats(2),
    Victim::ApiServer,
];

/// One kill: wait `after`, SIGKILL `victim`, leave it down for `down`;
/// with `wipe`, a NATS server comes back without its store, as when its
/// volume is lost, and copies every stream back from the other two.
#[derive(Debug)]
struct Kill {
    victim: Victim,
    after: Duration,
    down: Duration,
    wipe: bool,
}

/// `kills` kills spread evenly over the victims, in a seeded random order
/// with seeded random pauses and downtimes.
fn schedule(rng: &mut StdRng, kills: usize) -> Vec<Kill> {
    let mut victims: Vec<Victim> = VICTIMS.iter().copied().cycle().take(kills).collect();
    victims.shuffle(rng);
    victims
        .into_iter()
        .map(|victim| Kill {
            victim,
            after: Duration::from_millis(rng.random_range(200..3_000)),
            down: Duration::from_millis(rng.random_range(200..5_000)),
            wipe: matches!(victim, Victim::Nats(_)) && rng.random_ratio(1, 3),
        })
        .collect()
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{name}={value} is not a whole number"))
        })
        .unwrap_or(default)
}

/// What the test kills: the control plane, the NATS cluster and certflow.
struct Victims {
    env: TestEnv,
    cluster: NatsCluster,
    services: Services,
}

fn kill(victims: &mut Victims, victim: Victim) {
    let Victims {
        env,
        cluster,
        services,
    } = victims;
    let service = match victim {
        Victim::Watcher => services.watcher.as_mut(),
        Victim::Signer(n) => services.signers.get_mut(n),
        Victim::Reporter => services.reporters.first_mut(),
        Victim::Nats(node) => return cluster.kill(node),
        Victim::ApiServer => return env.kill_apiserver(),
    };
    service.expect("the victim exists").process.kill();
}

async fn restart(victims: &mut Victims, kill: &Kill) {
    let Victims {
        env,
        cluster,
        services,
    } = victims;
    let process = match kill.victim {
        Victim::Watcher => services.watcher.as_mut().map(|s| &mut s.process),
        Victim::Signer(n) => services.signers.get_mut(n).map(|s| &mut s.process),
        Victim::Reporter => services.reporters.first_mut().map(|s| &mut s.process),
        Victim::Nats(node) => {
            let restarted = if kill.wipe {
                cluster.restart_with_empty_storage(node).await
            } else {
                cluster.restart(node).await
            };
            return restarted.unwrap_or_else(|err| panic!("NATS server {node} restarts: {err}"));
        }
        Victim::ApiServer => {
            return env
                .restart_apiserver()
                .await
                .expect("kube-apiserver restarts");
        }
    };
    process
        .expect("the victim exists")
        .restart()
        .expect("the service restarts");
}

/// Lines of every service log that show a panic.
fn panics(services: &Services) -> Vec<String> {
    services
        .all()
        .flat_map(|service| {
            let log = std::fs::read_to_string(service.process.log_path()).unwrap_or_default();
            let name = service.process.name().to_owned();
            log.lines()
                .filter(|line| line.contains("panicked at"))
                .map(|line| format!("{name}: {line}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_certificate_ends_issued_or_reported_while_every_component_is_killed_and_restarted() {
    let seed = setting("CERTFLOW_CHAOS_SEED", rand::rng().random());
    let valid = setting("CERTFLOW_CHAOS_VALID", 60);
    let broken = setting("CERTFLOW_CHAOS_BROKEN", 12);
    let kills = setting("CERTFLOW_CHAOS_KILLS", 12);
    let replay = format!(
        "replay: CERTFLOW_CHAOS_SEED={seed} CERTFLOW_CHAOS_VALID={valid} \
         CERTFLOW_CHAOS_BROKEN={broken} CERTFLOW_CHAOS_KILLS={kills} \
         cargo test -p certflow-e2e --test chaos"
    );
    eprintln!("{replay}");
    let mut rng = StdRng::seed_from_u64(seed);
    let plan = schedule(&mut rng, usize::try_from(kills).expect("kills fit usize"));

    let env = TestEnv::start()
        .await
        .expect("a control plane of the test's own");
    let namespace = env.create_namespace("chaos").await.expect("namespace");
    let client = env.client().await.expect("client");
    let cluster = NatsCluster::start_beside(&env)
        .await
        .unwrap_or_else(|err| panic!("the NATS cluster starts: {err}"));
    let services = Services::launch_on(
        &env,
        &cluster.client_urls(),
        &namespace,
        2,
        &[],
        &["--bus-replicas=3"],
    )
    .await;
    let mut workload = Workload::create_authority(client, &namespace).await;

    // One broken certificate after every `valid / broken` valid ones, paced
    // so that creation spans the whole fault schedule.
    let every = (valid / broken.max(1)).max(1);
    let window: Duration = plan.iter().map(|kill| kill.after + kill.down).sum();
    let pace = window / u32::try_from(valid + broken).unwrap_or(u32::MAX).max(1);
    let creating = tokio::spawn(async move {
        let mut made_broken = 0;
        for n in 0..valid {
            tokio::time::sleep(pace).await;
            workload.add_valid(&format!("valid-{n}")).await;
            if (n + 1) % every == 0 && made_broken < broken {
                workload.add_broken(&format!("broken-{made_broken}")).await;
                made_broken += 1;
            }
        }
        for n in made_broken..broken {
            workload.add_broken(&format!("broken-{n}")).await;
        }
        workload
    });

    let mut victims = Victims {
        env,
        cluster,
        services,
    };
    let started = Instant::now();
    for (n, step) in plan.iter().enumerate() {
        tokio::time::sleep(step.after).await;
        eprintln!(
            "{:>6.1}s kill {}/{}: {:?} for {:?}{}",
            started.elapsed().as_secs_f64(),
            n + 1,
            plan.len(),
            step.victim,
            step.down,
            if step.wipe {
                ", back without its store"
            } else {
                ""
            }
        );
        kill(&mut victims, step.victim);
        tokio::time::sleep(step.down).await;
        restart(&mut victims, step).await;
        let exited = victims.services.exited();
        assert!(
            exited.is_empty(),
            "{exited:?} exited on their own ({replay})\n{}",
            victims.services.logs()
        );
    }
    let services = &mut victims.services;
    let workload = creating.await.expect("the workload is created");
    eprintln!(
        "{:>6.1}s faults over; {} valid and {} broken created",
        started.elapsed().as_secs_f64(),
        workload.valid().len(),
        workload.broken().len()
    );

    let problems = workload.settle(SETTLE).await;
    eprintln!(
        "{:>6.1}s settled with {} problems",
        started.elapsed().as_secs_f64(),
        problems.len()
    );
    assert!(
        problems.is_empty(),
        "{} promises broken {SETTLE:?} after the last fault ({replay}): {problems:#?}\n{}",
        problems.len(),
        services.logs()
    );
    let exited = services.exited();
    assert!(exited.is_empty(), "{exited:?} exited ({replay})");
    let panics = panics(services);
    assert!(panics.is_empty(), "panics ({replay}): {panics:#?}");
    services.save_metrics().await;
    services.stop();
}
