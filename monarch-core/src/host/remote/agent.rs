//! The host agent: a long-running process on each host of a cluster job
//! (`monarch host`). A controller holding the job credential attaches to it
//! ([`super::HostMesh::attach`]) and has it start worker procs from a named
//! program; the agent forwards their output, reports their exits, and ends
//! them all when their controller lets them go or disconnects.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::Notify;

use super::program::{sha256_of_file, ProgramSpec};
use crate::host::bootstrap::{WorkerConfig, WORKER_ENV};
use crate::host::{exit, lock};
use crate::runtime::proc::{local_hostname, set_process_id};
use crate::transport::{JobCredential, ProcRef, TransportError};
use crate::{this_proc, Config, Port, ProcId, Shape};

/// The port `monarch host` listens on unless told otherwise (PyTorch
/// Monarch's workers use the same).
pub const DEFAULT_AGENT_PORT: u16 = 26600;

/// How a host agent runs.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Where it listens for controllers (QUIC over UDP). An unspecified IP
    /// (`0.0.0.0`) listens on every interface; its workers then listen on
    /// the address this host reaches each controller from.
    pub listen: SocketAddr,
    /// The job credential: only controllers holding it are accepted.
    pub credential: JobCredential,
    /// The host's name in proc ids and errors (default: the hostname).
    pub name: Option<String>,
    /// Where programs sent by controllers are kept, named by their SHA-256
    /// (default: a folder under the system's temporary folder).
    pub cache_dir: Option<PathBuf>,
}

/// The host agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// This process already uses the runtime under another identity.
    #[error("the host agent must run in a process of its own, before anything else uses monarch")]
    AlreadyStarted,
    /// The transport could not listen.
    #[error("the host agent cannot listen on {listen}: {source}")]
    Transport {
        /// The address asked for.
        listen: SocketAddr,
        /// Why.
        source: TransportError,
    },
    /// The agent's service could not start.
    #[error("the host agent's service cannot start: {0}")]
    Service(String),
    /// The program cache could not be made.
    #[error("the host agent cannot use its program cache {path}: {source}")]
    Cache {
        /// The folder.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Runs a host agent until this process is interrupted (SIGINT or
/// SIGTERM), then kills every worker it started. `on_listening` is called
/// with the address it listens on once controllers can attach.
pub async fn run_host_agent(
    options: AgentOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), AgentError> {
    let name = options.name.clone().unwrap_or_else(local_hostname);
    if !set_process_id(ProcId::new(AGENT_JOB, &name, 0)) {
        return Err(AgentError::AlreadyStarted);
    }
    let cache = options
        .cache_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("monarch-host-{name}")));
    std::fs::create_dir_all(&cache).map_err(|source| AgentError::Cache {
        path: cache.clone(),
        source,
    })?;
    let config = Config::from_env().with_bind(options.listen);
    let transport = |source| AgentError::Transport {
        listen: options.listen,
        source,
    };
    let router =
        crate::transport::start(&config, Some(options.credential.clone())).map_err(transport)?;
    let listening: SocketAddr = router
        .addr()
        .split('/')
        .next()
        .and_then(|socket| socket.parse().ok())
        .unwrap_or(options.listen);
    let state = Arc::new(AgentState {
        name: name.clone(),
        listen: listening,
        credential: options.credential,
        cache,
        workers: Mutex::new(HashMap::new()),
        controllers: Mutex::new(HashSet::new()),
    });
    if STATE.set(Arc::clone(&state)).is_err() {
        return Err(AgentError::AlreadyStarted);
    }
    this_proc()
        .service::<HostAgent>()
        .map_err(|e| AgentError::Service(e.to_string()))?;
    tracing::info!(host = %name, addr = %listening, "host agent listening");
    on_listening(listening);
    wait_for_termination().await;
    tracing::info!(host = %name, "host agent stopping; killing its workers");
    state.kill_all(|_| true).await;
    Ok(())
}

/// The job name of every host agent's proc.
pub(crate) const AGENT_JOB: &str = "host";

/// Waits for SIGINT or SIGTERM.
async fn wait_for_termination() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// What an agent tells a controller about itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct HostInfo {
    /// The host's name.
    pub(crate) name: String,
}

/// The workers of one proc mesh that an agent is to start.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LaunchRequest {
    pub(crate) mesh: String,
    pub(crate) program: ProgramSpec,
    /// Each worker's rank in the whole mesh, its id and its point.
    pub(crate) workers: Vec<(usize, ProcId, String)>,
    pub(crate) parent: ProcRef,
    pub(crate) root: ProcRef,
    pub(crate) shape: Shape,
    pub(crate) config: Option<Config>,
    pub(crate) env: Vec<(String, String)>,
}

/// How a launch went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum LaunchAnswer {
    /// The workers are starting; they connect to the parent themselves.
    Started,
    /// The program is not on this host (or differs): send its bytes.
    NeedProgram,
}

/// What an agent reports about the workers of a launch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum WorkerEvent {
    /// A line the worker at `rank` wrote.
    Output {
        rank: usize,
        line: String,
        stderr: bool,
    },
    /// The worker at `rank` ended, as a clause ("exited with code 1").
    Exited { rank: usize, how: String },
}

