//! What a CertificateAuthority's status says: decided from the object, the
//! key pair found where its Secret should be, and the clock. Pure: the
//! caller loads the key pair and writes the result, so every rule here is
//! tested directly.
//!
//! Three promises live here. A CA whose key pair was lost is never replaced
//! without the operator naming the lost one ([`ca_state`]). A CA outside its
//! validity signs nothing. And a key pair change keeps the previous CA
//! trusted for the rotation overlap ([`previous_authorities`]). Besides:
//! what a CA no signer of this installation holds says
//! ([`unclaimed_status`]), and when the clock next changes a status
//! ([`next_change`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use certflow_api::condition::{READY, find_condition, set_condition};
use certflow_api::{
    CertificateAuthority, CertificateAuthorityStatus, Condition, ConditionStatus, EXPIRING_SOON,
    EXPIRY_WARNING, POLICY_UNRESTRICTED, PreviousAuthority, labels,
};
use certflow_pki::Authority;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt as _;

use crate::request::rfc3339;

/// What the signer found where the CA's key pair should be.
#[derive(Debug, Clone)]
pub enum KeyPair {
    /// The Secret holds a CA certificate and its key.
    Loaded(Arc<Authority>),
    /// The Secret does not exist.
    Missing,
    /// The Secret exists but cannot be used; says why, never with key bytes.
    Unusable(String),
}

impl KeyPair {
    pub fn authority(&self) -> Option<&Arc<Authority>> {
        match self {
            Self::Loaded(authority) => Some(authority),
            Self::Missing | Self::Unusable(_) => None,
        }
    }
}

/// Whether a CA may sign now, and if not, why. Each variant is one reason
/// an operator reads in the Ready condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaState {
    /// Loaded and valid now; `expiring_soon` within [`EXPIRY_WARNING`] of
    /// its notAfter.
    Ready { expiring_soon: bool },
    /// No Secret, and certflow may create one: the CA never had a key pair,
    /// or the operator named the lost one in the regenerate annotation.
    Generate,
    /// No Secret, and certflow may not create one.
    KeyPairMissing,
    /// The Secret cannot be used as a CA.
    KeyPairUnusable,
    /// The CA certificate's notAfter has passed.
    Expired,
    /// The CA certificate's notBefore has not come yet.
    NotYetValid,
}

impl CaState {
    /// The Ready condition's reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Ready { .. } => "KeyPairLoaded",
            Self::Generate | Self::KeyPairMissing => "KeyPairMissing",
            Self::KeyPairUnusable => "KeyPairUnusable",
            Self::Expired => "Expired",
            Self::NotYetValid => "NotYetValid",
        }
    }

    pub fn can_sign(self) -> bool {
        matches!(self, Self::Ready { .. })
    }
}

/// Decides whether `ca` can sign at `now` with `key_pair`.
pub fn ca_state(ca: &CertificateAuthority, key_pair: &KeyPair, now: SystemTime) -> CaState {
    match key_pair {
        KeyPair::Missing if may_generate(ca) => CaState::Generate,
        KeyPair::Missing => CaState::KeyPairMissing,
        KeyPair::Unusable(_) => CaState::KeyPairUnusable,
        KeyPair::Loaded(authority) if now < authority.not_before() => CaState::NotYetValid,
        KeyPair::Loaded(authority) if now >= authority.not_after() => CaState::Expired,
        KeyPair::Loaded(authority) => CaState::Ready {
            expiring_soon: authority
                .not_after()
                .duration_since(now)
                .is_ok_and(|left| left <= EXPIRY_WARNING),
        },
    }
}

/// The fingerprint of the key pair this CA had, which a missing Secret means
/// was lost.
fn lost_fingerprint(ca: &CertificateAuthority) -> Option<&str> {
    ca.status.as_ref()?.fingerprint.as_deref()
}

/// certflow creates a key pair only for a CA that never had one, or when
/// the regenerate annotation names the lost one: certificates already trust
/// the old CA, so replacing it must be an explicit act, and naming the
/// fingerprint makes the act good for that loss only.
fn may_generate(ca: &CertificateAuthority) -> bool {
    if !ca.spec.generates() {
        return false;
    }
    match lost_fingerprint(ca) {
        None => true,
        Some(lost) => ca
            .annotations()
            .get(labels::REGENERATE)
            .is_some_and(|confirmed| confirmed.trim().eq_ignore_ascii_case(lost)),
    }
}

