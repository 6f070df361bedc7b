//! Procs: the processes actors live in, and the task that runs each actor.

use std::any::Any;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, RwLock};

use futures::FutureExt;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::actor::{Actor, HandlerError, Undeliverable};
use super::context::{Child, Context, OwnerId, Placement};
use super::mailbox::{MailboxReceiver, MailboxSender, Never, Signal, StopKind, WithSender};
use super::queue::{self, TryRecvError};
use super::reference::{RefCore, Shared};
use super::registry;
use crate::supervision::{exit_on_fault, Failure, FaultHook, StopReason, SupervisionEvent};
use crate::{ActorId, ActorRef, CallError, CastPoint, ProcId, SpawnError};

/// A process's actor runtime: it names actors, owns the actors spawned from
/// outside any actor (the roots of the supervision tree), and decides what a
/// failure that reaches the root does.
///
/// [`this_proc`] is the process's own; [`Proc::new`] makes separate ones, each
/// with its own fault hook (useful in tests).
///
/// ```
/// use monarch_core::{Proc, SupervisionEvent};
/// use std::sync::Arc;
///
/// let proc = Proc::new("test").with_fault_hook(Arc::new(|event: &SupervisionEvent| {
///     eprintln!("an actor failed: {event}");
/// }));
/// assert_eq!(proc.proc_id().job(), "test");
/// ```
#[derive(Clone)]
pub struct Proc {
    inner: Arc<ProcInner>,
}

struct ProcInner {
    id: ProcId,
    next_index: AtomicU64,
    fault_hook: RwLock<FaultHook>,
    roots: Mutex<HashMap<u64, Box<dyn Child>>>,
}

/// The id this process's own proc takes, when something set it before the
/// proc was first used (a worker's bootstrap does).
static PROCESS_ID: OnceLock<ProcId> = OnceLock::new();

/// Set once [`this_proc`] has been made, after which its id cannot change.
static THIS_PROC_MADE: AtomicBool = AtomicBool::new(false);

static THIS_PROC: LazyLock<Proc> = LazyLock::new(|| {
    THIS_PROC_MADE.store(true, Ordering::SeqCst);
    match PROCESS_ID.get() {
        Some(id) => Proc::with_id(id.clone()),
        None => Proc::new("local"),
    }
});

/// Gives this process's own proc the id `id`; `false` if [`this_proc`] was
/// already in use (or an id already given), so the id cannot change.
pub(crate) fn set_process_id(id: ProcId) -> bool {
    !THIS_PROC_MADE.load(Ordering::SeqCst) && PROCESS_ID.set(id).is_ok()
}

/// The current process's own proc. Failures that reach it run the default fault
/// hook: print the chain of causes and exit with status 1. In a worker process
/// it is the worker's proc, and failures go to the owner in the controller.
pub fn this_proc() -> &'static Proc {
    &THIS_PROC
}

impl Proc {
    /// A proc of job `job`, rank 0 on this host, whose root failures exit the
    /// process (see [`crate::exit_on_fault`]).
    pub fn new(job: &str) -> Self {
        Proc::with_id(ProcId::new(job, &local_hostname(), 0))
    }