/// The agent's own state, set once by [`run_host_agent`].
static STATE: OnceLock<Arc<AgentState>> = OnceLock::new();

struct AgentState {
    name: String,
    listen: SocketAddr,
    credential: JobCredential,
    cache: PathBuf,
    /// Running workers by mesh and rank.
    workers: Mutex<HashMap<(String, usize), Running>>,
    /// The controllers whose disconnection is watched.
    controllers: Mutex<HashSet<String>>,
}

/// A worker process the agent started.
struct Running {
    /// Its controller's address.
    controller: String,
    /// Dropping it tells the worker to exit.
    stdin: Option<ChildStdin>,
    kill: Arc<Notify>,
    exited: Arc<Notify>,
}

/// The service through which controllers use a host agent. In any process
/// that is not one, its endpoints refuse.
#[derive(Default)]
pub(crate) struct HostAgent;

#[monarch_derive::actor]
impl HostAgent {
    /// The host's name.
    #[endpoint]
    async fn describe(&self) -> Result<HostInfo, String> {
        let state = agent_state()?;
        Ok(HostInfo {
            name: state.name.clone(),
        })
    }

    /// Starts the workers of `request`, reporting their output and exits to
    /// `events`.
    #[endpoint]
    async fn launch(
        &self,
        request: LaunchRequest,
        events: Port<WorkerEvent>,
    ) -> Result<LaunchAnswer, String> {
        let state = agent_state()?;
        let Some(program) = state.program(&request.program)? else {
            return Ok(LaunchAnswer::NeedProgram);
        };
        state.watch_controller(request.parent.addr());
        let bind = SocketAddr::new(state.worker_ip(&request.parent), 0);
        for (rank, proc_id, point) in &request.workers {
            let worker = WorkerConfig {
                proc_id: proc_id.clone(),
                parent: request.parent.clone(),
                root: request.root.clone(),
                credential: state.credential.clone(),
                shape: request.shape.clone(),
                config: request.config.as_ref().map(|c| c.with_bind(bind)),
            };
            let mut child = Command::new(&program)
                .envs(request.env.iter().map(|(k, v)| (k, v)))
                .env("MONARCH_BIND", bind.to_string())
                .env(WORKER_ENV, worker.encode())
                .env("MONARCH_RANK", rank.to_string())
                .env("MONARCH_SHAPE", request.shape.to_string())
                .env("MONARCH_POINT", point)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
            forward(child.stdout.take(), events.clone(), *rank, false);
            forward(child.stderr.take(), events.clone(), *rank, true);
            let kill = Arc::new(Notify::new());
            let exited = Arc::new(Notify::new());
            let key = (request.mesh.clone(), *rank);
            lock(&state.workers).insert(
                key.clone(),
                Running {
                    controller: request.parent.addr().to_string(),
                    stdin: child.stdin.take(),
                    kill: Arc::clone(&kill),
                    exited: Arc::clone(&exited),
                },
            );
            let events = events.clone();
            let state = Arc::clone(&state);
            let rank = *rank;
            tokio::spawn(async move {
                let status = tokio::select! {
                    status = child.wait() => status,
                    () = kill.notified() => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                let how = match status {
                    Ok(status) => exit::describe(&status),
                    Err(error) => format!("could not be waited for: {error}"),
                };
                lock(&state.workers).remove(&key);
                exited.notify_waiters();
                let _ = events.send(WorkerEvent::Exited { rank, how });
            });
        }
        Ok(LaunchAnswer::Started)
    }

    /// Tells the worker at `rank` of `mesh` to exit (closes its stdin).
    #[endpoint]
    async fn release(&self, mesh: String, rank: usize) {
        if let Ok(state) = agent_state() {
            if let Some(running) = lock(&state.workers).get_mut(&(mesh, rank)) {
                drop(running.stdin.take());
            }
        }
    }

    /// Kills the worker at `rank` of `mesh`.
    #[endpoint]
    async fn kill(&self, mesh: String, rank: usize) {
        if let Ok(state) = agent_state() {
            if let Some(running) = lock(&state.workers).get(&(mesh, rank)) {
                running.kill.notify_one();
            }
        }
    }
}

fn agent_state() -> Result<Arc<AgentState>, String> {
    STATE
        .get()
        .cloned()
        .ok_or_else(|| format!("{} is not a host agent", this_proc().proc_id()))
}

impl AgentState {
    /// The program `spec` names, on this host: the file at its path if its
    /// hash matches, else one sent earlier, else the bytes sent now (kept in
    /// the cache). `None` when it must be sent.
    fn program(&self, spec: &ProgramSpec) -> Result<Option<PathBuf>, String> {
        let cached = self.cache.join(&spec.sha256);
        if let Some(bytes) = &spec.bytes {
            write_program(&cached, bytes, &spec.sha256)?;
            return Ok(Some(cached));
        }
        let named = Path::new(&spec.path);
        if sha256_of_file(named).is_ok_and(|hash| hash == spec.sha256) {
            return Ok(Some(named.to_path_buf()));
        }
        if sha256_of_file(&cached).is_ok_and(|hash| hash == spec.sha256) {
            return Ok(Some(cached));
        }
        Ok(None)
    }

