//! Names: the prefix, stream names, subjects and their parsing.
//!
//! Subjects (with the default prefix `certflow`):
//!
//! | stream              | subject                                        |
//! |---------------------|------------------------------------------------|
//! | `CERTFLOW_WORK`     | `certflow.work.v1.<namespace>.<name>`          |
//! | `CERTFLOW_OUTCOMES` | `certflow.outcome.v1.<namespace>.<name>`       |
//! | `CERTFLOW_DEAD`     | `certflow.dead.v1.<work\|outcome>.<namespace>.<name>`, or `certflow.dead.v1.unrouted` |
//!
//! `<namespace>` and `<name>` are tokens made by [`crate::token`]. The `v1`
//! token is the message package: a breaking change would publish on `.v2.`.

use crate::BusError;
use crate::settings::{DEFAULT_PREFIX, RetryPolicy};
use crate::token::{name_from_token, name_token, namespace_from_token, namespace_token};

/// Longest prefix accepted; keeps stream and consumer names short.
const MAX_PREFIX_LEN: usize = 32;

/// Token naming the message package on every subject.
const VERSION_TOKEN: &str = "v1";

/// Where dead letters go when the original subject is not one of ours.
const UNROUTED_TOKEN: &str = "unrouted";

/// The streams and consumers of one certflow installation, derived from a
/// prefix so that tests can run isolated installations on one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
    replicas: usize,
    retry: RetryPolicy,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            replicas: 1,
            retry: RetryPolicy::default(),
        }
    }
}

/// Which stream a subject belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubjectKind {
    /// A work item for the signer.
    Work,
    /// An outcome for the reporter.
    Outcome,
}

impl SubjectKind {
    fn token(self) -> &'static str {
        match self {
            Self::Work => "work",
            Self::Outcome => "outcome",
        }
    }

    fn from_token(token: &str) -> Option<Self> {
        match token {
            "work" => Some(Self::Work),
            "outcome" => Some(Self::Outcome),
            _ => None,
        }
    }
}

/// A subject taken apart: which stream, and which ServiceCertificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectRef {
    pub kind: SubjectKind,
    pub namespace: String,
    pub name: String,
}

impl Topology {
    /// A topology whose subjects start with `prefix` and whose stream names
    /// start with it upper-cased. The prefix is lower-case ASCII letters,
    /// digits, `-` and `_`, starts with a letter, and has at most 32 characters.
    pub fn new(prefix: &str) -> Result<Self, BusError> {
        validate_prefix(prefix)?;
        Ok(Self {
            prefix: prefix.to_owned(),
            ..Self::default()
        })
    }

    /// A topology with a prefix no other test uses: `<base>_<16 hex digits>`.
    /// For tests that share one nats-server.
    pub fn isolated(base: &str) -> Result<Self, BusError> {
        let suffix: u64 = rand::random();
        Self::new(&format!("{base}_{suffix:016x}"))
    }

    /// Stores every stream on `replicas` servers (1 for a single server, 3 for
    /// a production cluster). Consumers inherit it from their stream.
    pub fn with_replicas(mut self, replicas: usize) -> Result<Self, BusError> {
        if !(1..=5).contains(&replicas) {
            return Err(BusError::InvalidSetting {
                setting: "replicas",
                reason: format!("{replicas} is not between 1 and 5"),
            });
        }
        self.replicas = replicas;
        Ok(self)
    }

    /// Replaces the redelivery schedule (see [`RetryPolicy`]); for tests that
    /// must see retries run out quickly.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The subject prefix, e.g. `certflow`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How many servers store each stream.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The redelivery schedule shared by the signer and reporter consumers.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Name of the work stream, e.g. `CERTFLOW_WORK`.
    pub fn work_stream(&self) -> String {
        self.stream_name("WORK")
    }

    /// Name of the outcome stream, e.g. `CERTFLOW_OUTCOMES`.
    pub fn outcome_stream(&self) -> String {
        self.stream_name("OUTCOMES")
    }

    /// Name of the dead-letter stream, e.g. `CERTFLOW_DEAD`.
    pub fn dead_letter_stream(&self) -> String {
        self.stream_name("DEAD")
    }

    /// Subject of work items for one ServiceCertificate.
    pub fn work_subject(&self, namespace: &str, name: &str) -> Result<String, BusError> {
        self.object_subject(SubjectKind::Work, namespace, name)
    }

