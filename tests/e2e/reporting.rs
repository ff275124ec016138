//! Errors reach app owners: a broken ServiceCertificate → watcher → signer →
//! JetStream → certflow-reporter → Events that `kubectl describe` prints on
//! the Pods consuming the Secret, their Deployment and the ServiceCertificate
//! itself. Real processes against the real local control plane; assertions
//! are on kubectl's printed output wherever an app owner would read it.

use std::collections::BTreeMap;
use std::time::Duration;

use certflow_api::{IssuerPolicy, IssuerRef, ServiceCertificate, ServiceCertificateSpec};
use certflow_bus::{Publisher, Topology, TraceId};
use certflow_e2e::report_api::{self, report};
use certflow_e2e::tenant::Tenant;
use certflow_e2e::workload::consuming_pod;
use certflow_e2e::{eventually, run_ok};
use certflow_proto::v1::{EventType, Failed, Outcome, SCHEMA_VERSION, outcome};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt as _;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};

const WAIT: Duration = Duration::from_secs(60);

// One test's tenant, with what the reporting tests ask of it.
certflow_e2e::tenant_fixture!(Fixture);

impl Fixture {
    async fn start(prefix: &str) -> Self {
        Self::start_with_reporter(prefix, &[]).await
    }

    /// A fixture whose reporter gets `reporter_args` on top of the defaults.
    async fn start_with_reporter(prefix: &str, reporter_args: &[&str]) -> Self {
        let policy = IssuerPolicy {
            allowed_dns_names: vec![
                "*.{namespace}.svc".into(),
                "*.{namespace}.svc.cluster.local".into(),
            ],
            ..IssuerPolicy::default()
        };
        let tenant = Tenant::builder(prefix)
            .reporter_args(reporter_args)
            // A name no other test's CA is close to, so "did you mean" is ours.
            .issuer_prefix("internal-authority")
            .policy(policy)
            .start()
            .await;
        Self(tenant)
    }

    fn pods(&self) -> Api<Pod> {
        self.api()
    }

    fn events(&self) -> Api<Event> {
        self.api()
    }

    async fn apply_certificate(&self, name: &str, secret_name: &str, dns_name: &str, issuer: &str) {
        let spec = ServiceCertificateSpec {
            secret_name: secret_name.into(),
            dns_names: vec![dns_name.into()],
            issuer_ref: Some(IssuerRef::named(issuer)),
            ..ServiceCertificateSpec::default()
        };
        self.apply(name, spec).await;
    }

    /// `kubectl apply` of `manifest` in the test's namespace.
    fn kubectl_apply(&self, manifest: &str) {
        run_ok(
            self.env
                .kubectl()
                .args(["apply", "-n", self.namespace(), "-f", "-"]),
            manifest,
        );
    }

    /// `kubectl describe <resource> <name>`, as printed.
    fn describe(&self, resource: &str, name: &str) -> String {
        run_ok(
            self.env
                .kubectl()
                .args(["describe", resource, name, "-n", self.namespace()]),
            "",
        )
    }

    /// Waits until `kubectl describe <resource> <name>` prints an Event line
    /// of `type_` from certflow-reporter that contains every one of
    /// `texts`, and returns that line.
    async fn described_event(
        &self,
        resource: &str,
        name: &str,
        type_: &str,
        texts: &[&str],
    ) -> String {
        let mut last = String::new();
        let found = tokio::time::timeout(WAIT, async {
            loop {
                last = self.describe(resource, name);
                if let Some(line) = reporter_event_line(&last, type_, texts) {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "kubectl describe {resource} {name} never printed a {type_} event from \
                 certflow-reporter containing {texts:?}; last output:\n{last}\n{}",
                self.services.logs()
            )
        })
    }

    /// The names of the Pods labelled `app=<app>`, once there are `count`.
    async fn pods_of(&self, app: &str, count: usize) -> Vec<String> {
        let pods = self.pods();
        let selector = format!("app={app}");
        eventually(&format!("{count} Pods of {app}"), WAIT, || async {
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            let names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
            (names.len() == count).then_some(names)
        })
        .await
    }

    async fn uid_of_pod(&self, name: &str) -> String {
        self.pods()
            .get(name)
            .await
            .expect("Pod")
            .uid()
            .expect("uid")
    }

    /// Events from certflow-reporter about the object `uid`.
    async fn reporter_events(&self, uid: &str) -> Vec<Event> {
        let fields = format!("regarding.uid={uid},reportingController=certflow-reporter");
        self.events()
            .list(&ListParams::default().fields(&fields))
            .await
            .expect("list Events")
            .items
    }
}

/// The line of `kubectl describe` output, in its Events section, that is an
/// Event of `type_` from certflow-reporter containing every one of `texts`.
fn reporter_event_line(output: &str, type_: &str, texts: &[&str]) -> Option<String> {
    let events = output.split("\nEvents:").nth(1)?;
    events
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with(type_) && line.contains("certflow-reporter"))
        .find(|line| texts.iter().all(|text| line.contains(text)))
        .map(str::to_owned)
}

