//! Ports: where replies and streams of values go.
//!
//! - [`ReplyPort<T>`]: one reply to one ask, taken out of a call by an endpoint
//!   that answers later (from another task, say).
//! - [`Port<T>`] and [`PortReceiver<T>`]: a stream of values. Pass the port in a
//!   message; the receiver is a [`futures::Stream`] that ends when every port
//!   clone is dropped.
//!
//! A [`Port`] serialises as plain data, its id and the address of the process
//! its receiver lives in, so it can be passed in messages: a copy in another
//! process sends its values straight to the receiver's process, and the stream
//! ends when every copy, here and elsewhere, is dropped.

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::{mpsc, oneshot};

use super::registry;
use super::remote::{
    encoding_for, encoding_holders, encoding_local_addr, lease_port_in_encoding, network, Audience,
    Outbound,
};
use crate::error::ErrorReport;
use crate::wire::codec::encode;
use crate::wire::RemoteError;
use crate::{ActorId, CallError};

/// Where an endpoint's reply goes, if anyone awaits it. Generated messages carry
/// one per endpoint; `None` for a tell.
pub type ReplySlot<T> = Option<Reply<T>>;

/// The sending half of an ask's reply channel: to a caller in this process, or
/// encoded back to one in another.
pub struct Reply<T> {
    to: ReplyTo<T>,
}

/// Completes a remote call: `None` when the reply was dropped unsent.
pub(crate) type RemoteReply<T> = Box<dyn FnOnce(Option<Result<T, CallError>>) + Send>;

enum ReplyTo<T> {
    Local(Option<oneshot::Sender<Result<T, CallError>>>),
    /// Boxed twice so the variant is one thin pointer: replies travel in every
    /// ask's queue slot, and most are local.
    Remote(Option<Box<RemoteReply<T>>>),
}

impl<T> Reply<T> {
    pub(crate) fn new(sender: oneshot::Sender<Result<T, CallError>>) -> Self {
        Reply {
            to: ReplyTo::Local(Some(sender)),
        }
    }

    pub(crate) fn remote(complete: RemoteReply<T>) -> Self {
        Reply {
            to: ReplyTo::Remote(Some(Box::new(complete))),
        }
    }

    /// Delivers the reply (or error); a caller that gave up is ignored.
    pub fn send(mut self, result: Result<T, CallError>) {
        match &mut self.to {
            ReplyTo::Local(sender) => {
                if let Some(sender) = sender.take() {
                    let _ = sender.send(result);
                }
            }
            ReplyTo::Remote(complete) => {
                if let Some(complete) = complete.take() {
                    complete(Some(result));
                }
            }
        }
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        // A local caller sees its channel close; a remote one must be told.
        if let ReplyTo::Remote(complete) = &mut self.to {
            if let Some(complete) = complete.take() {
                complete(None);
            }
        }
    }
}

/// The reply to one ask, held by an endpoint that replies later.
///
/// Declare it as an endpoint's last parameter (`reply: ReplyPort<u64>`): the
/// caller's `call()` then resolves to the `u64` sent here, from any task. Dropping
/// it unsent gives the caller [`CallError::NoReply`]. On a tell it is a no-op.
pub struct ReplyPort<T> {
    reply: Option<Reply<T>>,
    actor: ActorId,
    endpoint: &'static str,
}

impl<T> ReplyPort<T> {
    /// Wraps the reply slot of a message; used by generated code.
    pub fn new(reply: ReplySlot<T>, actor: ActorId, endpoint: &'static str) -> Self {
        ReplyPort {
            reply,
            actor,
            endpoint,
        }
    }

    /// Sends the reply.
    pub fn send(mut self, value: T) {
        if let Some(reply) = self.reply.take() {
            reply.send(Ok(value));
        }
    }

    /// Fails the call with an endpoint error carrying `message`.
    pub fn fail(mut self, message: impl fmt::Display) {
        if let Some(reply) = self.reply.take() {
            reply.send(Err(CallError::Endpoint {
                actor: self.actor.clone(),
                endpoint: self.endpoint,
                error: Box::new(ErrorReport::new(message)),
            }));
        }
    }

    /// Whether a caller awaits this reply (false for a tell).
    pub fn is_awaited(&self) -> bool {
        self.reply.is_some()
    }
}

impl<T> Drop for ReplyPort<T> {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply.send(Err(CallError::NoReply {
                actor: self.actor.clone(),
                endpoint: self.endpoint,
            }));
        }
    }
}

impl<T> fmt::Debug for ReplyPort<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplyPort({}.{})", self.actor, self.endpoint)
    }
}

/// Opens a stream: values sent on the [`Port`] (and its clones) arrive in order
/// at the [`PortReceiver`].
///
/// ```
/// use futures::StreamExt;
/// use monarch_core::open_port;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let (port, receiver) = open_port::<u32>();
/// for i in 0..3 {
///     port.send(i).unwrap();
/// }
/// drop(port);
/// assert_eq!(receiver.collect::<Vec<_>>().await, [0, 1, 2]);
/// # });
/// ```
pub fn open_port<T: Send + 'static>() -> (Port<T>, PortReceiver<T>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    (
        Port {
            target: Target::Local(sender),
        },
        PortReceiver { receiver },
    )
}