    /// Subject of outcomes for one ServiceCertificate.
    pub fn outcome_subject(&self, namespace: &str, name: &str) -> Result<String, BusError> {
        self.object_subject(SubjectKind::Outcome, namespace, name)
    }

    /// Every work subject: `<prefix>.work.v1.>`.
    pub fn work_filter(&self) -> String {
        self.kind_filter(SubjectKind::Work)
    }

    /// Every outcome subject: `<prefix>.outcome.v1.>`.
    pub fn outcome_filter(&self) -> String {
        self.kind_filter(SubjectKind::Outcome)
    }

    /// Every dead-letter subject: `<prefix>.dead.v1.>`.
    pub fn dead_letter_filter(&self) -> String {
        format!("{}.dead.{VERSION_TOKEN}.>", self.prefix)
    }

    /// Work subjects of one namespace: `<prefix>.work.v1.<namespace>.*`.
    pub fn work_filter_for_namespace(&self, namespace: &str) -> Result<String, BusError> {
        self.namespace_filter(SubjectKind::Work, namespace)
    }

    /// Outcome subjects of one namespace: `<prefix>.outcome.v1.<namespace>.*`.
    pub fn outcome_filter_for_namespace(&self, namespace: &str) -> Result<String, BusError> {
        self.namespace_filter(SubjectKind::Outcome, namespace)
    }

    /// Where the dead letter of a message received on `original_subject` goes:
    /// the same namespace and name under `<prefix>.dead.v1.<kind>`, so an
    /// operator can filter dead letters per certificate; subjects that are not
    /// ours go to `<prefix>.dead.v1.unrouted`.
    pub fn dead_letter_subject(&self, original_subject: &str) -> String {
        let routed = self.parse_subject(original_subject).and_then(|parsed| {
            let namespace = namespace_token(&parsed.namespace).ok()?;
            let name = name_token(&parsed.name).ok()?;
            Some(format!(
                "{}.dead.{VERSION_TOKEN}.{}.{namespace}.{name}",
                self.prefix,
                parsed.kind.token()
            ))
        });
        routed.unwrap_or_else(|| format!("{}.dead.{VERSION_TOKEN}.{UNROUTED_TOKEN}", self.prefix))
    }

    /// Takes apart a work or outcome subject of this topology.
    pub fn parse_subject(&self, subject: &str) -> Option<SubjectRef> {
        let mut tokens = subject.split('.');
        if tokens.next()? != self.prefix {
            return None;
        }
        let kind = SubjectKind::from_token(tokens.next()?)?;
        if tokens.next()? != VERSION_TOKEN {
            return None;
        }
        let namespace = namespace_from_token(tokens.next()?)?;
        let name = name_from_token(tokens.next()?)?;
        if tokens.next().is_some() {
            return None;
        }
        Some(SubjectRef {
            kind,
            namespace,
            name,
        })
    }

    /// The server's advisory subject announcing that a consumer gave up on a
    /// message after its last delivery, for anyone who wants to report
    /// deliveries that ended without an outcome (e.g. a consumer crash loop).
    pub fn max_deliveries_advisory_subject(&self, stream: &str, consumer: &str) -> String {
        format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}")
    }

    fn stream_name(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.prefix.to_ascii_uppercase())
    }

    fn object_subject(
        &self,
        kind: SubjectKind,
        namespace: &str,
        name: &str,
    ) -> Result<String, BusError> {
        Ok(format!(
            "{}.{}.{VERSION_TOKEN}.{}.{}",
            self.prefix,
            kind.token(),
            namespace_token(namespace)?,
            name_token(name)?
        ))
    }

    fn kind_filter(&self, kind: SubjectKind) -> String {
        format!("{}.{}.{VERSION_TOKEN}.>", self.prefix, kind.token())
    }

    fn namespace_filter(&self, kind: SubjectKind, namespace: &str) -> Result<String, BusError> {
        Ok(format!(
            "{}.{}.{VERSION_TOKEN}.{}.*",
            self.prefix,
            kind.token(),
            namespace_token(namespace)?
        ))
    }
}

