//! Bulk byte streams between the processes of a job, beside the message link:
//! for moving large buffers without the framing and ordering of messages.
//!
//! A service [`listen`]s for a protocol by name; a process that holds a
//! [`ProcRef`](super::ProcRef) opens a stream to it with
//! [`ProcRef::open_bulk`](super::ProcRef::open_bulk). Over QUIC each stream is
//! a stream of its own on the link's connection (so several run in parallel,
//! each with its own flow control); on one host it is a Unix socket of its
//! own. The job credential guards both, as it guards links: a process without
//! it cannot open a stream nor accept one.
//!
//! ```no_run
//! # async fn example(peer: monarch_core::ProcRef) -> Result<(), Box<dyn std::error::Error>> {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! // In the serving process:
//! let mut listener = monarch_core::bulk::listen("echo")?;
//! tokio::spawn(async move {
//!     while let Some(mut stream) = listener.accept().await {
//!         let mut buf = [0u8; 5];
//!         stream.read_exact(&mut buf).await.ok();
//!         stream.write_all(&buf).await.ok();
//!     }
//! });
//! // In any other process of the job:
//! let mut stream = peer.open_bulk("echo").await?;
//! stream.write_all(b"hello").await?;
//! # Ok(()) }
//! ```

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::link::ConnectionKind;
use super::router::{lock, Router};
use crate::wire::frame::{encode_prefix, FrameDecoder, Header, Hello, Purpose};
use crate::ProcId;

/// A bulk stream could not be opened, or its service refused it.
#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    /// This process has no transport running (it has started no proc mesh
    /// and is no worker).
    #[error("this process has no transport running")]
    NoTransport,
    /// Another service already listens for this protocol here.
    #[error("a service already listens for bulk protocol `{0}` in this process")]
    AlreadyListening(String),
    /// The peer could not be reached.
    #[error("cannot open a bulk stream to {peer}: {why}")]
    Connect {
        /// The peer's address.
        peer: String,
        /// Why.
        why: String,
    },
    /// The peer has no service for this protocol, or refused the stream.
    #[error("{peer} refused a bulk stream: {why}")]
    Refused {
        /// The peer's address.
        peer: String,
        /// What it said.
        why: String,
    },
}

/// Incoming bulk streams for one protocol in this process; the protocol is
/// free again once the listener is dropped.
pub struct BulkListener {
    protocol: String,
    router: Arc<Router>,
    streams: mpsc::UnboundedReceiver<BulkStream>,
}

/// Listens for bulk streams of `protocol` in this process.
pub fn listen(protocol: &str) -> Result<BulkListener, BulkError> {
    let router = super::current().ok_or(BulkError::NoTransport)?;
    let (tx, streams) = mpsc::unbounded_channel();
    {
        let mut listeners = lock(&router.bulk);
        if listeners.get(protocol).is_some_and(|l| !l.is_closed()) {
            return Err(BulkError::AlreadyListening(protocol.to_string()));
        }
        listeners.insert(protocol.to_string(), tx);
    }
    Ok(BulkListener {
        protocol: protocol.to_string(),
        router,
        streams,
    })
}

impl BulkListener {
    /// The next stream opened to this protocol, or `None` if the transport
    /// stopped.
    pub async fn accept(&mut self) -> Option<BulkStream> {
        self.streams.recv().await
    }

    /// The protocol listened for.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }
}

impl Drop for BulkListener {
    fn drop(&mut self) {
        lock(&self.router.bulk).remove(&self.protocol);
    }
}

/// One bulk byte stream to or from another process of the job: a tokio
/// [`AsyncRead`] and [`AsyncWrite`].
pub struct BulkStream {
    peer: ProcId,
    /// Bytes read during the handshake, past the hello.
    pending: BytesMut,
    io: Io,
}

enum Io {
    Quic(quinn::SendStream, quinn::RecvStream),
    Local(UnixStream),
}

impl BulkStream {
    pub(crate) fn quic(
        peer: ProcId,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        decoder: FrameDecoder,
    ) -> Self {
        BulkStream {
            peer,
            pending: decoder.into_remaining(),
            io: Io::Quic(send, recv),
        }
    }

