use super::*;

fn pod(uid: &str) -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        namespace: "shop".into(),
        name: "web-7d9-abcde".into(),
        uid: uid.into(),
    }
}

fn warning(note: &str) -> Notice {
    Notice::new(EventType::Warning, "PolicyViolation", "Issue", note)
}

fn aggregator() -> Aggregator {
    Aggregator::new(AggregationSettings::default())
}

/// Observes `notice` `times` times at `now` and completes every write at
/// once; returns the writes made.
fn observe(
    aggregator: &mut Aggregator,
    regarding: &ObjectRef,
    notice: &Notice,
    times: usize,
    now: Instant,
) -> Vec<Write> {
    let mut writes = Vec::new();
    for _ in 0..times {
        if let Some(write) = aggregator
            .observe(regarding, notice, now, Timestamp::now())
            .write
        {
            aggregator.written(&write, write.count, None, now);
            writes.push(write);
        }
    }
    writes
}

#[test]
fn the_first_observation_creates_the_event() {
    let mut aggregator = aggregator();
    let decision = aggregator.observe(
        &pod("u1"),
        &warning("bad"),
        Instant::now(),
        Timestamp::now(),
    );
    let write = decision.write.expect("a write");
    assert_eq!(write.kind, WriteKind::Create);
    assert_eq!(write.count, 1);
    assert!(!decision.repeat);
}

#[test]
fn repeats_fold_into_one_series_written_once_per_interval() {
    let mut aggregator = aggregator();
    let start = Instant::now();
    let writes = observe(&mut aggregator, &pod("u1"), &warning("bad"), 1000, start);
    assert_eq!(
        writes.len(),
        1,
        "only the create; repeats wait for the interval"
    );

    let later = start + Duration::from_secs(10);
    let due = aggregator.due(later);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].kind, WriteKind::UpdateSeries);
    assert_eq!(due[0].count, 1000);
    assert_eq!(due[0].name, writes[0].name, "the same Event");
    aggregator.written(&due[0], due[0].count, None, later);
    assert!(
        aggregator.due(later + Duration::from_secs(60)).is_empty(),
        "nothing owed"
    );
}

#[test]
fn a_repeat_after_the_interval_is_written_at_once() {
    let mut aggregator = aggregator();
    let start = Instant::now();
    observe(&mut aggregator, &pod("u1"), &warning("bad"), 1, start);
    let writes = observe(
        &mut aggregator,
        &pod("u1"),
        &warning("bad"),
        1,
        start + Duration::from_secs(30),
    );
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].kind, WriteKind::UpdateSeries);
    assert_eq!(writes[0].count, 2);
}

#[test]
fn a_changed_message_is_a_new_event() {
    let mut aggregator = aggregator();
    let now = Instant::now();
    let first = observe(
        &mut aggregator,
        &pod("u1"),
        &warning("typo in dnsNames[0]"),
        1,
        now,
    );
    let second = observe(
        &mut aggregator,
        &pod("u1"),
        &warning("typo in dnsNames[1]"),
        1,
        now,
    );
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].kind, WriteKind::Create);
    assert_ne!(first[0].name, second[0].name);
}

#[test]
fn writes_beyond_the_burst_wait_for_a_token_and_keep_counting() {
    let settings = AggregationSettings {
        series_interval: Duration::ZERO,
        ..AggregationSettings::default()
    };
    let mut aggregator = Aggregator::new(settings);
    let start = Instant::now();
    let mut rate_limited = 0;
    let mut writes = 0;
    for _ in 0..100 {
        let decision = aggregator.observe(&pod("u1"), &warning("bad"), start, Timestamp::now());
        rate_limited += usize::from(decision.rate_limited);
        if let Some(write) = decision.write {
            aggregator.written(&write, write.count, None, start);
            writes += 1;
        }
    }
    assert_eq!(writes, 25, "burst");
    assert_eq!(rate_limited, 75);
    assert!(aggregator.due(start + Duration::from_secs(299)).is_empty());
    let refilled = aggregator.due(start + Duration::from_secs(300));
    assert_eq!(refilled.len(), 1);
    assert_eq!(
        refilled[0].count, 100,
        "the deferred observations are not lost"
    );
}

