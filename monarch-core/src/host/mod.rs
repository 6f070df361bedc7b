//! Hosts and the processes of a job: starting worker processes and spawning
//! actors in them, worker mode, who owns the actors of a proc and hears of
//! their failures, job singletons, and what a worker does when its controller
//! is lost. These are policies; the transport below only moves frames.

mod agent;
mod bootstrap;
mod exit;
mod launch;
mod logging;
mod proc_mesh;
mod remote;
mod singleton;
mod spmd;
mod supervise;

use std::sync::atomic::{AtomicUsize, Ordering};

pub use bootstrap::bootstrap;
pub use logging::init_logging;
pub use proc_mesh::{ProcMesh, ProcMeshError, RankFailure};
pub use remote::{
    advertised_addr, run_host_agent, AgentError, AgentOptions, AnnouncedAgent, HostMesh,
    HostMeshError, Rendezvous, RendezvousError, SlurmAgents, SlurmError, SlurmJob, Submit,
    DEFAULT_AGENT_PORT,
};
#[cfg(feature = "kubernetes")]
pub use remote::{AgentPod, KubernetesError, KubernetesJob, Manifests, NotReady, JOB_LABEL};
pub use singleton::{get_or_spawn_controller, respawn_controller};
pub use spmd::{SpmdCommand, SpmdError, SpmdExit};

use crate::runtime::proc::local_hostname;
use crate::{this_proc, Config, Proc, ProcId, Shape};

/// A machine to start procs on. [`this_host`] is the one this program runs on.
#[derive(Clone, Debug)]
pub struct Host {
    owner: Proc,
    env: Vec<(String, String)>,
    config: Option<Config>,
}

/// The host this program runs on. Actor meshes spawned from procs it starts
/// report failures nobody handles to [`this_proc`]'s fault hook.
pub fn this_host() -> Host {
    Host {
        owner: this_proc().clone(),
        env: Vec::new(),
        config: None,
    }
}

impl Host {
    /// This host, with failures of actor meshes spawned on its procs (an
    /// actor that panics with nobody awaiting, a process that dies) sent to
    /// `owner`'s fault hook instead of [`this_proc`]'s.
    pub fn owned_by(owner: &Proc) -> Host {
        Host {
            owner: owner.clone(),
            ..this_host()
        }
    }

    /// The same host, with `key=value` set in the environment of the workers
    /// it starts (`CUDA_VISIBLE_DEVICES`, say). Workers read `MONARCH_*`
    /// settings from their environment unless the host has a config of its
    /// own ([`Host::with_config`]).
    pub fn with_env(mut self, key: &str, value: &str) -> Host {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The same host, with its workers (and this process's transport, if it
    /// is not running yet) configured by `config` rather than by their
    /// environment.
    pub fn with_config(mut self, config: Config) -> Host {
        self.config = Some(config);
        self
    }

    /// Starts one worker process per point of `shape`, each running this
    /// binary in worker mode (see [`bootstrap`]), and waits until all are
    /// connected.
    ///
    /// Workers get `MONARCH_RANK`, `MONARCH_SHAPE` and `MONARCH_POINT` in their
    /// environment; their output is forwarded here, each line prefixed with the
    /// names of the actor meshes spawned on them, the proc mesh's name and the
    /// rank: `[counter@procs0 3]` (`[procs0 3]` before any spawn). They exit
    /// when the mesh is stopped or dropped, and when this process exits,
    /// however it exits.
    pub async fn spawn_procs(&self, shape: Shape) -> Result<ProcMesh, ProcMeshError> {
        if bootstrap::started_as_worker_without_bootstrap() {
            // Starting workers from here would start workers of workers, on and on.
            return Err(ProcMeshError::NotBootstrapped);
        }
        let config = self.config.clone().unwrap_or_else(Config::from_env);
        let router = crate::transport::start(&config, None)?;
        let name = next_mesh_name();
        let ids = (0..shape.len())
            .map(|rank| ProcId::new(&name, &local_hostname(), rank))
            .collect();
        launch::launch(
            &router,
            launch::Launch {
                name,
                shape,
                ids,
                owner: self.owner.clone(),
                env: self.env.clone(),
                config: self.config.clone(),
                startup_timeout: config.startup_timeout(),
                stop_timeout: config.stop_timeout(),
                spawn_timeout: config.spawn_timeout(),
            },
        )
        .await
    }
}

/// Shuts this process's part of the job down: stops every actor of
/// [`this_proc`] (owners stop what they own, meshes included), then every proc
/// mesh this process started that is still alive, each within its
/// [`Config::stop_timeout`]. Returns once every worker process is gone.
/// Dropping the last handle to a proc mesh also ends its workers, without
/// waiting; this is the way to wait.
pub async fn shutdown() {
    this_proc().stop().await;
    let meshes = proc_mesh::live_meshes();
    futures::future::join_all(meshes.iter().map(ProcMesh::stop)).await;
}

/// A name for a new proc mesh, unique across the job: meshes started by a
/// worker are named under it.
fn next_mesh_name() -> String {
    static NEXT_MESH: AtomicUsize = AtomicUsize::new(0);
    let number = NEXT_MESH.fetch_add(1, Ordering::Relaxed);
    let parent = this_proc().proc_id();
    match bootstrap::worker_root() {
        Some(_) => format!("{}.{}.procs{number}", parent.job(), parent.rank()),
        None => format!("procs{number}"),
    }
}

/// Locks a mutex, whatever a panicking holder left behind.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
