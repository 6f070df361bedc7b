//! The transport between processes: links that drive the wire protocol over
//! sockets and QUIC, the handshakes that open them, the job credential, the
//! same-host socket, shared memory, bulk streams, and the router that ties
//! links to the runtime.
//!
//! One router runs per process, started by [`start`] (from the host layer:
//! a proc mesh, a worker's bootstrap) and installed as the runtime's network.

pub mod bulk;
mod cast;
mod connect;
mod credential;
mod error;
mod link;
mod local;
mod order;
mod proc_ref;
mod router;
mod segments;
pub mod shm;

#[cfg(feature = "testing")]
pub(crate) mod baseline;
#[cfg(feature = "testing")]
pub(crate) mod probe;

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use bulk::BulkError;
pub(crate) use cast::Member;
pub use credential::CredentialError;
pub use credential::JobCredential;
pub(crate) use error::CloseReason;
pub use error::TransportError;
pub(crate) use link::{Link, Referee};
pub use proc_ref::{Locality, ProcRef};
pub(crate) use router::Router;

use crate::runtime::remote::{install_network, network, Network};
use crate::{this_proc, Config};

/// What every link of a process is set up with, from its config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkSettings {
    pub(crate) heartbeat_interval: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) max_frame: usize,
    pub(crate) shared_memory: bool,
    pub(crate) shared_memory_from: usize,
}

impl From<&Config> for LinkSettings {
    fn from(config: &Config) -> Self {
        LinkSettings {
            heartbeat_interval: config.heartbeat_interval(),
            heartbeat_timeout: config.heartbeat_timeout(),
            max_frame: config.max_frame_bytes(),
            shared_memory: config.shared_memory(),
            shared_memory_from: config.shared_memory_from(),
        }
    }
}

/// This process's router, if its transport runs.
pub(crate) fn current() -> Option<Arc<Router>> {
    network()?
        .as_any()
        .downcast_ref::<Router>()
        .map(Router::arc)
}

/// Starts this process's transport, once: with `config`, and `credential`
/// (minted if `None`). Later calls return the running router.
pub(crate) fn start(
    config: &Config,
    credential: Option<JobCredential>,
) -> Result<Arc<Router>, TransportError> {
    static START: Mutex<()> = Mutex::new(());
    let _guard = START
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(router) = current() {
        return Ok(router);
    }
    let credential = match credential {
        Some(c) => c,
        None => JobCredential::mint()?,
    };
    let bind = config.bind();
    let mut endpoint = quinn::Endpoint::server(credential.quic_server()?, bind)
        .map_err(|source| TransportError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(credential.quic_client()?);
    let socket = endpoint
        .local_addr()
        .map_err(|source| TransportError::Bind { addr: bind, source })?;
    let incarnation = format!("{:016x}", incarnation());
    let addr = format!("{socket}/{incarnation}");
    let local = match config.transport() {
        crate::Transport::Auto => match local::listen(&incarnation) {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(%error, "no same-host socket; processes of this host will use QUIC");
                None
            }
        },
        crate::Transport::Quic => None,
    };
    let router = Router::new(
        config.clone(),
        credential,
        endpoint.clone(),
        addr,
        this_proc().proc_id().clone(),
    );
    install_network(Arc::clone(&router) as Arc<dyn Network>);
    tokio::spawn(Arc::clone(&router).accept_loop(endpoint));
    if let Some(listener) = local {
        tokio::spawn(Arc::clone(&router).accept_local_loop(listener));
    }
    tracing::debug!(addr = %router.addr(), "transport listening");
    Ok(router)
}

/// A number that tells this process apart from any other that listens, or
/// will listen, on the same port: process addresses are `socket/incarnation`,
/// so a link to a process that is gone is never mistaken for one to its
/// successor on a reused port.
fn incarnation() -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), nanos))
}