/// The sending end of a stream of values. Clone it to send from several places.
pub struct Port<T> {
    target: Target<T>,
}

enum Target<T> {
    /// The receiver is in this process.
    Local(mpsc::UnboundedSender<T>),
    /// The receiver is in another process: values are encoded and sent there.
    Remote(Arc<RemotePort<T>>),
}

/// A port whose receiver is in the process at the end of `outbound`; when the
/// last copy here is dropped, that process is told.
struct RemotePort<T> {
    outbound: Arc<dyn Outbound>,
    id: u64,
    encode: fn(&T, &dyn Outbound) -> Result<Bytes, RemoteError>,
}

impl<T> Drop for RemotePort<T> {
    fn drop(&mut self) {
        self.outbound.port_dropped(self.id);
    }
}

/// Encodes a port value for the receiver's process.
fn encode_value<T: Serialize>(value: &T, outbound: &dyn Outbound) -> Result<Bytes, RemoteError> {
    encoding_for(&Audience::of(outbound), || encode(value))
}

/// The receiver of a [`Port`] was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the port's receiver has been dropped")]
pub struct PortClosed;

impl<T> Port<T> {
    /// Sends one value. To a receiver in another process the value is encoded
    /// here; one that cannot be is dropped with a logged error.
    pub fn send(&self, value: T) -> Result<(), PortClosed> {
        match &self.target {
            Target::Local(sender) => sender.send(value).map_err(|_| PortClosed),
            Target::Remote(remote) => match (remote.encode)(&value, remote.outbound.as_ref()) {
                Ok(bytes) => remote
                    .outbound
                    .port_value(remote.id, bytes)
                    .then_some(())
                    .ok_or(PortClosed),
                Err(error) => {
                    tracing::error!(%error, "a port value could not be encoded; dropped");
                    Ok(())
                }
            },
        }
    }

    /// Whether the receiver is gone (for a receiver in another process:
    /// whether its process is lost).
    pub fn is_closed(&self) -> bool {
        match &self.target {
            Target::Local(sender) => sender.is_closed(),
            Target::Remote(remote) => remote.outbound.is_closed(),
        }
    }
}

impl<T> Clone for Port<T> {
    fn clone(&self) -> Self {
        Port {
            target: match &self.target {
                Target::Local(sender) => Target::Local(sender.clone()),
                Target::Remote(remote) => Target::Remote(Arc::clone(remote)),
            },
        }
    }
}

impl<T> fmt::Debug for Port<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Port")
    }
}

/// The receiving end of a [`Port`]: a stream that ends when every sender is gone.
pub struct PortReceiver<T> {
    receiver: mpsc::UnboundedReceiver<T>,
}

impl<T> PortReceiver<T> {
    /// The next value, or `None` once every port clone is dropped.
    pub async fn recv(&mut self) -> Option<T> {
        self.receiver.recv().await
    }
}

impl<T> Stream for PortReceiver<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<T>> {
        self.receiver.poll_recv(cx)
    }
}

impl<T> fmt::Debug for PortReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PortReceiver")
    }
}

/// A port as it travels: its id in the process that owns the receiver, and
/// where that process listens (absent when the port was not serialised for
/// another process).
#[derive(Serialize, Deserialize)]
struct PortWire {
    addr: Option<Arc<str>>,
    id: u64,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Serialize for Port<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let wire = match &self.target {
            // A port forwarded from another process travels as that process's
            // port: holders send to it directly, and its owner counts them.
            Target::Remote(remote) => {
                for holder in encoding_holders().unwrap_or_default() {
                    if *holder != *remote.outbound.peer() {
                        remote.outbound.port_held(remote.id, &holder);
                    }
                }
                PortWire {
                    addr: Some(remote.outbound.peer().into()),
                    id: remote.id,
                }
            }
            Target::Local(sender) => {
                match lease_port_in_encoding(|| registry::lease_port(sender.clone())) {
                    Some(id) => PortWire {
                        addr: encoding_local_addr(),
                        id,
                    },
                    None => PortWire {
                        addr: None,
                        id: registry::register_port(sender.downgrade()),
                    },
                }
            }
        };
        wire.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned + Send + 'static> Deserialize<'de> for Port<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let PortWire { addr, id } = PortWire::deserialize(deserializer)?;
        if let (Some(addr), Some(network)) = (addr, network()) {
            if *addr != *network.local_addr() {
                return Ok(Port {
                    target: Target::Remote(Arc::new(RemotePort {
                        outbound: network.outbound(&addr),
                        id,
                        encode: encode_value::<T>,
                    })),
                });
            }
        }
        let sender = registry::lookup_port::<T>(id)
            // The receiver is gone: a port that is closed from the start.
            .unwrap_or_else(|| mpsc::unbounded_channel().0);
        Ok(Port {
            target: Target::Local(sender),
        })
    }
}

impl<T: Send + 'static> Serialize for ReplyPort<T> {
    fn serialize<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "a ReplyPort answers one call and cannot be serialised; pass a Port<T> instead",
        ))
    }
}
