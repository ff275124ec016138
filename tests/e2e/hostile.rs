//! Hostile and edge-case ServiceCertificates against the real local control
//! plane with certflow's real services: specs at and past the limits (5,000
//! names, DNS names of 253/254 characters and labels of 63/64, objects near
//! the API server's size limit), internationalized and look-alike names,
//! wildcards in odd places, control characters, and requests an issuer's
//! policy forbids.
//!
//! Each ends one of two ways, both clear to the app owner: the API server
//! refuses it at apply with a message naming the field and the limit, or the
//! signer refuses it with `Ready=False`, a reason from the catalog
//! (`docs/errors.md`), and a Warning Event whose note carries no raw control
//! character. Either way no Secret is written and no key is generated for
//! it: the work a hostile spec causes is bounded.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use certflow_api::{
    ConditionStatus, Failure, IssuerPolicy, IssuerRef, KeyAlgorithm, KeyUsage, PrivateKeySpec,
    SecretTemplate, ServiceCertificate, ServiceCertificateSpec,
};
use certflow_e2e::eventually;
use certflow_e2e::fixtures::create_generated_ca;
use certflow_e2e::tenant::Tenant;
use kube::ResourceExt as _;
use kube::api::PostParams;

const WAIT: Duration = Duration::from_secs(90);

/// The Event and status message limit certflow keeps to
/// (`certflow_diagnostics::MAX_MESSAGE_BYTES`).
const MAX_MESSAGE_BYTES: usize = 1024;

// One test's tenant, with what the hostile-input tests ask of it.
certflow_e2e::tenant_fixture!(Fixture);

impl Fixture {
    /// A namespace with a watcher, a signer and a reporter, and a generated
    /// CertificateAuthority with `policy` (`None`: any name, no CA certs).
    async fn start(prefix: &str, policy: Option<IssuerPolicy>) -> Self {
        let tenant = Tenant::builder(prefix)
            .issuer_prefix("hostile-ca")
            .policy(policy)
            .start()
            .await;
        Self(tenant)
    }

    /// A spec for Secret `<name>-tls` signed by this fixture's CA.
    fn spec(&self, name: &str, dns_names: &[&str]) -> ServiceCertificateSpec {
        self.spec_from(&self.issuer, name, dns_names)
    }

    fn spec_from(&self, issuer: &str, name: &str, dns_names: &[&str]) -> ServiceCertificateSpec {
        ServiceCertificateSpec {
            secret_name: format!("{name}-tls"),
            dns_names: dns_names.iter().map(|s| (*s).to_owned()).collect(),
            issuer_ref: Some(IssuerRef::named(issuer.to_owned())),
            ..ServiceCertificateSpec::default()
        }
    }

    /// Creates `name` the way `kubectl create` does; the API server's
    /// refusal, if any, is returned.
    async fn create(
        &self,
        name: &str,
        spec: ServiceCertificateSpec,
    ) -> Result<ServiceCertificate, kube::Error> {
        self.scerts()
            .create(&PostParams::default(), &ServiceCertificate::new(name, spec))
            .await
    }

    async fn create_ok(&self, name: &str, spec: ServiceCertificateSpec) -> ServiceCertificate {
        self.create(name, spec)
            .await
            .unwrap_or_else(|err| panic!("the API server refused ServiceCertificate {name}: {err}"))
    }

    /// Waits until `name` is judged for its current generation and asserts
    /// it was refused for `reason`, with a sanitized status; returns the
    /// recorded failure.
    async fn refused(&self, name: &str, reason: &str) -> (ServiceCertificate, Failure) {
        let scerts = self.scerts();
        let what = format!(
            "ServiceCertificate {name} to be judged\n{}",
            self.services.logs()
        );
        let scert = eventually(&what, WAIT, || async {
            let scert = scerts.get(name).await.ok()?;
            let status = scert.status.as_ref()?;
            let judged = status.observed_generation == scert.metadata.generation
                && scert.ready_condition().is_some();
            judged.then_some(scert)
        })
        .await;
        let ready = scert.ready_condition().expect("Ready").clone();
        assert_eq!(
            (ready.status, ready.reason.as_str()),
            (ConditionStatus::False, reason),
            "{name}: {}",
            ready.message
        );
        assert_sanitized(&format!("{name}: the Ready message"), &ready.message);
        let failure = scert
            .status
            .as_ref()
            .and_then(|s| s.last_failure.clone())
            .expect("status.lastFailure");
        assert_eq!(failure.reason, reason);
        assert_eq!(failure.message, ready.message);
        if let Some(value) = &failure.value {
            assert_sanitized(&format!("{name}: lastFailure.value"), value);
        }
        (scert, failure)
    }

