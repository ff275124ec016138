//! Tracing: with `--otlp-endpoint`, the watcher, the signer and the reporter
//! export their spans over OTLP/gRPC, and one certificate's journey is one
//! trace: the watcher's reconcile, the signer's handling (a child of the
//! watcher's publishing span, through the `traceparent` NATS header), the
//! reporter's handling of the outcome (a child of the signer's publishing
//! span) and the Event write on the Pod. A Report API call's `traceparent`
//! metadata is continued the same way. The collector is an in-process
//! OTLP/gRPC server keeping every export in memory; the services are the
//! real binaries against the real local control plane.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use certflow_e2e::eventually;
use certflow_e2e::report_api::{self, report};
use certflow_e2e::services::Services;
use certflow_e2e::workload::{BROKEN_REASON, Workload, secret_name};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

const WAIT: Duration = Duration::from_secs(120);

/// An OTLP/gRPC trace collector on a loopback port, keeping every span.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Exported>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(Exported {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .into_iter()
                        .filter_map(|kv| {
                            let value = text(kv.value.as_ref()?.value.as_ref()?)?;
                            Some((kv.key, value))
                        })
                        .collect(),
                });
            }
        }
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(received);
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    /// Serves on a free loopback port until the test ends; returns the
    /// collector and the `--otlp-endpoint` flag pointing at it.
    async fn start() -> (Self, String) {
        let collector = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr: SocketAddr = listener.local_addr().expect("collector address");
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(TcpIncoming::from(listener));
        tokio::spawn(server);
        (collector, format!("--otlp-endpoint=http://{addr}"))
    }

    fn spans(&self) -> Vec<Exported> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One exported span, ids in hex (the parent's empty for a root).
#[derive(Clone, Debug)]
struct Exported {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    /// String-valued attributes (the spans' `tracing` fields).
    attributes: BTreeMap<String, String>,
}

impl Exported {
    fn is(&self, service: &str, name: &str, attributes: &[(&str, &str)]) -> bool {
        self.service == service
            && self.name == name
            && attributes
                .iter()
                .all(|(key, value)| self.attributes.get(*key).map(String::as_str) == Some(*value))
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of one trace, with the questions the tests ask of it.
struct Trace<'a> {
    id: &'a str,
    spans: Vec<&'a Exported>,
}

impl<'a> Trace<'a> {
    fn of(all: &'a [Exported], id: &'a str) -> Self {
        Self {
            id,
            spans: all.iter().filter(|s| s.trace_id == id).collect(),
        }
    }

    fn find(&self, service: &str, name: &str, attributes: &[(&str, &str)]) -> Option<&'a Exported> {
        self.spans
            .iter()
            .copied()
            .find(|s| s.is(service, name, attributes))
    }

    fn by_id(&self, span_id: &str) -> Option<&'a Exported> {
        self.spans.iter().copied().find(|s| s.span_id == span_id)
    }

    /// The services that exported spans of this trace.
    fn services(&self) -> BTreeSet<&'a str> {
        self.spans.iter().map(|s| s.service.as_str()).collect()
    }

    /// The spans whose parent is not in the trace.
    fn roots(&self) -> Vec<&'a Exported> {
        self.spans
            .iter()
            .copied()
            .filter(|s| self.by_id(&s.parent_span_id).is_none())
            .collect()
    }

    /// `span`'s ancestors in the trace, nearest first.
    fn ancestors(&self, span: &Exported) -> Vec<&'a Exported> {
        let mut chain = Vec::new();
        let mut parent = self.by_id(&span.parent_span_id);
        while let Some(next) = parent {
            if chain.len() > self.spans.len() {
                break;
            }
            chain.push(next);
            parent = self.by_id(&next.parent_span_id);
        }
        chain
    }

    fn describe(&self) -> String {
        let lines: Vec<String> = self
            .spans
            .iter()
            .map(|s| {
                format!(
                    "  {} {} span={} parent={} {:?}",
                    s.service, s.name, s.span_id, s.parent_span_id, s.attributes
                )
            })
            .collect();
        format!("trace {}:\n{}", self.id, lines.join("\n"))
    }
}

