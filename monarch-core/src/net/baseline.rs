//! A bare quinn transfer, for benchmarks to compare the transport against: the
//! same credential and transport settings, one stream, no framing or actors.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::credential::{Credential, SERVER_NAME};

/// Sends `bytes` zero bytes over one fresh quinn stream between two endpoints
/// of this process, on loopback, and returns how long the receiver took to get
/// them all (after the handshake).
pub async fn bare_quinn_transfer(bytes: usize) -> Result<Duration, String> {
    let credential = Credential::mint().map_err(|e| e.to_string())?;
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
