//! The actor the transfer tests and the benchmark run in worker processes:
//! it registers memory, reads and writes other processes' memory, and
//! publishes to and pulls from snapshot rings.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use monarch_derive::actor;
use monarch_rdma::{
    BufferId, RdmaBuffer, RdmaError, RegisteredMemory, RingHandle, Route, SnapshotRing,
    TransferOptions,
};
use serde::{Deserialize, Serialize};

/// How memory is registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    /// `RegisteredMemory::alloc`, filled.
    Shared,
    /// `RegisteredMemory::from_vec`.
    Vec,
    /// `RegisteredMemory::from_bytes_mut`.
    BytesMut,
}

/// Transfer options that travel in messages.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct Opts {
    /// Take bulk streams even on one host.
    pub(crate) bulk: bool,
    /// Bulk streams in parallel.
    pub(crate) streams: usize,
    /// Bytes each carries at least.
    pub(crate) chunk: usize,
}

impl Opts {
    pub(crate) const AUTO: Opts = Opts {
        bulk: false,
        streams: 4,
        chunk: 4 << 20,
    };
    pub(crate) const BULK: Opts = Opts {
        bulk: true,
        streams: 4,
        chunk: 4 << 20,
    };

    pub(crate) fn apply(self, handle: &RdmaBuffer) -> RdmaBuffer {
        handle.with_options(self.options())
    }

    pub(crate) fn options(self) -> TransferOptions {
        TransferOptions {
            timeout: Duration::from_secs(60),
            streams: self.streams,
            chunk_bytes: self.chunk,
            route: if self.bulk { Route::Bulk } else { Route::Auto },
        }
    }
}

/// The byte at `index` of memory filled with `seed`.
pub(crate) fn pattern(seed: u8, index: u64) -> u8 {
    (index.wrapping_mul(31) as u8) ^ seed
}

/// `len` bytes of the pattern of `seed`.
pub(crate) fn filled(seed: u8, len: u64) -> Vec<u8> {
    (0..len).map(|i| pattern(seed, i)).collect()
}

/// What a reader of a ring saw.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Pulled {
    /// Snapshots read whole and checked.
    pub(crate) intact: u64,
    /// Reads that found their version overwritten.
    pub(crate) lapped: u64,
    /// Snapshots whose bytes were not all of their version: must stay 0.
    pub(crate) torn: u64,
    /// The newest version seen.
    pub(crate) newest: u64,
    /// Seconds each read took.
    pub(crate) seconds: Vec<f64>,
}

/// A snapshot of version `version`: every word is the version; its length
/// varies with the version so that a torn length shows too.
pub(crate) fn snapshot(version: u64, capacity: usize) -> Vec<u8> {
    let words = capacity / 8 - (version % 7) as usize;
    std::iter::repeat_n(version.to_le_bytes(), words)
        .flatten()
        .collect()
}

/// Whether `bytes` is exactly [`snapshot`]`(version, capacity)`.
pub(crate) fn is_snapshot(bytes: &[u8], version: u64, capacity: usize) -> bool {
    let words = capacity / 8 - (version % 7) as usize;
    bytes.len() == words * 8
        && bytes
            .chunks_exact(8)
            .all(|word| u64::from_le_bytes(word.try_into().unwrap()) == version)
}

#[derive(Default)]
pub(crate) struct Peer {
    kept: HashMap<BufferId, RegisteredMemory>,
    ring: Option<(SnapshotRing, Vec<u8>)>,
}

#[actor]
impl Peer {
    /// Registers `len` bytes filled with the pattern of `seed`.
    #[endpoint]
    async fn register(&mut self, kind: Kind, len: u64, seed: u8) -> Result<RdmaBuffer, String> {
        // Filling a large buffer takes a while: off the runtime's threads.
        let memory = tokio::task::spawn_blocking(move || register(kind, len, seed))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let handle = memory.handle();
        self.kept.insert(memory.id(), memory);
        Ok(handle)
    }

