//! Process-wide tables: the actors other processes may address (so serialised
//! references resolve again, and messages from other processes find their
//! mailbox), why recently stopped ones stopped, and the ports whose values may
//! arrive from elsewhere.
//!
//! An actor enters the table only when its address may leave the process: a
//! reference to it is serialised, it was spawned at another process's request,
//! or it is a per-process service. Actors used only in their own process cost
//! no entry.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::actor::{Actor, Undeliverable};
use super::mailbox::{ReturnAddress, Signal, StopKind};
use super::reference::{RefCore, Shared};
use super::remote::{fail, ReplySink};
use super::service;
use crate::wire::codec::decode;
use crate::wire::{Payload, RemoteError};
use crate::{ActorId, CallError, CastPoint};

/// A local actor, whatever its type.
trait ErasedActor: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn deliver(
        &self,
        endpoint: &str,
        payload: Payload,
        reply: Option<ReplySink>,
        sender: Option<ReturnAddress>,
        cast: Option<CastPoint>,
    );
    fn stop(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    fn is_running(&self) -> bool;
}

impl<A: Actor> ErasedActor for RefCore<A> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn deliver(
        &self,
        endpoint: &str,
        payload: Payload,
        mut reply: Option<ReplySink>,
        sender: Option<ReturnAddress>,
        cast: Option<CastPoint>,
    ) {
        match A::from_wire(endpoint, payload, &mut reply) {
            Ok(message) => {
                let refused = self.push_local_at(message, sender, cast);
                if let Some((message, sender)) = refused.err().and_then(Signal::into_message) {
                    let endpoint = A::endpoint_name(&message);
                    let actor = self.actor_id().clone();
                    let reason = self.shared.stopped_because();
                    let error = CallError::Undeliverable {
                        actor: actor.clone(),
                        endpoint,
                        reason: reason.clone(),
                    };
                    if let (false, Some(sender)) = (A::reject(message, error), sender) {
                        sender.report(Undeliverable::new(actor, endpoint, reason));
                    }
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

/// How many stopped actors' reasons are remembered, for messages that arrive
/// after them.
const TOMBSTONES: usize = 4096;

/// Why recently stopped registered actors stopped, oldest first.
static GONE: LazyLock<Mutex<Tombstones>> = LazyLock::new(Default::default);

#[derive(Default)]
struct Tombstones {
    reasons: HashMap<ActorId, String>,
    order: VecDeque<ActorId>,
}

fn lock<T>(m: &'static LazyLock<Mutex<T>>) -> std::sync::MutexGuard<'static, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Makes `core`'s actor addressable from other processes, unless it has
/// stopped. Idempotent.
pub(crate) fn register_actor<A: Actor>(core: &RefCore<A>) {
    if core.shared.is_registered() {
        return;
    }
    let mut actors = lock(&ACTORS);
    // Marked before the stop flag is read, as the stopping actor sets its flag
    // before it reads this mark: either it sees the mark and removes the
    // entry (waiting for this lock), or this sees it stopped and adds none.
    if core.shared.set_registered() && !core.shared.stopped.load(Ordering::SeqCst) {
        actors.insert(core.actor_id().clone(), Arc::new(core.clone()));
    }
}

/// An actor stopped (its stop flag is set): it is no longer addressable, and
/// messages that arrive for it are told why.
pub(crate) fn unregister_actor(shared: &Shared) {
    if !shared.is_registered() {
        return;
    }
    let why = shared.why();
    let id = &shared.id;
    let removed = lock(&ACTORS).remove(id).is_some();
    if removed {
        let mut gone = lock(&GONE);
        if gone.order.len() == TOMBSTONES {
            if let Some(oldest) = gone.order.pop_front() {
                gone.reasons.remove(&oldest);
            }
        }
        gone.order.push_back(id.clone());
        gone.reasons.insert(id.clone(), why);
    }
}

/// Why the actor `id` cannot be reached here.
pub(crate) fn why_gone(id: &ActorId) -> String {
    match lock(&GONE).reasons.get(id) {
        Some(why) => format!("the actor has stopped: {why}"),
        None => {
            format!("no actor {id} in its process (it stopped long ago, or never existed there)")
        }
    }
}

pub(crate) fn lookup_actor<A: Actor>(id: &ActorId) -> Option<RefCore<A>> {
    lock(&ACTORS)
        .get(id)
        .and_then(|entry| entry.as_any().downcast_ref::<RefCore<A>>())
        .cloned()
}

/// The local actor `id`, starting it if it is a service that is not running.
fn erased(id: &ActorId) -> Option<Arc<dyn ErasedActor>> {
    let found = lock(&ACTORS).get(id).cloned();
    if found.is_some() || !service::start_on_demand(id) {
        return found;
    }
    let started = lock(&ACTORS).get(id).cloned();
    started
}

/// Delivers an encoded message from another process to a local actor. A tell
/// to an actor that is not here is reported to its sender, if it has one.
pub(crate) fn deliver(
    to: &ActorId,
    endpoint: &str,
    payload: Payload,
    reply: Option<ReplySink>,
    sender: Option<ReturnAddress>,
    cast: Option<CastPoint>,
) {
    match erased(to) {
        Some(actor) => actor.deliver(endpoint, payload, reply, sender, cast),
        None => {
            let reason = why_gone(to);
            match (reply, sender) {
                (Some(reply), _) => reply.fail(RemoteError::Undeliverable(reason)),
                (None, Some(sender)) => {
                    sender.report(Undeliverable::new(to.clone(), endpoint, reason))
                }
                (None, None) => {
                    tracing::debug!(actor = %to, endpoint, "a tell to an actor not here was dropped")
                }
            }
        }
    }
}

/// Stops a local actor and waits until it has stopped.
pub(crate) async fn stop(id: &ActorId) {
    let found = lock(&ACTORS).get(id).cloned();
    if let Some(actor) = found {
        actor.stop().await;
    }
}

/// Whether `id` is a running local actor.
pub(crate) fn is_running(id: &ActorId) -> bool {
    lock(&ACTORS).get(id).is_some_and(|a| a.is_running())
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