/// The command that confirms replacing `ca`'s lost key pair.
pub fn regenerate_command(ca: &CertificateAuthority, lost: &str) -> String {
    format!(
        "kubectl annotate certificateauthority {} {}={lost} --overwrite",
        ca.name_any(),
        labels::REGENERATE
    )
}

/// Where the key pair lives, for messages: `namespace/name`.
fn secret_path(ca: &CertificateAuthority, namespace: &str) -> String {
    format!("{namespace}/{}", ca.spec.secret_name)
}

/// The Ready condition's message, for the platform operator: what is wrong
/// and the exact thing to do. Stable for a given state, so rewriting status
/// with it changes nothing.
pub fn operator_message(
    ca: &CertificateAuthority,
    key_pair: &KeyPair,
    state: CaState,
    namespace: &str,
) -> String {
    let secret = secret_path(ca, namespace);
    let regenerate = |lost: &str| {
        format!(
            "To replace it with a new key pair instead (every certificate it signed is then \
             re-issued, and Pods must come to trust the new CA), run: {}",
            regenerate_command(ca, lost)
        )
    };
    match (state, key_pair) {
        (CaState::Ready { .. }, KeyPair::Loaded(authority)) => format!(
            "The CA key pair in Secret {secret} is loaded; its certificate is valid until {}.",
            rfc3339(authority.not_after())
        ),
        (CaState::Generate, _) => {
            format!("certflow is generating a key pair into Secret {secret}.")
        }
        (CaState::KeyPairMissing, _) => match lost_fingerprint(ca) {
            Some(lost) if ca.spec.generates() => format!(
                "Its key pair Secret {secret} was deleted. certflow does not generate a new one on \
                 its own, because certificates already trust the lost CA (fingerprint {lost}). \
                 To keep that CA, re-create the Secret from a backup with tls.crt and tls.key. {}",
                regenerate(lost)
            ),
            Some(lost) => format!(
                "Its key pair Secret {secret} was deleted. Re-create it with tls.crt and tls.key \
                 (from a backup, to keep the CA with fingerprint {lost} that certificates trust)."
            ),
            None => format!(
                "Its key pair Secret {secret} does not exist; create it with tls.crt and tls.key, \
                 or set spec.generate: true."
            ),
        },
        (CaState::KeyPairUnusable, KeyPair::Unusable(detail)) => {
            format!("Its key pair Secret {secret} is unusable: {detail}.")
        }
        (CaState::Expired, KeyPair::Loaded(authority)) => {
            let mut message = format!(
                "Its certificate expired at {}, so it signs nothing. Put a new CA certificate and \
                 key into Secret {secret} (tls.crt and tls.key).",
                rfc3339(authority.not_after())
            );
            if ca.spec.generates() {
                message.push_str(&format!(
                    " Or, as spec.generate is true, delete that Secret and run: {}",
                    regenerate_command(ca, authority.fingerprint())
                ));
            }
            message
        }
        (CaState::NotYetValid, KeyPair::Loaded(authority)) => format!(
            "Its certificate is not valid before {}, so it signs nothing until then. If that is \
             wrong, check the clock of the machine that made the certificate in Secret {secret}.",
            rfc3339(authority.not_before())
        ),
        // The variants above are the only pairs ca_state produces.
        (state, _) => format!("Its key pair Secret {secret}: {}.", state.reason()),
    }
}

