//! What travels through an actor's mailbox.

use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use super::actor::Undeliverable;
use super::queue;
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

/// Where an actor's signals are sent.
pub(crate) type MailboxSender<M> = queue::Sender<Signal<M>>;

/// Where an actor takes its signals from.
pub(crate) type MailboxReceiver<M> = queue::Receiver<Signal<M>>;

/// Where to report a told message that was never handled: a tag naming the
/// sending actor, looked up in the table of return addresses only when a
/// message comes back. A message carries eight bytes for it and no reference
/// count to touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ReturnAddress(NonZeroU64);

type Report = Arc<dyn Fn(Undeliverable) + Send + Sync>;

static RETURN_ADDRESSES: LazyLock<Mutex<HashMap<ReturnAddress, Report>>> =
    LazyLock::new(Default::default);
static NEXT_ADDRESS: AtomicU64 = AtomicU64::new(1);

fn next_address() -> ReturnAddress {
    let tag = NEXT_ADDRESS.fetch_add(1, Ordering::Relaxed);
    ReturnAddress(NonZeroU64::new(tag).expect("tags start at 1"))
}

fn addresses() -> std::sync::MutexGuard<'static, HashMap<ReturnAddress, Report>> {
    RETURN_ADDRESSES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ReturnAddress {
    /// A return address for a sender elsewhere (an actor of another process):
    /// reports to it run `report`, until it is retired.
    pub(crate) fn register(report: impl Fn(Undeliverable) + Send + Sync + 'static) -> Self {
        let address = next_address();
        addresses().insert(address, Arc::new(report));
        address
    }

    /// The address as it travels to another process.
    pub(crate) fn tag(self) -> u64 {
        self.0.get()
    }

    /// Reports `undeliverable` to the sender whose address travelled as
    /// `tag`, if it is still there.
    pub(crate) fn report_tag(tag: u64, undeliverable: Undeliverable) {
        if let Some(tag) = NonZeroU64::new(tag) {
            ReturnAddress(tag).report(undeliverable);
        }
    }

    /// The sender is gone: reports to it are dropped from now on.
    pub(crate) fn retire(self) {
        addresses().remove(&self);
    }

    /// Reports `undeliverable` to the sender, if it is still there.
    pub(crate) fn report(self, undeliverable: Undeliverable) {
        let report = addresses().get(&self).cloned();
        if let Some(report) = report {
            report(undeliverable);
        }
    }
}

/// The running actor's return address, registered in the table only the first
/// time the actor sends something: an actor that never sends costs no entry.
pub(crate) struct CurrentSender {
    address: ReturnAddress,
    report: RefCell<Option<Report>>,
}

impl CurrentSender {
    /// A return address for an actor, reporting through `report` once used.
    pub(crate) fn new(report: impl Fn(Undeliverable) + Send + Sync + 'static) -> Self {
        CurrentSender {
            address: next_address(),
            report: RefCell::new(Some(Arc::new(report))),
        }
    }

    fn address(&self) -> ReturnAddress {
        if let Some(report) = self.report.borrow_mut().take() {
            addresses().insert(self.address, report);
        }
        self.address
    }

    /// The actor is gone: retires its address if it was ever used.
    pub(crate) fn retire(&self) {
        if self.report.borrow().is_none() {
            self.address.retire();
        }
    }
}

tokio::task_local! {
    /// The return address of the actor whose task is running, if any.
    pub(crate) static CURRENT_SENDER: CurrentSender;
}

/// The current task's return address, when it is an actor's task.
pub(crate) fn current_return_address() -> Option<ReturnAddress> {
    CURRENT_SENDER.try_with(CurrentSender::address).ok()
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
