//! Messages in their wire form: how a typed endpoint message becomes bytes for
//! another process and back, and how its reply finds the way home.
//!
//! `#[actor]` implements [`Actor::to_wire`] and [`Actor::from_wire`] with the
//! helpers here; the runtime moves the bytes.

use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::net::Segment;
use crate::port::Reply;
use crate::{ActorId, CallError, ReplySlot};

/// Where an encoded reply goes: a closure that completes a waiting call, here or
/// in another process.
pub struct ReplySink(Box<dyn FnOnce(Result<Bytes, RemoteError>) + Send>);

impl ReplySink {
    /// A sink that runs `complete` with the encoded reply.
    pub(crate) fn new(complete: impl FnOnce(Result<Bytes, RemoteError>) + Send + 'static) -> Self {
        ReplySink(Box::new(complete))
    }

    /// Completes the call.
    pub(crate) fn complete(self, result: Result<Bytes, RemoteError>) {
        (self.0)(result)
    }
}

impl fmt::Debug for ReplySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplySink")
    }
}

/// Why a remote call produced no value, as it travels between processes. The
/// caller turns it back into a [`CallError`] naming the actor and endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    /// The actor had stopped, or never existed in that process.
    #[error("the actor has stopped")]
    Undeliverable,
    /// The endpoint returned this error.
    #[error("{0}")]
    Endpoint(String),
    /// The endpoint panicked with this message.
    #[error("panicked: {0}")]
    Panicked(String),
    /// The actor stopped without replying.
    #[error("stopped without replying")]
    NoReply,
    /// The message or reply could not be encoded or decoded.
    #[error("could not decode: {0}")]
    Codec(String),
    /// The process is unreachable: it exited, was killed or stopped answering.
    #[error("{0}")]
    Unreachable(String),
    /// A spawn or other request failed.
    #[error("{0}")]
    Failed(String),
}

impl RemoteError {
    /// The error as a [`CallError`] of `actor`'s `endpoint`.
    pub(crate) fn into_call_error(self, actor: &ActorId, endpoint: &'static str) -> CallError {
        let actor = actor.clone();
        match self {
            RemoteError::Undeliverable => CallError::Undeliverable { actor, endpoint },
            RemoteError::Endpoint(message) => CallError::Endpoint {
                actor,
                endpoint,
                message,
            },
            RemoteError::Panicked(message) => CallError::Panicked {
                actor,
                endpoint,
                message,
            },
            RemoteError::NoReply => CallError::NoReply { actor, endpoint },
            RemoteError::Codec(reason) | RemoteError::Failed(reason) => CallError::Codec {
                actor,
                endpoint,
                reason,
            },
            RemoteError::Unreachable(reason) => CallError::Unreachable {
                actor,
                endpoint,
                reason,
            },
        }
    }

    pub(crate) fn from_call_error(error: CallError) -> Self {
        match error {
            CallError::Undeliverable { .. } => RemoteError::Undeliverable,
            CallError::Endpoint { message, .. } => RemoteError::Endpoint(message),
            CallError::Panicked { message, .. } => RemoteError::Panicked(message),
            CallError::NoReply { .. } | CallError::Timeout { .. } => RemoteError::NoReply,
            CallError::Codec { reason, .. } => RemoteError::Codec(reason),
            CallError::Unreachable { reason, .. } => RemoteError::Unreachable(reason),
        }
    }
}

/// An endpoint message in wire form.
pub struct WireMessage {
    /// The endpoint's name.
    pub endpoint: &'static str,
    /// The encoded arguments.
    pub payload: Payload,
    /// Where the reply goes, for an ask.
    pub reply: Option<ReplySink>,
}

/// A message's arguments in wire form: the serde-encoded ones, and the
/// `bytes::Bytes` arguments kept apart as segments, so that a large buffer is
/// written out and read back without being copied into or out of an encode
/// buffer.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    /// The postcard encoding of the arguments other than `Bytes` ones.
    pub args: Bytes,
    /// The `Bytes` arguments, in order.
    pub segments: Vec<Bytes>,
}

impl From<Bytes> for Payload {
    fn from(args: Bytes) -> Self {
        Payload {
            args,
            segments: Vec::new(),
        }
    }
}

impl Payload {
    /// The number of bytes on the wire.
    pub(crate) fn len(&self) -> usize {
        self.args.len() + self.segments.iter().map(Bytes::len).sum::<usize>()
    }