/// Why the CA cannot sign, for the app owner whose request it refuses: the
/// platform team's action is in the CA's own status.
pub fn app_detail(ca: &CertificateAuthority, key_pair: &KeyPair, state: CaState) -> String {
    let name = ca.name_any();
    match (state, key_pair) {
        (CaState::Expired, KeyPair::Loaded(authority)) => format!(
            "its certificate expired at {}",
            rfc3339(authority.not_after())
        ),
        (CaState::NotYetValid, KeyPair::Loaded(authority)) => format!(
            "its certificate is not valid before {}",
            rfc3339(authority.not_before())
        ),
        (CaState::KeyPairMissing, _) if lost_fingerprint(ca).is_some() => format!(
            "its key pair was deleted; the platform team must restore it or confirm a new one \
             (see kubectl describe certificateauthority {name})"
        ),
        (CaState::KeyPairMissing, _) => "its key pair Secret does not exist".to_owned(),
        (CaState::Generate, _) => "its key pair is being generated".to_owned(),
        (CaState::KeyPairUnusable, KeyPair::Unusable(detail)) => {
            format!("its key pair is unusable: {detail}")
        }
        (state, _) => format!(
            "{} (see kubectl describe certificateauthority {name})",
            state.reason()
        ),
    }
}

/// Everything the desired status depends on besides the CA object.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub key_pair: &'a KeyPair,
    pub state: CaState,
    /// The control-plane namespace, for messages.
    pub namespace: &'a str,
    /// A key this process held for the CA before, if its fingerprint is
    /// the one the status names and the Secret no longer holds: the only
    /// key that can cross-sign the new one.
    pub retired: Option<&'a Authority>,
    pub now: SystemTime,
}

/// The status certflow wants `ca` to have, and what went wrong on the way
/// that the caller should log.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub status: CertificateAuthorityStatus,
    /// Why the new CA could not be cross-signed by the previous one, when
    /// a rotation was recorded without a cross-signed certificate although
    /// the previous key was held.
    pub cross_sign_failure: Option<String>,
}

