//! Process-wide tables: the actors living in this process (so serialised
//! references resolve again, and messages from other processes find their
//! mailbox) and the ports whose values may arrive from elsewhere.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::actor::Actor;
use crate::mailbox::{Signal, StopKind};
use crate::net::fail;
use crate::reference::RefCore;
use crate::remote::{decode, Payload, RemoteError, ReplySink};
use crate::ActorId;

/// A local actor, whatever its type.
trait ErasedActor: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn deliver(&self, endpoint: &str, payload: Payload, reply: Option<ReplySink>);
    fn stop(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    fn is_running(&self) -> bool;
}

impl<A: Actor> ErasedActor for RefCore<A> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn deliver(&self, endpoint: &str, payload: Payload, mut reply: Option<ReplySink>) {
        match A::from_wire(endpoint, payload, &mut reply) {
            Ok(message) => {
                if let Err(Signal::Message(message, _)) = self.push_local(message, None) {
                    let endpoint = A::endpoint_name(&message);
                    let actor = self.actor_id().clone();
                    A::reject(message, crate::CallError::Undeliverable { actor, endpoint });
                }
            }
            Err(error) => {
                tracing::warn!(actor = %self.actor_id(), endpoint, %error, "undecodable message");
                fail(reply, error);
            }
        }
    }

    fn stop(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let _ = self.mailbox.send(Signal::Stop(StopKind::Requested));
        Box::pin(self.shared.wait_stopped())
    }

    fn is_running(&self) -> bool {
        !self.shared.stopped.load(Ordering::Acquire)
    }
}

type ActorTable = LazyLock<Mutex<HashMap<ActorId, Arc<dyn ErasedActor>>>>;

static ACTORS: ActorTable = LazyLock::new(Default::default);
static PORTS: LazyLock<Mutex<HashMap<u64, PortEntry>>> = LazyLock::new(Default::default);
static NEXT_PORT: AtomicU64 = AtomicU64::new(1);

fn lock<T>(m: &'static LazyLock<Mutex<T>>) -> std::sync::MutexGuard<'static, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn register_actor<A: Actor>(core: &RefCore<A>) {
    lock(&ACTORS).insert(core.actor_id().clone(), Arc::new(core.clone()));
}

pub(crate) fn unregister_actor(id: &ActorId) {
    lock(&ACTORS).remove(id);
}

pub(crate) fn lookup_actor<A: Actor>(id: &ActorId) -> Option<RefCore<A>> {
    lock(&ACTORS)
        .get(id)
        .and_then(|entry| entry.as_any().downcast_ref::<RefCore<A>>())
        .cloned()
}

fn erased(id: &ActorId) -> Option<Arc<dyn ErasedActor>> {
    lock(&ACTORS).get(id).cloned()
}

/// Delivers an encoded message from another process to a local actor.
pub(crate) fn deliver(to: &ActorId, endpoint: &str, payload: Payload, reply: Option<ReplySink>) {
    match erased(to) {
        Some(actor) => actor.deliver(endpoint, payload, reply),
        None => fail(reply, RemoteError::Undeliverable),
    }
}

/// Stops a local actor and waits until it has stopped.
pub(crate) async fn stop(id: &ActorId) {
    if let Some(actor) = erased(id) {
        actor.stop().await;
    }
}

/// Whether `id` is a running local actor.
pub(crate) fn is_running(id: &ActorId) -> bool {
    erased(id).is_some_and(|a| a.is_running())
}

/// A port registered here. A *weak* entry (the port was serialised for no
/// process in particular) never keeps the stream open; a *lease* holds a sender
/// for each remote process holding a copy, until that process drops it or is
/// lost.
struct PortEntry {
    alive: Box<dyn Fn() -> bool + Send + Sync>,
    sender: Box<dyn Any + Send + Sync>,
    deliver: Option<Box<dyn Fn(Bytes) + Send + Sync>>,
    /// Copies held per process. A release may overtake the news of a copy
    /// passed on (they travel on different links), so counts may dip below
    /// zero for a while; the lease ends when every count is back to zero.
    holders: HashMap<String, i64>,
    strong: Option<Box<dyn Any + Send + Sync>>,
}

/// Registers a weak sender, so the registry never keeps a stream open.
pub(crate) fn register_port<T: Send + 'static>(sender: mpsc::WeakUnboundedSender<T>) -> u64 {
    let id = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
    let probe = sender.clone();
    let entry = PortEntry {
        alive: Box::new(move || probe.strong_count() > 0),
        sender: Box::new(sender),
        deliver: None,
        holders: HashMap::new(),
        strong: None,
    };
    let mut ports = lock(&PORTS);
    // Forget ports nobody can send to any more, so the table stays small.
    ports.retain(|_, entry| !entry.holders.is_empty() || (entry.alive)());
    ports.insert(id, entry);
    id
}

