//! Bulk streams to the owner's process: the backend that reaches anywhere,
//! over the job's authenticated connection (QUIC between hosts, a Unix
//! socket of its own on one host).
//!
//! The protocol, `monarch-rdma/1`, runs one request per stream. Every
//! message is a little-endian `u32` length and a postcard body. For a read
//! the reader sends a [`Request`]; the owner answers a [`Status`], the bytes
//! (written in pieces of the reader's chunk size, with no round trip per
//! piece), and a final [`Status`]. For a write the owner answers a
//! [`Status`] before the reader sends its bytes, and a final one after. A
//! large range is split over several streams that run at once.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::future::try_join_all;
use monarch_core::bulk::{self, BulkStream};
use monarch_core::{BulkError, ProcRef};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend::seqlock_copy;
use crate::buffer::{Op, RdmaBuffer, Stamps};
use crate::manager::RdmaManager;
use crate::memory::{lookup, Entry};
use crate::{BufferId, RdmaError};

/// The bulk protocol's name.
pub(crate) const PROTOCOL: &str = "monarch-rdma/1";

/// The largest control message either side accepts.
const MAX_MESSAGE: usize = 64 << 10;

/// What a reader asks of the owner.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Send `len` bytes at `offset`, in pieces of `chunk` bytes; with
    /// `stamps`, between loads of the two version stamps.
    Read {
        id: BufferId,
        offset: u64,
        len: u64,
        chunk: u64,
        stamps: Option<Stamps>,
    },
    /// Take `len` bytes for `offset`.
    Write { id: BufferId, offset: u64, len: u64 },
}

/// Whether the owner goes on (before the bytes) or finished (after them);
/// a finished read with stamps carries what they were.
type Status = Result<Option<(u64, u64)>, RdmaError>;

/// Whether this process serves the protocol now.
static SERVING: AtomicBool = AtomicBool::new(false);

/// Serves bulk streams for this process's registrations, if it does not
/// already.
pub(crate) fn serve() -> Result<(), RdmaError> {
    if SERVING.load(Ordering::Acquire) {
        return Ok(());
    }
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| RdmaError::Memory("serving bulk streams needs a tokio runtime".into()))?;
    let mut listener = match bulk::listen(PROTOCOL) {
        Ok(listener) => listener,
        Err(BulkError::AlreadyListening(_)) => return Ok(()),
        Err(error) => return Err(RdmaError::Memory(error.to_string())),
    };
    SERVING.store(true, Ordering::Release);
    runtime.spawn(async move {
        while let Some(stream) = listener.accept().await {
            tokio::spawn(answer(stream));
        }
        SERVING.store(false, Ordering::Release);
    });
    Ok(())
}

/// Serves bulk streams if the transport runs and a runtime is at hand; a
/// later reader asks the manager otherwise.
pub(crate) fn serve_if_running() {
    if !SERVING.load(Ordering::Acquire)
        && ProcRef::here().is_some()
        && tokio::runtime::Handle::try_current().is_ok()
    {
        let _ = serve();
    }
}

/// Answers the request on one stream.
async fn answer(mut stream: BulkStream) {
    let request = match read_message::<Request>(&mut stream).await {
        Ok(request) => request,
        Err(error) => {
            tracing::debug!(%error, peer = %stream.peer(), "a bulk request was unreadable");
            return;
        }
    };
    let result = match request {
        Request::Read {
            id,
            offset,
            len,
            chunk,
            stamps,
        } => send_range(&mut stream, id, offset, len, chunk, stamps).await,
        Request::Write { id, offset, len } => take_range(&mut stream, id, offset, len).await,
    };
    if let Err(error) = result {
        tracing::debug!(%error, peer = %stream.peer(), "a bulk transfer broke off");
    }
    let _ = stream.shutdown().await;
}

/// The registration `id`, checked for `len` bytes at `offset`, or the status
/// that says why not (already sent).
async fn ready(
    stream: &mut BulkStream,
    id: BufferId,
    offset: u64,
    len: u64,
) -> std::io::Result<Option<std::sync::Arc<Entry>>> {
    let entry = lookup(id).and_then(|entry| entry.check_range(offset, len).map(|()| entry));
    match entry {
        Ok(entry) => {
            write_message(stream, &Status::Ok(None)).await?;
            Ok(Some(entry))
        }
        Err(error) => {
            write_message(stream, &Status::Err(error)).await?;
            Ok(None)
        }
    }
}