    /// The owner's own view of `len` bytes at `offset` of buffer `id`.
    #[endpoint]
    async fn bytes(&self, id: BufferId, offset: u64, len: u64) -> Result<Vec<u8>, String> {
        let memory = self.kept.get(&id).ok_or("no such buffer here")?;
        let mut out = vec![0u8; len as usize];
        memory
            .read_at(offset as usize, &mut out)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// Drops the registration of buffer `id`.
    #[endpoint]
    async fn release(&mut self, id: BufferId) -> bool {
        self.kept.remove(&id).is_some()
    }

    /// Reads `len` bytes at `offset` through `handle`: the bytes and the
    /// backend taken.
    #[endpoint]
    async fn read(
        &self,
        handle: RdmaBuffer,
        offset: u64,
        len: u64,
        opts: Opts,
    ) -> Result<(Vec<u8>, String), RdmaError> {
        let handle = opts.apply(&handle);
        let mut out = vec![0u8; len as usize];
        handle.read_range_into(offset, &mut out).await?;
        Ok((out, handle.backend().to_string()))
    }

    /// Writes `data` at `offset` through `handle`: the backend taken.
    #[endpoint]
    async fn write(
        &self,
        handle: RdmaBuffer,
        offset: u64,
        data: Vec<u8>,
        opts: Opts,
    ) -> Result<String, RdmaError> {
        let handle = opts.apply(&handle);
        handle.write_range_from(offset, &data).await?;
        Ok(handle.backend().to_string())
    }

    /// Reads the whole buffer `repeats` times into one destination: the
    /// seconds each read took, and whether the last matched `seed`'s
    /// pattern.
    #[endpoint]
    async fn time_reads(
        &self,
        handle: RdmaBuffer,
        repeats: u32,
        opts: Opts,
        seed: u8,
    ) -> Result<(Vec<f64>, bool), RdmaError> {
        let handle = opts.apply(&handle);
        let mut dst = vec![1u8; handle.size() as usize];
        let mut seconds = Vec::new();
        for _ in 0..repeats {
            let started = Instant::now();
            handle.read_into(&mut dst).await?;
            seconds.push(started.elapsed().as_secs_f64());
        }
        let step = (dst.len() / 4096).max(1);
        let matches = (0..dst.len())
            .step_by(step)
            .all(|i| dst[i] == pattern(seed, i as u64));
        Ok((seconds, matches))
    }

    /// Makes a ring of `slots` slots of `capacity` bytes and publishes
    /// `versions` snapshots into it, as fast as it can, once `start` is
    /// told; returns the ring's handle at once.
    #[endpoint]
    async fn ring(
        &mut self,
        slots: usize,
        capacity: usize,
        versions: u64,
        pace_us: u64,
    ) -> Result<RingHandle, String> {
        let mut ring = SnapshotRing::new(slots, capacity).map_err(|e| e.to_string())?;
        let handle = ring.handle();
        ring.publish(&snapshot(1, capacity))
            .map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            for version in 2..=versions {
                if ring.publish(&snapshot(version, capacity)).is_err() {
                    return;
                }
                if pace_us > 0 {
                    std::thread::sleep(Duration::from_micros(pace_us));
                }
            }
            // Keep the ring alive for late readers.
            std::thread::sleep(Duration::from_secs(30));
        });
        Ok(handle)
    }

    /// Makes a ring of two slots for snapshots of `len` bytes, to publish
    /// into with [`Peer::publish_timed`].
    #[endpoint]
    async fn make_ring(&mut self, len: usize) -> Result<RingHandle, RdmaError> {
        let ring = SnapshotRing::new(2, len)?;
        let handle = ring.handle();
        let mut ring = ring;
        ring.publish(&vec![7u8; len])?;
        self.ring = Some((ring, vec![7u8; len]));
        Ok(handle)
    }

    /// Publishes the ring's snapshot `repeats` times: the seconds each
    /// publish took.
    #[endpoint]
    async fn publish_timed(&mut self, repeats: u32) -> Result<Vec<f64>, RdmaError> {
        let (ring, data) = self.ring.as_mut().ok_or(RdmaError::ZeroSize)?;
        let mut seconds = Vec::new();
        for _ in 0..repeats {
            let started = Instant::now();
            ring.publish(data)?;
            seconds.push(started.elapsed().as_secs_f64());
            // Let the readers in between publishes.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(seconds)
    }

    /// Starts a bare quinn server of `len` bytes here: its address.
    #[endpoint]
    async fn quinn_source(&self, len: u64) -> Result<String, String> {
        monarch_core::testing::bare_quinn_source(len as usize).await
    }

    /// Takes a message argument: its length.
    #[endpoint]
    async fn sink(&self, data: bytes::Bytes) -> u64 {
        data.len() as u64
    }

    /// Pulls the newest snapshot `reads` times and checks each whole.
    #[endpoint]
    async fn pull(
        &self,
        ring: RingHandle,
        reads: u64,
        opts: Opts,
        check: bool,
    ) -> Result<Pulled, RdmaError> {
        pull(&ring, reads, opts, check).await
    }
}

impl Pulled {
    fn judge(&mut self, check: bool, bytes: &[u8], version: u64, capacity: usize) {
        if !check || is_snapshot(bytes, version, capacity) {
            self.intact += 1;
        } else {
            self.torn += 1;
        }
    }
}

/// Registers `len` bytes of `kind` filled with the pattern of `seed`.
pub(crate) fn register(kind: Kind, len: u64, seed: u8) -> Result<RegisteredMemory, RdmaError> {
    let bytes = filled(seed, len);
    match kind {
        Kind::Shared => RegisteredMemory::from_bytes(&bytes),
        Kind::Vec => RegisteredMemory::from_vec(bytes),
        Kind::BytesMut => RegisteredMemory::from_bytes_mut(bytes.as_slice().into()),
    }
}

/// Pulls the newest snapshot of `ring` `reads` times.
pub(crate) async fn pull(
    ring: &RingHandle,
    reads: u64,
    opts: Opts,
    check: bool,
) -> Result<Pulled, RdmaError> {
    let ring = ring.with_options(opts.options());
    let capacity = ring.capacity() as usize;
    let mut out = vec![0u8; capacity];
    let mut pulled = Pulled::default();
    for _ in 0..reads {
        let started = Instant::now();
        match ring.read_newest(&mut out).await {
            Ok((version, len)) => {
                pulled.seconds.push(started.elapsed().as_secs_f64());
                pulled.newest = pulled.newest.max(version);
                pulled.judge(check, &out[..len], version, capacity);
                if check {
                    // The same version again: by now the writer has likely
                    // overwritten it, mid-copy or before.
                    match ring.read_version(version, &mut out).await {
                        Ok(len) => pulled.judge(true, &out[..len], version, capacity),
                        Err(RdmaError::Lapped { .. }) => pulled.lapped += 1,
                        Err(error) => return Err(error),
                    }
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(pulled)
}
