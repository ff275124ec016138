//! `deploy/` proven against the real local control plane: the kustomize base
//! applies with server-side apply and meets the "restricted" Pod Security
//! Standard; the three services issue a certificate and report a typo while
//! running with exactly the base's ServiceAccounts (TokenRequest tokens) and
//! NATS users, the reporter also checking a Report API caller; what each
//! must not do is refused by the API server and by NATS; the TLS Component's
//! settings connect a service over TLS. The Deployments, docker-compose.yml,
//! the Dockerfile and the KEDA ScaledObject are checked against what the
//! binaries and the running bus accept, and each probe against what its
//! binary answers with NATS unreachable (only readiness fails).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use certflow_api::{IssuerRef, ServiceCertificate, ServiceCertificateSpec};
use certflow_e2e::fixtures::inspect_secret;
use certflow_e2e::manifests::{
    RBAC_KINDS, can_i, kind, list, name, parse_yaml_documents, render, repo_root,
};
use certflow_e2e::report_api;
use certflow_e2e::services::binary;
use certflow_e2e::workload::consuming_pod;
use certflow_e2e::{eventually, run, run_ok};
use certflow_proto::v1::report_request::Regarding;
use certflow_proto::v1::{EventType, ReportRequest, ServiceCertificateRef};
use certflow_testenv::process::{ManagedProcess, free_ports};
use certflow_testenv::{TestEnv, unique_name};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::Value;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The namespace deploy/base installs into; the signer keeps CA key pairs here.
const NAMESPACE: &str = "certflow-system";
const WAIT: Duration = Duration::from_secs(90);
/// Field manager of this test's applies.
const MANAGER: &str = "certflow-deploy-e2e";

fn find<'a>(objects: &'a [Value], wanted_kind: &str, wanted_name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| kind(o) == wanted_kind && name(o) == wanted_name)
        .unwrap_or_else(|| panic!("the rendering has no {wanted_kind} {wanted_name}"))
}

/// Applies, for real and once per test binary, the Namespace, ServiceAccounts
/// and RBAC of the rendered base, and returns the whole rendering. Server-side
/// apply is idempotent, so a re-run against the same cluster changes nothing.
fn install_base_rbac(env: &TestEnv) -> &'static [Value] {
    static RENDERED: OnceLock<Vec<Value>> = OnceLock::new();
    RENDERED.get_or_init(|| {
        let objects = render(env, "deploy/base");
        let identity: Vec<&Value> = objects
            .iter()
            .filter(|o| RBAC_KINDS.contains(&kind(o)))
            .collect();
        run_ok(
            env.kubectl().args([
                "apply",
                "--server-side",
                "--field-manager",
                MANAGER,
                "-f",
                "-",
            ]),
            &list(&identity),
        );
        objects
    })
}

/// The files of the rendered NATS ConfigMap (`nats.conf`, `auth.conf`,
/// `tls.conf`, `cluster-tls.conf`) by name.
fn nats_config_files(objects: &[Value]) -> BTreeMap<String, String> {
    let config_map = objects
        .iter()
        .find(|o| kind(o) == "ConfigMap" && name(o).starts_with("certflow-nats-config"))
        .expect("deploy/base renders the NATS ConfigMap");
    serde_json::from_value(config_map["data"].clone()).expect("string data")
}

// ---------------------------------------------------------------------------
// The manifests themselves.

#[tokio::test]
async fn the_rendered_base_applies_with_server_side_apply_and_meets_the_restricted_pod_security_standard()
 {
    let env = certflow_testenv::shared();
    let objects = install_base_rbac(env);

    // Workloads are applied as a server-side dry run: admission (schemas,
    // Pod Security) runs in full, but no Pods pile up in the shared cluster.
    let all: Vec<&Value> = objects.iter().collect();
    let output = run(
        env.kubectl().args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager",
            MANAGER,
            "-f",
            "-",
        ]),
        &list(&all),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the rendered base does not apply:\n{stdout}\n{stderr}"
    );
    // Pod Security warns about pod templates that break "restricted"; no
    // other warning (deprecated APIs, duplicate env names...) is expected either.
    assert!(
        !stderr.contains("Warning"),
        "applying the base printed warnings:\n{stderr}"
    );
    for object in objects {
        let applied = format!("/{} serverside-applied", name(object));
        assert!(
            stdout.contains(&applied),
            "{} {} was not applied:\n{stdout}",
            kind(object),
            name(object)
        );
    }

    // The check above can fail: the namespace really enforces "restricted",
    // which a Pod without any security context breaks.
    let unhardened = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "unhardened-probe", "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    });
    let refused = run(
        env.kubectl()
            .args(["apply", "--server-side", "--dry-run=server", "-f", "-"]),
        &unhardened.to_string(),
    );
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("violates PodSecurity"),
        "{NAMESPACE} must enforce the restricted Pod Security Standard: {refused:?}"
    );
}

#[tokio::test]
async fn every_generated_crd_is_part_of_the_base() {
    let env = certflow_testenv::shared();
    let objects = install_base_rbac(env);
    let rendered: BTreeSet<&str> = objects
        .iter()
        .filter(|o| kind(o) == "CustomResourceDefinition")
        .map(name)
        .collect();
    let crd_dir = repo_root().join("deploy/crds");
    let mut generated = BTreeSet::new();
    for entry in std::fs::read_dir(&crd_dir).expect("deploy/crds") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read CRD");
            for crd in parse_yaml_documents(&text) {
                generated.insert(name(&crd).to_owned());
            }
        }
    }
    assert!(!generated.is_empty(), "no CRDs in {}", crd_dir.display());
    let rendered: BTreeSet<String> = rendered.into_iter().map(str::to_owned).collect();
    assert_eq!(
        rendered, generated,
        "deploy/crds/Kustomization must list every generated CRD"
    );
}

