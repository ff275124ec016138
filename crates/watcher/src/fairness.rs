//! How many of one namespace's decisions the watcher lets onto the work
//! stream at once. Pure: the [`crate::ledger::Ledger`] counts, this module
//! decides, so the rule is table-tested without a bus.
//!
//! The signers take work items first in, first out, from one stream. Without
//! a cap, a namespace that asks for a thousand slow certificates at once
//! (RSA-4096, say) puts every other namespace's next certificate behind all
//! of them. With `--namespace-in-flight N`, at most N of a namespace's
//! objects have work published and not yet seen done; the namespace's
//! further decisions are held in the watcher, first come first served, and
//! published one by one as its own work is seen done. Another namespace's
//! item then waits behind at most N items per busy namespace. Held is not
//! dropped: every held decision is published in its turn (see
//! `docs/design/20261203-fairness.md`).

use std::num::NonZeroUsize;

use certflow_proto::v1::Trigger;

/// `--namespace-in-flight`: how many objects of one namespace may have work
/// published and not yet seen done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// No cap (`--namespace-in-flight=0`): every decision is published at
    /// once, as before the cap existed.
    Unlimited,
    /// At most this many objects per namespace.
    AtMost(NonZeroUsize),
}

impl Cap {
    /// The cap a `--namespace-in-flight` value asks for; 0 is none.
    pub fn from_flag(objects: usize) -> Self {
        NonZeroUsize::new(objects).map_or(Self::Unlimited, Self::AtMost)
    }
}

/// Whether publishing `trigger`'s work takes one of its namespace's slots
/// until the work is seen done.
///
/// Every trigger does except [`Trigger::Resync`], the periodic re-examination
/// of a refused request: when the signer refuses the same thing again it
/// writes nothing, so the watcher would never see that work done and the
/// object would keep its slot for as long as it stays refused; a few refused
/// objects would then shut their namespace out for good. A re-examination is
/// still held while its namespace is at its cap ([`Claim`]).
pub fn takes_slot(trigger: Trigger) -> bool {
    trigger != Trigger::Resync
}

/// One object's claim when its decision asks to be published. A decision
/// that will not take a slot ([`takes_slot`]) claims like any other: it is
/// held while its namespace is at its cap, so it never adds to a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The object already holds a slot (work published, not yet seen done).
    pub holds_slot: bool,
    /// It was woken because a slot was set aside for it.
    pub woken: bool,
}

/// Its namespace's slots at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Objects holding a slot.
    pub in_flight: usize,
    /// Held objects woken for a freed slot and not yet reconciled, the
    /// claimant included if it is one of them: their slots are set aside.
    pub woken: usize,
}

/// What to do with a decision to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Publish now.
    Publish,
    /// Hold it in the watcher until a slot of its namespace frees.
    Hold,
}

/// Whether `claim` may be published now under `cap`, given `load`: the
/// first of the named checks below that admits it, else hold.
pub fn admit(cap: Cap, claim: Claim, load: Load) -> Admission {
    let admitted = holds_a_slot(claim) || uncapped(cap) || slot_free(cap, claim, load);
    if admitted {
        Admission::Publish
    } else {
        Admission::Hold
    }
}

/// An object already in flight publishes again without a new slot: a
/// republication (`--republish-after`) must never wait for the cap, or work
/// lost on the bus in a full namespace would never come back, and a newer
/// decision (a spec change) replaces the object's own work.
fn holds_a_slot(claim: Claim) -> bool {
    claim.holds_slot
}

fn uncapped(cap: Cap) -> bool {
    cap == Cap::Unlimited
}

/// A slot is free for the claimant: fewer objects in flight than the cap,
/// after the slots set aside for the other woken objects. A woken claimant
/// counts its own slot as free; any other claimant sees none while held
/// objects are waiting, so a newcomer never jumps their queue.
fn slot_free(cap: Cap, claim: Claim, load: Load) -> bool {
    let Cap::AtMost(cap) = cap else {
        return true;
    };
    let set_aside = load.woken.saturating_sub(usize::from(claim.woken));
    load.in_flight.saturating_add(set_aside) < cap.get()
}