/// A Deployment whose Pods mount Secret `secret_name` as a volume.
fn deployment(name: &str, secret_name: &str, replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: app
          image: registry.example/app:1
          volumeMounts: [{{name: tls, mountPath: /etc/tls, readOnly: true}}]
      volumes:
        - name: tls
          secret: {{secretName: {secret_name}}}
"#
    )
}

/// A bare Pod whose only container has `container_extra` (YAML at the
/// container's indentation) and whose spec has `spec_extra`.
fn pod(name: &str, container_extra: &str, spec_extra: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
    - name: app
      image: registry.example/app:1
{container_extra}
{spec_extra}
"#
    )
}

#[tokio::test]
async fn a_dns_name_typo_is_printed_by_kubectl_describe_on_the_pod_the_deployment_and_the_certificate()
 {
    let fx = Fixture::start("typo").await;
    let ns = fx.namespace().to_owned();
    fx.kubectl_apply(&deployment("web", "web-tls", 1));
    let pods = fx.pods_of("web", 1).await;
    let typo = format!("web.{ns}.svc.cluster.locl");
    fx.apply_certificate("web", "web-tls", &typo, &fx.issuer)
        .await;

    let expected = ["spec.dnsNames[0]", typo.as_str(), "did you mean"];
    let on_pod = fx
        .described_event("pod", &pods[0], "Warning", &expected)
        .await;
    assert!(
        on_pod.contains(&format!("did you mean \"web.{ns}.svc.cluster.local\"?")),
        "the suggested fix is the allowed name: {on_pod}"
    );
    fx.described_event("deployment", "web", "Warning", &expected)
        .await;
    let on_certificate = fx
        .described_event("scert", "web", "Warning", &expected)
        .await;
    assert_eq!(
        on_pod.split_whitespace().nth(1),
        on_certificate.split_whitespace().nth(1),
        "the same reason everywhere"
    );
}

#[tokio::test]
async fn an_unknown_issuer_reaches_pods_consuming_the_secret_only_through_a_projected_volume_or_an_env_var()
 {
    let fx = Fixture::start("issuer").await;
    let ns = fx.namespace().to_owned();
    fx.kubectl_apply(&pod(
        "projected",
        "",
        "  volumes:\n    - name: all\n      projected:\n        sources:\n          - secret: {name: api-tls}",
    ));
    fx.kubectl_apply(&pod(
        "env",
        "      env:\n        - name: CA\n          valueFrom: {secretKeyRef: {name: api-tls, key: ca.crt}}",
        "",
    ));
    // One letter missing from the real CertificateAuthority's name.
    let misspelled = fx.issuer.replacen("authority", "authorty", 1);
    fx.apply_certificate("api", "api-tls", &format!("api.{ns}.svc"), &misspelled)
        .await;

    let expected = [
        "IssuerNotFound",
        "spec.issuerRef.name",
        misspelled.as_str(),
        "did you mean",
        fx.issuer.as_str(),
    ];
    fx.described_event("pod", "projected", "Warning", &expected)
        .await;
    fx.described_event("pod", "env", "Warning", &expected).await;
    fx.described_event("scert", "api", "Warning", &expected)
        .await;
}