#[test]
fn the_rate_limit_is_per_object_and_reason() {
    let settings = AggregationSettings {
        series_interval: Duration::ZERO,
        ..AggregationSettings::default()
    };
    let mut aggregator = Aggregator::new(settings);
    let now = Instant::now();
    let notes: Vec<Notice> = (0..30).map(|i| warning(&format!("message {i}"))).collect();
    let on_one_pod: usize = notes
        .iter()
        .map(|n| observe(&mut aggregator, &pod("u1"), n, 1, now).len())
        .sum();
    assert_eq!(
        on_one_pod, 25,
        "different notes share the (object, reason) bucket"
    );
    let other_pod = observe(&mut aggregator, &pod("u2"), &notes[0], 1, now);
    assert_eq!(other_pod.len(), 1);
    let other_reason = Notice::new(EventType::Normal, "Issued", "Issue", "ok");
    assert_eq!(
        observe(&mut aggregator, &pod("u1"), &other_reason, 1, now).len(),
        1
    );
}

#[test]
fn one_write_at_a_time_per_event() {
    let settings = AggregationSettings {
        series_interval: Duration::ZERO,
        ..AggregationSettings::default()
    };
    let mut aggregator = Aggregator::new(settings);
    let now = Instant::now();
    let first = aggregator.observe(&pod("u1"), &warning("bad"), now, Timestamp::now());
    let second = aggregator.observe(&pod("u1"), &warning("bad"), now, Timestamp::now());
    assert!(first.write.is_some());
    assert!(second.write.is_none(), "the create is still in flight");
    let first = first.write.expect("write");
    aggregator.written(&first, 1, None, now);
    let owed = aggregator.due(now);
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].count, 2);
}

#[test]
fn a_count_adopted_from_the_server_is_kept() {
    let mut aggregator = aggregator();
    let now = Instant::now();
    let write = aggregator
        .observe(&pod("u1"), &warning("bad"), now, Timestamp::now())
        .write
        .expect("create");
    // Another replica had already counted 7.
    aggregator.written(&write, 8, Some("41".into()), now);
    aggregator.observe(&pod("u1"), &warning("bad"), now, Timestamp::now());
    let due = aggregator.due(now + Duration::from_secs(10));
    assert_eq!(due[0].count, 9);
    assert_eq!(due[0].written, 8, "one observation is new");
    assert_eq!(due[0].resource_version.as_deref(), Some("41"));
}

#[test]
fn a_failed_write_stays_owed() {
    let mut aggregator = aggregator();
    let now = Instant::now();
    let write = aggregator
        .observe(&pod("u1"), &warning("bad"), now, Timestamp::now())
        .write
        .expect("create");
    aggregator.failed(&write, true);
    let retry = aggregator.due(now);
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].kind, WriteKind::Create);
}

#[test]
fn a_write_the_api_refuses_for_good_is_not_retried() {
    let mut aggregator = aggregator();
    let now = Instant::now();
    let write = aggregator
        .observe(&pod("u1"), &warning("bad"), now, Timestamp::now())
        .write
        .expect("create");
    aggregator.failed(&write, false);
    assert!(aggregator.due(now + Duration::from_secs(600)).is_empty());
    assert!(aggregator.is_empty());
}

#[test]
fn resolved_warnings_are_not_written_any_more() {
    let mut aggregator = aggregator();
    let now = Instant::now();
    observe(&mut aggregator, &pod("u1"), &warning("bad"), 5, now);
    let issued = Notice::new(EventType::Normal, "Issued", "Issue", "ok");
    observe(&mut aggregator, &pod("u1"), &issued, 1, now);
    aggregator.forget_warnings("u1");
    assert_eq!(aggregator.len(), 1, "the Normal event stays");
    assert!(aggregator.due(now + Duration::from_secs(600)).is_empty());
}

#[test]
fn idle_events_are_forgotten_and_the_count_is_bounded() {
    let settings = AggregationSettings {
        max_entries: 3,
        ..AggregationSettings::default()
    };
    let mut aggregator = Aggregator::new(settings);
    let start = Instant::now();
    for i in 0..5u64 {
        let uid = format!("u{i}");
        observe(
            &mut aggregator,
            &pod(&uid),
            &warning("bad"),
            1,
            start + Duration::from_secs(i),
        );
    }
    aggregator.prune(start + Duration::from_secs(5));
    assert_eq!(aggregator.len(), 3);
    aggregator.prune(start + Duration::from_secs(3600));
    assert!(aggregator.is_empty());
}

