//! How a transfer runs: its deadline, how it splits a large range over
//! streams, and which backends it may take.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

/// Settings of a transfer. [`TransferOptions::default`] reads the
/// environment once per process:
///
/// | Variable | Default | What |
/// |---|---|---|
/// | `MONARCH_RDMA_TIMEOUT_MS` | 60000 | deadline of one transfer (or batch) |
/// | `MONARCH_RDMA_STREAMS` | 4 | most bulk streams one transfer runs in parallel |
/// | `MONARCH_RDMA_CHUNK_BYTES` | 4194304 | bytes each bulk stream carries at least, and the size of the pieces the owner sends |
/// | `MONARCH_RDMA_BACKEND` | `auto` | `auto`, or `bulk` to take the bulk streams even on one host |
///
/// ```
/// use std::time::Duration;
/// use monarch_rdma::TransferOptions;
///
/// let options = TransferOptions {
///     timeout: Duration::from_secs(5),
///     streams: 8,
///     ..TransferOptions::default()
/// };
/// assert_eq!(options.streams, 8);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferOptions {
    /// How long a transfer may take before it fails with
    /// [`RdmaError::Timeout`](crate::RdmaError::Timeout).
    pub timeout: Duration,
    /// The most bulk streams one transfer opens in parallel (at least 1).
    pub streams: usize,
    /// The least bytes a bulk stream carries (a range is split over
    /// `min(streams, len / chunk_bytes)` streams), and the size of the pieces
    /// the owner writes into each: no round trip per piece.
    pub chunk_bytes: usize,
    /// Which backends a transfer may take.
    pub route: Route,
}

/// Which backends a transfer may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The fastest the locality allows.
    Auto,
    /// Bulk streams even where memory could be reached more directly: for
    /// tests, and to compare.
    Bulk,
}

/// The way a transfer reaches the owner's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The owner is this process: one `memcpy` (or one device copy).
    Memcpy,
    /// The owner is on this host and allocated the memory for sharing: this
    /// process maps its pages and copies once.
    SharedMemory,
    /// The owner is on this host, with memory it did not allocate for
    /// sharing: one copy by the kernel (`process_vm_readv`/`writev`).
    ProcessVm,
    /// The owner is on this host, with GPU memory: a CUDA IPC handle.
    CudaIpc,
    /// Bulk streams over the job's authenticated connection (QUIC to
    /// another host), in parallel for large ranges.
    BulkStreams,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Memcpy => "memcpy",
            Backend::SharedMemory => "shared memory",
            Backend::ProcessVm => "process_vm_readv/writev",
            Backend::CudaIpc => "CUDA IPC",
            Backend::BulkStreams => "bulk streams",
        })
    }
}

/// The defaults, read from the environment once.
static FROM_ENV: LazyLock<TransferOptions> = LazyLock::new(|| {
    let number = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0)
            .unwrap_or(default)
    };
    let route = match std::env::var("MONARCH_RDMA_BACKEND").as_deref() {
        Ok("bulk") => Route::Bulk,
        _ => Route::Auto,
    };
    TransferOptions {
        timeout: Duration::from_millis(number("MONARCH_RDMA_TIMEOUT_MS", 60_000)),
        streams: usize::try_from(number("MONARCH_RDMA_STREAMS", 4)).unwrap_or(4),
        chunk_bytes: usize::try_from(number("MONARCH_RDMA_CHUNK_BYTES", 4 << 20))
            .unwrap_or(4 << 20),
        route,
    }
});

impl Default for TransferOptions {
    fn default() -> Self {
        FROM_ENV.clone()
    }
}

impl TransferOptions {
    /// The byte ranges, relative to the start of a transfer of `len` bytes,
    /// that its bulk streams carry.
    pub(crate) fn parts(&self, len: u64) -> Vec<(u64, u64)> {
        let chunk = self.chunk_bytes.max(1) as u64;
        let count = len.div_ceil(chunk).clamp(1, self.streams.max(1) as u64);
        let each = len.div_ceil(count);
        (0..count)
            .map(|i| (i * each, each.min(len.saturating_sub(i * each))))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_range_once() {
        let options = TransferOptions {
            streams: 4,
            chunk_bytes: 10,
            ..TransferOptions::default()
        };
        for len in [1u64, 9, 10, 11, 39, 40, 41, 1000] {
            let parts = options.parts(len);
            assert!(parts.len() <= 4);
            let mut next = 0;
            for (start, n) in parts {
                assert_eq!(start, next);
                next += n;
            }
            assert_eq!(next, len);
        }
        assert_eq!(options.parts(15).len(), 2);
    }
}
