//! Starting the workers of a proc mesh on other hosts, through their agents:
//! each agent starts its share, the workers connect here as local ones do,
//! and each is watched through its own link and its host's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::agent::{HostAgent, LaunchAnswer, LaunchRequest, WorkerEvent};
use super::mesh::AttachedHost;
use super::program::ProgramSpec;
use crate::host::bootstrap::worker_root;
use crate::host::launch::{Launch, OutputLabel};
use crate::host::proc_mesh::{Launched, ProcMesh, ProcMeshError, Release, Worker};
use crate::host::{exit, supervise};
use crate::transport::{CloseReason, Link, ProcRef, Router};
use crate::{open_port, ActorRef, PortReceiver};

/// Starts `launch`'s workers, `launch.ids.len() / hosts.len()` on each host
/// in order, and waits until each has connected.
pub(super) async fn launch_on_hosts(
    router: &Arc<Router>,
    hosts: &[AttachedHost],
    launch: Launch,
) -> Result<ProcMesh, ProcMeshError> {
    let here = ProcRef::new(crate::this_proc().proc_id().clone(), router.addr());
    let root = worker_root().unwrap_or_else(|| here.clone());
    let label = Arc::new(OutputLabel::new(&launch.name));
    let per_host = launch.ids.len() / hosts.len().max(1);
    let program = ProgramSpec::this_program().map_err(ProcMeshError::Exe)?;
    let exits: Vec<Arc<watch::Sender<Option<String>>>> = launch
        .ids
        .iter()
        .map(|_| Arc::new(watch::channel(None).0))
        .collect();
    let hellos: Vec<_> = launch
        .ids
        .iter()
        .map(|id| router.expect_hello(id.clone()))
        .collect();
    let points: Vec<String> = launch.shape.points().map(|p| p.to_string()).collect();
    for (h, host) in hosts.iter().enumerate() {
        let ranks = h * per_host..(h + 1) * per_host;
        let (events, received) = open_port::<WorkerEvent>();
        relay_events(received, Arc::clone(&label), exits.clone());
        let request = LaunchRequest {
            mesh: launch.name.clone(),
            program: program.clone(),
            workers: ranks
                .map(|rank| (rank, launch.ids[rank].clone(), points[rank].clone()))
                .collect(),
            parent: here.clone(),
            root: root.clone(),
            shape: launch.shape.clone(),
            config: launch.config.clone(),
            env: launch.env.clone(),
        };
        let refused = |reason: String| ProcMeshError::Host {
            host: host.describe(),
            reason,
        };
        let ask = |request: LaunchRequest| {
            host.agent
                .launch(request, events.clone())
                .timeout(launch.spawn_timeout)
                .call()
        };
        let answer = ask(request.clone())
            .await
            .map_err(|e| refused(e.to_string()))?;
        if answer == LaunchAnswer::NeedProgram {
            tracing::info!(host = %host.name, program = %program.path, "sending the program");
            let with_bytes = LaunchRequest {
                program: program.with_bytes().map_err(ProcMeshError::Exe)?,
                ..request
            };
            let again = ask(with_bytes).await.map_err(|e| refused(e.to_string()))?;
            if again != LaunchAnswer::Started {
                return Err(refused("it did not take the program sent".into()));
            }
        }
    }
    let mut workers = Vec::with_capacity(launch.ids.len());
    for (rank, (proc_id, hello)) in launch.ids.iter().zip(hellos).enumerate() {
        let host = &hosts[rank / per_host.max(1)];
        let mut exit = exits[rank].subscribe();
        let timeout = launch.startup_timeout;
        let ready = tokio::time::timeout(timeout, async {
            tokio::select! {
                link = hello => link.map_err(|_| "the transport stopped waiting for it".to_string()),
                how = reported(&mut exit) => Err(format!(
                    "it {} before connecting",
                    how.unwrap_or_default()
                )),
                () = host.link.wait_closed() => Err(host.lost()),
            }
        });
        let link = match ready.await {
            Ok(Ok(link)) => link,
            Ok(Err(reason)) => {
                return Err(ProcMeshError::Startup {
                    rank,
                    reason: format!("proc {proc_id} on host {}: {reason}", host.name),
                })
            }
            Err(_) => {
                return Err(ProcMeshError::Startup {
                    rank,
                    reason: format!(
                        "proc {proc_id} on host {} did not connect within {timeout:?}; can the \
                         host reach this controller at {}?",
                        host.name,
                        router.addr()
                    ),
                })
            }
        };
        let stopping = Arc::new(AtomicBool::new(false));
        let exit = exits[rank].subscribe();
        link.set_referee(exit::referee(exit.clone(), Arc::clone(&stopping)));
        let kill = Arc::new(Notify::new());
        watch_remote_worker(
            router,
            host,
            Watched {
                mesh: launch.name.clone(),
                rank,
                link: Arc::clone(&link),
                stopping: Arc::clone(&stopping),
                exited: Arc::clone(&exits[rank]),
                kill: Arc::clone(&kill),
            },
        );
        let agent = host.agent.clone();
        let mesh = launch.name.clone();
        workers.push(Worker {
            proc: ProcRef::new(proc_id.clone(), link.peer()),
            link,
            release: Mutex::new(Some(Release::new(move || {
                let _ = agent.release(mesh, rank).send();
            }))),
            stopping,
            exit,
            kill,
        });
    }
    tracing::debug!(name = %launch.name, shape = %launch.shape, hosts = hosts.len(), "proc mesh ready");
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

/// Copies the workers' output here, prefixed as `label` says, and records
/// their exits, until the agent lets go of the port.
fn relay_events(
    mut events: PortReceiver<WorkerEvent>,
    label: Arc<OutputLabel>,
    exits: Vec<Arc<watch::Sender<Option<String>>>>,
) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                WorkerEvent::Output { rank, line, stderr } => {
                    let prefix = label.prefix(rank);
                    if stderr {
                        eprintln!("{prefix} {line}");
                    } else {
                        println!("{prefix} {line}");
                    }
                }
                WorkerEvent::Exited { rank, how } => {
                    if let Some(exit) = exits.get(rank) {
                        exit.send_replace(Some(how));
                    }
                }
            }
        }
    });
}

