//! Observes `certflow.v1.Reporter/Report` calls and the ServiceCertificate
//! cache (which certificate is named, which ones write a Secret); writes,
//! through [`Delivery`], the Events the caller asked for, on the same
//! recipients an outcome would reach (the ServiceCertificate or the
//! ServiceCertificates writing a Secret, the Pods consuming the Secret, and
//! their workloads); never makes a report a failure that late Pods are told
//! (only a ServiceCertificate's status says a certificate is failing).
//!
//! Every call is authenticated and authorized ([`crate::auth`]) before any
//! object is read: a ServiceAccount token for the reporter's audience in
//! `authorization: Bearer <token>` (else `UNAUTHENTICATED`), then the request
//! is checked (`INVALID_ARGUMENT`), then `create` on
//! `servicecertificates/report` in the namespace the report is about (else
//! `PERMISSION_DENIED`). Only then is the ServiceCertificate or Secret looked
//! up, so a caller learns nothing about namespaces it may not report about.
//!
//! A caller cannot speak as certflow: a reason that is one of certflow's
//! own words ([`reserved_reason`]) is `INVALID_ARGUMENT`, and every Event a
//! call writes names the caller, the username the TokenReview returned, in
//! its note and its `reportingInstance` ([`Notice::reported_by`]). The
//! request's `reporting_component` is the caller's own claim, so it is only
//! logged. See `docs/design/20261203-report-api-identity.md`.
//!
//! A W3C `traceparent` (and `tracestate`) in the call's metadata makes the
//! call's span, and the Event writes under it, part of the caller's trace.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certflow_bus::TraceParent;
use certflow_bus::trace::TRACEPARENT_HEADER;
use certflow_proto::v1::report_request::Regarding;
use certflow_proto::v1::reporter_server::{Reporter as ReporterApi, ReporterServer};
use certflow_proto::v1::{EventType as ProtoEventType, ReportRequest, ReportResponse};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tracing::{Instrument as _, Span, info, info_span, instrument, warn};

use crate::Error;
use crate::auth::Guard;
use crate::certificates::{CertificateSummary, SharedCertificates};
use crate::deliver::Delivery;
use crate::events::{EventType, MAX_WORD_BYTES, Notice};
use crate::notices::{compose, reserved_reason};

/// The `action` of Events written for a `Report` call.
pub const REPORT_ACTION: &str = "Report";

/// What a `Report` request is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A ServiceCertificate, its Secret's consumers and their workloads.
    Certificate { namespace: String, name: String },
    /// The consumers of a Secret, their workloads, and the
    /// ServiceCertificates that write the Secret.
    Secret {
        namespace: String,
        secret_name: String,
    },
}

/// Checks a request of `caller` (the authenticated username) and turns it
/// into what to report about and what to say on the caller's behalf.
pub fn parse(request: &ReportRequest, caller: &str) -> Result<(Target, Notice), Error> {
    let invalid = |reason: &str| Error::InvalidReport {
        reason: reason.to_owned(),
    };
    let target = match &request.regarding {
        Some(Regarding::ServiceCertificate(reference)) => {
            check_namespace(&reference.namespace)?;
            check_name("service_certificate.name", &reference.name)?;
            Target::Certificate {
                namespace: reference.namespace.clone(),
                name: reference.name.clone(),
            }
        }
        Some(Regarding::Secret(reference)) => {
            check_namespace(&reference.namespace)?;
            check_name("secret.secret_name", &reference.secret_name)?;
            Target::Secret {
                namespace: reference.namespace.clone(),
                secret_name: reference.secret_name.clone(),
            }
        }
        None => return Err(invalid("regarding is not set")),
    };
    let type_ = match ProtoEventType::try_from(request.r#type) {
        Ok(ProtoEventType::Normal) => EventType::Normal,
        Ok(ProtoEventType::Warning) => EventType::Warning,
        _ => {
            return Err(invalid(
                "type must be EVENT_TYPE_NORMAL or EVENT_TYPE_WARNING",
            ));
        }
    };
    let reason = &request.reason;
    // Before the shape check, so that "policyviolation" is told why too.
    if let Some(word) = reserved_reason(reason) {
        return Err(Error::InvalidReport {
            reason: format!(
                "reason {reason:?} is reserved: {word} is a reason certflow reports itself \
                 (docs/errors.md), and app owners must be able to trust that it comes from \
                 certflow; choose a word of your own for what your service found"
            ),
        });
    }
    let camel_case = reason.len() <= MAX_WORD_BYTES
        && reason.starts_with(|c: char| c.is_ascii_uppercase())
        && reason.chars().all(|c| c.is_ascii_alphanumeric());
    if !camel_case {
        return Err(invalid(
            "reason must be one CamelCase word of at most 128 characters, e.g. PolicyViolation",
        ));
    }
    if request.message.trim().is_empty() {
        return Err(invalid("message is empty"));
    }
    let note = compose(
        &request.message,
        &request.field_path,
        &request.value,
        &request.suggestion,
    );
    let notice = Notice::reported_by(caller, type_, reason, REPORT_ACTION, &note);
    Ok((target, notice))
}

