use prost_types::Timestamp;

use crate::certificates::{ActiveFailure, Cleared};

use super::*;

fn outcome(generation: i64, seconds: i64) -> Outcome {
    Outcome {
        namespace: "shop".into(),
        name: "web".into(),
        uid: "u-1".into(),
        generation,
        secret_name: "web-tls".into(),
        occurred_at: Some(Timestamp { seconds, nanos: 0 }),
        ..Outcome::default()
    }
}

fn issued(serial: &str) -> Issued {
    Issued {
        serial_number: serial.into(),
        ..Issued::default()
    }
}

/// The cached ServiceCertificate `u-1` with status of `generation`.
fn cached(generation: i64) -> CertificateSummary {
    CertificateSummary {
        namespace: "shop".into(),
        name: "web".into(),
        uid: "u-1".into(),
        secret_name: "web-tls".into(),
        observed_generation: Some(generation),
        ready_since: None,
        serial: None,
        failure: None,
        cleared: None,
    }
}

fn failing(generation: i64, reason: &str, at: i64) -> CertificateSummary {
    CertificateSummary {
        failure: Some(ActiveFailure {
            reason: reason.into(),
            message: "bad".into(),
            field_path: String::new(),
            value: String::new(),
            at: Some(at),
        }),
        ..cached(generation)
    }
}

fn ready(generation: i64, since: i64, serial: &str) -> CertificateSummary {
    CertificateSummary {
        ready_since: Some(since),
        serial: Some(serial.into()),
        ..cached(generation)
    }
}

#[test]
fn a_failure_is_told_unless_its_certificate_was_issued_since_or_replaced() {
    let failure = outcome(2, 100);
    let cases: [(&str, Option<CertificateSummary>, Option<&str>); 8] = [
        ("not cached (yet)", None, None),
        ("no status yet", Some(cached(0)), None),
        ("status not written yet", Some(ready(1, 50, "0a")), None),
        (
            "the status shows it",
            Some(failing(2, "PolicyViolation", 101)),
            None,
        ),
        (
            "Ready before, same generation (a refused renewal)",
            Some(ready(2, 50, "0a")),
            None,
        ),
        (
            "Ready for a newer generation",
            Some(ready(3, 90, "0b")),
            Some("stale"),
        ),
        (
            "turned Ready after it, same generation",
            Some(ready(2, 150, "0b")),
            Some("stale"),
        ),
        (
            "re-created",
            Some(CertificateSummary {
                uid: "u-2".into(),
                ..failing(1, "PolicyViolation", 200)
            }),
            Some("replaced"),
        ),
    ];
    for (what, cached, expected) in cases {
        assert_eq!(stale_failure(&failure, cached.as_ref()), expected, "{what}");
    }
}

#[test]
fn an_issuance_ends_the_failure_the_status_shows_or_the_one_its_serial_cleared() {
    let outcome = outcome(2, 100);
    let cleared = |serial: &str| CertificateSummary {
        cleared: Some(Cleared {
            reason: "PolicyViolation".into(),
            serial: serial.into(),
        }),
        ..ready(2, 100, serial)
    };
    let cases: [(&str, Option<CertificateSummary>, Option<&str>); 9] = [
        ("not cached", None, None),
        (
            "first issuance, status not written yet",
            Some(cached(0)),
            None,
        ),
        (
            "status not written yet: the failure is still shown",
            Some(failing(2, "PolicyViolation", 90)),
            Some("PolicyViolation"),
        ),
        (
            "an older generation's failure",
            Some(failing(1, "InvalidDNSName", 120)),
            Some("InvalidDNSName"),
        ),
        (
            "a newer generation failed since",
            Some(failing(3, "PolicyViolation", 120)),
            None,
        ),
        (
            "failed again afterwards",
            Some(failing(2, "PolicyViolation", 150)),
            None,
        ),
        (
            "status written: this serial cleared it",
            Some(cleared("0a")),
            Some("PolicyViolation"),
        ),
        ("another serial cleared it", Some(cleared("09")), None),
        ("a routine renewal", Some(ready(2, 50, "0a")), None),
    ];
    for (what, cached, expected) in cases {
        assert_eq!(
            ended_failure(&outcome, &issued("0a"), cached.as_ref()).as_deref(),
            expected,
            "{what}"
        );
    }
    let replaced = CertificateSummary {
        uid: "u-2".into(),
        ..failing(1, "PolicyViolation", 90)
    };
    assert_eq!(
        ended_failure(&outcome, &issued("0a"), Some(&replaced)),
        None
    );
}
