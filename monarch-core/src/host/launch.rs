//! Starting the worker processes of a proc mesh: running this program in
//! worker mode once per point, waiting for each to connect, forwarding their
//! output, and watching each until it exits.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{watch, Notify};

use super::bootstrap::{worker_root, WorkerConfig, WORKER_ENV};
use super::proc_mesh::{Launched, ProcMesh, ProcMeshError, Release, Worker};
use super::supervise;
use super::{exit, lock};
use crate::transport::{CloseReason, Link, ProcRef, Router};
use crate::{Config, Proc, ProcId, Shape};

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
    pub(super) spawn_timeout: Duration,
}

/// Starts the workers of a proc mesh and waits until each has connected.
pub(super) async fn launch(
    router: &Arc<Router>,
    launch: Launch,
) -> Result<ProcMesh, ProcMeshError> {
    let program = std::env::current_exe().map_err(ProcMeshError::Exe)?;
    let here = ProcRef::new(crate::this_proc().proc_id().clone(), router.addr());
    let root = worker_root().unwrap_or_else(|| here.clone());
    let label = Arc::new(OutputLabel::new(&launch.name));
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
        let output = [
            forward_output(child.stdout.take(), Arc::clone(&label), rank, false),
            forward_output(child.stderr.take(), Arc::clone(&label), rank, true),
        ];
        let stdin = child.stdin.take();
        started.push((proc_id.clone(), child, stdin, hello, output));
    }
    let mut workers = Vec::with_capacity(started.len());
    for (rank, (proc_id, mut child, stdin, hello, output)) in started.into_iter().enumerate() {
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
                // Its last words (why it exited) come before the error.
                let _ = tokio::time::timeout(OUTPUT_DRAIN, futures::future::join_all(output)).await;
                return Err(ProcMeshError::Startup {
                    rank,
                    reason: format!("proc {proc_id}: {reason}"),
                });
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
            release: Mutex::new(stdin.map(|stdin| Release::new(move || drop(stdin)))),
            stopping,
            exit,
            kill,
        });
    }
    tracing::debug!(name = %launch.name, shape = %launch.shape, "proc mesh ready");
    Ok(ProcMesh::new(Launched {
        name: launch.name,
        shape: launch.shape,
        workers,
        owner: launch.owner,
        label,
        stop_timeout: launch.stop_timeout,
        spawn_timeout: launch.spawn_timeout,
    }))
}

/// What the procs' forwarded output is prefixed with.
pub(super) struct OutputLabel {
    procs: String,
    /// The actor meshes spawned on the procs, in order.
    meshes: Mutex<Vec<String>>,
}

impl OutputLabel {
    /// The label of the proc mesh `procs`, before any spawn.
    pub(super) fn new(procs: &str) -> Self {
        OutputLabel {
            procs: procs.to_string(),
            meshes: Mutex::new(Vec::new()),
        }
    }

    /// Lines from now on name the actor mesh `name` too.
    pub(super) fn add_mesh(&self, name: &str) {
        lock(&self.meshes).push(name.to_string());
    }

    /// What lines of the proc at `rank` are prefixed with now.
    pub(super) fn prefix(&self, rank: usize) -> String {
        let meshes = lock(&self.meshes);
        if meshes.is_empty() {
            format!("[{} {rank}]", self.procs)
        } else {
            format!("[{}@{} {rank}]", meshes.join("+"), self.procs)
        }
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

/// How long a failed start waits for the worker's output to be copied.
const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Copies the output of the worker at `rank` here, line by line, prefixed as
/// `label` says at the time, until the worker closes it.
fn forward_output(
    stream: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    label: Arc<OutputLabel>,
    rank: usize,
    to_stderr: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(stream) = stream else { return };
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let prefix = label.prefix(rank);
            if to_stderr {
                eprintln!("{prefix} {line}");
            } else {
                println!("{prefix} {line}");
            }
        }
    })
}