fn check_namespace(namespace: &str) -> Result<(), Error> {
    let valid = !namespace.is_empty()
        && namespace.len() <= 63
        && namespace
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidReport {
            reason: format!("namespace {namespace:?} is not a Kubernetes namespace name"),
        })
    }
}

fn check_name(field: &str, name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidReport {
            reason: format!("{field} {name:?} is not a Kubernetes object name"),
        })
    }
}

/// The namespace a report is about: the one whose `servicecertificates/report`
/// permission the caller needs.
fn namespace_of(target: &Target) -> &str {
    match target {
        Target::Certificate { namespace, .. } | Target::Secret { namespace, .. } => namespace,
    }
}

/// The ServiceCertificates `target` names and the Secret whose consumers
/// it reaches, as `cache` holds them. A certificate the cache does not hold
/// is `NOT_FOUND`; a Secret no certificate writes still reaches its Pods.
pub fn resolve(
    target: &Target,
    cache: &SharedCertificates,
) -> Result<(Vec<CertificateSummary>, String, String), Error> {
    match target {
        Target::Certificate { namespace, name } => {
            let certificate =
                cache
                    .read(|c| c.get(namespace, name))
                    .ok_or_else(|| Error::NotFound {
                        kind: "ServiceCertificate",
                        namespace: namespace.clone(),
                        name: name.clone(),
                    })?;
            let secret_name = certificate.secret_name.clone();
            Ok((vec![certificate], namespace.clone(), secret_name))
        }
        Target::Secret {
            namespace,
            secret_name,
        } => {
            let writers = cache.read(|c| c.writing(namespace, secret_name));
            Ok((writers, namespace.clone(), secret_name.clone()))
        }
    }
}

/// The tonic service.
#[derive(Debug, Clone)]
pub struct ReportService {
    certificates: SharedCertificates,
    delivery: Arc<Delivery>,
    guard: Arc<Guard>,
}

impl ReportService {
    pub fn new(
        certificates: SharedCertificates,
        delivery: Arc<Delivery>,
        guard: Arc<Guard>,
    ) -> Self {
        Self {
            certificates,
            delivery,
            guard,
        }
    }

    /// Delivers `notice` to what `target` names; returns how many objects
    /// it reached.
    #[instrument(skip_all, fields(target = ?target, reason = notice.reason()))]
    pub async fn reach(&self, target: &Target, notice: &Notice) -> Result<usize, Error> {
        let (certificates, namespace, secret_name) = resolve(target, &self.certificates)?;
        let certificates: Vec<_> = certificates
            .iter()
            .map(CertificateSummary::object_ref)
            .collect();
        let pods = self.delivery.consumers(&namespace, &secret_name);
        self.delivery.deliver(&certificates, &pods, notice).await
    }

