//! Proc meshes: worker processes started from this one, one per point of a
//! shape, and the actor meshes spawned on them.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{watch, Notify};

use super::agent::ProcAgent;
use super::bootstrap::{worker_root, WorkerConfig, WORKER_ENV};
use super::supervise::{self, Sink};
use super::{exit, lock};
use crate::mesh::{ActorMesh, RemoteActor};
use crate::runtime::context::{Child as OwnedChild, OwnerId, Placement};
use crate::runtime::mailbox::{Signal, StopKind};
use crate::runtime::reference::RefCore;
use crate::runtime::remote::{encoding_for, Audience};
use crate::runtime::spawn::type_key;
use crate::transport::{CloseReason, Link, ProcRef, Router, TransportError};
use crate::wire::codec::encode;
use crate::{Actor, ActorId, ActorRef, Config, Context, Proc, ProcId, RemoteError, Shape};

/// A mesh of worker processes, one per point of its shape. Cheap to clone; the
/// workers exit when it is stopped, or when its last clone is dropped.
#[derive(Clone)]
pub struct ProcMesh {
    inner: Arc<ProcMeshInner>,
}

struct ProcMeshInner {
    name: String,
    shape: Shape,
    workers: Vec<Worker>,
    owner: Proc,
    label: Arc<OutputLabel>,
    stop_timeout: Duration,
}

struct Worker {
    proc: ProcRef,
    link: Arc<Link>,
    /// Dropping it tells the worker to exit.
    stdin: Mutex<Option<ChildStdin>>,
    /// Set when the mesh is stopped or dropped: its end is no failure.
    stopping: Arc<AtomicBool>,
    /// How the process ended, once it has.
    exit: watch::Receiver<Option<String>>,
    /// Kills the process.
    kill: Arc<Notify>,
}

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

/// What [`launch`] starts.
pub(super) struct Launch {
    pub(super) name: String,
    pub(super) shape: Shape,
    pub(super) ids: Vec<ProcId>,
    pub(super) owner: Proc,
    pub(super) env: Vec<(String, String)>,
    pub(super) config: Option<Config>,
    pub(super) startup_timeout: Duration,
    pub(super) stop_timeout: Duration,
}

/// Starts the workers of a proc mesh and waits until each has connected.
pub(super) async fn launch(
    router: &Arc<Router>,
    launch: Launch,
) -> Result<ProcMesh, ProcMeshError> {
    let program = std::env::current_exe().map_err(ProcMeshError::Exe)?;
    let here = ProcRef::new(crate::this_proc().proc_id().clone(), router.addr());
    let root = worker_root().unwrap_or_else(|| here.clone());
    let label = Arc::new(OutputLabel {
        procs: launch.name.clone(),
        meshes: Mutex::new(Vec::new()),
    });
    let mut started = Vec::with_capacity(launch.ids.len());
    for ((rank, point), proc_id) in launch.shape.points().enumerate().zip(&launch.ids) {
        let config = WorkerConfig {
            proc_id: proc_id.clone(),
            parent: here.clone(),
            root: root.clone(),
            credential: router.credential.clone(),
            shape: launch.shape.clone(),
            config: launch.config.clone(),
        };
        let hello = router.expect_hello(proc_id.clone());
        let mut child = Command::new(&program)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .env(WORKER_ENV, config.encode())
            .env("MONARCH_RANK", rank.to_string())
            .env("MONARCH_SHAPE", launch.shape.to_string())
            .env("MONARCH_POINT", point.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcMeshError::Launch {
                rank,
                program: program.display().to_string(),
                source,
            })?;
        forward_output(child.stdout.take(), Arc::clone(&label), rank, false);
        forward_output(child.stderr.take(), Arc::clone(&label), rank, true);
        let stdin = child.stdin.take();
        started.push((proc_id.clone(), child, stdin, hello));
    }
    let mut workers = Vec::with_capacity(started.len());
    for (rank, (proc_id, mut child, stdin, hello)) in started.into_iter().enumerate() {
        let timeout = launch.startup_timeout;
        let ready = tokio::time::timeout(timeout, async {
            tokio::select! {
                link = hello => link.map_err(|_| "the transport stopped waiting for it".to_string()),
                status = child.wait() => Err(match status {
                    Ok(status) => format!("it {} before connecting", exit::describe(&status)),
                    Err(error) => format!("it could not be waited for: {error}"),
                }),
            }
        });
        let link = match ready.await {
            Ok(Ok(link)) => link,
            Ok(Err(reason)) => {
                return Err(ProcMeshError::Startup {
                    rank,
                    reason: format!("proc {proc_id}: {reason}"),
                })
            }
            Err(_) => {
                return Err(ProcMeshError::Startup {
                    rank,
                    reason: format!(
                        "proc {proc_id} did not connect within {timeout:?}; does the program \
                         call monarch::bootstrap() (or use #[monarch::main]) first thing in main?"
                    ),
                })
            }
        };
        let (exited, exit) = watch::channel(None);
        let stopping = Arc::new(AtomicBool::new(false));
        link.set_referee(exit::referee(exit.clone(), Arc::clone(&stopping)));
        let kill = Arc::new(Notify::new());
        watch_worker(
            router,
            child,
            Arc::clone(&link),
            Arc::clone(&stopping),
            exited,
            Arc::clone(&kill),
        );
        workers.push(Worker {
            proc: ProcRef::new(proc_id, link.peer()),
            link,
            stdin: Mutex::new(stdin),
            stopping,
            exit,
            kill,
        });
    }
    tracing::debug!(name = %launch.name, shape = %launch.shape, "proc mesh ready");
    Ok(ProcMesh {
        inner: Arc::new(ProcMeshInner {
            name: launch.name,
            shape: launch.shape,
            workers,
            owner: launch.owner,
            label,
            stop_timeout: launch.stop_timeout,
        }),
    })
}

