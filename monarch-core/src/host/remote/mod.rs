//! Procs on other hosts: the host agent that runs on each of them
//! (`monarch host`), and the [`HostMesh`] a controller attaches to a set of
//! agents to spawn procs there.
//!
//! Every connection is mutual TLS with the job's [`JobCredential`]
//! (`monarch credential new FILE`): an agent refuses a controller without
//! it, and a controller refuses an agent without it. Workers connect to
//! their controller directly, as on one host; the agent starts them, copies
//! their output to the controller, reports how they end, and kills them when
//! the controller lets them go or disconnects.
//!
//! A host whose agent dies, or whose network is cut, is noticed within the
//! links' heartbeat timeout ([`crate::Config::heartbeat_timeout`],
//! `MONARCH_HEARTBEAT_TIMEOUT_MS`): each actor on its procs becomes a
//! supervision event at its owner, and calls pending there fail, both naming
//! the host.
//!
//! Agents started by a scheduler announce where they listen in a
//! [`Rendezvous`] folder on shared storage; [`SlurmJob`] starts them under
//! SLURM and waits for them there.
//!
//! [`JobCredential`]: crate::JobCredential

mod agent;
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod launch;
mod mesh;
mod net;
mod program;
mod rendezvous;
mod slurm;

pub use agent::{run_host_agent, AgentError, AgentOptions, DEFAULT_AGENT_PORT};
pub use mesh::{HostMesh, HostMeshError};
pub use rendezvous::{advertised_addr, AnnouncedAgent, Rendezvous, RendezvousError};
pub use slurm::{SlurmAgents, SlurmError, SlurmJob, Submit};

#[cfg(feature = "kubernetes")]
pub use kubernetes::{AgentPod, KubernetesError, KubernetesJob, Manifests, NotReady, JOB_LABEL};
