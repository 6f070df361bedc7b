//! How the runtime reaches other processes without knowing how.
//!
//! A reference to an actor in another process holds an [`Outbound`]: the
//! transport's link to that process, as a trait object. The runtime hands it
//! messages in wire form and never builds a frame. The transport installs one
//! [`Network`] per process (with [`install_network`]) through which
//! references arriving in messages find the link to their process.
//!
//! Values that hold references or ports are encoded *for an audience*: the
//! address this process is known by, and the processes that will hold the
//! encoded copies. [`encoding_for`] sets the audience for the duration of an
//! encoding, so that a reference serialises as plain data (its actor's id and
//! the address of its process) and a port stays open while any holder has a
//! copy.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::mailbox::ReturnAddress;
use super::port::{Reply, ReplySlot};
use super::registry;
use crate::wire::codec::{decode, encode};
use crate::wire::{Payload, RemoteError};
use crate::{ActorId, CallError, CastPoint};

/// The transport of this process, as the runtime sees it.
pub(crate) trait Network: Send + Sync + 'static {
    /// The address other processes reach this one at.
    fn local_addr(&self) -> &str;
    /// The link to the process listening at `addr`, connecting if needed.
    fn outbound(&self, addr: &str) -> Arc<dyn Outbound>;
    /// The transport itself, for the layers above that know its type.
    fn as_any(&self) -> &dyn Any;
}

/// A link to one other process, as references use it.
pub(crate) trait Outbound: Send + Sync + 'static {
    /// The address of the process at the other end.
    fn peer(&self) -> &str;
    /// Who reads what is sent over this link: kept ready, as every message
    /// encoded for the peer needs it.
    fn audience(&self) -> &Audience;
    /// Sends a message for one of the peer's actors. If it cannot be sent,
    /// the envelope's reply sink comes back with the reason.
    fn send(&self, envelope: Envelope) -> Result<(), Undelivered>;
    /// Stops one of the peer's actors after what was sent to it before;
    /// `done` completes once it has stopped, or with the reason it could not.
    fn stop(&self, actor: &ActorId, done: ReplySink);
    /// Sends a value for a port owned by the peer; `false` if the link is
    /// closed.
    fn port_value(&self, port: u64, value: Bytes) -> bool;
    /// Tells the peer this process holds no more copies of its port.
    fn port_dropped(&self, port: u64);
    /// Tells the peer this process passed a copy of its port to `holder`.
    fn port_held(&self, port: u64, holder: &str);
    /// Whether the link has closed: the peer is lost.
    fn is_closed(&self) -> bool;
    /// Completes once the link has closed.
    fn closed(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// The link itself, owned, for the layers above that know its type.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// A message for an actor in another process, in wire form.
pub(crate) struct Envelope {
    pub(crate) to: ActorId,
    pub(crate) endpoint: String,
    pub(crate) payload: Payload,
    /// Where the reply goes, for an ask.
    pub(crate) reply: Option<ReplySink>,
    /// The return address of the actor that told it, for a tell.
    pub(crate) sender: Option<ReturnAddress>,
    /// Where in a called mesh slice it was addressed.
    pub(crate) cast: Option<CastPoint>,
}

/// A message that could not be sent, and why.
pub(crate) struct Undelivered {
    pub(crate) error: RemoteError,
    /// The envelope's reply sink, given back.
    pub(crate) reply: Option<ReplySink>,
}

static NETWORK: OnceLock<Arc<dyn Network>> = OnceLock::new();

/// Installs this process's transport; the first one installed stays.
pub(crate) fn install_network(network: Arc<dyn Network>) {
    let _ = NETWORK.set(network);
}

/// This process's transport, once one is installed.
pub(crate) fn network() -> Option<&'static Arc<dyn Network>> {
    NETWORK.get()
}

/// Where an encoded reply goes: a closure that completes a waiting call, here or
/// in another process, and, for a caller in another process, the audience its
/// value is encoded for.
pub struct ReplySink {
    complete: Box<dyn FnOnce(Result<Bytes, RemoteError>) + Send>,
    audience: Option<Audience>,
}

impl ReplySink {
    /// A sink that runs `complete` with the encoded reply, read in this
    /// process.
    pub(crate) fn new(complete: impl FnOnce(Result<Bytes, RemoteError>) + Send + 'static) -> Self {
        ReplySink {
            complete: Box::new(complete),
            audience: None,
        }
    }

    /// A sink whose reply is read by `audience`'s holders.
    pub(crate) fn for_audience(
        audience: Audience,
        complete: impl FnOnce(Result<Bytes, RemoteError>) + Send + 'static,
    ) -> Self {
        ReplySink {
            complete: Box::new(complete),
            audience: Some(audience),
        }
    }

    /// Completes the call.
    pub(crate) fn complete(self, result: Result<Bytes, RemoteError>) {
        (self.complete)(result)
    }

    /// Fails the call with `error`.
    pub(crate) fn fail(self, error: RemoteError) {
        self.complete(Err(error))
    }

    /// Encodes `value` for whoever reads this sink's reply.
    fn encode<T: Serialize>(&self, value: &T) -> Result<Bytes, RemoteError> {
        match &self.audience {
            Some(audience) => encoding_for(audience, || encode(value)),
            None => encode(value),
        }
    }
}

impl fmt::Debug for ReplySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplySink")
    }
}

