//! References to actors and the calls made through them.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::{oneshot, Notify};

use super::actor::{Actor, ActorClient};
use super::mailbox::{current_return_address, MailboxSender, ReturnAddress, Signal, StopKind};
use super::port::{Reply, ReplySlot};
use super::registry;
use super::remote::{
    encoding_for, encoding_local_addr, network, Audience, Envelope, Outbound, ReplySink,
    Undelivered, WireMessage,
};
use crate::wire::{Payload, RemoteError};
use crate::{ActorId, CallError, CastPoint, SendError, StopError};

/// How long [`Call::call`] waits for a reply unless told otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A typed reference to an actor. Cheap to clone; usable from any task.
///
/// It dereferences to the actor's generated client, so endpoint methods are
/// called on it directly: `counter.incr(5).send()?`, `counter.get().call().await?`.
/// It serialises as plain data, the actor's id and the address of its process,
/// so it can be passed in messages and used from any process of the job it
/// reaches; a reference whose actor is gone sends nothing and fails with
/// [`SendError::Undeliverable`].
pub struct ActorRef<A: Actor> {
    client: A::Client,
}

impl<A: Actor> ActorRef<A> {
    pub(crate) fn from_core(core: RefCore<A>) -> Self {
        ActorRef {
            client: A::Client::from_core(core),
        }
    }

    pub(crate) fn core(&self) -> &RefCore<A> {
        self.client.core()
    }

    /// The actor's id.
    pub fn actor_id(&self) -> &ActorId {
        &self.core().shared.id
    }

    /// Whether the actor has stopped (for an actor in another process: whether
    /// it was stopped through this reference or its process was lost).
    pub fn is_stopped(&self) -> bool {
        let core = self.core();
        core.shared.stopped.load(Ordering::Acquire)
            || core.remote.as_ref().is_some_and(|r| r.is_closed())
    }

    /// Asks the actor to stop once it has handled everything sent before this
    /// request, and waits until it has stopped (children, tasks and `on_stop`
    /// included, and its owner told). Returns at once if it has already
    /// stopped.
    ///
    /// Only the actor's owner may stop it (the actor itself stops with
    /// [`crate::Context::stop`]): the reference a spawn returns, and its clones
    /// in the spawning process, may; a reference that came in a message, or
    /// was looked up, may not, and gets [`StopError::NotOwner`].
    pub async fn stop(&self) -> Result<(), StopError> {
        let core = self.core();
        if !core.may_stop {
            return Err(StopError::NotOwner {
                actor: core.shared.id.clone(),
            });
        }
        match &core.remote {
            None => {
                let _ = core.mailbox.send(Signal::Stop(StopKind::Requested));
                core.shared.wait_stopped().await;
            }
            Some(remote) => {
                let (tx, rx) = oneshot::channel();
                remote.stop(
                    &core.shared.id,
                    ReplySink::new(move |_| {
                        let _ = tx.send(());
                    }),
                );
                let _ = rx.await;
                core.shared.mark_stopped("it was stopped");
            }
        }
        Ok(())
    }

    /// Waits until the actor has stopped, for whatever reason, and its owner
    /// has been told (for an actor in another process: until it is stopped
    /// through this reference or its process is lost).
    pub async fn wait_stopped(&self) {
        let core = self.core();
        match &core.remote {
            None => core.shared.wait_stopped().await,
            Some(remote) => {
                tokio::select! {
                    () = core.shared.wait_stopped() => {}
                    () = remote.closed() => {}
                }
            }
        }
    }
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef {
            client: self.client.clone(),
        }
    }
}

impl<A: Actor> Deref for ActorRef<A> {
    type Target = A::Client;

    fn deref(&self) -> &A::Client {
        &self.client
    }
}

impl<A: Actor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ActorRef").field(self.actor_id()).finish()
    }
}

impl<A: Actor> fmt::Display for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.actor_id(), f)
    }
}

impl<A: Actor> PartialEq for ActorRef<A> {
    fn eq(&self, other: &Self) -> bool {
        self.actor_id() == other.actor_id()
    }
}

impl<A: Actor> Eq for ActorRef<A> {}

/// A reference as it travels: the actor's id and where its process listens
/// (absent when this process has no transport running).
#[derive(Serialize, Deserialize)]
struct RefWire {
    id: ActorId,
    addr: Option<Arc<str>>,
}

