//! Shared memory between the processes of one host: regions a process
//! allocates for sharing, and the handles by which another process of the job
//! on the same host maps them.
//!
//! A region is an unnamed file in `/dev/shm` (opened with `O_TMPFILE`: no name
//! to leak, like a memfd; freed when the last descriptor and mapping are
//! gone), mapped read-write and page-aligned. Its [`RegionHandle`] is plain
//! data, the owner's process id, the descriptor number and the length, so it
//! travels in messages; another process of the same user on the host opens it
//! through `/proc/<pid>/fd/<fd>` and maps it. This is what large message
//! arguments between processes of a host travel through, and what the RDMA
//! crate's same-host backend reads and writes.
//!
//! ```
//! use monarch_core::shm::{Access, SharedRegion};
//!
//! let region = SharedRegion::new(4096)?;
//! region.write_at(0, b"weights")?;
//! // Another process of the host maps `region.handle()`; this one may too.
//! let mapped = region.handle().map(Access::ReadOnly)?;
//! let mut out = [0u8; 7];
//! mapped.read_at(0, &mut out)?;
//! assert_eq!(&out, b"weights");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Memory shared between processes can change under a reader at any time: the
//! regions give access through copies ([`SharedRegion::read_at`],
//! [`SharedRegion::write_at`]) and raw pointers, never Rust references to the
//! shared bytes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;

use serde::{Deserialize, Serialize};

/// Where unnamed files live: a memory-backed file system.
const SHM_DIR: &str = "/dev/shm";

/// A new unnamed, memory-backed file of this process, readable and writable
/// by this user only.
pub(crate) fn unnamed_file() -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(SHM_DIR)
}

/// Shared memory this process owns: it lives until the region and every
/// mapping of it in any process are gone.
pub struct SharedRegion {
    file: File,
    map: memmap2::MmapRaw,
    len: usize,
}

/// How a mapping may be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Copies out only.
    ReadOnly,
    /// Copies in and out.
    ReadWrite,
}

/// How another process of the host finds a region: its owner's process id,
/// the descriptor it holds the region's file open as, and the region's
/// length. Valid while the owner holds the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RegionHandle {
    pid: u32,
    fd: i32,
    len: u64,
}

/// A mapping of a region owned by another process (or this one).
pub struct MappedRegion {
    map: memmap2::MmapRaw,
    len: usize,
    access: Access,
}

impl SharedRegion {
    /// A zeroed region of `len` bytes (at least one), page-aligned.
    pub fn new(len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a shared region needs at least one byte",
            ));
        }
        let file = unnamed_file()?;
        file.set_len(len as u64)?;
        let map = memmap2::MmapOptions::new().len(len).map_raw(&file)?;
        Ok(SharedRegion { file, map, len })
    }

    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never: a region has at least one byte).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The handle another process of this host maps the region with.
    pub fn handle(&self) -> RegionHandle {
        RegionHandle {
            pid: std::process::id(),
            fd: self.file.as_raw_fd(),
            len: self.len as u64,
        }
    }

    /// The first byte. Other processes may write the region at any time:
    /// access through the pointer must allow for that.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// Copies `out.len()` bytes starting at `offset` into `out`.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> io::Result<()> {
        copy_out(self.map.as_ptr(), self.len, offset, out)
    }

    /// Copies `data` into the region starting at `offset`.
    pub fn write_at(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        copy_in(self.map.as_mut_ptr(), self.len, offset, data)
    }
}

impl RegionHandle {
    /// The region's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region is empty (never for a handle of a live region).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The process that owns the region.
    pub fn owner_pid(&self) -> u32 {
        self.pid
    }

    /// Maps the region. Fails if the owner is gone, is another user's, or no
    /// longer has it open, or if its file is shorter than the handle says.
    pub fn map(&self, access: Access) -> io::Result<MappedRegion> {
        self.map_with(access, false)
    }

    /// Maps the region as [`RegionHandle::map`] does, with every page mapped
    /// in at once (`MAP_POPULATE`): the first pass over a large region then
    /// takes no page faults.
    pub fn map_populated(&self, access: Access) -> io::Result<MappedRegion> {
        self.map_with(access, true)
    }