    /// The note of the Warning Event certflow-reporter wrote about `scert`
    /// for `reason`, once it exists; asserts it is sanitized.
    async fn warning(&self, scert: &ServiceCertificate, reason: &str) -> String {
        let uid = scert.uid().expect("uid");
        let what = format!("ServiceCertificate {}", scert.name_any());
        let note = self.certflow_warning(&uid, reason, &what, WAIT).await;
        assert_sanitized(&format!("the {reason} Event note"), &note);
        note
    }

    async fn assert_no_secret(&self, secret_name: &str) {
        let found = self
            .secrets()
            .get_opt(secret_name)
            .await
            .expect("read Secret");
        assert!(
            found.is_none(),
            "Secret {secret_name} was written for a refused request: {:?}",
            found.map(|s| s.metadata)
        );
    }

    /// Waits until `name` is Ready for its current generation and returns
    /// the Secret's certificate.
    async fn issued(&self, name: &str) -> certflow_pki::Inspection {
        let scerts = self.scerts();
        let secrets = self.secrets();
        let what = format!(
            "ServiceCertificate {name} to be Ready\n{}",
            self.services.logs()
        );
        let secret = eventually(&what, WAIT, || async {
            let scert = scerts.get(name).await.ok()?;
            let status = scert.status.as_ref()?;
            let current = status.observed_generation == scert.metadata.generation;
            if !current || !scert.ready_condition()?.is_true() {
                return None;
            }
            secrets.get(&scert.spec.secret_name).await.ok()
        })
        .await;
        certflow_e2e::fixtures::inspect_secret(&secret).expect("the Secret's certificate parses")
    }

    /// Keys the signer generated so far: one per certificate issued, none
    /// for a refusal.
    async fn keys_generated(&self) -> f64 {
        self.services
            .signer_metric_sum("certflow_signer_key_generation_seconds_count")
            .await
    }

    async fn secret_writes(&self) -> f64 {
        self.services
            .signer_metric_sum("certflow_signer_secret_writes_total")
            .await
    }
}

/// Fails if `text` carries a character that a terminal or `kubectl
/// describe` would act on or hide: C0/C1 controls, zero-width and
/// direction-changing characters, or is longer than an Event note may be.
fn assert_sanitized(what: &str, text: &str) {
    let raw: Vec<char> = text
        .chars()
        .filter(|&c| {
            c.is_control()
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
        })
        .collect();
    assert!(
        raw.is_empty(),
        "{what} carries raw control or invisible characters {raw:?}: {text:?}"
    );
    assert!(
        text.len() <= MAX_MESSAGE_BYTES,
        "{what} is {} bytes long",
        text.len()
    );
}

/// The API server's refusal of a create, or a failure if it accepted it.
fn admission_error(
    result: Result<ServiceCertificate, kube::Error>,
    what: &str,
) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        Err(other) => panic!("{what}: expected the API server's refusal, got {other}"),
        Ok(scert) => panic!(
            "{what}: the API server accepted it (spec of {} bytes)",
            serde_json::to_vec(&scert.spec).map_or(0, |b| b.len())
        ),
    }
}

/// One spec the signer must refuse, and what its Event must show.
struct Refusal {
    name: &'static str,
    spec: ServiceCertificateSpec,
    reason: &'static str,
    /// Texts the Event note must contain (escaped values, the fix).
    shows: Vec<String>,
}

/// Creates every case, then checks each: refused for its reason, a
/// sanitized Warning showing what it must, and no Secret.
async fn assert_all_refused(fx: &Fixture, cases: Vec<Refusal>) {
    for case in &cases {
        fx.create_ok(case.name, case.spec.clone()).await;
    }
    for case in &cases {
        let (scert, _) = fx.refused(case.name, case.reason).await;
        let note = fx.warning(&scert, case.reason).await;
        for text in &case.shows {
            assert!(
                note.contains(text.as_str()),
                "{}: the Event note lacks {text:?}: {note}",
                case.name
            );
        }
        fx.assert_no_secret(&case.spec.secret_name).await;
    }
}

