//! Registered memory, on the owner's side: what a process registers so that
//! others can read and write it through an [`RdmaBuffer`].

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use bytes::BytesMut;
use monarch_core::shm::SharedRegion;
use monarch_core::ProcRef;

use crate::backend::copy_bytes;
use crate::buffer::{MemoryKind, RdmaBuffer};
use crate::table::{Slot, SlotHandle};
use crate::{BufferId, RdmaError};

/// Memory this process registered for one-sided transfers. Cloning it shares
/// the registration; dropping the last clone invalidates every
/// [`RdmaBuffer`] handle to it: later transfers fail with
/// [`RdmaError::Dropped`], and no transfer touches the freed memory.
///
/// Other processes may read and write the memory at any time while it is
/// registered, so the owner too reaches it through copies
/// ([`read_at`](Self::read_at), [`write_at`](Self::write_at)), never through
/// Rust references; ordering between the owner and the others is the
/// program's to arrange (with messages, or a [`SnapshotRing`](crate::SnapshotRing)).
///
/// ```
/// use monarch_rdma::RegisteredMemory;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let memory = RegisteredMemory::from_bytes(b"weights")?;
/// let handle = memory.handle();
/// let mut out = vec![0u8; handle.size() as usize];
/// handle.read_into(&mut out).await?;
/// assert_eq!(out, b"weights");
/// # Ok::<(), monarch_rdma::RdmaError>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct RegisteredMemory {
    entry: Arc<Entry>,
}

/// One registration.
pub(crate) struct Entry {
    pub(crate) id: BufferId,
    pub(crate) len: usize,
    pub(crate) storage: ManuallyDrop<Storage>,
    slot: Mutex<Option<Slot>>,
}

/// Where the bytes of a registration live.
pub(crate) enum Storage {
    /// Pages allocated for sharing: other processes of the host map them.
    Shared(SharedRegion),
    /// Memory the program handed over (a `Vec` or `BytesMut`): other
    /// processes of the host reach it through the kernel.
    Owned(OwnedBytes),
    /// GPU memory.
    #[cfg(feature = "cuda")]
    Cuda(crate::backend::cuda::DeviceMemory),
}

/// A heap allocation the registration keeps, and where its bytes are.
pub(crate) struct OwnedBytes {
    ptr: *mut u8,
    /// Keeps the allocation; never touched otherwise.
    _keep: Box<dyn Send + Sync>,
}

// SAFETY: `ptr` points into the allocation `_keep` owns, which never moves
// or changes size while the registration lives; the bytes are plain data
// reached only through bounds-checked copies, from any thread.
unsafe impl Send for OwnedBytes {}
// SAFETY: as for `Send`: shared access is only through copies of plain bytes.
unsafe impl Sync for OwnedBytes {}

/// Every live registration of this process, by id.
static LOCAL: LazyLock<Mutex<HashMap<BufferId, Weak<Entry>>>> = LazyLock::new(Default::default);

/// The live registration `id` of this process.
pub(crate) fn lookup(id: BufferId) -> Result<Arc<Entry>, RdmaError> {
    let found = LOCAL
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
        .and_then(Weak::upgrade);
    found.ok_or_else(|| gone(id))
}

/// Why `id` is not registered here.
pub(crate) fn gone(id: BufferId) -> RdmaError {
    if id.is_ours() {
        RdmaError::Dropped { id }
    } else {
        RdmaError::UnknownBuffer {
            id,
            owner: ProcRef::here().map_or_else(|| "this process".to_string(), |p| p.to_string()),
        }
    }
}

impl RegisteredMemory {
    /// `len` zeroed bytes allocated for sharing (page-aligned, in an unnamed
    /// memory-backed file another process of the host can map).
    pub fn alloc(len: usize) -> Result<Self, RdmaError> {
        if len == 0 {
            return Err(RdmaError::ZeroSize);
        }
        let region = SharedRegion::new(len)
            .map_err(|e| RdmaError::Memory(format!("cannot allocate {len} bytes: {e}")))?;
        Self::register(len, Storage::Shared(region))
    }

