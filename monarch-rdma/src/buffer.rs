//! The handle to registered memory that travels to other processes, and the
//! transfers it runs.

use std::sync::{Arc, Mutex, PoisonError};

use monarch_core::{this_proc, Locality, ProcRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::backend::{self, bulk, host, local, Reach};
use crate::options::{Backend, Route, TransferOptions};
use crate::{BufferId, RdmaError};

/// A handle to memory registered by its owning proc
/// ([`RegisteredMemory::handle`](crate::RegisteredMemory::handle)): its id,
/// size, owner, and what kind of memory it is, which decides the backends
/// that reach it. Small plain data (well under 1 KiB) to send in messages;
/// any process of the job that holds it reads and writes the owner's memory
/// with no code of the owner's actors running: a per-process
/// [manager](crate::RdmaManager) started on demand serves what the memory's
/// pages cannot.
///
/// Transfers copy the bytes as they are at some moment of the transfer;
/// ordering them against the owner's own writes is the program's to arrange
/// (see [`SnapshotRing`](crate::SnapshotRing) for versioned snapshots).
pub struct RdmaBuffer {
    id: BufferId,
    size: u64,
    owner: ProcRef,
    kind: MemoryKind,
    options: TransferOptions,
    /// How this process reaches the owner's memory, once known; shared by
    /// the clones of this handle in this process, dropped with the last.
    reach: Arc<Mutex<Option<Arc<Reach>>>>,
}

/// What kind of memory a handle names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum MemoryKind {
    /// Host pages allocated for sharing.
    Shared,
    /// Host memory the program handed over.
    Owned,
    /// GPU memory on device `device` of the owner's host.
    Cuda {
        /// The device ordinal.
        device: i32,
    },
}

impl RdmaBuffer {
    pub(crate) fn new(id: BufferId, size: u64, kind: MemoryKind) -> Self {
        let owner =
            ProcRef::here().unwrap_or_else(|| ProcRef::new(this_proc().proc_id().clone(), ""));
        RdmaBuffer {
            id,
            size,
            owner,
            kind,
            options: TransferOptions::default(),
            reach: Arc::default(),
        }
    }

