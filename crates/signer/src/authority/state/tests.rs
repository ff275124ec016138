use std::collections::BTreeMap;

use certflow_api::condition::find_condition;
use certflow_api::{CertificateAuthoritySpec, IssuerPolicy, RotationSpec};
use certflow_pki::{KeySpec, LeafRequest, PrivateKey};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);
const NAMESPACE: &str = "certflow-system";

fn authority(common_name: &str) -> Arc<Authority> {
    keyed(common_name).0
}

/// A CA and its key's PEM, for checking what it signed with
/// [`certflow_pki::inspect`].
fn keyed(common_name: &str) -> (Arc<Authority>, String) {
    let (authority, pem) =
        Authority::generate(common_name, KeySpec::EcdsaP256, 365 * DAY).expect("CA");
    (Arc::new(authority), pem.key_pem)
}

/// CertificateAuthority `internal`, generated or operator-supplied.
fn ca(generate: bool) -> CertificateAuthority {
    let mut ca = CertificateAuthority::new(
        "internal",
        CertificateAuthoritySpec {
            secret_name: "internal-ca".into(),
            generate: Some(generate),
            ..CertificateAuthoritySpec::default()
        },
    );
    ca.metadata.uid = Some("uid-ca".into());
    ca
}

/// `ca` as certflow left it after loading `key`.
fn having(mut ca: CertificateAuthority, key: &Authority) -> CertificateAuthority {
    ca.status = Some(CertificateAuthorityStatus {
        fingerprint: Some(key.fingerprint().to_owned()),
        certificate: Some(key.cert_pem().to_owned()),
        ..CertificateAuthorityStatus::default()
    });
    ca
}

fn with_lost_fingerprint(mut ca: CertificateAuthority, fingerprint: &str) -> CertificateAuthority {
    ca.status = Some(CertificateAuthorityStatus {
        fingerprint: Some(fingerprint.to_owned()),
        ..CertificateAuthorityStatus::default()
    });
    ca
}

fn annotated(mut ca: CertificateAuthority, value: &str) -> CertificateAuthority {
    ca.metadata.annotations = Some(BTreeMap::from([(
        labels::REGENERATE.to_owned(),
        value.to_owned(),
    )]));
    ca
}

fn with_overlap(mut ca: CertificateAuthority, overlap: &str) -> CertificateAuthority {
    ca.spec.rotation = Some(RotationSpec {
        overlap: Some(overlap.into()),
    });
    ca
}

fn observation<'a>(
    ca: &CertificateAuthority,
    key_pair: &'a KeyPair,
    retired: Option<&'a Authority>,
    now: SystemTime,
) -> Observation<'a> {
    Observation {
        key_pair,
        state: ca_state(ca, key_pair, now),
        namespace: NAMESPACE,
        retired,
        now,
    }
}

fn condition<'a>(status: &'a CertificateAuthorityStatus, type_: &str) -> &'a Condition {
    find_condition(&status.conditions, type_).unwrap_or_else(|| panic!("{type_} is set"))
}