    /// Authenticate, check the request, authorize for its namespace, report;
    /// the first failure ends the call. Returns the number of recipients.
    async fn handle(&self, request: &Request<ReportRequest>) -> Result<usize, Error> {
        let caller = self.guard.authenticate(request.metadata()).await?;
        let username = caller.username.as_deref().unwrap_or_default();
        Span::current().record("caller", username);
        let (target, notice) = parse(request.get_ref(), username)?;
        self.guard.authorize(&caller, namespace_of(&target)).await?;
        self.reach(&target, &notice).await
    }
}

#[tonic::async_trait]
impl ReporterApi for ReportService {
    async fn report(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<ReportResponse>, Status> {
        let span = info_span!(
            "report",
            component = %request.get_ref().reporting_component,
            reason = %request.get_ref().reason,
            caller = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        // The Events this call writes continue the caller's trace.
        certflow_bus::trace::follow(&span, caller_trace(request.metadata()).as_ref());
        self.report_in_span(request).instrument(span).await
    }
}

impl ReportService {
    async fn report_in_span(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<ReportResponse>, Status> {
        let metrics = self.delivery.metrics();
        match self.handle(&request).await {
            Ok(recipients) => {
                metrics.report("ok");
                Ok(Response::new(ReportResponse {
                    recipients: u32::try_from(recipients).unwrap_or(u32::MAX),
                }))
            }
            Err(err) => {
                metrics.report(err.kind());
                if err.is_transient() {
                    warn!(error = %err, "report failed");
                } else {
                    info!(error = %err, "report refused");
                }
                Err(status(&err))
            }
        }
    }
}

/// The W3C trace context the caller sent in `traceparent` (and
/// `tracestate`) metadata, if well formed.
fn caller_trace(metadata: &tonic::metadata::MetadataMap) -> Option<TraceParent> {
    let value = |key: &str| metadata.get(key).and_then(|value| value.to_str().ok());
    TraceParent::from_traceparent(value(TRACEPARENT_HEADER)?, value("tracestate"))
}

/// The gRPC status for `err`: the caller's mistakes are theirs to fix,
/// transient trouble is worth retrying.
pub fn status(err: &Error) -> Status {
    match err {
        Error::InvalidReport { .. } => Status::invalid_argument(err.to_string()),
        Error::Unauthenticated { .. } => Status::unauthenticated(err.to_string()),
        Error::PermissionDenied { .. } => Status::permission_denied(err.to_string()),
        Error::NotFound { .. } => Status::not_found(err.to_string()),
        err if err.is_transient() => Status::unavailable(err.to_string()),
        err => Status::internal(err.to_string()),
    }
}

/// How long in-flight Report calls may take after `shutdown`.
const DRAIN: Duration = Duration::from_secs(5);

/// Binds `addr` and serves the `Reporter` service until `shutdown`, then
/// gives in-flight calls [`DRAIN`]; returns the address bound and the server
/// task. (tonic's graceful stop also waits for idle client connections to
/// close, which a caller holding a channel open never does; after the drain
/// the server is dropped with them.)
pub async fn serve(
    addr: SocketAddr,
    service: ReportService,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<Result<(), tonic::transport::Error>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let server = tonic::transport::Server::builder()
            .add_service(ReporterServer::new(service))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener),
                shutdown.clone().cancelled_owned(),
            );
        let drained = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        };
        tokio::select! {
            result = server => result,
            () = drained => {
                info!(drain = ?DRAIN, "gRPC clients still connected; closing");
                Ok(())
            }
        }
    });
    info!(%local_addr, "serving certflow.v1.Reporter");
    Ok((local_addr, task))
}

#[cfg(test)]
mod tests {
    use certflow_proto::v1::{SecretRef, ServiceCertificateRef};

    use super::*;

    const CALLER: &str = "system:serviceaccount:platform:quota-checker";

    fn request() -> ReportRequest {
        ReportRequest {
            regarding: Some(Regarding::ServiceCertificate(ServiceCertificateRef {
                namespace: "shop".into(),
                name: "web".into(),
            })),
            r#type: ProtoEventType::Warning.into(),
            reason: "QuotaExceeded".into(),
            message: "The namespace has used its certificate quota.".into(),
            field_path: String::new(),
            value: String::new(),
            suggestion: "delete unused ServiceCertificates".into(),
            reporting_component: "certflow-quota".into(),
        }
    }

