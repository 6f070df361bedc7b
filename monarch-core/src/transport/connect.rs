//! Connecting and accepting: the handshakes that open a link (or a bulk
//! stream) to another process of the job.
//!
//! To a process on this host a connection goes through its same-host socket
//! (a Unix socket in the abstract namespace, found by the peer's incarnation),
//! where both sides first answer an HMAC challenge keyed from the job
//! credential; to others, and wherever that socket cannot be reached (another
//! network namespace, say), over QUIC with mutual TLS from the same
//! credential. Either way each side then sends a [`Hello`]: who it is, where
//! it listens, and what the connection is for.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

use super::bulk::BulkStream;
use super::credential::SERVER_NAME;
use super::error::ConnectError;
use super::link::{Inbound, Link, Queue};
use super::local;
use super::router::Router;
use crate::wire::frame::{encode_prefix, FrameDecoder, Header, Hello, Purpose};
use crate::{ProcId, Transport};

/// A connection past its handshake, with who the peer said it is and what
/// was read after its hello.
pub(crate) struct Connection {
    peer: ProcId,
    /// The largest frame the peer takes.
    max_frame: u64,
    decoder: FrameDecoder,
    over: Over,
}

enum Over {
    /// A QUIC stream's two halves, and the connection they belong to.
    Quic(quinn::Connection, (quinn::SendStream, quinn::RecvStream)),
    /// A same-host socket.
    Local(UnixStream),
}

impl Connection {
    /// Runs `link` over this connection until it closes.
    pub(crate) async fn run(self, link: &Arc<Link>, queue: Queue, inbound: Arc<dyn Inbound>) {
        link.set_peer_proc(self.peer);
        link.set_peer_max_frame(self.max_frame);
        match self.over {
            Over::Quic(connection, streams) => {
                link.run_quic(connection, streams, self.decoder, queue, inbound)
                    .await
            }
            Over::Local(socket) => link.run_local(socket, self.decoder, queue, inbound).await,
        }
    }
}

/// A QUIC connection dialed for a link: the connection, its first stream, the
/// peer's hello and what came after it.
type QuicDialed = (
    quinn::Connection,
    (quinn::SendStream, quinn::RecvStream),
    Hello,
    FrameDecoder,
);

/// The socket address of a process address (`ip:port/incarnation`).
pub(crate) fn socket_of(addr: &str) -> Result<SocketAddr, ConnectError> {
    addr.split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|e: std::net::AddrParseError| ConnectError::BadAddress {
            addr: addr.to_string(),
            why: e.to_string(),
        })
}

/// The incarnation of a process address, which names its same-host socket.
pub(crate) fn incarnation_of(addr: &str) -> &str {
    addr.split('/').nth(1).unwrap_or_default()
}

impl Router {
    /// How long a handshake may take.
    fn handshake_timeout(&self) -> Duration {
        self.config.heartbeat_timeout() * 4
    }

    /// Connects the link to `addr`: through the same-host socket when the
    /// peer is reachable there, else over QUIC.
    pub(crate) async fn dial(&self, addr: &str) -> Result<Connection, ConnectError> {
        let after = self.handshake_timeout();
        let handshake = async {
            if let Some((stream, hello, decoder)) = self.dial_local(addr, Purpose::Link).await? {
                return Ok(Connection {
                    peer: hello.proc,
                    max_frame: hello.max_frame,
                    decoder,
                    over: Over::Local(stream),
                });
            }
            let (connection, streams, hello, decoder) = self.dial_quic(addr, Purpose::Link).await?;
            self.arc().accept_streams(connection.clone());
            Ok(Connection {
                peer: hello.proc,
                max_frame: hello.max_frame,
                decoder,
                over: Over::Quic(connection, streams),
            })
        };
        tokio::time::timeout(after, handshake)
            .await
            .map_err(|_| ConnectError::TimedOut {
                addr: addr.to_string(),
                after,
            })?
    }

    /// A connection to `addr`'s same-host socket for `purpose`, past the
    /// handshake; `Ok(None)` when the peer has no socket reachable from here
    /// (or the settings say QUIC).
    pub(crate) async fn dial_local(
        &self,
        addr: &str,
        purpose: Purpose,
    ) -> Result<Option<(UnixStream, Hello, FrameDecoder)>, ConnectError> {
        if self.config.transport() != Transport::Auto {
            return Ok(None);
        }
        let Ok(mut stream) = local::connect(incarnation_of(addr)).await else {
            return Ok(None);
        };
        local::widen_buffers(&stream);
        local::authenticate(&mut stream, &self.proof_key)
            .await
            .map_err(|e| ConnectError::Handshake {
                peer: addr.to_string(),
                why: e.to_string(),
            })?;
        self.say_hello(&mut stream, addr, purpose).await?;
        let (hello, decoder) = self.read_hello(&mut stream, addr).await?;
        Ok(Some((stream, hello, decoder)))
    }