#[tokio::test]
async fn a_pod_created_later_gets_the_current_warning_and_a_bystander_gets_none() {
    let fx = Fixture::start("late").await;
    // A name from another namespace: the policy allows only this one's.
    let foreign = "db.other-team.svc";
    fx.apply_certificate("db", "db-tls", foreign, &fx.issuer)
        .await;
    let expected = ["spec.dnsNames[0]", foreign];
    fx.described_event("scert", "db", "Warning", &expected)
        .await;

    // The step that must wait: the Pod has to appear well after the failure.
    tokio::time::sleep(Duration::from_secs(10)).await;
    fx.kubectl_apply(&pod(
        "bystander",
        "      envFrom: [{secretRef: {name: unrelated}}]",
        "",
    ));
    fx.kubectl_apply(&pod(
        "late",
        "      volumeMounts: [{name: tls, mountPath: /etc/tls}]",
        "  volumes: [{name: tls, secret: {secretName: db-tls}}]",
    ));
    fx.described_event("pod", "late", "Warning", &expected)
        .await;

    // The bystander appeared first; had it been told anything, it would be
    // visible by now.
    let bystander = fx.describe("pod", "bystander");
    assert!(
        !bystander.contains("certflow-reporter"),
        "a Pod that does not use the Secret gets nothing:\n{bystander}"
    );
    let uid = fx.uid_of_pod("bystander").await;
    assert!(fx.reporter_events(&uid).await.is_empty());
}

#[tokio::test]
async fn a_pod_that_starts_after_its_failing_certificate_was_deleted_gets_no_warning() {
    let fx = Fixture::start("deleted").await;
    let ns = fx.namespace().to_owned();
    let foreign = "db.other-team.svc";
    fx.apply_certificate("db", "db-tls", foreign, &fx.issuer)
        .await;
    fx.described_event("scert", "db", "Warning", &["spec.dnsNames[0]", foreign])
        .await;

    // Nothing says the certificate is failing any more once it is gone.
    let scerts = fx.scerts();
    scerts
        .delete("db", &kube::api::DeleteParams::default())
        .await
        .expect("delete the ServiceCertificate");
    eventually("the ServiceCertificate to be gone", WAIT, || async {
        scerts.get_opt("db").await.ok()?.is_none().then_some(())
    })
    .await;
    fx.kubectl_apply(&pod(
        "late",
        "      volumeMounts: [{name: tls, mountPath: /etc/tls}]",
        "  volumes: [{name: tls, secret: {secretName: db-tls}}]",
    ));

    // Once a report reaches the Pod, the reporter has seen it appear and
    // chose not to warn it.
    let client = grpc_client(&fx, 0).await;
    eventually("a report to reach the new Pod", WAIT, || {
        let request = report(&ns, "db-tls", "MarkerReported");
        let mut client = client.clone();
        let pods = fx.pods();
        async move {
            pods.get("late").await.ok()?;
            let response = client.report(request).await.ok()?;
            (response.into_inner().recipients >= 1).then_some(())
        }
    })
    .await;
    let late = fx.describe("pod", "late");
    assert!(
        reporter_event_line(&late, "Normal", &["MarkerReported"]).is_some(),
        "{late}"
    );
    assert!(
        reporter_event_line(&late, "Warning", &[]).is_none(),
        "no Warning about a deleted certificate:\n{late}"
    );
}