#[tokio::test]
async fn the_nats_cluster_configuration_is_valid_and_every_variable_it_reads_is_set() {
    let env = certflow_testenv::shared();
    let objects = install_base_rbac(env);
    let files = nats_config_files(objects);
    let statefulset = find(objects, "StatefulSet", "certflow-nats");
    let container = &statefulset["spec"]["template"]["spec"]["containers"][0];
    let set: BTreeSet<String> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect();
    let used: BTreeSet<String> = files.values().flat_map(|text| variables(text)).collect();
    assert_eq!(
        used, set,
        "the NATS container must set exactly the variables its configuration reads"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    for (file, text) in &files {
        std::fs::write(dir.path().join(file), text).expect("write config");
    }
    let mut check = std::process::Command::new(&env.tools().nats_server);
    check.args(["-t", "-c"]).arg(dir.path().join("nats.conf"));
    for variable in &set {
        check.env(variable, "x");
    }
    let output = run(&mut check, "");
    assert!(
        output.status.success(),
        "nats-server rejects deploy/base/nats/nats.conf: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `$NAME` references outside quotes and comments: NATS configuration
/// variables, read from the environment when not defined in the file.
fn variables(config: &str) -> BTreeSet<String> {
    config
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(|line| {
            line.split(|c: char| c.is_whitespace() || c == ':' || c == '=')
                .filter_map(|token| token.strip_prefix('$'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|name| !name.is_empty() && !name.contains('"'))
        .collect()
}

// ---------------------------------------------------------------------------
// Flags and environment against the binaries.

/// The long flags and environment variables a binary's `--help` names.
#[derive(Debug)]
struct Accepted {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
    /// Every word of `--help`, where a subcommand (`setup-bus`) is listed.
    words: BTreeSet<String>,
}

/// Environment variables read by libraries rather than by certflow's flags.
const LIBRARY_ENV: [(&str, &str); 2] = [
    ("KUBECONFIG", "kube::Client::try_default"),
    ("SSL_CERT_FILE", "rustls-native-certs, for async-nats TLS"),
];

fn accepted(binary_name: &str) -> Accepted {
    let help = run_ok(
        std::process::Command::new(binary(binary_name)).arg("--help"),
        "",
    );
    let flags = help
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("--"))
        .map(|flag| flag.trim_end_matches([',', '.', ')']).to_owned())
        .filter(|flag| !flag.is_empty())
        .collect();
    let env = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect();
    let words = help.split_whitespace().map(str::to_owned).collect();
    Accepted { flags, env, words }
}

/// Every problem with one container's command line and environment.
fn misuses(binary_name: &str, args: &[String], env: &[String]) -> Vec<String> {
    let accepted = accepted(binary_name);
    let mut problems = Vec::new();
    for arg in args {
        if let Some(flag) = arg.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap_or_default();
            if !accepted.flags.contains(flag) {
                problems.push(format!("{binary_name} has no flag --{flag}"));
            }
        } else if !accepted.words.contains(arg) {
            problems.push(format!("{binary_name} has no subcommand {arg}"));
        }
    }
    for name in env {
        let from_library = LIBRARY_ENV.iter().any(|(known, _)| known == name);
        if !from_library && !accepted.env.contains(name) {
            problems.push(format!(
                "{binary_name} reads no environment variable {name}"
            ));
        }
    }
    problems
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn binary_name(command: &str) -> String {
    command.rsplit('/').next().unwrap_or(command).to_owned()
}

#[tokio::test]
async fn the_deployments_use_only_flags_and_environment_variables_their_binaries_accept() {
    let env = certflow_testenv::shared();
    let mut objects = install_base_rbac(env).to_vec();
    objects.extend(render(env, "deploy/examples/nats-tls"));
    let mut checked = BTreeSet::new();
    let mut problems = Vec::new();
    for deployment in objects
        .iter()
        .filter(|o| kind(o) == "Deployment" || kind(o) == "Job")
    {
        for container in deployment["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
        {
            let command = strings(&container["command"]);
            let binary_name = binary_name(command.first().expect("an explicit command"));
            let mut args = command[1..].to_vec();
            args.extend(strings(&container["args"]));
            let env: Vec<String> = container["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str().map(str::to_owned))
                .collect();
            problems.extend(misuses(&binary_name, &args, &env));
            checked.insert(binary_name);
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        checked.contains("certflow-watcher") && checked.contains("certflow-signer"),
        "{checked:?}"
    );
}

#[tokio::test]
async fn each_service_logs_in_to_nats_as_its_own_user_with_its_own_password() {
    let env = certflow_testenv::shared();
    let objects = install_base_rbac(env);
    let auth = &nats_config_files(objects)["auth.conf"];
    let nats = find(objects, "StatefulSet", "certflow-nats");
    let nats_env = &nats["spec"]["template"]["spec"]["containers"][0]["env"];
    // NATS reads only bcrypt hashes; the admin password is in the cluster
    // only as its hash.
    let server_keys: Vec<(String, String)> = nats_env
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let key = e["valueFrom"]["secretKeyRef"]["key"].as_str()?;
            Some((e["name"].as_str()?.to_owned(), key.to_owned()))
        })
        .collect();
    assert_eq!(server_keys.len(), 5, "{server_keys:?}");
    for (name, key) in &server_keys {
        assert!(
            key.ends_with("-bcrypt"),
            "NATS must read a password's hash, not the password: {name} reads key {key}"
        );
    }
    assert!(
        server_keys.contains(&(
            "CERTFLOW_ADMIN_PASSWORD".to_owned(),
            "admin-bcrypt".to_owned()
        )),
        "{server_keys:?}"
    );
    for (kind, service) in [
        ("Deployment", "certflow-watcher"),
        ("Deployment", "certflow-signer"),
        ("Job", "certflow-nats-setup"),
    ] {
        let deployment = find(objects, kind, service);
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let var = |wanted: &str| {
            env_var(container, wanted).unwrap_or_else(|| panic!("{service} sets no {wanted}"))
        };
        let user = var("CERTFLOW_NATS_USER")["value"]
            .as_str()
            .expect("a literal user")
            .to_owned();
        let key = var("CERTFLOW_NATS_PASSWORD")["valueFrom"]["secretKeyRef"].clone();
        assert_eq!(key["name"], "certflow-nats-users", "{service}");
        // The NATS server reads the hash of the same password (its key with
        // `-bcrypt`) into the variable that auth.conf uses as this user's.
        let hash_key = format!("{}-bcrypt", key["key"].as_str().expect("a key"));
        let server_var = server_keys
            .iter()
            .find(|(_, key)| *key == hash_key)
            .map(|(name, _)| name)
            .unwrap_or_else(|| panic!("NATS does not read {service}'s password hash {hash_key}"));
        let block = auth
            .split("user: ")
            .find(|block| block.starts_with(&user))
            .unwrap_or_else(|| panic!("auth.conf has no user {user}"));
        assert!(
            block.contains(&format!("password: ${server_var}")),
            "auth.conf's user {user} must use ${server_var} as its password"
        );
    }
}

#[tokio::test]
async fn compose_services_use_only_flags_and_environment_variables_their_binaries_accept() {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml"))
        .expect("docker-compose.yml");
    let mut compose: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
    compose.apply_merge().expect("merge keys resolve");
    let compose = serde_json::to_value(compose).expect("JSON");
    let services = compose["services"].as_object().expect("services");
    let mut checked = BTreeSet::new();
    let mut problems = Vec::new();
    for (service, definition) in services {
        let environment: BTreeSet<String> = definition["environment"]
            .as_object()
            .map(|vars| vars.keys().cloned().collect())
            .unwrap_or_default();
        for volume in strings(&definition["volumes"]) {
            let source = volume.split(':').next().unwrap_or_default();
            if !source.starts_with("./deploy/") {
                continue;
            }
            let path = repo_root().join(source);
            assert!(
                path.is_file(),
                "{service} mounts {source}, which does not exist"
            );
            // Configuration files (NATS's) read their variables from the
            // container's environment.
            let text = std::fs::read_to_string(&path).expect("mounted file");
            for variable in variables(&text) {
                assert!(
                    environment.contains(&variable),
                    "{source} reads ${variable}, which {service} does not set"
                );
            }
        }
        let command = strings(&definition["command"]);
        let Some(first) = command.first() else {
            continue;
        };
        let binary_name = binary_name(first);
        if !binary_name.starts_with("certflow-") {
            continue;
        }
        let env: Vec<String> = environment.into_iter().collect();
        problems.extend(misuses(&binary_name, &command[1..], &env));
        checked.insert(binary_name);
    }
    assert!(problems.is_empty(), "{problems:#?}");
    let expected: BTreeSet<String> = ["certflow-watcher", "certflow-signer", "certflow-reporter"]
        .map(str::to_owned)
        .into();
    assert_eq!(checked, expected, "docker-compose.yml runs each service");
}

#[test]
fn the_flag_check_notices_an_unknown_flag_subcommand_or_variable() {
    assert!(misuses("certflow-watcher", &["setup-bus".into()], &[]).is_empty());
    let problems = misuses(
        "certflow-signer",
        &[
            "--namespace=x".into(),
            "--no-such-flag".into(),
            "setup-bus".into(),
        ],
        &[
            "CERTFLOW_NAMESPACE".into(),
            "CERTFLOW_NO_SUCH_VARIABLE".into(),
        ],
    );
    assert_eq!(
        problems,
        [
            "certflow-signer has no flag --no-such-flag",
            "certflow-signer has no subcommand setup-bus",
            "certflow-signer reads no environment variable CERTFLOW_NO_SUCH_VARIABLE"
        ]
    );
}

// ---------------------------------------------------------------------------
// Probes against the binaries.

/// What a `grpc:` probe for health service `service` on `port` gets: the
/// status, or the gRPC error code (NOT_FOUND for a name the binary does not
/// serve, which kubelet counts as a failure); `None` while nothing answers.
async fn health_check(port: u16, service: &str) -> Option<Result<ServingStatus, tonic::Code>> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .ok()?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2));
    let channel = endpoint.connect().await.ok()?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await;
    Some(
        answer
            .map(|response| response.into_inner().status())
            .map_err(|status| status.code()),
    )
}

#[tokio::test]
async fn every_probe_names_a_health_service_its_binary_serves_and_without_nats_only_readiness_fails()
 {
    let env = certflow_testenv::shared();
    let objects = install_base_rbac(env);
    // Nothing listens there: NATS is unreachable for as long as the test runs.
    let [no_nats] = free_ports().expect("port");
    let log_dir = env.dir().join(unique_name("deploy-probes"));
    std::fs::create_dir_all(&log_dir).expect("log dir");

    let mut running = Vec::new();
    for deployment in objects.iter().filter(|o| kind(o) == "Deployment") {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let command = strings(&container["command"]);
        let binary_name = binary_name(command.first().expect("an explicit command"));
        let [health_port, metrics_port] = free_ports().expect("ports");
        let process = ManagedProcess::start_with_env(
            &binary_name,
            &binary(&binary_name),
            vec![
                format!("--health-addr=127.0.0.1:{health_port}"),
                format!("--metrics-addr=127.0.0.1:{metrics_port}"),
                format!("--nats-url=nats://127.0.0.1:{no_nats}"),
                "--nats-connect-timeout=10m".to_owned(),
            ],
            vec![
                (
                    "KUBECONFIG".to_owned(),
                    env.kubeconfig().display().to_string(),
                ),
                ("RUST_LOG".to_owned(), "info".to_owned()),
            ],
            log_dir.join(format!("{binary_name}.log")),
        )
        .expect("start service");
        running.push((deployment, container, health_port, process));
    }

    let mut problems = Vec::new();
    let mut probed = BTreeSet::new();
    for (deployment, container, health_port, process) in &running {
        let name = name(deployment);
        eventually(
            &format!("{name}'s health server to answer"),
            WAIT,
            || async { health_check(*health_port, "").await.map(drop) },
        )
        .await;
        let health_container_port = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|port| port["name"] == "health")
            .map(|port| port["containerPort"].clone());
        // Readiness waits for NATS; startup and liveness must not, or an
        // outage would keep Pods from starting or restart them.
        for (probe, expected) in [
            ("startupProbe", ServingStatus::Serving),
            ("readinessProbe", ServingStatus::NotServing),
            ("livenessProbe", ServingStatus::Serving),
        ] {
            let spec = &container[probe];
            if spec.is_null() {
                if probe != "startupProbe" {
                    problems.push(format!("{name} has no {probe}"));
                }
                continue;
            }
            let grpc = &spec["grpc"];
            if Some(&grpc["port"]) != health_container_port.as_ref() || grpc["port"] != 8081 {
                problems.push(format!(
                    "{name}'s {probe} asks port {}, not the health port 8081 (--health-addr's default)",
                    grpc["port"]
                ));
            }
            let service = grpc["service"].as_str().unwrap_or_default();
            let answer = health_check(*health_port, service).await;
            if answer != Some(Ok(expected)) {
                problems.push(format!(
                    "{name}'s {probe} (service {service:?}) gets {answer:?} with NATS \
                     unreachable, expected {expected:?}\n{}",
                    process.tail(20)
                ));
            }
            probed.insert(probe);
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        running.len() >= 3 && probed.contains("livenessProbe"),
        "{} Deployments, probes {probed:?}",
        running.len()
    );
}

// ---------------------------------------------------------------------------
// RBAC: what the ServiceAccounts may and may not do.

/// `kubectl auth can-i` as a certflow ServiceAccount, impersonated by admin.
fn can(env: &TestEnv, account: &str, verb: &str, resource: &str, namespace: &str) -> bool {
    let mut kubectl = env.kubectl();
    kubectl.arg(format!("--as=system:serviceaccount:{NAMESPACE}:{account}"));
    can_i(kubectl, verb, resource, namespace)
}

#[tokio::test]
async fn each_service_account_may_do_exactly_what_its_service_needs() {
    let env = certflow_testenv::shared();
    install_base_rbac(env);
    let app = env
        .create_namespace("deploy-rbac")
        .await
        .expect("namespace");
    let app = app.as_str();
    // (account, verb, resource, namespace, allowed)
    #[rustfmt::skip]
    let table: &[(&str, &str, &str, &str, bool)] = &[
        // The reporter never reads Secrets.
        ("certflow-reporter", "get", "secrets", app, false),
        ("certflow-reporter", "list", "secrets", app, false),
        ("certflow-reporter", "watch", "secrets", app, false),
        ("certflow-reporter", "get", "secrets", NAMESPACE, false),
        ("certflow-reporter", "list", "pods", app, true),
        ("certflow-reporter", "get", "replicasets.apps", app, true),
        ("certflow-reporter", "create", "events.events.k8s.io", app, true),
        ("certflow-reporter", "patch", "events.events.k8s.io", app, true),
        ("certflow-reporter", "create", "pods", app, false),
        // It asks the API server who a Report caller is and what it may do
        // (auth delegation), and nothing more: no tokens of its own making,
        // no reports on its own behalf.
        ("certflow-reporter", "create", "tokenreviews.authentication.k8s.io", app, true),
        ("certflow-reporter", "create", "subjectaccessreviews.authorization.k8s.io", app, true),
        ("certflow-reporter", "create", "serviceaccounts/token", app, false),
        ("certflow-reporter", "create", "servicecertificates.certflow.io/report", app, false),
        ("certflow-watcher", "create", "tokenreviews.authentication.k8s.io", app, false),
        ("certflow-watcher", "create", "subjectaccessreviews.authorization.k8s.io", app, false),
        ("certflow-signer", "create", "tokenreviews.authentication.k8s.io", app, false),
        ("certflow-signer", "create", "subjectaccessreviews.authorization.k8s.io", app, false),
        // The watcher never writes.
        ("certflow-watcher", "create", "secrets", app, false),
        ("certflow-watcher", "update", "secrets", app, false),
        ("certflow-watcher", "patch", "secrets", app, false),
        ("certflow-watcher", "delete", "secrets", app, false),
        ("certflow-watcher", "create", "secrets", NAMESPACE, false),
        ("certflow-watcher", "patch", "servicecertificates.certflow.io/status", app, false),
        ("certflow-watcher", "create", "events.events.k8s.io", app, false),
        ("certflow-watcher", "list", "secrets", app, true),
        ("certflow-watcher", "watch", "servicecertificates.certflow.io", app, true),
        // The signer writes Secrets and status, but never lists app Secrets,
        // deletes or updates a Secret, or changes a spec.
        ("certflow-signer", "get", "secrets", app, true),
        ("certflow-signer", "create", "secrets", app, true),
        ("certflow-signer", "patch", "secrets", app, true),
        ("certflow-signer", "list", "secrets", app, false),
        ("certflow-signer", "update", "secrets", app, false),
        ("certflow-signer", "delete", "secrets", app, false),
        ("certflow-signer", "delete", "secrets", NAMESPACE, false),
        ("certflow-signer", "list", "secrets", NAMESPACE, true),
        ("certflow-signer", "patch", "servicecertificates.certflow.io/status", app, true),
        ("certflow-signer", "patch", "servicecertificates.certflow.io", app, false),
        ("certflow-signer", "create", "events.events.k8s.io", app, false),
    ];
    let wrong: Vec<String> = table
        .iter()
        .filter(|(account, verb, resource, namespace, allowed)| {
            can(env, account, verb, resource, namespace) != *allowed
        })
        .map(|(account, verb, resource, namespace, allowed)| {
            let expected = if *allowed { "may" } else { "must not" };
            format!("{account} {expected} {verb} {resource} in {namespace}")
        })
        .collect();
    assert!(wrong.is_empty(), "RBAC differs from the design: {wrong:#?}");
}

/// A Secret manifest in `namespace`, labelled managed and annotated as an
/// issued certificate's when asked.
fn secret_manifest(namespace: &str, name: &str, managed: bool, issued: bool) -> String {
    let mut metadata = serde_json::json!({"name": name, "namespace": namespace});
    if managed {
        metadata["labels"] = serde_json::json!({"certflow.io/managed": "true"});
    }
    if issued {
        metadata["annotations"] = serde_json::json!({"certflow.io/service-certificate": "web"});
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "stringData": {"note": "not a key"},
    })
    .to_string()
}

#[tokio::test]
async fn the_admission_policy_confines_the_signer_to_the_secrets_it_issued() {
    let env = certflow_testenv::shared();
    install_base_rbac(env);
    let app = env
        .create_namespace("deploy-secret-policy")
        .await
        .expect("namespace");
    let app = app.as_str();
    let ca_key_pair = unique_name("ca-key-pair");
    for manifest in [
        secret_manifest(app, "foreign", false, false),
        secret_manifest(app, "issued", true, true),
        secret_manifest(NAMESPACE, &ca_key_pair, true, false),
    ] {
        run_ok(env.kubectl().args(["create", "-f", "-"]), &manifest);
    }
    let signer = format!("--as=system:serviceaccount:{NAMESPACE}:certflow-signer");
    let as_signer = |args: &[&str], stdin: &str| {
        let output = run(env.kubectl().args(args).arg(&signer), stdin);
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let change = r#"{"stringData":{"note":"changed"}}"#;
    let patch = |namespace: &str, name: &str, body: &str| {
        as_signer(
            &[
                "patch",
                "secret",
                name,
                "-n",
                namespace,
                "--type=merge",
                "-p",
                body,
            ],
            "",
        )
    };

    // The API server loads a new policy within a few seconds; until then the
    // first refusal below is not yet made.
    eventually(
        "the policy refusing the signer a foreign Secret",
        WAIT,
        || async {
            let (changed, stderr) = patch(app, "foreign", change);
            (!changed && stderr.contains("certflow-signer-secrets")).then_some(())
        },
    )
    .await;

    let unlabel = r#"{"metadata":{"labels":{"certflow.io/managed":null}}}"#;
    // (what, allowed, outcome)
    let rows = [
        (
            "change a Secret it did not create",
            false,
            patch(app, "foreign", change),
        ),
        (
            "change a CA key pair",
            false,
            patch(NAMESPACE, &ca_key_pair, change),
        ),
        (
            "remove the managed label of an issued Secret",
            false,
            patch(app, "issued", unlabel),
        ),
        (
            "change an issued Secret",
            true,
            patch(app, "issued", change),
        ),
        (
            "create an unlabelled Secret",
            false,
            as_signer(
                &["create", "-f", "-"],
                &secret_manifest(app, "unlabelled", false, false),
            ),
        ),
        (
            "create a managed Secret",
            true,
            as_signer(
                &["create", "-f", "-"],
                &secret_manifest(app, "new-tls", true, true),
            ),
        ),
    ];
    let wrong: Vec<String> = rows
        .iter()
        .filter(|(_, allowed, (succeeded, stderr))| {
            *succeeded != *allowed || (!allowed && !stderr.contains("certflow-signer-secrets"))
        })
        .map(|(what, allowed, (_, stderr))| {
            format!(
                "the signer may{} {what}: {stderr}",
                if *allowed { "" } else { " not" }
            )
        })
        .collect();
    assert!(wrong.is_empty(), "the admission policy differs: {wrong:#?}");

    // Anyone else is not matched: an administrator still may.
    run_ok(
        env.kubectl().args([
            "patch",
            "secret",
            "foreign",
            "-n",
            app,
            "--type=merge",
            "-p",
            change,
        ]),
        "",
    );
}

#[tokio::test]
async fn the_watcher_holds_no_verb_that_writes() {
    let env = certflow_testenv::shared();
    install_base_rbac(env);
    let output = run_ok(
        env.kubectl().args([
            "auth",
            "can-i",
            "--list",
            "-n",
            "default",
            &format!("--as=system:serviceaccount:{NAMESPACE}:certflow-watcher"),
        ]),
        "",
    );
    // Columns: Resources, Non-Resource URLs, Resource Names, Verbs ([a b]).
    let mut saw_certflow = false;
    for line in output.lines().skip(1) {
        let resource = line.split_whitespace().next().unwrap_or_default();
        // Every account may review its own access and identity.
        if resource.ends_with(".authorization.k8s.io")
            || resource.ends_with(".authentication.k8s.io")
        {
            continue;
        }
        saw_certflow |= resource.ends_with(".certflow.io");
        let verbs = line
            .rsplit('[')
            .next()
            .unwrap_or_default()
            .trim_end_matches(']');
        for verb in verbs.split_whitespace() {
            assert!(
                ["get", "list", "watch"].contains(&verb),
                "the watcher may {verb} {resource}:\n{output}"
            );
        }
    }
    assert!(
        saw_certflow,
        "the watcher's own rules are listed:\n{output}"
    );
}

// ---------------------------------------------------------------------------
// The services, running as the manifests' identities.

/// A nats-server with deploy/base's users and permissions (auth.conf from the
/// rendered ConfigMap) and the passwords in `passwords`.
struct Nats {
    process: ManagedProcess,
    url: String,
    monitoring_port: u16,
    passwords: BTreeMap<&'static str, String>,
    /// The CA file clients trust when the server requires TLS.
    tls_ca: Option<PathBuf>,
    /// The client certificate and key the server then requires.
    tls_client: Option<(PathBuf, PathBuf)>,
}

/// Certificates for a TLS-enabled test server and its clients, made with
/// openssl as deploy/optional/nats-tls/README.md makes them.
struct TestTls {
    /// Holds `tls.crt`, `tls.key` and `ca.crt`, as the Secret certflow-nats-tls would.
    dir: PathBuf,
    /// Holds `tls.crt`, `tls.key` and `ca.crt`, as the Secret
    /// certflow-nats-client-tls would: a client certificate of the same CA.
    client_dir: PathBuf,
}

impl TestTls {
    /// A CA and a server certificate for 127.0.0.1 and the in-cluster names.
    fn generate(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).expect("tls dir");
        let openssl = |args: &str| {
            run_ok(
                std::process::Command::new("openssl")
                    .args(args.split(' '))
                    .current_dir(&dir),
                "",
            );
        };
        let new_key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        openssl(&format!(
            "req -x509 {new_key} -days 1 -keyout ca.key -out ca.crt -subj /CN=certflow-nats-test-ca"
        ));
        openssl(&format!(
            "req {new_key} -keyout tls.key -out tls.csr -subj /CN=certflow-nats"
        ));
        std::fs::write(
            dir.join("extensions.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:certflow-nats,DNS:*.certflow-nats-headless\n\
             extendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("extensions");
        openssl(
            "x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -days 1 -out tls.crt \
             -extfile extensions.cnf",
        );
        let client_dir = dir.join("client");
        std::fs::create_dir_all(&client_dir).expect("client tls dir");
        openssl(&format!(
            "req {new_key} -keyout client/tls.key -out client.csr -subj /CN=certflow-services"
        ));
        std::fs::write(
            dir.join("client-extensions.cnf"),
            "extendedKeyUsage=clientAuth\n",
        )
        .expect("client extensions");
        openssl(
            "x509 -req -in client.csr -CA ca.crt -CAkey ca.key -days 1 -out client/tls.crt \
             -extfile client-extensions.cnf",
        );
        std::fs::copy(dir.join("ca.crt"), client_dir.join("ca.crt")).expect("client ca.crt");
        Self { dir, client_dir }
    }
}

impl Nats {
    /// A plain-TCP server with deploy/base's users.
    async fn start(env: &TestEnv, objects: &[Value]) -> Self {
        Self::start_with(env, objects, None).await
    }

    /// With `tls`, the server also includes the rendered `tls.conf`, its
    /// certificate paths pointed at `tls.dir`.
    async fn start_with(env: &TestEnv, objects: &[Value], tls: Option<&TestTls>) -> Self {
        let dir = env.dir().join(unique_name("deploy-nats"));
        std::fs::create_dir_all(&dir).expect("nats dir");
        let files = nats_config_files(objects);
        std::fs::write(dir.join("auth.conf"), &files["auth.conf"]).expect("auth.conf");
        let tls_dir = tls.map(|tls| format!("{}/", tls.dir.display()));
        let tls_conf = files["tls.conf"].replace(
            "/etc/nats/tls/",
            tls_dir.as_deref().unwrap_or("/etc/nats/tls/"),
        );
        std::fs::write(dir.join("tls.conf"), tls_conf).expect("tls.conf");
        let [port, monitoring_port] = free_ports().expect("ports");
        // One server instead of the three-node cluster; everything that
        // decides who may do what (and how clients connect) comes from the
        // rendered auth.conf and tls.conf.
        let config = format!(
            "server_name: certflow-deploy-e2e\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitoring_port}\n\
             jetstream {{ store_dir: \"{}\" }}\ninclude ./auth.conf\ninclude ./tls.conf\n",
            dir.join("jetstream").display()
        );
        std::fs::write(dir.join("nats.conf"), config).expect("nats.conf");
        let passwords: BTreeMap<&'static str, String> =
            ["watcher", "signer", "reporter", "setup", "admin"]
                .into_iter()
                .map(|user| (user, unique_name(user)))
                .collect();
        // As in the cluster, the server gets only bcrypt hashes (the
        // Secret's `<user>-bcrypt` keys), in double quotes, as
        // docs/deploy.md writes them: nats-server reads a variable's value
        // as configuration, where an unquoted `$` starts another variable.
        // Clients log in with the password itself.
        let envs = passwords
            .iter()
            .map(|(user, password)| {
                let hash = bcrypt::hash(password, 4).expect("bcrypt");
                (
                    format!("CERTFLOW_{}_PASSWORD", user.to_uppercase()),
                    format!("\"{hash}\""),
                )
            })
            .collect();
        let process = ManagedProcess::start_with_env(
            "nats-server (deploy)",
            &env.tools().nats_server,
            vec![
                "--config".into(),
                dir.join("nats.conf").display().to_string(),
            ],
            envs,
            dir.join("nats-server.log"),
        )
        .expect("start nats-server");
        let scheme = if tls.is_some() { "tls" } else { "nats" };
        let nats = Self {
            process,
            url: format!("{scheme}://127.0.0.1:{port}"),
            monitoring_port,
            passwords,
            tls_ca: tls.map(|tls| tls.dir.join("ca.crt")),
            tls_client: tls.map(|tls| {
                (
                    tls.client_dir.join("tls.crt"),
                    tls.client_dir.join("tls.key"),
                )
            }),
        };
        eventually("nats-server with deploy/base's users", WAIT, || async {
            let admin = nats.connect("admin").await.ok()?;
            async_nats::jetstream::new(admin).query_account().await.ok()
        })
        .await;
        nats
    }

    fn options(&self, user: &str) -> async_nats::ConnectOptions {
        let options = async_nats::ConnectOptions::with_user_and_password(
            user.to_owned(),
            self.passwords[user].clone(),
        );
        match (&self.tls_ca, &self.tls_client) {
            (Some(ca), Some((cert, key))) => options
                .add_root_certificates(ca.clone())
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true),
            _ => options,
        }
    }

    async fn connect(&self, user: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
        self.options(user).connect(&self.url).await
    }

    /// Connects as `user` and collects the errors the server sends back.
    async fn connect_watching_errors(
        &self,
        user: &str,
    ) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        let client = self
            .options(user)
            .event_callback(move |event| {
                let sink = sink.clone();
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        sink.lock().expect("errors").push(error.to_string());
                    }
                }
            })
            .connect(&self.url)
            .await
            .expect("connect");
        (client, errors)
    }

    /// The permission violations the server logged (publish or subscribe).
    fn violations(&self) -> Vec<String> {
        std::fs::read_to_string(self.process.log_path())
            .expect("nats-server log")
            .lines()
            .filter(|line| line.contains("Violation"))
            .map(str::to_owned)
            .collect()
    }

    /// `/jsz` of the monitoring port, as KEDA's nats-jetstream scaler asks it.
    async fn jsz(&self, account: &str) -> Value {
        self.monitoring(&format!("/jsz?acc={account}&consumers=true&config=true"))
            .await
    }

    /// A JSON page of the monitoring port (plain HTTP, also with TLS on).
    async fn monitoring(&self, path: &str) -> Value {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.monitoring_port))
            .await
            .expect("monitoring port");
        let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("response");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body)
            .unwrap_or_else(|err| panic!("{path} is JSON ({err}): {response}"))
    }
}

