//! The errors of the runtime, each with a message a user can act on.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
        ErrorReport::from(self).to_string_with_causes()
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

impl From<&ActorError> for ErrorReport {
    fn from(error: &ActorError) -> Self {
        // The source's own text is the message when the error came from one.
        let causes = error
            .source
            .as_deref()
            .and_then(|source| ErrorReport::of(source).source.take());
        ErrorReport {
            message: error.message.clone(),
            source: causes,
        }
    }
}

/// An error's message and its chain of causes, as text: how an endpoint's
/// error reaches a caller, in this process or another. It is an
/// [`std::error::Error`] whose [`source`](std::error::Error::source) is the
/// next cause, so error reporters print the whole chain.
///
/// ```
/// use monarch_core::ErrorReport;
///
/// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
/// let report = ErrorReport::new("cannot load the checkpoint").caused_by(ErrorReport::of(&io));
/// assert_eq!(report.to_string(), "cannot load the checkpoint");
/// assert_eq!(
///     report.chain().collect::<Vec<_>>(),
///     ["cannot load the checkpoint", "no such file"]
/// );
/// assert_eq!(format!("{report:#}"), "cannot load the checkpoint: no such file");
/// ```
///
/// Between processes it travels as its list of messages, so decoding never
/// recurses, and a chain longer than [`ErrorReport::MAX_CHAIN`] is refused
/// as malformed.
#[derive(Clone, PartialEq, Eq)]
pub struct ErrorReport {
    message: String,
    source: Option<Box<ErrorReport>>,
}

impl ErrorReport {
    /// The longest chain of causes a report may carry between processes.
    pub const MAX_CHAIN: usize = 1024;

    /// A report of `message`, without causes.
    pub fn new(message: impl fmt::Display) -> Self {
        ErrorReport {
            message: message.to_string(),
            source: None,
        }
    }

    /// A report of `error` and its chain of sources.
    pub fn of(error: &(dyn std::error::Error + 'static)) -> Self {
        let messages: Vec<String> = std::iter::successors(Some(error), |e| e.source())
            .map(|e| e.to_string())
            .collect();
        Self::from_messages(messages).expect("an error has a message")
    }

    /// The same report, with `cause` (and its causes) as its cause, in place
    /// of any it had.
    pub fn caused_by(mut self, cause: ErrorReport) -> Self {
        self.source = Some(Box::new(cause));
        self
    }

    /// The outermost message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The messages of the chain, outermost first.
    pub fn chain(&self) -> impl Iterator<Item = &str> {
        std::iter::successors(Some(self), |r| r.source.as_deref()).map(|r| r.message.as_str())
    }

    /// The messages of the chain joined by `: `.
    pub(crate) fn to_string_with_causes(&self) -> String {
        self.chain().collect::<Vec<_>>().join(": ")
    }

    fn from_messages(messages: Vec<String>) -> Option<Self> {
        let mut report: Option<ErrorReport> = None;
        for message in messages.into_iter().rev() {
            report = Some(ErrorReport {
                message,
                source: report.map(Box::new),
            });
        }
        report
    }
}

impl fmt::Display for ErrorReport {
    /// The outermost message; with `{:#}`, the whole chain joined by `: `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.write_str(&self.to_string_with_causes())
        } else {
            f.write_str(&self.message)
        }
    }
}

impl fmt::Debug for ErrorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.chain()).finish()
    }
}

impl std::error::Error for ErrorReport {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl Drop for ErrorReport {
    fn drop(&mut self) {
        // Unlinked one at a time, so that a long chain does not recurse.
        let mut next = self.source.take();
        while let Some(mut report) = next {
            next = report.source.take();
        }
    }
}

impl Serialize for ErrorReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Collected first: compact encoders need the length up front.
        let chain: Vec<&str> = self.chain().collect();
        chain.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ErrorReport {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let messages = Vec::<String>::deserialize(deserializer)?;
        if messages.len() > Self::MAX_CHAIN {
            return Err(serde::de::Error::custom(format!(
                "an error chain of {} messages exceeds the limit of {}",
                messages.len(),
                Self::MAX_CHAIN
            )));
        }
        Self::from_messages(messages)
            .ok_or_else(|| serde::de::Error::custom("an empty error chain"))
    }
}

/// A message could not be put in an actor's mailbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The actor has stopped (or was never reachable from here).
    #[error("message to {actor} is undeliverable: {reason}")]
    Undeliverable {
        /// The actor addressed.
        actor: ActorId,
        /// Why: the actor stopped (and how), or its process is lost.
        reason: String,
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
    /// The message is larger than a frame may be, so it was not sent.
    #[error(
        "message to {actor} was not sent: it is {size} bytes, over the frame limit of \
         {limit} bytes (Config::max_frame_bytes)"
    )]
    TooLarge {
        /// The actor addressed.
        actor: ActorId,
        /// The message's size in bytes.
        size: u64,
        /// The largest frame allowed.
        limit: u64,
    },
}

