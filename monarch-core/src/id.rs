//! Addresses: which process (`ProcId`) and which actor (`ActorId`).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A process of a job: the job's name, the host it runs on and its rank.
///
/// ```
/// use monarch_core::ProcId;
///
/// let proc = ProcId::new("train", "node-3", 2);
/// assert_eq!(proc.to_string(), "train/node-3[2]");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcId {
    job: Arc<str>,
    host: Arc<str>,
    rank: usize,
}

impl ProcId {
    /// The id of process `rank` of `job` on `host`.
    pub fn new(job: &str, host: &str, rank: usize) -> Self {
        ProcId {
            job: job.into(),
            host: host.into(),
            rank,
        }
    }

    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The host the process runs on.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The process's rank in its job.
    pub fn rank(&self) -> usize {
        self.rank
    }
}

impl fmt::Display for ProcId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}[{}]", self.job, self.host, self.rank)
    }
}

/// An actor: the process it lives in, the name it was spawned with, and an index
/// that tells apart actors spawned with the same name in that process.
///
/// ```
/// use monarch_core::{ActorId, ProcId};
///
/// let id = ActorId::new(ProcId::new("train", "node-3", 2), "counter", 7);
/// assert_eq!(id.to_string(), "train/node-3[2].counter#7");
/// ```
///
/// An id is one pointer wide: cloning it, as every message to a remote actor
/// does, touches one reference count, and errors that name an actor stay small.
#[derive(Clone, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActorId(Arc<ActorIdParts>);

impl PartialEq for ActorId {
    fn eq(&self, other: &Self) -> bool {
        // Clones of one id, as the registry's keys and lookups mostly are,
        // compare without reading the names.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl std::hash::Hash for ActorId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Equal ids have equal indices and ranks, so hashing those alone is
        // consistent with equality; it spares hashing the names for every
        // message looked up in a table of actors (the index alone tells the
        // actors of one process apart).
        self.0.index.hash(state);
        self.0.proc.rank.hash(state);
    }
}

#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
struct ActorIdParts {
    proc: ProcId,
    name: Box<str>,
    index: u64,
}

impl ActorId {
    /// The id of actor `name` number `index` in `proc`.
    pub fn new(proc: ProcId, name: &str, index: u64) -> Self {
        ActorId(Arc::new(ActorIdParts {
            proc,
            name: name.into(),
            index,
        }))
    }

    /// The process the actor lives in.
    pub fn proc_id(&self) -> &ProcId {
        &self.0.proc
    }

    /// The name the actor was spawned with.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The index that makes this id unique within its process.
    pub fn index(&self) -> u64 {
        self.0.index
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorId")
            .field("proc", &self.0.proc)
            .field("name", &self.0.name)
            .field("index", &self.0.index)
            .finish()
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}#{}", self.0.proc, self.0.name, self.0.index)
    }
}
