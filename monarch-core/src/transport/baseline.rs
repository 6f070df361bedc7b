//! A bare quinn transfer, for benchmarks to compare the transport against: the
//! same credential and transport settings, one stream, no framing or actors.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::credential::{JobCredential, SERVER_NAME};

/// Sends `bytes` zero bytes over one fresh quinn stream between two endpoints
/// of this process, on loopback, and returns how long the receiver took to get
/// them all (after the handshake).
pub async fn bare_quinn_transfer(bytes: usize) -> Result<Duration, String> {
    let credential = JobCredential::mint().map_err(|e| e.to_string())?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = quinn::Endpoint::server(
        credential.quic_server().map_err(|e| e.to_string())?,
        loopback,
    )
    .map_err(|e| e.to_string())?;
    let mut client = quinn::Endpoint::client(loopback).map_err(|e| e.to_string())?;
    client.set_default_client_config(credential.quic_client().map_err(|e| e.to_string())?);
    let server_addr = server.local_addr().map_err(|e| e.to_string())?;

    let receiving = tokio::spawn(async move {
        let connection = server.accept().await.ok_or("no connection")?.await;
        let connection = connection.map_err(|e| e.to_string())?;
        let mut stream = connection.accept_uni().await.map_err(|e| e.to_string())?;
        let mut first = [0u8; 1];
        stream
            .read_exact(&mut first)
            .await
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut total = 1;
        while let Some(chunk) = stream
            .read_chunk(usize::MAX, true)
            .await
            .map_err(|e| e.to_string())?
        {
            total += chunk.bytes.len();
        }
        let elapsed = started.elapsed();
        drop(connection);
        Ok::<_, String>((total, elapsed))
    });
    let connection = client
        .connect(server_addr, SERVER_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
    let payload = bytes::Bytes::from(vec![0u8; bytes]);
    stream
        .write_chunk(payload)
        .await
        .map_err(|e| e.to_string())?;
    stream.finish().map_err(|e| e.to_string())?;
    let (total, elapsed) = receiving.await.map_err(|e| e.to_string())??;
    client.close(0u32.into(), b"done");
    if total != bytes {
        return Err(format!("received {total} of {bytes} bytes"));
    }
    Ok(elapsed)
}

/// Starts a bare quinn echo server in this process, with the job's credential:
/// it echoes whatever arrives on each stream it accepts. Returns its address.
/// The peer of [`BareQuinnPingPong`], for benchmarks.
pub async fn bare_quinn_echo() -> Result<String, String> {
    let (server, addr) = bare_server()?;
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            tokio::spawn(async move {
                let connection = incoming.await?;
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 64];
                        while let Ok(Some(n)) = recv.read(&mut buf).await {
                            if send.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    });
                }
                Ok::<_, quinn::ConnectionError>(())
            });
        }
    });
    Ok(addr.to_string())
}

/// A bare quinn client doing ping-pong on one stream with a
/// [`bare_quinn_echo`] server: the floor for a round trip over QUIC.
pub struct BareQuinnPingPong {
    _endpoint: quinn::Endpoint,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl BareQuinnPingPong {
    /// Connects to the echo server at `addr` with the job's credential.
    pub async fn connect(addr: &str) -> Result<Self, String> {
        let (endpoint, connection) = connect_bare(addr).await?;
        let (send, recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
        Ok(BareQuinnPingPong {
            _endpoint: endpoint,
            send,
            recv,
        })
    }

    /// Sends eight bytes and waits for them to come back.
    pub async fn round_trip(&mut self) -> Result<(), String> {
        self.send
            .write_all(b"pingpong")
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 8];
        self.recv
            .read_exact(&mut buf)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Starts a bare quinn server in this process, with the job's credential,
/// that serves ranges of `len` zero bytes: each stream asks for an offset
/// and a length (two little-endian `u64`s) and gets that many bytes back.
/// Returns its address. The peer of [`bare_quinn_fetch`]: the floor for a
/// bulk transfer over QUIC between two processes.
pub async fn bare_quinn_source(len: usize) -> Result<String, String> {
    let (server, addr) = bare_server()?;
    let source = bytes::Bytes::from(vec![0u8; len]);
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let source = source.clone();
            tokio::spawn(async move {
                let connection = incoming.await?;
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    let source = source.clone();
                    tokio::spawn(async move {
                        let mut ask = [0u8; 16];
                        recv.read_exact(&mut ask).await.ok()?;
                        let offset = u64::from_le_bytes(ask[..8].try_into().ok()?) as usize;
                        let len = u64::from_le_bytes(ask[8..].try_into().ok()?) as usize;
                        let range = source.get(offset..offset + len)?;
                        send.write_chunk(source.slice_ref(range)).await.ok()?;
                        send.finish().ok()
                    });
                }
                Ok::<_, quinn::ConnectionError>(())
            });
        }
    });
    Ok(addr.to_string())
}

/// Fetches `dst.len()` bytes from the [`bare_quinn_source`] at `addr` over
/// `streams` parallel streams of one connection, into `dst`, and returns
/// how long that took after the handshake.
pub async fn bare_quinn_fetch(
    addr: &str,
    dst: &mut [u8],
    streams: usize,
) -> Result<Duration, String> {
    let (_endpoint, connection) = connect_bare(addr).await?;
    let started = Instant::now();
    let each = dst.len().div_ceil(streams.max(1));
    let parts = dst.chunks_mut(each.max(1)).enumerate().map(|(i, part)| {
        let connection = connection.clone();
        async move {
            let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
            let mut ask = [0u8; 16];
            ask[..8].copy_from_slice(&((i * each) as u64).to_le_bytes());
            ask[8..].copy_from_slice(&(part.len() as u64).to_le_bytes());
            send.write_all(&ask).await.map_err(|e| e.to_string())?;
            recv.read_exact(part).await.map_err(|e| e.to_string())
        }
    });
    futures::future::try_join_all(parts).await?;
    let elapsed = started.elapsed();
    connection.close(0u32.into(), b"done");
    Ok(elapsed)
}

/// A bare quinn connection to `addr` with the job's credential.
async fn connect_bare(addr: &str) -> Result<(quinn::Endpoint, quinn::Connection), String> {
    let credential = super::current()
        .ok_or("this process has no transport")?
        .credential
        .clone();
    let server: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(credential.quic_client().map_err(|e| e.to_string())?);
    let connection = endpoint
        .connect(server, SERVER_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    Ok((endpoint, connection))
}

/// A bare quinn server endpoint on loopback with the job's credential, and
/// its address.
fn bare_server() -> Result<(quinn::Endpoint, SocketAddr), String> {
    let credential = super::current()
        .ok_or("this process has no transport")?
        .credential
        .clone();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let server = quinn::Endpoint::server(
        credential.quic_server().map_err(|e| e.to_string())?,
        loopback,
    )
    .map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    Ok((server, addr))
}
