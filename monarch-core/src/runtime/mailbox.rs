//! What travels through an actor's mailbox.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::Poll;

use super::actor::Undeliverable;
use super::queue;
use crate::supervision::SupervisionEvent;
use crate::{ActorId, CastPoint};

/// One item in an actor's queue. Messages and stop requests share one order,
/// so a stop is handled after everything sent before it. What an actor hears
/// of the actors it owns (their failures and ends) and of its own undelivered
/// messages is urgent: it is handled before any message queued ahead of it.
pub(crate) enum Signal<M> {
    /// An endpoint message, with where to report it if it is never handled.
    Message(M, Option<ReturnAddress>),
    /// An endpoint message sent through a mesh, with where in the called
    /// slice it was addressed (boxed: casts come from other processes or in
    /// bulk, and the slot stays as small as a plain message).
    Cast(Box<(M, CastPoint)>, Option<ReturnAddress>),
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

impl<M> Signal<M> {
    /// The endpoint message this signal carries, if it is one, with its
    /// return address.
    pub(crate) fn into_message(self) -> Option<(M, Option<ReturnAddress>)> {
        match self {
            Signal::Message(message, from) => Some((message, from)),
            Signal::Cast(boxed, from) => Some((boxed.0, from)),
            _ => None,
        }
    }
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

/// An actor's task, with its return address: while the task is polled, the
/// address is this thread's current sender, so that what the actor tells can
/// come back to it. The address is registered in the table only the first
/// time the actor sends something: an actor that never sends costs no entry.
pub(crate) struct WithSender<F> {
    address: ReturnAddress,
    /// The report, until the address is registered.
    report: Option<Report>,
    task: Pin<Box<F>>,
}

thread_local! {
    /// The return address of the task being polled on this thread, if it is
    /// an actor's (a plain value, for the send path to read cheaply).
    static ADDRESS: Cell<Option<ReturnAddress>> = const { Cell::new(None) };
    /// That task's report, while its address is not registered.
    static REPORT: RefCell<Option<Report>> = const { RefCell::new(None) };
}

impl<F: Future<Output = ()>> WithSender<F> {
    /// Runs `task` with a fresh return address that reports through `report`.
    pub(crate) fn new(
        task: Pin<Box<F>>,
        report: impl Fn(Undeliverable) + Send + Sync + 'static,
    ) -> Self {
        WithSender {
            address: next_address(),
            report: Some(Arc::new(report)),
            task,
        }
    }
}

impl<F: Future<Output = ()>> Future for WithSender<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let outer = (
            ADDRESS.replace(Some(this.address)),
            REPORT.replace(this.report.take()),
        );
        // Put back as it was, and take back the report if the address was
        // not registered meanwhile, also if the task panics.
        struct Restore<'a> {
            outer: Option<(Option<ReturnAddress>, Option<Report>)>,
            report: &'a mut Option<Report>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                let (address, report) = self.outer.take().unwrap_or_default();
                ADDRESS.set(address);
                *self.report = REPORT.replace(report);
            }
        }
        let restore = Restore {
            outer: Some(outer),
            report: &mut this.report,
        };
        let polled = this.task.as_mut().poll(cx);
        drop(restore);
        if polled.is_ready() && this.report.is_none() {
            // Registered once: retired now that the actor is gone.
            this.address.retire();
        }
        polled
    }
}

/// The current task's return address, when it is an actor's task.
#[inline]
pub(crate) fn current_return_address() -> Option<ReturnAddress> {
    let address = ADDRESS.get()?;
    register_on_first_use(address);
    Some(address)
}

/// Registers the running actor's address, the first time it is used.
fn register_on_first_use(address: ReturnAddress) {
    if let Some(report) = REPORT.take() {
        addresses().insert(address, report);
    }
}

/// A message type with no values: what owners are notified with carries no
/// endpoint message.
pub(crate) enum Never {}

impl Signal<Never> {
    /// The same signal, typed for a mailbox of `M`.
    pub(crate) fn widen<M>(self) -> Signal<M> {
        match self {
            Signal::Message(never, _) => match never {},
            Signal::Cast(boxed, _) => match boxed.0 {},
            Signal::Stop(kind) => Signal::Stop(kind),
            Signal::Supervision(event) => Signal::Supervision(event),
            Signal::ChildStopped(id) => Signal::ChildStopped(id),
            Signal::Undeliverable(u) => Signal::Undeliverable(u),
        }
    }
}
