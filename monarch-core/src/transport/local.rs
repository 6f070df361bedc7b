//! The same-host path: a Unix socket in Linux's abstract namespace (no file to
//! leave behind; it vanishes with the process), guarded by the job credential.
//!
//! Loopback QUIC pays for encryption and congestion control that a connection
//! inside one kernel does not need. Anyone on the host could reach an abstract
//! socket, so each side first proves it holds the job credential: both send a
//! random challenge and answer the other's with an HMAC keyed from the
//! credential, and either side closes the connection on a wrong answer.

use std::io;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const CHALLENGE: usize = 32;
const CONTEXT: &[u8] = b"monarch-rs same-host link v1";

/// The abstract socket name of the process with this incarnation.
fn name(incarnation: &str) -> String {
    format!("monarch-rs/{incarnation}")
}

/// Listens on the abstract socket of `incarnation`.
pub(crate) fn listen(incarnation: &str) -> io::Result<UnixListener> {
    let addr = abstract_addr(incarnation)?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// Connects to the abstract socket of `incarnation`, if a process on this host
/// listens there.
pub(crate) async fn connect(incarnation: &str) -> io::Result<UnixStream> {
    let addr = abstract_addr(incarnation)?;
    let stream = tokio::task::spawn_blocking(move || {
        let stream = std::os::unix::net::UnixStream::connect_addr(&addr)?;
        stream.set_nonblocking(true)?;
        Ok::<_, io::Error>(stream)
    })
    .await
    .map_err(io::Error::other)??;
    UnixStream::from_std(stream)
}

#[cfg(target_os = "linux")]
fn abstract_addr(incarnation: &str) -> io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name(incarnation))
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_incarnation: &str) -> io::Result<std::os::unix::net::SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the same-host path needs Linux's abstract sockets",
    ))
}

/// Asks for large socket buffers, so bulk transfers move in few large steps
/// rather than many wake-ups of both processes. The kernel caps the request
/// (`net.core.wmem_max`, `rmem_max`); a refusal only costs speed.
pub(crate) fn widen_buffers(stream: &UnixStream) {
    const BUFFER: usize = 4 << 20;
    let socket = socket2::SockRef::from(stream);
    let _ = socket.set_send_buffer_size(BUFFER);
    let _ = socket.set_recv_buffer_size(BUFFER);
}

/// The challenge of the same-host path failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// The system has no randomness to give.
    #[error("no randomness for the challenge")]
    NoRandomness,
    /// The connection broke during the challenge.
    #[error("{step}: {why}")]
    Io { step: &'static str, why: String },
    /// The peer's answer is wrong.
    #[error("the peer does not hold the job credential")]
    Refused,
}

/// Proves to the peer that this side holds `key`'s credential and checks that
/// the peer does too.
pub(crate) async fn authenticate(
    stream: &mut UnixStream,
    key: &hmac::Key,
) -> Result<(), AuthError> {
    let io = |step| {
        move |e: io::Error| AuthError::Io {
            step,
            why: e.to_string(),
        }
    };
    let mut ours = [0u8; CHALLENGE];
    SystemRandom::new()
        .fill(&mut ours)
        .map_err(|_| AuthError::NoRandomness)?;
    stream
        .write_all(&ours)
        .await
        .map_err(io("sending the challenge"))?;
    let mut theirs = [0u8; CHALLENGE];
    stream
        .read_exact(&mut theirs)
        .await
        .map_err(io("reading the challenge"))?;
    let answer = sign(key, &theirs);
    stream
        .write_all(answer.as_ref())
        .await
        .map_err(io("answering the challenge"))?;
    let mut their_answer = [0u8; 32];
    stream
        .read_exact(&mut their_answer)
        .await
        .map_err(io("reading the answer"))?;
    let mut signed = Vec::with_capacity(CONTEXT.len() + CHALLENGE);
    signed.extend_from_slice(CONTEXT);
    signed.extend_from_slice(&ours);
    hmac::verify(key, &signed, &their_answer).map_err(|_| AuthError::Refused)
}

fn sign(key: &hmac::Key, challenge: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    context.update(CONTEXT);
    context.update(challenge);
    context.sign()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::credential::JobCredential;

    #[tokio::test]
    async fn only_holders_of_the_credential_pass() {
        let credential = JobCredential::mint().unwrap();
        let job = credential.proof_key();
        let stranger = JobCredential::mint().unwrap().proof_key();
        let listener = listen("test-authentication").unwrap();
        let server_key = credential.proof_key();
        let accepting = tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().await.unwrap();
                results.push(authenticate(&mut stream, &server_key).await);
            }
            results
        });
        let mut friend = connect("test-authentication").await.unwrap();
        assert_eq!(authenticate(&mut friend, &job).await, Ok(()));
        let mut intruder = connect("test-authentication").await.unwrap();
        assert!(authenticate(&mut intruder, &stranger).await.is_err());
        let results = tokio::time::timeout(std::time::Duration::from_secs(10), accepting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(results[0], Ok(()));
        assert_eq!(results[1], Err(AuthError::Refused));
    }
}