/// The `consumer_detail` entry of `/jsz` for one account, stream and consumer.
fn consumer_detail(jsz: &Value, account: &str, stream: &str, consumer: &str) -> Option<Value> {
    jsz["account_details"]
        .as_array()?
        .iter()
        .filter(|a| a["name"] == account)
        .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["name"] == stream)
        .flat_map(|s| s["consumer_detail"].as_array().cloned().unwrap_or_default())
        .find(|c| c["name"] == consumer)
}

/// What a refusal test asks NATS to do.
#[derive(Clone, Copy)]
enum Ask {
    Publish,
    Subscribe,
}

/// Publishes to or subscribes to `subject` as `user` and waits for the
/// server to refuse it with a permissions violation.
async fn refused(nats: &Nats, user: &str, ask: Ask, subject: &str) {
    let (client, errors) = nats.connect_watching_errors(user).await;
    // A subscription is kept until the refusal arrives.
    let (violation, _subscription) = match ask {
        Ask::Publish => {
            client
                .publish(subject.to_owned(), "not allowed".into())
                .await
                .expect("publish is sent");
            ("Publish to", None)
        }
        Ask::Subscribe => {
            let subscription = client
                .subscribe(subject.to_owned())
                .await
                .expect("the subscription is sent");
            ("Subscription to", Some(subscription))
        }
    };
    client.flush().await.expect("flush");
    let expected = format!("Permissions Violation for {violation} \"{subject}\"");
    eventually(
        &format!("NATS to refuse {user}: {violation} {subject}"),
        Duration::from_secs(10),
        || {
            let errors = errors.clone();
            let expected = expected.clone();
            async move {
                let errors = errors.lock().expect("errors");
                errors.iter().any(|e| e.contains(&expected)).then_some(())
            }
        },
    )
    .await;
}

