//! A reference to a proc of the job: what other crates build on to reach a
//! process without going through one of its actors.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::bulk::{BulkError, BulkStream};
use crate::runtime::actor::Actor;
use crate::runtime::reference::{ActorRef, RefCore};
use crate::runtime::remote::network;
use crate::runtime::service::service_id;
use crate::{this_proc, ProcId, RemoteError};

/// Where a proc runs, seen from this process: what decides how memory can
/// move between the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Locality {
    /// This process.
    SameProcess,
    /// Another process on this host: shared memory reaches it.
    SameHost,
    /// A process on another host.
    OtherHost,
}

/// A proc of the job: its id and the address of its process. Plain data
/// that travels in messages; any process of the job that holds one can ask
/// its [`locality`](ProcRef::locality), address its per-process
/// [services](ProcRef::service), and open [bulk streams](ProcRef::open_bulk)
/// to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcRef {
    id: ProcId,
    addr: Arc<str>,
}

impl ProcRef {
    /// The proc with id `id` whose process listens at `addr`.
    pub fn new(id: ProcId, addr: &str) -> Self {
        ProcRef {
            id,
            addr: addr.into(),
        }
    }

    /// This process's own proc, once its transport runs (it has started a
    /// proc mesh, or is a worker).
    pub fn here() -> Option<ProcRef> {
        let network = network()?;
        Some(ProcRef::new(
            this_proc().proc_id().clone(),
            network.local_addr(),
        ))
    }

    /// The proc `actor` lives in: its own process's if it is local (and the
    /// transport runs).
    pub fn of<A: Actor>(actor: &ActorRef<A>) -> Option<ProcRef> {
        match actor.core().outbound() {
            Some(outbound) => Some(ProcRef::new(
                actor.actor_id().proc_id().clone(),
                outbound.peer(),
            )),
            None => ProcRef::here(),
        }
    }

    /// The proc's id.
    pub fn id(&self) -> &ProcId {
        &self.id
    }

    /// The address its process listens at.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Where the proc runs, seen from here.
    pub fn locality(&self) -> Locality {
        match network() {
            Some(network) if network.local_addr() == &*self.addr => Locality::SameProcess,
            None if self.id == *this_proc().proc_id() => Locality::SameProcess,
            _ if self.id.host() == this_proc().proc_id().host() => Locality::SameHost,
            _ => Locality::OtherHost,
        }
    }

    /// The proc's service of type `A` (started there on the first message;
    /// see [`crate::Proc::service`]).
    pub fn service<A: Actor>(&self) -> Result<ActorRef<A>, RemoteError> {
        if self.locality() == Locality::SameProcess {
            return this_proc().service::<A>();
        }
        let network = network().ok_or_else(|| {
            RemoteError::Unreachable("this process has no transport running".into())
        })?;
        let id = service_id::<A>(&self.id);
        Ok(ActorRef::from_core(RefCore::remote(
            id,
            network.outbound(&self.addr),
        )))
    }

    /// Opens a bulk stream for `protocol` to the proc's process, whose
    /// service must [`listen`](super::bulk::listen) for it.
    pub async fn open_bulk(&self, protocol: &str) -> Result<BulkStream, BulkError> {
        let router = super::current().ok_or(BulkError::NoTransport)?;
        router.open_bulk(&self.addr, protocol).await
    }
}

impl std::fmt::Display for ProcRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.id, self.addr)
    }
}