#[tokio::test]
async fn names_at_the_dns_length_limits_are_issued_and_one_character_past_them_is_refused() {
    let fx = Fixture::start("lengths", None).await;
    let ns = fx.namespace().to_owned();
    let label_63 = "a".repeat(63);
    // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters.
    let name_253 = format!(
        "{label_63}.{}.{}.{}",
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(name_253.len(), 253);
    let label_63_name = format!("{label_63}.{ns}.svc");
    fx.create_ok(
        "at-limits",
        fx.spec("at-limits", &[&name_253, &label_63_name]),
    )
    .await;

    // 254 characters: the CRD's maxLength, checked by the API server.
    let name_254 = format!("e{name_253}");
    let refusal = admission_error(
        fx.create("name-254", fx.spec("name-254", &[&name_254]))
            .await,
        "a 254-character DNS name",
    );
    assert_eq!(refusal.code, 422, "{refusal:?}");
    for text in ["spec.dnsNames[0]", "Too long", "253"] {
        assert!(
            refusal.message.contains(text),
            "lacks {text:?}: {}",
            refusal.message
        );
    }
    assert!(
        fx.scerts()
            .get_opt("name-254")
            .await
            .expect("get")
            .is_none(),
        "nothing is stored"
    );

    // A 64-character label: only the signer knows labels.
    let cases = vec![Refusal {
        name: "label-64",
        spec: fx.spec("label-64", &[&format!("{}.{ns}.svc", "a".repeat(64))]),
        reason: "DNSLabelTooLong",
        shows: vec![
            "spec.dnsNames[0]".into(),
            "1st label 64 characters long".into(),
            "63 characters or fewer".into(),
        ],
    }];
    assert_all_refused(&fx, cases).await;

    let found = fx.issued("at-limits").await;
    let mut names = found.dns_names.clone();
    names.sort();
    let mut expected = vec![label_63_name, name_253];
    expected.sort();
    assert_eq!(names, expected, "the certificate carries both names whole");
    assert_eq!(
        fx.keys_generated().await,
        1.0,
        "no key was generated for the refusal"
    );
    assert_eq!(fx.secret_writes().await, 1.0);
}

#[tokio::test]
async fn five_thousand_names_are_refused_at_apply_and_the_most_the_crd_admits_is_refused_by_the_signer_with_a_reason()
 {
    let fx = Fixture::start("many-names", None).await;
    let ns = fx.namespace().to_owned();
    let many: Vec<String> = (0..5_000).map(|i| format!("s{i}.{ns}.svc")).collect();
    let many_refs: Vec<&str> = many.iter().map(String::as_str).collect();

    // 5,000 names in one list: the CRD caps each list at 100.
    let started = Instant::now();
    let refusal = admission_error(
        fx.create("five-thousand", fx.spec("five-thousand", &many_refs))
            .await,
        "5,000 dnsNames",
    );
    assert_eq!(refusal.code, 422, "{refusal:?}");
    for text in [
        "spec.dnsNames",
        "Too many: 5000",
        "must have at most 100 items",
    ] {
        assert!(
            refusal.message.contains(text),
            "lacks {text:?}: {}",
            refusal.message
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the API server took {:?}",
        started.elapsed()
    );

    // The most the CRD admits: 100 entries in each of the four lists, 400
    // names. The signer allows 100 in all, and says so.
    let mut most = fx.spec("four-hundred", &many_refs[..100]);
    most.ip_addresses = (0..100)
        .map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1))
        .collect();
    most.uris = (0..100)
        .map(|i| format!("spiffe://cluster.local/ns/{ns}/sa/s{i}"))
        .collect();
    most.email_addresses = (0..100).map(|i| format!("s{i}@example.com")).collect();
    // Exactly 100 names: the most one certificate carries, issued.
    let hundred = fx.spec("hundred", &many_refs[100..200]);

    let started = Instant::now();
    let cases = vec![Refusal {
        name: "four-hundred",
        spec: most,
        reason: "TooManyNames",
        shows: vec![
            "400 subject alternative names".into(),
            "at most 100 per certificate".into(),
            "split the names over several ServiceCertificates".into(),
        ],
    }];
    fx.create_ok("hundred", hundred).await;
    assert_all_refused(&fx, cases).await;
    let refused_after = started.elapsed();
    let found = fx.issued("hundred").await;
    assert_eq!(found.dns_names.len(), 100);
    assert!(
        refused_after < Duration::from_secs(60),
        "refusing 400 names took {refused_after:?}"
    );
    assert_eq!(
        fx.keys_generated().await,
        1.0,
        "only the 100-name certificate got a key"
    );
}