#[tokio::test]
async fn a_changed_mistake_shows_its_new_message_and_fixing_it_brings_ready_a_normal_event_and_no_more_warnings()
 {
    let fx = Fixture::start("fix").await;
    let ns = fx.namespace().to_owned();
    fx.kubectl_apply(&deployment("shop", "shop-tls", 1));
    let pods = fx.pods_of("shop", 1).await;
    let typo = format!("shop.{ns}.svc.cluster.locl");
    fx.apply_certificate("shop", "shop-tls", &typo, &fx.issuer)
        .await;
    fx.described_event("pod", &pods[0], "Warning", &[typo.as_str()])
        .await;

    // A different mistake is a different message, and kubectl shows it.
    let second_typo = format!("shop.{ns}.svc.clustr.local");
    fx.apply_certificate("shop", "shop-tls", &second_typo, &fx.issuer)
        .await;
    fx.described_event("pod", &pods[0], "Warning", &[second_typo.as_str()])
        .await;

    fx.apply_certificate("shop", "shop-tls", &format!("shop.{ns}.svc"), &fx.issuer)
        .await;
    let scerts = fx.scerts();
    eventually("the ServiceCertificate to be Ready", WAIT, || async {
        let scert = scerts.get("shop").await.ok()?;
        scert.ready_condition()?.is_true().then_some(())
    })
    .await;
    let ready = fx.describe("scert", "shop");
    assert!(ready.contains("True"), "Ready=True is printed:\n{ready}");
    let issued = ["Issued", "shop-tls", "is resolved"];
    fx.described_event("scert", "shop", "Normal", &issued).await;
    fx.described_event("pod", &pods[0], "Normal", &issued).await;
    fx.described_event("deployment", "shop", "Normal", &issued)
        .await;

    // The failure is no longer active, for this reporter or any other: the
    // ServiceCertificate's status, which every replica reads, says so.
    let fixed = scerts.get("shop").await.expect("ServiceCertificate");
    assert_eq!(
        fixed.status.as_ref().and_then(|s| s.last_failure.as_ref()),
        None,
        "the issuance cleared status.lastFailure"
    );

    // A Pod that starts now is not warned: once the reporter has reported
    // something else to it, it has seen the Pod and chose not to warn it.
    let pod_uid = fx.uid_of_pod(&pods[0]).await;
    let warnings_before = warning_counts(&fx.reporter_events(&pod_uid).await);
    fx.kubectl_apply(&pod(
        "after-fix",
        "      envFrom: [{secretRef: {name: shop-tls}}]",
        "",
    ));
    let client = grpc_client(&fx, 0).await;
    eventually("a report to reach the new Pod", WAIT, || {
        let request = report(&ns, "shop-tls", "MarkerReported");
        let mut client = client.clone();
        let pods = fx.pods();
        async move {
            pods.get("after-fix").await.ok()?;
            let response = client.report(request).await.ok()?;
            let recipients = response.into_inner().recipients;
            // The ServiceCertificate, two Pods and the Deployment.
            (recipients >= 4).then_some(())
        }
    })
    .await;
    let after_fix = fx.describe("pod", "after-fix");
    assert!(
        reporter_event_line(&after_fix, "Normal", &["MarkerReported"]).is_some(),
        "{after_fix}"
    );
    assert!(
        reporter_event_line(&after_fix, "Warning", &[]).is_none(),
        "no Warning after the fix:\n{after_fix}"
    );
    let warnings_after = warning_counts(&fx.reporter_events(&pod_uid).await);
    assert_eq!(warnings_before, warnings_after, "no Warning repeated");
}

/// Name and series count of each Warning among `events`.
fn warning_counts(events: &[Event]) -> BTreeMap<String, i32> {
    events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| (e.name_any(), e.series.as_ref().map_or(1, |s| s.count)))
        .collect()
}

/// A client of reporter `index`'s Report API, authenticated as a
/// ServiceAccount of the test's namespace that may report about it. The API
/// is served only once the reporter's Pod index is in sync, so a connection
/// means it is ready.
async fn grpc_client(fx: &Fixture, index: usize) -> report_api::Client {
    let port = fx.services.reporters[index].grpc_port.expect("gRPC port");
    report_api::granted_client(fx.env, port, fx.namespace(), "control-plane").await
}