#[test]
fn event_names_are_stable_valid_and_distinct_per_key() {
    let notice = warning("bad");
    let name = event_name(&pod("u1"), &notice);
    assert_eq!(name, event_name(&pod("u1"), &notice), "deterministic");
    assert!(name.starts_with("web-7d9-abcde."));
    assert_ne!(name, event_name(&pod("u2"), &notice));
    assert_ne!(name, event_name(&pod("u1"), &warning("other")));

    let mut long = pod("u1");
    long.name = format!("{}-x", "a".repeat(300));
    let name = event_name(&long, &notice);
    assert!(name.len() <= 253);
    assert!(
        name.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    );
    let mut odd = pod("u1");
    odd.name = "Web_App-".into();
    assert!(event_name(&odd, &notice).starts_with("web-app."));
}

#[test]
fn certflows_own_event_names_did_not_change_when_callers_were_keyed() {
    // Names are looked up by a new replica ("was this Pod told?"); a name
    // that changed would make it tell every Pod again.
    assert_eq!(
        event_name(&pod("u1"), &warning("bad")),
        "web-7d9-abcde.f988ce5b09279b0b"
    );
}

fn reported(caller: &str, message: &str) -> Notice {
    Notice::reported_by(
        caller,
        EventType::Warning,
        "QuotaExceeded",
        "Report",
        message,
    )
}

#[test]
fn two_callers_saying_the_same_thing_get_an_event_each() {
    let mut aggregator = aggregator();
    let now = Instant::now();
    let quota = reported("system:serviceaccount:platform:quota", "Over quota.");
    let deployer = reported("system:serviceaccount:team-a:deployer", "Over quota.");
    let first = observe(&mut aggregator, &pod("u1"), &quota, 3, now);
    let second = observe(&mut aggregator, &pod("u1"), &deployer, 1, now);
    assert_eq!((first.len(), second.len()), (1, 1), "one create each");
    assert_eq!(second[0].kind, WriteKind::Create);
    assert_ne!(first[0].name, second[0].name);
    assert_eq!(aggregator.len(), 2);
    // Keyed by the caller itself, not only through the note's wording: a
    // note that reads the same is still another Event.
    let lookalike = Notice::new(EventType::Warning, "QuotaExceeded", "Report", quota.note());
    assert_eq!(lookalike.note(), quota.note());
    assert_ne!(
        EventKey::new(&pod("u1"), &lookalike),
        EventKey::new(&pod("u1"), &quota)
    );
    assert_ne!(
        event_name(&pod("u1"), &lookalike),
        event_name(&pod("u1"), &quota)
    );
}

#[test]
fn resolving_certflows_failure_keeps_a_callers_warning_owed() {
    let mut aggregator = aggregator();
    let now = Instant::now();
    observe(&mut aggregator, &pod("u1"), &warning("bad"), 5, now);
    let quota = reported("system:serviceaccount:platform:quota", "Over quota.");
    observe(&mut aggregator, &pod("u1"), &quota, 5, now);
    aggregator.forget_warnings("u1");
    let due = aggregator.due(now + Duration::from_secs(600));
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].notice, quota);
    assert_eq!(due[0].count, 5);
}

#[test]
fn the_hash_is_fnv1a() {
    // Known FNV-1a 64 value of "a" followed by the separator byte 0.
    let mut expected: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in [b'a', 0] {
        expected ^= u64::from(byte);
        expected = expected.wrapping_mul(0x0000_0100_0000_01b3);
    }
    assert_eq!(fnv1a(&["a"]), expected);
    assert_eq!(fnv1a(&[""]), 0xaf63_bd4c_8601_b7df);
}

#[test]
fn writes_that_fail_transiently_do_not_use_up_the_rate_limit() {
    let mut aggregator = aggregator();
    let (pod, notice) = (pod("u1"), warning("bad"));
    let start = Instant::now();
    // An outage: the create is retried every second and fails each time.
    for second in 0..100 {
        let now = start + Duration::from_secs(second);
        let write = if second == 0 {
            aggregator
                .observe(&pod, &notice, now, Timestamp::now())
                .write
                .expect("the first observation writes")
        } else {
            let mut due = aggregator.due(now);
            assert_eq!(due.len(), 1, "second {second}: the create is still owed");
            due.remove(0)
        };
        assert_eq!(write.kind, WriteKind::Create);
        aggregator.failed(&write, true);
    }
    // The API server is back: the next try goes out at once.
    let mut due = aggregator.due(start + Duration::from_secs(100));
    assert_eq!(due.len(), 1, "the owed create is not rate limited");
    let write = due.remove(0);
    aggregator.written(&write, write.count, None, start + Duration::from_secs(100));
}
