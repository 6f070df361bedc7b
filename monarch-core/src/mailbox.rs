//! What travels through an actor's mailbox.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::actor::Undeliverable;
use crate::supervision::SupervisionEvent;
use crate::ActorId;

/// One item in an actor's queue. Messages and control signals share the queue,
/// so a stop request is handled after everything sent before it.
pub(crate) enum Signal<M> {
    /// An endpoint message, with where to report it if it is never handled.
    Message(M, Option<ReturnAddress>),
    /// Stop after the messages queued before this signal.
    Stop(StopKind),
    /// An owned actor failed. Rare signals are boxed to keep the queue's slots
    /// as small as an endpoint message.
    Supervision(Box<SupervisionEvent>),
    /// An owned actor stopped normally.
    ChildStopped(Box<ActorId>),
    /// A message this actor told was never handled.
    Undeliverable(Box<Undeliverable>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopKind {
    Requested,
    OwnerStopping,
}

pub(crate) type MailboxSender<M> = mpsc::UnboundedSender<Signal<M>>;

/// Where to report a told message that was never handled: the sending actor's
/// mailbox, type-erased.
pub(crate) type ReturnAddress = Arc<dyn Fn(Undeliverable) + Send + Sync>;

tokio::task_local! {
    /// The return address of the actor whose task is running, if any.
    pub(crate) static CURRENT_SENDER: ReturnAddress;
}

/// The current task's return address, when it is an actor's task.
pub(crate) fn current_return_address() -> Option<ReturnAddress> {
    CURRENT_SENDER.try_with(Arc::clone).ok()
}

/// A message type with no values: what owners are notified with carries no
/// endpoint message.
pub(crate) enum Never {}

impl Signal<Never> {
    /// The same signal, typed for a mailbox of `M`.
    pub(crate) fn widen<M>(self) -> Signal<M> {
        match self {
            Signal::Message(never, _) => match never {},
            Signal::Stop(kind) => Signal::Stop(kind),
            Signal::Supervision(event) => Signal::Supervision(event),
            Signal::ChildStopped(id) => Signal::ChildStopped(id),
            Signal::Undeliverable(u) => Signal::Undeliverable(u),
        }
    }
}
