//! Who owns the actors a process spawned in other processes, and how their
//! failures reach the owner: a failure in a worker comes to its parent's
//! [`Supervisor`] service as a message; the loss of a worker process comes
//! from the parent's watch on it, naming how the process ended.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, LazyLock, Mutex};

use super::lock;
use crate::runtime::proc::panic_message;
use crate::{ActorId, Failure, SupervisionEvent};

/// Called with a supervision event for a remote actor this process owns.
pub(crate) type Sink = Arc<dyn Fn(SupervisionEvent) + Send + Sync>;

/// The remote actors this process owns: the address of each one's process,
/// and where its failures go.
static OWNED: LazyLock<Mutex<Owned>> = LazyLock::new(Default::default);

/// Each owned actor's process address and sink.
type Owned = HashMap<ActorId, (Arc<str>, Sink)>;

/// Routes failures of the actor `actor`, living in the process at `addr`, to
/// `sink`; also when that process is lost.
pub(crate) fn watch(actor: ActorId, addr: &str, sink: Sink) {
    lock(&OWNED).insert(actor, (addr.into(), sink));
}

/// Stops routing failures of `actor` (it is being stopped on purpose).
pub(crate) fn forget(actor: &ActorId) {
    lock(&OWNED).remove(actor);
}

/// Stops routing failures of every actor in the process at `addr` (it is
/// being stopped on purpose).
pub(crate) fn forget_process(addr: &str) {
    lock(&OWNED).retain(|_, (at, _)| &**at != addr);
}

/// The process at `addr` was lost for `reason`: each actor owned there is a
/// supervision event for its owner.
pub(crate) fn process_lost(addr: &str, reason: &str) {
    let lost: Vec<(ActorId, Sink)> = {
        let mut owned = lock(&OWNED);
        let ids: Vec<ActorId> = owned
            .iter()
            .filter(|(_, (at, _))| &**at == addr)
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| owned.remove(&id).map(|(_, sink)| (id, sink)))
            .collect()
    };
    for (actor, sink) in lost {
        deliver(
            &sink,
            SupervisionEvent {
                actor,
                endpoint: None,
                failure: Failure::ProcLost(reason.to_string()),
                caused_by: None,
            },
        );
    }
}

/// Hands `event` to its owner's sink. A sink that panics (a fault hook, say)
/// is reported and harms nothing else.
fn deliver(sink: &Sink, event: SupervisionEvent) {
    let shown = event.to_string();
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| sink(event))) {
        tracing::error!(
            panic = panic_message(panic.as_ref()),
            event = %shown,
            "the owner's handler of a failure panicked"
        );
    }
}

/// Receives the failures of actors this process spawned elsewhere, from
/// their processes, and hands each to its owner.
#[derive(Default)]
pub(crate) struct Supervisor;

#[monarch_derive::actor]
impl Supervisor {
    /// An actor this process owns failed with nobody there to handle it.
    #[endpoint]
    async fn report(&self, event: SupervisionEvent) {
        let sink = lock(&OWNED).remove(&event.actor).map(|(_, sink)| sink);
        match sink {
            Some(sink) => deliver(&sink, event),
            None => tracing::error!(%event, "a failure of an actor nobody here owns"),
        }
    }
}
