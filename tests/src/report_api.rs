//! Calling certflow-reporter's gRPC Report API as a real caller would: with
//! a ServiceAccount token for the reporter's audience in the
//! `authorization` metadata, after granting that ServiceAccount the
//! documented Role (`deploy/examples/report-client/rbac.yaml`).

use std::path::Path;
use std::time::Duration;

use certflow_proto::v1::report_request::Regarding;
use certflow_proto::v1::reporter_client::ReporterClient;
use certflow_proto::v1::{EventType, ReportRequest, SecretRef};
use certflow_testenv::TestEnv;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::{eventually, run_ok};

/// The audience the reporter accepts by default (`--grpc-token-audience`).
pub const AUDIENCE: &str = "certflow-reporter";

/// Adds `authorization: Bearer <token>` to every call, or nothing.
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> Self {
        Self(token.map(|token| {
            format!("Bearer {token}")
                .parse()
                .expect("a token is printable ASCII")
        }))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A Report API client that sends one fixed token (or none).
pub type Client = ReporterClient<InterceptedService<Channel, Bearer>>;

/// A client of the Report API on 127.0.0.1:`port` that authenticates with
/// `token`. The API is served only once the reporter's Pod index is in
/// sync, so a connection means it is ready.
pub async fn connect(port: u16, token: Option<&str>) -> Client {
    let url = format!("http://127.0.0.1:{port}");
    let channel = eventually(
        "the Report API to accept connections",
        Duration::from_secs(60),
        || {
            let url = url.clone();
            async move { Channel::from_shared(url).ok()?.connect().await.ok() }
        },
    )
    .await;
    ReporterClient::with_interceptor(channel, Bearer::new(token))
}

/// Applies `deploy/examples/report-client/rbac.yaml` with its names
/// replaced: ServiceAccount `account_namespace/account` may report about
/// `namespace`.
pub fn grant_report(env: &TestEnv, namespace: &str, account_namespace: &str, account: &str) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/report-client/rbac.yaml");
    let example = std::fs::read_to_string(&path).expect("the report-client example");
    let replacements = [
        ("namespace: shop", format!("namespace: {namespace}")),
        (
            "namespace: platform",
            format!("namespace: {account_namespace}"),
        ),
        ("quota-checker", account.to_owned()),
    ];
    let mut manifest = example.clone();
    for (from, to) in &replacements {
        assert!(
            manifest.contains(from),
            "{} no longer contains {from:?}; update this helper",
            path.display()
        );
        manifest = manifest.replace(from, to);
    }
    run_ok(env.kubectl().args(["apply", "-f", "-"]), &manifest);
}

/// A token of ServiceAccount `namespace/account` (created if needed) for the
/// reporter's audience.
pub async fn token(env: &TestEnv, namespace: &str, account: &str) -> String {
    env.service_account_token(namespace, account, AUDIENCE)
        .await
        .expect("TokenRequest")
}

/// A client authenticated as ServiceAccount `namespace/account`, which
/// may report about `namespace` (created and granted here).
pub async fn granted_client(env: &TestEnv, port: u16, namespace: &str, account: &str) -> Client {
    let token = token(env, namespace, account).await;
    grant_report(env, namespace, namespace, account);
    connect(port, Some(&token)).await
}

/// A Normal report about Secret `secret_name` of `namespace`, with `reason`.
pub fn report(namespace: &str, secret_name: &str, reason: &str) -> ReportRequest {
    ReportRequest {
        regarding: Some(Regarding::Secret(SecretRef {
            namespace: namespace.into(),
            secret_name: secret_name.into(),
        })),
        r#type: EventType::Normal.into(),
        reason: reason.into(),
        message: "A control-plane service reports this through the Report API.".into(),
        reporting_component: "certflow-e2e".into(),
        ..ReportRequest::default()
    }
}
