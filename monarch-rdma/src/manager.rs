//! The per-process RDMA manager: the service other processes ask how to
//! reach this process's registered memory, started on demand by the first
//! such question, so that no actor of the owner's program takes part.

use monarch_core::shm::RegionHandle;
use serde::{Deserialize, Serialize};

use crate::memory::{lookup, Storage};
use crate::table::SlotHandle;
use crate::{BufferId, RdmaError};

/// Serves the transfers of this process's registered memory that other
/// processes cannot make alone: it tells a process of the same host how to
/// map (or otherwise reach) a buffer, and starts the bulk-stream server.
/// Every process of the job runs one once another process asks; programs
/// never address it themselves.
#[derive(Default)]
pub struct RdmaManager;

/// An answer of the manager: the error travels typed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer<T>(pub(crate) Result<T, RdmaError>);

/// How another process of this host reaches a registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostRoute {
    pub(crate) slot: SlotHandle,
    pub(crate) memory: HostMemory,
}

/// Where the registration's bytes are, for a process of the same host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum HostMemory {
    /// Pages to map.
    Mapped(RegionHandle),
    /// Memory of process `pid` at `addr`, for the kernel to copy.
    Process {
        /// The owner's process id.
        pid: u32,
        /// The first byte, in the owner's address space.
        addr: u64,
    },
    /// A CUDA IPC handle (the driver's 64 bytes) of device memory.
    Cuda {
        /// The handle.
        handle: Vec<u8>,
        /// The device ordinal.
        device: i32,
    },
}

#[monarch_derive::actor]
impl RdmaManager {
    /// How a process of this host reaches registration `id`.
    #[endpoint]
    async fn open_host(&self, id: BufferId) -> Answer<HostRoute> {
        Answer(route(id))
    }

    /// Starts serving bulk streams for this process's registrations, if it
    /// does not already.
    #[endpoint]
    async fn serve_bulk(&self) -> Answer<()> {
        Answer(crate::backend::bulk::serve())
    }
}

fn route(id: BufferId) -> Result<HostRoute, RdmaError> {
    let entry = lookup(id)?;
    let slot = entry.slot_handle().ok_or(RdmaError::Dropped { id })?;
    let memory = match &*entry.storage {
        Storage::Shared(region) => HostMemory::Mapped(region.handle()),
        Storage::Owned(_) => HostMemory::Process {
            pid: std::process::id(),
            addr: entry.host_ptr().map_or(0, |ptr| ptr as u64),
        },
        #[cfg(feature = "cuda")]
        Storage::Cuda(memory) => HostMemory::Cuda {
            handle: memory.ipc_handle()?,
            device: memory.device(),
        },
    };
    Ok(HostRoute { slot, memory })
}