/// Sends SIGTERM to every service and waits for them to exit; a service
/// exports its last spans before it exits.
async fn stop(mut services: Services) -> Services {
    tokio::task::spawn_blocking(move || {
        services.stop();
        services
    })
    .await
    .expect("stopping the services")
}

/// Asserts that the work item of certificate `name` went from the watcher
/// to the signer to the reporter in `trace`, each hop a parent link across
/// NATS; returns the reporter's `outcome` span.
fn assert_followed<'a>(trace: &Trace<'a>, namespace: &str, name: &str) -> &'a Exported {
    let object = [("namespace", namespace), ("name", name)];
    let context = trace.describe();
    let publish_work = trace
        .find("certflow-watcher", "publish_work", &object)
        .unwrap_or_else(|| panic!("the watcher's publish_work for {name}\n{context}"));
    let work_item = trace
        .find("certflow-signer", "work_item", &object)
        .unwrap_or_else(|| panic!("the signer's work_item for {name}\n{context}"));
    assert_eq!(
        work_item.parent_span_id, publish_work.span_id,
        "the signer's span is a child of the watcher's publishing span\n{context}"
    );
    assert_eq!(
        work_item.attributes.get("trace_id").map(String::as_str),
        Some(trace.id),
        "the signer logs the exported trace id\n{context}"
    );
    let outcome = trace
        .find("certflow-reporter", "outcome", &object)
        .unwrap_or_else(|| panic!("the reporter's outcome span for {name}\n{context}"));
    let parent = trace.by_id(&outcome.parent_span_id);
    assert!(
        parent.is_some_and(|p| p.service == "certflow-signer" && p.name == "publish_outcome"),
        "the reporter's span is a child of the signer's publish_outcome: {parent:?}\n{context}"
    );
    assert_eq!(
        outcome.attributes.get("trace_id").map(String::as_str),
        Some(trace.id),
        "the reporter logs the exported trace id\n{context}"
    );
    // One tree: a single root, in the watcher (its reconcile).
    let roots = trace.roots();
    assert!(
        roots.len() == 1 && roots[0].service == "certflow-watcher",
        "one root, the watcher's: {roots:?}\n{context}"
    );
    outcome
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_follows_a_certificate_from_the_watch_event_through_the_signer_to_the_pod_event()
{
    let env = certflow_testenv::shared();
    let (collector, otlp_endpoint) = Collector::start().await;
    let namespace = env.create_namespace("tracing").await.expect("namespace");
    let services = Services::start_with_common_args(env, &namespace, 1, &[&otlp_endpoint]).await;
    let client = env.client().await.expect("client");
    let mut workload = Workload::create_authority(client, &namespace).await;
    workload.add_broken("broken").await;
    workload.add_valid("valid").await;
    let problems = workload.settle(WAIT).await;
    assert!(problems.is_empty(), "{problems:?}\n{}", services.logs());
    // Only now, after SIGTERM: within the SDK's 5 s batch delay most spans
    // reach the collector through the flush on the way out.
    let services = stop(services).await;
    let spans = collector.spans();

    // The Warning on the broken certificate's Pod was written in the trace
    // of the watcher's decision about that certificate.
    let pod_event = [
        ("kind", "Pod"),
        ("name", "broken"),
        ("reason", BROKEN_REASON),
    ];
    let writes: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.is("certflow-reporter", "record", &pod_event))
        .collect();
    assert!(
        !writes.is_empty(),
        "the reporter exported its Event-writing span for Pod broken; {} spans from {:?}\n{}",
        spans.len(),
        spans.iter().map(|s| &s.service).collect::<BTreeSet<_>>(),
        services.logs()
    );
    let traced = writes.iter().find(|write| {
        Trace::of(&spans, &write.trace_id)
            .find("certflow-watcher", "publish_work", &[("name", "broken")])
            .is_some()
    });
    let Some(write) = traced else {
        let traces: Vec<String> = writes
            .iter()
            .map(|w| Trace::of(&spans, &w.trace_id).describe())
            .collect();
        panic!(
            "no Pod Event write is in a trace the watcher started:\n{}",
            traces.join("\n")
        );
    };
    let broken = Trace::of(&spans, &write.trace_id);
    assert_eq!(
        broken.services(),
        BTreeSet::from(["certflow-reporter", "certflow-signer", "certflow-watcher"]),
        "{}",
        broken.describe()
    );
    let outcome = assert_followed(&broken, &namespace, "broken");
    assert!(
        broken
            .ancestors(write)
            .iter()
            .any(|a| a.span_id == outcome.span_id),
        "the Event write happens while the outcome is handled\n{}",
        broken.describe()
    );

    // The valid certificate has a trace of its own, followed the same way.
    let valid_publication = spans
        .iter()
        .find(|s| s.is("certflow-watcher", "publish_work", &[("name", "valid")]))
        .unwrap_or_else(|| panic!("the watcher's publish_work for valid"));
    assert_ne!(
        valid_publication.trace_id, broken.id,
        "one trace per decision"
    );
    let valid = Trace::of(&spans, &valid_publication.trace_id);
    assert_followed(&valid, &namespace, "valid");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_call_continues_the_trace_in_its_traceparent_metadata() {
    let env = certflow_testenv::shared();
    let (collector, otlp_endpoint) = Collector::start().await;
    let namespace = env
        .create_namespace("tracing-report")
        .await
        .expect("namespace");
    // No signer: the certificate stays unhandled; only its Pod matters here.
    let services = Services::launch(env, &namespace, 0, &[], &[&otlp_endpoint]).await;
    let client = env.client().await.expect("client");
    let mut workload = Workload::create_authority(client, &namespace).await;
    workload.add_broken("consumer").await;
    let port = services.reporters[0].grpc_port.expect("gRPC port");
    let caller = report_api::granted_client(env, port, &namespace, "traced-caller").await;

    // The caller's own span, as an instrumented service would send it.
    let trace_id = format!("{:032x}", rand::random::<u128>() | 1);
    let caller_span = format!("{:016x}", rand::random::<u64>() | 1);
    let traceparent = format!("00-{trace_id}-{caller_span}-01");
    let secret = secret_name("consumer");
    eventually("a traced report to reach the consuming Pod", WAIT, || {
        let mut caller = caller.clone();
        let mut request = Request::new(report(&namespace, &secret, "TracedReport"));
        request
            .metadata_mut()
            .insert("traceparent", traceparent.parse().expect("ASCII"));
        async move {
            let recipients = caller.report(request).await.ok()?.into_inner().recipients;
            // The ServiceCertificate and, once the reporter has seen it, the Pod.
            (recipients >= 2).then_some(())
        }
    })
    .await;
    let services = stop(services).await;
    let spans = collector.spans();

    let trace = Trace::of(&spans, &trace_id);
    let context = format!("{}\n{}", trace.describe(), services.logs());
    let write = trace
        .find(
            "certflow-reporter",
            "record",
            &[
                ("kind", "Pod"),
                ("name", "consumer"),
                ("reason", "TracedReport"),
            ],
        )
        .unwrap_or_else(|| panic!("the Pod Event write is in the caller's trace\n{context}"));
    let call = trace
        .ancestors(write)
        .into_iter()
        .find(|span| span.name == "report")
        .unwrap_or_else(|| panic!("the write happens in the report call's span\n{context}"));
    assert_eq!(call.parent_span_id, caller_span, "{context}");
    assert_eq!(
        call.attributes.get("trace_id").map(String::as_str),
        Some(trace_id.as_str()),
        "{context}"
    );
}