#[tokio::test]
async fn the_report_api_reaches_the_consumers_of_a_secret_and_refuses_malformed_requests() {
    let fx = Fixture::start("grpc").await;
    let ns = fx.namespace().to_owned();
    fx.kubectl_apply(&deployment("cache", "cache-tls", 2));
    let pods = fx.pods_of("cache", 2).await;
    let mut client = grpc_client(&fx, 0).await;

    let mut bad = report(&ns, "cache-tls", "not a word");
    bad.r#type = EventType::Warning.into();
    let refused = client.report(bad).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    let mut warning = report(&ns, "cache-tls", "QuotaExceeded");
    warning.r#type = EventType::Warning.into();
    warning.message = "The namespace has used its certificate quota.".into();
    warning.suggestion = "delete ServiceCertificates you no longer use".into();
    eventually(
        "the Report to reach both Pods and the Deployment",
        WAIT,
        || {
            let mut client = client.clone();
            let warning = warning.clone();
            async move {
                let recipients = client.report(warning).await.ok()?.into_inner().recipients;
                (recipients == 3).then_some(())
            }
        },
    )
    .await;
    let expected = [
        "QuotaExceeded",
        "certificate quota",
        "delete ServiceCertificates",
    ];
    for pod in &pods {
        fx.described_event("pod", pod, "Warning", &expected).await;
    }
    fx.described_event("deployment", "cache", "Warning", &expected)
        .await;
}

#[tokio::test]
async fn a_thousand_repeats_leave_one_event_per_object_with_a_growing_count_within_the_rate_limit()
{
    // Series updates as fast as the rate limit allows, so that the limit
    // (burst 25, then one per five minutes) is what bounds the writes.
    let fx = Fixture::start_with_reporter("repeats", &["--series-interval=0s"]).await;
    let ns = fx.namespace().to_owned();
    fx.kubectl_apply(&deployment("api", "api-tls", 2));
    let pods = fx.pods_of("api", 2).await;
    let typo = format!("api.{ns}.svc.cluster.locl");
    fx.apply_certificate("api", "api-tls", &typo, &fx.issuer)
        .await;
    fx.described_event("deployment", "api", "Warning", &[typo.as_str()])
        .await;

    let scert = fx.scerts().get("api").await.expect("ServiceCertificate");
    let reason = last_failure(&scert).reason;
    let mut recipients: Vec<String> = Vec::new();
    for pod in &pods {
        recipients.push(fx.uid_of_pod(pod).await);
    }
    recipients.push(scert.uid().expect("uid"));
    let deployment = fx
        .api::<k8s_openapi::api::apps::v1::Deployment>()
        .get("api")
        .await
        .expect("Deployment");
    recipients.push(deployment.uid().expect("uid"));

    // Every write from here on, as the API server sees it.
    let since = fx
        .events()
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("resourceVersion");
    let (written, mut writes) = tokio::sync::mpsc::unbounded_channel();
    let events = fx.events();
    let watch = tokio::spawn(async move {
        let mut stream = events
            .watch(&WatchParams::default().timeout(110), &since)
            .await
            .expect("watch Events")
            .boxed();
        while let Some(Ok(event)) = stream.next().await {
            if let WatchEvent::Added(e) | WatchEvent::Modified(e) = event {
                let uid = e.regarding.as_ref().and_then(|r| r.uid.clone());
                let count = e.series.as_ref().map_or(1, |s| s.count);
                let _ = written.send((uid.unwrap_or_default(), count));
            }
        }
    });

    repeat_failure(&fx, &scert, 0..1000).await;

    let reporter = &fx.services.reporters[0];
    eventually("the reporter to handle the 1000 repeats", WAIT, || async {
        let handled = reporter
            .metric_sum("certflow_reporter_outcomes_total")
            .await;
        (handled >= 1001.0).then_some(())
    })
    .await;
    let rate_limited = reporter
        .metric_sum("certflow_reporter_events_rate_limited_total")
        .await;
    assert!(
        rate_limited >= 4.0 * 900.0,
        "most repeats were held back by the rate limit: {rate_limited}"
    );

    for uid in &recipients {
        let warnings: Vec<Event> = fx
            .reporter_events(uid)
            .await
            .into_iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .collect();
        assert_eq!(warnings.len(), 1, "one Event for {uid}: {warnings:?}");
    }
    // Burst 25: the create and 24 series updates, each with a higher count.
    let printed = fx
        .described_event("pod", &pods[0], "Warning", &["(x25 over", typo.as_str()])
        .await;
    assert!(printed.contains(&reason), "{printed}");

    watch.abort();
    let mut counts: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    while let Ok((uid, count)) = writes.try_recv() {
        counts.entry(uid).or_default().push(count);
    }
    for uid in &recipients {
        let seen = counts.get(uid).cloned().unwrap_or_default();
        assert!(
            !seen.is_empty() && seen.len() <= 25,
            "{uid}: between 1 and 25 writes after the first failure, not {}: {seen:?}",
            seen.len()
        );
        assert!(
            seen.windows(2).all(|pair| pair[0] < pair[1]),
            "{uid}: the count grows with every write: {seen:?}"
        );
        assert_eq!(seen.last(), Some(&25), "{uid}: {seen:?}");
    }
}