/// Registers a port whose copies go to other processes: values arriving for it
/// are decoded and sent on. It stays open until every holder added with
/// [`add_port_holder`] has dropped it or been lost.
pub(crate) fn lease_port<T: DeserializeOwned + Send + 'static>(
    sender: mpsc::UnboundedSender<T>,
) -> u64 {
    let id = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
    let weak = sender.downgrade();
    let probe = weak.clone();
    let target = weak.clone();
    let entry = PortEntry {
        alive: Box::new(move || probe.strong_count() > 0),
        sender: Box::new(weak),
        deliver: Some(Box::new(move |bytes: Bytes| {
            match (decode::<T>(&bytes), target.upgrade()) {
                (Ok(value), Some(sender)) => {
                    let _ = sender.send(value);
                }
                (Err(error), _) => tracing::warn!(%error, "undecodable port value"),
                (_, None) => {}
            }
        })),
        holders: HashMap::new(),
        strong: Some(Box::new(sender)),
    };
    lock(&PORTS).insert(id, entry);
    id
}

/// Counts one more copy of leased port `id` held by the process at `peer`.
pub(crate) fn add_port_holder(id: u64, peer: &str) {
    count_holder(id, peer, 1);
}

/// Drops the lease of port `id` if nobody holds it (a copy sent nowhere).
pub(crate) fn settle_port(id: u64) {
    let mut ports = lock(&PORTS);
    if let Some(entry) = ports.get_mut(&id) {
        if entry.holders.is_empty() {
            entry.strong = None;
        }
    }
}

pub(crate) fn lookup_port<T: Send + 'static>(id: u64) -> Option<mpsc::UnboundedSender<T>> {
    lock(&PORTS)
        .get(&id)
        .and_then(|entry| entry.sender.downcast_ref::<mpsc::WeakUnboundedSender<T>>())
        .and_then(mpsc::WeakUnboundedSender::upgrade)
}

/// A value for port `id` from another process.
pub(crate) fn deliver_port(id: u64, value: Bytes) {
    let ports = lock(&PORTS);
    match ports.get(&id).and_then(|e| e.deliver.as_ref()) {
        Some(deliver) => deliver(value),
        None => tracing::debug!(port = id, "value for a closed port dropped"),
    }
}

/// The process at `peer` dropped one copy of port `id`.
pub(crate) fn release_port(id: u64, peer: &str) {
    count_holder(id, peer, -1);
}

/// Adjusts `peer`'s count of copies of leased port `id`; the lease ends when
/// every count is back to zero.
fn count_holder(id: u64, peer: &str, delta: i64) {
    let mut ports = lock(&PORTS);
    if let Some(entry) = ports.get_mut(&id) {
        let count = entry.holders.entry(peer.to_string()).or_default();
        *count += delta;
        if *count == 0 {
            entry.holders.remove(peer);
        }
        if entry.holders.is_empty() {
            ports.remove(&id);
        }
    }
}

/// The process at `peer` is gone: it holds no ports any more.
pub(crate) fn release_ports_of(peer: &str) {
    lock(&PORTS).retain(|_, entry| {
        let held = entry.holders.remove(peer).is_some();
        !(held && entry.holders.is_empty())
    });
}
