//! Large message arguments between processes on one host, through shared
//! memory rather than a socket.
//!
//! The sender copies a large `Bytes` segment once into an unnamed file in
//! `/dev/shm` (`O_TMPFILE`: no name to leak, freed when the last descriptor
//! closes) and sends its process id and descriptor number instead of the bytes.
//! The receiver opens `/proc/<pid>/fd/<fd>` (possible for the same user only),
//! maps it read-only and hands the mapping to the actor as a `Bytes`, without
//! another copy. When that `Bytes` (and every slice of it) is dropped, or if
//! the mapping fails, the receiver tells the sender, which keeps the file in a
//! small pool: the next large segment is copied into pages that are already
//! allocated, which on a fresh buffer costs as much as the copy itself. A
//! link that closes drops what it was still holding.
//!
//! One buffer sent to many processes (a broadcast) is copied once, and the
//! file goes back to the pool when the last of them releases it. A process
//! that passes on a buffer it mapped (a relay of a cast tree) lends the
//! original file instead of copying it, and holds its own mapping, and so the
//! original sender's lease, until everyone it lent to is done.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use super::shm::unnamed_file;
use crate::wire::codec::Segment;

/// A segment copied into shared memory, held open until every receiver is
/// done with it. Shared by reference count: sending one `Bytes` to many
/// processes of this host (a broadcast) copies it once; the file goes back to
/// the pool when the last lease on it is released.
pub(crate) struct SharedSegment {
    /// `None` only while being dropped.
    file: Option<File>,
    len: u64,
    /// The buffer copied: held so that its address, by which a later send of
    /// the same buffer finds this copy, cannot be reused for other data.
    _source: Bytes,
}

/// The segments alive now, by the address and length of the buffer copied.
static LIVE: Mutex<LiveTable> = Mutex::new(Vec::new());

type LiveTable = Vec<(usize, usize, Weak<SharedSegment>)>;

fn live() -> std::sync::MutexGuard<'static, LiveTable> {
    let mut live = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    live.retain(|(_, _, segment)| segment.strong_count() > 0);
    live
}

/// The live copy of the buffer at `key` (address, length), if any.
fn find_live(key: (usize, usize)) -> Option<Arc<SharedSegment>> {
    find_in(&live(), key)
}

fn find_in(live: &LiveTable, key: (usize, usize)) -> Option<Arc<SharedSegment>> {
    live.iter()
        .filter(|(ptr, len, _)| (*ptr, *len) == key)
        .find_map(|(_, _, segment)| segment.upgrade())
}

/// Other processes' segments mapped here, by the mapping's address and
/// length, with the process and descriptor they came from.
static MAPPED: Mutex<Vec<(usize, usize, u32, i32)>> = Mutex::new(Vec::new());

fn mapped() -> std::sync::MutexGuard<'static, Vec<(usize, usize, u32, i32)>> {
    MAPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A segment lent to one receiver on this host until it releases it.
pub(crate) struct Leased {
    pid: u32,
    fd: i32,
    len: u64,
    /// What keeps the file's bytes in place while the receiver may read them.
    _hold: Hold,
}

enum Hold {
    /// A copy made here.
    Copy { _segment: Arc<SharedSegment> },
    /// A mapping of another process's segment, passed on as it is: holding
    /// it holds that process's lease.
    Mapping { _mapping: Bytes },
}

impl Leased {
    /// Lends `bytes` to a receiver on this host. A buffer that is itself a
    /// whole mapping of another process's segment (a relay passing a cast on)
    /// is described by that segment's file, not copied; any other is copied
    /// into shared memory once, however many receivers it goes to.
    pub(crate) fn new(bytes: &Bytes) -> io::Result<Leased> {
        let key = (bytes.as_ptr() as usize, bytes.len());
        let origin = mapped()
            .iter()
            .find(|(ptr, len, _, _)| (*ptr, *len) == key)
            .map(|(_, _, pid, fd)| (*pid, *fd));
        if let Some((pid, fd)) = origin {
            return Ok(Leased {
                pid,
                fd,
                len: bytes.len() as u64,
                _hold: Hold::Mapping {
                    _mapping: bytes.clone(),
                },
            });
        }
        let copy = SharedSegment::share(bytes)?;
        Ok(Leased {
            pid: std::process::id(),
            fd: copy.file.as_ref().map_or(-1, AsRawFd::as_raw_fd),
            len: copy.len,
            _hold: Hold::Copy { _segment: copy },
        })
    }