/// Runs the Job certflow-nats-setup's container command as the Job does:
/// its NATS user, with that user's password, against `nats` (one server, so
/// with the default replicas, not the Job's 3). Returns what it printed;
/// fails the test unless it exits 0.
/// The entry of `container`'s `env` named `name`.
fn env_var(container: &Value, name: &str) -> Option<Value> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
}

/// The name of the Secret volume `pod_spec`'s first container mounts at
/// `mount` (with or without its trailing slash).
fn secret_mounted_at(pod_spec: &Value, mount: &str) -> Option<String> {
    let path = mount.strip_suffix('/').unwrap_or(mount);
    let mounted = pod_spec["containers"][0]["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(path))?["name"]
        .as_str()?
        .to_owned();
    pod_spec["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mounted.as_str())?["secret"]["secretName"]
        .as_str()
        .map(str::to_owned)
}

/// Runs the rendered setup Job's command as its NATS user against `nats`,
/// with `extra_env` (e.g. the TLS variables, pointed at the test's files);
/// returns what it printed.
fn run_setup_job(nats: &Nats, objects: &[Value], extra_env: &[(String, String)]) -> String {
    let job = find(objects, "Job", "certflow-nats-setup");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    let command = strings(&container["command"]);
    let env = |wanted: &str| {
        env_var(container, wanted).unwrap_or_else(|| panic!("the setup Job sets no {wanted}"))
    };
    let user = env("CERTFLOW_NATS_USER")["value"]
        .as_str()
        .expect("a literal user")
        .to_owned();
    assert_eq!(user, "setup");
    assert_eq!(
        env("CERTFLOW_NATS_PASSWORD")["valueFrom"]["secretKeyRef"]["key"],
        "setup"
    );
    let binary_name = binary_name(command.first().expect("an explicit command"));
    assert_eq!(binary_name, "certflow-watcher");
    assert_eq!(command[1..], ["setup-bus".to_owned()]);
    run_ok(
        std::process::Command::new(binary(&binary_name))
            .args(&command[1..])
            .env("CERTFLOW_NATS_URL", &nats.url)
            .env("CERTFLOW_NATS_USER", &user)
            .env("CERTFLOW_NATS_PASSWORD", &nats.passwords[user.as_str()])
            .env("CERTFLOW_NATS_CONNECT_TIMEOUT", "20s")
            .env("RUST_LOG", "info")
            .envs(extra_env.iter().map(|(name, value)| (name, value))),
        "",
    )
}

/// One service process running as its own ServiceAccount and NATS user.
fn start_service(
    nats: &Nats,
    log_dir: &Path,
    binary_name: &str,
    user: &str,
    kubeconfig: &Path,
    extra: &[String],
    extra_env: &[(String, String)],
) -> ManagedProcess {
    let [metrics_port, health_port] = free_ports().expect("ports");
    let mut args = vec![
        format!("--nats-url={}", nats.url),
        format!("--nats-user={user}"),
        format!("--metrics-addr=127.0.0.1:{metrics_port}"),
        format!("--health-addr=127.0.0.1:{health_port}"),
    ];
    args.extend_from_slice(extra);
    let mut envs = vec![
        ("KUBECONFIG".to_owned(), kubeconfig.display().to_string()),
        (
            "CERTFLOW_NATS_PASSWORD".to_owned(),
            nats.passwords[user].clone(),
        ),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ];
    envs.extend_from_slice(extra_env);
    ManagedProcess::start_with_env(
        binary_name,
        &binary(binary_name),
        args,
        envs,
        log_dir.join(format!("{}.log", unique_name(binary_name))),
    )
    .expect("start service")
}

#[tokio::test]
async fn the_services_issue_a_certificate_with_only_the_manifests_service_accounts_and_nats_users()
{
    let env = certflow_testenv::shared();
    let objects = install_base_rbac(env);
    let client = env.client().await.expect("client");
    let app = env.create_namespace("deploy-app").await.expect("namespace");
    let nats = Nats::start(env, objects).await;

    let log_dir = env.dir().join(unique_name("deploy-services"));
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let kubeconfig = |account: &'static str| async move {
        env.service_account_kubeconfig(NAMESPACE, account)
            .await
            .expect("TokenRequest for the manifests' ServiceAccount")
    };
    let mut watcher = start_service(
        &nats,
        &log_dir,
        "certflow-watcher",
        "watcher",
        &kubeconfig("certflow-watcher").await,
        &[format!("--watch-namespace={app}")],
        &[],
    );
    let mut signer = start_service(
        &nats,
        &log_dir,
        "certflow-signer",
        "signer",
        &kubeconfig("certflow-signer").await,
        &[format!("--namespace={NAMESPACE}")],
        &[],
    );
    let [grpc_port] = free_ports().expect("port");
    let mut reporter = start_service(
        &nats,
        &log_dir,
        "certflow-reporter",
        "reporter",
        &kubeconfig("certflow-reporter").await,
        &[format!("--grpc-addr=127.0.0.1:{grpc_port}")],
        &[],
    );
    let logs = |processes: [&ManagedProcess; 3]| {
        processes
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.name(), p.tail(40)))
            .collect::<Vec<_>>()
            .join("\n")
    };

    // The services only look their streams up, and there are none yet:
    // each waits, asking nothing its user may not ask.
    for process in [&watcher, &signer, &reporter] {
        let what = format!(
            "{} to wait for the setup step\n{}",
            process.name(),
            process.tail(30)
        );
        eventually(&what, WAIT, || async {
            let log = std::fs::read_to_string(process.log_path()).unwrap_or_default();
            log.contains("certflow-watcher setup-bus").then_some(())
        })
        .await;
    }
    let violations = nats.violations();
    assert!(
        violations.is_empty(),
        "NATS refused a waiting service: {violations:#?}"
    );
    // A waiting service stops at once on SIGTERM, as Kubernetes asks.
    let mut waiting = start_service(
        &nats,
        &log_dir,
        "certflow-signer",
        "signer",
        &kubeconfig("certflow-signer").await,
        &[format!("--namespace={NAMESPACE}")],
        &[],
    );
    let what = format!("a second signer to wait\n{}", waiting.tail(30));
    eventually(&what, WAIT, || async {
        let log = std::fs::read_to_string(waiting.log_path()).unwrap_or_default();
        log.contains("certflow-watcher setup-bus").then_some(())
    })
    .await;
    let status = waiting.terminate(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "a signer waiting for its streams did not stop within 5 s of SIGTERM: {status:?}\n{}",
        waiting.tail(20)
    );
    // The setup step, as the Job runs it, with the setup user.
    let printed = run_setup_job(&nats, objects, &[]);
    for created in [
        "stream CERTFLOW_WORK: created",
        "stream CERTFLOW_OUTCOMES: created",
        "stream CERTFLOW_DEAD: created",
        "consumer signer on stream CERTFLOW_WORK: created",
        "consumer reporter on stream CERTFLOW_OUTCOMES: created",
    ] {
        assert!(printed.contains(created), "setup-bus printed {printed}");
    }
    // Again: nothing to do, and it says so.
    let again = run_setup_job(&nats, objects, &[]);
    assert!(
        again.contains("stream CERTFLOW_WORK: unchanged") && !again.contains("created"),
        "setup-bus run again printed {again}"
    );

    // A generated CA whose key pair the signer creates in certflow-system.
    let issuer = unique_name("deploy-ca");
    let ca_secret = certflow_e2e::fixtures::create_generated_ca(&client, &issuer, None)
        .await
        .expect("create CertificateAuthority");
    let dns_name = format!("web.{app}.svc");
    let scert = ServiceCertificate::new(
        "web",
        ServiceCertificateSpec {
            secret_name: "web-tls".into(),
            dns_names: vec![dns_name.clone()],
            issuer_ref: Some(IssuerRef::named(issuer.clone())),
            ..ServiceCertificateSpec::default()
        },
    );
    let scerts: Api<ServiceCertificate> = Api::namespaced(client.clone(), &app);
    scerts
        .patch(
            "web",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&scert),
        )
        .await
        .expect("apply ServiceCertificate");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &app);
    let what = format!(
        "web to be Ready with its Secret\n{}",
        logs([&watcher, &signer, &reporter])
    );
    let secret = eventually(&what, WAIT, || async {
        let scert = scerts.get("web").await.ok()?;
        let status = scert.status.clone()?;
        let ready = scert.ready_condition()?.is_true()
            && status.observed_generation == scert.metadata.generation;
        if !ready {
            return None;
        }
        let secret = secrets.get("web-tls").await.ok()?;
        (secret.annotations().get("certflow.io/serial") == status.serial_number.as_ref())
            .then_some(secret)
    })
    .await;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let inspection = inspect_secret(&secret).expect("the issued certificate parses");
    assert!(inspection.key_matches, "tls.key belongs to tls.crt");
    assert!(inspection.signed_by_ca, "tls.crt is signed by ca.crt");
    assert!(
        inspection.dns_names.contains(&dns_name),
        "{:?}",
        inspection.dns_names
    );

    // A refused request reaches its owner: the reporter, reading no Secret,
    // puts a Warning on the ServiceCertificate and on the Pod that mounts
    // the Secret.
    let missing_issuer = unique_name("no-such-ca");
    let typo = ServiceCertificate::new(
        "typo",
        ServiceCertificateSpec {
            secret_name: "typo-tls".into(),
            dns_names: vec![format!("typo.{app}.svc")],
            issuer_ref: Some(IssuerRef::named(missing_issuer.clone())),
            ..ServiceCertificateSpec::default()
        },
    );
    scerts
        .patch(
            "typo",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&typo),
        )
        .await
        .expect("apply the ServiceCertificate with a typo");
    Api::<Pod>::namespaced(client.clone(), &app)
        .create(
            &PostParams::default(),
            &consuming_pod("typo-app", "typo-tls"),
        )
        .await
        .expect("create the Pod mounting typo-tls");
    let events: Api<Event> = Api::namespaced(client.clone(), &app);
    let what = format!(
        "Warnings from certflow-reporter on the ServiceCertificate and the Pod\n{}",
        logs([&watcher, &signer, &reporter])
    );
    eventually(&what, WAIT, || async {
        let warned: BTreeSet<(String, String)> = events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|e| e.reporting_controller.as_deref() == Some("certflow-reporter"))
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .filter_map(|e| {
                let regarding = e.regarding?;
                Some((regarding.kind?, regarding.name?))
            })
            .collect();
        let expected = [
            ("ServiceCertificate".to_owned(), "typo".to_owned()),
            ("Pod".to_owned(), "typo-app".to_owned()),
        ];
        expected
            .iter()
            .all(|wanted| warned.contains(wanted))
            .then_some(())
    })
    .await;

    // The Report API works with the reporter's own ServiceAccount: it may
    // review a caller's token and permission (an allowed caller reaches the
    // ServiceCertificate and the Pod), and a caller without the grant is
    // denied rather than met with an API error. The clients are dropped at
    // the end of the block: a connection left open would hold the
    // reporter's graceful shutdown (SIGTERM, below) until its grace ends.
    {
        let mut allowed = report_api::granted_client(env, grpc_port, &app, "report-client").await;
        let about_typo = ReportRequest {
            regarding: Some(Regarding::ServiceCertificate(ServiceCertificateRef {
                namespace: app.clone(),
                name: "typo".into(),
            })),
            r#type: EventType::Normal.into(),
            reason: "DeployReport".into(),
            message: "A control-plane service reports this through the Report API.".into(),
            reporting_component: "certflow-e2e".into(),
            ..ReportRequest::default()
        };
        let recipients = allowed
            .report(about_typo.clone())
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "an authorized report: {status:?}\n{}",
                    logs([&watcher, &signer, &reporter])
                )
            })
            .into_inner()
            .recipients;
        assert!(
            recipients >= 2,
            "the ServiceCertificate and the Pod: {recipients}"
        );
        let stranger = report_api::token(env, &app, "report-stranger").await;
        let denied = report_api::connect(grpc_port, Some(&stranger))
            .await
            .report(about_typo)
            .await
            .expect_err("a caller without the grant");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    }

    // Every permission the services needed was granted: the server refused
    // nothing so far, and the signer acknowledged every work item.
    let violations = nats.violations();
    assert!(
        violations.is_empty(),
        "NATS refused a service: {violations:#?}"
    );
    let what = format!(
        "the signer to acknowledge every work item\n{}",
        logs([&watcher, &signer, &reporter])
    );
    eventually(&what, WAIT, || async {
        let jsz = nats.jsz("CERTFLOW").await;
        let consumer = consumer_detail(&jsz, "CERTFLOW", "CERTFLOW_WORK", "signer")?;
        let delivered = consumer["delivered"]["consumer_seq"].as_u64()?;
        let settled = consumer["num_pending"] == 0 && consumer["num_ack_pending"] == 0;
        (settled && delivered > 0).then_some(())
    })
    .await;

    // The CA key pair exists in certflow-system, and an application's own
    // ServiceAccount cannot read it.
    let ca_secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    assert!(
        ca_secrets
            .get_opt(&ca_secret)
            .await
            .expect("admin reads")
            .is_some(),
        "the signer created the CA key pair {NAMESPACE}/{ca_secret}"
    );
    let app_kubeconfig = env
        .service_account_kubeconfig(&app, "app")
        .await
        .expect("app ServiceAccount");
    for account_kubeconfig in [app_kubeconfig, kubeconfig("certflow-reporter").await] {
        let denied = run(
            env.kubectl()
                .env("KUBECONFIG", &account_kubeconfig)
                .args(["get", "secret", &ca_secret, "-n", NAMESPACE, "-o", "name"]),
            "",
        );
        let stderr = String::from_utf8_lossy(&denied.stderr);
        assert!(
            !denied.status.success() && stderr.contains("Forbidden"),
            "{} read the CA key pair: {denied:?}",
            account_kubeconfig.display()
        );
    }
    // And the watcher's token really cannot write a Secret.
    let denied = run(
        env.kubectl()
            .env("KUBECONFIG", kubeconfig("certflow-watcher").await)
            .args([
                "create",
                "secret",
                "generic",
                "forged",
                "-n",
                &app,
                "--from-literal=k=v",
            ]),
        "",
    );
    assert!(
        !denied.status.success() && String::from_utf8_lossy(&denied.stderr).contains("forbidden"),
        "the watcher created a Secret: {denied:?}"
    );

    // The setup step as a service's user fails, saying which user may (it
    // waits out JetStream's silence, so it runs while the refusals below
    // are checked).
    let as_watcher = tokio::process::Command::new(binary("certflow-watcher"))
        .arg("setup-bus")
        .env("CERTFLOW_NATS_URL", &nats.url)
        .env("CERTFLOW_NATS_USER", "watcher")
        .env("CERTFLOW_NATS_PASSWORD", &nats.passwords["watcher"])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let as_watcher = tokio::spawn(as_watcher);
    // NATS: only the watcher publishes work; nobody else pulls the signer's.
    let work_subject = format!("certflow.work.v1.{app}.forged");
    for (user, subject) in [
        ("reporter", work_subject.as_str()),
        ("signer", work_subject.as_str()),
        ("watcher", "$JS.API.CONSUMER.MSG.NEXT.CERTFLOW_WORK.signer"),
        ("reporter", "$JS.API.CONSUMER.MSG.NEXT.CERTFLOW_WORK.signer"),
        ("watcher", "$JS.API.STREAM.PURGE.CERTFLOW_WORK"),
        ("signer", "$JS.API.STREAM.DELETE.CERTFLOW_OUTCOMES"),
        ("reporter", "certflow.outcome.v1.x.forged"),
        // The setup user sets up and does nothing else.
        ("setup", work_subject.as_str()),
        ("setup", "$JS.API.STREAM.PURGE.CERTFLOW_WORK"),
        ("setup", "$JS.API.STREAM.DELETE.CERTFLOW_WORK"),
        ("setup", "$JS.API.CONSUMER.DELETE.CERTFLOW_WORK.signer"),
        ("setup", "$JS.API.CONSUMER.MSG.NEXT.CERTFLOW_WORK.signer"),
    ] {
        refused(&nats, user, Ask::Publish, subject).await;
    }
    // No service creates or changes a stream or consumer: a compromised one
    // cannot shrink the work stream's limits or retune the signers'
    // consumer. Only the setup step may.
    for user in ["watcher", "signer", "reporter"] {
        for subject in [
            "$JS.API.STREAM.CREATE.CERTFLOW_WORK",
            "$JS.API.STREAM.UPDATE.CERTFLOW_WORK",
            "$JS.API.STREAM.UPDATE.CERTFLOW_OUTCOMES",
            "$JS.API.STREAM.UPDATE.CERTFLOW_DEAD",
            "$JS.API.CONSUMER.CREATE.CERTFLOW_WORK.signer",
            "$JS.API.CONSUMER.CREATE.CERTFLOW_WORK.signer.certflow.work.v1.x",
            "$JS.API.CONSUMER.CREATE.CERTFLOW_OUTCOMES.reporter",
            "$JS.API.CONSUMER.DURABLE.CREATE.CERTFLOW_WORK.signer",
        ] {
            refused(&nats, user, Ask::Publish, subject).await;
        }
    }
    // And the refusal is real: the work stream keeps the setup step's
    // limits when a service asks to change them.
    let admin_js = async_nats::jetstream::new(nats.connect("admin").await.expect("admin"));
    let mut shrunk = admin_js
        .get_stream("CERTFLOW_WORK")
        .await
        .expect("the work stream")
        .cached_info()
        .config
        .clone();
    let max_bytes = shrunk.max_bytes;
    shrunk.max_bytes = 1024;
    // On the reporter's own inbox, so that an answer could reach it.
    let reporter_js = async_nats::jetstream::new(
        nats.options("reporter")
            .custom_inbox_prefix("_INBOX.certflow-reporter")
            .connect(&nats.url)
            .await
            .expect("reporter"),
    );
    let update = tokio::time::timeout(Duration::from_secs(10), reporter_js.update_stream(&shrunk))
        .await
        .map(|result| result.is_ok());
    assert_ne!(update, Ok(true), "the reporter updated the work stream");
    let kept = admin_js
        .get_stream("CERTFLOW_WORK")
        .await
        .expect("the work stream")
        .cached_info()
        .config
        .max_bytes;
    assert_eq!(
        kept, max_bytes,
        "the work stream's limits are the setup step's"
    );
    let as_watcher = as_watcher
        .await
        .expect("the task")
        .expect("setup-bus as the watcher's user ran");
    let stderr = String::from_utf8_lossy(&as_watcher.stderr);
    assert!(
        !as_watcher.status.success() && stderr.contains("`setup` user may create streams"),
        "setup-bus as the watcher's user: {as_watcher:?}"
    );
    // Nobody reads another service's replies (pulled work included).
    for (user, subject) in [
        ("setup", "_INBOX.certflow-watcher.>"),
        ("watcher", "_INBOX.certflow-setup.>"),
        ("watcher", "_INBOX.certflow-signer.>"),
        ("reporter", "_INBOX.certflow-signer.>"),
        ("signer", "_INBOX.>"),
    ] {
        refused(&nats, user, Ask::Subscribe, subject).await;
    }
    assert!(
        async_nats::connect(&nats.url).await.is_err(),
        "NATS must refuse clients without a user"
    );

    // KEDA's scaler reads the signer's lag from /jsz of the account, stream
    // and consumer named in the ScaledObject; they exist on the running bus.
    let keda = render(env, "deploy/optional/keda");
    let trigger =
        &find(&keda, "ScaledObject", "certflow-signer")["spec"]["triggers"][0]["metadata"];
    let (account, stream, consumer) = (
        trigger["account"].as_str().expect("account"),
        trigger["stream"].as_str().expect("stream"),
        trigger["consumer"].as_str().expect("consumer"),
    );
    let jsz = nats.jsz(account).await;
    assert!(
        consumer_detail(&jsz, account, stream, consumer).is_some(),
        "KEDA would not find account {account}, stream {stream}, consumer {consumer}: {jsz:#}"
    );

    for process in [&mut watcher, &mut signer, &mut reporter] {
        let status = process.terminate(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "{} did not stop cleanly on SIGTERM: {status:?}\n{}",
            process.name(),
            process.tail(20)
        );
    }
}

