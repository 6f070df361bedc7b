//! Process-wide tables that let serialised references and ports resolve again
//! in the process that made them.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

use tokio::sync::mpsc;

use crate::actor::Actor;
use crate::reference::RefCore;
use crate::ActorId;

type Table<K> = LazyLock<Mutex<HashMap<K, Box<dyn Any + Send + Sync>>>>;

static ACTORS: Table<ActorId> = LazyLock::new(Default::default);
static PORTS: LazyLock<Mutex<HashMap<u64, PortEntry>>> = LazyLock::new(Default::default);
static NEXT_PORT: AtomicU64 = AtomicU64::new(1);

fn lock<K>(
    table: &'static Table<K>,
) -> std::sync::MutexGuard<'static, HashMap<K, Box<dyn Any + Send + Sync>>> {
    table
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn register_actor<A: Actor>(core: &RefCore<A>) {
    lock(&ACTORS).insert(core.actor_id().clone(), Box::new(core.clone()));
}

pub(crate) fn unregister_actor(id: &ActorId) {
    lock(&ACTORS).remove(id);
}

pub(crate) fn lookup_actor<A: Actor>(id: &ActorId) -> Option<RefCore<A>> {
    lock(&ACTORS)
        .get(id)
        .and_then(|entry| entry.downcast_ref::<RefCore<A>>())
        .cloned()
}

struct PortEntry {
    sender: Box<dyn Any + Send + Sync>,
    alive: Box<dyn Fn() -> bool + Send + Sync>,
}

/// Registers a weak sender, so the registry never keeps a stream open.
pub(crate) fn register_port<T: Send + 'static>(sender: mpsc::WeakUnboundedSender<T>) -> u64 {
    let id = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
    let probe = sender.clone();
    let entry = PortEntry {
        sender: Box::new(sender),
        alive: Box::new(move || probe.strong_count() > 0),
    };
    let mut ports = PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Forget ports whose every sender is gone, so the table stays small.
    ports.retain(|_, entry| (entry.alive)());
    ports.insert(id, entry);
    id
}

pub(crate) fn lookup_port<T: Send + 'static>(id: u64) -> Option<mpsc::UnboundedSender<T>> {
    PORTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&id)
        .and_then(|entry| entry.sender.downcast_ref::<mpsc::WeakUnboundedSender<T>>())
        .and_then(mpsc::WeakUnboundedSender::upgrade)
}
