use prost_types::Timestamp;

use super::*;

fn failed(message: &str) -> Failed {
    Failed {
        reason: "PolicyViolation".into(),
        field_path: "spec.dnsNames[0]".into(),
        value: "web.shop.svc.cluster.locl".into(),
        message: message.into(),
        suggestion: "did you mean \"web.shop.svc\"?".into(),
        permanent: true,
        attempts: 1,
    }
}

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

#[test]
fn a_failure_is_a_warning_with_the_signers_sentence_and_reason() {
    let sentence = "ServiceCertificate \"web\": spec.dnsNames[0] \"web.shop.svc.cluster.locl\" is not \
                    allowed; did you mean \"web.shop.svc\"?";
    let notice = failure_notice(&failed(sentence));
    assert_eq!(notice.type_(), EventType::Warning);
    assert_eq!(notice.reason(), "PolicyViolation");
    assert_eq!(notice.action(), "Issue");
    assert_eq!(notice.note(), sentence);
}

#[test]
fn a_failure_without_a_sentence_is_composed_from_its_parts() {
    let notice = failure_notice(&Failed {
        reason: String::new(),
        ..failed("")
    });
    assert_eq!(notice.reason(), "Failed");
    assert_eq!(
        notice.note(),
        "spec.dnsNames[0] (value \"web.shop.svc.cluster.locl\"): The certificate could not be \
         issued. did you mean \"web.shop.svc\"?"
    );
}

#[test]
fn composing_does_not_repeat_what_the_message_already_says() {
    let cases = [
        ("Bad name.", "", "", "", "Bad name."),
        ("Bad name", "", "", "use x", "Bad name; use x"),
        ("spec.x is bad.", "spec.x", "1", "", "spec.x is bad."),
        ("is bad.", "spec.x", "", "", "spec.x: is bad."),
        ("is bad; use y.", "", "", "use y", "is bad; use y."),
    ];
    for (message, field, value, suggestion, expected) in cases {
        assert_eq!(
            compose(message, field, value, suggestion),
            expected,
            "{message:?}"
        );
    }
}

#[test]
fn an_issuance_names_the_secret_issuer_and_validity_and_what_it_resolved() {
    let issued = Issued {
        serial_number: "0a1b2c".into(),
        not_before: None,
        not_after: Some(Timestamp {
            seconds: 1_800_000_000,
            nanos: 0,
        }),
        issuer: "internal".into(),
    };
    let notice = issued_notice(&outcome(2, 10), &issued, "PolicyViolation");
    assert_eq!(notice.type_(), EventType::Normal);
    assert_eq!(notice.reason(), "Issued");
    assert_eq!(
        notice.note(),
        "ServiceCertificate \"web\": certificate issued into Secret \"web-tls\" by \
         CertificateAuthority \"internal\" (serial 0a1b2c, valid until 2027-01-15T08:00:00Z). \
         The earlier PolicyViolation failure is resolved."
    );
}

#[test]
fn certflows_own_reason_words_are_reserved_whatever_their_case() {
    for reason in certflow_diagnostics::Reason::ALL {
        let word = reason.as_str();
        for spelling in [
            word.to_owned(),
            word.to_ascii_lowercase(),
            word.to_ascii_uppercase(),
        ] {
            assert_eq!(reserved_reason(&spelling), Some(word), "{spelling}");
        }
    }
    assert_eq!(reserved_reason("Issued"), Some(ISSUED_REASON));
    assert_eq!(reserved_reason("failed"), Some(FAILED_REASON));
    assert_eq!(reserved_reason("policyviolation"), Some("PolicyViolation"));
    for callers_own in ["QuotaExceeded", "PolicyViolations", "Policy", ""] {
        assert_eq!(reserved_reason(callers_own), None, "{callers_own}");
    }
}

#[test]
fn the_reasons_certflow_writes_itself_are_reserved() {
    let failure = failure_notice(&failed("x"));
    let unnamed = failure_notice(&Failed {
        reason: String::new(),
        ..failed("x")
    });
    let issued = issued_notice(&outcome(1, 1), &Issued::default(), "PolicyViolation");
    for notice in [failure, unnamed, issued] {
        assert!(
            reserved_reason(notice.reason()).is_some(),
            "{}",
            notice.reason()
        );
        assert_eq!(notice.caller(), None, "certflow's own");
    }
}