#[tokio::test]
async fn with_the_tls_component_a_service_reaches_nats_over_tls_trusting_only_the_mounted_ca() {
    let env = certflow_testenv::shared();
    install_base_rbac(env);
    let objects = render(env, "deploy/examples/nats-tls");
    let tls = TestTls::generate(env.dir().join(unique_name("deploy-tls")));
    let nats = Nats::start_with(env, &objects, Some(&tls)).await;
    let app = env.create_namespace("deploy-tls").await.expect("namespace");
    let log_dir = env.dir().join(unique_name("deploy-tls-services"));
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let kubeconfig = env
        .service_account_kubeconfig(NAMESPACE, "certflow-watcher")
        .await
        .expect("TokenRequest");

    // What the Component tells the watcher: a tls:// URL, and the CA and
    // client certificate files where it mounts the client Secret.
    let pod = &find(&objects, "Deployment", "certflow-watcher")["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let rendered_env = |wanted: &str| {
        container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == wanted)
            .and_then(|e| e["value"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("the TLS Component sets no {wanted}"))
    };
    let url = rendered_env("CERTFLOW_NATS_URL");
    assert!(url.starts_with("tls://"), "{url}");
    let mount = "/etc/certflow/nats-tls/";
    assert_eq!(
        secret_mounted_at(pod, mount).as_deref(),
        Some("certflow-nats-client-tls"),
        "the watcher's {mount} holds the client Secret"
    );
    // The rendered variables, with the mount replaced by this test's files.
    let tls_env = |names: &[&str]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|name| {
                let value = rendered_env(name);
                let file = value
                    .strip_prefix(mount)
                    .unwrap_or_else(|| panic!("{name}={value} is not under {mount}"));
                (
                    (*name).to_owned(),
                    tls.client_dir.join(file).display().to_string(),
                )
            })
            .collect()
    };

    // Without the CA the server's certificate is not trusted: no connection.
    let mut untrusting = start_service(
        &nats,
        &log_dir,
        "certflow-watcher",
        "watcher",
        &kubeconfig,
        &[
            format!("--watch-namespace={app}"),
            "--nats-connect-timeout=2s".to_owned(),
        ],
        &tls_env(&["CERTFLOW_NATS_TLS_CERT", "CERTFLOW_NATS_TLS_KEY"]),
    );
    let status = eventually("the watcher without the CA to give up", WAIT, || {
        let exited = match untrusting.check_running() {
            Err(certflow_testenv::Error::Exited { status, .. }) => Some(status),
            _ => None,
        };
        async move { exited }
    })
    .await;
    // The reason is the `Error: ...` line `main` prints on its way out, read
    // from the whole log: when RUST_BACKTRACE is set (the children inherit
    // it), anyhow appends a backtrace of some 60 lines after that line, so a
    // fixed-size tail holds only stack frames.
    let log = std::fs::read_to_string(untrusting.log_path()).expect("the watcher's log");
    let error = log
        .lines()
        .rev()
        .find(|line| line.starts_with("Error: "))
        .unwrap_or_default();
    assert!(
        status != "exit status: 0" && error.to_lowercase().contains("certificate"),
        "a watcher without the CA must fail on the server's certificate ({status}), \
         but its final error is {error:?}:\n{log}"
    );

    // The setup Job gets the same URL, variables and mount, and creates the
    // streams over TLS.
    let tls_variables = [
        "CERTFLOW_NATS_TLS_CA",
        "CERTFLOW_NATS_TLS_CERT",
        "CERTFLOW_NATS_TLS_KEY",
    ];
    let job = &find(&objects, "Job", "certflow-nats-setup")["spec"]["template"]["spec"];
    for name in std::iter::once("CERTFLOW_NATS_URL").chain(tls_variables) {
        let value = env_var(&job["containers"][0], name);
        assert_eq!(
            value.as_ref().and_then(|e| e["value"].as_str()),
            Some(rendered_env(name).as_str()),
            "the setup Job's {name}"
        );
    }
    assert_eq!(
        secret_mounted_at(job, mount).as_deref(),
        Some("certflow-nats-client-tls"),
        "the setup Job's {mount} holds the client Secret"
    );
    let printed = run_setup_job(&nats, &objects, &tls_env(&tls_variables));
    assert!(printed.contains("set up"), "{printed}");

    let watcher = start_service(
        &nats,
        &log_dir,
        "certflow-watcher",
        "watcher",
        &kubeconfig,
        &[format!("--watch-namespace={app}")],
        &tls_env(&tls_variables),
    );
    let what = format!("the watcher to connect over TLS\n{}", watcher.tail(30));
    let connection = eventually(&what, WAIT, || async {
        let connz = nats.monitoring("/connz?auth=true").await;
        connz["connections"]
            .as_array()?
            .iter()
            .find(|c| c["authorized_user"] == "watcher" && c["name"] == "certflow-watcher")
            .cloned()
    })
    .await;
    assert!(
        connection["tls_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "the watcher's connection is not TLS: {connection:#}"
    );
}