    /// The registration's id.
    pub fn id(&self) -> BufferId {
        self.id
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The proc that owns the memory.
    pub fn owner(&self) -> &ProcRef {
        &self.owner
    }

    /// Whether the memory is on a GPU.
    pub fn is_gpu(&self) -> bool {
        matches!(self.kind, MemoryKind::Cuda { .. })
    }

    /// The options transfers through this handle run with (by default,
    /// [`TransferOptions::default`]).
    pub fn options(&self) -> &TransferOptions {
        &self.options
    }

    /// This handle with other transfer options.
    pub fn with_options(&self, options: TransferOptions) -> Self {
        RdmaBuffer {
            options,
            ..self.clone()
        }
    }

    /// The backend a transfer from this process takes.
    pub fn backend(&self) -> Backend {
        if let Some(reach) = self.cached_reach() {
            return reach.backend();
        }
        match (self.locality(), self.options.route, self.kind) {
            (Locality::SameProcess, _, _) => Backend::Memcpy,
            (Locality::SameHost, Route::Auto, MemoryKind::Shared) => Backend::SharedMemory,
            (Locality::SameHost, Route::Auto, MemoryKind::Owned) => Backend::ProcessVm,
            (Locality::SameHost, Route::Auto, MemoryKind::Cuda { .. }) if backend::cuda_ipc() => {
                Backend::CudaIpc
            }
            _ => Backend::BulkStreams,
        }
    }

    /// Copies the whole buffer into the first [`size`](Self::size) bytes of
    /// `dst`, which must hold at least that many.
    pub async fn read_into(&self, dst: &mut [u8]) -> Result<(), RdmaError> {
        let size = self.size_usize()?;
        if dst.len() < size {
            return Err(self.mismatch("destination", dst.len()));
        }
        self.read_range_into(0, &mut dst[..size]).await
    }

    /// Copies `dst.len()` bytes starting at `offset` of the buffer into
    /// `dst`.
    pub async fn read_range_into(&self, offset: u64, dst: &mut [u8]) -> Result<(), RdmaError> {
        self.check_range(offset, dst.len())?;
        self.timed(self.transfer(offset, Op::Read(dst), None))
            .await
            .map(drop)
    }

    /// Copies `src`, at most [`size`](Self::size) bytes, to the start of the
    /// buffer.
    pub async fn write_from(&self, src: &[u8]) -> Result<(), RdmaError> {
        if src.len() as u64 > self.size {
            return Err(self.mismatch("source", src.len()));
        }
        self.write_range_from(0, src).await
    }

    /// Copies `src` into the buffer starting at `offset`.
    pub async fn write_range_from(&self, offset: u64, src: &[u8]) -> Result<(), RdmaError> {
        self.check_range(offset, src.len())?;
        self.timed(self.transfer(offset, Op::Write(src), None))
            .await
            .map(drop)
    }

    /// Reads `dst.len()` bytes at `offset` between two loads of version
    /// stamps at `stamps` (end first, with acquire ordering; begin after a
    /// fence), all in the owner's memory: a seqlock read. Returns
    /// `(end, begin)`.
    pub(crate) async fn read_stamped(
        &self,
        offset: u64,
        dst: &mut [u8],
        stamps: Stamps,
    ) -> Result<(u64, u64), RdmaError> {
        self.check_range(offset, dst.len())?;
        for at in [stamps.begin, stamps.end] {
            self.check_range(at, 8)?;
        }
        let seen = self
            .timed(self.transfer(offset, Op::Read(dst), Some(stamps)))
            .await?;
        seen.ok_or_else(|| RdmaError::Broken {
            id: self.id,
            why: "the owner returned no version stamps".into(),
        })
    }

    /// Runs one transfer by the backend the locality allows, falling back
    /// to bulk streams (once said in the log) where a faster one fails.
    async fn transfer(
        &self,
        offset: u64,
        mut op: Op<'_>,
        stamps: Option<Stamps>,
    ) -> Result<Option<(u64, u64)>, RdmaError> {
        if op.is_empty() && stamps.is_none() {
            return Ok(None);
        }
        match self.locality() {
            Locality::SameProcess => return local::transfer(self.id, offset, op, stamps),
            Locality::SameHost if self.options.route == Route::Auto => {
                let reach = self.reach().await?;
                match host::transfer(&reach, self.id, offset, &mut op, stamps) {
                    Ok(Some(seen)) => return Ok(seen),
                    Ok(None) => {}
                    Err(error) => {
                        if matches!(error, RdmaError::Dropped { .. }) {
                            self.forget_reach();
                        }
                        return Err(error);
                    }
                }
            }
            _ => {}
        }
        bulk::transfer(self, offset, op, stamps).await
    }

    /// How this process reaches the owner's memory on this host, asked of
    /// the owner's manager once per handle.
    async fn reach(&self) -> Result<Arc<Reach>, RdmaError> {
        if let Some(reach) = self.cached_reach() {
            return Ok(reach);
        }
        let reach = Arc::new(host::resolve(self).await?);
        *self.reach.lock().unwrap_or_else(PoisonError::into_inner) = Some(reach.clone());
        Ok(reach)
    }

    fn cached_reach(&self) -> Option<Arc<Reach>> {
        self.reach
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn forget_reach(&self) {
        self.reach
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn locality(&self) -> Locality {
        if self.owner.addr().is_empty() {
            if self.owner.id() == this_proc().proc_id() {
                return Locality::SameProcess;
            }
            return Locality::OtherHost;
        }
        self.owner.locality()
    }

    pub(crate) fn kind(&self) -> MemoryKind {
        self.kind
    }

    async fn timed<T>(
        &self,
        transfer: impl std::future::Future<Output = Result<T, RdmaError>>,
    ) -> Result<T, RdmaError> {
        tokio::time::timeout(self.options.timeout, transfer)
            .await
            .map_err(|_| RdmaError::Timeout {
                id: self.id,
                after: self.options.timeout,
            })?
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<(), RdmaError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(RdmaError::OutOfRange {
                id: self.id,
                size: self.size,
                offset,
                len: len as u64,
            }),
        }
    }

    fn size_usize(&self) -> Result<usize, RdmaError> {
        usize::try_from(self.size).map_err(|_| {
            RdmaError::Memory(format!(
                "buffer {} of {} bytes does not fit this process's address space",
                self.id, self.size
            ))
        })
    }

    fn mismatch(&self, side: &str, got: usize) -> RdmaError {
        RdmaError::SizeMismatch {
            id: self.id,
            size: self.size,
            side: side.into(),
            got: got as u64,
        }
    }
}

/// Where the two version stamps of a seqlock read lie in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamps {
    /// Written by the writer before the data.
    pub(crate) begin: u64,
    /// Written by the writer after the data.
    pub(crate) end: u64,
}

/// One transfer's direction and the local bytes it moves.
pub(crate) enum Op<'a> {
    /// From the owner into these bytes.
    Read(&'a mut [u8]),
    /// From these bytes to the owner.
    Write(&'a [u8]),
}

impl Op<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Op::Read(dst) => dst.len(),
            Op::Write(src) => src.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Clone for RdmaBuffer {
    fn clone(&self) -> Self {
        RdmaBuffer {
            id: self.id,
            size: self.size,
            owner: self.owner.clone(),
            kind: self.kind,
            options: self.options.clone(),
            reach: self.reach.clone(),
        }
    }
}

impl PartialEq for RdmaBuffer {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for RdmaBuffer {}

impl std::fmt::Debug for RdmaBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdmaBuffer")
            .field("id", &self.id)
            .field("size", &self.size)
            .field("owner", &self.owner.to_string())
            .field("kind", &self.kind)
            .finish()
    }
}

/// What a handle is on the wire.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: BufferId,
    size: u64,
    owner: ProcRef,
    kind: MemoryKind,
}

impl Serialize for RdmaBuffer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let owner = if self.owner.addr().is_empty() {
            // Made before this process's transport ran: it runs now, or the
            // handle cannot reach anyone.
            ProcRef::here().ok_or_else(|| {
                serde::ser::Error::custom(
                    "an RdmaBuffer leaves its process only once the transport runs \
                     (a proc mesh was started, or this is a worker)",
                )
            })?
        } else {
            self.owner.clone()
        };
        Wire {
            id: self.id,
            size: self.size,
            owner,
            kind: self.kind,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RdmaBuffer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        Ok(RdmaBuffer {
            id: wire.id,
            size: wire.size,
            owner: wire.owner,
            kind: wire.kind,
            options: TransferOptions::default(),
            reach: Arc::default(),
        })
    }
}
