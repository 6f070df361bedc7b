//! The errors of the runtime, each with a message a user can act on.

use std::fmt;
use std::time::Duration;

use crate::ActorId;

/// An error raised by actor code: an `init` that failed, a supervision handler
/// that gave up, or anything an endpoint returns as its error.
///
/// Any `std::error::Error` converts into it with `?`; [`ActorError::msg`] makes one
/// from text.
pub struct ActorError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ActorError {
    /// An error with this message and no source.
    pub fn msg(message: impl fmt::Display) -> Self {
        ActorError {
            message: message.to_string(),
            source: None,
        }
    }

    /// The message, followed by the chain of sources joined by `: `.
    pub fn report(&self) -> String {
        let mut text = self.message.clone();
        let mut source = self.source.as_deref().and_then(std::error::Error::source);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ActorError {
    fn from(error: E) -> Self {
        ActorError {
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }
}

impl fmt::Display for ActorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for ActorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report())
    }
}

/// A message could not be put in an actor's mailbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The actor has stopped (or was never reachable from here).
    #[error("message to {actor} is undeliverable: the actor has stopped")]
    Undeliverable {
        /// The actor addressed.
        actor: ActorId,
    },
    /// The message's arguments could not be encoded for another process.
    #[error("message to {actor}.{endpoint} could not be encoded: {reason}")]
    Codec {
        /// The actor addressed.
        actor: ActorId,
        /// The endpoint addressed.
        endpoint: &'static str,
        /// What the encoder said.
        reason: String,
    },
}

/// An ask ([`crate::Call::call`]) did not produce a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The message could not be delivered: the actor had stopped.
    #[error("call to {actor}.{endpoint} is undeliverable: the actor has stopped")]
    Undeliverable {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
    },
    /// The endpoint returned an error; the actor keeps running.
    #[error("{actor}.{endpoint} returned an error: {message}")]
    Endpoint {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// The error's text.
        message: String,
    },
    /// The endpoint panicked; the actor has stopped.
    #[error("{actor}.{endpoint} panicked: {message}")]
    Panicked {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// The panic's text.
        message: String,
    },
    /// The actor stopped (or dropped a deferred reply port) without replying.
    #[error("{actor}.{endpoint} stopped without replying")]
    NoReply {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
    },
    /// No reply came within the call's timeout.
    #[error("call to {actor}.{endpoint} timed out after {timeout:?}")]
    Timeout {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The message or its reply could not be encoded or decoded on the way
    /// between processes.
    #[error("call to {actor}.{endpoint} failed in transit: {reason}")]
    Codec {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// What the codec said.
        reason: String,
    },
    /// The actor's process is unreachable: it exited, was killed, or stopped
    /// answering heartbeats.
    #[error("call to {actor}.{endpoint} failed: process {proc} is unreachable: {reason}", proc = actor.proc_id())]
    Unreachable {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// Why the process is considered lost.
        reason: String,
    },
}

/// Spawning an actor failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The actor's `init` returned an error.
    #[error("{actor} failed to initialise: {error}")]
    Init {
        /// The actor that failed.
        actor: ActorId,
        /// What `init` returned.
        error: ActorError,
    },
    /// The actor's `init` panicked.
    #[error("{actor} panicked while initialising: {message}")]
    InitPanicked {
        /// The actor that failed.
        actor: ActorId,
        /// The panic's text.
        message: String,
    },
    /// The spawning actor or process is stopping and takes no new children.
    #[error("cannot spawn {name}: {owner} is stopping")]
    OwnerStopping {
        /// The name asked for.
        name: String,
        /// Who was to own it.
        owner: String,
    },
}
