//! The owner is another process of this host: map its shared pages and copy
//! once, let the kernel copy memory it did not allocate for sharing, or open
//! its GPU memory through CUDA IPC.

use std::sync::atomic::{AtomicBool, Ordering};

use monarch_core::shm::{Access, MappedRegion};

use crate::backend::{copy, copy_bytes, fall_back, seqlock_copy};
use crate::buffer::{MemoryKind, Op, RdmaBuffer, Stamps};
use crate::manager::{HostMemory, RdmaManager};
use crate::options::Backend;
use crate::table::RemoteSlot;
use crate::{BufferId, RdmaError};

/// How this process reaches one registration of another process of the
/// host, learnt from the owner's manager once per handle.
pub(crate) struct Reach {
    /// The registration's liveness slot in the owner's table.
    slot: Option<RemoteSlot>,
    memory: Memory,
    /// Set once the faster way failed: later transfers take bulk streams.
    bulk_instead: AtomicBool,
}

enum Memory {
    Mapped(MappedRegion),
    Process {
        pid: libc::pid_t,
        addr: u64,
    },
    #[cfg(feature = "cuda")]
    Cuda(crate::backend::cuda::IpcMemory),
    /// No faster way: bulk streams.
    Bulk,
}

impl Reach {
    /// The backend transfers through this reach take.
    pub(crate) fn backend(&self) -> Backend {
        if self.bulk_instead.load(Ordering::Relaxed) {
            return Backend::BulkStreams;
        }
        match self.memory {
            Memory::Mapped(_) => Backend::SharedMemory,
            Memory::Process { .. } => Backend::ProcessVm,
            #[cfg(feature = "cuda")]
            Memory::Cuda(_) => Backend::CudaIpc,
            Memory::Bulk => Backend::BulkStreams,
        }
    }

    fn bulk() -> Self {
        Reach {
            slot: None,
            memory: Memory::Bulk,
            bulk_instead: AtomicBool::new(false),
        }
    }
}

/// Asks the owner's manager how to reach `buffer`, and opens that way here.
pub(crate) async fn resolve(buffer: &RdmaBuffer) -> Result<Reach, RdmaError> {
    let id = buffer.id();
    let owner = buffer.owner();
    if let MemoryKind::Cuda { .. } = buffer.kind() {
        if let Err(why) = cuda_here() {
            fall_back("CUDA IPC", &format!("GPU buffer {id} of {owner}"), &why);
            return Ok(Reach::bulk());
        }
    }
    let manager = owner
        .service::<RdmaManager>()
        .map_err(|e| RdmaError::unreachable(id, owner, e.to_string()))?;
    let answer = manager
        .open_host(id)
        .call()
        .await
        .map_err(|e| RdmaError::unreachable(id, owner, e.to_string()))?;
    let route = answer.0?;
    let slot = match RemoteSlot::open(route.slot, id) {
        Ok(slot) => slot,
        Err(error) => {
            fall_back(
                "shared memory",
                &format!("the liveness table of {owner}"),
                &error.to_string(),
            );
            return Ok(Reach::bulk());
        }
    };
    let memory = match route.memory {
        HostMemory::Mapped(region) => {
            let len = usize::try_from(region.len()).unwrap_or(usize::MAX);
            match copy(len, || region.map_populated(Access::ReadWrite)) {
                Ok(map) => Memory::Mapped(map),
                Err(error) => {
                    fall_back(
                        "shared memory",
                        &format!("buffer {id} of {owner}"),
                        &error.to_string(),
                    );
                    Memory::Bulk
                }
            }
        }
        HostMemory::Process { pid, addr } => Memory::Process {
            pid: libc::pid_t::try_from(pid).unwrap_or(libc::pid_t::MAX),
            addr,
        },
        #[cfg(feature = "cuda")]
        HostMemory::Cuda { handle, device } => {
            match crate::backend::cuda::IpcMemory::open(&handle, device, buffer.size()) {
                Ok(memory) => Memory::Cuda(memory),
                Err(error) => {
                    fall_back(
                        "CUDA IPC",
                        &format!("GPU buffer {id} of {owner}"),
                        &error.to_string(),
                    );
                    Memory::Bulk
                }
            }
        }
        #[cfg(not(feature = "cuda"))]
        HostMemory::Cuda { .. } => Memory::Bulk,
    };
    Ok(Reach {
        slot: Some(slot),
        memory,
        bulk_instead: AtomicBool::new(false),
    })
}

