use serde_json::json;

use super::*;

fn spec(value: serde_json::Value) -> PodSpec {
    serde_json::from_value(value).unwrap_or_else(|err| panic!("test PodSpec: {err}"))
}

fn names(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn secrets_are_found_wherever_a_pod_can_consume_them() {
    let cases: Vec<(&str, serde_json::Value, &[&str])> = vec![
        ("no secrets", json!({"containers": [{"name": "app"}]}), &[]),
        (
            "secret volume",
            json!({
                "containers": [{"name": "app"}],
                "volumes": [{"name": "tls", "secret": {"secretName": "web-tls"}}]
            }),
            &["web-tls"],
        ),
        (
            "projected volume with a secret source",
            json!({
                "containers": [{"name": "app"}],
                "volumes": [{"name": "all", "projected": {"sources": [
                    {"configMap": {"name": "settings"}},
                    {"secret": {"name": "web-tls"}},
                    {"serviceAccountToken": {"path": "token"}}
                ]}}]
            }),
            &["web-tls"],
        ),
        (
            "env valueFrom secretKeyRef",
            json!({"containers": [{"name": "app", "env": [
                {"name": "PLAIN", "value": "x"},
                {"name": "CERT", "valueFrom": {"secretKeyRef": {"name": "web-tls", "key": "tls.crt"}}},
                {"name": "CONF", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "a"}}}
            ]}]}),
            &["web-tls"],
        ),
        (
            "envFrom secretRef",
            json!({"containers": [{"name": "app", "envFrom": [
                {"configMapRef": {"name": "settings"}},
                {"secretRef": {"name": "web-tls"}}
            ]}]}),
            &["web-tls"],
        ),
        (
            "init container env",
            json!({
                "initContainers": [{"name": "init", "env": [
                    {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "init-tls", "key": "tls.key"}}}
                ]}],
                "containers": [{"name": "app"}]
            }),
            &["init-tls"],
        ),
        (
            "init container envFrom",
            json!({
                "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "init-tls"}}]}],
                "containers": [{"name": "app"}]
            }),
            &["init-tls"],
        ),
        (
            "ephemeral container env",
            json!({
                "containers": [{"name": "app"}],
                "ephemeralContainers": [{"name": "debug", "envFrom": [{"secretRef": {"name": "debug-tls"}}]}]
            }),
            &["debug-tls"],
        ),
        (
            "every way at once, de-duplicated and sorted",
            json!({
                "volumes": [
                    {"name": "a", "secret": {"secretName": "web-tls"}},
                    {"name": "b", "projected": {"sources": [{"secret": {"name": "api-tls"}}]}},
                    {"name": "c", "configMap": {"name": "web-tls-not-a-secret"}}
                ],
                "initContainers": [{"name": "init", "envFrom": [{"secretRef": {"name": "web-tls"}}]}],
                "containers": [
                    {"name": "app", "env": [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "db-tls", "key": "k"}}}]},
                    {"name": "sidecar", "envFrom": [{"secretRef": {"name": "api-tls"}}]}
                ]
            }),
            &["api-tls", "db-tls", "web-tls"],
        ),
        (
            "optional references still count",
            json!({
                "containers": [{"name": "app"}],
                "volumes": [{"name": "tls", "secret": {"secretName": "web-tls", "optional": true}}]
            }),
            &["web-tls"],
        ),
        (
            "image pull secrets and volumes without a name do not count",
            json!({
                "imagePullSecrets": [{"name": "registry"}],
                "containers": [{"name": "app"}],
                "volumes": [{"name": "tls", "secret": {}}]
            }),
            &[],
        ),
    ];
    for (what, value, expected) in cases {
        assert_eq!(secrets_consumed(&spec(value)), names(expected), "{what}");
    }
}

fn pod(name: &str, uid: &str, secrets: &[&str]) -> PodSummary {
    PodSummary {
        namespace: "shop".into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
        secrets: names(secrets),
    }
}

fn synced(pods: &[PodSummary]) -> PodIndex {
    let mut index = PodIndex::default();
    index.apply(Event::Init);
    for pod in pods {
        index.apply(Event::InitApply(pod.clone()));
    }
    index.apply(Event::InitDone);
    index
}

