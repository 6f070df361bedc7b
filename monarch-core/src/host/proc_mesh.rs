//! Proc meshes: worker processes started from this one, one per point of a
//! shape, and the actor meshes spawned on them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Notify};

use super::agent::ProcAgent;
use super::launch::OutputLabel;
use super::supervise::{self, Sink};
use super::{exit, lock};
use crate::mesh::{ActorMesh, RemoteActor};
use crate::runtime::context::{Child as OwnedChild, OwnerId, Placement};
use crate::runtime::mailbox::{Signal, StopKind};
use crate::runtime::reference::RefCore;
use crate::runtime::remote::{encoding_for, Audience};
use crate::runtime::spawn::type_key;
use crate::shape::SliceArg;
use crate::transport::{CloseReason, Link, ProcRef, TransportError};
use crate::wire::codec::encode;
use crate::{
    Actor, ActorId, ActorRef, CallError, Context, Proc, ProcId, RemoteError, Shape, ShapeError,
};

/// A mesh of worker processes, one per point of its shape, or a slice of one.
/// Cheap to clone; the workers exit when they are stopped, or when the last
/// clone or slice of their mesh is dropped.
#[derive(Clone)]
pub struct ProcMesh {
    inner: Arc<ProcMeshInner>,
    /// The procs of `inner` this mesh stands for: all of them, or a slice.
    view: Shape,
}

struct ProcMeshInner {
    name: String,
    /// The whole mesh's shape.
    shape: Shape,
    workers: Vec<Worker>,
    owner: Proc,
    label: Arc<OutputLabel>,
    stop_timeout: Duration,
    spawn_timeout: Duration,
}

/// One worker process, as [`super::launch`] started it.
pub(super) struct Worker {
    pub(super) proc: ProcRef,
    pub(super) link: Arc<Link>,
    /// Dropping it tells the worker to exit.
    pub(super) release: Mutex<Option<Release>>,
    /// Set when the mesh is stopped or dropped: its end is no failure.
    pub(super) stopping: Arc<AtomicBool>,
    /// How the process ended, once it has.
    pub(super) exit: watch::Receiver<Option<String>>,
    /// Kills the process.
    pub(super) kill: Arc<Notify>,
}

/// Tells a worker to exit when dropped: closes the stdin of a process this
/// one started, or asks the host agent that started it to.
pub(super) struct Release(Option<Box<dyn FnOnce() + Send>>);

impl Release {
    pub(super) fn new(release: impl FnOnce() + Send + 'static) -> Self {
        Release(Some(Box::new(release)))
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            release();
        }
    }
}

/// The workers of a new proc mesh, all connected.
pub(super) struct Launched {
    pub(super) name: String,
    pub(super) shape: Shape,
    pub(super) workers: Vec<Worker>,
    pub(super) owner: Proc,
    pub(super) label: Arc<OutputLabel>,
    pub(super) stop_timeout: Duration,
    pub(super) spawn_timeout: Duration,
}

/// The proc meshes this process started that are still alive, for
/// [`shutdown`](super::shutdown).
static LIVE: LazyLock<Mutex<Vec<Weak<ProcMeshInner>>>> = LazyLock::new(Default::default);

/// Starting or using a proc mesh failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcMeshError {
    /// The transport could not start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// This program's path is unknown, so it cannot be re-executed.
    #[error("cannot find this program to start workers: {0}")]
    Exe(std::io::Error),
    /// A worker process could not be started.
    #[error("cannot start worker {rank} ({program}): {source}")]
    Launch {
        /// The worker's rank.
        rank: usize,
        /// The program run.
        program: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A worker started but did not become ready.
    #[error("worker {rank} failed to start: {reason}")]
    Startup {
        /// The worker's rank.
        rank: usize,
        /// What went wrong.
        reason: String,
    },
    /// A host agent refused to start the workers, or could not be asked.
    #[error("host {host} did not start its workers: {reason}")]
    Host {
        /// The host: its name and its agent's address.
        host: String,
        /// Why.
        reason: String,
    },
    /// Spawning the actor mesh failed on some of its procs (the members that
    /// did start are stopped).
    #[error(
        "spawning {name} failed on {} of its {procs} procs: {}",
        failures.len(),
        failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Spawn {
        /// The actor mesh's name.
        name: String,
        /// How many procs it was spawned on.
        procs: usize,
        /// Every rank it failed on, in rank order.
        failures: Vec<RankFailure>,
    },
    /// This process was started as a worker but its `main` did not call
    /// `bootstrap()` first, so it would start workers of its own.
    #[error(
        "this process was started as a worker but did not call monarch::bootstrap() \
         (or use #[monarch::main]) first thing in main; refusing to start workers of workers"
    )]
    NotBootstrapped,
    /// The spawn parameters could not be encoded.
    #[error("the parameters for {name} could not be encoded: {error}")]
    Params {
        /// The actor mesh's name.
        name: String,
        /// Why.
        error: RemoteError,
    },
}