/// How the worker ended, once its agent reports it; `None` if nobody will.
async fn reported(exit: &mut watch::Receiver<Option<String>>) -> Option<String> {
    exit.wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|how| how.clone())
}

/// One remote worker, as its watch sees it.
struct Watched {
    mesh: String,
    rank: usize,
    link: Arc<Link>,
    stopping: Arc<AtomicBool>,
    exited: Arc<watch::Sender<Option<String>>>,
    kill: Arc<Notify>,
}

/// How long a remote worker that lost its link, or was killed, is given to
/// be reported gone by its agent.
const EXIT_REPORT: Duration = Duration::from_secs(5);

/// Watches a remote worker: its exit (reported by its agent), the loss of
/// its link or of its host's, and kill requests. Unless its mesh is
/// stopping, its end fails the calls pending there and is a supervision
/// event for each actor on it, naming the host.
fn watch_remote_worker(router: &Arc<Router>, host: &AttachedHost, watched: Watched) {
    let router = Arc::clone(router);
    let agent: ActorRef<HostAgent> = host.agent.clone();
    let host_link = Arc::clone(&host.link);
    let host_name = host.describe();
    tokio::spawn(async move {
        let Watched {
            mesh,
            rank,
            link,
            stopping,
            exited,
            kill,
        } = watched;
        let mut exit = exited.subscribe();
        let how = tokio::select! {
            how = reported(&mut exit) => how.unwrap_or_default(),
            () = host_link.wait_closed() => format!("was lost with its host: {}", host_link.close_reason()),
            () = link.wait_closed() => {
                if !stopping.load(Ordering::Acquire) {
                    let _ = agent.kill(mesh.clone(), rank).send();
                }
                // Its agent reports the exit, or the host is lost too (cut off).
                tokio::select! {
                    how = reported(&mut exit) => how.unwrap_or_default(),
                    () = host_link.wait_closed() => format!(
                        "was cut off with its host: {}",
                        link.close_reason()
                    ),
                    () = tokio::time::sleep(EXIT_REPORT) => format!("was cut off: {}", link.close_reason()),
                }
            }
            () = kill.notified() => {
                let _ = agent.kill(mesh.clone(), rank).send();
                match tokio::time::timeout(EXIT_REPORT, reported(&mut exit)).await {
                    Ok(Some(how)) => how,
                    _ => "was killed (its agent did not confirm)".to_string(),
                }
            }
        };
        exited.send_replace(Some(how.clone()));
        if !stopping.load(Ordering::Acquire) {
            let reason = format!("the process on host {host_name} {how}");
            router.close_link(link.peer(), CloseReason::Local(reason.clone()));
            supervise::process_lost(link.peer(), &reason);
        }
    });
}
