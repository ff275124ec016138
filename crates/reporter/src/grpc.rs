//! Observes `certflow.v1.Reporter/Report` calls; writes, through
//! [`Reporter`], the same Events an outcome would (on the ServiceCertificate
//! or the ServiceCertificates writing a Secret, on the Pods consuming the
//! Secret, and on their workloads); never records a report as an active
//! failure (a report has no issuance that would resolve it).
//!
//! Callers are not authenticated yet (issue 7 adds it): the server binds to
//! 127.0.0.1 by default, and anything else must be protected by the network
//! (a NetworkPolicy admitting only control-plane Pods).

use std::net::SocketAddr;
use std::sync::Arc;

use certflow_proto::v1::report_request::Regarding;
use certflow_proto::v1::reporter_server::{Reporter as ReporterApi, ReporterServer};
use certflow_proto::v1::{EventType as ProtoEventType, ReportRequest, ReportResponse};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tracing::{info, instrument, warn};

use crate::Error;
use crate::events::{EventType, MAX_WORD_BYTES, Notice};
use crate::report::{Reporter, Target, compose};

/// The `action` of Events written for a `Report` call.
pub const REPORT_ACTION: &str = "Report";

/// Checks a request and turns it into what to report about and what to say.
pub fn parse(request: &ReportRequest) -> Result<(Target, Notice), Error> {
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
    Ok((target, Notice::new(type_, reason, REPORT_ACTION, &note)))
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

/// The tonic service.
#[derive(Debug, Clone)]
pub struct ReportService {
    reporter: Arc<Reporter>,
}

impl ReportService {
    pub fn new(reporter: Arc<Reporter>) -> Self {
        Self { reporter }
    }
}

#[tonic::async_trait]
impl ReporterApi for ReportService {
    #[instrument(skip_all, fields(component = %request.get_ref().reporting_component, reason = %request.get_ref().reason))]
    async fn report(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<ReportResponse>, Status> {
        let metrics = self.reporter.metrics();
        let (target, notice) = parse(request.get_ref()).map_err(|err| {
            metrics.report("invalid");
            status(&err)
        })?;
        match self.reporter.report(&target, &notice).await {
            Ok(recipients) => {
                metrics.report("ok");
                Ok(Response::new(ReportResponse {
                    recipients: u32::try_from(recipients).unwrap_or(u32::MAX),
                }))
            }
            Err(err) => {
                warn!(error = %err, "report failed");
                metrics.report(err.kind());
                Err(status(&err))
            }
        }
    }
}

/// The gRPC status for `err`: the caller's mistakes are theirs to fix,
/// transient trouble is worth retrying.
pub fn status(err: &Error) -> Status {
    match err {
        Error::InvalidReport { .. } => Status::invalid_argument(err.to_string()),
        Error::NotFound { .. } => Status::not_found(err.to_string()),
        err if err.is_transient() => Status::unavailable(err.to_string()),
        err => Status::internal(err.to_string()),
    }
}

/// Binds `addr` and serves the `Reporter` service until `shutdown`; returns
/// the address bound and the server task.
pub async fn serve(
    addr: SocketAddr,
    service: ReportService,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, JoinHandle<Result<(), tonic::transport::Error>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(ReporterServer::new(service))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.cancelled_owned())
            .await
    });
    info!(%local_addr, "serving certflow.v1.Reporter");
    Ok((local_addr, task))
}

#[cfg(test)]
mod tests {
    use certflow_proto::v1::{SecretRef, ServiceCertificateRef};

    use super::*;

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
        let (target, notice) = parse(&request()).unwrap_or_else(|err| panic!("{err}"));
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
            "The namespace has used its certificate quota. delete unused ServiceCertificates"
        );
    }

    #[test]
    fn a_secret_reference_targets_its_consumers() {
        let mut secret = request();
        secret.regarding = Some(Regarding::Secret(SecretRef {
            namespace: "shop".into(),
            secret_name: "web-tls".into(),
        }));
        let target = parse(&secret).map(|(target, _)| target).ok();
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
            let result = parse(&bad);
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
    fn a_missing_object_is_not_found() {
        let err = Error::NotFound {
            kind: "ServiceCertificate",
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert_eq!(status(&err).code(), tonic::Code::NotFound);
    }
}
