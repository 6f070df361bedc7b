//! Hosts and proc meshes: starting worker processes and spawning actors in them.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::oneshot;

use crate::bootstrap::{WorkerConfig, WORKER_ENV};
use crate::mailbox::Signal;
use crate::mesh::{ActorMesh, RemoteActor};
use crate::net::{router, start_router, Header, Link, Router, SupervisionSink, TransportError};
use crate::proc::local_hostname;
use crate::reference::RefCore;
use crate::remote::{decode, encode, RemoteError, ReplySink};
use crate::{spawn, this_proc, Actor, ActorId, ActorRef, Context, Proc, ProcId, Shape};

/// How long a worker may take to start and connect back.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A machine to start procs on. [`this_host`] is the one this program runs on.
#[derive(Clone, Debug)]
pub struct Host {
    owner: Proc,
    env: Vec<(String, String)>,
}

/// The host this program runs on. Actor meshes spawned from procs it starts
/// report failures nobody handles to [`this_proc`]'s fault hook.
pub fn this_host() -> Host {
    Host {
        owner: this_proc().clone(),
        env: Vec::new(),
    }
}

impl Host {
    /// The same host, with failures of actor meshes spawned on its procs (an
    /// actor that panics with nobody awaiting, a process that dies) sent to
    /// `owner`'s fault hook instead of [`this_proc`]'s.
    pub fn owned_by(owner: &Proc) -> Host {
        Host {
            owner: owner.clone(),
            env: Vec::new(),
        }
    }

    /// The same host, with `key=value` set in the environment of the workers it
    /// starts (`CUDA_VISIBLE_DEVICES`, say, or `MONARCH_TRANSPORT=quic` to keep
    /// same-host links on QUIC).
    pub fn with_env(mut self, key: &str, value: &str) -> Host {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts one worker process per point of `shape`, each running this
    /// binary in worker mode (see [`crate::bootstrap`]), and waits until all are
    /// connected.
    ///
    /// Workers get `MONARCH_RANK`, `MONARCH_SHAPE` and `MONARCH_POINT` in their
    /// environment; their output is forwarded here, each line prefixed with the
    /// names of the actor meshes spawned on them, the proc mesh's name and the
    /// rank: `[counter@procs0 3]` (`[procs0 3]` before any spawn). They exit
    /// when the mesh is stopped or dropped, and when this process exits,
    /// however it exits.
    pub async fn spawn_procs(&self, shape: Shape) -> Result<ProcMesh, ProcMeshError> {
        if crate::bootstrap::started_as_worker_without_bootstrap() {
            // Starting workers from here would start workers of workers, on and on.
            return Err(ProcMeshError::NotBootstrapped);
        }
        let router = start_router(None, this_proc())?;
        static NEXT_MESH: AtomicUsize = AtomicUsize::new(0);
        let number = NEXT_MESH.fetch_add(1, Ordering::Relaxed);
        // Meshes started by a worker are named under it, so that names stay
        // unique across the job.
        let parent = this_proc().proc_id();
        let name = match crate::bootstrap::worker_proc_id() {
            Some(_) => format!("{}.{}.procs{number}", parent.job(), parent.rank()),
            None => format!("procs{number}"),
        };
        let program = std::env::current_exe().map_err(ProcMeshError::Exe)?;
        let host = local_hostname();
        let mut procs = Vec::with_capacity(shape.len());
        let mut hellos = Vec::with_capacity(shape.len());
        let label = Arc::new(OutputLabel {
            procs: name.clone(),
            meshes: Mutex::new(Vec::new()),
        });
        for (rank, point) in shape.points().enumerate() {
            let proc_id = ProcId::new(&name, &host, rank);
            let config = WorkerConfig {
                proc_id: proc_id.clone(),
                controller: router.addr().to_string(),
                credential: router.credential().clone(),
                shape: shape.clone(),
            };
            hellos.push(router.expect_hello(proc_id.clone()));
            let mut child = Command::new(&program)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .env(WORKER_ENV, config.encode())
                .env("MONARCH_RANK", rank.to_string())
                .env("MONARCH_SHAPE", shape.to_string())
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
            procs.push((proc_id, child, stdin));
        }
        let mut workers = Vec::with_capacity(procs.len());
        for (rank, ((proc_id, mut child, stdin), hello)) in
            procs.into_iter().zip(hellos).enumerate()
        {
            let ready = tokio::time::timeout(STARTUP_TIMEOUT, async {
                tokio::select! {
                    link = hello => link.map_err(|_| "the transport stopped waiting for it".to_string()),
                    status = child.wait() => Err(match status {
                        Ok(status) => format!("it exited ({status}) before connecting"),
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
                            "proc {proc_id} did not connect within {STARTUP_TIMEOUT:?}; \
                             does the program call monarch::bootstrap() (or use #[monarch::main]) first thing in main?"
                        ),
                    })
                }
            };
            let stopping = Arc::new(AtomicBool::new(false));
            let exited = monitor(router, child, Arc::clone(&link), Arc::clone(&stopping));
            workers.push(Worker {
                id: proc_id,
                link,
                stdin: Mutex::new(stdin),
                stopping,
                exited: Mutex::new(Some(exited)),
            });
        }
        tracing::debug!(%name, %shape, "proc mesh ready");
        Ok(ProcMesh {
            inner: Arc::new(ProcMeshInner {
                name,
                shape,
                workers,
                owner: self.owner.clone(),
                label,
            }),
        })
    }
}

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

struct Worker {
    id: ProcId,
    link: Arc<Link>,
    /// Dropping it tells the worker to exit.
    stdin: Mutex<Option<ChildStdin>>,
    stopping: Arc<AtomicBool>,
    exited: Mutex<Option<oneshot::Receiver<()>>>,
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
    /// Spawning an actor on a proc failed.
    #[error("spawning {name} on proc {proc} failed: {error}")]
    Spawn {
        /// The actor mesh's name.
        name: String,
        /// The proc it failed on.
        proc: ProcId,
        /// Why.
        error: RemoteError,
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
        self.inner.workers.iter().map(|w| &w.id)
    }

