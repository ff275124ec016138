//! The repository's manifests as the deploy and Helm tests read them:
//! `kubectl kustomize` renderings parsed into one JSON value per object, and
//! the few accessors and builders those tests share.

use std::path::{Path, PathBuf};
use std::process::Command;

use certflow_testenv::TestEnv;
use serde_json::Value;

use crate::{run, run_ok};

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl kustomize <dir>` (dir relative to the repository root), as text.
pub fn kustomize(env: &TestEnv, dir: &str) -> String {
    run_ok(
        env.kubectl().arg("kustomize").arg(repo_root().join(dir)),
        "",
    )
}

/// `kubectl kustomize <dir>`, one JSON value per object.
pub fn render(env: &TestEnv, dir: &str) -> Vec<Value> {
    parse_yaml_documents(&kustomize(env, dir))
}

/// The documents of a multi-document YAML text (separated by `---` lines).
pub fn parse_yaml_documents(text: &str) -> Vec<Value> {
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            documents.push(String::new());
        } else if let Some(current) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
        .iter()
        .map(|document| {
            let value: serde_yaml::Value = serde_yaml::from_str(document).expect("valid YAML");
            serde_json::to_value(value).expect("YAML maps to JSON")
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// An object's `kind`.
pub fn kind(object: &Value) -> &str {
    object["kind"].as_str().unwrap_or_default()
}

/// An object's `metadata.name`.
pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// A `kind: List` holding `objects`, for `kubectl apply -f -`.
pub fn list(objects: &[&Value]) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string()
}

/// The kinds that carry identity and permissions, the admission policy that
/// narrows what RBAC grants included: what the deploy tests apply for real.
pub const RBAC_KINDS: [&str; 8] = [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// `kubectl auth can-i <verb> <resource> -n <namespace>` with `kubectl`
/// already set to ask as someone (`--as=…` or a KUBECONFIG of their
/// token). `resource` may name a subresource:
/// `servicecertificates.certflow.io/status`.
pub fn can_i(mut kubectl: Command, verb: &str, resource: &str, namespace: &str) -> bool {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    kubectl.args(["auth", "can-i", verb, resource, "-n", namespace]);
    if !subresource.is_empty() {
        kubectl.arg(format!("--subresource={subresource}"));
    }
    let output = run(&mut kubectl, "");
    let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        answer == "yes" || answer == "no",
        "kubectl auth can-i failed: {output:?}"
    );
    answer == "yes"
}