/// Fails `sink`, if there is one, with `error`.
pub(crate) fn fail(sink: Option<ReplySink>, error: RemoteError) {
    if let Some(sink) = sink {
        sink.fail(error);
    }
}

/// Who reads a value being encoded: the address this process is known by,
/// and the process of every holder of an encoded copy.
/// Cheap to clone: two reference counts.
#[derive(Clone, Debug)]
pub(crate) struct Audience {
    pub(crate) local: Arc<str>,
    pub(crate) holders: Arc<[Arc<str>]>,
}

impl Audience {
    /// The audience of a message over `outbound`.
    pub(crate) fn of(outbound: &dyn Outbound) -> Self {
        outbound.audience().clone()
    }
}

/// An encoding in progress: its audience and the ports leased so far.
struct Scope {
    audience: Audience,
    leases: Vec<u64>,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Runs `encode` (a value's serialisation) for `audience`: references
/// serialise with this process's address, and every port serialised stays
/// open until each holder has dropped its copy or been lost.
pub(crate) fn encoding_for<R>(audience: &Audience, encode: impl FnOnce() -> R) -> R {
    let scope = Scope {
        audience: audience.clone(),
        leases: Vec::new(),
    };
    let outer = SCOPE.with(|s| s.borrow_mut().replace(scope));
    let result = encode();
    let scope = SCOPE.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
    for lease in scope.map(|s| s.leases).unwrap_or_default() {
        for holder in audience.holders.iter() {
            registry::add_port_holder(lease, holder);
        }
        registry::settle_port(lease);
    }
    result
}

/// The address this process is known by, inside an encoding for another
/// process.
pub(crate) fn encoding_local_addr() -> Option<Arc<str>> {
    SCOPE.with(|s| s.borrow().as_ref().map(|s| Arc::clone(&s.audience.local)))
}

/// Inside an encoding: the holders of the encoded copies, after `lease`
/// (which makes a lease for a port being serialised) has run.
pub(crate) fn lease_port_in_encoding(lease: impl FnOnce() -> u64) -> Option<u64> {
    SCOPE.with(|s| {
        let mut s = s.borrow_mut();
        let scope = s.as_mut()?;
        let id = lease();
        scope.leases.push(id);
        Some(id)
    })
}

/// Inside an encoding: the holders of its copies.
pub(crate) fn encoding_holders() -> Option<Vec<Arc<str>>> {
    SCOPE.with(|s| s.borrow().as_ref().map(|s| s.audience.holders.to_vec()))
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

impl RemoteError {
    /// The error as a [`CallError`] of `actor`'s `endpoint`.
    pub(crate) fn into_call_error(self, actor: &ActorId, endpoint: &'static str) -> CallError {
        let actor = actor.clone();
        match self {
            RemoteError::Undeliverable(reason) => CallError::Undeliverable {
                actor,
                endpoint,
                reason,
            },
            RemoteError::Endpoint(error) => CallError::Endpoint {
                actor,
                endpoint,
                error: Box::new(error),
            },
            RemoteError::Panicked(message) => CallError::Panicked {
                actor,
                endpoint,
                message,
            },
            RemoteError::NoReply => CallError::NoReply { actor, endpoint },
            RemoteError::Timeout(timeout) => CallError::Timeout {
                actor,
                endpoint,
                timeout,
            },
            RemoteError::Codec(reason) => CallError::Codec {
                actor,
                endpoint,
                reason,
            },
            RemoteError::TooLarge { size, limit } => CallError::TooLarge {
                actor,
                endpoint,
                size,
                limit,
            },
            RemoteError::Unreachable(reason) => CallError::Unreachable {
                actor,
                endpoint,
                reason,
            },
            RemoteError::Failed(reason) => CallError::Failed {
                actor,
                endpoint,
                reason,
            },
        }
    }

    /// A [`CallError`] on its way back to a caller in another process.
    pub(crate) fn from_call_error(error: CallError) -> Self {
        match error {
            CallError::Undeliverable { reason, .. } => RemoteError::Undeliverable(reason),
            CallError::Endpoint { error, .. } => RemoteError::Endpoint(*error),
            CallError::Panicked { message, .. } => RemoteError::Panicked(message),
            CallError::NoReply { .. } => RemoteError::NoReply,
            CallError::Timeout { timeout, .. } => RemoteError::Timeout(timeout),
            CallError::Codec { reason, .. } => RemoteError::Codec(reason),
            CallError::TooLarge { size, limit, .. } => RemoteError::TooLarge { size, limit },
            CallError::Unreachable { reason, .. } => RemoteError::Unreachable(reason),
            CallError::Failed { reason, .. } => RemoteError::Failed(reason),
        }
    }
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

/// A reply slot that encodes the reply for the sink's reader and sends it.
pub(crate) fn reply_from_sink<T: Serialize + Send + 'static>(sink: ReplySink) -> ReplySlot<T> {
    Some(Reply::remote(Box::new(
        move |result: Option<Result<T, CallError>>| {
            let encoded = match result {
                Some(result) => result
                    .map_err(RemoteError::from_call_error)
                    .and_then(|value| sink.encode(&value)),
                None => Err(RemoteError::NoReply),
            };
            sink.complete(encoded);
        },
    )))
}

/// The wire form of a message, for generated code: encodes `args` and turns
/// the reply slot into a sink. If encoding fails, an awaiting caller gets the
/// error and so does the returned `Err`.
pub(crate) fn encode_message<Args, T>(
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
pub(crate) fn decode_message<Args, T>(
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
