//! The generators of a run, each in a process of its own so that one can die
//! alone: spawned, marked unhealthy when a call fails, killed on request (for
//! fault-injection) and replaced by a fresh one that pulls the current
//! weights.

use std::time::Duration;

use monarch_core::prelude::*;
use monarch_core::{Host, MeshError, ProcMeshError};

use super::generator::{Generator, GeneratorParams};

/// A pool of generators.
pub struct GeneratorPool {
    members: Vec<Member>,
    params: GeneratorParams,
    next_id: usize,
    spawned: usize,
}

/// One generator and its process.
struct Member {
    id: usize,
    procs: ProcMesh,
    mesh: ActorMesh<Generator>,
    healthy: bool,
}

/// A generator could not be started, reached or killed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Its process could not be started or the actor spawned.
    #[error("starting a generator: {0}")]
    Spawn(#[from] ProcMeshError),
    /// A call to it failed.
    #[error("generator {id}: {error}")]
    Call {
        /// The generator.
        id: usize,
        /// What failed.
        error: MeshError,
    },
    /// A call to it did not answer in time.
    #[error("generator {id} did not answer within {after:?}")]
    Timeout {
        /// The generator.
        id: usize,
        /// How long it was given.
        after: Duration,
    },
    /// Every generator is unhealthy.
    #[error("no healthy generator")]
    NoneHealthy,
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
}

impl GeneratorPool {
    /// Starts `count` generators made from `params` (their ids numbered from
    /// 0), each in its own process with a one-thread math pool, so that
    /// generators do not fight over cores with each other or the trainer.
    pub async fn spawn(count: usize, params: GeneratorParams) -> Result<Self, PoolError> {
        let mut pool = GeneratorPool {
            members: Vec::with_capacity(count),
            params,
            next_id: 0,
            spawned: 0,
        };
        for _ in 0..count {
            let member = pool.start().await?;
            pool.members.push(member);
        }
        Ok(pool)
    }

    async fn start(&mut self) -> Result<Member, PoolError> {
        let id = self.next_id;
        self.next_id += 1;
        self.spawned += 1;
        let procs = Host::owned_by(this_proc())
            .with_env("RAYON_NUM_THREADS", "1")
            .spawn_procs(shape! { generators = 1 })
            .await?;
        let params = GeneratorParams {
            id,
            ..self.params.clone()
        };
        let mesh = procs.spawn::<Generator>("generator", params).await?;
        Ok(Member {
            id,
            procs,
            mesh,
            healthy: true,
        })
    }

    /// Slots in the pool (healthy or not).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the pool has no slot.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The slots whose generator is healthy.
    pub fn healthy(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&slot| self.members[slot].healthy)
            .collect()
    }

    /// The generator in `slot`, for calls.
    pub fn generator(&self, slot: usize) -> &ActorMesh<Generator> {
        &self.members[slot].mesh
    }

    /// The id of the generator in `slot`.
    pub fn id(&self, slot: usize) -> usize {
        self.members[slot].id
    }

    /// Generators started so far, replacements included.
    pub fn spawned(&self) -> usize {
        self.spawned
    }

    /// Marks the generator in `slot` unhealthy: it gets no more work.
    pub fn mark_unhealthy(&mut self, slot: usize) {
        if std::mem::replace(&mut self.members[slot].healthy, false) {
            tracing::warn!(
                generator = self.members[slot].id,
                "generator marked unhealthy"
            );
        }
    }

    /// Replaces the generator in `slot` with a fresh one, which loads the
    /// newest weights as it starts; the old process is stopped (it may be
    /// dead already).
    pub async fn replace(&mut self, slot: usize) -> Result<usize, PoolError> {
        let member = self.start().await?;
        let old = std::mem::replace(&mut self.members[slot], member);
        tokio::spawn(async move { old.procs.stop().await });
        Ok(self.members[slot].id)
    }

    /// SIGKILLs the process of the generator in `slot`, as a machine fault
    /// would; the pool learns of it only through failing calls.
    pub async fn kill(&self, slot: usize, timeout: Duration) -> Result<u32, PoolError> {
        let member = &self.members[slot];
        let id = member.id;
        let pid = tokio::time::timeout(timeout, member.mesh.pid().timeout(timeout).call_one())
            .await
            .map_err(|_| PoolError::Timeout { id, after: timeout })?
            .map_err(|error| PoolError::Call { id, error })?;
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            return Err(PoolError::Kill {
                id,
                pid,
                error: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        };
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        if unsafe { libc::kill(raw, libc::SIGKILL) } != 0 {
            return Err(PoolError::Kill {
                id,
                pid,
                error: std::io::Error::last_os_error(),
            });
        }
        tracing::warn!(generator = id, pid, "generator process killed");
        Ok(pid)
    }

    /// Stops every generator and its process.
    pub async fn stop(self) {
        for member in self.members {
            member.procs.stop().await;
        }
    }
}
