//! The gRPC Report API lets in only Kubernetes identities with a grant:
//! a real certflow-reporter process checks each call's ServiceAccount token
//! with a TokenReview for its audience and the caller's permission with a
//! SubjectAccessReview against the real API server's RBAC, as set up by the
//! documented Role (`deploy/examples/report-client/rbac.yaml`). And a caller
//! cannot pass for certflow: its Events name it, and certflow's own reason
//! words are refused (`docs/design/20261203-report-api-identity.md`).

use std::time::Duration;

use certflow_e2e::report_api::{self, AUDIENCE, report};
use certflow_e2e::services::Services;
use certflow_e2e::{eventually, run_ok};
use certflow_proto::v1::{EventType, ReportRequest};
use certflow_testenv::{SERVICE_ACCOUNT_ISSUER, TestEnv};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

const WAIT: Duration = Duration::from_secs(60);

/// The reasons of every Event certflow-reporter wrote in `namespace`.
async fn reported_reasons(env: &TestEnv, namespace: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(env.client().await.expect("client"), namespace);
    events
        .list(&ListParams::default().fields("reportingController=certflow-reporter"))
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter_map(|event| event.reason)
        .collect()
}

/// Calls Report with `request` and returns the refusal, failing if the call
/// succeeded or was refused with another code.
async fn refused(
    client: &mut report_api::Client,
    request: ReportRequest,
    code: tonic::Code,
) -> tonic::Status {
    let status = client
        .report(request)
        .await
        .expect_err("the reporter must refuse this call");
    assert_eq!(status.code(), code, "{status:?}");
    status
}