/// The failure the signer recorded in `scert`'s status.
fn last_failure(scert: &ServiceCertificate) -> certflow_api::Failure {
    scert
        .status
        .as_ref()
        .and_then(|s| s.last_failure.clone())
        .expect("status.lastFailure")
}

/// Publishes the failure recorded in `scert`'s status again, once for each
/// of `attempts`, as the signer would on a repeat.
async fn repeat_failure(fx: &Fixture, scert: &ServiceCertificate, attempts: std::ops::Range<u32>) {
    let failure = last_failure(scert);
    let nats = async_nats::connect(fx.env.nats_url()).await.expect("NATS");
    let topology = Topology::new(&fx.services.bus_prefix).expect("topology");
    let publisher = Publisher::new(async_nats::jetstream::new(nats), topology);
    let trace = TraceId::generate();
    for attempt in attempts {
        let outcome = Outcome {
            schema_version: SCHEMA_VERSION,
            namespace: fx.namespace().to_owned(),
            name: scert.name_any(),
            uid: scert.uid().expect("uid"),
            generation: scert.metadata.generation.unwrap_or_default(),
            secret_name: scert.spec.secret_name.clone(),
            result: Some(outcome::Result::Failed(Failed {
                reason: failure.reason.clone(),
                field_path: failure.field_path.clone().unwrap_or_default(),
                value: failure.value.clone().unwrap_or_default(),
                message: failure.message.clone(),
                suggestion: String::new(),
                permanent: true,
                attempts: attempt + 2,
            })),
            occurred_at: Some(std::time::SystemTime::now().into()),
            work_id: "e2e-repeats".into(),
        };
        let receipt = publisher
            .publish_outcome(&outcome, &trace)
            .await
            .expect("publish");
        assert!(!receipt.duplicate);
    }
}

/// The series count of the one Warning from certflow-reporter about `uid`.
async fn warning_count(fx: &Fixture, uid: &str) -> Option<i32> {
    let warnings: Vec<Event> = fx
        .reporter_events(uid)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    assert!(
        warnings.len() <= 1,
        "one Warning Event about {uid}: {warnings:?}"
    );
    warnings
        .first()
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
}

/// Every outcome published so far in the test's outcome stream, which keeps
/// them after they are consumed (limits retention). In a test with a single
/// refused ServiceCertificate, each one is an observation of its refusal:
/// the signer's own (the first refusal, and each re-examination of the
/// refused request re-publishes it, at least every `--failure-retry`) and
/// those of [`repeat_failure`].
async fn outcomes_published(js: &async_nats::jetstream::Context, fx: &Fixture) -> i32 {
    let topology = Topology::new(&fx.services.bus_prefix).expect("topology");
    let mut stream = js
        .get_stream(topology.outcome_stream())
        .await
        .expect("the outcome stream");
    let messages = stream.info().await.expect("stream info").state.messages;
    i32::try_from(messages).expect("a small count")
}

/// Waits until the one Warning about each of `uids` counts every refusal
/// published so far, and returns that count. The signer re-publishes on its
/// own schedule, so the expected count is read again on every attempt.
async fn counts_every_refusal(
    fx: &Fixture,
    js: &async_nats::jetstream::Context,
    what: &str,
    uids: &[String],
) -> i32 {
    let mut last = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let published = outcomes_published(js, fx).await;
            last.clear();
            for uid in uids {
                last.push(warning_count(fx, uid).await);
            }
            if last.iter().all(|count| *count == Some(published)) {
                return published;
            }
            last.push(Some(published));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!(
            "{what}: the Warnings about {uids:?} never counted every refusal published; \
             last counts, then refusals published: {last:?}\n{}",
            fx.services.logs()
        )
    })
}