fn consumer_names(index: &PodIndex, secret: &str) -> Vec<String> {
    index
        .consumers("shop", secret)
        .into_iter()
        .map(|p| p.name)
        .collect()
}

#[test]
fn the_index_answers_which_pods_consume_a_secret() {
    let index = synced(&[
        pod("web-1", "u1", &["web-tls"]),
        pod("web-2", "u2", &["web-tls", "db-tls"]),
        pod("db-1", "u3", &["db-tls"]),
    ]);
    assert_eq!(consumer_names(&index, "web-tls"), ["web-1", "web-2"]);
    assert_eq!(consumer_names(&index, "db-tls"), ["db-1", "web-2"]);
    assert!(consumer_names(&index, "other").is_empty());
    assert!(index.consumers("elsewhere", "web-tls").is_empty());
}

#[test]
fn pods_that_consume_no_secret_are_not_kept() {
    let index = synced(&[pod("web-1", "u1", &["web-tls"]), pod("plain", "u2", &[])]);
    assert_eq!(index.len(), 1);
}

#[test]
fn pods_listed_at_start_up_have_not_appeared_but_later_ones_have() {
    let mut index = PodIndex::default();
    index.apply(Event::Init);
    let listed = index.apply(Event::InitApply(pod("web-1", "u1", &["web-tls"])));
    assert!(listed.is_empty(), "present at start-up");
    index.apply(Event::InitDone);
    assert!(index.is_synced());

    let appeared = index.apply(Event::Apply(pod("web-2", "u2", &["web-tls"])));
    assert_eq!(appeared, vec![pod("web-2", "u2", &["web-tls"])]);
    let again = index.apply(Event::Apply(pod("web-2", "u2", &["web-tls"])));
    assert!(again.is_empty(), "a status update is not an appearance");
    let bystander = index.apply(Event::Apply(pod("plain", "u3", &[])));
    assert!(bystander.is_empty(), "a Pod without Secrets never appears");
}

#[test]
fn deleted_pods_leave_the_index() {
    let mut index = synced(&[pod("web-1", "u1", &["web-tls"])]);
    index.apply(Event::Delete(pod("web-1", "u1", &["web-tls"])));
    assert!(index.is_empty());
    assert!(consumer_names(&index, "web-tls").is_empty());
}

#[test]
fn a_relist_replaces_the_contents_and_reports_pods_missed_in_between() {
    let mut index = synced(&[
        pod("web-1", "u1", &["web-tls"]),
        pod("gone", "u2", &["web-tls"]),
    ]);
    index.apply(Event::Init);
    let kept = index.apply(Event::InitApply(pod("web-1", "u1", &["web-tls"])));
    let missed = index.apply(Event::InitApply(pod("web-3", "u3", &["web-tls"])));
    assert_eq!(
        consumer_names(&index, "web-tls"),
        ["gone", "web-1"],
        "the old contents serve until the relist is done"
    );
    index.apply(Event::InitDone);
    assert!(kept.is_empty());
    assert_eq!(missed, vec![pod("web-3", "u3", &["web-tls"])]);
    assert_eq!(consumer_names(&index, "web-tls"), ["web-1", "web-3"]);
}

#[test]
fn a_pod_recreated_with_the_same_name_is_a_new_pod() {
    let mut index = synced(&[pod("web-0", "u1", &["web-tls"])]);
    index.apply(Event::Delete(pod("web-0", "u1", &["web-tls"])));
    let appeared = index.apply(Event::Apply(pod("web-0", "u2", &["web-tls"])));
    assert_eq!(appeared.len(), 1);
    assert_eq!(index.consumers("shop", "web-tls")[0].uid, "u2");
}

#[test]
fn the_controller_is_the_owner_marked_controller() {
    let owners: Vec<OwnerReference> = serde_json::from_value(json!([
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "c1"},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9", "uid": "r1", "controller": true}
    ]))
    .unwrap_or_default();
    let controller = Controller::of(&owners);
    assert_eq!(controller.map(|c| c.kind).as_deref(), Some("ReplicaSet"));
    assert_eq!(Controller::of(&owners[..1]), None);
}