    /// How the receiver finds it.
    pub(crate) fn describe(&self, lease: u64) -> Segment {
        Segment::Shared {
            pid: self.pid,
            fd: self.fd,
            len: self.len,
            lease,
        }
    }
}

/// Files of released segments, ready for reuse, up to [`POOL_BYTES`] in all.
static POOL: Mutex<Vec<(File, u64)>> = Mutex::new(Vec::new());
const POOL_BYTES: u64 = 1 << 30;

fn pool() -> std::sync::MutexGuard<'static, Vec<(File, u64)>> {
    POOL.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SharedSegment {
    /// The shared copy of `bytes`: the live one if this buffer was shared
    /// before and some receiver still holds it, else a new copy.
    pub(crate) fn share(bytes: &Bytes) -> io::Result<Arc<Self>> {
        let key = (bytes.as_ptr() as usize, bytes.len());
        if let Some(segment) = find_live(key) {
            return Ok(segment);
        }
        // The copy is made without the table locked: it can take
        // milliseconds, and other buffers' sends need not wait for it.
        let segment = Arc::new(Self::new(bytes)?);
        let mut live = live();
        // A send of the same buffer that copied it meanwhile wins; this copy
        // goes back to the pool.
        if let Some(earlier) = find_in(&live, key) {
            return Ok(earlier);
        }
        live.push((key.0, key.1, Arc::downgrade(&segment)));
        Ok(segment)
    }

    /// Copies `bytes` into a shared-memory file: a pooled one large enough if
    /// there is one, else a new unnamed one.
    fn new(bytes: &Bytes) -> io::Result<Self> {
        let len = bytes.len() as u64;
        let pooled = {
            let mut pool = pool();
            let best = pool
                .iter()
                .enumerate()
                .filter(|(_, (_, size))| *size >= len)
                .min_by_key(|(_, (_, size))| *size)
                .map(|(i, _)| i);
            best.map(|i| pool.swap_remove(i))
        };
        let file = match pooled {
            Some((file, _)) => {
                file.write_all_at(bytes, 0)?;
                file
            }
            None => {
                let mut file = unnamed_file()?;
                file.write_all(bytes)?;
                file
            }
        };
        Ok(SharedSegment {
            file: Some(file),
            len,
            _source: bytes.clone(),
        })
    }
}

/// Every receiver is done with it: keep the file for reuse if the pool has
/// room, else free it (off the caller's task where there is a runtime:
/// freeing takes milliseconds).
impl Drop for SharedSegment {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else { return };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        {
            let mut pool = pool();
            let pooled: u64 = pool.iter().map(|(_, s)| s).sum();
            if pooled + size <= POOL_BYTES {
                pool.push((file, size));
                return;
            }
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(file))),
            Err(_) => drop(file),
        }
    }
}

/// A mapped segment; tells the sender when it is dropped.
struct Mapped {
    map: memmap2::Mmap,
    len: usize,
    released: Option<Box<dyn FnOnce() + Send>>,
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        let at = self.map.as_ptr() as usize;
        mapped().retain(|(ptr, _, _, _)| *ptr != at);
        if let Some(released) = self.released.take() {
            released();
        }
    }
}