    /// Splits a received body into the encoded arguments and the segments
    /// `segments` describes: inline ones are zero-copy slices of the body,
    /// shared ones are mapped, and `released(lease)` runs when each is no
    /// longer used (or could not be mapped).
    pub(crate) fn split(
        mut body: Bytes,
        segments: &[Segment],
        released: impl Fn(u64) + Clone + Send + 'static,
    ) -> Result<Payload, RemoteError> {
        let inline: u64 = segments
            .iter()
            .map(|s| match s {
                Segment::Inline(len) => *len,
                Segment::Shared { .. } => 0,
            })
            .sum();
        let args_len = (body.len() as u64).checked_sub(inline);
        let mut result = Ok(Vec::with_capacity(segments.len()));
        let args = match args_len {
            Some(len) => body.split_to(len as usize),
            None => {
                result = Err(RemoteError::Codec("segments longer than the frame".into()));
                Bytes::new()
            }
        };
        // Every shared segment is mapped or released, even after an error.
        for segment in segments {
            let bytes = match segment {
                Segment::Inline(len) if result.is_ok() => Ok(body.split_to(*len as usize)),
                Segment::Inline(_) => continue,
                Segment::Shared {
                    pid,
                    fd,
                    len,
                    lease,
                } => {
                    let released = released.clone();
                    let lease = *lease;
                    crate::net::map_shared(*pid, *fd, *len, Box::new(move || released(lease)))
                        .map_err(|e| {
                            RemoteError::Codec(format!("cannot map a shared segment: {e}"))
                        })
                }
            };
            match (&mut result, bytes) {
                (Ok(all), Ok(bytes)) => all.push(bytes),
                (Ok(_), Err(error)) => result = Err(error),
                (Err(_), _) => {}
            }
        }
        result.map(|segments| Payload { args, segments })
    }

    /// Takes the next segment, for generated code.
    pub fn next_segment(segments: &mut std::vec::IntoIter<Bytes>) -> Result<Bytes, RemoteError> {
        segments
            .next()
            .ok_or_else(|| RemoteError::Codec("a Bytes argument is missing".into()))
    }
}

/// Encodes values for the wire.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, RemoteError> {
    postcard::to_allocvec(value)
        .map(Bytes::from)
        .map_err(|e| RemoteError::Codec(e.to_string()))
}

/// Decodes values from the wire.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RemoteError> {
    postcard::from_bytes(bytes).map_err(|e| RemoteError::Codec(e.to_string()))
}

/// Turns a typed reply slot into a sink that decodes the reply and completes it.
pub(crate) fn reply_into_sink<T: DeserializeOwned + Send + 'static>(
    reply: Reply<T>,
    actor: ActorId,
    endpoint: &'static str,
) -> ReplySink {
    ReplySink::new(move |result| {
        let value = result
            .and_then(|bytes| decode::<T>(&bytes))
            .map_err(|e| e.into_call_error(&actor, endpoint));
        reply.send(value);
    })
}

/// A reply slot that encodes the reply and sends it to `sink`.
pub(crate) fn reply_from_sink<T: Serialize + Send + 'static>(sink: ReplySink) -> ReplySlot<T> {
    Some(Reply::remote(Box::new(
        move |result: Option<Result<T, CallError>>| {
            let encoded = match result {
                Some(result) => result
                    .map_err(RemoteError::from_call_error)
                    .and_then(|value| encode(&value)),
                None => Err(RemoteError::NoReply),
            };
            sink.complete(encoded);
        },
    )))
}

/// The wire form of a message, for generated code: encodes `args` and turns
/// the reply slot into a sink. If encoding fails, an awaiting caller gets the
/// error and so does the returned `Err`.
pub(crate) fn outbound<Args, T>(
    actor: &ActorId,
    endpoint: &'static str,
    args: &Args,
    segments: Vec<Bytes>,
    reply: ReplySlot<T>,
) -> Result<WireMessage, RemoteError>
where
    Args: Serialize,
    T: DeserializeOwned + Send + 'static,
{
    match encode(args) {
        Ok(args) => Ok(WireMessage {
            endpoint,
            payload: Payload { args, segments },
            reply: reply.map(|r| reply_into_sink(r, actor.clone(), endpoint)),
        }),
        Err(error) => {
            if let Some(reply) = reply {
                reply.send(Err(error.clone().into_call_error(actor, endpoint)));
            }
            Err(error)
        }
    }
}

/// Decodes an endpoint's arguments and builds its reply slot, for generated
/// code. On failure the sink is left in place for the caller to answer.
pub(crate) fn inbound<Args, T>(
    args: &[u8],
    reply: &mut Option<ReplySink>,
) -> Result<(Args, ReplySlot<T>), RemoteError>
where
    Args: DeserializeOwned,
    T: Serialize + Send + 'static,
{
    let args = decode(args)?;
    Ok((args, reply.take().and_then(reply_from_sink::<T>)))
}
