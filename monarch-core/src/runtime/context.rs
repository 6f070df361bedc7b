//! What an actor reaches from inside its endpoints and hooks.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::actor::Actor;
use super::mailbox::{Signal, StopKind};
use super::proc::{spawn_actor, Owner, Proc};
use super::reference::{ActorRef, RefCore};
use crate::{ActorId, CastPoint, Point, ProcId, Shape, SpawnError};

/// An actor's view of itself and the runtime: its own reference, name, place
/// in its mesh and owner, the process it lives in, the actors it owns, and
/// the tasks it runs beside itself.
pub struct Context<A: Actor> {
    pub(crate) self_ref: ActorRef<A>,
    pub(crate) core: RefCore<A>,
    pub(crate) proc: Proc,
    pub(crate) placement: Placement,
    pub(crate) children: Mutex<Vec<Box<dyn Child>>>,
    /// The tasks run beside the actor; none made before the first.
    pub(crate) tasks: Mutex<Option<tokio::task::JoinSet<()>>>,
    /// Where the message being handled was addressed, when it came through
    /// a mesh.
    pub(crate) cast: Mutex<Option<CastPoint>>,
}

/// Who spawned an actor, and so owns it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OwnerId {
    /// A proc: the actor was spawned from outside any actor (for a mesh, by
    /// the proc that started its proc mesh).
    Proc(ProcId),
    /// An actor, which hears of this one's failures.
    Actor(ActorId),
}

impl std::fmt::Display for OwnerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OwnerId::Proc(id) => write!(f, "proc {id}"),
            OwnerId::Actor(id) => write!(f, "actor {id}"),
        }
    }
}

/// Where an actor stands: its rank in the shape of its mesh, and its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Placement {
    pub(crate) rank: usize,
    pub(crate) shape: Shape,
    pub(crate) owner: OwnerId,
}

impl Placement {
    /// An actor spawned alone by `owner`: rank 0 of a shape of one point.
    pub(crate) fn alone(owner: OwnerId) -> Self {
        Placement {
            rank: 0,
            shape: Shape::new::<&str>(&[]).expect("an empty shape is valid"),
            owner,
        }
    }
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
        self.placement.rank
    }

    /// The shape of this actor's mesh (a shape with no dimensions, of one
    /// point, for an actor spawned alone).
    pub fn shape(&self) -> &Shape {
        &self.placement.shape
    }

    /// This actor's point in its mesh.
    pub fn point(&self) -> Point {
        self.placement
            .shape
            .point(self.placement.rank)
            .expect("an actor's rank is in its mesh's shape")
    }

    /// Where the message being handled was addressed, when it came through
    /// a mesh (a call, cast or choice on an [`crate::ActorMesh`] or a slice of
    /// it): this actor's rank and point in the slice that was called. `None`
    /// for a message sent to this actor's own reference, and outside
    /// endpoints.
    pub fn cast_point(&self) -> Option<CastPoint> {
        self.cast
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Who spawned this actor, and so owns it.
    pub fn owner(&self) -> &OwnerId {
        &self.placement.owner
    }

    /// Runs `task` beside this actor: it may answer later through a
    /// [`crate::ReplyPort`] it took along, while the actor handles other
    /// messages. Tasks still running when the actor stops are cancelled, after
    /// its `on_stop`, and the stop completes once they are gone.
    pub fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(tokio::task::JoinSet::new)
            .spawn(task);
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
            notify: Arc::new(move |signal| {
                // What an owner hears of its children is urgent: it overtakes
                // the owner's backlog of messages.
                let _ = parent.send_urgent(signal.widen());
            }),
        };
        let placement = Placement::alone(OwnerId::Actor(self.actor_id().clone()));
        let child = spawn_actor::<C>(&self.proc, owner, name, params, placement).await?;
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