#[test]
fn ca_state_decides_from_the_key_pair_the_annotation_and_the_clock() {
    let key = authority("internal");
    let loaded = KeyPair::Loaded(key.clone());
    let (start, end) = (key.not_before(), key.not_after());
    let lost = "ab12";
    let rows: Vec<(&str, CertificateAuthority, KeyPair, SystemTime, CaState)> = vec![
        (
            "a generated CA that never had a key pair gets one",
            ca(true),
            KeyPair::Missing,
            start,
            CaState::Generate,
        ),
        (
            "a lost generated key pair is not replaced on its own",
            with_lost_fingerprint(ca(true), lost),
            KeyPair::Missing,
            start,
            CaState::KeyPairMissing,
        ),
        (
            "the regenerate annotation naming the lost fingerprint allows a new one",
            annotated(with_lost_fingerprint(ca(true), lost), lost),
            KeyPair::Missing,
            start,
            CaState::Generate,
        ),
        (
            "the annotation is compared without regard to case or spaces",
            annotated(with_lost_fingerprint(ca(true), lost), " AB12 "),
            KeyPair::Missing,
            start,
            CaState::Generate,
        ),
        (
            "an annotation naming an earlier key pair is spent",
            annotated(with_lost_fingerprint(ca(true), lost), "cd34"),
            KeyPair::Missing,
            start,
            CaState::KeyPairMissing,
        ),
        (
            "an operator-supplied CA is never generated, annotation or not",
            annotated(with_lost_fingerprint(ca(false), lost), lost),
            KeyPair::Missing,
            start,
            CaState::KeyPairMissing,
        ),
        (
            "an operator-supplied CA without a Secret is missing",
            ca(false),
            KeyPair::Missing,
            start,
            CaState::KeyPairMissing,
        ),
        (
            "a Secret that is not a CA is unusable",
            ca(false),
            KeyPair::Unusable("tls.key: no PRIVATE KEY".into()),
            start,
            CaState::KeyPairUnusable,
        ),
        (
            "a valid CA is ready",
            ca(false),
            loaded.clone(),
            start + DAY,
            CaState::Ready {
                expiring_soon: false,
            },
        ),
        (
            "a CA before its notBefore is not yet valid",
            ca(false),
            loaded.clone(),
            start - Duration::from_secs(1),
            CaState::NotYetValid,
        ),
        (
            "a CA at its notAfter has expired",
            ca(false),
            loaded.clone(),
            end,
            CaState::Expired,
        ),
        (
            "a CA within 30 days of its notAfter is ready but expiring soon",
            ca(false),
            loaded.clone(),
            end - 29 * DAY,
            CaState::Ready {
                expiring_soon: true,
            },
        ),
        (
            "exactly 30 days before the notAfter is expiring soon",
            ca(false),
            loaded.clone(),
            end - 30 * DAY,
            CaState::Ready {
                expiring_soon: true,
            },
        ),
        (
            "31 days before the notAfter is not expiring soon",
            ca(false),
            loaded,
            end - 31 * DAY,
            CaState::Ready {
                expiring_soon: false,
            },
        ),
    ];
    for (name, ca, key_pair, now, expected) in rows {
        assert_eq!(ca_state(&ca, &key_pair, now), expected, "{name}");
    }
}

#[test]
fn a_lost_key_pair_says_exactly_which_command_confirms_a_new_one() {
    let ca = with_lost_fingerprint(ca(true), "ab12");
    let desired = desired_status(
        &ca,
        observation(&ca, &KeyPair::Missing, None, SystemTime::now()),
    );
    let ready = condition(&desired.status, READY);
    assert_eq!(ready.status, ConditionStatus::False);
    assert_eq!(ready.reason, "KeyPairMissing");
    assert!(
        ready.message.contains(
            "run: kubectl annotate certificateauthority internal certflow.io/regenerate=ab12 --overwrite"
        ),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("Secret certflow-system/internal-ca"),
        "{}",
        ready.message
    );
    assert_eq!(
        desired.status.fingerprint.as_deref(),
        Some("ab12"),
        "the lost fingerprint stays in status, for the annotation to name"
    );
}

#[test]
fn app_owners_read_why_the_ca_cannot_sign_without_the_operators_command() {
    let ca = with_lost_fingerprint(ca(true), "ab12");
    let detail = app_detail(&ca, &KeyPair::Missing, CaState::KeyPairMissing);
    assert_eq!(
        detail,
        "its key pair was deleted; the platform team must restore it or confirm a new one \
         (see kubectl describe certificateauthority internal)"
    );
}

#[test]
fn an_expired_generated_ca_is_not_ready_and_says_how_to_replace_it() {
    let key = authority("internal");
    let ca = having(ca(true), &key);
    let key_pair = KeyPair::Loaded(key.clone());
    let desired = desired_status(&ca, observation(&ca, &key_pair, None, key.not_after()));
    let ready = condition(&desired.status, READY);
    assert_eq!(
        (ready.status, ready.reason.as_str()),
        (ConditionStatus::False, "Expired")
    );
    assert!(ready.message.contains(&format!(
        "delete that Secret and run: kubectl annotate certificateauthority internal \
         certflow.io/regenerate={} --overwrite",
        key.fingerprint()
    )));
    let expiring = condition(&desired.status, EXPIRING_SOON);
    assert_eq!(
        (expiring.status, expiring.reason.as_str()),
        (ConditionStatus::False, "Expired")
    );
    assert_eq!(
        app_detail(&ca, &key_pair, CaState::Expired),
        format!("its certificate expired at {}", rfc3339(key.not_after()))
    );
}

#[test]
fn a_ca_within_thirty_days_of_expiry_stays_ready_and_says_it_expires_soon() {
    let key = authority("internal");
    let ca = having(ca(false), &key);
    let key_pair = KeyPair::Loaded(key.clone());
    let now = key.not_after() - 10 * DAY;
    let desired = desired_status(&ca, observation(&ca, &key_pair, None, now));
    assert!(condition(&desired.status, READY).is_true());
    let expiring = condition(&desired.status, EXPIRING_SOON);
    assert!(expiring.is_true());
    assert!(
        expiring
            .message
            .contains(&format!("expires at {}", rfc3339(key.not_after()))),
        "{}",
        expiring.message
    );
}

