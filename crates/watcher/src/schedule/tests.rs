use std::time::{Duration, SystemTime};

use certflow_proto::v1::Trigger;

use super::*;

const MINUTE: Duration = Duration::from_secs(60);

fn schedule() -> Schedule {
    Schedule {
        republish_after: 5 * MINUTE,
        failure_retry: 10 * MINUTE,
    }
}

fn at(minutes: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + minutes * MINUTE
}

fn published(dedup_id: &str, attempt: u32, minutes: u32) -> Publication {
    Publication {
        dedup_id: dedup_id.to_owned(),
        attempt,
        at: at(minutes),
        issuer_version: "7".to_owned(),
    }
}

fn publish(message_id: &str, attempt: u32) -> Step {
    Step::Publish {
        message_id: message_id.to_owned(),
        attempt,
    }
}

#[test]
fn what_to_do_with_a_decision_given_what_was_published_when() {
    struct Case {
        name: &'static str,
        last: Option<Publication>,
        trigger: Trigger,
        dedup_id: &'static str,
        now: u32,
        expect: Step,
    }
    let cases = [
        Case {
            name: "nothing remembered: published at once under the decision's own id",
            last: None,
            trigger: Trigger::Created,
            dedup_id: "u/3",
            now: 0,
            expect: publish("u/3", 0),
        },
        Case {
            name: "another decision remembered: the new one is published at once",
            last: Some(published("u/2", 4, 0)),
            trigger: Trigger::SpecChanged,
            dedup_id: "u/3",
            now: 1,
            expect: publish("u/3", 0),
        },
        Case {
            name: "published a minute ago: wait until --republish-after has passed",
            last: Some(published("u/3", 0, 0)),
            trigger: Trigger::Created,
            dedup_id: "u/3",
            now: 1,
            expect: Step::WaitUntil(at(5)),
        },
        Case {
            name: "still holding --republish-after later: published again as attempt 1",
            last: Some(published("u/3", 0, 0)),
            trigger: Trigger::Created,
            dedup_id: "u/3",
            now: 5,
            expect: publish("u/3/again/1", 1),
        },
        Case {
            name: "the first republication waits twice as long",
            last: Some(published("u/3", 1, 5)),
            trigger: Trigger::Created,
            dedup_id: "u/3",
            now: 14,
            expect: Step::WaitUntil(at(15)),
        },
        Case {
            name: "and then comes as attempt 2",
            last: Some(published("u/3", 1, 5)),
            trigger: Trigger::SecretMissing,
            dedup_id: "u/3",
            now: 15,
            expect: publish("u/3/again/2", 2),
        },
        Case {
            name: "the interval stops doubling at eight times --republish-after",
            last: Some(published("u/3", 9, 100)),
            trigger: Trigger::RenewalDue,
            dedup_id: "u/3",
            now: 101,
            expect: Step::WaitUntil(at(140)),
        },
        Case {
            name: "a refused request's re-examination is not published early",
            last: Some(published("u/3/retry/7/100", 0, 0)),
            trigger: Trigger::Resync,
            dedup_id: "u/3/retry/7/100",
            now: 6,
            expect: Step::WaitUntil(at(10)),
        },
        Case {
            name: "unless its id has not changed after --failure-retry",
            last: Some(published("u/3/retry/7/100", 0, 0)),
            trigger: Trigger::Resync,
            dedup_id: "u/3/retry/7/100",
            now: 10,
            expect: publish("u/3/retry/7/100/again/1", 1),
        },
        Case {
            name: "a refusal of the generation's own item, issuer unchanged: re-examined \
                   --failure-retry after that item, not at once",
            last: Some(published("u/3", 0, 0)),
            trigger: Trigger::Resync,
            dedup_id: "u/3/retry/7/100",
            now: 0,
            expect: Step::WaitUntil(at(10)),
        },
        Case {
            name: "and then published under its own id",
            last: Some(published("u/3", 0, 0)),
            trigger: Trigger::Resync,
            dedup_id: "u/3/retry/7/101",
            now: 10,
            expect: publish("u/3/retry/7/101", 0),
        },
        Case {
            name: "the same after a republication of the generation's item",
            last: Some(published("u/3", 2, 30)),
            trigger: Trigger::Resync,
            dedup_id: "u/3/retry/7/103",
            now: 31,
            expect: Step::WaitUntil(at(40)),
        },
        Case {
            name: "the issuer changed since the item: re-examined at once",
            last: Some(published("u/3", 0, 0)),
            trigger: Trigger::Resync,
            dedup_id: "u/3/retry/8/100",
            now: 0,
            expect: publish("u/3/retry/8/100", 0),
        },
        Case {
            name: "another generation's refusal is not an answer to this item",
            last: Some(published("u/3", 0, 0)),
            trigger: Trigger::Resync,
            dedup_id: "u/33/retry/7/100",
            now: 0,
            expect: publish("u/33/retry/7/100", 0),
        },
        Case {
            name: "a clock that went back waits for the due time, never publishes early",
            last: Some(published("u/3", 0, 10)),
            trigger: Trigger::Created,
            dedup_id: "u/3",
            now: 2,
            expect: Step::WaitUntil(at(15)),
        },
    ];
    for case in cases {
        let step = schedule().step(
            case.last.as_ref(),
            case.trigger,
            case.dedup_id,
            at(case.now),
        );
        assert_eq!(step, case.expect, "{}", case.name);
    }
}

#[test]
fn republications_come_after_five_ten_twenty_then_every_forty_minutes_by_default() {
    let intervals: Vec<u64> = (0..6)
        .map(|attempt| schedule().republish_interval(attempt).as_secs() / 60)
        .collect();
    assert_eq!(intervals, [5, 10, 20, 40, 40, 40]);
    assert_eq!(schedule().republish_interval(u32::MAX), 40 * MINUTE);
    assert_eq!(schedule().republish_bound(), 40 * MINUTE);
}

#[test]
fn a_zero_republish_after_is_not_a_busy_loop() {
    let zero = Schedule {
        republish_after: Duration::ZERO,
        failure_retry: Duration::ZERO,
    };
    assert_eq!(zero.republish_interval(0), MIN_REPUBLISH_AFTER);
    let last = published("u/3", 0, 0);
    assert_eq!(
        zero.step(Some(&last), Trigger::Created, "u/3", at(0)),
        Step::WaitUntil(at(0) + MIN_REPUBLISH_AFTER)
    );
    assert_eq!(
        zero.step(Some(&last), Trigger::Resync, "u/3", at(0)),
        Step::WaitUntil(at(0) + MIN_REPUBLISH_AFTER)
    );
}

#[test]
fn every_publication_of_one_decision_has_its_own_message_id_and_every_watcher_the_same() {
    let ids: Vec<String> = (0..4).map(|attempt| message_id("u/3", attempt)).collect();
    assert_eq!(ids, ["u/3", "u/3/again/1", "u/3/again/2", "u/3/again/3"]);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
}
