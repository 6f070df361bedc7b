//! The generators of a run as a [`Service`]: one replica per generator, each
//! in a process of its own so that one can die alone, and a SIGKILL for
//! fault injection.

use std::time::Duration;

use monarch_core::prelude::*;

use super::generator::{Generator, GeneratorParams};
use crate::model::ONE_THREAD_PER_OPERATION;
use crate::service::{probe, Service, ServiceConfig, ServiceError};

/// The generators of a run: a service of [`Generator`] replicas.
pub type GeneratorPool = Service<Generator>;

/// The name the generators' service runs under.
pub const GENERATORS: &str = "generator";

/// Starts `count` generators made from `params` (replica `id` gets `id` as
/// its generator id), each in its own process with candle kept to one
/// thread per operation ([`ONE_THREAD_PER_OPERATION`]), so that generators
/// do not fight over cores with each other or the trainer. Unhealthy
/// generators are probed every `probe_every`; calls through the service
/// are given `timeout`.
pub async fn spawn_generators(
    count: usize,
    params: GeneratorParams,
    timeout: Duration,
) -> Result<GeneratorPool, ServiceError> {
    let config = ServiceConfig {
        replicas: count,
        probe_every: Duration::from_secs(1),
        probe_timeout: Duration::from_secs(10).min(timeout),
        call_timeout: timeout,
        env: ONE_THREAD_PER_OPERATION
            .iter()
            .map(|&(name, value)| (name.into(), value.into()))
            .collect(),
        ..ServiceConfig::default()
    };
    let probe_timeout = config.probe_timeout;
    Service::spawn(
        GENERATORS,
        config,
        move |id| GeneratorParams {
            id,
            ..params.clone()
        },
        probe(move |mesh: ActorMesh<Generator>| async move {
            mesh.version().timeout(probe_timeout).call_one().await
        }),
    )
    .await
}

/// A generator could not be killed.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// It did not say which process it runs in.
    #[error("generator {id} did not give its pid: {error}")]
    Pid {
        /// The generator.
        id: usize,
        /// What failed.
        error: String,
    },
    /// The kernel refused the kill.
    #[error("killing generator {id} (pid {pid}): {error}")]
    Kill {
        /// The generator.
        id: usize,
        /// Its process.
        pid: u32,
        /// The kernel's answer.
        error: std::io::Error,
    },
    /// There is no such generator.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// SIGKILLs the process of the generator in `slot`, as a machine fault
/// would; the service learns of it through supervision and failing calls.
pub async fn kill_generator(
    pool: &GeneratorPool,
    slot: usize,
    timeout: Duration,
) -> Result<u32, KillError> {
    let id = pool.replica_id(slot)?;
    let pid = tokio::time::timeout(
        timeout,
        pool.replica(slot)?.pid().timeout(timeout).call_one(),
    )
    .await
    .map_err(|_| KillError::Pid {
        id,
        error: format!("no answer within {timeout:?}"),
    })?
    .map_err(|e| KillError::Pid {
        id,
        error: e.to_string(),
    })?;
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Err(KillError::Kill {
            id,
            pid,
            error: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        });
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(raw, libc::SIGKILL) } != 0 {
        return Err(KillError::Kill {
            id,
            pid,
            error: std::io::Error::last_os_error(),
        });
    }
    tracing::warn!(generator = id, pid, "generator process killed");
    Ok(pid)
}