async fn send_range(
    stream: &mut BulkStream,
    id: BufferId,
    offset: u64,
    len: u64,
    chunk: u64,
    stamps: Option<Stamps>,
) -> std::io::Result<()> {
    let Some(entry) = ready(stream, id, offset, len).await? else {
        return Ok(());
    };
    let chunk = chunk.clamp(64 << 10, 64 << 20);
    let mut seen = None;
    let host = entry.host_ptr().is_some();
    match (host, stamps) {
        (true, Some(stamps)) => {
            // A stamped read copies before sending: the stamps must bracket
            // the copy itself.
            let mut bytes = vec![0u8; len as usize];
            seen = entry.host_ptr().map(|base| {
                // SAFETY: the range was checked against the registration and
                // the reader's handle checked the stamps; `entry` keeps the
                // memory alive; stamps are only touched atomically.
                crate::backend::copy(bytes.len(), || unsafe {
                    seqlock_copy(base, offset, &mut bytes, stamps)
                })
            });
            stream.write_bytes(Bytes::from(bytes)).await?;
        }
        (true, None) => {
            let mut at = offset;
            while at < offset + len {
                let n = chunk.min(offset + len - at);
                let piece = Bytes::from_owner(Piece {
                    entry: entry.clone(),
                    offset: at as usize,
                    len: n as usize,
                });
                stream.write_bytes(piece).await?;
                at += n;
            }
        }
        (false, _) => {
            if let Err(error) = send_device(stream, &entry, offset, len, chunk).await? {
                return write_message(stream, &Status::Err(error)).await;
            }
        }
    }
    write_message(stream, &Status::Ok(seen)).await
}

/// Sends GPU memory through a pinned staging buffer, a chunk at a time.
#[cfg(feature = "cuda")]
async fn send_device(
    stream: &mut BulkStream,
    entry: &Entry,
    offset: u64,
    len: u64,
    chunk: u64,
) -> std::io::Result<Result<(), RdmaError>> {
    let crate::memory::Storage::Cuda(memory) = &*entry.storage else {
        return Ok(Err(RdmaError::Broken {
            id: entry.id,
            why: "not device memory".into(),
        }));
    };
    let mut staging = match memory.staging(chunk.min(len) as usize) {
        Ok(staging) => staging,
        Err(error) => return Ok(Err(error)),
    };
    let mut at = offset;
    while at < offset + len {
        let n = chunk.min(offset + len - at) as usize;
        if let Err(error) = memory.stage(at as usize, &mut staging, n) {
            return Ok(Err(error));
        }
        let staged = match staging.as_slice() {
            Ok(staged) => &staged[..n],
            Err(error) => return Ok(Err(RdmaError::Cuda(error.to_string()))),
        };
        stream.write_all(staged).await?;
        at += n as u64;
    }
    Ok(Ok(()))
}

/// Without the `cuda` feature all memory is host memory.
#[cfg(not(feature = "cuda"))]
async fn send_device(
    _stream: &mut BulkStream,
    entry: &Entry,
    _offset: u64,
    _len: u64,
    _chunk: u64,
) -> std::io::Result<Result<(), RdmaError>> {
    Ok(Err(RdmaError::Broken {
        id: entry.id,
        why: "not host memory".into(),
    }))
}

async fn take_range(
    stream: &mut BulkStream,
    id: BufferId,
    offset: u64,
    len: u64,
) -> std::io::Result<()> {
    let Some(entry) = ready(stream, id, offset, len).await? else {
        return Ok(());
    };
    let mut staging = vec![0u8; (4u64 << 20).min(len) as usize];
    let mut at = offset;
    while at < offset + len {
        let n = (staging.len() as u64).min(offset + len - at) as usize;
        stream.read_exact(&mut staging[..n]).await?;
        if let Err(error) = entry.write_at(at as usize, &staging[..n]) {
            return write_message(stream, &Status::Err(error)).await;
        }
        at += n as u64;
    }
    write_message(stream, &Status::Ok(None)).await
}

/// A range of registered host memory sent without copying it first.
struct Piece {
    entry: std::sync::Arc<Entry>,
    offset: usize,
    len: usize,
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        let base = self.entry.host_ptr().expect("pieces are of host memory");
        // SAFETY: the range was checked against the registration, whose
        // memory `entry` keeps alive as long as the piece. Other processes
        // may write these bytes while they are sent; they are plain bytes
        // with no invariant to break, and the transfer's contract is a copy
        // of them at some moment, as with RDMA hardware.
        unsafe { std::slice::from_raw_parts(base.add(self.offset), self.len) }
    }
}