#[tokio::test]
async fn only_a_service_account_token_for_the_reporter_with_a_grant_for_the_namespace_may_report() {
    let env = certflow_testenv::shared();
    let granted_ns = env.create_namespace("auth-a").await.expect("namespace");
    let other_ns = env.create_namespace("auth-b").await.expect("namespace");
    let callers_ns = env
        .create_namespace("auth-callers")
        .await
        .expect("namespace");
    let services = Services::start(env, &granted_ns, 0).await;
    let reporter = &services.reporters[0];
    let port = reporter.grpc_port.expect("gRPC port");
    for namespace in [&granted_ns, &other_ns] {
        run_ok(
            env.kubectl().args(["apply", "-n", namespace, "-f", "-"]),
            r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "consumer"},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                  "envFrom": [{"secretRef": {"name": "app-tls"}}]}]}}"#,
        );
    }

    // A ServiceAccount granted the documented Role in the first namespace only.
    let reporting = report_api::token(env, &callers_ns, "quota-checker").await;
    report_api::grant_report(env, &granted_ns, &callers_ns, "quota-checker");
    let mut granted = report_api::connect(port, Some(&reporting)).await;
    // Its report about the first namespace reaches the consuming Pod (once
    // the reporter's index has seen it).
    eventually(
        "an authorized report to reach the consuming Pod",
        WAIT,
        || {
            let mut granted = granted.clone();
            let request = report(&granted_ns, "app-tls", "AuthorizedReport");
            async move {
                let recipients = granted.report(request).await.ok()?.into_inner().recipients;
                (recipients >= 1).then_some(())
            }
        },
    )
    .await;
    eventually("the authorized report's Event", WAIT, || async {
        let reasons = reported_reasons(env, &granted_ns).await;
        reasons
            .iter()
            .any(|r| r == "AuthorizedReport")
            .then_some(())
    })
    .await;

    // Its report about another namespace is refused, naming the namespace
    // and the permission to grant, and never echoing the token.
    let denied = refused(
        &mut granted,
        report(&other_ns, "app-tls", "ForeignReport"),
        tonic::Code::PermissionDenied,
    )
    .await;
    for text in [
        format!("namespace {other_ns:?}"),
        "servicecertificates/report".to_owned(),
        format!("system:serviceaccount:{callers_ns}:quota-checker"),
    ] {
        assert!(denied.message().contains(&text), "{text}: {denied:?}");
    }
    assert!(!denied.message().contains(&reporting), "{denied:?}");

    // No token at all, and a token that is not "Bearer <token>".
    let mut anonymous = report_api::connect(port, None).await;
    let missing = refused(
        &mut anonymous,
        report(&granted_ns, "app-tls", "AnonymousReport"),
        tonic::Code::Unauthenticated,
    )
    .await;
    assert!(missing.message().contains(AUDIENCE), "{missing:?}");
    let mut garbled = report_api::connect(port, Some("not a token")).await;
    refused(
        &mut garbled,
        report(&granted_ns, "app-tls", "GarbledReport"),
        tonic::Code::Unauthenticated,
    )
    .await;

    // The same ServiceAccount's token for another audience (the API
    // server's, as in a Pod's default token) is not accepted, although the
    // ServiceAccount holds the grant.
    let for_the_api_server = env
        .service_account_token(&callers_ns, "quota-checker", SERVICE_ACCOUNT_ISSUER)
        .await
        .expect("TokenRequest");
    let mut wrong_audience = report_api::connect(port, Some(&for_the_api_server)).await;
    let status = refused(
        &mut wrong_audience,
        report(&granted_ns, "app-tls", "WrongAudienceReport"),
        tonic::Code::Unauthenticated,
    )
    .await;
    assert!(
        !status.message().contains(&for_the_api_server),
        "{status:?}"
    );

    // A valid token of a ServiceAccount nobody granted anything.
    let ungranted = report_api::token(env, &callers_ns, "bystander").await;
    let mut ungranted = report_api::connect(port, Some(&ungranted)).await;
    let status = refused(
        &mut ungranted,
        report(&granted_ns, "app-tls", "UngrantedReport"),
        tonic::Code::PermissionDenied,
    )
    .await;
    assert!(
        status
            .message()
            .contains(&format!("namespace {granted_ns:?}")),
        "{status:?}"
    );

    // Nothing refused was written: a report made after all of them has its
    // Event, and none of theirs exists (in either namespace).
    granted
        .report(report(&granted_ns, "app-tls", "MarkerReport"))
        .await
        .expect("a report after the refusals");
    eventually("the marker report's Event", WAIT, || async {
        let reasons = reported_reasons(env, &granted_ns).await;
        reasons.iter().any(|r| r == "MarkerReport").then_some(())
    })
    .await;
    let mut written = reported_reasons(env, &granted_ns).await;
    written.extend(reported_reasons(env, &other_ns).await);
    written.sort();
    written.dedup();
    assert_eq!(written, ["AuthorizedReport", "MarkerReport"]);

    // Operators see the refusals by kind.
    let metrics = reporter.metrics().await;
    let count = |result: &str| {
        certflow_e2e::services::sum_metric(
            &metrics,
            &format!("certflow_reporter_reports_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!(count("unauthenticated"), 3.0, "{metrics}");
    assert_eq!(count("permission_denied"), 2.0, "{metrics}");
    assert!(count("ok") >= 2.0, "{metrics}");
}

#[tokio::test]
async fn a_report_names_its_caller_and_may_not_use_certflows_own_reasons() {
    let env = certflow_testenv::shared();
    let app_ns = env.create_namespace("ident-app").await.expect("namespace");
    let callers_ns = env
        .create_namespace("ident-callers")
        .await
        .expect("namespace");
    let services = Services::start(env, &app_ns, 0).await;
    let reporter = &services.reporters[0];
    let port = reporter.grpc_port.expect("gRPC port");
    run_ok(
        env.kubectl().args(["apply", "-n", &app_ns, "-f", "-"]),
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "consumer"},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
              "envFrom": [{"secretRef": {"name": "app-tls"}}]}]}}"#,
    );
    // Two ServiceAccounts, both granted the documented Role.
    let mut callers = Vec::new();
    for account in ["quota-checker", "deployer"] {
        let token = report_api::token(env, &callers_ns, account).await;
        report_api::grant_report(env, &app_ns, &callers_ns, account);
        let username = format!("system:serviceaccount:{callers_ns}:{account}");
        callers.push((username, report_api::connect(port, Some(&token)).await));
    }
    let quota_exceeded = || {
        let mut request = report(&app_ns, "app-tls", "QuotaExceeded");
        request.r#type = EventType::Warning.into();
        request.message = "The namespace has used its certificate quota.".into();
        // What a caller claims to be is not who it is.
        request.reporting_component = "certflow-signer".into();
        request
    };

    // certflow's own reason words are refused, whatever their case, and
    // the refusal names the word that is reserved.
    for (reason, reserved) in [
        ("PolicyViolation", "PolicyViolation"),
        ("POLICYVIOLATION", "PolicyViolation"),
        ("Issued", "Issued"),
    ] {
        let mut forged = quota_exceeded();
        forged.reason = reason.into();
        let status = refused(&mut callers[0].1, forged, tonic::Code::InvalidArgument).await;
        for text in [reserved, "reserved"] {
            assert!(status.message().contains(text), "{text}: {status:?}");
        }
    }

    // The same words from both callers, once the reporter's index knows
    // the consuming Pod.
    for (username, client) in &callers {
        eventually(
            &format!("{username}'s report to reach the consuming Pod"),
            WAIT,
            || {
                let mut client = client.clone();
                let request = quota_exceeded();
                async move {
                    let recipients = client.report(request).await.ok()?.into_inner().recipients;
                    (recipients >= 1).then_some(())
                }
            },
        )
        .await;
    }

    // Through the API: one Event per caller (the same words did not merge
    // into one Event that names only one of them), each naming its caller
    // in reportingInstance and the note, written by certflow-reporter for
    // a report.
    let events: Api<Event> = Api::namespaced(env.client().await.expect("client"), &app_ns);
    let on_pod = ListParams::default().fields("regarding.name=consumer");
    let written = eventually("an Event for each caller on the Pod", WAIT, || async {
        let items = events.list(&on_pod).await.ok()?.items;
        (items.len() >= callers.len()).then_some(items)
    })
    .await;
    assert_eq!(written.len(), callers.len(), "{written:#?}");
    for (username, _) in &callers {
        let event = written
            .iter()
            .find(|e| e.reporting_instance.as_deref() == Some(username.as_str()))
            .unwrap_or_else(|| panic!("no Event names {username}: {written:#?}"));
        assert_eq!(
            event.note.as_deref(),
            Some(
                format!(
                    "Reported by \"{username}\": The namespace has used its certificate quota."
                )
                .as_str()
            ),
            "{event:#?}"
        );
        assert_eq!(event.reason.as_deref(), Some("QuotaExceeded"));
        assert_eq!(event.action.as_deref(), Some("Report"));
        assert_eq!(
            event.reporting_controller.as_deref(),
            Some("certflow-reporter")
        );
    }
    // None of the refused reasons was written, in any case.
    let all = events
        .list(&ListParams::default())
        .await
        .expect("list Events");
    let reasons: Vec<_> = all.items.iter().filter_map(|e| e.reason.clone()).collect();
    assert_eq!(reasons, ["QuotaExceeded", "QuotaExceeded"], "{reasons:?}");

    // What the app owner reads: `kubectl describe pod` prints who sent each
    // Warning, and no certflow-sounding reason.
    let described = run_ok(
        env.kubectl()
            .args(["describe", "pod", "consumer", "-n", &app_ns]),
        "",
    );
    let lines: Vec<&str> = described
        .split("\nEvents:")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("Warning"))
        .collect();
    for (username, _) in &callers {
        let attribution = format!("Reported by \"{username}\": The namespace has used");
        assert!(
            lines
                .iter()
                .any(|line| line.contains("QuotaExceeded") && line.contains(&attribution)),
            "no Warning naming {username}:\n{described}"
        );
    }
    assert_eq!(lines.len(), callers.len(), "{described}");
    assert!(!described.contains("PolicyViolation"), "{described}");

    let metrics = reporter.metrics().await;
    let invalid = certflow_e2e::services::sum_metric(
        &metrics,
        "certflow_reporter_reports_total{result=\"invalid_report\"}",
    );
    assert_eq!(invalid, 3.0, "{metrics}");
}

#[tokio::test]
async fn a_caller_holding_its_connection_open_does_not_hold_up_the_reporters_shutdown() {
    let env = certflow_testenv::shared();
    let namespace = env.create_namespace("auth-stop").await.expect("namespace");
    let mut services = Services::start(env, &namespace, 0).await;
    let port = services.reporters[0].grpc_port.expect("gRPC port");
    // One answered call leaves an idle HTTP/2 connection open, as a real
    // client's long-lived channel does.
    let mut client = report_api::connect(port, None).await;
    refused(
        &mut client,
        report(&namespace, "app-tls", "AnonymousReport"),
        tonic::Code::Unauthenticated,
    )
    .await;

    // The reporter's shutdown grace is 30 s; with the connection open it
    // must still exit on SIGTERM well before, on its own.
    let exited = services.reporters[0]
        .process
        .terminate(Duration::from_secs(20));
    assert!(
        exited.is_some_and(|status| status.success()),
        "the reporter did not exit on SIGTERM within 20 s while a client was connected: {exited:?}\n{}",
        services.logs()
    );
    drop(client);
}