/// Maps the first `len` bytes of a segment shared by process `pid` as
/// descriptor `fd`; `released` runs once the returned `Bytes` and all its
/// slices are dropped (or at once, if mapping fails).
pub(crate) fn map(
    pid: u32,
    fd: i32,
    len: u64,
    released: Box<dyn FnOnce() + Send>,
) -> io::Result<Bytes> {
    let opened = File::open(format!("/proc/{pid}/fd/{fd}")).and_then(|file| {
        let size = file.metadata()?.len();
        if size < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("shared segment is {size} bytes, expected at least {len}"),
            ));
        }
        Ok(file)
    });
    let file = match opened {
        Ok(file) => file,
        Err(error) => {
            released();
            return Err(error);
        }
    };
    if len == 0 {
        released();
        return Ok(Bytes::new());
    }
    // SAFETY: the sender wrote the segment completely before sending its
    // descriptor and does not write the file again until `released` has run,
    // that is until this mapping is gone; no other process can reach the
    // unnamed file except through the sender's descriptor table. So the
    // mapped bytes do not change while the mapping lives.
    let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(&file) };
    match map {
        Ok(map) => {
            mapped().push((map.as_ptr() as usize, len as usize, pid, fd));
            Ok(Bytes::from_owner(Mapped {
                map,
                len: len as usize,
                released: Some(released),
            }))
        }
        Err(error) => {
            released();
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Maps what `leased` describes, counting the releases of the mapping.
    fn map_counting(leased: &Leased) -> (Bytes, Arc<AtomicUsize>) {
        let Segment::Shared { pid, fd, len, .. } = leased.describe(0) else {
            panic!("not shared");
        };
        let releases = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&releases);
        let release = move || {
            counter.fetch_add(1, Ordering::SeqCst);
        };
        (map(pid, fd, len, Box::new(release)).unwrap(), releases)
    }

    #[test]
    fn one_buffer_sent_many_times_is_copied_once() {
        let data = Bytes::from(vec![7u8; 2 << 20]);
        let first = SharedSegment::share(&data).unwrap();
        let again = SharedSegment::share(&data.clone()).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "a clone of the buffer shares the copy"
        );
        let part = SharedSegment::share(&data.slice(1..)).unwrap();
        assert!(!Arc::ptr_eq(&first, &part), "a slice is another buffer");
        let other = SharedSegment::share(&Bytes::from(vec![7u8; 2 << 20])).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        drop((first, again));
        // Once every lease is gone the next send makes a fresh copy.
        let later = Leased::new(&data).unwrap();
        let Segment::Shared { pid, fd, len, .. } = later.describe(1) else {
            panic!("not shared");
        };
        assert_eq!(pid, std::process::id());
        let mapped = map(pid, fd, len, Box::new(|| {})).unwrap();
        assert_eq!(mapped, data);
    }

    #[test]
    fn a_mapping_passed_on_is_lent_as_the_original_file() {
        let data = Bytes::from(vec![3u8; 2 << 20]);
        let copy = Leased::new(&data).unwrap();
        let (mapped, released) = map_counting(&copy);
        let Segment::Shared { pid, fd, len, .. } = copy.describe(1) else {
            panic!("not shared");
        };
        // A relay lends what it mapped: the same file, no new copy.
        let passed = Leased::new(&mapped).unwrap();
        assert_eq!(
            passed.describe(2),
            Segment::Shared {
                pid,
                fd,
                len,
                lease: 2
            }
        );
        // A slice of it is another buffer, copied.
        let sliced = Leased::new(&mapped.slice(1..)).unwrap();
        assert_ne!(
            sliced.describe(3),
            Segment::Shared {
                pid,
                fd,
                len: len - 1,
                lease: 3
            }
        );
        // The mapping is released upstream only when the last holder is done.
        drop(mapped);
        drop(sliced);
        assert_eq!(released.load(Ordering::SeqCst), 0, "still lent on");
        drop(passed);
        assert_eq!(released.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_shared_segment_maps_back_unchanged_and_is_released_once() {
        let data = Bytes::from(
            (0..3_000_000u32)
                .map(|i| (i % 253) as u8)
                .collect::<Vec<u8>>(),
        );
        let shared = Leased::new(&data).unwrap();
        let (mapped, releases) = map_counting(&shared);
        let Segment::Shared { pid, fd, len, .. } = shared.describe(1) else {
            panic!("not shared");
        };
        assert_eq!(mapped, data);
        let slice = mapped.slice(10..20);
        drop(mapped);
        assert_eq!(releases.load(Ordering::SeqCst), 0, "a slice still holds it");
        drop(slice);
        assert_eq!(releases.load(Ordering::SeqCst), 1);

        let counter = Arc::clone(&releases);
        let too_long = map(
            pid,
            fd,
            len + 1,
            Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        assert!(too_long.is_err());
        assert_eq!(
            releases.load(Ordering::SeqCst),
            2,
            "a failed map releases at once"
        );
    }
}