    /// A proc with an explicit id.
    pub fn with_id(id: ProcId) -> Self {
        Proc {
            inner: Arc::new(ProcInner {
                id,
                next_index: AtomicU64::new(0),
                fault_hook: RwLock::new(exit_on_fault()),
                roots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The same proc, with `hook` run on failures that reach the root.
    pub fn with_fault_hook(self, hook: FaultHook) -> Self {
        self.set_fault_hook(hook);
        self
    }

    /// Runs `hook` on failures that reach the root from now on.
    pub fn set_fault_hook(&self, hook: FaultHook) {
        *self
            .inner
            .fault_hook
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = hook;
    }

    pub(crate) fn fault_hook(&self) -> FaultHook {
        Arc::clone(
            &self
                .inner
                .fault_hook
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Runs the fault hook on a failure that reached the root. A hook that
    /// panics is reported and harms nothing else.
    pub fn fault(&self, event: &SupervisionEvent) {
        let hook = self.fault_hook();
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| hook(event))) {
            tracing::error!(
                panic = panic_message(panic.as_ref()),
                %event,
                "the fault hook of {} panicked while handling a failure",
                self.proc_id()
            );
        }
    }

    /// This proc's id.
    pub fn proc_id(&self) -> &ProcId {
        &self.inner.id
    }

    /// Spawns a root actor: one whose failures go to this proc's fault hook.
    /// Returns once the actor's `init` has succeeded, or with its error.
    pub async fn spawn<A: Actor>(
        &self,
        name: &str,
        params: A::Params,
    ) -> Result<ActorRef<A>, SpawnError> {
        let placement = Placement::alone(OwnerId::Proc(self.proc_id().clone()));
        self.spawn_placed(name, params, placement).await
    }

    /// Like [`Proc::spawn`], at a place in a mesh, for an owner elsewhere.
    pub(crate) async fn spawn_placed<A: Actor>(
        &self,
        name: &str,
        params: A::Params,
        placement: Placement,
    ) -> Result<ActorRef<A>, SpawnError> {
        spawn_actor::<A>(self, Owner::Proc(self.clone()), name, params, placement).await
    }

    /// Stops every root actor (and so every actor) of this proc, each after the
    /// messages already sent to it, and waits until all have stopped.
    pub async fn stop(&self) {
        let roots: Vec<Box<dyn Child>> = self.lock_roots().drain().map(|(_, c)| c).collect();
        for root in &roots {
            root.request_stop(StopKind::Requested);
        }
        for root in &roots {
            root.stopped().await;
        }
    }

    fn next_actor_id(&self, name: &str) -> ActorId {
        let index = self.inner.next_index.fetch_add(1, Ordering::Relaxed);
        ActorId::new(self.inner.id.clone(), name, index)
    }

    fn lock_roots(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Box<dyn Child>>> {
        self.inner
            .roots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Proc").field(&self.inner.id).finish()
    }
}

/// This host's name as proc ids use it by default: `HOSTNAME`, else
/// `/etc/hostname`, else `localhost`.
pub fn local_hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Who hears about an actor's end.
pub(crate) enum Owner {
    /// A root actor: the proc.
    Proc(Proc),
    /// An owned actor: its parent's mailbox, type-erased.
    Actor {
        id: ActorId,
        notify: Arc<dyn Fn(OwnerSignal) + Send + Sync>,
    },
}

pub(crate) type OwnerSignal = Signal<Never>;

impl Owner {
    /// Who the owner is, for an error that names it.
    fn who(&self) -> Who {
        match self {
            Owner::Proc(p) => Who::Proc(p.proc_id().clone()),
            Owner::Actor { id, .. } => Who::Actor(id.clone()),
        }
    }
}

/// An owner's name, written out only when an error needs it.
enum Who {
    Proc(ProcId),
    Actor(ActorId),
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Proc(id) => id.fmt(f),
            Who::Actor(id) => id.fmt(f),
        }
    }
}

/// Spawns `A` in `proc` owned by `owner`, and waits for its `init`.
pub(crate) async fn spawn_actor<A: Actor>(
    proc: &Proc,
    owner: Owner,
    name: &str,
    params: A::Params,
    placement: Placement,
) -> Result<ActorRef<A>, SpawnError> {
    let id = proc.next_actor_id(name);
    start_actor::<A>(proc, owner, id, params, placement)
        .ready()
        .await
}

/// An actor whose task is running, perhaps still in `init`.
pub(crate) struct Started<A: Actor> {
    pub(crate) actor: ActorRef<A>,
    init: Option<oneshot::Receiver<Result<(), SpawnError>>>,
    owner: Who,
}

impl<A: Actor> Started<A> {
    /// Waits for `init` to succeed, or for its error.
    pub(crate) async fn ready(self) -> Result<ActorRef<A>, SpawnError> {
        let Some(init) = self.init else {
            return Ok(self.actor);
        };
        match init.await {
            Ok(Ok(())) => Ok(self.actor),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(SpawnError::OwnerStopping {
                name: self.actor.actor_id().name().to_string(),
                owner: self.owner.to_string(),
            }),
        }
    }
}

/// Starts `A` as actor `id` in `proc`, owned by `owner`: its mailbox takes
/// messages at once, handled once `init` has built the actor.
pub(crate) fn start_actor<A: Actor>(
    proc: &Proc,
    owner: Owner,
    id: ActorId,
    params: A::Params,
    placement: Placement,
) -> Started<A> {
    let (mailbox, receiver) = queue::queue();
    let core = RefCore {
        shared: Arc::new(Shared::new(id.clone())),
        mailbox,
        remote: None,
        may_stop: false,
    };
    // The spawner's reference is the owner's.
    let actor_ref = ActorRef::from_core(core.clone().owned());
    let report = report_to(&core.mailbox, &id);
    if let Owner::Proc(proc) = &owner {
        // A root from the start, so that its end (even a failing `init`) finds
        // it there to remove.
        let root: Box<dyn Child> = Box::new(ActorRef::<A>::clone(&actor_ref));
        proc.lock_roots().insert(id.index(), root);
    }
    let ctx = Context {
        self_ref: ActorRef::clone(&actor_ref),
        core,
        proc: proc.clone(),
        placement,
        children: Mutex::new(Vec::new()),
        tasks: Mutex::new(None),
        cast: Mutex::new(None),
    };
    // An actor built with `Default` cannot fail to start: spawning it does not
    // wait for its task to run `init`.
    let (init_tx, init_rx) = if A::INIT_CANNOT_FAIL {
        (None, None)
    } else {
        let (tx, rx) = oneshot::channel();
        (Some(tx), Some(rx))
    };
    let who = owner.who();
    // Boxed where it is made: the actor's state machine is large, and the
    // wrapper and the spawn below then move a pointer rather than copy it.
    let task = WithSender::new(Box::pin(run(ctx, params, receiver, owner, init_tx)), report);
    if tracing::enabled!(tracing::Level::DEBUG) {
        tokio::spawn(task.instrument(tracing::debug_span!("actor", id = %id)));
    } else {
        tokio::spawn(task);
    }
    Started {
        actor: actor_ref,
        init: init_rx,
        owner: who,
    }
}

/// How an actor hears that a message it told could not be delivered: as an
/// `Undeliverable` signal in its own mailbox (while it has one).
fn report_to<M: Send + 'static>(
    mailbox: &MailboxSender<M>,
    id: &ActorId,
) -> impl Fn(Undeliverable) + Send + Sync + 'static {
    let mailbox = mailbox.downgrade();
    let sender = id.clone();
    move |mut undeliverable: Undeliverable| {
        if let Some(mailbox) = mailbox.upgrade() {
            undeliverable.sender = Some(sender.clone());
            let _ = mailbox.send_urgent(Signal::Undeliverable(Box::new(undeliverable)));
        }
    }
}

/// Reports a failed `init`: to the spawner if it waits for it, else (an init
/// that was not expected to fail, such as a panicking `Default`) to the owner
/// as a failure.
fn report_init(
    init_tx: Option<oneshot::Sender<Result<(), SpawnError>>>,
    error: SpawnError,
    owner: Owner,
) {
    let (actor, failure) = match &error {
        SpawnError::Init { actor, error } => (actor.clone(), Failure::Error(error.report())),
        SpawnError::InitPanicked { actor, message } => {
            (actor.clone(), Failure::Panicked(message.clone()))
        }
        SpawnError::OwnerStopping { .. } => return,
    };
    if let Owner::Proc(proc) = &owner {
        proc.lock_roots().remove(&actor.index());
    }
    if let Some(init_tx) = init_tx {
        let _ = init_tx.send(Err(error));
        return;
    }
    let event = SupervisionEvent {
        actor: actor.clone(),
        endpoint: Some("init".to_string()),
        failure,
        caused_by: None,
    };
    match owner {
        Owner::Actor { notify, .. } => notify(Signal::Supervision(Box::new(event))),
        Owner::Proc(proc) => proc.fault(&event),
    }
}

/// The life of one actor: init, the message loop, and the shutdown sequence.
async fn run<A: Actor>(
    ctx: Context<A>,
    params: A::Params,
    mut receiver: MailboxReceiver<A::Message>,
    owner: Owner,
    init_tx: Option<oneshot::Sender<Result<(), SpawnError>>>,
) {
    let id = ctx.actor_id().clone();
    let mut actor = match AssertUnwindSafe(A::init(params, &ctx)).catch_unwind().await {
        Ok(Ok(actor)) => actor,
        Ok(Err(error)) => {
            tracing::debug!(%error, "init failed");
            let why = format!("its init failed: {}", error.report());
            shut_down_unstarted(&ctx, &mut receiver, why).await;
            report_init(init_tx, SpawnError::Init { actor: id, error }, owner);
            ctx.core.shared.mark_finished();
            return;
        }
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            let why = format!("its init panicked: {message}");
            shut_down_unstarted(&ctx, &mut receiver, why).await;
            report_init(
                init_tx,
                SpawnError::InitPanicked { actor: id, message },
                owner,
            );
            ctx.core.shared.mark_finished();
            return;
        }
    };
    if let Some(init_tx) = init_tx {
        let _ = init_tx.send(Ok(()));
    }

