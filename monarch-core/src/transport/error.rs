//! The transport's errors: starting it, connecting, and why a link closed.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::credential::CredentialError;
use crate::wire::frame::FrameError;

/// Starting the transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The job credential could not be made or loaded.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The listening socket could not be opened.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address asked for ([`crate::Config::bind`]).
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The transport is already running with another credential or settings.
    #[error(
        "this process's transport already runs as {running}; it cannot start again as {asked}"
    )]
    AlreadyRunning {
        /// Who it runs as.
        running: String,
        /// Who it was asked to run as.
        asked: String,
    },
}

/// Connecting to a peer, or accepting one, failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The peer's address does not parse.
    #[error("bad peer address {addr}: {why}")]
    BadAddress { addr: String, why: String },
    /// No connection within the time allowed.
    #[error("connecting to {addr} timed out after {after:?}")]
    TimedOut { addr: String, after: Duration },
    /// The connection could not be made.
    #[error("cannot connect to {addr}: {why}")]
    Connect { addr: String, why: String },
    /// The handshake failed: the peer does not hold the job credential, or
    /// the connection broke during it.
    #[error("the handshake with {peer} failed: {why}")]
    Handshake { peer: String, why: String },
    /// The peer spoke out of turn.
    #[error("{peer} broke the handshake protocol: {why}")]
    Protocol { peer: String, why: String },
}

/// Why a link closed: what every call pending on it, and every supervision
/// event for the actors behind it, is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The peer ended the connection.
    PeerClosed,
    /// The peer said why it closed.
    Goodbye(String),
    /// Reading from the peer failed.
    ReadFailed(String),
    /// The peer sent a frame that does not parse (or is too large).
    Malformed(FrameError),
    /// The peer was silent for longer than the heartbeat timeout.
    Silent(Duration),
    /// The link could not be connected.
    Connect(ConnectError),
    /// This process closed it, for this reason (the proc was stopped, its
    /// process exited).
    Local(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("the peer closed the connection"),
            CloseReason::Goodbye(why) => write!(f, "the peer closed the link: {why}"),
            CloseReason::ReadFailed(why) => write!(f, "reading from the peer failed: {why}"),
            CloseReason::Malformed(error) => write!(f, "the peer sent a malformed frame: {error}"),
            CloseReason::Silent(after) => write!(
                f,
                "no heartbeat for {after:?} (the process may be stopped or hung)"
            ),
            CloseReason::Connect(error) => error.fmt(f),
            CloseReason::Local(why) => f.write_str(why),
        }
    }
}