#[test]
fn without_a_key_pair_expiry_is_not_judged() {
    let ca = with_lost_fingerprint(ca(true), "ab12");
    let desired = desired_status(
        &ca,
        observation(&ca, &KeyPair::Missing, None, SystemTime::now()),
    );
    assert!(find_condition(&desired.status.conditions, EXPIRING_SOON).is_none());
}

#[test]
fn a_ca_without_a_policy_says_it_signs_anything_for_anyone() {
    let key = authority("internal");
    let key_pair = KeyPair::Loaded(key.clone());
    let open = ca(false);
    let desired = desired_status(
        &open,
        observation(&open, &key_pair, None, SystemTime::now()),
    );
    let unrestricted = condition(&desired.status, POLICY_UNRESTRICTED);
    assert_eq!(
        (unrestricted.status, unrestricted.reason.as_str()),
        (ConditionStatus::True, "NoPolicy")
    );
    assert!(
        unrestricted
            .message
            .contains("signs any name for any namespace")
    );

    let mut limited = ca(false);
    limited.spec.policy = Some(IssuerPolicy::default());
    let desired = desired_status(
        &limited,
        observation(&limited, &key_pair, None, SystemTime::now()),
    );
    let unrestricted = condition(&desired.status, POLICY_UNRESTRICTED);
    assert_eq!(
        (unrestricted.status, unrestricted.reason.as_str()),
        (ConditionStatus::False, "PolicySet")
    );
}

#[test]
fn the_status_of_an_unchanged_ca_is_written_once() {
    let key = authority("internal");
    let key_pair = KeyPair::Loaded(key.clone());
    let now = SystemTime::now();
    let mut ca = ca(true);
    let first = desired_status(&ca, observation(&ca, &key_pair, None, now)).status;
    ca.status = Some(first.clone());
    let second = desired_status(
        &ca,
        observation(&ca, &key_pair, None, now + Duration::from_secs(60)),
    )
    .status;
    assert_eq!(first, second, "nothing to write the second time");
    assert_eq!(first.certificate.as_deref(), Some(key.cert_pem()));
    assert_eq!(first.fingerprint.as_deref(), Some(key.fingerprint()));
}

/// The certificates in a PEM bundle, each as PEM.
fn parsed(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    pem.split_inclusive(END)
        .filter(|block| block.contains(END))
        .map(|block| format!("{}\n", block.trim()))
        .collect()
}

/// Whether `child` (whose key is `child_key`) is signed by `parent`'s key.
fn signed_by(child: &str, child_key: &str, parent: &str) -> bool {
    certflow_pki::inspect(child.as_bytes(), child_key.as_bytes(), parent.as_bytes())
        .expect("inspects")
        .signed_by_ca
}

#[test]
fn a_key_pair_change_keeps_the_previous_ca_with_the_new_one_cross_signed_by_it() {
    let old = authority("internal");
    let (new, new_key) = keyed("internal");
    let ca = having(ca(true), &old);
    let key_pair = KeyPair::Loaded(new.clone());
    let now = SystemTime::now();
    let desired = desired_status(&ca, observation(&ca, &key_pair, Some(&old), now));
    assert_eq!(desired.cross_sign_failure, None);
    let status = desired.status;
    assert_eq!(status.fingerprint.as_deref(), Some(new.fingerprint()));
    assert_eq!(status.previous.len(), 1);
    let previous = &status.previous[0];
    assert_eq!(previous.fingerprint, old.fingerprint());
    assert_eq!(previous.certificate, old.cert_pem());
    let cross = previous.cross_signed.as_deref().expect("cross-signed");
    assert!(signed_by(cross, &new_key, old.cert_pem()));

    // A leaf the new CA signs, served with the cross-signed certificate,
    // chains to the old CA; ca.crt starts with the new CA.
    let trust = Trust::new(&new, &status.previous);
    let leaf_key = PrivateKey::generate(KeySpec::EcdsaP256).expect("key");
    let request = LeafRequest {
        dns_names: vec!["web.shop.svc".into()],
        ..LeafRequest::new(now, now + DAY)
    };
    let issued = new.issue(&request, &leaf_key).expect("issue");
    let served = parsed(&trust.served_chain(&new, &issued));
    assert_eq!(served.len(), 2, "the leaf and the cross-signed certificate");
    assert_eq!(served[1], cross);
    assert!(signed_by(&served[0], &leaf_key.to_pkcs8_pem(), &served[1]));
    let bundle = parsed(&trust.bundle);
    assert_eq!(
        bundle,
        vec![new.cert_pem().to_owned(), old.cert_pem().to_owned()]
    );
    assert!(
        signed_by(&served[0], &leaf_key.to_pkcs8_pem(), &trust.bundle),
        "the leaf verifies with ca.crt"
    );
}