/// What the procs' forwarded output is prefixed with.
struct OutputLabel {
    procs: String,
    /// The actor meshes spawned on the procs, in order.
    meshes: Mutex<Vec<String>>,
}

impl OutputLabel {
    fn prefix(&self, rank: usize) -> String {
        let meshes = lock(&self.meshes);
        if meshes.is_empty() {
            format!("[{} {rank}]", self.procs)
        } else {
            format!("[{}@{} {rank}]", meshes.join("+"), self.procs)
        }
    }
}

impl ProcMesh {
    /// The mesh's name, which its procs' ids carry as their job.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The mesh's shape.
    pub fn shape(&self) -> &Shape {
        &self.inner.shape
    }

    /// The procs' ids, in rank order.
    pub fn proc_ids(&self) -> impl Iterator<Item = &ProcId> {
        self.inner.workers.iter().map(|w| w.proc.id())
    }

    /// The procs, in rank order: references that travel, for reaching their
    /// services and opening bulk streams to them.
    pub fn procs(&self) -> impl Iterator<Item = &ProcRef> {
        self.inner.workers.iter().map(|w| &w.proc)
    }

    /// The address the proc at `rank` listens on: `ip:port/incarnation`, where
    /// the incarnation tells this process apart from later ones on the same port.
    pub fn addr(&self, rank: usize) -> Option<&str> {
        self.inner.workers.get(rank).map(|w| w.proc.addr())
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
        let workers = &self.inner.workers;
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
        let requests = workers.iter().enumerate().map(|(rank, worker)| {
            let params = params.clone();
            let placement = Placement {
                rank,
                shape: self.inner.shape.clone(),
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
                    .call()
                    .await
                    .map_err(|e| e.to_string())?
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
        lock(&self.inner.label.meshes).push(name.to_string());
        Ok(ActorMesh::new(self.inner.shape.clone(), members).expect("one member per point"))
    }

    /// Stops every proc: each stops its actors (after what was already sent to
    /// them), then its process exits. Waits until all have exited, for at most
    /// [`Config::stop_timeout`] to drain and as long again to exit, killing
    /// what has not. Calls to its actors fail from then on, saying the proc
    /// was stopped.
    pub async fn stop(&self) {
        let timeout = self.inner.stop_timeout;
        let stops = self.inner.workers.iter().map(|worker| async move {
            worker.stopping.store(true, Ordering::Release);
            supervise::forget_process(worker.proc.addr());
            if let Ok(agent) = worker.proc.service::<ProcAgent>() {
                let drained = tokio::time::timeout(timeout, agent.stop_proc().call()).await;
                if drained.is_err() {
                    tracing::warn!(proc = %worker.proc, "the proc did not drain in {timeout:?}; killing it");
                    worker.kill.notify_one();
                }
            }
            drop(lock(&worker.stdin).take());
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

impl Drop for ProcMeshInner {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.stopping.store(true, Ordering::Release);
            supervise::forget_process(worker.proc.addr());
            drop(lock(&worker.stdin).take());
        }
    }
}

impl std::fmt::Debug for ProcMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcMesh({} {})", self.inner.name, self.inner.shape)
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

/// Watches a worker: its exit closes its link (failing calls and raising
/// supervision events unless the mesh is stopping), a link lost to silence
/// kills the process, so a hung or stopped worker does not linger, and so
/// does a kill request.
fn watch_worker(
    router: &Arc<Router>,
    mut child: Child,
    link: Arc<Link>,
    stopping: Arc<AtomicBool>,
    exited: watch::Sender<Option<String>>,
    kill: Arc<Notify>,
) {
    let router = Arc::clone(router);
    tokio::spawn(async move {
        let how = tokio::select! {
            status = child.wait() => describe_wait(status),
            () = link.wait_closed() => {
                if !stopping.load(Ordering::Acquire) {
                    let _ = child.start_kill();
                }
                describe_wait(child.wait().await)
            }
            () = kill.notified() => {
                let _ = child.start_kill();
                describe_wait(child.wait().await)
            }
        };
        let _ = exited.send(Some(how.clone()));
        if !stopping.load(Ordering::Acquire) {
            router.close_link(
                link.peer(),
                CloseReason::Local(format!("the process {how}")),
            );
            supervise::process_lost(link.peer(), &link.close_reason());
        }
    });
}

fn describe_wait(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => exit::describe(&status),
        Err(error) => format!("could not be waited for: {error}"),
    }
}

/// Copies the output of the worker at `rank` here, line by line, prefixed as
/// `label` says at the time.
fn forward_output(
    stream: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    label: Arc<OutputLabel>,
    rank: usize,
    to_stderr: bool,
) {
    let Some(stream) = stream else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let prefix = label.prefix(rank);
            if to_stderr {
                eprintln!("{prefix} {line}");
            } else {
                println!("{prefix} {line}");
            }
        }
    });
}
