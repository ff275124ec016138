//! Watch events with each object reduced to the summary a slim cache keeps
//! ([`crate::certificates`], [`crate::pods`]), so the full objects are
//! dropped as soon as they arrive.

use kube::runtime::watcher::Event;

/// `event` with its object replaced by `of(object)`; `None` when `of` finds
/// nothing to keep (an object the API server would never send).
pub(crate) fn summarize<K, S>(event: Event<K>, of: impl Fn(&K) -> Option<S>) -> Option<Event<S>> {
    Some(match event {
        Event::Apply(object) => Event::Apply(of(&object)?),
        Event::Delete(object) => Event::Delete(of(&object)?),
        Event::Init => Event::Init,
        Event::InitApply(object) => Event::InitApply(of(&object)?),
        Event::InitDone => Event::InitDone,
    })
}