#[test]
fn without_the_previous_key_the_previous_ca_is_still_trusted_but_not_bridged() {
    let old = authority("internal");
    let new = authority("internal");
    let ca = having(ca(false), &old);
    let key_pair = KeyPair::Loaded(new.clone());
    let status = desired_status(&ca, observation(&ca, &key_pair, None, SystemTime::now())).status;
    assert_eq!(status.previous.len(), 1);
    assert_eq!(status.previous[0].cross_signed, None);
    let trust = Trust::new(&new, &status.previous);
    assert!(trust.cross_chain.is_empty());
    let leaf_key = PrivateKey::generate(KeySpec::EcdsaP256).expect("key");
    let now = SystemTime::now();
    let request = LeafRequest {
        dns_names: vec!["web.shop.svc".into()],
        ..LeafRequest::new(now, now + DAY)
    };
    let issued = new.issue(&request, &leaf_key).expect("issue");
    assert_eq!(trust.served_chain(&new, &issued), issued.chain_pem);
}

#[test]
fn a_zero_overlap_trusts_only_the_new_ca() {
    let old = authority("internal");
    let new = authority("internal");
    let ca = with_overlap(having(ca(true), &old), "0s");
    let key_pair = KeyPair::Loaded(new.clone());
    let status = desired_status(
        &ca,
        observation(&ca, &key_pair, Some(&old), SystemTime::now()),
    )
    .status;
    assert!(status.previous.is_empty());
    assert_eq!(Trust::new(&new, &status.previous).bundle, new.cert_pem());
}

#[test]
fn a_previous_ca_leaves_status_when_its_overlap_ends() {
    let old = authority("internal");
    let new = authority("internal");
    let ca = with_overlap(having(ca(true), &old), "1h");
    let key_pair = KeyPair::Loaded(new.clone());
    let rotated_at = SystemTime::now();
    let mut ca = ca;
    ca.status =
        Some(desired_status(&ca, observation(&ca, &key_pair, Some(&old), rotated_at)).status);
    let during = desired_status(
        &ca,
        observation(
            &ca,
            &key_pair,
            None,
            rotated_at + Duration::from_secs(3_599),
        ),
    )
    .status;
    assert_eq!(during.previous.len(), 1, "still inside the overlap");
    let after = desired_status(
        &ca,
        observation(
            &ca,
            &key_pair,
            None,
            rotated_at + Duration::from_secs(3_601),
        ),
    )
    .status;
    assert!(after.previous.is_empty(), "pruned after the overlap");
}

#[test]
fn two_changes_within_the_overlap_chain_both_cross_signatures() {
    let first = authority("internal");
    let (second, second_key) = keyed("internal");
    let (third, third_key) = keyed("internal");
    let now = SystemTime::now();
    let mut ca = having(ca(true), &first);
    let to_second = KeyPair::Loaded(second.clone());
    ca.status = Some(desired_status(&ca, observation(&ca, &to_second, Some(&first), now)).status);
    let to_third = KeyPair::Loaded(third.clone());
    let status = desired_status(&ca, observation(&ca, &to_third, Some(&second), now)).status;
    let fingerprints: Vec<&str> = status
        .previous
        .iter()
        .map(|p| p.fingerprint.as_str())
        .collect();
    assert_eq!(
        fingerprints,
        vec![second.fingerprint(), first.fingerprint()]
    );

    let trust = Trust::new(&third, &status.previous);
    let leaf_key = PrivateKey::generate(KeySpec::EcdsaP256).expect("key");
    let request = LeafRequest {
        dns_names: vec!["web.shop.svc".into()],
        ..LeafRequest::new(now, now + DAY)
    };
    let issued = third.issue(&request, &leaf_key).expect("issue");
    let served = parsed(&trust.served_chain(&third, &issued));
    assert_eq!(served.len(), 3);
    assert!(signed_by(&served[0], &leaf_key.to_pkcs8_pem(), &served[1]));
    assert!(signed_by(&served[1], &third_key, &served[2]));
    assert!(
        signed_by(&served[2], &second_key, first.cert_pem()),
        "a Pod trusting only the first CA still verifies"
    );
}