#[tokio::test]
async fn the_image_holds_every_binary_the_manifests_run_as_the_user_they_expect() {
    let env = certflow_testenv::shared();
    let objects = install_base_rbac(env);
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("COPY --from=builder /out/ /usr/local/bin/"),
        "the binaries land in /usr/local/bin"
    );
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the image sets USER");
    for deployment in objects
        .iter()
        .filter(|o| kind(o) == "Deployment" || kind(o) == "Job")
    {
        let pod = &deployment["spec"]["template"]["spec"];
        let command = strings(&pod["containers"][0]["command"]);
        let path = command.first().expect("an explicit command");
        let binary_name = path
            .strip_prefix("/usr/local/bin/")
            .unwrap_or_else(|| panic!("{path} is not in /usr/local/bin"));
        assert!(
            dockerfile.contains(&format!("-p {binary_name}"))
                && dockerfile.contains(&format!("target/release/{binary_name}")),
            "the Dockerfile does not build and copy {binary_name}"
        );
        let run_as = &pod["securityContext"];
        assert_eq!(
            format!("{}:{}", run_as["runAsUser"], run_as["runAsGroup"]),
            user,
            "{} runs as the image's user",
            name(deployment)
        );
    }
}

/// One file of an OCI image layout tar (`tar -xOf`).
fn tar_member(tar: &Path, member: &str) -> Vec<u8> {
    let output = run(
        std::process::Command::new("tar")
            .arg("-xOf")
            .arg(tar)
            .arg(member),
        "",
    );
    assert!(output.status.success(), "{member} in {}", tar.display());
    output.stdout
}

