//! The writing side of a link: the writer task that batches queued frames
//! into few writes, and the byte streams it writes to.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context as TaskContext, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::UnixStream;

use super::{Link, Outgoing, Queue, BATCH_LIMIT};
use crate::wire::frame::encode_prefix;

/// Writes queued frames, batching small ones.
pub(super) async fn write_loop<W: WritePart>(link: Arc<Link>, mut writer: W, mut queue: Queue) {
    let mut batch = BytesMut::with_capacity(BATCH_LIMIT * 2);
    while let Some(first) = queue.recv().await {
        let mut written = 0;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            written += 1;
            let parts = match &item {
                Outgoing::Frame(header, body) => {
                    encode_prefix(header, body.len(), &mut batch);
                    std::iter::once(&body.args).chain(&body.segments).collect()
                }
                Outgoing::Rest(rest) => vec![rest],
            };
            for part in parts {
                if part.len() >= BATCH_LIMIT {
                    // Large parts go out as they are, never copied.
                    if writer.write_all(&batch).await.is_err()
                        || writer.write_part(part).await.is_err()
                    {
                        return;
                    }
                    batch.clear();
                } else {
                    batch.extend_from_slice(part);
                }
            }
            if batch.len() < BATCH_LIMIT {
                next = queue.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if writer.write_all(&batch).await.is_err() {
                return;
            }
            batch.clear();
        }
        if writer.flush().await.is_err() {
            return;
        }
        link.queued.fetch_sub(written, Ordering::AcqRel);
    }
    let _ = writer.shutdown().await;
}

/// A byte stream a link writes to. Large parts of a frame are handed over as
/// `Bytes`, so a transport that can take them without copying (quinn) does.
pub(crate) trait WritePart: AsyncWrite + Unpin {
    /// Writes all of `part`.
    fn write_part(&mut self, part: &Bytes) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl WritePart for quinn::SendStream {
    async fn write_part(&mut self, part: &Bytes) -> std::io::Result<()> {
        self.write_chunk(part.clone())
            .await
            .map_err(std::io::Error::other)
    }
}

impl WritePart for SharedSocket {
    async fn write_part(&mut self, part: &Bytes) -> std::io::Result<()> {
        self.write_all(part).await
    }
}

#[cfg(test)]
impl WritePart for tokio::io::WriteHalf<tokio::io::DuplexStream> {
    async fn write_part(&mut self, part: &Bytes) -> std::io::Result<()> {
        self.write_all(part).await
    }
}

/// A same-host socket shared between the reader, the writer task and direct
/// senders: every operation goes through its readiness and `try_` methods,
/// which take `&self`.
pub(super) struct SharedSocket(pub(super) Arc<UnixStream>);

impl AsyncRead for SharedSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let room = unfilled.len();
            let mut got = 0;
            // A read that leaves room in the buffer has drained the socket:
            // its readiness is cleared now (by answering "would block"),
            // sparing the read that would only learn so. Data that arrives
            // after it sets readiness anew.
            let read = self.0.try_io(Interest::READABLE, || {
                got = std::io::Read::read(&mut &*socket2::SockRef::from(&*self.0), unfilled)?;
                if got > 0 && got < room {
                    Err(std::io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(got)
                }
            });
            match read {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && got > 0 => {
                    buf.advance(got);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for SharedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.0).shutdown(std::net::Shutdown::Write))
    }
}