#[test]
fn restoring_the_previous_key_pair_does_not_list_it_as_previous_too() {
    let old = authority("internal");
    let new = authority("internal");
    let now = SystemTime::now();
    let mut ca = having(ca(true), &old);
    let forward = KeyPair::Loaded(new.clone());
    ca.status = Some(desired_status(&ca, observation(&ca, &forward, Some(&old), now)).status);
    let back = KeyPair::Loaded(old.clone());
    let status = desired_status(&ca, observation(&ca, &back, Some(&new), now)).status;
    let fingerprints: Vec<&str> = status
        .previous
        .iter()
        .map(|p| p.fingerprint.as_str())
        .collect();
    assert_eq!(fingerprints, vec![new.fingerprint()]);
    assert_eq!(status.fingerprint.as_deref(), Some(old.fingerprint()));
}

#[test]
fn a_ca_no_installation_holds_gets_a_namespace_free_ready_unknown_status() {
    let now = SystemTime::now();
    for (generate, says) in [
        (true, "generates its key pair into Secret internal-ca"),
        (false, "create Secret internal-ca with tls.crt and tls.key"),
    ] {
        let ca = ca(generate);
        let status = unclaimed_status(&ca, now).expect("a CA without status gets one");
        let ready = condition(&status, READY);
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::Unknown, KEY_PAIR_NOT_LOADED)
        );
        assert!(ready.message.contains(says), "{}", ready.message);
        assert!(
            !ready.message.contains(NAMESPACE),
            "every installation writes the same words: {}",
            ready.message
        );
        assert_eq!(condition(&status, POLICY_UNRESTRICTED).reason, "NoPolicy");
        assert_eq!(status.fingerprint, None);
    }
}

#[test]
fn the_unclaimed_status_never_replaces_what_an_installation_holding_the_key_pair_wrote() {
    let key = authority("internal");
    let now = SystemTime::now();
    let mut unclaimed = ca(true);
    unclaimed.status = unclaimed_status(&unclaimed, now);
    assert_eq!(
        unclaimed_status(&unclaimed, now + Duration::from_secs(60)),
        unclaimed.status,
        "written once: the same value the second time"
    );

    let loaded = KeyPair::Loaded(key.clone());
    let mut ready = ca(true);
    ready.status = Some(desired_status(&ready, observation(&ready, &loaded, None, now)).status);
    assert_eq!(
        unclaimed_status(&ready, now),
        None,
        "a Ready CA is left alone"
    );

    let lost = with_lost_fingerprint(ca(true), key.fingerprint());
    assert_eq!(
        unclaimed_status(&lost, now),
        None,
        "a recorded fingerprint is left for its holder"
    );

    let mut missing = ca(false);
    missing.status = Some(
        desired_status(
            &missing,
            observation(&missing, &KeyPair::Missing, None, now),
        )
        .status,
    );
    assert_eq!(
        unclaimed_status(&missing, now),
        None,
        "KeyPairMissing, written by the installation asked for it, is left alone"
    );
}

#[test]
fn the_next_look_is_the_next_moment_the_clock_changes_the_status() {
    let key = authority("internal");
    let loaded = KeyPair::Loaded(key.clone());
    let ca = ca(true);
    let start = key.not_before();
    let status = CertificateAuthorityStatus::default();
    assert_eq!(
        next_change(&ca, &loaded, &status, start - Duration::from_secs(5)),
        Some(start),
        "notBefore, while not yet valid"
    );
    assert_eq!(
        next_change(&ca, &loaded, &status, start + DAY),
        Some(key.not_after() - EXPIRY_WARNING),
        "the start of the last 30 days"
    );
    assert_eq!(
        next_change(&ca, &loaded, &status, key.not_after() - DAY),
        Some(key.not_after()),
        "notAfter, once expiring soon"
    );
    assert_eq!(
        next_change(&ca, &loaded, &status, key.not_after()),
        None,
        "nothing ahead of an expired CA"
    );
    assert_eq!(next_change(&ca, &KeyPair::Missing, &status, start), None);

    let old = authority("internal");
    let rotated = with_overlap(having(ca.clone(), &old), "1h");
    let rotated_at = start + DAY;
    let status = desired_status(
        &rotated,
        observation(&rotated, &loaded, Some(&old), rotated_at),
    )
    .status;
    assert_eq!(
        next_change(&rotated, &loaded, &status, rotated_at),
        Some(rotated_at + Duration::from_secs(3_600)),
        "the end of the previous CA's overlap"
    );
}