    let reason = message_loop(&mut actor, &ctx, &mut receiver).await;

    receiver.close();
    stop_children(&ctx).await;
    if let Err(panic) = AssertUnwindSafe(actor.on_stop(&ctx, &reason))
        .catch_unwind()
        .await
    {
        tracing::error!(panic = panic_message(panic.as_ref()), "on_stop panicked");
    }
    stop_tasks(&ctx).await;
    drop(actor);
    let why = describe(&reason);
    ctx.core.shared.mark_stopping(why);
    registry::unregister_actor(&ctx.core.shared);
    reject_queued::<A>(&id, &mut receiver, &ctx.core.shared);
    tracing::debug!(?reason, "stopped");

    match (owner, reason) {
        (Owner::Actor { notify, .. }, StopReason::Failed(event)) => {
            notify(Signal::Supervision(Box::new(event)))
        }
        (Owner::Actor { notify, .. }, _) => notify(Signal::ChildStopped(Box::new(id))),
        (Owner::Proc(proc), StopReason::Failed(event)) => {
            proc.lock_roots().remove(&id.index());
            proc.fault(&event);
        }
        (Owner::Proc(proc), _) => {
            proc.lock_roots().remove(&id.index());
        }
    }
    // Whoever waits for the stop learns of it only now, once the owner has
    // been told.
    ctx.core.shared.mark_finished();
}