/// Runs `op` through `reach`: `Ok(None)` when it must take bulk streams
/// instead.
pub(crate) fn transfer(
    reach: &Reach,
    id: BufferId,
    offset: u64,
    op: &mut Op<'_>,
    stamps: Option<Stamps>,
) -> Result<Option<Option<(u64, u64)>>, RdmaError> {
    if reach.bulk_instead.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let Some(slot) = &reach.slot else {
        return Ok(None);
    };
    let dropped = || RdmaError::Dropped { id };
    let at = offset as usize;
    match &reach.memory {
        Memory::Bulk => Ok(None),
        Memory::Mapped(map) => {
            if !slot.is_live() {
                return Err(dropped());
            }
            if offset.saturating_add(op.len() as u64) > map.len() as u64 {
                return Err(RdmaError::Memory(format!(
                    "the mapping of buffer {id} is shorter than the range asked for"
                )));
            }
            let seen = match (op, stamps) {
                (Op::Read(dst), Some(stamps)) => {
                    // SAFETY: the handle checked the range and the stamps
                    // against the buffer's size, which the mapping covers;
                    // the mapping lives while `reach` does; stamps are only
                    // touched atomically.
                    Some(copy(dst.len(), || unsafe {
                        seqlock_copy(map.as_ptr(), offset, dst, stamps)
                    }))
                }
                (Op::Read(dst), None) => {
                    // SAFETY: the range lies inside the mapping (checked
                    // above), which lives while `reach` does; `dst` is ours.
                    copy(dst.len(), || unsafe {
                        copy_bytes(map.as_ptr().add(at), dst.as_mut_ptr(), dst.len())
                    });
                    None
                }
                (Op::Write(src), _) => {
                    let base = map.as_mut_ptr().ok_or_else(|| {
                        RdmaError::Memory(format!("buffer {id} is mapped read-only"))
                    })?;
                    // SAFETY: as for a read; `src` cannot overlap the mapping.
                    copy(src.len(), || unsafe {
                        copy_bytes(src.as_ptr(), base.add(at), src.len())
                    });
                    None
                }
            };
            if !slot.is_live() {
                return Err(dropped());
            }
            Ok(Some(seen))
        }
        Memory::Process { pid, addr } => {
            if stamps.is_some() {
                return Ok(None);
            }
            let hold = slot.hold().ok_or_else(dropped)?;
            let result = copy(op.len(), || process_vm(*pid, addr + offset, op));
            drop(hold);
            match result {
                Ok(()) => Ok(Some(None)),
                Err(error) => {
                    fall_back(
                        "process_vm_readv/writev",
                        &format!("buffer {id} (process {pid})"),
                        &error.to_string(),
                    );
                    reach.bulk_instead.store(true, Ordering::Relaxed);
                    Ok(None)
                }
            }
        }
        #[cfg(feature = "cuda")]
        Memory::Cuda(memory) => {
            if stamps.is_some() {
                return Ok(None);
            }
            let hold = slot.hold().ok_or_else(dropped)?;
            let result = match op {
                Op::Read(dst) => memory.read_at(at, dst),
                Op::Write(src) => memory.write_at(at, src),
            };
            drop(hold);
            result.map(|()| Some(None))
        }
    }
}

/// Whether this process can open CUDA IPC handles.
fn cuda_here() -> Result<(), String> {
    #[cfg(feature = "cuda")]
    {
        crate::backend::cuda::available().map_err(|e| e.to_string())
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err("this build has no `cuda` feature".into())
    }
}

/// Copies between `op`'s bytes and `len` bytes at `addr` of process `pid`
/// by the kernel, whole or not at all; a large range in parts on a few
/// threads at once, as the other copies run.
fn process_vm(pid: libc::pid_t, addr: u64, op: &mut Op<'_>) -> std::io::Result<()> {
    let (local, len, read) = match op {
        Op::Read(dst) => (dst.as_mut_ptr() as usize, dst.len(), true),
        Op::Write(src) => (src.as_ptr() as usize, src.len(), false),
    };
    let threads = if len >= PARALLEL_FROM {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(4)
    } else {
        1
    };
    let each = len.div_ceil(threads).next_multiple_of(4096);
    let addr = addr as usize;
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads)
            .map(|i| i * each)
            .filter(|start| *start < len)
            .map(|start| {
                let n = each.min(len - start);
                scope.spawn(move || kernel_copy(pid, local + start, addr + start, n, read))
            })
            .collect();
        let first = kernel_copy(pid, local, addr, each.min(len), read);
        others
            .into_iter()
            .map(|part| {
                part.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a copy panicked")))
            })
            .fold(first, Result::and)
    })
}

/// Copies larger than this run in parts on several threads.
const PARALLEL_FROM: usize = 32 << 20;

/// One thread's part of [`process_vm`]: `len` bytes between this process's
/// `local` and `remote` of process `pid`.
fn kernel_copy(
    pid: libc::pid_t,
    local: usize,
    remote: usize,
    len: usize,
    read: bool,
) -> std::io::Result<()> {
    let mut done = 0usize;
    while done < len {
        let here = libc::iovec {
            iov_base: (local + done) as *mut libc::c_void,
            iov_len: len - done,
        };
        let there = libc::iovec {
            iov_base: (remote + done) as *mut libc::c_void,
            iov_len: len - done,
        };
        // SAFETY: the local iovec covers bytes the caller borrows (mutably
        // for a read, split in disjoint parts between threads; a write only
        // reads them); the remote one is checked by the kernel, which fails
        // the call rather than touch unmapped memory of the other process,
        // whose registration the caller holds.
        let moved = unsafe {
            if read {
                libc::process_vm_readv(pid, &here, 1, &there, 1, 0)
            } else {
                libc::process_vm_writev(pid, &here, 1, &there, 1, 0)
            }
        };
        match moved {
            n if n > 0 => done += n as usize,
            0 => return Err(std::io::Error::other("the kernel moved no bytes")),
            _ => return Err(std::io::Error::last_os_error()),
        }
    }
    Ok(())
}
