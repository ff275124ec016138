//! The local control plane is the real thing: kube-controller-manager runs
//! controllers, RBAC is enforced for ServiceAccount tokens, and JetStream
//! de-duplicates, shares a durable consumer and keeps messages on disk.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use certflow_e2e::{eventually, run_ok};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn the_service_certificate_crd_is_served_and_an_object_round_trips_through_kube_rs() {
    use certflow_api::{ServiceCertificate, ServiceCertificateSpec, ServiceCertificateStatus};
    use kube::api::{Patch, PatchParams};

    let env = certflow_testenv::shared();
    let ns = env.create_namespace("crd").await.expect("namespace");
    let scerts: Api<ServiceCertificate> = Api::namespaced(env.client().await.expect("client"), &ns);
    let spec = ServiceCertificateSpec {
        secret_name: "web-tls".into(),
        dns_names: vec![format!("web.{ns}.svc")],
        duration: Some("720h".into()),
        ..ServiceCertificateSpec::default()
    };
    let created = scerts
        .create(
            &PostParams::default(),
            &ServiceCertificate::new("web", spec.clone()),
        )
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));

    let status = serde_json::json!({"status": ServiceCertificateStatus {
        serial_number: Some("0a1b".into()),
        failed_attempts: Some(0),
        ..ServiceCertificateStatus::default()
    }});
    scerts
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status subresource");

    let read = scerts.get("web").await.expect("get");
    assert_eq!(read.spec, spec, "the spec comes back as written");
    assert_eq!(
        read.status.and_then(|s| s.serial_number).as_deref(),
        Some("0a1b")
    );
    assert_eq!(
        read.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );
}

#[tokio::test]
async fn a_deployment_applied_with_kubectl_gets_a_replicaset_and_pods() {
    let env = certflow_testenv::shared();
    let ns = env.create_namespace("deploy").await.expect("namespace");
    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:1
"#;
    let out = run_ok(
        env.kubectl().args(["apply", "-n", &ns, "-f", "-"]),
        manifest,
    );
    assert!(
        out.contains("deployment.apps/web created"),
        "kubectl said: {out}"
    );

    let client = env.client().await.expect("client");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let owner = eventually("a ReplicaSet owned by deployment web", WAIT, || async {
        let list = replica_sets.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Deployment" && o.name == "web")
        })
    })
    .await;
    let owner_name = owner.metadata.name.expect("replica set name");
    let owned = eventually("two Pods owned by the ReplicaSet", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let owned: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|pod| {
                pod.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "ReplicaSet" && o.name == owner_name)
            })
            .collect();
        (owned.len() == 2).then_some(owned)
    })
    .await;
    assert_eq!(owned.len(), 2);
}

#[tokio::test]
async fn a_service_account_is_refused_secrets_until_a_role_binding_allows_it() {
    let env = certflow_testenv::shared();
    let ns = env.create_namespace("rbac").await.expect("namespace");
    let kubeconfig = env
        .service_account_kubeconfig(&ns, "app")
        .await
        .expect("token kubeconfig");
    let as_app = certflow_testenv::kubeconfig::client(&kubeconfig)
        .await
        .expect("client for the service account");
    let secrets: Api<Secret> = Api::namespaced(as_app, &ns);

    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden without a RoleBinding, got {other:?}"),
    }

    let admin = env.client().await.expect("admin client");
    let role = Role {
        metadata: named("read-secrets"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".into()]),
            verbs: vec!["get".into(), "list".into()],
            ..PolicyRule::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: named("app-reads-secrets"),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "read-secrets".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "app".into(),
            namespace: Some(ns.clone()),
            ..Subject::default()
        }]),
    };
    let pp = PostParams::default();
    Api::<Role>::namespaced(admin.clone(), &ns)
        .create(&pp, &role)
        .await
        .expect("create role");
    Api::<RoleBinding>::namespaced(admin, &ns)
        .create(&pp, &binding)
        .await
        .expect("create role binding");

    // The RBAC authorizer reads bindings from an informer, so allow it a
    // moment to see the new one.
    eventually("the service account to list secrets", WAIT, || async {
        secrets.list(&ListParams::default()).await.ok()
    })
    .await;
}

#[tokio::test]
async fn jetstream_delivers_once_drops_duplicates_and_keeps_unacked_work_across_a_restart() {
    let env = certflow_testenv::shared();
    // A server of its own: restarting the shared one would disturb other tests.
    let dir = env
        .dir()
        .join(certflow_testenv::unique_name("nats-restart"));
    let mut nats = certflow_testenv::NatsServer::start(&env.tools().nats_server, &dir)
        .expect("start nats-server");
    nats.wait_ready().await.expect("nats-server ready");

    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    let work = js
        .create_stream(stream::Config {
            name: "WORK".into(),
            subjects: vec!["work.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..stream::Config::default()
        })
        .await
        .expect("create stream");
    work.create_consumer(consumer::pull::Config {
        durable_name: Some("signer".into()),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(2),
        ..consumer::pull::Config::default()
    })
    .await
    .expect("create durable consumer");
    let first: consumer::PullConsumer = work.get_consumer("signer").await.expect("bind 1");
    let second: consumer::PullConsumer = work.get_consumer("signer").await.expect("bind 2");

    assert!(!publish(&js, "item-1").await, "first publish is new");
    assert!(
        publish(&js, "item-1").await,
        "same Nats-Msg-Id is a duplicate"
    );

    let (a, b) = tokio::join!(fetch(&first), fetch(&second));
    assert_eq!(
        a.len() + b.len(),
        1,
        "exactly one consumer gets the message"
    );
    for message in a.iter().chain(&b) {
        message.double_ack().await.expect("ack");
    }
    let mut work = js.get_stream("WORK").await.expect("stream");
    assert_eq!(
        work.info().await.expect("info").state.messages,
        0,
        "acked work is gone"
    );

    assert!(!publish(&js, "item-2").await);
    let taken = fetch(&first).await;
    assert_eq!(taken.len(), 1, "item-2 is delivered");
    // Never acknowledged: the signer "crashed". (JetStream may lose the
    // consumer's delivery count on SIGKILL, so only the message is checked.)
    drop(taken);

    nats.kill();
    nats.restart().await.expect("restart nats-server");

    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("reconnect"));
    let work = js
        .get_stream("WORK")
        .await
        .expect("stream survives restart");
    let consumer: consumer::PullConsumer = work.get_consumer("signer").await.expect("consumer");
    let redelivered = eventually("item-2 to be redelivered", WAIT, || async {
        let batch = fetch(&consumer).await;
        (!batch.is_empty()).then_some(batch)
    })
    .await;
    assert_eq!(redelivered.len(), 1);
    let message = &redelivered[0];
    let id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.as_str().to_owned());
    assert_eq!(id.as_deref(), Some("item-2"));
    message.double_ack().await.expect("ack");
}

/// Publishes one message with `Nats-Msg-Id: id`; returns whether JetStream
/// reported it as a duplicate.
async fn publish(js: &jetstream::Context, id: &str) -> bool {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    js.publish_with_headers("work.default.cert", headers, "payload".into())
        .await
        .expect("publish")
        .await
        .expect("publish ack")
        .duplicate
}

async fn fetch(consumer: &consumer::PullConsumer) -> Vec<jetstream::Message> {
    let Ok(batch) = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(1))
        .messages()
        .await
    else {
        return Vec::new();
    };
    batch.filter_map(|m| async { m.ok() }).collect().await
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}
