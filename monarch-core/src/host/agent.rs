//! The proc agent: the service on every worker through which its parent
//! spawns actors and stops the proc. Replies come from tasks of their own, so
//! a spawn whose `init` never returns holds up neither other spawns nor the
//! stop.

use crate::runtime::context::Placement;
use crate::runtime::spawn::spawn_registered;
use crate::{ActorId, Bytes, Context, ReplyPort};

/// Spawns actors in its process, and stops them all, when its parent asks.
#[derive(Default)]
pub(crate) struct ProcAgent;

#[monarch_derive::actor]
impl ProcAgent {
    /// Spawns an actor of the registered type `type_key` with encoded
    /// parameters, at its place in its mesh and for its owner.
    #[endpoint]
    async fn spawn_actor(
        &self,
        ctx: &Context<Self>,
        type_key: String,
        name: String,
        placement: Placement,
        params: Bytes,
        reply: ReplyPort<Result<ActorId, String>>,
    ) {
        let proc = ctx.proc().clone();
        tokio::spawn(async move {
            let spawned = spawn_registered(&proc, &type_key, &name, params, placement).await;
            reply.send(spawned.map_err(|e| e.to_string()));
        });
    }

    /// Stops every actor of the proc, each after what was sent to it before;
    /// replies once all have stopped.
    #[endpoint]
    async fn stop_proc(&self, ctx: &Context<Self>, reply: ReplyPort<()>) {
        let proc = ctx.proc().clone();
        tokio::spawn(async move {
            proc.stop().await;
            reply.send(());
        });
    }
}