fn validate_prefix(prefix: &str) -> Result<(), BusError> {
    let invalid = |reason| BusError::InvalidPrefix {
        prefix: prefix.to_owned(),
        reason,
    };
    if prefix.is_empty() {
        return Err(invalid("it is empty"));
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(invalid("it is longer than 32 characters"));
    }
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("it must start with a lower-case letter"));
    }
    // Upper-case letters are refused so that two prefixes can never map to the
    // same (upper-cased) stream names.
    if !prefix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(invalid("only a-z, 0-9, '-' and '_' are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology::default()
    }

    #[test]
    fn default_names_use_the_certflow_prefix() {
        let t = topology();
        assert_eq!(t.work_stream(), "CERTFLOW_WORK");
        assert_eq!(t.outcome_stream(), "CERTFLOW_OUTCOMES");
        assert_eq!(t.dead_letter_stream(), "CERTFLOW_DEAD");
        assert_eq!(t.work_filter(), "certflow.work.v1.>");
        assert_eq!(t.outcome_filter(), "certflow.outcome.v1.>");
        assert_eq!(t.dead_letter_filter(), "certflow.dead.v1.>");
    }

    #[test]
    fn work_subjects_carry_namespace_and_encoded_name() {
        let subject = topology().work_subject("shop", "api.shop.svc");
        assert_eq!(
            subject.ok().as_deref(),
            Some("certflow.work.v1.shop.api_shop_svc")
        );
    }

    #[test]
    fn outcome_subjects_carry_namespace_and_encoded_name() {
        let subject = topology().outcome_subject("shop", "api");
        assert_eq!(
            subject.ok().as_deref(),
            Some("certflow.outcome.v1.shop.api")
        );
    }

    #[test]
    fn subjects_parse_back_into_namespace_and_name() {
        let t = topology();
        let parsed = t.parse_subject("certflow.work.v1.shop.api_shop_svc");
        assert_eq!(
            parsed,
            Some(SubjectRef {
                kind: SubjectKind::Work,
                namespace: "shop".into(),
                name: "api.shop.svc".into()
            })
        );
    }

    #[test]
    fn foreign_subjects_do_not_parse() {
        let t = topology();
        for subject in [
            "other.work.v1.shop.api",
            "certflow.work.v2.shop.api",
            "certflow.secret.v1.shop.api",
            "certflow.work.v1.shop",
            "certflow.work.v1.shop.api.extra",
            "certflow.work.v1.Shop.api",
        ] {
            assert_eq!(t.parse_subject(subject), None, "{subject}");
        }
    }

    #[test]
    fn namespace_filters_match_one_namespace() {
        let filter = topology().work_filter_for_namespace("shop");
        assert_eq!(filter.ok().as_deref(), Some("certflow.work.v1.shop.*"));
        assert!(topology().outcome_filter_for_namespace("a.b").is_err());
    }

    #[test]
    fn dead_letters_keep_the_namespace_and_name_of_the_original() {
        let t = topology();
        assert_eq!(
            t.dead_letter_subject("certflow.work.v1.shop.api_shop_svc"),
            "certflow.dead.v1.work.shop.api_shop_svc"
        );
        assert_eq!(
            t.dead_letter_subject("certflow.outcome.v1.shop.api"),
            "certflow.dead.v1.outcome.shop.api"
        );
        assert_eq!(
            t.dead_letter_subject("elsewhere"),
            "certflow.dead.v1.unrouted"
        );
    }

    #[test]
    fn custom_prefixes_rename_streams_and_subjects() {
        let t = Topology::new("e2e-7");
        let t = t.ok();
        assert_eq!(
            t.as_ref().map(Topology::work_stream).as_deref(),
            Some("E2E-7_WORK")
        );
        assert_eq!(
            t.and_then(|t| t.outcome_subject("ns", "n").ok()).as_deref(),
            Some("e2e-7.outcome.v1.ns.n")
        );
    }

    #[test]
    fn prefixes_that_break_subjects_or_stream_names_are_rejected() {
        for bad in [
            "",
            "Certflow",
            "cert.flow",
            "cert flow",
            "cert*",
            ">",
            "1abc",
            "a/b",
        ] {
            assert!(Topology::new(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Topology::new(&"a".repeat(33)).is_err());
    }

    #[test]
    fn isolated_topologies_do_not_share_streams() {
        let a = Topology::isolated("t").ok().map(|t| t.work_stream());
        let b = Topology::isolated("t").ok().map(|t| t.work_stream());
        assert!(a.is_some());
        assert_ne!(a, b);
    }

    #[test]
    fn replicas_are_limited_to_what_jetstream_supports() {
        assert!(topology().with_replicas(0).is_err());
        assert!(topology().with_replicas(6).is_err());
        assert_eq!(
            topology().with_replicas(3).ok().map(|t| t.replicas()),
            Some(3)
        );
    }
}