    /// A copy of `bytes` in memory allocated for sharing.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RdmaError> {
        let memory = Self::alloc(bytes.len())?;
        memory.write_at(0, bytes)?;
        Ok(memory)
    }

    /// A copy of `values` (`f32`, `half::bf16`, any plain type) in memory
    /// allocated for sharing: one copy now, none per transfer.
    pub fn from_slice<T: bytemuck::Pod>(values: &[T]) -> Result<Self, RdmaError> {
        Self::from_bytes(bytemuck::cast_slice(values))
    }

    /// Registers `values` where they are, without copying: other processes
    /// of the host reach them through the kernel (`process_vm_readv`), other
    /// hosts through bulk streams.
    pub fn from_vec<T: bytemuck::Pod + Send + Sync>(mut values: Vec<T>) -> Result<Self, RdmaError> {
        let len = std::mem::size_of_val(values.as_slice());
        if len == 0 {
            return Err(RdmaError::ZeroSize);
        }
        let ptr = bytemuck::cast_slice_mut::<T, u8>(values.as_mut_slice()).as_mut_ptr();
        Self::register(
            len,
            Storage::Owned(OwnedBytes {
                ptr,
                _keep: Box::new(values),
            }),
        )
    }

    /// Registers `bytes` where they are, as [`from_vec`](Self::from_vec).
    pub fn from_bytes_mut(mut bytes: BytesMut) -> Result<Self, RdmaError> {
        let len = bytes.len();
        if len == 0 {
            return Err(RdmaError::ZeroSize);
        }
        let ptr = bytes.as_mut_ptr();
        Self::register(
            len,
            Storage::Owned(OwnedBytes {
                ptr,
                _keep: Box::new(bytes),
            }),
        )
    }

    /// Registers GPU memory (the `cuda` feature).
    #[cfg(feature = "cuda")]
    pub fn from_cuda(slice: cudarc::driver::CudaSlice<u8>) -> Result<Self, RdmaError> {
        let memory = crate::backend::cuda::DeviceMemory::new(slice)?;
        let len = memory.len();
        if len == 0 {
            return Err(RdmaError::ZeroSize);
        }
        Self::register(len, Storage::Cuda(memory))
    }

    fn register(len: usize, storage: Storage) -> Result<Self, RdmaError> {
        let id = BufferId::next();
        let slot = Slot::take(id)?;
        let entry = Arc::new(Entry {
            id,
            len,
            storage: ManuallyDrop::new(storage),
            slot: Mutex::new(Some(slot)),
        });
        LOCAL
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::downgrade(&entry));
        crate::backend::bulk::serve_if_running();
        tracing::debug!(%id, len, "registered memory");
        Ok(RegisteredMemory { entry })
    }

    /// The registration's id.
    pub fn id(&self) -> BufferId {
        self.entry.id
    }

    /// Its size in bytes (at least one).
    pub fn len(&self) -> usize {
        self.entry.len
    }

    /// Whether it is empty (never: registered memory has at least one byte).
    pub fn is_empty(&self) -> bool {
        self.entry.len == 0
    }

    /// The handle other processes reach the memory with: small, plain data
    /// to send in messages. Its owner is this process's proc; once the
    /// transport runs it carries this process's address.
    pub fn handle(&self) -> RdmaBuffer {
        let kind = match &*self.entry.storage {
            Storage::Shared(_) => MemoryKind::Shared,
            Storage::Owned(_) => MemoryKind::Owned,
            #[cfg(feature = "cuda")]
            Storage::Cuda(memory) => MemoryKind::Cuda {
                device: memory.device(),
            },
        };
        RdmaBuffer::new(self.entry.id, self.entry.len as u64, kind)
    }

    /// Copies `out.len()` bytes at `offset` into `out`.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), RdmaError> {
        self.entry.read_at(offset, out)
    }

    /// Copies `data` in at `offset`.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), RdmaError> {
        self.entry.write_at(offset, data)
    }

    /// A copy of all the bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>, RdmaError> {
        let mut out = vec![0u8; self.entry.len];
        self.read_at(0, &mut out)?;
        Ok(out)
    }

    pub(crate) fn entry(&self) -> &Arc<Entry> {
        &self.entry
    }
}

impl std::fmt::Debug for RegisteredMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredMemory")
            .field("id", &self.entry.id)
            .field("len", &self.entry.len)
            .finish()
    }
}

impl Entry {
    /// Where other processes find this registration's liveness slot.
    pub(crate) fn slot_handle(&self) -> Option<SlotHandle> {
        self.slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Slot::handle)
    }

    /// The first byte of host memory, with its length; `None` for GPU
    /// memory.
    pub(crate) fn host_ptr(&self) -> Option<*mut u8> {
        match &*self.storage {
            Storage::Shared(region) => Some(region.as_ptr()),
            Storage::Owned(owned) => Some(owned.ptr),
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => None,
        }
    }

    /// Checks that `len` bytes at `offset` lie inside.
    pub(crate) fn check_range(&self, offset: u64, len: u64) -> Result<(), RdmaError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len as u64 => Ok(()),
            _ => Err(RdmaError::OutOfRange {
                id: self.id,
                size: self.len as u64,
                offset,
                len,
            }),
        }
    }

    pub(crate) fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), RdmaError> {
        self.check_range(offset as u64, out.len() as u64)?;
        #[cfg(feature = "cuda")]
        if let Storage::Cuda(memory) = &*self.storage {
            return memory.read_at(offset, out);
        }
        let base = self.host_base()?;
        // SAFETY: the range was checked against the registration, whose
        // memory lives as long as `self`; `out` is ours alone.
        unsafe { copy_bytes(base.add(offset), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    pub(crate) fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), RdmaError> {
        self.check_range(offset as u64, data.len() as u64)?;
        #[cfg(feature = "cuda")]
        if let Storage::Cuda(memory) = &*self.storage {
            return memory.write_at(offset, data);
        }
        let base = self.host_base()?;
        // SAFETY: as in `read_at`; `data` cannot overlap registered memory,
        // which no Rust reference ever points into.
        unsafe { copy_bytes(data.as_ptr(), base.add(offset), data.len()) };
        Ok(())
    }

    fn host_base(&self) -> Result<*mut u8, RdmaError> {
        self.host_ptr().ok_or_else(|| RdmaError::Broken {
            id: self.id,
            why: "not host memory".into(),
        })
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        LOCAL
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        let slot = self
            .slot
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        // A peer that did not finish its access in time may still be inside
        // this memory: it is then leaked, never freed under the peer.
        if slot.is_none_or(Slot::release) {
            // SAFETY: the storage is dropped here only, once, and `self` is
            // never used after.
            unsafe { ManuallyDrop::drop(&mut self.storage) };
        }
        tracing::debug!(id = %self.id, "dropped registered memory");
    }
}