    /// The address this host's workers listen on for a controller at
    /// `parent`: the agent's own, or where this host reaches the controller
    /// from when the agent listens everywhere.
    fn worker_ip(&self, parent: &ProcRef) -> IpAddr {
        if !self.listen.ip().is_unspecified() {
            return self.listen.ip();
        }
        parent
            .addr()
            .split('/')
            .next()
            .and_then(|socket| socket.parse::<SocketAddr>().ok())
            .and_then(|controller| super::net::routable_ip(controller).ok())
            .unwrap_or(self.listen.ip())
    }

    /// Kills the controller's workers when its link closes.
    fn watch_controller(self: &Arc<Self>, controller: &str) {
        if !lock(&self.controllers).insert(controller.to_string()) {
            return;
        }
        let Some(router) = crate::transport::current() else {
            return;
        };
        let link = router
            .existing_link(controller)
            .unwrap_or_else(|| router.link(controller));
        let state = Arc::clone(self);
        let controller = controller.to_string();
        tokio::spawn(async move {
            link.wait_closed().await;
            tracing::info!(%controller, reason = %link.close_reason(), "controller gone; killing its workers");
            lock(&state.controllers).remove(&controller);
            state.kill_all(|c| c == controller).await;
        });
    }

    /// Kills the workers whose controller `chosen` picks and waits for them.
    async fn kill_all(&self, chosen: impl Fn(&str) -> bool) {
        let waits: Vec<_> = lock(&self.workers)
            .values()
            .filter(|running| chosen(&running.controller))
            .map(|running| {
                let exited = Arc::clone(&running.exited);
                running.kill.notify_one();
                exited
            })
            .collect();
        let all = futures::future::join_all(waits.iter().map(|exited| exited.notified()));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), all).await;
    }
}

/// Keeps `bytes` as the program `path`, executable, after checking them
/// against `sha256`.
fn write_program(path: &Path, bytes: &[u8], sha256: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let got = super::program::sha256_hex(bytes);
    if got != sha256 {
        return Err(format!(
            "the program sent has SHA-256 {got}, not the {sha256} announced"
        ));
    }
    if sha256_of_file(path).is_ok_and(|hash| hash == sha256) {
        return Ok(());
    }
    let partial = path.with_extension("partial");
    let written = std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)))
        .and_then(|()| std::fs::rename(&partial, path));
    written.map_err(|e| format!("cannot keep the program at {}: {e}", path.display()))
}

/// Sends each line of a worker's output to its controller.
fn forward(
    stream: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    events: Port<WorkerEvent>,
    rank: usize,
    stderr: bool,
) {
    let Some(stream) = stream else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if events
                .send(WorkerEvent::Output { rank, line, stderr })
                .is_err()
            {
                break;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::remote::program::sha256_hex;

    fn state(cache: PathBuf) -> AgentState {
        AgentState {
            name: "test".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            credential: JobCredential::mint().unwrap(),
            cache,
            workers: Mutex::new(HashMap::new()),
            controllers: Mutex::new(HashSet::new()),
        }
    }

    #[test]
    fn a_program_is_run_in_place_asked_for_or_kept_once_sent() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("monarch-agent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = state(dir.clone());
        let bytes = b"#!/bin/sh\necho hi\n".to_vec();
        let sha256 = sha256_hex(&bytes);
        let here = dir.join("here.sh");
        std::fs::write(&here, &bytes).unwrap();

        let named = |path: &Path, bytes: Option<Vec<u8>>| ProgramSpec {
            path: path.display().to_string(),
            sha256: sha256.clone(),
            bytes: bytes.map(crate::Bytes::from),
        };
        // The same file where the controller has it: run in place.
        assert_eq!(
            state.program(&named(&here, None)).unwrap(),
            Some(here.clone())
        );
        // Missing here, or different: ask for the bytes.
        let elsewhere = dir.join("missing.sh");
        assert_eq!(state.program(&named(&elsewhere, None)).unwrap(), None);
        std::fs::write(&here, b"something else").unwrap();
        assert_eq!(state.program(&named(&here, None)).unwrap(), None);
        // Sent: kept under its hash, executable, and found again later.
        let kept = state
            .program(&named(&elsewhere, Some(bytes.clone())))
            .unwrap()
            .unwrap();
        assert_eq!(kept, dir.join(&sha256));
        assert_eq!(std::fs::read(&kept).unwrap(), bytes);
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111);
        assert_eq!(state.program(&named(&elsewhere, None)).unwrap(), Some(kept));
        // Bytes that do not match the hash announced are refused.
        let forged = ProgramSpec {
            bytes: Some(crate::Bytes::from_static(b"forged")),
            ..named(&elsewhere, None)
        };
        let error = state.program(&forged).unwrap_err();
        assert!(error.contains("not the"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