impl<A: Actor> Serialize for ActorRef<A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let core = self.core();
        let addr = match &core.remote {
            Some(remote) => Some(remote.peer().into()),
            None => {
                // Its id leaves here: messages may come back for it.
                registry::register_actor(core);
                encoding_local_addr()
            }
        };
        RefWire {
            id: core.shared.id.clone(),
            addr,
        }
        .serialize(serializer)
    }
}

impl<'de, A: Actor> Deserialize<'de> for ActorRef<A> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let RefWire { id, addr } = RefWire::deserialize(deserializer)?;
        Ok(ActorRef::from_core(RefCore::resolve(id, addr.as_deref())))
    }
}

/// The untyped part of a reference: the actor's id and mailbox. Generated clients
/// wrap it; user code works with [`ActorRef`].
pub struct RefCore<A: Actor> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) mailbox: MailboxSender<A::Message>,
    /// For an actor in another process: the link its messages travel on.
    pub(crate) remote: Option<Arc<dyn Outbound>>,
    /// Whether this reference is its owner's, which may stop the actor.
    pub(crate) may_stop: bool,
}

/// State shared by every reference to one actor.
pub(crate) struct Shared {
    pub(crate) id: ActorId,
    /// Set once the actor takes no more messages.
    pub(crate) stopped: AtomicBool,
    /// Set once it is gone for good: stopped, and its owner told.
    finished: AtomicBool,
    stop_notify: Notify,
    /// Why the actor stopped, once it has.
    why: OnceLock<Cow<'static, str>>,
    /// Whether it is in the registry of actors other processes may address.
    registered: AtomicBool,
}

impl Shared {
    pub(crate) fn new(id: ActorId) -> Self {
        Shared {
            id,
            stopped: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            stop_notify: Notify::new(),
            why: OnceLock::new(),
            registered: AtomicBool::new(false),
        }
    }

    /// Whether the actor is in the registry.
    pub(crate) fn is_registered(&self) -> bool {
        self.registered.load(Ordering::SeqCst)
    }

    /// Marks the actor registered; `false` if it already was.
    pub(crate) fn set_registered(&self) -> bool {
        !self.registered.swap(true, Ordering::SeqCst)
    }

    /// The actor has stopped, for the reason `why` (a clause: "it was
    /// stopped", "it panicked in endpoint `work`: ...").
    /// The actor is gone, for `why`: stopping and finished at once.
    pub(crate) fn mark_stopped(&self, why: impl Into<Cow<'static, str>>) {
        self.mark_stopping(why);
        self.mark_finished();
    }

