//! A mesh of hosts: running host agents that a controller attached to, with
//! a `hosts` dimension, on which proc meshes spanning them are spawned.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::agent::{HostAgent, AGENT_JOB};
use super::launch::launch_on_hosts;
use crate::host::launch::Launch;
use crate::host::{next_mesh_name, ProcMesh, ProcMeshError};
use crate::transport::{JobCredential, Link, ProcRef, TransportError};
use crate::{this_proc, ActorRef, Config, Proc, ProcId, Shape};

/// Host agents (`monarch host`) this controller attached to, one per point of
/// a `hosts` dimension. Procs spawned on it ([`HostMesh::spawn_procs`]) form
/// an ordinary [`ProcMesh`] of shape `hosts x ...`: adverbs, slicing and
/// supervision work on it as on [`crate::this_host`]'s.
///
/// ```no_run
/// # use monarch_core::{shape, HostMesh, JobCredential};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let credential = JobCredential::read("job.pem".as_ref())?;
/// let agents = ["10.0.0.2:26600".parse()?, "10.0.0.3:26600".parse()?];
/// let hosts = HostMesh::attach(&agents, &credential).await?;
/// let procs = hosts.spawn_procs(shape! { gpus = 8 }).await?; // {hosts=2, gpus=8}
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct HostMesh {
    hosts: Arc<Vec<AttachedHost>>,
    owner: Proc,
    env: Vec<(String, String)>,
    config: Option<Config>,
}

/// One attached agent.
pub(super) struct AttachedHost {
    /// The host's name, as its agent gives it.
    pub(super) name: String,
    /// Where its agent listens.
    pub(super) addr: SocketAddr,
    pub(super) agent: ActorRef<HostAgent>,
    /// The link to its agent: its loss is the host's.
    pub(super) link: Arc<Link>,
}

impl AttachedHost {
    /// The host in errors: `name (addr)`.
    pub(super) fn describe(&self) -> String {
        format!("{} ({})", self.name, self.addr)
    }

    /// Why the host is lost, once its agent's link closed.
    pub(super) fn lost(&self) -> String {
        format!(
            "lost host {}: {}",
            self.describe(),
            self.link.close_reason()
        )
    }
}