    /// A QUIC connection to `addr` and its first stream, for `purpose`, past
    /// the handshake.
    async fn dial_quic(&self, addr: &str, purpose: Purpose) -> Result<QuicDialed, ConnectError> {
        let socket = socket_of(addr)?;
        let connect = |why: String| ConnectError::Connect {
            addr: addr.to_string(),
            why,
        };
        let connection = self
            .endpoint
            .connect(socket, SERVER_NAME)
            .map_err(|e| connect(e.to_string()))?
            .await
            .map_err(|e| ConnectError::Handshake {
                peer: addr.to_string(),
                why: e.to_string(),
            })?;
        let (mut send, mut recv) = connection
            .open_bi()
            .await
            .map_err(|e| connect(format!("cannot open a stream: {e}")))?;
        self.say_hello(&mut send, addr, purpose).await?;
        let (hello, decoder) = self.read_hello(&mut recv, addr).await?;
        Ok((connection, (send, recv), hello, decoder))
    }

    /// Opens a new stream on a QUIC connection for `purpose`.
    pub(crate) async fn open_quic_stream(
        &self,
        connection: &quinn::Connection,
        peer: &str,
        purpose: Purpose,
    ) -> Result<(quinn::SendStream, quinn::RecvStream, FrameDecoder), ConnectError> {
        let (mut send, mut recv) =
            connection
                .open_bi()
                .await
                .map_err(|e| ConnectError::Connect {
                    addr: peer.to_string(),
                    why: format!("cannot open a stream: {e}"),
                })?;
        self.say_hello(&mut send, peer, purpose).await?;
        let (_, decoder) = self.read_hello(&mut recv, peer).await?;
        Ok((send, recv, decoder))
    }

    /// This process's hello, for a connection that carries `purpose`.
    pub(crate) fn hello(&self, purpose: Purpose) -> Header {
        Header::Hello(Hello {
            proc: self.identity.clone(),
            addr: self.addr.to_string(),
            purpose,
            max_frame: self.config.max_frame_bytes() as u64,
        })
    }

    pub(crate) async fn say_hello(
        &self,
        send: &mut (impl AsyncWrite + Unpin),
        peer: &str,
        purpose: Purpose,
    ) -> Result<(), ConnectError> {
        let mut hello = BytesMut::new();
        encode_prefix(&self.hello(purpose), 0, &mut hello);
        let failed = |e: std::io::Error| ConnectError::Handshake {
            peer: peer.to_string(),
            why: format!("cannot send the hello: {e}"),
        };
        send.write_all(&hello).await.map_err(failed)?;
        send.flush().await.map_err(failed)
    }

    /// Reads the peer's hello; a peer that says why it refuses instead gets
    /// that reason in the error.
    pub(crate) async fn read_hello(
        &self,
        recv: &mut (impl AsyncRead + Unpin),
        peer: &str,
    ) -> Result<(Hello, FrameDecoder), ConnectError> {
        let mut decoder = FrameDecoder::new(self.config.max_frame_bytes());
        let protocol = |why: String| ConnectError::Protocol {
            peer: peer.to_string(),
            why,
        };
        loop {
            match decoder.next_frame() {
                Ok(Some((Header::Hello(hello), _))) => return Ok((hello, decoder)),
                Ok(Some((Header::Close { reason }, _))) => {
                    return Err(ConnectError::Handshake {
                        peer: peer.to_string(),
                        why: reason,
                    })
                }
                Ok(Some((other, _))) => {
                    return Err(protocol(format!("expected a hello, got {other:?}")))
                }
                Ok(None) => {}
                Err(e) => return Err(protocol(format!("a malformed hello: {e}"))),
            }
            match recv.read_buf(decoder.buffer()).await {
                Ok(0) => return Err(protocol("the peer closed before its hello".into())),
                Ok(_) => {}
                Err(e) => return Err(protocol(format!("reading the hello: {e}"))),
            }
        }
    }