#[tokio::test]
async fn internationalized_look_alike_and_oddly_wildcarded_names_are_refused_with_the_ascii_to_write()
 {
    let fx = Fixture::start("odd-names", None).await;
    let ns = fx.namespace().to_owned();
    let cases = vec![
        Refusal {
            name: "idn",
            spec: fx.spec("idn", &[&format!("caf\u{E9}.{ns}.svc")]),
            reason: "NonASCIIName",
            shows: vec![
                "U+00E9".into(),
                format!("write the punycode form \"xn--caf-dma.{ns}.svc\""),
            ],
        },
        Refusal {
            name: "homoglyph",
            spec: fx.spec("homoglyph", &[&format!("p\u{430}yments.{ns}.svc")]),
            reason: "NonASCIIName",
            shows: vec![
                "U+0430".into(),
                "looks like the ASCII \"a\"".into(),
                format!("did you mean \"payments.{ns}.svc\"?"),
            ],
        },
        Refusal {
            name: "wildcard-middle",
            spec: fx.spec("wildcard-middle", &["a.*.example.com"]),
            reason: "WildcardNotLeftmost",
            shows: vec!["\"a.*.example.com\"".into(), "2nd label".into()],
        },
        Refusal {
            name: "wildcard-twice",
            spec: fx.spec("wildcard-twice", &["*.*.x"]),
            reason: "WildcardNotLeftmost",
            shows: vec!["\"*.*.x\"".into(), "2nd label".into()],
        },
        Refusal {
            name: "wildcard-alone",
            spec: fx.spec("wildcard-alone", &["*"]),
            reason: "InvalidDNSName",
            shows: vec![
                "spec.dnsNames[0] \"*\" is a wildcard with no domain after it".into(),
                "add the domain it covers".into(),
            ],
        },
    ];
    assert_all_refused(&fx, cases).await;
    assert_eq!(fx.keys_generated().await, 0.0, "no key was generated");
    assert_eq!(fx.secret_writes().await, 0.0);
}

#[tokio::test]
async fn control_characters_and_newlines_in_any_name_are_refused_and_shown_escaped() {
    let fx = Fixture::start("control", None).await;
    let ns = fx.namespace().to_owned();
    let web = format!("web.{ns}.svc");
    let with = |name: &'static str, change: &dyn Fn(&mut ServiceCertificateSpec)| {
        let mut spec = fx.spec(name, &[&web]);
        change(&mut spec);
        spec
    };
    let cases = vec![
        Refusal {
            name: "trailing-newline",
            spec: fx.spec("trailing-newline", &[&format!("{web}\n")]),
            reason: "ControlCharacters",
            shows: vec![
                format!("\"{web}\\n\""),
                "a newline (U+000A)".into(),
                format!("retype it as \"{web}\""),
            ],
        },
        Refusal {
            name: "header-injection",
            spec: fx.spec("header-injection", &[&format!("{web}\r\nX-Injected: yes")]),
            reason: "ControlCharacters",
            shows: vec![
                format!("{web}\\r\\nX-Injected: yes"),
                "a carriage return (U+000D)".into(),
            ],
        },
        Refusal {
            name: "terminal-escape",
            spec: fx.spec("terminal-escape", &[&format!("\u{1b}[2J\u{1b}[31m{web}")]),
            reason: "ControlCharacters",
            shows: vec![format!("\\u{{001B}}[2J\\u{{001B}}[31m{web}")],
        },
        Refusal {
            name: "nul",
            spec: fx.spec("nul", &[&format!("web\u{0}.{ns}.svc")]),
            reason: "ControlCharacters",
            shows: vec!["\\u{0000}".into()],
        },
        Refusal {
            name: "zero-width",
            spec: fx.spec("zero-width", &[&format!("web\u{200B}.{ns}.svc")]),
            reason: "ControlCharacters",
            shows: vec!["\\u{200B}".into(), "a zero-width space".into()],
        },
        Refusal {
            name: "tab-in-common-name",
            spec: with("tab-in-common-name", &|s| {
                s.common_name = Some("web\tshop".into())
            }),
            reason: "ControlCharacters",
            shows: vec!["spec.commonName \"web\\tshop\"".into()],
        },
        Refusal {
            name: "newline-in-uri",
            spec: with("newline-in-uri", &|s| {
                s.uris = vec![format!(
                    "spiffe://cluster.local/ns/{ns}/sa/web\nspiffe://evil"
                )];
            }),
            reason: "ControlCharacters",
            shows: vec!["spec.uris[0]".into(), "\\nspiffe://evil".into()],
        },
        Refusal {
            name: "bidi-in-email",
            spec: with("bidi-in-email", &|s| {
                s.email_addresses = vec!["ops\u{202E}moc.elpmaxe@example.com".into()];
            }),
            reason: "ControlCharacters",
            shows: vec!["spec.emailAddresses[0]".into(), "\\u{202E}".into()],
        },
    ];
    assert_all_refused(&fx, cases).await;
    assert_eq!(fx.keys_generated().await, 0.0, "no key was generated");
    assert_eq!(fx.secret_writes().await, 0.0);
}