/// Why one rank of a mesh could not be spawned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rank {rank} ({proc}): {error}")]
pub struct RankFailure {
    /// The rank.
    pub rank: usize,
    /// Its proc.
    pub proc: ProcId,
    /// What went wrong there.
    pub error: String,
}

impl ProcMesh {
    pub(super) fn new(launched: Launched) -> ProcMesh {
        let inner = Arc::new(ProcMeshInner {
            name: launched.name,
            shape: launched.shape.clone(),
            workers: launched.workers,
            owner: launched.owner,
            label: launched.label,
            stop_timeout: launched.stop_timeout,
            spawn_timeout: launched.spawn_timeout,
        });
        let mut live = lock(&LIVE);
        live.retain(|mesh| mesh.strong_count() > 0);
        live.push(Arc::downgrade(&inner));
        ProcMesh {
            inner,
            view: launched.shape,
        }
    }

    /// The mesh's name, which its procs' ids carry as their job.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The mesh's shape (a slice's own, for a slice).
    pub fn shape(&self) -> &Shape {
        &self.view
    }

    /// The procs along `dim` as `at` selects (an index drops the dimension, a
    /// range keeps it): a proc mesh of its own to spawn actor meshes on, whose
    /// ranks are its own. The procs stay up while any slice or clone of their
    /// mesh is alive.
    pub fn slice(&self, dim: &str, at: impl SliceArg) -> Result<ProcMesh, ShapeError> {
        Ok(ProcMesh {
            inner: Arc::clone(&self.inner),
            view: self.view.slice(dim, at)?,
        })
    }

    /// The procs' ids, in rank order.
    pub fn proc_ids(&self) -> impl Iterator<Item = &ProcId> {
        self.workers().map(|w| w.proc.id())
    }

    /// The procs, in rank order: references that travel, for reaching their
    /// services and opening bulk streams to them.
    pub fn procs(&self) -> impl Iterator<Item = &ProcRef> {
        self.workers().map(|w| &w.proc)
    }

    /// The address the proc at `rank` listens on: `ip:port/incarnation`, where
    /// the incarnation tells this process apart from later ones on the same port.
    pub fn addr(&self, rank: usize) -> Option<&str> {
        let base = self.view.base_rank(rank).ok()?;
        self.inner.workers.get(base).map(|w| w.proc.addr())
    }

    /// Spawns one `A` named `name` on every proc, with the same parameters, and
    /// returns them as a mesh of this mesh's shape. Failures nobody handles
    /// (including the loss of a proc) go to the host's owner proc.
    pub async fn spawn<A>(
        &self,
        name: &str,
        params: A::Params,
    ) -> Result<ActorMesh<A>, ProcMeshError>
    where
        A: RemoteActor,
        A::Params: Serialize,
    {
        let owner = self.inner.owner.clone();
        let owner_id = OwnerId::Proc(owner.proc_id().clone());
        let sink: Sink = Arc::new(move |event| owner.fault(&event));
        self.spawn_with_sink::<A>(name, &params, owner_id, sink)
            .await
    }

    /// Spawns like [`ProcMesh::spawn`], owned by the actor `ctx` belongs to:
    /// failures come to its `handle_supervision_event`, and the mesh is
    /// stopped when that actor stops.
    pub async fn spawn_owned<A, O>(
        &self,
        ctx: &Context<O>,
        name: &str,
        params: A::Params,
    ) -> Result<ActorMesh<A>, ProcMeshError>
    where
        A: RemoteActor,
        A::Params: Serialize,
        O: Actor,
    {
        let mailbox = ctx.core.mailbox.clone();
        let sink: Sink = Arc::new(move |event| {
            let _ = mailbox.send_urgent(Signal::Supervision(Box::new(event)));
        });
        let owner_id = OwnerId::Actor(ctx.actor_id().clone());
        let mesh = self
            .spawn_with_sink::<A>(name, &params, owner_id, sink)
            .await?;
        ctx.own(Box::new(OwnedMesh(mesh.clone())));
        Ok(mesh)
    }

