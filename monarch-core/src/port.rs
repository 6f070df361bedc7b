//! Ports: where replies and streams of values go.
//!
//! - [`ReplyPort<T>`]: one reply to one ask, taken out of a call by an endpoint
//!   that answers later (from another task, say).
//! - [`Port<T>`] and [`PortReceiver<T>`]: a stream of values. Pass the port in a
//!   message; the receiver is a [`futures::Stream`] that ends when every port
//!   clone is dropped.
//!
//! Both serialise as an id registered in this process and deserialise, in the
//! same process, back to a working port.

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use futures::Stream;
use std::cell::RefCell;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::{mpsc, oneshot};

use crate::net::{Header, Link};
use crate::{registry, ActorId, CallError};

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
                message: message.to_string(),
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
            sender,
            origin: None,
        },
        PortReceiver { receiver },
    )
}

/// The sending end of a stream of values. Clone it to send from several places.
pub struct Port<T> {
    sender: mpsc::UnboundedSender<T>,
    /// For a port whose receiver is in another process: where its values go.
    origin: Option<Arc<Origin>>,
}

/// The process and port id a forwarded port's values travel to.
struct Origin {
    link: Arc<Link>,
    id: u64,
}

/// The receiver of a [`Port`] was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the port's receiver has been dropped")]
pub struct PortClosed;

impl<T> Port<T> {
    /// Sends one value.
    pub fn send(&self, value: T) -> Result<(), PortClosed> {
        self.sender.send(value).map_err(|_| PortClosed)
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl<T> Clone for Port<T> {
    fn clone(&self) -> Self {
        Port {
            sender: self.sender.clone(),
            origin: self.origin.clone(),
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
    addr: Option<String>,
    id: u64,
}

/// A message being encoded for other processes.
struct WireScope {
    /// The recipients' addresses, one per recipient.
    peers: Vec<String>,
    /// The ports leased to them so far.
    leases: Vec<u64>,
}

thread_local! {
    static WIRE_SCOPE: RefCell<Option<WireScope>> = const { RefCell::new(None) };
}

/// Runs `encode` (a message's serialisation) for delivery to `peers`, one entry
/// per recipient: every port it serialises stays open until each recipient has
/// dropped its copy or been lost.
pub(crate) fn with_wire_peers<R>(peers: &[&str], encode: impl FnOnce() -> R) -> R {
    let scope = WireScope {
        peers: peers.iter().map(|p| p.to_string()).collect(),
        leases: Vec::new(),
    };
    let outer = WIRE_SCOPE.with(|s| s.borrow_mut().replace(scope));
    let result = encode();
    let scope = WIRE_SCOPE.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
    for lease in scope.map(|s| s.leases).unwrap_or_default() {
        for peer in peers {
            registry::add_port_holder(lease, peer);
        }
        registry::settle_port(lease);
    }
    result
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Serialize for Port<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A port forwarded from another process travels as that process's
        // port: recipients send to it directly, and its owner counts them.
        if let Some(origin) = &self.origin {
            let forwarded = WIRE_SCOPE.with(|scope| {
                let scope = scope.borrow();
                let scope = scope.as_ref()?;
                for peer in &scope.peers {
                    if peer != origin.link.peer() {
                        let hold = Header::PortHold {
                            port: origin.id,
                            holder: peer.clone(),
                        };
                        origin.link.send(hold, bytes::Bytes::new());
                    }
                }
                Some(())
            });
            if forwarded.is_some() {
                let wire = PortWire {
                    addr: Some(origin.link.peer().to_string()),
                    id: origin.id,
                };
                return wire.serialize(serializer);
            }
        }
        let leased = WIRE_SCOPE.with(|scope| {
            scope.borrow_mut().as_mut().map(|scope| {
                let id = registry::lease_port(self.sender.clone());
                scope.leases.push(id);
                id
            })
        });
        let wire = match (leased, crate::net::router()) {
            (Some(id), Some(router)) => PortWire {
                addr: Some(router.addr().to_string()),
                id,
            },
            _ => PortWire {
                addr: None,
                id: registry::register_port(self.sender.downgrade()),
            },
        };
        wire.serialize(serializer)
    }
}

impl<'de, T: Serialize + DeserializeOwned + Send + 'static> Deserialize<'de> for Port<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let PortWire { addr, id } = PortWire::deserialize(deserializer)?;
        if let (Some(addr), Some(router)) = (addr, crate::net::router()) {
            if addr != router.addr() {
                return Ok(forward_to(router, &addr, id));
            }
        }
        match registry::lookup_port::<T>(id) {
            Some(sender) => Ok(Port {
                sender,
                origin: None,
            }),
            // The receiver is gone: a port that is closed from the start.
            None => Ok(Port {
                sender: mpsc::unbounded_channel().0,
                origin: None,
            }),
        }
    }
}

/// A port here whose values travel to port `id` of the process at `addr`; when
/// every copy is dropped, that process is told.
fn forward_to<T: Serialize + Send + 'static>(
    router: &std::sync::Arc<crate::net::Router>,
    addr: &str,
    id: u64,
) -> Port<T> {
    let (sender, mut receiver) = mpsc::unbounded_channel::<T>();
    let link = router.link(addr);
    let origin = Arc::new(Origin {
        link: Arc::clone(&link),
        id,
    });
    tokio::spawn(async move {
        while let Some(value) = receiver.recv().await {
            match crate::remote::encode(&value) {
                Ok(bytes) => {
                    if !link.send(crate::net::Header::PortValue { port: id }, bytes) {
                        return;
                    }
                }
                Err(error) => tracing::warn!(%error, "port value could not be encoded"),
            }
        }
        link.send(
            crate::net::Header::PortDropped { port: id },
            bytes::Bytes::new(),
        );
    });
    Port {
        sender,
        origin: Some(origin),
    }
}

impl<T: Send + 'static> Serialize for ReplyPort<T> {
    fn serialize<S: Serializer>(&self, _serializer: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "a ReplyPort answers one call and cannot be serialised; pass a Port<T> instead",
        ))
    }
}
