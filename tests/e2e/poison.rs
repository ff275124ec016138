//! Poison work: an item that cannot be decoded, or one that fails on every
//! delivery, ends after a bounded number of deliveries in the dead-letter
//! stream, is counted, is reported to its owner where it names one, and
//! never holds up the work behind it. One that fails in a way no retry
//! fixes (an admission policy refusing the Secret) ends on its first.
//! Services run with a short retry schedule (`--bus-max-deliver=3
//! --bus-retry-delays=200ms`), the same flags an operator would set.

use std::ops::Deref;
use std::time::Duration;

use certflow_api::{IssuerRef, ServiceCertificate, ServiceCertificateSpec};
use certflow_bus::Topology;
use certflow_e2e::eventually;
use certflow_e2e::services::sum_metric;
use certflow_e2e::tenant::Tenant;
use certflow_proto::v1::DeadLetter;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaSpec, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use prost::Message as _;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const MAX_DELIVER: u32 = 3;
const RETRY_ARGS: [&str; 2] = ["--bus-max-deliver=3", "--bus-retry-delays=200ms"];

/// One test's tenant, and a JetStream client to read its dead letters.
struct Fixture {
    tenant: Tenant,
    topology: Topology,
    js: async_nats::jetstream::Context,
}

impl Deref for Fixture {
    type Target = Tenant;
    fn deref(&self) -> &Tenant {
        &self.tenant
    }
}

impl Fixture {
    async fn start(prefix: &str) -> Self {
        let tenant = Tenant::builder(prefix)
            .common_args(&RETRY_ARGS)
            .issuer_prefix("poison-ca")
            .start()
            .await;
        let topology = Topology::new(&tenant.services.bus_prefix).expect("topology");
        let nats = async_nats::connect(tenant.env.nats_url())
            .await
            .expect("NATS");
        Self {
            tenant,
            topology,
            js: async_nats::jetstream::new(nats),
        }
    }

    async fn create(&self, name: &str) {
        let scert = ServiceCertificate::new(
            name,
            ServiceCertificateSpec {
                secret_name: format!("{name}-tls"),
                dns_names: vec![format!("{name}.{}.svc", self.namespace())],
                issuer_ref: Some(IssuerRef::named(self.issuer.clone())),
                ..ServiceCertificateSpec::default()
            },
        );
        self.scerts()
            .create(&PostParams::default(), &scert)
            .await
            .expect("create ServiceCertificate");
    }

    /// Waits until `name`'s Ready condition has `reason`; returns its message.
    async fn ready_reason(&self, name: &str, reason: &str) -> String {
        let api = self.scerts();
        eventually(
            &format!(
                "{name} to have Ready reason {reason}\n{}",
                self.services.logs()
            ),
            WAIT,
            || async {
                let scert = api.get(name).await.ok()?;
                let ready = scert.ready_condition()?;
                (ready.reason == reason).then(|| ready.message.clone())
            },
        )
        .await
    }

    /// Every message in the dead-letter stream, decoded.
    async fn dead_letters(&self) -> Vec<DeadLetter> {
        let Ok(stream) = self.js.get_stream(self.topology.dead_letter_stream()).await else {
            return Vec::new();
        };
        let mut letters = Vec::new();
        for sequence in 1.. {
            match stream.get_raw_message(sequence).await {
                Ok(raw) => letters.push(DeadLetter::decode(raw.payload).expect("a DeadLetter")),
                Err(_) => break,
            }
        }
        letters
    }

    async fn dead_letter_on(&self, subject: &str) -> DeadLetter {
        eventually(
            &format!("a dead letter from {subject}\n{}", self.services.logs()),
            WAIT,
            || async {
                self.dead_letters()
                    .await
                    .into_iter()
                    .find(|letter| letter.original_subject == subject)
            },
        )
        .await
    }
}

