//! Versioned snapshots: one writer publishes, readers in any process pull
//! the newest or a given version, and nobody waits for anybody.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::buffer::Stamps;
use crate::{RdmaBuffer, RdmaError, RegisteredMemory, TransferOptions};

/// Where a slot's stamp written before the data lies.
const BEGIN: u64 = 0;
/// Where a slot's stamp written after the data lies.
const END: u64 = 8;
/// Where a slot's snapshot length lies.
const LEN: u64 = 16;
/// Where a slot's snapshot starts.
const DATA: u64 = 64;

const STAMPS: Stamps = Stamps {
    begin: BEGIN,
    end: END,
};

/// A ring of `N` slots of registered memory holding the newest `N`
/// snapshots (version `v` in slot `v mod N`), for one writer and many
/// readers in other processes, seqlock style: each slot carries a version
/// stamp written before the data and one written after, which readers load
/// after and before their copy. A reader never returns a torn snapshot: it
/// retries while a version is being written, and reports
/// [`RdmaError::Lapped`] once the writer has overwritten the version it
/// wanted. The writer never waits for readers.
///
/// ```
/// use monarch_rdma::SnapshotRing;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let mut ring = SnapshotRing::new(2, 1024)?;
/// let handle = ring.handle(); // send this to the readers
/// assert_eq!(ring.publish(b"weights v1")?, 1);
/// assert_eq!(ring.publish(b"weights v2")?, 2);
/// let mut out = vec![0u8; 1024];
/// let (version, len) = handle.read_newest(&mut out).await?;
/// assert_eq!((version, &out[..len]), (2, &b"weights v2"[..]));
/// # Ok::<(), monarch_rdma::RdmaError>(()) }).unwrap();
/// ```
pub struct SnapshotRing {
    slots: Vec<RegisteredMemory>,
    capacity: usize,
    published: u64,
}

/// What readers hold of a ring: plain data to send them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RingHandle {
    slots: Vec<RdmaBuffer>,
    capacity: u64,
}

impl SnapshotRing {
    /// A ring of `slots` slots (at least one) each holding snapshots of up
    /// to `capacity` bytes.
    pub fn new(slots: usize, capacity: usize) -> Result<Self, RdmaError> {
        if slots == 0 || capacity == 0 {
            return Err(RdmaError::ZeroSize);
        }
        let slots = (0..slots)
            .map(|_| RegisteredMemory::alloc(DATA as usize + capacity))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SnapshotRing {
            slots,
            capacity,
            published: 0,
        })
    }

    /// The handle readers pull snapshots through.
    pub fn handle(&self) -> RingHandle {
        RingHandle {
            slots: self.slots.iter().map(RegisteredMemory::handle).collect(),
            capacity: self.capacity as u64,
        }
    }

    /// The newest version published (0 before the first).
    pub fn version(&self) -> u64 {
        self.published
    }

    /// The most bytes a snapshot may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Publishes `snapshot` as the next version, overwriting the oldest
    /// slot, and returns the version (from 1): announce it with the handle.
    pub fn publish(&mut self, snapshot: &[u8]) -> Result<u64, RdmaError> {
        if snapshot.len() > self.capacity {
            return Err(RdmaError::TooLarge {
                len: snapshot.len() as u64,
                room: self.capacity as u64,
            });
        }
        let version = self.published + 1;
        let slot = &self.slots[(version % self.slots.len() as u64) as usize];
        let entry = slot.entry();
        let base = entry.host_ptr().expect("ring slots are host memory");
        let (begin, end) = stamps(base);
        begin.store(version, Ordering::Relaxed);
        fence(Ordering::Release);
        entry.write_at(LEN as usize, &(snapshot.len() as u64).to_le_bytes())?;
        crate::backend::copy(snapshot.len(), || entry.write_at(DATA as usize, snapshot))?;
        end.store(version, Ordering::Release);
        self.published = version;
        Ok(version)
    }
}

/// The two stamps of the slot at `base`.
fn stamps<'a>(base: *mut u8) -> (&'a AtomicU64, &'a AtomicU64) {
    // SAFETY: a slot starts page-aligned and holds at least `DATA` bytes, so
    // both stamps are in bounds and aligned; every process touches them only
    // atomically; the slot outlives the references, which its caller holds
    // only while it holds the slot.
    unsafe {
        (
            AtomicU64::from_ptr(base.add(BEGIN as usize).cast()),
            AtomicU64::from_ptr(base.add(END as usize).cast()),
        )
    }
}