/// Handles one endpoint message; `Some(reason)` when it ends the actor.
async fn handle_message<A: Actor>(
    actor: &mut A,
    ctx: &Context<A>,
    message: A::Message,
) -> Option<StopReason> {
    let endpoint = A::endpoint_name(&message);
    let handled = if tracing::enabled!(tracing::Level::TRACE) {
        AssertUnwindSafe(actor.handle(ctx, message))
            .catch_unwind()
            .instrument(tracing::trace_span!("handle", endpoint))
            .await
    } else if A::HANDLE_CATCHES_PANICS {
        Ok(actor.handle(ctx, message).await)
    } else {
        AssertUnwindSafe(actor.handle(ctx, message))
            .catch_unwind()
            .await
    };
    let failure = match handled {
        Ok(Ok(())) => return None,
        Ok(Err(HandlerError::Error(message))) => Failure::Error(message),
        Ok(Err(HandlerError::Panicked(message))) => Failure::Panicked(message),
        Err(panic) => Failure::Panicked(panic_message(panic.as_ref())),
    };
    Some(StopReason::Failed(SupervisionEvent {
        actor: ctx.actor_id().clone(),
        endpoint: Some(endpoint.to_string()),
        failure,
        caused_by: None,
    }))
}

fn set_cast<A: Actor>(ctx: &Context<A>, point: Option<CastPoint>) {
    *ctx.cast
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = point;
}

/// Cancels the tasks an actor started with [`Context::spawn_task`] and waits
/// until they are gone.
async fn stop_tasks<A: Actor>(ctx: &Context<A>) {
    let tasks = ctx
        .tasks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(mut tasks) = tasks {
        tasks.shutdown().await;
    }
}

/// How many queued signals an actor handles before giving other tasks a turn.
const DRAIN_BEFORE_YIELD: u32 = 128;

