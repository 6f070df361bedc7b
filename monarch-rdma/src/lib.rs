//! Registered memory and one-sided transfers between the processes of a
//! monarch-rs job: the way model weights move without the owner's code in
//! the path and without copies the hardware does not need.
//!
//! A process registers memory ([`RegisteredMemory`]) and sends its handle
//! ([`RdmaBuffer`], well under 1 KiB) in a message; any process of the job
//! that holds the handle then [reads](RdmaBuffer::read_into) and
//! [writes](RdmaBuffer::write_from) the memory with no endpoint of the
//! owner's actors running. A [`RdmaBatch`] runs several transfers under one
//! deadline; a [`SnapshotRing`] publishes versioned snapshots that readers
//! pull without ever seeing a torn one.
//!
//! ```no_run
//! use monarch_rdma::{RdmaBuffer, RegisteredMemory};
//!
//! # async fn example() -> Result<(), monarch_rdma::RdmaError> {
//! // In the owner: register, and send `handle` to another proc.
//! let weights = RegisteredMemory::from_slice(&[0.5f32; 1024])?;
//! let handle: RdmaBuffer = weights.handle();
//! // In any process of the job that received `handle`:
//! let mut local = vec![0u8; handle.size() as usize];
//! handle.read_into(&mut local).await?;
//! # Ok(()) }
//! ```
//!
//! # Backends
//!
//! A transfer takes the fastest backend the locality allows
//! ([`RdmaBuffer::backend`] says which):
//!
//! - same process: one `memcpy`;
//! - another process of the host: the reader maps the owner's shared pages
//!   and copies once ([`RegisteredMemory::alloc`], `from_bytes`,
//!   `from_slice`); memory the program handed over (`from_vec`,
//!   `from_bytes_mut`) is copied once by the kernel with
//!   `process_vm_readv`/`writev`; GPU memory is opened through CUDA IPC;
//! - another host: bulk streams over the job's authenticated QUIC
//!   connection, several in parallel for a large range
//!   ([`TransferOptions`]), with no round trip per chunk.
//!
//! Where a faster backend is not available (a mapping refused, the kernel
//! refusing `process_vm_readv`, no CUDA here), the log says so once with the
//! reason and transfers take bulk streams.
//!
//! A registration is checked before and after every access from another
//! process of the host through a liveness slot in the owner's shared memory;
//! dropping the last [`RegisteredMemory`] of a buffer invalidates its handles
//! (a later transfer fails with [`RdmaError::Dropped`]), and an access the
//! kernel makes on the owner's memory holds the slot so that the owner frees
//! the memory only once it is done.
//!
//! # Security
//!
//! Bulk streams and the manager's messages run over the job's connections,
//! which the job credential guards: a process without it is refused at the
//! handshake. Processes of the same user on the same host are inside the
//! operating system's trust boundary (they could trace each other anyway),
//! as they are for the core's shared-memory arguments.
//!
//! # GPU memory
//!
//! Behind the `cuda` feature, `RegisteredMemory::from_cuda` registers a
//! cudarc `CudaSlice<u8>`. The driver is loaded at run time: a build with the
//! feature runs where there is no CUDA, and every GPU path then fails with
//! [`RdmaError::NoCudaDevice`]. Reads from another host stage through pinned
//! host memory (not write-combined, which is slow for the CPU to read).
//!
//! # ibverbs
//!
//! There is no ibverbs backend yet. It plugs in where the bulk streams do:
//! the owner's [`RdmaManager`] would answer a request for a registration
//! with its memory region's remote key and address (registering it with
//! `ibv_reg_mr` on demand, or the GPU's memory through GPUDirect), and the
//! reader would post one-sided `RDMA_READ`/`RDMA_WRITE` work requests on a
//! queue pair it keeps per owner, connected through an exchange of queue-pair
//! numbers over the same manager. The liveness slot protocol stays as it is;
//! the backend is chosen for other hosts when both ends have a device, with
//! bulk streams as the fallback that is said once in the log.

mod backend;
mod batch;
mod buffer;
mod error;
mod id;
mod manager;
mod memory;
mod options;
mod ring;
mod table;

pub use batch::{BatchError, RdmaBatch};
pub use buffer::RdmaBuffer;
pub use error::RdmaError;
pub use id::BufferId;
pub use manager::{Answer, HostRoute, RdmaManager};
pub use memory::RegisteredMemory;
pub use options::{Backend, Route, TransferOptions};
pub use ring::{RingHandle, SnapshotRing};

/// Whether this process can use GPU memory: a CUDA driver and at least one
/// device. Without the `cuda` feature, never.
pub fn cuda_available() -> Result<(), RdmaError> {
    #[cfg(feature = "cuda")]
    {
        backend::cuda::available()
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err(RdmaError::NoCudaDevice(
            "this build has no `cuda` feature".into(),
        ))
    }
}
