//! Per-process services: one actor of a type in each process, started by the
//! first message addressed to it, as Monarch runs its RDMA manager on every
//! proc.
//!
//! A service is any `#[actor]` whose parameters have a default (an actor
//! without `#[init]` takes `()`). Its id is fixed by its type and its process
//! ([`service_id`]), so any process of the job can address it without asking
//! first: [`Proc::service`] here, a `ProcRef`'s `service` elsewhere. A
//! service that stops (or fails) is started afresh by the next message.

use std::sync::Mutex;

use super::actor::Actor;
use super::context::{OwnerId, Placement};
use super::proc::{start_actor, this_proc, Owner, Proc};
use super::reference::ActorRef;
use super::registry;
use super::spawn;
use crate::wire::RemoteError;
use crate::{ActorId, ProcId};

/// The index every service's id carries.
const SERVICE_INDEX: u64 = u64::MAX;

/// What every service's name starts with.
const PREFIX: &str = "service:";

/// The id of the service of type `A` in the process whose own proc is `proc`.
pub(crate) fn service_id<A: Actor>(proc: &ProcId) -> ActorId {
    ActorId::new(
        proc.clone(),
        &format!("{PREFIX}{}", spawn::type_key::<A>()),
        SERVICE_INDEX,
    )
}

/// Serialises the starting of services, so that two messages arriving at once
/// start one.
static STARTING: Mutex<()> = Mutex::new(());

impl Proc {
    /// This process's service of type `A`, started (with `A`'s default
    /// parameters) if it is not running. Only this process's own proc
    /// ([`this_proc`]) runs services.
    pub fn service<A: Actor>(&self) -> Result<ActorRef<A>, RemoteError> {
        let id = service_id::<A>(self.proc_id());
        if let Some(core) = registry::lookup_actor::<A>(&id) {
            return Ok(ActorRef::from_core(core));
        }
        if self.proc_id() != this_proc().proc_id() {
            return Err(RemoteError::Failed(format!(
                "services run on the process's own proc ({}), not on {}",
                this_proc().proc_id(),
                self.proc_id()
            )));
        }
        start::<A>(&id)?;
        registry::lookup_actor::<A>(&id)
            .map(ActorRef::from_core)
            .ok_or_else(|| RemoteError::Undeliverable(registry::why_gone(&id)))
    }
}

/// Starts the service `id` names, if it is one for this process and of a
/// type this binary has; whether it is running now.
pub(crate) fn start_on_demand(id: &ActorId) -> bool {
    let Some(type_key) = service_type(id) else {
        return false;
    };
    if id.proc_id() != this_proc().proc_id() {
        return false;
    }
    match spawn::service_starter(type_key) {
        Some(start) => match start(id) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(service = type_key, %error, "cannot start a service");
                false
            }
        },
        None => false,
    }
}

/// The type of the service `id` names, if it names one.
fn service_type(id: &ActorId) -> Option<&str> {
    (id.index() == SERVICE_INDEX)
        .then(|| id.name().strip_prefix(PREFIX))
        .flatten()
}

/// Starts service `A` as `id` on this process's proc unless it is running.
pub(crate) fn start<A: Actor>(id: &ActorId) -> Result<(), RemoteError> {
    let _starting = STARTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if registry::is_running(id) {
        return Ok(());
    }
    let params = A::default_params().ok_or_else(|| {
        RemoteError::Failed(format!(
            "{} cannot run as a service: its parameters have no default",
            spawn::type_key::<A>()
        ))
    })?;
    let proc = this_proc();
    let started = start_actor::<A>(
        proc,
        Owner::Proc(proc.clone()),
        id.clone(),
        params,
        Placement::alone(OwnerId::Proc(proc.proc_id().clone())),
    );
    registry::register_actor(started.actor.core());
    Ok(())
}