#[tokio::test]
async fn undecodable_work_and_outcomes_are_dead_lettered_counted_and_do_not_block_the_queue() {
    let fx = Fixture::start("undecodable").await;
    let work = fx
        .topology
        .work_subject(fx.namespace(), "garbage")
        .expect("subject");
    let outcome = fx
        .topology
        .outcome_subject(fx.namespace(), "garbage")
        .expect("subject");
    // The services create the streams as they start, which Fixture::start
    // does not wait for; a publish before that is refused.
    for stream in [fx.topology.work_stream(), fx.topology.outcome_stream()] {
        eventually(&format!("stream {stream} to exist"), WAIT, || async {
            fx.js.get_stream(&stream).await.ok().map(|_| ())
        })
        .await;
    }
    // Not protobuf: a field tag of 0 is never valid.
    let garbage = b"\x00\x00not a work item";
    for subject in [&work, &outcome] {
        fx.js
            .publish(subject.clone(), garbage.as_slice().into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    // Work queued behind the poison is done as usual.
    fx.create("after").await;
    fx.ready_reason("after", "Issued").await;

    let dead_work = fx.dead_letter_on(&work).await;
    assert_eq!(dead_work.original_payload, garbage, "kept byte for byte");
    assert_eq!(dead_work.deliveries, 1, "undecodable is not retried");
    assert!(!dead_work.error.is_empty(), "says why: {dead_work:?}");
    let dead_outcome = fx.dead_letter_on(&outcome).await;
    assert_eq!(dead_outcome.original_payload, garbage);
    eventually("the signer to count the dead letter", WAIT, || async {
        (fx.services
            .signer_metric_sum("certflow_signer_dead_letters_total")
            .await
            >= 1.0)
            .then_some(())
    })
    .await;
    eventually("the reporter to count the dead letter", WAIT, || async {
        let metrics = fx.services.reporters[0].metrics().await;
        let dead = sum_metric(
            &metrics,
            "certflow_reporter_outcomes_total{result=\"dead_letter\"}",
        );
        (dead >= 1.0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_work_item_failing_on_every_delivery_ends_after_the_bounded_deliveries_reported_to_its_owner()
 {
    let fx = Fixture::start("always-failing").await;
    // A quota of zero Secrets: every write of the certificate's Secret is
    // refused with 403 "exceeded quota", which the signer retries (an
    // operator may raise the quota) until its deliveries run out.
    let quota = ResourceQuota {
        metadata: ObjectMeta {
            name: Some("no-secrets".into()),
            ..ObjectMeta::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some([("secrets".to_owned(), Quantity("0".into()))].into()),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    };
    let quotas = fx.api::<ResourceQuota>();
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("create ResourceQuota");
    eventually(
        "the quota controller to fill in the quota",
        WAIT,
        || async {
            let quota = quotas.get("no-secrets").await.ok()?;
            quota.status?.hard.map(|_| ())
        },
    )
    .await;

    fx.create("refused").await;
    let message = fx.ready_reason("refused", "RetriesExhausted").await;
    assert!(
        message.contains(&MAX_DELIVER.to_string()) && message.contains("quota"),
        "the owner reads how often it was tried and why: {message}"
    );
    let events = fx.api::<Event>();
    eventually("a Warning on the ServiceCertificate", WAIT, || async {
        let events = events.list(&ListParams::default()).await.ok()?;
        events
            .items
            .iter()
            .any(|event| {
                event.reason.as_deref() == Some("RetriesExhausted")
                    && event.type_.as_deref() == Some("Warning")
                    && event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("refused")
            })
            .then_some(())
    })
    .await;
    let subject = fx
        .topology
        .work_subject(fx.namespace(), "refused")
        .expect("subject");
    let letter = fx.dead_letter_on(&subject).await;
    assert_eq!(letter.deliveries, MAX_DELIVER, "{letter:?}");
    assert!(letter.error.contains("quota"), "{letter:?}");
    let secrets = fx.secrets();
    assert!(secrets.get_opt("refused-tls").await.expect("get").is_none());
    assert!(
        fx.services
            .signer_metric_sum("certflow_signer_dead_letters_total")
            .await
            >= 1.0,
        "counted"
    );
}

/// Makes every Secret written in `namespace` need a `team` label, as a
/// platform team's admission policy might; returns once the API server
/// enforces it.
async fn require_team_label_on_secrets(client: &Client, namespace: &str) {
    let name = format!("{namespace}-secrets-need-team");
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["secrets"],
            }]},
            "validations": [{
                "expression": "has(object.metadata.labels) && 'team' in object.metadata.labels",
                "message": "Secrets need a team label",
            }],
        },
    }))
    .expect("a ValidatingAdmissionPolicy");
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {
                "matchLabels": {"kubernetes.io/metadata.name": namespace},
            }},
        },
    }))
    .expect("a ValidatingAdmissionPolicyBinding");
    let post = PostParams::default();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&post, &policy)
        .await
        .expect("create ValidatingAdmissionPolicy");
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&post, &binding)
        .await
        .expect("create ValidatingAdmissionPolicyBinding");

    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    let probe = Secret {
        metadata: ObjectMeta {
            name: Some("policy-probe".into()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually("the API server to enforce the policy", WAIT, || async {
        match secrets.create(&dry_run, &probe).await {
            Err(kube::Error::Api(status)) if status.message.contains("team label") => Some(()),
            _ => None,
        }
    })
    .await;
}

#[tokio::test]
async fn a_secret_an_admission_policy_refuses_is_reported_once_with_the_policys_words() {
    let fx = Fixture::start("admission").await;
    require_team_label_on_secrets(&fx.client, fx.namespace()).await;

    fx.create("unlabelled").await;
    let message = fx.ready_reason("unlabelled", "IssuanceFailed").await;
    assert!(
        message.contains("Secrets need a team label") && message.contains("spec.secretTemplate"),
        "the owner reads the policy's words and where to add the label: {message}"
    );
    assert!(
        !message.contains("Status {"),
        "no debug dump of the API response: {message}"
    );
    let subject = fx
        .topology
        .work_subject(fx.namespace(), "unlabelled")
        .expect("subject");
    let letter = fx.dead_letter_on(&subject).await;
    assert_eq!(letter.deliveries, 1, "a refusal is not retried: {letter:?}");

    // Following the suggestion issues the certificate.
    let scerts = fx.scerts();
    let label = json!({"spec": {"secretTemplate": {"labels": {"team": "payments"}}}});
    scerts
        .patch("unlabelled", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("add the label");
    fx.ready_reason("unlabelled", "Issued").await;
    let secret = fx
        .secrets()
        .get("unlabelled-tls")
        .await
        .expect("the Secret");
    assert_eq!(
        secret.labels().get("team").map(String::as_str),
        Some("payments")
    );
}