#[tokio::test]
async fn a_second_reporter_knows_the_failures_from_status_and_continues_the_same_events() {
    let mut fx = Fixture::start_with_reporter("replicas", &["--series-interval=0s"]).await;
    let ns = fx.namespace().to_owned();
    let js =
        async_nats::jetstream::new(async_nats::connect(fx.env.nats_url()).await.expect("NATS"));
    fx.kubectl_apply(&deployment("pay", "pay-tls", 1));
    let pods = fx.pods_of("pay", 1).await;
    let typo = format!("pay.{ns}.svc.cluster.locl");
    fx.apply_certificate("pay", "pay-tls", &typo, &fx.issuer)
        .await;
    fx.described_event("pod", &pods[0], "Warning", &[typo.as_str()])
        .await;
    let scert = fx.scerts().get("pay").await.expect("ServiceCertificate");
    let pod_uid = fx.uid_of_pod(&pods[0]).await;
    let deployment = fx
        .api::<k8s_openapi::api::apps::v1::Deployment>()
        .get("pay")
        .await
        .expect("Deployment");
    let recipients = [
        pod_uid.clone(),
        scert.uid().expect("uid"),
        deployment.uid().expect("uid"),
    ];

    // Every observation is counted: the signer's refusals (it re-publishes
    // a persisting one when the watcher re-examines it) and ten repeats.
    repeat_failure(&fx, &scert, 0..10).await;
    let before = counts_every_refusal(&fx, &js, "the first reporter", &recipients).await;
    assert!(
        before >= 11,
        "at least the refusal and ten repeats: {before}"
    );

    // Nothing re-examines the refusal for a while (the watcher's default
    // --failure-retry is ten minutes), so what the next replica tells Pods
    // comes from the ServiceCertificate's status alone.
    fx.services.kill_watcher();

    // The first replica stops (as in a rollout); a second one starts with
    // nothing in memory.
    let exit = fx.services.reporters[0]
        .process
        .terminate(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|status| status.success()),
        "the first reporter drains and exits cleanly on SIGTERM: {exit:?}\n{}",
        fx.services.logs()
    );
    // A Pod that starts while no replica runs is told by the next one.
    fx.kubectl_apply(&pod(
        "meanwhile",
        "      envFrom: [{secretRef: {name: pay-tls}}]",
        "",
    ));
    fx.pods().get("meanwhile").await.expect("Pod meanwhile");
    fx.services
        .add_reporter_with_args(&["--series-interval=0s"]);
    grpc_client(&fx, 1).await;

    // It read the failure from the ServiceCertificate's status: a Pod
    // starting now is warned.
    fx.kubectl_apply(&pod(
        "newcomer",
        "      volumeMounts: [{name: tls, mountPath: /etc/tls}]",
        "  volumes: [{name: tls, secret: {secretName: pay-tls}}]",
    ));
    fx.described_event("pod", "newcomer", "Warning", &[typo.as_str()])
        .await;
    fx.described_event("pod", "meanwhile", "Warning", &[typo.as_str()])
        .await;
    fx.services.start_watcher();

    // Its repeats continue the first replica's Events instead of adding new
    // ones (`warning_count` fails on a second Warning) or starting a count
    // of their own.
    repeat_failure(&fx, &scert, 10..20).await;
    let after = counts_every_refusal(&fx, &js, "the second reporter", &recipients).await;
    assert!(
        after >= before + 10,
        "the ten repeats came on top of the first reporter's {before}: {after}"
    );
    eventually(
        "kubectl describe to print the Pod's Warning with every observation counted",
        WAIT,
        || async {
            let count = warning_count(&fx, &pod_uid).await?;
            let described = fx.describe("pod", &pods[0]);
            let counted = format!("(x{count} over");
            reporter_event_line(&described, "Warning", &[counted.as_str(), typo.as_str()])
        },
    )
    .await;
}

