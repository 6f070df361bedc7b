//! GPU memory through the CUDA driver, loaded at run time: registration of
//! a `CudaSlice`, copies between it and host memory, and CUDA IPC between
//! processes of one host. Every entry point checks first that a driver and a
//! device are there, so a build with the `cuda` feature fails with "no CUDA
//! device" where there is none instead of panicking.

use std::sync::Arc;

use cudarc::driver::{result, sys, CudaContext, CudaSlice, DevicePtr, PinnedHostSlice};

use crate::RdmaError;

/// Whether a CUDA driver and at least one device are there.
pub(crate) fn available() -> Result<(), RdmaError> {
    // SAFETY: only looks for the driver library; loads nothing into use.
    if !unsafe { sys::is_culib_present() } {
        return Err(RdmaError::NoCudaDevice(
            "no CUDA driver library (libcuda.so) was found".into(),
        ));
    }
    match CudaContext::device_count() {
        Ok(count) if count > 0 => Ok(()),
        Ok(_) => Err(RdmaError::NoCudaDevice("the driver sees no device".into())),
        Err(error) => Err(RdmaError::NoCudaDevice(format!(
            "the driver failed: {error}"
        ))),
    }
}

fn driver(error: impl std::fmt::Display) -> RdmaError {
    RdmaError::Cuda(error.to_string())
}

/// Registered GPU memory: the slice, kept alive, and where it is.
pub(crate) struct DeviceMemory {
    ctx: Arc<CudaContext>,
    ptr: sys::CUdeviceptr,
    len: usize,
    _slice: CudaSlice<u8>,
}

impl DeviceMemory {
    pub(crate) fn new(slice: CudaSlice<u8>) -> Result<Self, RdmaError> {
        available()?;
        let stream = slice.stream().clone();
        let ptr = {
            let (ptr, _synced) = slice.device_ptr(&stream);
            ptr
        };
        stream.synchronize().map_err(driver)?;
        Ok(DeviceMemory {
            ctx: slice.context().clone(),
            ptr,
            len: slice.len(),
            _slice: slice,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn device(&self) -> i32 {
        i32::try_from(self.ctx.ordinal()).unwrap_or(i32::MAX)
    }

    pub(crate) fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), RdmaError> {
        // SAFETY: `_slice` keeps the allocation of `len` bytes at `ptr`.
        unsafe { device_to_host(&self.ctx, self.ptr, self.len, offset, out) }
    }

    pub(crate) fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), RdmaError> {
        // SAFETY: as in `read_at`.
        unsafe { host_to_device(&self.ctx, self.ptr, self.len, offset, data) }
    }

    /// A pinned host buffer of `len` bytes for staging copies out of the
    /// device (not write-combined: the CPU reads it).
    pub(crate) fn staging(&self, len: usize) -> Result<PinnedHostSlice<u8>, RdmaError> {
        // SAFETY: the bytes are uninitialised until a copy fills them, and
        // are only read after one did.
        unsafe { self.ctx.alloc_pinned_with_flags::<u8>(len, 0) }.map_err(driver)
    }

    /// Copies `len` bytes at `offset` into `staging`.
    pub(crate) fn stage(
        &self,
        offset: usize,
        staging: &mut PinnedHostSlice<u8>,
        len: usize,
    ) -> Result<(), RdmaError> {
        let host = staging.as_mut_slice().map_err(driver)?;
        self.read_at(offset, &mut host[..len])
    }

    /// The IPC handle another process opens this memory with: the driver's
    /// 64 bytes of the allocation, then the memory's offset in it.
    pub(crate) fn ipc_handle(&self) -> Result<Vec<u8>, RdmaError> {
        self.ctx.bind_to_thread().map_err(driver)?;
        let (mut base, mut size) = (0, 0);
        // SAFETY: out-parameters of plain integers; `ptr` is a live device
        // pointer of this context.
        unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, self.ptr) }
            .result()
            .map_err(driver)?;
        let mut handle = sys::CUipcMemHandle { reserved: [0; 64] };
        // SAFETY: `handle` is a valid out-parameter; `base` starts a live
        // allocation. Memory from a stream-ordered pool has no IPC handle:
        // the driver then fails, and readers take bulk streams.
        unsafe { sys::cuIpcGetMemHandle(&mut handle, base) }
            .result()
            .map_err(driver)?;
        let mut bytes: Vec<u8> = handle.reserved.iter().map(|b| *b as u8).collect();
        bytes.extend_from_slice(&(self.ptr - base).to_le_bytes());
        Ok(bytes)
    }
}

