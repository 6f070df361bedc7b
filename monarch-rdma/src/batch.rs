//! Several transfers, possibly to different owners, under one deadline.

use std::time::Duration;

use futures::future::join_all;

use crate::{RdmaBuffer, RdmaError};

/// A batch of reads and writes submitted at once, as Monarch's `RdmaAction`:
/// for parameters scattered over many buffers. They run concurrently; the
/// batch fails with the first failed transfer (by position) once all have
/// finished, or when the deadline passes.
///
/// ```
/// use std::time::Duration;
/// use monarch_rdma::{RdmaBatch, RegisteredMemory};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let a = RegisteredMemory::from_bytes(b"first")?;
/// let b = RegisteredMemory::alloc(6)?;
/// let (mut x, y) = (vec![0u8; 5], b"second".to_vec());
/// let (a, b) = (a.handle(), b.handle());
/// RdmaBatch::new()
///     .read(&a, 0, &mut x)
///     .write(&b, 0, &y)
///     .submit(Duration::from_secs(5))
///     .await?;
/// assert_eq!(x, b"first");
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Default)]
pub struct RdmaBatch<'a> {
    ops: Vec<BatchOp<'a>>,
}

enum BatchOp<'a> {
    Read {
        buffer: &'a RdmaBuffer,
        offset: u64,
        dst: &'a mut [u8],
    },
    Write {
        buffer: &'a RdmaBuffer,
        offset: u64,
        src: &'a [u8],
    },
}

/// A transfer of a batch failed.
#[derive(Debug, thiserror::Error)]
#[error("transfer {index} of the batch failed: {error}")]
pub struct BatchError {
    /// Its position in the batch, from 0.
    pub index: usize,
    /// Why.
    #[source]
    pub error: RdmaError,
}

impl<'a> RdmaBatch<'a> {
    /// An empty batch.
    pub fn new() -> Self {
        RdmaBatch::default()
    }

    /// Adds a read of `dst.len()` bytes at `offset` of `buffer` into `dst`.
    pub fn read(mut self, buffer: &'a RdmaBuffer, offset: u64, dst: &'a mut [u8]) -> Self {
        self.ops.push(BatchOp::Read {
            buffer,
            offset,
            dst,
        });
        self
    }

    /// Adds a write of `src` at `offset` of `buffer`.
    pub fn write(mut self, buffer: &'a RdmaBuffer, offset: u64, src: &'a [u8]) -> Self {
        self.ops.push(BatchOp::Write {
            buffer,
            offset,
            src,
        });
        self
    }

    /// How many transfers the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Runs every transfer at once; all must finish within `deadline`.
    pub async fn submit(self, deadline: Duration) -> Result<(), BatchError> {
        let running = self.ops.into_iter().map(|op| async move {
            match op {
                BatchOp::Read {
                    buffer,
                    offset,
                    dst,
                } => buffer.read_range_into(offset, dst).await,
                BatchOp::Write {
                    buffer,
                    offset,
                    src,
                } => buffer.write_range_from(offset, src).await,
            }
        });
        let results = tokio::time::timeout(deadline, join_all(running))
            .await
            .map_err(|_| BatchError {
                index: 0,
                error: RdmaError::BatchTimeout { after: deadline },
            })?;
        for (index, result) in results.into_iter().enumerate() {
            result.map_err(|error| BatchError { index, error })?;
        }
        Ok(())
    }
}
