//! The `Actor` trait: what the runtime needs of an actor type. The `#[actor]`
//! macro implements it from an ordinary `impl` block.

use std::future::Future;

use super::context::Context;
use super::reference::RefCore;
use super::remote::{ReplySink, WireMessage};
use crate::supervision::{StopReason, SupervisionEvent};
use crate::wire::{Payload, RemoteError};
use crate::{ActorError, ActorId, CallError};

/// An actor: state owned by one task that handles one message at a time.
///
/// Write it with `#[actor]` on an `impl` block; implementing it by hand is for
/// code that generates its own message types.
///
/// Every hook but [`Actor::handle`] has a default: `init` is required (the macro
/// uses `Default` when no `#[init]` is given), supervision events are not handled
/// (so they climb), and undeliverable messages fail the actor.
pub trait Actor: Sized + Send + 'static {
    /// What [`crate::Proc::spawn`] takes to build the actor.
    type Params: Send + 'static;
    /// The actor's message type: one variant per endpoint.
    type Message: Send + 'static;
    /// The typed client that [`crate::ActorRef`] dereferences to, with one method
    /// per endpoint.
    type Client: ActorClient<Self>;

    /// Whether `init` cannot fail, so spawning need not wait for it. `#[actor]`
    /// sets it for actors without `#[init]`, which are built with `Default`; if
    /// that panics anyway, the failure goes to the owner as a supervision event.
    const INIT_CANNOT_FAIL: bool = false;

    /// Whether [`Actor::handle`] catches its own panics (reporting them to an
    /// awaiting caller), so the runtime need not. `#[actor]` sets it.
    #[doc(hidden)]
    const HANDLE_CATCHES_PANICS: bool = false;

    /// Builds the actor. It may spawn children through `ctx`; an error fails the
    /// spawn that called it.
    fn init(
        params: Self::Params,
        ctx: &Context<Self>,
    ) -> impl Future<Output = Result<Self, ActorError>> + Send;

    /// Handles one message.
    fn handle(
        &mut self,
        ctx: &Context<Self>,
        message: Self::Message,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// The endpoint a message is for, for errors, events and traces.
    fn endpoint_name(message: &Self::Message) -> &'static str;

    /// Answers a message that will never be handled (the actor stopped first):
    /// an ask gets `error`. Returns whether a caller was waiting for a reply; for
    /// a tell the runtime tells the sender's `handle_undeliverable` instead.
    /// The default drops the message and returns `false`.
    fn reject(message: Self::Message, error: CallError) -> bool {
        let _ = (message, error);
        false
    }

    /// Runs once when the actor stops, whatever the reason, after its children
    /// have stopped.
    fn on_stop(
        &mut self,
        ctx: &Context<Self>,
        reason: &StopReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, reason);
        async {}
    }

    /// Called when an actor this one owns fails. `Ok(true)` means handled and the
    /// actor carries on; `Ok(false)` (the default) or an error stops this actor and
    /// sends the failure up to its own owner.
    fn handle_supervision_event(
        &mut self,
        ctx: &Context<Self>,
        event: &SupervisionEvent,
    ) -> impl Future<Output = Result<bool, ActorError>> + Send {
        let _ = (ctx, event);
        async { Ok(false) }
    }

    /// The message in wire form, for an actor in another process. `#[actor]`
    /// implements it; the default refuses, so hand-written actors stay local.
    #[doc(hidden)]
    fn to_wire(message: Self::Message, actor: &ActorId) -> Result<WireMessage, RemoteError> {
        let _ = (message, actor);
        Err(not_remote::<Self>())
    }

    /// Rebuilds a message from its wire form; leaves `reply` in place on error.
    #[doc(hidden)]
    fn from_wire(
        endpoint: &str,
        payload: Payload,
        reply: &mut Option<ReplySink>,
    ) -> Result<Self::Message, RemoteError> {
        let _ = (endpoint, payload, reply);
        Err(not_remote::<Self>())
    }

    /// Decodes spawn parameters sent by another process.
    #[doc(hidden)]
    fn decode_params(params: &[u8]) -> Result<Self::Params, RemoteError> {
        let _ = params;
        Err(not_remote::<Self>())
    }

    /// The parameters a per-process service of this type starts with:
    /// `Some(Default::default())` when the parameters have a default.
    /// `#[actor]` implements it.
    #[doc(hidden)]
    fn default_params() -> Option<Self::Params> {
        None
    }

    /// Called when a message this actor told (without awaiting a reply) could not
    /// be delivered. The default returns an error, which fails the actor.
    fn handle_undeliverable(
        &mut self,
        ctx: &Context<Self>,
        message: &Undeliverable,
    ) -> impl Future<Output = Result<(), ActorError>> + Send {
        let _ = ctx;
        let error = ActorError::msg(message);
        async move { Err(error) }
    }
}

fn not_remote<A>() -> RemoteError {
    RemoteError::Codec(format!(
        "{} cannot be used across processes: declare it with #[actor] and give it serde parameters",
        std::any::type_name::<A>()
    ))
}

/// The typed client of an actor, generated by `#[actor]`: a wrapper around the
/// untyped reference core with one method per endpoint.
pub trait ActorClient<A: Actor>: Clone + Send + Sync + 'static {
    /// Wraps a reference core.
    fn from_core(core: RefCore<A>) -> Self;
    /// The wrapped core.
    fn core(&self) -> &RefCore<A>;
}

/// Why a message handler did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// The endpoint returned an error while no caller awaited it.
    #[error("{0}")]
    Error(String),
    /// The endpoint panicked.
    #[error("panicked: {0}")]
    Panicked(String),
}

/// A message that could not be delivered, as returned to the actor that told
/// it (its `#[on_undeliverable]` hook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undeliverable {
    /// The actor that told it.
    pub sender: Option<ActorId>,
    /// The actor it was addressed to.
    pub to: ActorId,
    /// The endpoint it was for.
    pub endpoint: String,
    /// Why it could not be delivered.
    pub reason: String,
}

impl Undeliverable {
    /// A message to `to`'s `endpoint` that could not be delivered for `reason`.
    pub(crate) fn new(to: ActorId, endpoint: &str, reason: String) -> Self {
        Undeliverable {
            sender: None,
            to,
            endpoint: endpoint.to_string(),
            reason,
        }
    }
}

impl std::fmt::Display for Undeliverable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message to {}.{} was undeliverable: {}",
            self.to, self.endpoint, self.reason
        )
    }
}