/// GPU memory of another process of this host, opened through CUDA IPC.
pub(crate) struct IpcMemory {
    ctx: Arc<CudaContext>,
    base: sys::CUdeviceptr,
    ptr: sys::CUdeviceptr,
    len: usize,
}

// SAFETY: the device pointer is plain data the driver resolves in `ctx`,
// which is bound to the calling thread before every use.
unsafe impl Send for IpcMemory {}
// SAFETY: as for `Send`; the driver serialises copies itself.
unsafe impl Sync for IpcMemory {}

impl IpcMemory {
    /// Opens the memory `handle` (from [`DeviceMemory::ipc_handle`]) names,
    /// `len` bytes on device `device`.
    pub(crate) fn open(handle: &[u8], device: i32, len: u64) -> Result<Self, RdmaError> {
        available()?;
        if handle.len() != 72 {
            return Err(RdmaError::Cuda(format!(
                "an IPC handle of {} bytes, not 72",
                handle.len()
            )));
        }
        let ordinal = usize::try_from(device).map_err(driver)?;
        let ctx = CudaContext::new(ordinal).map_err(driver)?;
        let mut raw = sys::CUipcMemHandle { reserved: [0; 64] };
        for (to, from) in raw.reserved.iter_mut().zip(&handle[..64]) {
            *to = *from as _;
        }
        let offset = u64::from_le_bytes(handle[64..72].try_into().expect("eight bytes"));
        let mut base = 0;
        // SAFETY: `base` is a valid out-parameter and `raw` a handle of the
        // driver's making; the context is bound to this thread.
        unsafe {
            sys::cuIpcOpenMemHandle_v2(
                &mut base,
                raw,
                sys::CUipcMem_flags::CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS as u32,
            )
        }
        .result()
        .map_err(driver)?;
        Ok(IpcMemory {
            ctx,
            base,
            ptr: base + offset,
            len: usize::try_from(len).map_err(driver)?,
        })
    }

    pub(crate) fn read_at(&self, offset: usize, out: &mut [u8]) -> Result<(), RdmaError> {
        // SAFETY: the opened memory holds `len` bytes at `ptr` until drop.
        unsafe { device_to_host(&self.ctx, self.ptr, self.len, offset, out) }
    }

    pub(crate) fn write_at(&self, offset: usize, data: &[u8]) -> Result<(), RdmaError> {
        // SAFETY: as in `read_at`.
        unsafe { host_to_device(&self.ctx, self.ptr, self.len, offset, data) }
    }
}

impl Drop for IpcMemory {
    fn drop(&mut self) {
        if self.ctx.bind_to_thread().is_ok() {
            // SAFETY: `base` was opened by cuIpcOpenMemHandle and is closed
            // once, here.
            let _ = unsafe { sys::cuIpcCloseMemHandle(self.base) };
        }
    }
}

/// Copies `out.len()` bytes at `offset` of the `size` bytes at `ptr` into
/// `out`.
///
/// # Safety
///
/// `ptr` must start `size` bytes of device memory of `ctx`, live for the call.
unsafe fn device_to_host(
    ctx: &CudaContext,
    ptr: sys::CUdeviceptr,
    size: usize,
    offset: usize,
    out: &mut [u8],
) -> Result<(), RdmaError> {
    check(offset, out.len(), size)?;
    ctx.bind_to_thread().map_err(driver)?;
    // SAFETY: the range lies inside the memory (checked), live by the
    // caller's guarantee.
    unsafe { result::memcpy_dtoh_sync(out, ptr + offset as u64) }.map_err(driver)
}

/// Copies `data` to `offset` of the `size` bytes at `ptr`.
///
/// # Safety
///
/// As for [`device_to_host`].
unsafe fn host_to_device(
    ctx: &CudaContext,
    ptr: sys::CUdeviceptr,
    size: usize,
    offset: usize,
    data: &[u8],
) -> Result<(), RdmaError> {
    check(offset, data.len(), size)?;
    ctx.bind_to_thread().map_err(driver)?;
    // SAFETY: as in `device_to_host`.
    unsafe { result::memcpy_htod_sync(ptr + offset as u64, data) }.map_err(driver)
}

fn check(offset: usize, len: usize, size: usize) -> Result<(), RdmaError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(RdmaError::Cuda(format!(
            "{len} bytes at {offset} lie outside {size} bytes of device memory"
        ))),
    }
}
