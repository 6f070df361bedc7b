//! The liveness table: where other processes of the host check that a
//! buffer is still registered before and after they touch it.
//!
//! Each registration takes a slot of 16 bytes in shared memory of its
//! owner: a stamp (the id's counter shifted left, with the low bit set while
//! the buffer is live; 0 when the slot is free) and a count of accesses in
//! flight from other processes. A reader compares the stamp before and after
//! its copy; an access the kernel makes into memory that was not allocated
//! for sharing holds the count, and the owner waits for it to drain before
//! it frees the memory, so such an access never touches freed memory. An
//! owner whose peer died mid-access waits a bounded time and then leaks the
//! memory rather than freeing it under the peer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use monarch_core::shm::{Access, MappedRegion, RegionHandle, SharedRegion};
use serde::{Deserialize, Serialize};

use crate::{BufferId, RdmaError};

/// Slots per shared chunk of the table.
const SLOTS: usize = 4096;
/// Bytes per slot: stamp and access count.
const SLOT_BYTES: usize = 16;
/// How long an owner waits for accesses in flight before leaking the memory.
const DRAIN: Duration = Duration::from_secs(2);

/// Where another process finds a buffer's slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SlotHandle {
    /// The chunk of the table.
    pub(crate) chunk: RegionHandle,
    /// The slot in it.
    pub(crate) index: u32,
}

/// This process's slot of one registration; freed by [`Slot::release`].
pub(crate) struct Slot {
    chunk: usize,
    index: usize,
    stamp: u64,
}

/// This process's table.
struct Table {
    chunks: Vec<SharedRegion>,
    free: Vec<(usize, usize)>,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    chunks: Vec::new(),
    free: Vec::new(),
});

/// The stamp of a live registration of `id`.
pub(crate) fn live_stamp(id: BufferId) -> u64 {
    (id.counter() << 1) | 1
}

impl Slot {
    /// Takes a slot for `id` and marks it live.
    pub(crate) fn take(id: BufferId) -> Result<Slot, RdmaError> {
        let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        if table.free.is_empty() {
            let region = SharedRegion::new(SLOTS * SLOT_BYTES)
                .map_err(|e| RdmaError::Memory(format!("cannot grow the liveness table: {e}")))?;
            let chunk = table.chunks.len();
            table.chunks.push(region);
            table.free.extend((0..SLOTS).rev().map(|i| (chunk, i)));
        }
        let (chunk, index) = table.free.pop().expect("a free slot after growing");
        let slot = Slot {
            chunk,
            index,
            stamp: live_stamp(id),
        };
        let (stamp, accesses) = words(table.chunks[chunk].as_ptr(), index);
        accesses.store(0, Ordering::SeqCst);
        stamp.store(slot.stamp, Ordering::SeqCst);
        Ok(slot)
    }

    /// Where other processes find this slot.
    pub(crate) fn handle(&self) -> SlotHandle {
        let table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        SlotHandle {
            chunk: table.chunks[self.chunk].handle(),
            index: u32::try_from(self.index).expect("a slot index fits u32"),
        }
    }

    /// Marks the registration dropped and waits for accesses in flight from
    /// other processes. Returns `false` if they did not drain in time: the
    /// memory must then be leaked, and the slot stays dropped for good.
    pub(crate) fn release(self) -> bool {
        let mut table = TABLE.lock().unwrap_or_else(PoisonError::into_inner);
        let (stamp, accesses) = words(table.chunks[self.chunk].as_ptr(), self.index);
        stamp.store(self.stamp & !1, Ordering::SeqCst);
        let started = Instant::now();
        while accesses.load(Ordering::SeqCst) != 0 {
            if started.elapsed() > DRAIN {
                tracing::warn!(
                    "a process of the host did not finish its access to a dropped buffer \
                     within {DRAIN:?}; its memory is leaked rather than freed under it"
                );
                return false;
            }
            std::thread::yield_now();
        }
        stamp.store(0, Ordering::SeqCst);
        table.free.push((self.chunk, self.index));
        true
    }
}

/// A slot of another process's table (or this one's), mapped here.
pub(crate) struct RemoteSlot {
    map: MappedRegion,
    index: usize,
    stamp: u64,
}

impl RemoteSlot {
    /// Maps the slot `handle` names, for the registration `id`.
    pub(crate) fn open(handle: SlotHandle, id: BufferId) -> std::io::Result<Self> {
        let map = handle.chunk.map(Access::ReadWrite)?;
        let index = handle.index as usize;
        if (index + 1) * SLOT_BYTES > map.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the slot lies outside its table",
            ));
        }
        Ok(RemoteSlot {
            map,
            index,
            stamp: live_stamp(id),
        })
    }

    /// Whether the registration is live now.
    pub(crate) fn is_live(&self) -> bool {
        self.words().0.load(Ordering::SeqCst) == self.stamp
    }

    /// Holds the registration for an access of the kernel into its memory:
    /// `None` if it is no longer live.
    pub(crate) fn hold(&self) -> Option<Hold<'_>> {
        let (_, accesses) = self.words();
        accesses.fetch_add(1, Ordering::SeqCst);
        let hold = Hold { slot: self };
        hold.slot.is_live().then_some(hold)
    }

    fn words(&self) -> (&AtomicU64, &AtomicU64) {
        let ptr = self
            .map
            .as_mut_ptr()
            .expect("the table is mapped read-write");
        words(ptr, self.index)
    }
}

/// An access in flight, counted in the owner's slot until dropped.
pub(crate) struct Hold<'a> {
    slot: &'a RemoteSlot,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.slot.words().1.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The two words of slot `index` of the chunk at `base`.
fn words<'a>(base: *mut u8, index: usize) -> (&'a AtomicU64, &'a AtomicU64) {
    assert!(index < SLOTS);
    // SAFETY: `base` is the page-aligned start of a mapping of a whole chunk
    // (SLOTS * SLOT_BYTES bytes; checked by the callers that map one), so
    // both words are in bounds and 8-byte aligned; the mapping outlives the
    // references (each is tied to a table or mapping the caller borrows),
    // and every process touches these words only atomically.
    unsafe {
        let slot = base.add(index * SLOT_BYTES);
        (
            AtomicU64::from_ptr(slot.cast()),
            AtomicU64::from_ptr(slot.add(8).cast()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_live_until_released_and_holds_block_nothing_after() {
        let id = BufferId::next();
        let slot = Slot::take(id).unwrap();
        let remote = RemoteSlot::open(slot.handle(), id).unwrap();
        assert!(remote.is_live());
        {
            let hold = remote.hold();
            assert!(hold.is_some());
        }
        assert!(slot.release());
        assert!(!remote.is_live());
        assert!(remote.hold().is_none());
        let other = BufferId::next();
        let reused = Slot::take(other).unwrap();
        assert!(
            !remote.is_live(),
            "a reused slot is not the old registration"
        );
        assert!(reused.release());
    }
}