/// The status `ca` should have. Identity fields (fingerprint, certificate,
/// validity) follow the loaded key pair and are kept when there is none, so
/// a lost key pair's fingerprint stays what the regenerate annotation must
/// name.
pub fn desired_status(ca: &CertificateAuthority, seen: Observation<'_>) -> Desired {
    let current = ca.status.clone().unwrap_or_default();
    let mut status = current.clone();
    let now = Time(k8s_openapi::jiff::Timestamp::try_from(seen.now).unwrap_or_default());
    let overlap = ca
        .spec
        .rotation_overlap()
        .unwrap_or(certflow_api::DEFAULT_ROTATION_OVERLAP);

    let ready_status = if seen.state.can_sign() {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    set_condition(
        &mut status.conditions,
        Condition::new(
            READY,
            ready_status,
            seen.state.reason(),
            operator_message(ca, seen.key_pair, seen.state, seen.namespace),
        ),
        now.clone(),
    );
    match expiring_soon(seen.key_pair, seen.state) {
        Some(condition) => set_condition(&mut status.conditions, condition, now.clone()),
        None => status.conditions.retain(|c| c.type_ != EXPIRING_SOON),
    }
    set_condition(&mut status.conditions, policy_condition(ca), now);

    let mut cross_sign_failure = None;
    match seen.key_pair {
        KeyPair::Loaded(authority) => {
            let previous =
                previous_authorities(&current, authority, seen.retired, overlap, seen.now);
            cross_sign_failure = previous.cross_sign_failure;
            status.previous = previous.list;
            status.fingerprint = Some(authority.fingerprint().to_owned());
            status.serial_number = Some(authority.serial().to_owned());
            status.not_before = Some(time(authority.not_before()));
            status.not_after = Some(time(authority.not_after()));
            status.certificate = Some(authority.cert_pem().to_owned());
        }
        KeyPair::Missing | KeyPair::Unusable(_) => {
            status
                .previous
                .retain(|previous| still_trusted(previous, overlap, seen.now));
        }
    }
    Desired {
        status,
        cross_sign_failure,
    }
}

/// The Ready reason of a CertificateAuthority no signer of this
/// installation holds or was asked for (see [`unclaimed_status`]).
pub const KEY_PAIR_NOT_LOADED: &str = "KeyPairNotLoaded";

/// The status a signer writes on a CA whose key pair it neither holds nor
/// was asked for, or `None` when it must leave the status alone.
///
/// Several certflow installations may share a cluster's cluster-scoped
/// CAs, and only the one holding a key pair may say it is missing or
/// generate one. So this says only what every installation agrees on:
/// Ready=Unknown, with no namespace in the message (each installation has
/// its own), and the policy condition. It never replaces a status an
/// installation that holds the key pair wrote (a fingerprint, or any other
/// Ready reason), so installations never undo each other's writes.
pub fn unclaimed_status(
    ca: &CertificateAuthority,
    now: SystemTime,
) -> Option<CertificateAuthorityStatus> {
    let current = ca.status.clone().unwrap_or_default();
    if current.fingerprint.is_some() {
        return None;
    }
    let ready = find_condition(&current.conditions, READY);
    if ready.is_some_and(|ready| ready.reason != KEY_PAIR_NOT_LOADED) {
        return None;
    }
    let message = if ca.spec.generates() {
        format!(
            "No ServiceCertificate has named this CA yet. certflow generates its key pair into \
             Secret {} of its control-plane namespace when the first one does.",
            ca.spec.secret_name
        )
    } else {
        format!(
            "No certflow signer has found its key pair: create Secret {} with tls.crt and \
             tls.key in certflow's control-plane namespace (the signer's --namespace), or set \
             spec.generate: true.",
            ca.spec.secret_name
        )
    };
    let now = time(now);
    let mut status = current;
    set_condition(
        &mut status.conditions,
        Condition::new(
            READY,
            ConditionStatus::Unknown,
            KEY_PAIR_NOT_LOADED,
            message,
        ),
        now.clone(),
    );
    set_condition(&mut status.conditions, policy_condition(ca), now);
    Some(status)
}

/// When `status` (as [`desired_status`] made it for `key_pair`) next
/// changes with the clock alone: the CA certificate's notBefore, the start
/// of its last 30 days, its notAfter, or the end of a previous CA's
/// overlap. `None` when nothing is ahead.
pub fn next_change(
    ca: &CertificateAuthority,
    key_pair: &KeyPair,
    status: &CertificateAuthorityStatus,
    now: SystemTime,
) -> Option<SystemTime> {
    let overlap = ca
        .spec
        .rotation_overlap()
        .unwrap_or(certflow_api::DEFAULT_ROTATION_OVERLAP);
    let validity = key_pair.authority().into_iter().flat_map(|authority| {
        [
            Some(authority.not_before()),
            authority.not_after().checked_sub(EXPIRY_WARNING),
            Some(authority.not_after()),
        ]
        .into_iter()
        .flatten()
    });
    let overlaps = status
        .previous
        .iter()
        .map(|previous| SystemTime::from(previous.retired_at.0) + overlap);
    validity.chain(overlaps).filter(|at| *at > now).min()
}

/// `ExpiringSoon`, while a loaded key pair's validity can be judged.
fn expiring_soon(key_pair: &KeyPair, state: CaState) -> Option<Condition> {
    let authority = key_pair.authority()?;
    let until = rfc3339(authority.not_after());
    let condition = match state {
        CaState::Ready {
            expiring_soon: true,
        } => Condition::new(
            EXPIRING_SOON,
            ConditionStatus::True,
            "CertificateExpiring",
            format!(
                "The CA certificate expires at {until}, within 30 days. Certificates it signs end \
                 by then at the latest. Replace its key pair before then; certificates are \
                 re-issued, and the previous CA stays trusted for spec.rotation.overlap."
            ),
        ),
        CaState::Expired => Condition::new(
            EXPIRING_SOON,
            ConditionStatus::False,
            "Expired",
            format!("The CA certificate expired at {until}; see the Ready condition."),
        ),
        _ => Condition::new(
            EXPIRING_SOON,
            ConditionStatus::False,
            "CertificateValid",
            format!("The CA certificate expires at {until}."),
        ),
    };
    Some(condition)
}

/// `PolicyUnrestricted`: a CA without a policy says so where operators look.
pub fn policy_condition(ca: &CertificateAuthority) -> Condition {
    match ca.spec.policy {
        None => Condition::new(
            POLICY_UNRESTRICTED,
            ConditionStatus::True,
            "NoPolicy",
            "spec.policy is not set, so this CA signs any name for any namespace (only CA \
             certificates are refused): any namespace can get a certificate for any other \
             Service's name. Set spec.policy to limit who may request what.",
        ),
        Some(_) => Condition::new(
            POLICY_UNRESTRICTED,
            ConditionStatus::False,
            "PolicySet",
            "spec.policy limits which namespaces may use this CA and which names it signs.",
        ),
    }
}

/// `status.previous` after observing `current`, and a cross-signing failure
/// to log, if any.
#[derive(Debug)]
struct Previous {
    list: Vec<PreviousAuthority>,
    cross_sign_failure: Option<String>,
}

/// The previous CAs still inside their overlap, newest first. When the
/// status names a different CA than `current`, that one becomes the newest
/// entry, with `current` cross-signed by its key if `retired` is that key.
/// A CA that is current again is never also listed as previous.
fn previous_authorities(
    status: &CertificateAuthorityStatus,
    current: &Authority,
    retired: Option<&Authority>,
    overlap: Duration,
    now: SystemTime,
) -> Previous {
    let mut list: Vec<PreviousAuthority> = status
        .previous
        .iter()
        .filter(|p| p.fingerprint != current.fingerprint() && still_trusted(p, overlap, now))
        .cloned()
        .collect();
    let mut cross_sign_failure = None;
    let replaced = status
        .fingerprint
        .as_deref()
        .filter(|fingerprint| *fingerprint != current.fingerprint());
    if let Some(replaced) = replaced
        && !overlap.is_zero()
    {
        let retired = retired.filter(|key| key.fingerprint() == replaced);
        let certificate = status
            .certificate
            .clone()
            .or_else(|| retired.map(|key| key.cert_pem().to_owned()));
        if let Some(certificate) = certificate {
            let cross_signed = retired.and_then(|key| match key.cross_sign(current) {
                Ok(pem) => Some(pem),
                Err(err) => {
                    cross_sign_failure = Some(err.to_string());
                    None
                }
            });
            list.retain(|p| p.fingerprint != replaced);
            list.insert(
                0,
                PreviousAuthority {
                    fingerprint: replaced.to_owned(),
                    certificate,
                    cross_signed,
                    retired_at: time(now),
                },
            );
        }
    }
    Previous {
        list,
        cross_sign_failure,
    }
}

fn still_trusted(previous: &PreviousAuthority, overlap: Duration, now: SystemTime) -> bool {
    SystemTime::from(previous.retired_at.0) + overlap > now
}

fn time(at: SystemTime) -> Time {
    Time(k8s_openapi::jiff::Timestamp::try_from(at).unwrap_or_default())
}

/// What an issued Secret carries besides the leaf and its key, while the
/// previous CAs are inside their overlap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trust {
    /// `ca.crt`: the current CA certificate first (the watcher compares it
    /// with the status fingerprint), then the previous ones, newest first.
    pub bundle: String,
    /// Served after the leaf instead of the CA certificate: the current CA
    /// cross-signed by its predecessor, that one by its own, and so on while
    /// each link exists. Empty when there is nothing to bridge.
    pub cross_chain: String,
}

impl Trust {
    pub fn new(current: &Authority, previous: &[PreviousAuthority]) -> Self {
        let mut bundle = current.cert_pem().to_owned();
        for authority in previous {
            bundle.push_str(&authority.certificate);
        }
        let cross_chain = previous
            .iter()
            .map_while(|authority| authority.cross_signed.as_deref())
            .collect();
        Self {
            bundle,
            cross_chain,
        }
    }

    /// `tls.crt` for a certificate `current` just issued. A CA loaded with
    /// a chain of its own (an intermediate) keeps it: clients reach its
    /// root through that chain, and a cross-signature would only hide it.
    pub fn served_chain(&self, current: &Authority, issued: &certflow_pki::Issued) -> String {
        let lone_ca =
            issued.chain_pem.strip_prefix(issued.cert_pem.as_str()) == Some(current.cert_pem());
        if self.cross_chain.is_empty() || !lone_ca {
            return issued.chain_pem.clone();
        }
        format!("{}{}", issued.cert_pem, self.cross_chain)
    }
}

#[cfg(test)]
mod tests;