/// Attaching to host agents failed.
#[derive(Debug, thiserror::Error)]
pub enum HostMeshError {
    /// No agent addresses were given.
    #[error("a host mesh needs at least one agent address")]
    NoAgents,
    /// This process's transport could not start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// This process's transport already runs with another credential (it
    /// was started before the attach, by a local proc mesh say).
    #[error(
        "this process's transport already runs with another job credential; attach to the \
         hosts before starting anything else"
    )]
    CredentialMismatch,
    /// This process listens where other hosts cannot reach it.
    #[error(
        "this controller listens on {listen}, which host {agent} cannot reach; set MONARCH_BIND \
         to an address of this host that the agents can reach (or attach before anything else \
         starts the transport)"
    )]
    Unreachable {
        /// Where this process listens.
        listen: String,
        /// The agent that cannot reach it.
        agent: SocketAddr,
    },
    /// An agent could not be reached, or refused this controller (a
    /// different job credential, say).
    #[error("cannot attach to the host agent at {agent}: {reason}")]
    Attach {
        /// The agent's address.
        agent: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// How long attaching to one agent may take.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(15);

impl HostMesh {
    /// Connects to the host agents listening at `agents`, with the job's
    /// `credential`, and gives a mesh with one point of a `hosts` dimension
    /// per agent, in order. It starts this process's transport with the
    /// credential unless it runs already; a transport on loopback (the
    /// default `MONARCH_BIND`) listens instead on the address this host
    /// reaches the first agent from.
    pub async fn attach(
        agents: &[SocketAddr],
        credential: &JobCredential,
    ) -> Result<HostMesh, HostMeshError> {
        Self::attach_with(agents, credential, Config::from_env()).await
    }

    /// [`HostMesh::attach`], with this process's transport and the workers
    /// configured by `config` rather than by the environment.
    pub async fn attach_with(
        agents: &[SocketAddr],
        credential: &JobCredential,
        config: Config,
    ) -> Result<HostMesh, HostMeshError> {
        let first = *agents.first().ok_or(HostMeshError::NoAgents)?;
        let router = match crate::transport::current() {
            Some(router) if router.credential != *credential => {
                return Err(HostMeshError::CredentialMismatch)
            }
            Some(router) => router,
            None => {
                let bind = reachable_bind(config.bind(), first);
                crate::transport::start(&config.with_bind(bind), Some(credential.clone()))?
            }
        };
        let listen = router
            .addr()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if let Some(agent) = agents
            .iter()
            .find(|agent| !can_reach(&listen, agent))
            .copied()
        {
            return Err(HostMeshError::Unreachable { listen, agent });
        }
        let attached =
            futures::future::join_all(agents.iter().map(|&agent| attach_one(&router, agent)))
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
        Ok(HostMesh {
            hosts: Arc::new(attached),
            owner: this_proc().clone(),
            env: Vec::new(),
            config: Some(config),
        })
    }

    /// The mesh's shape: `{hosts = n}`.
    pub fn shape(&self) -> Shape {
        Shape::line("hosts", self.hosts.len()).expect("one dimension")
    }

    /// The hosts' names, in order.
    pub fn host_names(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|h| h.name.as_str())
    }

    /// The same hosts, with failures of actor meshes spawned on their procs
    /// sent to `owner`'s fault hook instead of [`this_proc`]'s.
    pub fn owned_by(&self, owner: &Proc) -> HostMesh {
        HostMesh {
            owner: owner.clone(),
            ..self.clone()
        }
    }

    /// The same hosts, with `key=value` in their workers' environment.
    pub fn with_env(mut self, key: &str, value: &str) -> HostMesh {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Starts one worker process per point of `per_host` on every host, each
    /// running this program in worker mode (the agent runs the same file if
    /// its SHA-256 matches, else this program's bytes, sent over), and waits
    /// until all are connected. The mesh's shape is `hosts x per_host`.
    pub async fn spawn_procs(&self, per_host: Shape) -> Result<ProcMesh, ProcMeshError> {
        let config = self.config.clone().unwrap_or_else(Config::from_env);
        let router = crate::transport::start(&config, None)?;
        let dims: Vec<(String, usize)> = std::iter::once(("hosts".to_string(), self.hosts.len()))
            .chain(
                per_host
                    .dim_names()
                    .map(str::to_string)
                    .zip(per_host.sizes()),
            )
            .collect();
        let shape = Shape::new(&dims).map_err(|e| ProcMeshError::Startup {
            rank: 0,
            reason: format!("cannot put {per_host} on a host mesh: {e}"),
        })?;
        let name = next_mesh_name();
        let per = per_host.len();
        let ids = (0..shape.len())
            .map(|rank| ProcId::new(&name, &self.hosts[rank / per.max(1)].name, rank))
            .collect();
        launch_on_hosts(
            &router,
            &self.hosts,
            Launch {
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

impl std::fmt::Debug for HostMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.hosts.iter().map(AttachedHost::describe))
            .finish()
    }
}

/// Connects to the agent at `agent` and asks who it is.
async fn attach_one(
    router: &Arc<crate::transport::Router>,
    agent: SocketAddr,
) -> Result<AttachedHost, HostMeshError> {
    let failed = |reason: String| HostMeshError::Attach { agent, reason };
    // The agent's incarnation is unknown until its hello: each attach dials
    // a link of its own, which the hello then names.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let attempt = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let addr = format!("{agent}/attach{attempt}");
    let link = router.link(&addr);
    let connected = tokio::time::timeout(ATTACH_TIMEOUT, link.connected())
        .await
        .map_err(|_| failed(format!("no answer within {ATTACH_TIMEOUT:?}")))?;
    if connected.is_none() {
        return Err(failed(link.close_reason()));
    }
    let proc = link
        .peer_proc()
        .ok_or_else(|| failed("it did not say who it is".into()))?;
    if proc.job() != AGENT_JOB {
        return Err(failed(format!(
            "{proc} is not a host agent (is `monarch host` running there?)"
        )));
    }
    let agent_ref = ProcRef::new(proc, &addr)
        .service::<HostAgent>()
        .map_err(|e| failed(e.to_string()))?;
    let info = agent_ref
        .describe()
        .timeout(ATTACH_TIMEOUT)
        .call()
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(AttachedHost {
        name: info.name,
        addr: agent,
        agent: agent_ref,
        link,
    })
}

/// Where to listen so that `agent` can reach this process: `bind`, unless it
/// is loopback (or unspecified) and the agent is not, in which case the
/// address this host reaches the agent from.
fn reachable_bind(bind: SocketAddr, agent: SocketAddr) -> SocketAddr {
    let local_only = bind.ip().is_loopback() || bind.ip().is_unspecified();
    if !local_only || agent.ip().is_loopback() {
        return bind;
    }
    match super::net::routable_ip(agent) {
        Ok(ip) => SocketAddr::new(ip, bind.port()),
        Err(_) => bind,
    }
}

/// Whether a process listening at `listen` can be reached from `agent`.
fn can_reach(listen: &str, agent: &SocketAddr) -> bool {
    match listen.parse::<SocketAddr>() {
        Ok(listen) => {
            !(listen.ip().is_unspecified()
                || listen.ip().is_loopback() && !agent.ip().is_loopback())
        }
        Err(_) => false,
    }
}
