//! The signer's one error type. Whether to retry and which metric label to
//! use come from the variant, never from the message text.

/// Why a work item could not be finished this time.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API, {action}: {}", brief(source))]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },

    #[error("message bus: {0}")]
    Bus(#[from] certflow_bus::BusError),

    #[error("certificate generation: {0}")]
    Pki(#[from] certflow_pki::PkiError),

    #[error("the work item payload cannot be decoded: {0}")]
    Undecodable(#[source] prost::DecodeError),

    #[error("a blocking task failed: {0}")]
    Join(#[source] tokio::task::JoinError),

    #[error("ServiceCertificate {namespace}/{name}: {message}")]
    InvalidObject {
        namespace: String,
        name: String,
        message: String,
    },
}

impl Error {
    pub(crate) fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Self {
        move |source| Self::Kube { action, source }
    }

    /// Transient errors are retried with backoff; the rest end the work item
    /// as a reported failure (or a dead letter when it cannot be decoded).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kube { source, .. } => certflow_runtime::kube_client::is_transient(source),
            Self::Bus(err) => err.is_transient(),
            Self::Join(_) => true,
            Self::Pki(_) | Self::Undecodable(_) | Self::InvalidObject { .. } => false,
        }
    }

    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "kube",
            Self::Bus(_) => "bus",
            Self::Join(_) => "join",
            Self::Pki(_) => "pki",
            Self::Undecodable(_) => "undecodable",
            Self::InvalidObject { .. } => "invalid_object",
        }
    }
}

/// The API server's own sentence for a refused request ("admission webhook
/// ... denied the request: ...", 422 Invalid), without the `Status` dump that
/// `kube::Error`'s Display appends: this text reaches app owners in Events.
fn brief(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            format!("{} ({} {})", status.message, status.code, status.reason)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_request_reads_as_the_api_servers_sentence() {
        let status = kube::core::Status {
            code: 422,
            reason: "Invalid".to_owned(),
            message: "secrets \"web-tls\" is forbidden: Secrets need a team label".to_owned(),
            ..Default::default()
        };
        let err = Error::kube("applying the Secret")(kube::Error::Api(Box::new(status)));
        assert_eq!(
            err.to_string(),
            "kubernetes API, applying the Secret: secrets \"web-tls\" is forbidden: \
             Secrets need a team label (422 Invalid)"
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn a_secret_refused_in_a_namespace_being_deleted_is_not_retried() {
        let mut status = kube::core::Status::failure(
            "unable to create new content in namespace shop because it is being terminated",
            "Forbidden",
        )
        .with_code(403);
        status.details = Some(kube::core::response::StatusDetails {
            name: "web-tls".to_owned(),
            group: String::new(),
            kind: "secrets".to_owned(),
            uid: String::new(),
            causes: vec![kube::core::response::StatusCause {
                reason: "NamespaceTerminating".to_owned(),
                message: "namespace shop is being terminated".to_owned(),
                field: "metadata.namespace".to_owned(),
            }],
            retry_after_seconds: 0,
        });
        let err = Error::kube("creating the Secret")(kube::Error::Api(status.boxed()));
        assert!(!err.is_transient());
    }
}
