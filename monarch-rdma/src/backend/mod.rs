//! The backends that move bytes, by locality: [`local`] (this process),
//! [`host`] (another process of this host: shared pages, the kernel, CUDA
//! IPC) and [`bulk`] (bulk streams over the job's connections, to anywhere).
//!
//! A transfer takes the first of these the locality and the memory allow;
//! where a faster one fails (a mapping refused, the kernel refusing
//! `process_vm_readv`, no CUDA), the log says so once with the reason and the
//! transfer takes the next. An ibverbs backend would sit beside [`host`], as a
//! [`Reach`] of its own for other hosts: see the crate docs for the plan.

pub(crate) mod bulk;
mod copy;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub(crate) mod host;
pub(crate) mod local;

use std::collections::HashSet;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

pub(crate) use copy::copy_bytes;
pub(crate) use host::Reach;

use crate::buffer::Stamps;

/// Copies larger than this leave the runtime's worker thread to the other
/// tasks while they run.
const BLOCKING_COPY: usize = 4 << 20;

/// Runs a copy of `len` bytes; a large one from a task of a multi-threaded
/// runtime runs as blocking, so that other tasks move meanwhile.
pub(crate) fn copy<R>(len: usize, copy: impl FnOnce() -> R) -> R {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if len >= BLOCKING_COPY && multi_thread {
        tokio::task::block_in_place(copy)
    } else {
        copy()
    }
}

/// A seqlock read of `dst.len()` bytes at `offset` of the memory at `base`,
/// between the loads of the stamps: `(end, begin)`.
///
/// # Safety
///
/// `base` must point to at least `offset + dst.len()` bytes and to 8-byte
/// aligned stamps inside the memory, live for the call, whose stamps every
/// process touches only atomically.
pub(crate) unsafe fn seqlock_copy(
    base: *const u8,
    offset: u64,
    dst: &mut [u8],
    stamps: Stamps,
) -> (u64, u64) {
    // SAFETY: the caller guarantees the stamps are in bounds, aligned and
    // only ever accessed atomically.
    let (begin, end) = unsafe {
        (
            AtomicU64::from_ptr(base.add(stamps.begin as usize).cast_mut().cast()),
            AtomicU64::from_ptr(base.add(stamps.end as usize).cast_mut().cast()),
        )
    };
    let seen_end = end.load(Ordering::Acquire);
    // SAFETY: the caller guarantees the range is in bounds; `dst` is ours.
    unsafe {
        copy_bytes(base.add(offset as usize), dst.as_mut_ptr(), dst.len());
    }
    fence(Ordering::Acquire);
    (seen_end, begin.load(Ordering::Relaxed))
}

/// Whether CUDA IPC can serve GPU memory on this host from here.
pub(crate) fn cuda_ipc() -> bool {
    #[cfg(feature = "cuda")]
    {
        cuda::available().is_ok()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

/// What was said about faster backends not being available, so that each
/// reason is said once.
static SAID: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

/// Says once in the log that `backend` is not available to reach `what`,
/// and why; the transfer takes bulk streams instead.
pub(crate) fn fall_back(backend: &str, what: &str, why: &str) {
    let key = format!("{backend}|{what}|{why}");
    if SAID
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key)
    {
        tracing::warn!(
            "{backend} cannot reach {what} ({why}); transfers take bulk streams instead"
        );
    }
}