    /// Accepts QUIC connections until the endpoint closes.
    pub(crate) async fn accept_loop(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let router = Arc::clone(&self);
            tokio::spawn(async move {
                if let Err(error) = router.accept(incoming).await {
                    tracing::warn!(%error, "refused a connection");
                }
            });
        }
    }

    async fn accept(self: &Arc<Self>, incoming: quinn::Incoming) -> Result<(), ConnectError> {
        let remote = incoming.remote_address().to_string();
        let after = self.handshake_timeout();
        let handshake = async {
            let connection = incoming.await.map_err(|e| ConnectError::Handshake {
                peer: remote.clone(),
                why: e.to_string(),
            })?;
            let (mut send, mut recv) =
                connection
                    .accept_bi()
                    .await
                    .map_err(|e| ConnectError::Protocol {
                        peer: remote.clone(),
                        why: format!("no stream: {e}"),
                    })?;
            let (hello, decoder) = self.read_hello(&mut recv, &remote).await?;
            if hello.purpose != Purpose::Link {
                return Err(ConnectError::Protocol {
                    peer: remote.clone(),
                    why: "the first stream of a connection must be its link".into(),
                });
            }
            self.say_hello(&mut send, &remote, Purpose::Link).await?;
            Ok::<_, ConnectError>((connection, (send, recv), decoder, hello))
        };
        let (connection, streams, decoder, hello) = tokio::time::timeout(after, handshake)
            .await
            .map_err(|_| ConnectError::TimedOut {
            addr: remote.clone(),
            after,
        })??;
        self.accept_streams(connection.clone());
        let (link, queue) = Link::new(
            hello.addr.clone(),
            Arc::clone(&self.addr),
            self.link_settings(),
        );
        self.adopt(&link, &hello.proc);
        let inbound: Arc<dyn Inbound> = self.clone();
        Connection {
            peer: hello.proc,
            max_frame: hello.max_frame,
            decoder,
            over: Over::Quic(connection, streams),
        }
        .run(&link, queue, inbound)
        .await;
        Ok(())
    }

    /// Accepts the streams the peer opens on a QUIC connection after its
    /// link: bulk streams.
    fn accept_streams(self: &Arc<Self>, connection: quinn::Connection) {
        let router = Arc::clone(self);
        tokio::spawn(async move {
            while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                let router = Arc::clone(&router);
                let peer = connection.remote_address().to_string();
                tokio::spawn(async move {
                    match router.read_hello(&mut recv, &peer).await {
                        Ok((hello, decoder)) => {
                            let stream = BulkStream::quic(hello.proc.clone(), send, recv, decoder);
                            router.deliver_bulk(hello, stream).await;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "refused a stream");
                            let _ = send.reset(0u32.into());
                        }
                    }
                });
            }
        });
    }

    /// Accepts same-host connections until the listener fails.
    pub(crate) async fn accept_local_loop(self: Arc<Self>, listener: tokio::net::UnixListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "same-host accept failed");
                    continue;
                }
            };
            let router = Arc::clone(&self);
            tokio::spawn(async move {
                if let Err(error) = router.accept_local(stream).await {
                    tracing::warn!(%error, "refused a same-host connection");
                }
            });
        }
    }

    async fn accept_local(self: &Arc<Self>, mut stream: UnixStream) -> Result<(), ConnectError> {
        local::widen_buffers(&stream);
        let peer = "a same-host process".to_string();
        let after = self.handshake_timeout();
        let handshake = async {
            local::authenticate(&mut stream, &self.proof_key)
                .await
                .map_err(|e| ConnectError::Handshake {
                    peer: peer.clone(),
                    why: e.to_string(),
                })?;
            self.read_hello(&mut stream, &peer).await
        };
        let (hello, decoder) = tokio::time::timeout(after, handshake).await.map_err(|_| {
            ConnectError::TimedOut {
                addr: peer.clone(),
                after,
            }
        })??;
        match &hello.purpose {
            Purpose::Link => {
                self.say_hello(&mut stream, &hello.addr, Purpose::Link)
                    .await?;
                let (link, queue) = Link::new(
                    hello.addr.clone(),
                    Arc::clone(&self.addr),
                    self.link_settings(),
                );
                self.adopt(&link, &hello.proc);
                let inbound: Arc<dyn Inbound> = self.clone();
                Connection {
                    peer: hello.proc.clone(),
                    max_frame: hello.max_frame,
                    decoder,
                    over: Over::Local(stream),
                }
                .run(&link, queue, inbound)
                .await;
            }
            Purpose::Bulk { .. } => {
                let bulk = BulkStream::local(hello.proc.clone(), stream, decoder);
                self.deliver_bulk(hello, bulk).await;
            }
        }
        Ok(())
    }
}