#[tokio::test]
async fn the_image_built_without_docker_is_the_one_the_dockerfile_describes() {
    let images = certflow_testenv::ProjectImages::locate()
        .unwrap_or_else(|err| panic!("the project's images: {err}"));
    let tar = &images.certflow.tar;
    let json = |bytes: Vec<u8>| -> Value { serde_json::from_slice(&bytes).expect("JSON") };
    let blob = |digest: &Value| {
        let digest = digest.as_str().expect("a digest");
        format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
    };
    let index = json(tar_member(tar, "index.json"));
    let manifest = json(tar_member(tar, &blob(&index["manifests"][0]["digest"])));
    let config = json(tar_member(tar, &blob(&manifest["config"]["digest"])))["config"].clone();
    let layer = blob(&manifest["layers"][0]["digest"]);
    let layer_path = std::env::temp_dir().join(unique_name("certflow-layer"));
    std::fs::write(&layer_path, tar_member(tar, &layer)).expect("layer");
    let files = run_ok(
        std::process::Command::new("tar")
            .arg("-tf")
            .arg(&layer_path),
        "",
    );
    std::fs::remove_file(&layer_path).expect("remove the layer");

    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    let last = |prefix: &str| -> String {
        dockerfile
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("the Dockerfile has {prefix}"))
            .to_owned()
    };
    assert_eq!(config["User"], last("USER "), "the same user");
    let command: Value = serde_json::from_str(&last("CMD ")).expect("CMD is JSON");
    assert_eq!(config["Cmd"], command, "the same command");
    let entrypoint: Value = serde_json::from_str(&last("ENTRYPOINT ")).expect("ENTRYPOINT is JSON");
    assert_eq!(
        config["Entrypoint"], entrypoint,
        "the same (empty) entrypoint"
    );
    let exposed: BTreeSet<String> = last("EXPOSE ")
        .split_whitespace()
        .map(|port| format!("{port}/tcp"))
        .collect();
    let image_exposed: BTreeSet<String> = config["ExposedPorts"]
        .as_object()
        .expect("ExposedPorts")
        .keys()
        .cloned()
        .collect();
    assert_eq!(image_exposed, exposed, "the same ports");
    let copied: BTreeSet<&str> = dockerfile
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("target/release/"))
        .collect();
    assert_eq!(
        copied.len(),
        3,
        "the Dockerfile copies three binaries: {copied:?}"
    );
    for binary in copied {
        assert!(
            files
                .lines()
                .any(|f| f == format!("./usr/local/bin/{binary}")),
            "the image holds /usr/local/bin/{binary}:\n{files}"
        );
    }
    let binaries = files
        .lines()
        .filter(|f| f.starts_with("./usr/local/bin/") && !f.ends_with('/'))
        .count();
    assert_eq!(binaries, 3, "and nothing else in /usr/local/bin:\n{files}");
}