    /// The actor takes no more messages, for `why`; it may still be telling
    /// its owner.
    pub(crate) fn mark_stopping(&self, why: impl Into<Cow<'static, str>>) {
        let _ = self.why.set(why.into());
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// The actor is gone and its owner has been told: those waiting for its
    /// stop may go on.
    pub(crate) fn mark_finished(&self) {
        self.finished.store(true, Ordering::SeqCst);
        self.stop_notify.notify_waiters();
    }

    /// How the actor stopped, as a clause ("it was stopped").
    pub(crate) fn why(&self) -> String {
        self.why
            .get()
            .map_or_else(|| "it stopped".to_string(), |why| why.to_string())
    }

    /// Why the actor cannot be sent to: how it stopped.
    pub(crate) fn stopped_because(&self) -> String {
        match self.why.get() {
            Some(why) => format!("the actor has stopped: {why}"),
            None => "the actor has stopped".to_string(),
        }
    }

    pub(crate) async fn wait_stopped(&self) {
        loop {
            let notified = self.stop_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.finished.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

impl<A: Actor> RefCore<A> {
    /// A reference to an actor that is not reachable: every send fails.
    fn dangling(id: ActorId, why: String) -> Self {
        let mailbox = MailboxSender::closed();
        let shared = Arc::new(Shared::new(id));
        shared.mark_stopped(why);
        RefCore {
            shared,
            mailbox,
            remote: None,
            may_stop: false,
        }
    }

    /// The reference for `id`: the local actor if it lives here, else one that
    /// reaches it over the link to the process at `addr`, else one whose sends
    /// fail.
    pub(crate) fn resolve(id: ActorId, addr: Option<&str>) -> Self {
        if let Some(mut core) = registry::lookup_actor::<A>(&id) {
            // Looked up, not handed out by a spawn: it may not stop the actor.
            core.may_stop = false;
            return core;
        }
        match (addr, network()) {
            (Some(addr), Some(network)) if addr != network.local_addr() => {
                RefCore::remote(id, network.outbound(addr))
            }
            _ => {
                let why = registry::why_gone(&id);
                RefCore::dangling(id, why)
            }
        }
    }

    /// The reference for actor `id` in the process at the end of `outbound`.
    pub(crate) fn remote(id: ActorId, outbound: Arc<dyn Outbound>) -> Self {
        RefCore {
            shared: Arc::new(Shared::new(id)),
            mailbox: MailboxSender::closed(),
            remote: Some(outbound),
            may_stop: false,
        }
    }

    /// The same reference, as its owner's: it may stop the actor.
    pub(crate) fn owned(mut self) -> Self {
        self.may_stop = true;
        self
    }

    /// Whether the actor lives in another process.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The link to the actor's process, for an actor in another process.
    pub(crate) fn outbound(&self) -> Option<&Arc<dyn Outbound>> {
        self.remote.as_ref()
    }

    /// Sends an encoded message: decoded into the mailbox here, or shipped to
    /// the actor's process. This is how mesh casts, which encode once, reach
    /// each member, with where in the called slice each was addressed.
    pub(crate) fn send_encoded(
        &self,
        endpoint: &str,
        payload: Payload,
        reply: Option<ReplySink>,
        cast: Option<CastPoint>,
    ) -> Result<(), SendError> {
        let sender = current_return_address();
        let Some(remote) = &self.remote else {
            let mut reply = reply;
            return match A::from_wire(endpoint, payload, &mut reply) {
                Ok(message) => self
                    .push_local_at(message, sender, cast)
                    .map_err(|_| self.undeliverable()),
                Err(error) => {
                    super::remote::fail(reply, error);
                    Ok(())
                }
            };
        };
        let envelope = Envelope {
            to: self.shared.id.clone(),
            endpoint: endpoint.to_string(),
            payload,
            reply,
            sender,
            cast,
        };
        match remote.send(envelope) {
            Ok(()) => Ok(()),
            // An ask learns why through its reply; a tell, here.
            Err(Undelivered {
                error,
                reply: Some(reply),
            }) => {
                reply.fail(error);
                Ok(())
            }
            Err(Undelivered { error, reply: None }) => Err(match error {
                RemoteError::TooLarge { size, limit } => SendError::TooLarge {
                    actor: self.shared.id.clone(),
                    size,
                    limit,
                },
                error => SendError::Undeliverable {
                    actor: self.shared.id.clone(),
                    reason: error.to_string(),
                },
            }),
        }
    }

    fn undeliverable(&self) -> SendError {
        SendError::Undeliverable {
            actor: self.shared.id.clone(),
            reason: self.shared.stopped_because(),
        }
    }

    /// The actor's id.
    pub fn actor_id(&self) -> &ActorId {
        &self.shared.id
    }

    /// Starts a call to `endpoint`; `make` builds the message around the reply slot.
    /// This is what generated endpoint methods return.
    pub fn call<T, F>(&self, endpoint: &'static str, make: F) -> Call<'_, A, T, F>
    where
        F: FnOnce(ReplySlot<T>) -> A::Message,
    {
        Call {
            target: self,
            endpoint,
            make,
            timeout: DEFAULT_CALL_TIMEOUT,
            _reply: PhantomData,
        }
    }

    fn push(&self, message: A::Message) -> Result<(), SendError> {
        if let Some(remote) = &self.remote {
            return self.push_remote(remote.as_ref(), message);
        }
        let from = current_return_address();
        self.push_local(message, from)
            .map_err(|_| self.undeliverable())
    }

    /// Puts a message in a local actor's mailbox; gives it back if the actor
    /// has stopped.
    pub(crate) fn push_local(
        &self,
        message: A::Message,
        from: Option<ReturnAddress>,
    ) -> Result<(), Signal<A::Message>> {
        self.mailbox.send(Signal::Message(message, from))
    }

    /// Puts a message in a local actor's mailbox, with where it was
    /// addressed when it came through a mesh; gives it back if the actor has
    /// stopped.
    pub(crate) fn push_local_at(
        &self,
        message: A::Message,
        from: Option<ReturnAddress>,
        cast: Option<CastPoint>,
    ) -> Result<(), Signal<A::Message>> {
        match cast {
            None => self.mailbox.send(Signal::Message(message, from)),
            Some(point) => self
                .mailbox
                .send(Signal::Cast(Box::new((message, point)), from)),
        }
    }

    // Out of line, so the in-process path through `push` stays small.
    #[cold]
    #[inline(never)]
    fn push_remote(&self, remote: &dyn Outbound, message: A::Message) -> Result<(), SendError> {
        let endpoint = A::endpoint_name(&message);
        let wire = encoding_for(&Audience::of(remote), || {
            A::to_wire(message, &self.shared.id)
        });
        let WireMessage {
            endpoint,
            payload,
            reply,
        } = wire.map_err(|error| SendError::Codec {
            actor: self.shared.id.clone(),
            endpoint,
            reason: error.to_string(),
        })?;
        self.send_encoded(endpoint, payload, reply, None)
    }
}

impl<A: Actor> Clone for RefCore<A> {
    fn clone(&self) -> Self {
        RefCore {
            shared: Arc::clone(&self.shared),
            mailbox: self.mailbox.clone(),
            remote: self.remote.clone(),
            may_stop: self.may_stop,
        }
    }
}

/// The reply, if it arrives before this task's next turn: the first poll finds
/// nothing, wakes the task at once and yields; the second poll gives up.
async fn reply_within_a_turn<T>(
    rx: &mut oneshot::Receiver<T>,
) -> Option<Result<T, oneshot::error::RecvError>> {
    let mut yielded = false;
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *rx).poll(cx) {
        std::task::Poll::Ready(reply) => std::task::Poll::Ready(Some(reply)),
        std::task::Poll::Pending if yielded => std::task::Poll::Ready(None),
        std::task::Poll::Pending => {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// A message on its way to an endpoint, not yet sent. Finish it with
/// [`Call::send`] (tell: no reply) or [`Call::call`] (ask: await the reply).
#[must_use = "a call does nothing until `.send()` or `.call().await`"]
pub struct Call<'a, A: Actor, T, F> {
    target: &'a RefCore<A>,
    endpoint: &'static str,
    make: F,
    timeout: Duration,
    _reply: PhantomData<fn() -> T>,
}

impl<'a, A, T, F> Call<'a, A, T, F>
where
    A: Actor,
    T: Send + 'static,
    F: FnOnce(ReplySlot<T>) -> A::Message,
{
    /// Sends the message without waiting for a reply (tell).
    ///
    /// Fails at once with [`SendError::Undeliverable`] if the actor has stopped. If
    /// the actor stops before handling it, and this was sent from inside an actor,
    /// that actor's `handle_undeliverable` hook is told.
    pub fn send(self) -> Result<(), SendError> {
        let message = (self.make)(None);
        self.target.push(message)
    }

    /// How long [`Call::call`] waits for the reply (default
    /// [`DEFAULT_CALL_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the message and waits for the reply (ask).
    pub fn call(self) -> impl Future<Output = Result<T, CallError>> + Send + 'a
    where
        F: 'a,
    {
        let (tx, rx) = oneshot::channel();
        let message = (self.make)(Some(Reply::new(tx)));
        let sent = self.target.push(message);
        let target = self.target;
        let endpoint = self.endpoint;
        let timeout = self.timeout;
        async move {
            if let Err(error) = sent {
                return Err(match error {
                    SendError::Undeliverable { actor, reason } => CallError::Undeliverable {
                        actor,
                        endpoint,
                        reason,
                    },
                    SendError::Codec { actor, reason, .. } => CallError::Codec {
                        actor,
                        endpoint,
                        reason,
                    },
                    SendError::TooLarge { actor, size, limit } => CallError::TooLarge {
                        actor,
                        endpoint,
                        size,
                        limit,
                    },
                });
            }
            let mut rx = rx;
            // Most in-process replies come within one turn of the scheduler:
            // give the actor that turn before paying for a timer. A reply from
            // another process never does, and the turn would cost a wake-up
            // of another runtime thread.
            if target.remote.is_none() {
                if let Some(reply) = reply_within_a_turn(&mut rx).await {
                    return reply.unwrap_or_else(|_| {
                        Err(CallError::NoReply {
                            actor: target.shared.id.clone(),
                            endpoint,
                        })
                    });
                }
            }
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(_)) => Err(CallError::NoReply {
                    actor: target.shared.id.clone(),
                    endpoint,
                }),
                Err(_) => Err(CallError::Timeout {
                    actor: target.shared.id.clone(),
                    endpoint,
                    timeout,
                }),
            }
        }
    }
}