async fn message_loop<A: Actor>(
    actor: &mut A,
    ctx: &Context<A>,
    receiver: &mut MailboxReceiver<A::Message>,
) -> StopReason {
    let failed = |endpoint: Option<&str>, failure: Failure, caused_by: Option<SupervisionEvent>| {
        StopReason::Failed(SupervisionEvent {
            actor: ctx.actor_id().clone(),
            endpoint: endpoint.map(str::to_string),
            failure,
            caused_by: caused_by.map(Box::new),
        })
    };
    let mut drained = 0;
    loop {
        // Queued signals are taken without waiting, a turn given to other
        // tasks every so often; the mailbox is waited on only when empty.
        let signal = match receiver.try_recv() {
            Ok(signal) => {
                drained += 1;
                if drained == DRAIN_BEFORE_YIELD {
                    drained = 0;
                    tokio::task::yield_now().await;
                }
                signal
            }
            Err(TryRecvError::Empty) => {
                drained = 0;
                match receiver.recv().await {
                    Some(signal) => signal,
                    None => break,
                }
            }
            Err(TryRecvError::Closed) => break,
        };
        match signal {
            Signal::Message(message, _) => {
                if let Some(reason) = handle_message(actor, ctx, message).await {
                    return reason;
                }
            }
            Signal::Cast(boxed, _) => {
                let (message, point) = *boxed;
                set_cast(ctx, Some(point));
                let stopped = handle_message(actor, ctx, message).await;
                set_cast(ctx, None);
                if let Some(reason) = stopped {
                    return reason;
                }
            }
            Signal::Stop(StopKind::Requested) => return StopReason::Requested,
            Signal::Stop(StopKind::OwnerStopping) => return StopReason::OwnerStopping,
            Signal::ChildStopped(child) => ctx.forget_child(&child),
            Signal::Supervision(event) => {
                ctx.forget_child(&event.actor);
                tracing::debug!(%event, "supervision event");
                let outcome = AssertUnwindSafe(actor.handle_supervision_event(ctx, &event))
                    .catch_unwind()
                    .await;
                match outcome {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        return failed(None, Failure::UnhandledSupervision, Some(*event))
                    }
                    Ok(Err(error)) => {
                        let failure = Failure::SupervisionHandlerFailed(error.report());
                        return failed(None, failure, Some(*event));
                    }
                    Err(panic) => {
                        let failure = Failure::Panicked(panic_message(panic.as_ref()));
                        return failed(None, failure, Some(*event));
                    }
                }
            }
            Signal::Undeliverable(undeliverable) => {
                let outcome = AssertUnwindSafe(actor.handle_undeliverable(ctx, &undeliverable))
                    .catch_unwind()
                    .await;
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        return failed(None, Failure::UnhandledUndeliverable(error.report()), None)
                    }
                    Err(panic) => {
                        return failed(None, Failure::Panicked(panic_message(panic.as_ref())), None)
                    }
                }
            }
        }
    }
    StopReason::Requested
}

/// After a failed `init`: stop what init spawned and turn away what was sent.
async fn shut_down_unstarted<A: Actor>(
    ctx: &Context<A>,
    receiver: &mut MailboxReceiver<A::Message>,
    why: String,
) {
    receiver.close();
    stop_children(ctx).await;
    ctx.core.shared.mark_stopping(why);
    registry::unregister_actor(&ctx.core.shared);
    reject_queued::<A>(ctx.actor_id(), receiver, &ctx.core.shared);
}

/// How an actor stopped, as a clause for errors: "it was stopped".
fn describe(reason: &StopReason) -> Cow<'static, str> {
    match reason {
        StopReason::Requested => Cow::Borrowed("it was stopped"),
        StopReason::OwnerStopping => Cow::Borrowed("its owner stopped"),
        StopReason::Failed(event) => {
            let mut why = String::from("it failed");
            if let Some(endpoint) = &event.endpoint {
                why.push_str(&format!(" in endpoint `{endpoint}`"));
            }
            why.push_str(&format!(": {}", event.failure));
            if let Some(cause) = &event.caused_by {
                why.push_str(&format!(" (caused by {cause})"));
            }
            Cow::Owned(why)
        }
    }
}

async fn stop_children<A: Actor>(ctx: &Context<A>) {
    let children: Vec<Box<dyn Child>> = std::mem::take(&mut *ctx.lock_children());
    for child in children.iter().rev() {
        child.request_stop(StopKind::OwnerStopping);
    }
    for child in children.iter().rev() {
        child.stopped().await;
    }
}

/// Answers every message still queued: asks get `Undeliverable`, and the senders
/// of tells sent from actors hear of it through their undeliverable hook.
fn reject_queued<A: Actor>(
    id: &ActorId,
    receiver: &mut MailboxReceiver<A::Message>,
    shared: &Shared,
) {
    while let Ok(signal) = receiver.try_recv() {
        if let Some((message, from)) = signal.into_message() {
            let endpoint = A::endpoint_name(&message);
            let reason = shared.stopped_because();
            let error = CallError::Undeliverable {
                actor: id.clone(),
                endpoint,
                reason: reason.clone(),
            };
            let answered = A::reject(message, error);
            if let (false, Some(from)) = (answered, from) {
                from.report(Undeliverable::new(id.clone(), endpoint, reason));
            }
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}