#[tokio::test]
async fn a_service_certificate_near_the_api_servers_size_limit_is_judged_and_one_past_it_is_refused_at_apply()
 {
    let fx = Fixture::start("size", None).await;
    let ns = fx.namespace().to_owned();
    // What the CRD bounds, near its bounds: 99 URIs of 2,048 characters
    // and a DNS name (the signer's 100) make a 200 KiB certificate;
    // the only unbounded field, secretTemplate.annotations, fills the rest
    // up to about 1.4 MiB, under etcd's 1.5 MiB request limit.
    let uris: Vec<String> = (0..99)
        .map(|i| {
            let prefix = format!("spiffe://cluster.local/ns/{ns}/sa/s{i}/");
            format!("{prefix}{}", "p".repeat(2048 - prefix.len()))
        })
        .collect();
    let mut big = fx.spec("big", &[&format!("big.{ns}.svc")]);
    big.uris = uris;
    let annotations: BTreeMap<String, String> = (0..64)
        .map(|i| (format!("example.com/filler-{i}"), "x".repeat(18 * 1024)))
        .collect();
    big.secret_template = Some(SecretTemplate {
        annotations,
        ..SecretTemplate::default()
    });
    let size = serde_json::to_vec(&big).expect("json").len();
    assert!(size > 1_300_000, "{size} bytes");

    // The largest spec that is also valid: the same names, and as many
    // annotations as a Secret can carry next to certflow's own.
    let mut largest_valid = big.clone();
    largest_valid.secret_name = "largest-valid-tls".into();
    largest_valid.dns_names = vec![format!("largest-valid.{ns}.svc")];
    largest_valid.secret_template = Some(SecretTemplate {
        annotations: (0..63)
            .map(|i| (format!("example.com/filler-{i}"), "x".repeat(4000)))
            .collect(),
        ..SecretTemplate::default()
    });
    let started = Instant::now();
    fx.create_ok("largest-valid", largest_valid.clone()).await;
    let found = fx.issued("largest-valid").await;
    assert_eq!(found.uris, largest_valid.uris, "all 99 long URIs, whole");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "issuing the largest valid spec took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    fx.create_ok("big", big.clone()).await;
    let (scert, failure) = fx.refused("big", "InvalidSecretTemplate").await;
    assert_eq!(
        failure.field_path.as_deref(),
        Some("spec.secretTemplate.annotations")
    );
    let note = fx.warning(&scert, &failure.reason).await;
    assert!(
        note.contains("Kubernetes allows 262144 bytes of annotations"),
        "{note}"
    );
    fx.assert_no_secret("big-tls").await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "judging a 1.4 MiB spec took {:?}",
        started.elapsed()
    );

    // Over the 2 MiB the API server sends to etcd but under its 3 MiB body
    // limit: refused by the API server itself (its wording, a 500 naming
    // both sizes), so nothing is stored and certflow never sees it.
    let mut over_etcd = big.clone();
    over_etcd.secret_template = Some(SecretTemplate {
        annotations: (0..64)
            .map(|i| (format!("example.com/filler-{i}"), "x".repeat(32 * 1024)))
            .collect(),
        ..SecretTemplate::default()
    });
    let refusal = admission_error(
        fx.create("over-etcd", over_etcd).await,
        "a 2.2 MiB ServiceCertificate",
    );
    assert_eq!(refusal.code, 500, "{refusal:?}");
    assert!(
        refusal.message.contains("larger than max"),
        "{}",
        refusal.message
    );
    assert!(
        fx.scerts()
            .get_opt("over-etcd")
            .await
            .expect("get")
            .is_none()
    );

    // Past the API server's request body limit (3 MiB).
    let mut huge = big;
    huge.secret_template = Some(SecretTemplate {
        annotations: (0..64)
            .map(|i| (format!("example.com/filler-{i}"), "x".repeat(56 * 1024)))
            .collect(),
        ..SecretTemplate::default()
    });
    let refusal = admission_error(
        fx.create("huge", huge).await,
        "a 3.5 MiB ServiceCertificate",
    );
    assert_eq!(refusal.code, 413, "{refusal:?}");
    assert!(refusal.message.contains("too large"), "{}", refusal.message);
    assert!(fx.scerts().get_opt("huge").await.expect("get").is_none());
    assert_eq!(fx.secret_writes().await, 1.0, "only the valid one");
    assert_eq!(
        fx.keys_generated().await,
        1.0,
        "no key was generated for a Secret Kubernetes would refuse"
    );
}