    async fn spawn_with_sink<A>(
        &self,
        name: &str,
        params: &A::Params,
        owner: OwnerId,
        sink: Sink,
    ) -> Result<ActorMesh<A>, ProcMeshError>
    where
        A: RemoteActor,
        A::Params: Serialize,
    {
        let workers: Vec<&Worker> = self.workers().collect();
        // The members' mesh is the slice, ranked afresh.
        let shape = self.view.compact();
        // Refs and ports in the parameters are held by every worker.
        let audience = Audience {
            local: workers
                .first()
                .map(|w| w.link.local_addr_arc())
                .unwrap_or_else(|| "".into()),
            holders: workers.iter().map(|w| w.proc.addr().into()).collect(),
        };
        let params =
            encoding_for(&audience, || encode(params)).map_err(|error| ProcMeshError::Params {
                name: name.to_string(),
                error,
            })?;
        let timeout = self.inner.spawn_timeout;
        let requests = workers.iter().enumerate().map(|(rank, worker)| {
            let params = params.clone();
            let placement = Placement {
                rank,
                shape: shape.clone(),
                owner: owner.clone(),
            };
            async move {
                let agent = worker
                    .proc
                    .service::<ProcAgent>()
                    .map_err(|e| e.to_string())?;
                agent
                    .spawn_actor(
                        type_key::<A>().to_string(),
                        name.to_string(),
                        placement,
                        params,
                    )
                    .timeout(timeout)
                    .call()
                    .await
                    .map_err(|error| match error {
                        CallError::Timeout { .. } => format!(
                            "it was not running within {timeout:?} (its init has not returned; \
                             see Config::spawn_timeout)"
                        ),
                        error => error.to_string(),
                    })?
            }
        });
        let ids = futures::future::join_all(requests).await;
        let mut members = Vec::with_capacity(ids.len());
        let mut failures = Vec::new();
        for (rank, (worker, id)) in workers.iter().zip(ids).enumerate() {
            match id {
                Ok(id) => {
                    supervise::watch(id.clone(), worker.proc.addr(), Arc::clone(&sink));
                    // The spawner's references are the owner's.
                    members.push(ActorRef::from_core(
                        RefCore::<A>::resolve(id, Some(worker.proc.addr())).owned(),
                    ));
                }
                Err(error) => failures.push(RankFailure {
                    rank,
                    proc: worker.proc.id().clone(),
                    error,
                }),
            }
        }
        if !failures.is_empty() {
            for member in &members {
                supervise::forget(member.actor_id());
                let _ = member.stop().await;
            }
            return Err(ProcMeshError::Spawn {
                name: name.to_string(),
                procs: workers.len(),
                failures,
            });
        }
        self.inner.label.add_mesh(name);
        Ok(ActorMesh::new(shape, members).expect("one member per point"))
    }

    /// Stops every proc of this mesh (of this slice, for a slice): each stops
    /// its actors (after what was already sent to them), then its process
    /// exits. Waits until all have exited, for at most
    /// [`Config::stop_timeout`](crate::Config::stop_timeout) to drain and as
    /// long again to exit, killing what has not. Calls to its actors fail
    /// from then on, saying the proc was stopped.
    pub async fn stop(&self) {
        let timeout = self.inner.stop_timeout;
        let stops = self.workers().map(|worker| async move {
            worker.stopping.store(true, Ordering::Release);
            supervise::forget_process(worker.proc.addr());
            if let Ok(agent) = worker.proc.service::<ProcAgent>() {
                let drained = tokio::time::timeout(timeout, agent.stop_proc().call()).await;
                if drained.is_err() {
                    tracing::warn!(proc = %worker.proc, "the proc did not drain in {timeout:?}; killing it");
                    worker.kill.notify_one();
                }
            }
            drop(lock(&worker.release).take());
            let mut exit = worker.exit.clone();
            if tokio::time::timeout(timeout, exit.wait_for(Option::is_some))
                .await
                .is_err()
            {
                worker.kill.notify_one();
                let _ = exit.wait_for(Option::is_some).await;
            }
            if let Some(router) = crate::transport::current() {
                router.close_link(worker.proc.addr(), CloseReason::Local(exit::STOPPED.into()));
            }
        });
        futures::future::join_all(stops).await;
    }
}

impl ProcMesh {
    /// The workers of this mesh's view, in its rank order.
    fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.view.base_ranks().map(|base| &self.inner.workers[base])
    }
}

/// Every proc mesh this process started that is still alive, whole.
pub(super) fn live_meshes() -> Vec<ProcMesh> {
    lock(&LIVE)
        .iter()
        .filter_map(Weak::upgrade)
        .map(|inner| ProcMesh {
            view: inner.shape.clone(),
            inner,
        })
        .collect()
}

impl Drop for ProcMeshInner {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.stopping.store(true, Ordering::Release);
            supervise::forget_process(worker.proc.addr());
            drop(lock(&worker.release).take());
        }
    }
}

impl std::fmt::Debug for ProcMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcMesh({} {})", self.inner.name, self.view)
    }
}

/// An actor mesh owned by an actor: stopped when it stops.
struct OwnedMesh<A: RemoteActor>(ActorMesh<A>);

impl<A: RemoteActor> OwnedChild for OwnedMesh<A> {
    fn is(&self, _: &ActorId) -> bool {
        // A member's end does not end the mesh: the rest stop with the owner.
        false
    }

    fn ids(&self) -> Vec<ActorId> {
        self.0
            .members()
            .map(|(_, m)| m.actor_id().clone())
            .collect()
    }

    fn request_stop(&self, _: StopKind) {
        let mesh = self.0.clone();
        tokio::spawn(async move {
            let _ = mesh.stop().await;
        });
    }

    fn stopped(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            for (_, member) in self.0.members() {
                supervise::forget(member.actor_id());
            }
            let _ = self.0.stop().await;
        })
    }
}