    pub(crate) fn local(peer: ProcId, stream: UnixStream, decoder: FrameDecoder) -> Self {
        BulkStream {
            peer,
            pending: decoder.into_remaining(),
            io: Io::Local(stream),
        }
    }

    /// The proc at the other end.
    pub fn peer(&self) -> &ProcId {
        &self.peer
    }

    /// Writes all of `data`; over QUIC without copying it.
    pub async fn write_bytes(&mut self, data: Bytes) -> io::Result<()> {
        match &mut self.io {
            Io::Quic(send, _) => send.write_chunk(data).await.map_err(io::Error::other),
            Io::Local(stream) => stream.write_all(&data).await,
        }
    }

    /// Whether it runs over QUIC (to another host, or where no same-host
    /// socket was reachable).
    pub fn is_quic(&self) -> bool {
        matches!(self.io, Io::Quic(..))
    }
}

impl AsyncRead for BulkStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.pending.is_empty() {
            let n = this.pending.len().min(buf.remaining());
            buf.put_slice(&this.pending[..n]);
            this.pending.advance(n);
            return Poll::Ready(Ok(()));
        }
        match &mut this.io {
            Io::Quic(_, recv) => Pin::new(recv).poll_read(cx, buf),
            Io::Local(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BulkStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Quic(send, _) => Pin::new(send)
                .poll_write(cx, data)
                .map_err(io::Error::other),
            Io::Local(stream) => Pin::new(stream).poll_write(cx, data),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Quic(send, _) => Pin::new(send).poll_flush(cx),
            Io::Local(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Quic(send, _) => Pin::new(send).poll_shutdown(cx),
            Io::Local(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

impl Router {
    /// Opens a bulk stream for `protocol` to the process at `addr`: over the
    /// same-host socket where it is reachable, else as a new stream on the
    /// QUIC connection of the link to it.
    pub(crate) async fn open_bulk(
        self: &Arc<Self>,
        addr: &str,
        protocol: &str,
    ) -> Result<BulkStream, BulkError> {
        let purpose = Purpose::Bulk {
            protocol: protocol.to_string(),
        };
        let refused = |error: super::error::ConnectError| match error {
            super::error::ConnectError::Handshake { peer, why } => BulkError::Refused { peer, why },
            other => BulkError::Connect {
                peer: addr.to_string(),
                why: other.to_string(),
            },
        };
        let link = self.link(addr);
        match link.connected().await {
            Some(ConnectionKind::Local) => {
                let (stream, _, decoder) = self
                    .dial_local(addr, purpose)
                    .await
                    .map_err(refused)?
                    .ok_or_else(|| BulkError::Connect {
                    peer: addr.to_string(),
                    why: "its same-host socket is gone".into(),
                })?;
                Ok(BulkStream::local(peer_of(&link), stream, decoder))
            }
            Some(ConnectionKind::Quic(connection)) => {
                let (send, recv, decoder) = self
                    .open_quic_stream(&connection, addr, purpose)
                    .await
                    .map_err(refused)?;
                Ok(BulkStream::quic(peer_of(&link), send, recv, decoder))
            }
            None => Err(BulkError::Connect {
                peer: addr.to_string(),
                why: link.close_reason(),
            }),
        }
    }

    /// A peer opened a bulk stream: answers its hello and hands the stream to
    /// the protocol's listener, or says why there is none.
    pub(crate) async fn deliver_bulk(&self, hello: Hello, mut stream: BulkStream) {
        let Purpose::Bulk { protocol } = &hello.purpose else {
            return;
        };
        let listener = lock(&self.bulk).get(protocol).cloned();
        let answer = match &listener {
            Some(_) => self.hello(hello.purpose.clone()),
            None => Header::Close {
                reason: format!("no service listens for bulk protocol `{protocol}` here"),
            },
        };
        let mut frame = BytesMut::new();
        encode_prefix(&answer, 0, &mut frame);
        if stream.write_all(&frame).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        if let Some(listener) = listener {
            let _ = listener.send(stream);
        }
    }
}

/// The proc at the other end of `link`, as far as this process knows it.
fn peer_of(link: &super::link::Link) -> ProcId {
    link.peer_proc()
        .unwrap_or_else(|| ProcId::new("unknown", "unknown", 0))
}
