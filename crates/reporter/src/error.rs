//! The reporter's one error type. Whether to retry and which metric label
//! to use come from the variant, never from the message text.

/// Why an outcome or a report could not be turned into Events this time.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes API, {action}: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },

    /// A `Report` request is incomplete or malformed (the caller's mistake).
    #[error("invalid report: {reason}")]
    InvalidReport { reason: String },

    /// A `Report` call carries no usable bearer token, or the Kubernetes API
    /// did not accept it for the reporter's audience (the caller's to fix).
    #[error(
        "unauthenticated: {problem}; send the metadata \"authorization: Bearer <token>\" \
         with a Kubernetes ServiceAccount token whose audience is {audience:?}"
    )]
    Unauthenticated { problem: String, audience: String },

    /// An authenticated `Report` caller may not report about a namespace.
    #[error(
        "{user:?} may not report about namespace {namespace:?}: grant it create on \
         servicecertificates/report (API group certflow.io) in namespace {namespace:?} \
         with a Role and RoleBinding (docs/deploy.md, \"Who may call the Report API\")"
    )]
    PermissionDenied { user: String, namespace: String },

    /// A `Report` request names an object that does not exist.
    #[error("{kind} {namespace}/{name} does not exist")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
}

impl Error {
    pub(crate) fn kube(action: &'static str) -> impl FnOnce(kube::Error) -> Self {
        move |source| Self::Kube { action, source }
    }

    /// Transient errors are retried with backoff (the outcome is handed back
    /// to JetStream); the rest are logged, counted and not retried.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kube { source, .. } => certflow_runtime::kube_client::is_transient(source),
            Self::InvalidReport { .. }
            | Self::Unauthenticated { .. }
            | Self::PermissionDenied { .. }
            | Self::NotFound { .. } => false,
        }
    }

    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "kube",
            Self::InvalidReport { .. } => "invalid_report",
            Self::Unauthenticated { .. } => "unauthenticated",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::NotFound { .. } => "not_found",
        }
    }
}

/// True when the API answered with `code` (e.g. 404, 409).
pub(crate) fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_errors_follow_the_shared_transient_rule() {
        // The rule itself is table-tested in certflow_runtime::kube_client;
        // here only that the reporter asks it, with one answer each way.
        for code in [403, 422] {
            let status = kube::core::Status::failure("refused", "Refused").with_code(code);
            let source = kube::Error::Api(status.boxed());
            let expected = certflow_runtime::kube_client::is_transient(&source);
            let error = Error::kube("writing an Event")(source);
            assert_eq!(error.is_transient(), expected, "{code}");
        }
    }

    #[test]
    fn kinds_are_stable_labels() {
        let error = Error::InvalidReport {
            reason: "no reason".into(),
        };
        assert_eq!(error.kind(), "invalid_report");
        assert!(!error.is_transient());
    }
}