    #[test]
    fn a_complete_request_becomes_a_target_and_a_notice() {
        let (target, notice) = parse(&request(), CALLER).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            target,
            Target::Certificate {
                namespace: "shop".into(),
                name: "web".into()
            }
        );
        assert_eq!(notice.type_(), EventType::Warning);
        assert_eq!(notice.reason(), "QuotaExceeded");
        assert_eq!(notice.action(), "Report");
        assert_eq!(
            notice.note(),
            "Reported by \"system:serviceaccount:platform:quota-checker\": The namespace has \
             used its certificate quota. delete unused ServiceCertificates"
        );
    }

    #[test]
    fn a_reported_event_names_its_caller_not_the_component_it_claims() {
        let mut claims_to_be_certflow = request();
        claims_to_be_certflow.reporting_component = "certflow-signer".into();
        let (_, notice) =
            parse(&claims_to_be_certflow, CALLER).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(notice.caller(), Some(CALLER));
        assert_eq!(notice.reporting_instance("certflow-reporter-0"), CALLER);
        assert!(!notice.note().contains("certflow-signer"), "{notice:?}");
    }

    #[test]
    fn certflows_own_reasons_are_refused_in_any_case_naming_the_reserved_word() {
        let words = certflow_diagnostics::Reason::ALL
            .iter()
            .map(|reason| reason.as_str())
            .chain(["Issued", "Failed"]);
        for word in words {
            for spelling in [
                word.to_owned(),
                word.to_ascii_lowercase(),
                word.to_ascii_uppercase(),
            ] {
                let mut forged = request();
                forged.reason.clone_from(&spelling);
                let Err(err) = parse(&forged, CALLER) else {
                    panic!("{spelling:?} was accepted");
                };
                let status = status(&err);
                assert_eq!(status.code(), tonic::Code::InvalidArgument, "{spelling}");
                for text in [&format!("{spelling:?}"), word, "reserved"] {
                    assert!(status.message().contains(text), "{text}: {status:?}");
                }
                assert_eq!(err.kind(), "invalid_report");
            }
        }
    }

    #[test]
    fn a_reason_that_only_resembles_certflows_is_the_callers_own() {
        for reason in [
            "PolicyViolations",
            "QuotaPolicyViolation",
            "IssuedElsewhere",
        ] {
            let mut own = request();
            own.reason = reason.into();
            let notice = parse(&own, CALLER).map(|(_, notice)| notice);
            assert_eq!(notice.as_ref().map(Notice::reason).ok(), Some(reason));
        }
    }

    #[test]
    fn a_secret_reference_targets_its_consumers() {
        let mut secret = request();
        secret.regarding = Some(Regarding::Secret(SecretRef {
            namespace: "shop".into(),
            secret_name: "web-tls".into(),
        }));
        let target = parse(&secret, CALLER).map(|(target, _)| target).ok();
        assert_eq!(
            target,
            Some(Target::Secret {
                namespace: "shop".into(),
                secret_name: "web-tls".into()
            })
        );
    }

    #[test]
    fn incomplete_or_malformed_requests_are_refused() {
        type Change = Box<dyn Fn(&mut ReportRequest)>;
        let cases: Vec<(&str, Change)> = vec![
            ("no regarding", Box::new(|r| r.regarding = None)),
            ("no type", Box::new(|r| r.r#type = 0)),
            ("unknown type", Box::new(|r| r.r#type = 9)),
            ("empty reason", Box::new(|r| r.reason.clear())),
            (
                "reason with spaces",
                Box::new(|r| r.reason = "Quota exceeded".into()),
            ),
            (
                "lower-case reason",
                Box::new(|r| r.reason = "quotaExceeded".into()),
            ),
            (
                "long reason",
                Box::new(|r| r.reason = format!("Q{}", "a".repeat(200))),
            ),
            ("empty message", Box::new(|r| r.message = "  ".into())),
            (
                "bad namespace",
                Box::new(|r| {
                    r.regarding = Some(Regarding::ServiceCertificate(ServiceCertificateRef {
                        namespace: "Shop".into(),
                        name: "web".into(),
                    }));
                }),
            ),
            (
                "empty secret name",
                Box::new(|r| {
                    r.regarding = Some(Regarding::Secret(SecretRef {
                        namespace: "shop".into(),
                        secret_name: String::new(),
                    }));
                }),
            ),
        ];
        for (what, change) in cases {
            let mut bad = request();
            change(&mut bad);
            let result = parse(&bad, CALLER);
            assert!(
                matches!(result, Err(Error::InvalidReport { .. })),
                "{what}: {result:?}"
            );
            if let Err(err) = result {
                assert_eq!(status(&err).code(), tonic::Code::InvalidArgument);
            }
        }
    }

    #[test]
    fn a_denied_caller_is_told_the_namespace_and_the_permission_to_grant() {
        let err = Error::PermissionDenied {
            user: "system:serviceaccount:platform:quota".into(),
            namespace: "shop".into(),
        };
        let status = status(&err);
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        for text in [
            "system:serviceaccount:platform:quota",
            "namespace \"shop\"",
            "create",
            "servicecertificates/report",
            "certflow.io",
        ] {
            assert!(status.message().contains(text), "{text}: {status:?}");
        }
        assert!(!err.is_transient());
        assert_eq!(err.kind(), "permission_denied");
    }

    #[test]
    fn a_report_is_authorized_in_the_namespace_it_is_about() {
        let mut secret = request();
        secret.regarding = Some(Regarding::Secret(SecretRef {
            namespace: "payments".into(),
            secret_name: "web-tls".into(),
        }));
        for (request, namespace) in [(request(), "shop"), (secret, "payments")] {
            let target = parse(&request, CALLER).map(|(target, _)| target).ok();
            assert_eq!(target.as_ref().map(namespace_of), Some(namespace));
        }
    }

    #[test]
    fn a_missing_object_is_not_found() {
        let err = Error::NotFound {
            kind: "ServiceCertificate",
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert_eq!(status(&err).code(), tonic::Code::NotFound);
    }

    fn cached(name: &str, secret_name: &str) -> CertificateSummary {
        CertificateSummary {
            namespace: "shop".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            secret_name: secret_name.into(),
            observed_generation: None,
            ready_since: None,
            serial: None,
            failure: None,
            cleared: None,
        }
    }

    #[test]
    fn targets_are_found_in_the_certificate_cache() {
        let cache = SharedCertificates::default();
        cache.apply(kube::runtime::watcher::Event::Init);
        for certificate in [cached("web", "web-tls"), cached("web-v2", "web-tls")] {
            cache.apply(kube::runtime::watcher::Event::InitApply(certificate));
        }
        cache.apply(kube::runtime::watcher::Event::InitDone);
        let certificate = Target::Certificate {
            namespace: "shop".into(),
            name: "web".into(),
        };
        let (found, namespace, secret) = resolve(&certificate, &cache).expect("cached");
        assert_eq!(found, [cached("web", "web-tls")]);
        assert_eq!((namespace.as_str(), secret.as_str()), ("shop", "web-tls"));

        let secret = Target::Secret {
            namespace: "shop".into(),
            secret_name: "web-tls".into(),
        };
        let (writers, _, _) = resolve(&secret, &cache).expect("a Secret");
        assert_eq!(writers.len(), 2);
        let unwritten = Target::Secret {
            namespace: "shop".into(),
            secret_name: "plain".into(),
        };
        let (writers, _, secret) = resolve(&unwritten, &cache).expect("a Secret");
        assert!(writers.is_empty(), "its consumers are still reached");
        assert_eq!(secret, "plain");

        let missing = Target::Certificate {
            namespace: "shop".into(),
            name: "api".into(),
        };
        let err = resolve(&missing, &cache).expect_err("not cached");
        assert_eq!(status(&err).code(), tonic::Code::NotFound);
    }
}