    fn map_with(&self, access: Access, populate: bool) -> io::Result<MappedRegion> {
        let path = format!("/proc/{}/fd/{}", self.pid, self.fd);
        let file = match access {
            Access::ReadOnly => File::open(&path)?,
            Access::ReadWrite => OpenOptions::new().read(true).write(true).open(&path)?,
        };
        let size = file.metadata()?.len();
        if size < self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the shared region is {size} bytes, expected {}", self.len),
            ));
        }
        let len = usize::try_from(self.len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "region too large"))?;
        let mut options = memmap2::MmapOptions::new();
        options.len(len);
        if populate {
            options.populate();
        }
        let map = match access {
            Access::ReadOnly => options.map_raw_read_only(&file)?,
            Access::ReadWrite => options.map_raw(&file)?,
        };
        Ok(MappedRegion { map, len, access })
    }
}

impl MappedRegion {
    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte. The owner and other processes may write the region at
    /// any time: access through the pointer must allow for that.
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// The first byte, for writing: `None` for a read-only mapping.
    pub fn as_mut_ptr(&self) -> Option<*mut u8> {
        (self.access == Access::ReadWrite).then(|| self.map.as_mut_ptr())
    }

    /// Copies `out.len()` bytes starting at `offset` into `out`.
    pub fn read_at(&self, offset: usize, out: &mut [u8]) -> io::Result<()> {
        copy_out(self.map.as_ptr(), self.len, offset, out)
    }

    /// Copies `data` into the region starting at `offset`; the mapping must
    /// be [`Access::ReadWrite`].
    pub fn write_at(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        if self.access != Access::ReadWrite {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the region is mapped read-only",
            ));
        }
        copy_in(self.map.as_mut_ptr(), self.len, offset, data)
    }
}

fn check(len: usize, offset: usize, count: usize) -> io::Result<()> {
    match offset.checked_add(count) {
        Some(end) if end <= len => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{count} bytes at offset {offset} do not fit a region of {len} bytes"),
        )),
    }
}

fn copy_out(base: *const u8, len: usize, offset: usize, out: &mut [u8]) -> io::Result<()> {
    check(len, offset, out.len())?;
    // SAFETY: `offset..offset + out.len()` lies inside the mapping of `len`
    // bytes at `base` (checked above), which lives as long as the borrowed
    // region or mapping; `out` is a separate, exclusively borrowed buffer.
    unsafe { std::ptr::copy_nonoverlapping(base.add(offset), out.as_mut_ptr(), out.len()) };
    Ok(())
}

fn copy_in(base: *mut u8, len: usize, offset: usize, data: &[u8]) -> io::Result<()> {
    check(len, offset, data.len())?;
    // SAFETY: as for `copy_out`; the mapping is writable, and `data` is not
    // part of it (a caller cannot hold a Rust reference into shared memory).
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), base.add(offset), data.len()) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_maps_back_both_ways_and_checks_bounds() {
        let region = SharedRegion::new(3 * 4096 + 1).unwrap();
        assert_eq!(region.as_ptr() as usize % 4096, 0, "page-aligned");
        region.write_at(4090, b"across a page").unwrap();
        let writable = region.handle().map(Access::ReadWrite).unwrap();
        let mut out = [0u8; 13];
        writable.read_at(4090, &mut out).unwrap();
        assert_eq!(&out, b"across a page");
        writable.write_at(3 * 4096, b"!").unwrap();
        let mut last = [0u8; 1];
        region.read_at(3 * 4096, &mut last).unwrap();
        assert_eq!(&last, b"!");
        assert!(region.write_at(3 * 4096, b"no").is_err());
        assert!(writable.read_at(usize::MAX, &mut last).is_err());
        let read_only = region.handle().map(Access::ReadOnly).unwrap();
        assert!(read_only.write_at(0, b"x").is_err());
        assert!(read_only.as_mut_ptr().is_none());
        let populated = region.handle().map_populated(Access::ReadWrite).unwrap();
        let mut again = [0u8; 13];
        populated.read_at(4090, &mut again).unwrap();
        assert_eq!(&again, b"across a page");
        assert!(SharedRegion::new(0).is_err());
    }

    #[test]
    fn a_handle_travels_as_plain_data() {
        let region = SharedRegion::new(4096).unwrap();
        let handle = region.handle();
        assert_eq!(handle.owner_pid(), std::process::id());
        assert_eq!(handle.len(), 4096);
        let travelled: RegionHandle =
            postcard::from_bytes(&postcard::to_allocvec(&handle).unwrap()).unwrap();
        assert_eq!(travelled, handle);
        let too_long = RegionHandle {
            len: 8192,
            ..handle
        };
        assert!(
            too_long.map(Access::ReadOnly).is_err(),
            "longer than the file"
        );
    }
}