/// How many held objects to wake now: the slots neither in flight nor
/// already set aside for woken ones, at most `held`.
pub fn to_wake(cap: Cap, load: Load, held: usize) -> usize {
    match cap {
        Cap::Unlimited => held,
        Cap::AtMost(cap) => cap
            .get()
            .saturating_sub(load.in_flight.saturating_add(load.woken))
            .min(held),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(objects: usize) -> Cap {
        Cap::from_flag(objects)
    }

    fn new_object() -> Claim {
        Claim {
            holds_slot: false,
            woken: false,
        }
    }

    fn load(in_flight: usize, woken: usize) -> Load {
        Load { in_flight, woken }
    }

    #[test]
    fn whether_a_decision_is_published_or_held() {
        struct Case {
            name: &'static str,
            cap: Cap,
            claim: Claim,
            load: Load,
            expect: Admission,
        }
        let cases = [
            Case {
                name: "an empty namespace publishes",
                cap: cap(2),
                claim: new_object(),
                load: load(0, 0),
                expect: Admission::Publish,
            },
            Case {
                name: "one slot left: published",
                cap: cap(2),
                claim: new_object(),
                load: load(1, 0),
                expect: Admission::Publish,
            },
            Case {
                name: "at the cap: held",
                cap: cap(2),
                claim: new_object(),
                load: load(2, 0),
                expect: Admission::Hold,
            },
            Case {
                name: "the free slot is set aside for a woken object: a newcomer is held",
                cap: cap(2),
                claim: new_object(),
                load: load(1, 1),
                expect: Admission::Hold,
            },
            Case {
                name: "the woken object takes the slot set aside for it",
                cap: cap(2),
                claim: Claim {
                    woken: true,
                    ..new_object()
                },
                load: load(1, 1),
                expect: Admission::Publish,
            },
            Case {
                name: "an object in flight publishes again over the cap (republication, newer decision)",
                cap: cap(2),
                claim: Claim {
                    holds_slot: true,
                    ..new_object()
                },
                load: load(2, 0),
                expect: Admission::Publish,
            },
            Case {
                name: "no cap: published however many are in flight",
                cap: cap(0),
                claim: new_object(),
                load: load(10_000, 0),
                expect: Admission::Publish,
            },
        ];
        for case in cases {
            assert_eq!(
                admit(case.cap, case.claim, case.load),
                case.expect,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn held_objects_are_woken_for_the_slots_neither_in_flight_nor_set_aside() {
        assert_eq!(to_wake(cap(4), load(1, 1), 10), 2);
        assert_eq!(to_wake(cap(4), load(1, 1), 1), 1);
        assert_eq!(to_wake(cap(4), load(4, 0), 10), 0);
        assert_eq!(
            to_wake(cap(4), load(5, 0), 10),
            0,
            "over the cap after republications"
        );
        assert_eq!(to_wake(cap(0), load(0, 0), 3), 3);
    }

    #[test]
    fn zero_means_no_cap() {
        assert_eq!(Cap::from_flag(0), Cap::Unlimited);
        assert_eq!(
            Cap::from_flag(3),
            Cap::AtMost(NonZeroUsize::MIN.saturating_add(2))
        );
    }

    #[test]
    fn every_trigger_but_a_re_examination_takes_a_slot() {
        assert!(!takes_slot(Trigger::Resync));
        for trigger in [
            Trigger::Created,
            Trigger::SpecChanged,
            Trigger::SecretMissing,
            Trigger::SecretInvalid,
            Trigger::IssuerChanged,
            Trigger::RenewalDue,
        ] {
            assert!(takes_slot(trigger), "{trigger:?}");
        }
    }
}