/// A Pod that appears after a failure's outcome was handled but before the
/// failing status reached the reporter (the signer publishes the outcome,
/// then writes the status) is told once the status says so. No signer runs
/// here: the test publishes the outcome and writes the status itself, with
/// the Pod created between the two, which a signer leaves to chance.
#[tokio::test]
async fn a_pod_appearing_between_the_outcome_and_the_failing_status_is_told() {
    let env = certflow_testenv::shared();
    let ns = env.create_namespace("gap").await.expect("namespace");
    let mut services = certflow_e2e::services::Services::start(env, &ns, 0).await;
    let client = env.client().await.expect("client");
    let scerts: Api<ServiceCertificate> = Api::namespaced(client.clone(), &ns);
    let scert = scerts
        .create(
            &kube::api::PostParams::default(),
            &ServiceCertificate::new(
                "gap",
                ServiceCertificateSpec {
                    secret_name: "gap-tls".into(),
                    dns_names: vec![format!("gap.{ns}.svc")],
                    issuer_ref: Some(IssuerRef::named("no-such-ca")),
                    ..ServiceCertificateSpec::default()
                },
            ),
        )
        .await
        .expect("create the ServiceCertificate");
    eventually("the reporter to be ready", WAIT, || async {
        services.reporters[0].serving().await.filter(|s| *s)
    })
    .await;

    let failed = Failed {
        reason: "IssuerNotFound".into(),
        field_path: "spec.issuerRef.name".into(),
        value: "no-such-ca".into(),
        message: "CertificateAuthority \"no-such-ca\" does not exist".into(),
        suggestion: String::new(),
        permanent: true,
        attempts: 1,
    };
    let nats = async_nats::connect(env.nats_url()).await.expect("NATS");
    let topology = Topology::new(&services.bus_prefix).expect("topology");
    Publisher::new(async_nats::jetstream::new(nats), topology)
        .publish_outcome(
            &Outcome {
                schema_version: SCHEMA_VERSION,
                namespace: ns.clone(),
                name: "gap".into(),
                uid: scert.uid().expect("uid"),
                generation: scert.metadata.generation.unwrap_or_default(),
                secret_name: "gap-tls".into(),
                result: Some(outcome::Result::Failed(failed.clone())),
                occurred_at: Some(std::time::SystemTime::now().into()),
                work_id: "e2e-gap".into(),
            },
            &TraceId::generate(),
        )
        .await
        .expect("publish the outcome");
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let warned = |name: &'static str| {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|e| e.reporting_controller.as_deref() == Some("certflow-reporter"))
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
                .find(|e| e.reason.as_deref() == Some("IssuerNotFound"))
        }
    };
    eventually(
        "the outcome's Warning on the ServiceCertificate",
        WAIT,
        || warned("gap"),
    )
    .await;

    // The Pod appears now: the outcome has told everyone it knew of, and
    // the status does not say "failing" yet.
    Api::<Pod>::namespaced(client.clone(), &ns)
        .create(
            &kube::api::PostParams::default(),
            &consuming_pod("gap-app", "gap-tls"),
        )
        .await
        .expect("create the Pod");
    let reporter = &services.reporters[0];
    eventually("the reporter to index the Pod", WAIT, || async {
        (reporter.metric_sum("certflow_reporter_pods_indexed").await >= 1.0).then_some(())
    })
    .await;
    assert!(
        warned("gap-app").await.is_none(),
        "indexed, and not told while the status does not say failing"
    );

    // The signer's status write, late.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = serde_json::json!({"status": {
        "conditions": [{"type": "Ready", "status": "False", "reason": failed.reason,
            "message": failed.message, "lastTransitionTime": now}],
        "lastFailure": {"reason": failed.reason, "message": failed.message,
            "fieldPath": failed.field_path, "value": failed.value, "time": now},
    }});
    scerts
        .patch_status(
            "gap",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .expect("write the failing status");
    let told = eventually(
        "the Pod's Warning once the status says failing",
        WAIT,
        || warned("gap-app"),
    )
    .await;
    assert_eq!(
        told.series.map_or(1, |s| s.count),
        1,
        "told once: {:?}",
        told.note
    );
    services.stop();
}
