//! What an actor reaches from inside its endpoints and hooks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use super::actor::Actor;
use super::mailbox::{Signal, StopKind};
use super::proc::{spawn_actor, Owner, Proc};
use super::reference::{ActorRef, RefCore};
use crate::{ActorId, SpawnError};

/// An actor's view of itself and the runtime: its own reference, name and rank,
/// the process it lives in, and the actors it owns.
pub struct Context<A: Actor> {
    pub(crate) self_ref: ActorRef<A>,
    pub(crate) core: RefCore<A>,
    pub(crate) proc: Proc,
    pub(crate) rank: usize,
    pub(crate) children: Mutex<Vec<Box<dyn Child>>>,
}

impl<A: Actor> Context<A> {
    /// A reference to this actor, to hand to others.
    pub fn actor_ref(&self) -> &ActorRef<A> {
        &self.self_ref
    }

    /// This actor's id.
    pub fn actor_id(&self) -> &ActorId {
        self.core.actor_id()
    }

    /// The name this actor was spawned with.
    pub fn name(&self) -> &str {
        self.actor_id().name()
    }

    /// This actor's rank in its mesh (0 for an actor spawned alone).
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The process this actor lives in.
    pub fn proc(&self) -> &Proc {
        &self.proc
    }

    /// Spawns an actor owned by this one: its failures come to this actor's
    /// `handle_supervision_event`, and it is stopped before this actor stops.
    pub async fn spawn<C: Actor>(
        &self,
        name: &str,
        params: C::Params,
    ) -> Result<ActorRef<C>, SpawnError> {
        let parent = self.core.mailbox.clone();
        let owner = Owner::Actor {
            id: self.actor_id().clone(),
            notify: std::sync::Arc::new(move |signal| {
                let _ = parent.send(signal.widen());
            }),
        };
        let child = spawn_actor::<C>(&self.proc, owner, name, params, 0).await?;
        self.lock_children().push(Box::new(child.clone()));
        Ok(child)
    }

    /// The ids of the actors this one owns and that have not stopped (the
    /// members of the meshes it owns among them).
    pub fn children(&self) -> Vec<ActorId> {
        self.lock_children().iter().flat_map(|c| c.ids()).collect()
    }

    /// Makes `child` (an actor or a mesh) owned by this actor: stopped before
    /// this actor stops.
    pub(crate) fn own(&self, child: Box<dyn Child>) {
        self.lock_children().push(child);
    }

    /// Asks this actor to stop once the messages already queued are handled.
    pub fn stop(&self) {
        let _ = self.core.mailbox.send(Signal::Stop(StopKind::Requested));
    }

    pub(crate) fn lock_children(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn Child>>> {
        self.children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn forget_child(&self, id: &ActorId) {
        self.lock_children().retain(|c| !c.is(id));
    }
}

/// What an actor owns and stops before it stops: an actor, whatever its type,
/// or a mesh of them.
pub(crate) trait Child: Send + Sync {
    /// Whether this is the actor `id`, whose end takes it off the owner's list.
    fn is(&self, id: &ActorId) -> bool;
    /// The actors it stands for.
    fn ids(&self) -> Vec<ActorId>;
    /// Asks it to stop.
    fn request_stop(&self, kind: StopKind);
    /// Completes once it has stopped.
    fn stopped(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

impl<A: Actor> Child for ActorRef<A> {
    fn is(&self, id: &ActorId) -> bool {
        self.actor_id() == id
    }

    fn ids(&self) -> Vec<ActorId> {
        vec![self.actor_id().clone()]
    }

    fn request_stop(&self, kind: StopKind) {
        let _ = self.core().mailbox.send(Signal::Stop(kind));
    }

    fn stopped(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.wait_stopped())
    }
}