    /// The address the proc at `rank` listens on: `ip:port/incarnation`, where
    /// the incarnation tells this process apart from later ones on the same port.
    pub fn addr(&self, rank: usize) -> Option<&str> {
        self.inner.workers.get(rank).map(|w| w.link.peer())
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
        let sink: SupervisionSink = Arc::new(move |event| (owner.fault_hook())(&event));
        self.spawn_with_sink(name, &params, sink).await
    }

    /// Spawns like [`ProcMesh::spawn`], with failures reported to the actor
    /// `ctx` belongs to, through its `handle_supervision_event`.
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
        let sink: SupervisionSink = Arc::new(move |event| {
            let _ = mailbox.send(Signal::Supervision(Box::new(event)));
        });
        self.spawn_with_sink(name, &params, sink).await
    }

    async fn spawn_with_sink<A>(
        &self,
        name: &str,
        params: &A::Params,
        sink: SupervisionSink,
    ) -> Result<ActorMesh<A>, ProcMeshError>
    where
        A: RemoteActor,
        A::Params: Serialize,
    {
        let router = router().expect("a proc mesh has a router");
        let params = encode(params).map_err(|error| ProcMeshError::Params {
            name: name.to_string(),
            error,
        })?;
        let requests = self.inner.workers.iter().enumerate().map(|(rank, worker)| {
            let params = params.clone();
            async move {
                let reply = request(&worker.link, params, |reply| Header::Spawn {
                    type_key: spawn::type_key::<A>().to_string(),
                    name: name.to_string(),
                    rank,
                    reply,
                })
                .await
                .and_then(|bytes| decode::<ActorId>(&bytes));
                reply.map_err(|error| ProcMeshError::Spawn {
                    name: name.to_string(),
                    proc: worker.id.clone(),
                    error,
                })
            }
        });
        let ids = futures::future::join_all(requests).await;
        let mut members = Vec::with_capacity(ids.len());
        let mut failure = None;
        for (worker, id) in self.inner.workers.iter().zip(ids) {
            match id {
                Ok(id) => {
                    router.watch(
                        id.clone(),
                        worker.link.peer().to_string(),
                        Arc::clone(&sink),
                    );
                    members.push(ActorRef::from_core(RefCore::<A>::resolve(
                        id,
                        Some(worker.link.peer()),
                    )));
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        if let Some(error) = failure {
            for member in &members {
                router.unwatch(member.actor_id());
                member.stop().await;
            }
            return Err(error);
        }
        lock(&self.inner.label.meshes).push(name.to_string());
        Ok(ActorMesh::new(self.inner.shape.clone(), members).expect("one member per point"))
    }

    /// Stops every proc: each stops its actors (after what was already sent to
    /// them), then its process exits. Waits until all have exited.
    pub async fn stop(&self) {
        let router = router().expect("a proc mesh has a router");
        router.forget_owned_by(self.inner.workers.iter().map(|w| w.link.peer()));
        let stops = self.inner.workers.iter().map(|worker| async move {
            worker.stopping.store(true, Ordering::Release);
            let _ = tokio::time::timeout(
                STARTUP_TIMEOUT,
                request(&worker.link, Bytes::new(), |ack| Header::StopProc {
                    ack,
                    seq: worker.link.next_seq(),
                }),
            )
            .await;
            drop(lock(&worker.stdin).take());
            let exited = lock(&worker.exited).take();
            if let Some(exited) = exited {
                let _ = exited.await;
            }
            router.close_link(worker.link.peer(), "the proc was stopped");
        });
        futures::future::join_all(stops).await;
    }
}

impl Drop for ProcMeshInner {
    fn drop(&mut self) {
        if let Some(router) = router() {
            router.forget_owned_by(self.workers.iter().map(|w| w.link.peer()));
        }
        for worker in &self.workers {
            worker.stopping.store(true, Ordering::Release);
            drop(lock(&worker.stdin).take());
        }
    }
}

impl std::fmt::Debug for ProcMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcMesh({} {})", self.inner.name, self.inner.shape)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends a request over `link` and awaits its reply.
async fn request(
    link: &Link,
    body: Bytes,
    header: impl FnOnce(u64) -> Header,
) -> Result<Bytes, RemoteError> {
    let (tx, rx) = oneshot::channel();
    link.request(
        header,
        body,
        ReplySink::new(move |result| {
            let _ = tx.send(result);
        }),
    );
    rx.await.unwrap_or_else(|_| {
        Err(RemoteError::Unreachable(
            "the link dropped the request".into(),
        ))
    })
}

/// Watches a worker: its exit closes its link (failing calls and raising
/// supervision events unless the mesh is stopping), and a link lost to silence
/// kills the process, so a hung or stopped worker does not linger.
fn monitor(
    router: &Arc<Router>,
    mut child: Child,
    link: Arc<Link>,
    stopping: Arc<AtomicBool>,
) -> oneshot::Receiver<()> {
    let (done, exited) = oneshot::channel();
    let router = Arc::clone(router);
    tokio::spawn(async move {
        tokio::select! {
            status = child.wait() => {
                if !stopping.load(Ordering::Acquire) {
                    let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                    router.close_link(link.peer(), &format!("the process exited ({status})"));
                }
            }
            () = link.closed() => {
                if !stopping.load(Ordering::Acquire) {
                    let _ = child.start_kill();
                }
                let _ = child.wait().await;
            }
        }
        let _ = done.send(());
    });
    exited
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

/// Returns the job's singleton actor `name`, spawning it with `params` in the
/// controller process if it does not exist yet. Every caller, from any process
/// of the job, gets the same actor.
pub async fn get_or_spawn_controller<A>(
    name: &str,
    params: A::Params,
) -> Result<ActorRef<A>, RemoteError>
where
    A: Actor,
    A::Params: Serialize,
{
    let params = encode(&params)?;
    let type_key = spawn::type_key::<A>();
    let router = match router() {
        Some(router) => router,
        None => start_router(None, this_proc()).map_err(|e| RemoteError::Failed(e.to_string()))?,
    };
    match router.controller() {
        None => {
            let id = router.get_or_spawn_local(type_key, name, params).await?;
            Ok(ActorRef::from_core(RefCore::resolve(id, None)))
        }
        Some(controller) => {
            let bytes = request(controller, params, |reply| Header::GetOrSpawn {
                type_key: type_key.to_string(),
                name: name.to_string(),
                reply,
            })
            .await?;
            let id = decode::<ActorId>(&bytes)?;
            Ok(ActorRef::from_core(RefCore::resolve(
                id,
                Some(controller.peer()),
            )))
        }
    }
}