/// An ask ([`crate::Call::call`]) did not produce a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The message could not be delivered: the actor had stopped, or there
    /// is no such actor.
    Undeliverable {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// Why: the actor stopped (and how), or there is no such actor.
        reason: String,
    },
    /// The endpoint returned an error; the actor keeps running. Its
    /// [`source`](std::error::Error::source) is the error's first cause.
    Endpoint {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// The error and its causes.
        error: Box<ErrorReport>,
    },
    /// The endpoint panicked; the actor has stopped.
    Panicked {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// The panic's text.
        message: String,
    },
    /// The actor stopped (or dropped a deferred reply port) without replying.
    NoReply {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
    },
    /// No reply came within the call's timeout.
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
    Codec {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// What the codec said.
        reason: String,
    },
    /// The message is larger than a frame may be, so it was not sent.
    TooLarge {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// The message's size in bytes.
        size: u64,
        /// The largest frame allowed ([`crate::Config::max_frame_bytes`]).
        limit: u64,
    },
    /// The actor's process is unreachable: it exited, was killed, stopped
    /// answering heartbeats, or was stopped.
    Unreachable {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// Why the process is considered lost.
        reason: String,
    },
    /// The request failed in the actor's process for another reason.
    Failed {
        /// The actor called.
        actor: ActorId,
        /// The endpoint called.
        endpoint: &'static str,
        /// What the process said.
        reason: String,
    },
}

impl CallError {
    /// The actor called.
    pub fn actor(&self) -> &ActorId {
        match self {
            CallError::Undeliverable { actor, .. }
            | CallError::Endpoint { actor, .. }
            | CallError::Panicked { actor, .. }
            | CallError::NoReply { actor, .. }
            | CallError::Timeout { actor, .. }
            | CallError::Codec { actor, .. }
            | CallError::TooLarge { actor, .. }
            | CallError::Unreachable { actor, .. }
            | CallError::Failed { actor, .. } => actor,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Undeliverable {
                actor,
                endpoint,
                reason,
            } => write!(f, "call to {actor}.{endpoint} is undeliverable: {reason}"),
            CallError::Endpoint {
                actor,
                endpoint,
                error,
            } => write!(f, "{actor}.{endpoint} returned an error: {error}"),
            CallError::Panicked {
                actor,
                endpoint,
                message,
            } => write!(f, "{actor}.{endpoint} panicked: {message}"),
            CallError::NoReply { actor, endpoint } => {
                write!(f, "{actor}.{endpoint} stopped without replying")
            }
            CallError::Timeout {
                actor,
                endpoint,
                timeout,
            } => write!(f, "call to {actor}.{endpoint} timed out after {timeout:?}"),
            CallError::Codec {
                actor,
                endpoint,
                reason,
            } => write!(f, "call to {actor}.{endpoint} failed in transit: {reason}"),
            CallError::TooLarge {
                actor,
                endpoint,
                size,
                limit,
            } => write!(
                f,
                "call to {actor}.{endpoint} was not sent: the message is {size} bytes, \
                 over the frame limit of {limit} bytes (Config::max_frame_bytes)"
            ),
            CallError::Unreachable {
                actor,
                endpoint,
                reason,
            } => write!(
                f,
                "call to {actor}.{endpoint} failed: process {} is unreachable: {reason}",
                actor.proc_id()
            ),
            CallError::Failed {
                actor,
                endpoint,
                reason,
            } => write!(f, "call to {actor}.{endpoint} failed: {reason}"),
        }
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The outer message is in this error's own text.
            CallError::Endpoint { error, .. } => error.source(),
            _ => None,
        }
    }
}

/// An actor could not be stopped through this reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StopError {
    /// Only the actor's owner (the holder of what its spawn returned) may stop
    /// it; the actor itself stops with `Context::stop`.
    #[error(
        "{actor} may be stopped only by its owner: this reference did not come from its spawn \
         (a reference received in a message, or looked up, cannot stop it)"
    )]
    NotOwner {
        /// The actor.
        actor: ActorId,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn a_report_keeps_the_chain_and_travels_whole() {
        let error = Outer(std::io::Error::other("inner"));
        let report = ErrorReport::of(&error);
        assert_eq!(report.chain().collect::<Vec<_>>(), ["outer", "inner"]);
        let bytes = postcard::to_allocvec(&report).unwrap();
        let back: ErrorReport = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, report);
        let source = std::error::Error::source(&back).expect("a cause");
        assert_eq!(source.to_string(), "inner");
        let actor = ActorError::from(Outer(std::io::Error::other("inner")));
        assert_eq!(actor.report(), "outer: inner");
        assert_eq!(ErrorReport::from(&actor), report);
    }

    #[test]
    fn overlong_and_empty_chains_are_refused() {
        let long: Vec<String> = (0..=ErrorReport::MAX_CHAIN)
            .map(|i| i.to_string())
            .collect();
        let bytes = postcard::to_allocvec(&long).unwrap();
        assert!(postcard::from_bytes::<ErrorReport>(&bytes).is_err());
        let empty = postcard::to_allocvec(&Vec::<String>::new()).unwrap();
        assert!(postcard::from_bytes::<ErrorReport>(&empty).is_err());
        // A long chain drops without recursing.
        let deep = ErrorReport::from_messages((0..200_000).map(|i| i.to_string()).collect());
        drop(deep);
    }

    #[test]
    fn a_call_errors_source_is_the_endpoint_errors_first_cause() {
        let error = CallError::Endpoint {
            actor: ActorId::new(crate::ProcId::new("j", "h", 0), "a", 0),
            endpoint: "load",
            error: Box::new(ErrorReport::new("cannot load").caused_by(ErrorReport::new("gone"))),
        };
        assert_eq!(
            error.to_string(),
            "j/h[0].a#0.load returned an error: cannot load"
        );
        let source = std::error::Error::source(&error).unwrap();
        assert_eq!(source.to_string(), "gone");
    }
}