#[tokio::test]
async fn secret_template_labels_kubernetes_would_refuse_on_the_secret_are_refused_at_apply_or_before_signing()
 {
    let fx = Fixture::start("template", None).await;
    let ns = fx.namespace().to_owned();
    let web = format!("web.{ns}.svc");
    let labelled = |name: &'static str, key: &str, value: &str| ServiceCertificateSpec {
        secret_template: Some(SecretTemplate {
            labels: [(key.to_owned(), value.to_owned())].into(),
            ..SecretTemplate::default()
        }),
        ..fx.spec(name, &[&web])
    };
    // Label values: the CRD schema refuses them at apply.
    for (name, value, says) in [
        (
            "label-with-spaces",
            "Payments Team".to_owned(),
            "should match",
        ),
        ("label-too-long", "p".repeat(64), "Too long"),
    ] {
        let refusal = admission_error(fx.create(name, labelled(name, "team", &value)).await, name);
        assert_eq!(refusal.code, 422, "{refusal:?}");
        for text in ["spec.secretTemplate.labels.team", says] {
            assert!(
                refusal.message.contains(text),
                "{name}: lacks {text:?}: {}",
                refusal.message
            );
        }
    }
    // Keys: only the signer judges them.
    let cases = vec![
        Refusal {
            name: "label-key-newline",
            spec: labelled("label-key-newline", "team\nx", "payments"),
            reason: "InvalidSecretTemplate",
            shows: vec!["spec.secretTemplate.labels \"team\\nx\"".into()],
        },
        Refusal {
            name: "label-key-upper-case-prefix",
            spec: labelled(
                "label-key-upper-case-prefix",
                "Example.com/team",
                "payments",
            ),
            reason: "InvalidSecretTemplate",
            shows: vec!["its prefix before \"/\" is not a lower-case DNS name".into()],
        },
    ];
    // The control: what Kubernetes accepts, at the edges, reaches the
    // Secret (annotation keys are judged in lower case, label keys not).
    let mut accepted = labelled(
        "accepted-template",
        "app.kubernetes.io/name",
        &"w".repeat(63),
    );
    if let Some(template) = accepted.secret_template.as_mut() {
        template.annotations = [
            (
                "Example.com/Owner".to_owned(),
                "Payments Team\nsecond line".to_owned(),
            ),
            ("example.com/empty".to_owned(), String::new()),
        ]
        .into();
    }
    fx.create_ok("accepted-template", accepted.clone()).await;
    assert_all_refused(&fx, cases).await;
    fx.issued("accepted-template").await;
    let secret = fx
        .secrets()
        .get("accepted-template-tls")
        .await
        .expect("the Secret");
    let template = accepted.secret_template.expect("template");
    for (key, value) in &template.annotations {
        assert_eq!(secret.annotations().get(key), Some(value), "{key}");
    }
    for (key, value) in &template.labels {
        assert_eq!(secret.labels().get(key), Some(value), "{key}");
    }
    assert_eq!(
        fx.keys_generated().await,
        1.0,
        "no key was generated for a refused template"
    );
}

// Policy: what an issuer's policy forbids is refused, whoever asks.

/// The policy a platform team gives a shared CA: this namespace only, its
/// own Services' names and SPIFFE IDs, IPv4 addresses in 10.0.0.0/8 and any
/// IPv6 address, at most 30 days, RSA keys of 3072 bits or more or ECDSA,
/// no CA certificates.
fn strict_policy(namespace: &str) -> IssuerPolicy {
    IssuerPolicy {
        allowed_namespaces: vec![namespace.to_owned()],
        allowed_dns_names: vec![
            "*.{namespace}.svc".into(),
            "*.{namespace}.svc.cluster.local".into(),
        ],
        allowed_uri_prefixes: vec!["spiffe://cluster.local/ns/{namespace}/".into()],
        // Any IPv6 address (Pods), and IPv4 only in the cluster's range.
        allowed_ip_ranges: vec!["10.0.0.0/8".into(), "::/0".into()],
        max_duration: Some("720h".into()),
        allowed_key_algorithms: vec![KeyAlgorithm::Ecdsa, KeyAlgorithm::Rsa],
        min_rsa_key_size: Some(3072),
        ..IssuerPolicy::default()
    }
}