/// Runs `op` on `buffer` over bulk streams, split over several for a large
/// range.
pub(crate) async fn transfer(
    buffer: &RdmaBuffer,
    offset: u64,
    op: Op<'_>,
    stamps: Option<Stamps>,
) -> Result<Option<(u64, u64)>, RdmaError> {
    let options = buffer.options();
    let len = op.len() as u64;
    let parts = if stamps.is_some() {
        vec![(0, len)]
    } else {
        options.parts(len)
    };
    let chunk = options.chunk_bytes as u64;
    match op {
        Op::Read(mut dst) => {
            let mut reads = Vec::with_capacity(parts.len());
            for &(start, n) in parts.iter().rev() {
                let (rest, part) = dst.split_at_mut(start as usize);
                debug_assert_eq!(part.len() as u64, n);
                dst = rest;
                reads.push(read_part(buffer, offset + start, part, chunk, stamps));
            }
            let seen = try_join_all(reads).await?;
            Ok(seen.into_iter().next().flatten())
        }
        Op::Write(src) => {
            let writes = parts.iter().map(|&(start, n)| {
                write_part(
                    buffer,
                    offset + start,
                    &src[start as usize..(start + n) as usize],
                )
            });
            try_join_all(writes).await?;
            Ok(None)
        }
    }
}

async fn read_part(
    buffer: &RdmaBuffer,
    offset: u64,
    dst: &mut [u8],
    chunk: u64,
    stamps: Option<Stamps>,
) -> Result<Option<(u64, u64)>, RdmaError> {
    let id = buffer.id();
    let request = Request::Read {
        id,
        offset,
        len: dst.len() as u64,
        chunk,
        stamps,
    };
    let mut stream = begin(buffer, &request).await?;
    stream.read_exact(dst).await.map_err(broken(id))?;
    read_message::<Status>(&mut stream)
        .await
        .map_err(broken(id))?
}

async fn write_part(buffer: &RdmaBuffer, offset: u64, src: &[u8]) -> Result<(), RdmaError> {
    let id = buffer.id();
    let request = Request::Write {
        id,
        offset,
        len: src.len() as u64,
    };
    let mut stream = begin(buffer, &request).await?;
    stream.write_all(src).await.map_err(broken(id))?;
    stream.flush().await.map_err(broken(id))?;
    read_message::<Status>(&mut stream)
        .await
        .map_err(broken(id))?
        .map(drop)
}

/// Opens a stream to the owner, sends `request` and waits for the owner to
/// say it goes on.
async fn begin(buffer: &RdmaBuffer, request: &Request) -> Result<BulkStream, RdmaError> {
    let id = buffer.id();
    let mut stream = open(buffer).await?;
    write_message(&mut stream, request)
        .await
        .map_err(broken(id))?;
    read_message::<Status>(&mut stream)
        .await
        .map_err(broken(id))??;
    Ok(stream)
}

/// The error of a stream to the owner of `id` that broke.
fn broken(id: BufferId) -> impl Fn(std::io::Error) -> RdmaError {
    move |e| RdmaError::Broken {
        id,
        why: e.to_string(),
    }
}

/// Opens a stream to the owner, asking its manager to serve the protocol if
/// nothing listens for it there yet.
async fn open(buffer: &RdmaBuffer) -> Result<BulkStream, RdmaError> {
    let id = buffer.id();
    let owner = buffer.owner();
    match owner.open_bulk(PROTOCOL).await {
        Ok(stream) => return Ok(stream),
        Err(BulkError::Refused { why, .. }) if why.contains("no service listens") => {}
        Err(error) => return Err(bulk_error(id, owner, error)),
    }
    let manager = owner
        .service::<RdmaManager>()
        .map_err(|e| RdmaError::unreachable(id, owner, e.to_string()))?;
    manager
        .serve_bulk()
        .call()
        .await
        .map_err(|e| RdmaError::unreachable(id, owner, e.to_string()))?
        .0?;
    owner
        .open_bulk(PROTOCOL)
        .await
        .map_err(|error| bulk_error(id, owner, error))
}

fn bulk_error(id: BufferId, owner: &ProcRef, error: BulkError) -> RdmaError {
    match error {
        BulkError::Refused { why, .. } => RdmaError::Refused { id, why },
        other => RdmaError::unreachable(id, owner, other.to_string()),
    }
}

async fn write_message<T: Serialize>(stream: &mut BulkStream, message: &T) -> std::io::Result<()> {
    let body = postcard::to_stdvec(message).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await?;
    stream.flush().await
}

async fn read_message<T: DeserializeOwned>(stream: &mut BulkStream) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a control message of {len} bytes, over {MAX_MESSAGE}"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    postcard::from_bytes(&body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