impl RingHandle {
    /// How many slots the ring has.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The most bytes a snapshot holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// This handle with other transfer options for its reads.
    pub fn with_options(&self, options: TransferOptions) -> Self {
        RingHandle {
            slots: self
                .slots
                .iter()
                .map(|slot| slot.with_options(options.clone()))
                .collect(),
            capacity: self.capacity,
        }
    }

    /// The newest version completely published, if any.
    pub async fn newest(&self) -> Result<Option<u64>, RdmaError> {
        Ok(self.survey().await?.0)
    }

    /// The newest version complete now, and whether any was begun.
    async fn survey(&self) -> Result<(Option<u64>, bool), RdmaError> {
        let mut newest = None;
        let mut begun = false;
        for slot in &self.slots {
            let (end, begin) = slot.read_stamped(0, &mut [], STAMPS).await?;
            begun |= begin != 0;
            if end != 0 && end == begin {
                newest = newest.max(Some(end));
            }
        }
        Ok((newest, begun))
    }

    /// Copies version `version` into `dst` and returns its length; retries
    /// while the version is being written, and fails with
    /// [`RdmaError::Lapped`] once it was overwritten, or
    /// [`RdmaError::NotPublished`].
    pub async fn read_version(&self, version: u64, dst: &mut [u8]) -> Result<usize, RdmaError> {
        if version == 0 {
            return Err(RdmaError::NotPublished { version });
        }
        let slot = &self.slots[(version % self.slots.len() as u64) as usize];
        let patience = slot.options().timeout;
        tokio::time::timeout(patience, read_slot(slot, self.capacity, version, dst))
            .await
            .map_err(|_| RdmaError::Timeout {
                id: slot.id(),
                after: patience,
            })?
    }

    /// Copies the newest version into `dst`: `(version, length)`. While
    /// every slot is being written it waits for one to complete.
    pub async fn read_newest(&self, dst: &mut [u8]) -> Result<(u64, usize), RdmaError> {
        let patience = self.slots[0].options().timeout;
        let newest = async {
            loop {
                match self.survey().await? {
                    (Some(version), _) => match self.read_version(version, dst).await {
                        Ok(len) => return Ok((version, len)),
                        // A newer version came meanwhile: take that one.
                        Err(RdmaError::Lapped { .. }) => continue,
                        Err(error) => return Err(error),
                    },
                    (None, true) => tokio::task::yield_now().await,
                    (None, false) => return Err(RdmaError::NotPublished { version: 1 }),
                }
            }
        };
        tokio::time::timeout(patience, newest)
            .await
            .map_err(|_| RdmaError::Timeout {
                id: self.slots[0].id(),
                after: patience,
            })?
    }
}

/// Reads `version` out of `slot`, retrying while it is being written.
async fn read_slot(
    slot: &RdmaBuffer,
    capacity: u64,
    version: u64,
    dst: &mut [u8],
) -> Result<usize, RdmaError> {
    loop {
        let mut len = [0u8; 8];
        let (end, begin) = slot.read_stamped(LEN, &mut len, STAMPS).await?;
        match check(version, end, begin)? {
            Seen::Intact => {}
            Seen::Writing => {
                tokio::task::yield_now().await;
                continue;
            }
        }
        let len = u64::from_le_bytes(len);
        if len > capacity || len > dst.len() as u64 {
            return Err(RdmaError::TooLarge {
                len,
                room: (dst.len() as u64).min(capacity),
            });
        }
        let len = len as usize;
        let (end, begin) = slot.read_stamped(DATA, &mut dst[..len], STAMPS).await?;
        match check(version, end, begin)? {
            Seen::Intact => return Ok(len),
            Seen::Writing => tokio::task::yield_now().await,
        }
    }
}

/// What a reader saw of a slot around its copy.
enum Seen {
    /// The version it wanted, untouched during the copy.
    Intact,
    /// That version being written: try again.
    Writing,
}

/// Judges stamps `end` (loaded before the copy) and `begin` (after) for
/// `version`.
fn check(version: u64, end: u64, begin: u64) -> Result<Seen, RdmaError> {
    if begin > version || end > version {
        return Err(RdmaError::Lapped {
            version,
            newest: begin.max(end),
        });
    }
    if end == version && begin == version {
        return Ok(Seen::Intact);
    }
    if begin == version {
        return Ok(Seen::Writing);
    }
    Err(RdmaError::NotPublished { version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_judged_as_a_seqlock() {
        assert!(matches!(check(5, 5, 5), Ok(Seen::Intact)));
        assert!(matches!(check(5, 3, 5), Ok(Seen::Writing)));
        assert!(matches!(
            check(5, 5, 7),
            Err(RdmaError::Lapped { newest: 7, .. })
        ));
        assert!(matches!(
            check(5, 3, 3),
            Err(RdmaError::NotPublished { .. })
        ));
    }
}