#[tokio::test]
async fn an_issuers_policy_refuses_other_namespaces_names_ca_certificates_long_durations_weak_keys_and_foreign_namespaces()
 {
    // The namespace's name is known only once created, and the policy names
    // it; the fixture's own CA is the permissive one.
    let fx = Fixture::start("policy", None).await;
    let ns = fx.namespace().to_owned();
    let strict = certflow_testenv::unique_name("strict-ca");
    create_generated_ca(&fx.client, &strict, Some(strict_policy(&ns)))
        .await
        .expect("create the strict CertificateAuthority");
    let elsewhere = certflow_testenv::unique_name("elsewhere-ca");
    let only_others = IssuerPolicy {
        allowed_namespaces: vec!["team-*".into(), "payments".into()],
        ..IssuerPolicy::default()
    };
    create_generated_ca(&fx.client, &elsewhere, Some(only_others))
        .await
        .expect("create the CertificateAuthority for other namespaces");

    // A prefix written without its trailing "/".
    let loose = certflow_testenv::unique_name("loose-prefix-ca");
    let loose_prefix = IssuerPolicy {
        allowed_uri_prefixes: vec!["spiffe://cluster.local/ns/{namespace}".into()],
        ..strict_policy(&ns)
    };
    create_generated_ca(&fx.client, &loose, Some(loose_prefix))
        .await
        .expect("create the CertificateAuthority with a loose URI prefix");

    let other = "payments";
    let web = format!("web.{ns}.svc");
    // Within the policy's 720h unless a case says otherwise.
    let spec = |name: &str, dns: &[&str]| ServiceCertificateSpec {
        duration: Some("720h".into()),
        ..fx.spec_from(&strict, name, dns)
    };
    let with_key = |name: &str, algorithm: KeyAlgorithm, size: u32| ServiceCertificateSpec {
        private_key: Some(PrivateKeySpec {
            algorithm: Some(algorithm),
            size: Some(size),
            ..PrivateKeySpec::default()
        }),
        ..spec(name, &[&web])
    };

    // The control: a request within the policy is issued.
    let compliant = ServiceCertificateSpec {
        ip_addresses: vec![
            "10.1.2.3".into(),
            "fd00::12".into(),
            "::ffff:10.1.2.4".into(),
        ],
        uris: vec![format!("spiffe://cluster.local/ns/{ns}/sa/web")],
        ..with_key("compliant", KeyAlgorithm::Rsa, 3072)
    };
    fx.create_ok("compliant", compliant).await;

    let cases = vec![
        Refusal {
            name: "other-namespace-name",
            spec: spec("other-namespace-name", &[&web, &format!("api.{other}.svc")]),
            reason: "PolicyViolation",
            shows: vec![
                "spec.dnsNames[1]".into(),
                format!("\"{other}\" is another namespace"),
                format!("did you mean \"api.{ns}.svc\"?"),
            ],
        },
        Refusal {
            name: "other-namespace-wildcard",
            spec: spec(
                "other-namespace-wildcard",
                &[&format!("*.{other}.svc.cluster.local")],
            ),
            reason: "PolicyViolation",
            shows: vec![format!("\"*.{other}.svc.cluster.local\"")],
        },
        Refusal {
            name: "parent-wildcard",
            spec: spec("parent-wildcard", &["*.svc.cluster.local"]),
            reason: "PolicyViolation",
            shows: vec!["\"*.svc.cluster.local\"".into()],
        },
        Refusal {
            name: "other-namespace-identity",
            spec: ServiceCertificateSpec {
                uris: vec![format!("spiffe://cluster.local/ns/{other}/sa/api")],
                ..spec("other-namespace-identity", &[&web])
            },
            reason: "PolicyViolation",
            shows: vec![
                "spec.uris[0]".into(),
                format!("did you mean \"spiffe://cluster.local/ns/{ns}/sa/api\"?"),
            ],
        },
        Refusal {
            // A common name must be one of the certificate's own names
            // (tests/e2e/tenancy.rs has more).
            name: "other-namespace-common-name",
            spec: ServiceCertificateSpec {
                common_name: Some(format!("API.{}.SVC.", other.to_uppercase())),
                ..spec("other-namespace-common-name", &[&web])
            },
            reason: "CommonNameNotInSANs",
            shows: vec![
                "spec.commonName".into(),
                format!("add \"api.{other}.svc\" to spec.dnsNames"),
            ],
        },
        Refusal {
            // URI parsers that follow the WHATWG URL standard (Rust's `url`,
            // JavaScript's URL) resolve ".." and read this as the other
            // namespace's identity.
            name: "dot-segment-identity",
            spec: ServiceCertificateSpec {
                uris: vec![format!("spiffe://cluster.local/ns/{ns}/../{other}/sa/api")],
                ..spec("dot-segment-identity", &[&web])
            },
            reason: "PolicyViolation",
            shows: vec!["spec.uris[0]".into(), "\"..\"".into()],
        },
        Refusal {
            name: "encoded-dot-segment-identity",
            spec: ServiceCertificateSpec {
                uris: vec![format!(
                    "spiffe://cluster.local/ns/{ns}/%2E%2e/{other}/sa/api"
                )],
                ..spec("encoded-dot-segment-identity", &[&web])
            },
            reason: "PolicyViolation",
            shows: vec!["spec.uris[0]".into()],
        },
        Refusal {
            name: "longer-namespace-identity",
            spec: ServiceCertificateSpec {
                uris: vec![format!("spiffe://cluster.local/ns/{ns}-admin/sa/api")],
                duration: Some("720h".into()),
                ..fx.spec_from(&loose, "longer-namespace-identity", &[&web])
            },
            reason: "PolicyViolation",
            shows: vec![format!(
                "did you mean \"spiffe://cluster.local/ns/{ns}/sa/api\"?"
            )],
        },
        Refusal {
            // Clients match an IPv4-mapped IPv6 address as the IPv4 one.
            name: "mapped-ipv4-address",
            spec: ServiceCertificateSpec {
                ip_addresses: vec!["fd00::12".into(), "::ffff:192.168.1.10".into()],
                ..spec("mapped-ipv4-address", &[&web])
            },
            reason: "PolicyViolation",
            shows: vec!["spec.ipAddresses[1] \"::ffff:192.168.1.10\"".into()],
        },
        Refusal {
            name: "ca-certificate",
            spec: ServiceCertificateSpec {
                is_ca: Some(true),
                ..spec("ca-certificate", &[&web])
            },
            reason: "CANotAllowed",
            shows: vec!["spec.isCA \"true\"".into(), "remove spec.isCA".into()],
        },
        Refusal {
            name: "ca-usages",
            spec: ServiceCertificateSpec {
                // "cert sign" without isCA is refused at apply by the CRD
                // (tests/e2e/schema.rs); "crl sign" reaches the policy.
                usages: vec![KeyUsage::DigitalSignature, KeyUsage::CrlSign],
                ..spec("ca-usages", &[&web])
            },
            reason: "CANotAllowed",
            shows: vec!["spec.usages[1] \"crl sign\"".into()],
        },
        Refusal {
            name: "long-duration",
            spec: ServiceCertificateSpec {
                duration: Some("8760h".into()),
                ..spec("long-duration", &[&web])
            },
            reason: "DurationExceedsPolicy",
            shows: vec![
                "\"8760h\"".into(),
                "set spec.duration to \"720h\" or less".into(),
            ],
        },
        Refusal {
            name: "default-duration",
            spec: ServiceCertificateSpec {
                duration: None,
                ..spec("default-duration", &[&web])
            },
            reason: "DurationExceedsPolicy",
            shows: vec!["(the default, as spec.duration is not set)".into()],
        },
        Refusal {
            name: "weak-key",
            spec: with_key("weak-key", KeyAlgorithm::Rsa, 2048),
            reason: "KeyTooWeak",
            shows: vec!["\"2048\"".into(), "3072-bit minimum".into()],
        },
        Refusal {
            // RSA without a size means 2048 bits.
            name: "default-rsa-size",
            spec: ServiceCertificateSpec {
                private_key: Some(PrivateKeySpec {
                    algorithm: Some(KeyAlgorithm::Rsa),
                    ..PrivateKeySpec::default()
                }),
                ..spec("default-rsa-size", &[&web])
            },
            reason: "KeyTooWeak",
            shows: vec!["\"2048\"".into(), "did you mean 3072?".into()],
        },
        Refusal {
            name: "other-algorithm",
            spec: ServiceCertificateSpec {
                private_key: Some(PrivateKeySpec {
                    algorithm: Some(KeyAlgorithm::Ed25519),
                    ..PrivateKeySpec::default()
                }),
                ..spec("other-algorithm", &[&web])
            },
            reason: "KeyAlgorithmNotAllowed",
            shows: vec!["\"Ed25519\"".into(), "allowed: ECDSA, RSA".into()],
        },
        Refusal {
            name: "foreign-authority",
            spec: ServiceCertificateSpec {
                duration: Some("720h".into()),
                ..fx.spec_from(&elsewhere, "foreign-authority", &[&web])
            },
            reason: "NamespaceNotAllowed",
            shows: vec![
                format!("does not serve namespace \"{ns}\""),
                "team-*, payments".into(),
            ],
        },
    ];
    assert_all_refused(&fx, cases).await;
    fx.issued("compliant").await;
    assert_eq!(
        fx.keys_generated().await,
        1.0,
        "only the compliant request got a key"
    );
}
