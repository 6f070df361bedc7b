//! A child fails; its owner is told and recovers by spawning a new one.
//!
//! Run with `cargo run --example supervision`.

use monarch::prelude::*;

/// A worker that refuses odd numbers by panicking: a bug we want to survive.
#[derive(Default)]
struct Worker;

#[actor]
impl Worker {
    #[endpoint]
    async fn double(&mut self, x: u64) -> u64 {
        assert!(x % 2 == 0, "odd input {x}");
        x * 2
    }
}

/// Owns one worker and respawns it whenever it fails.
struct Manager {
    worker: ActorRef<Worker>,
    restarts: u32,
}

#[actor]
impl Manager {
    /// Spawns the first worker. Actors spawned through `ctx` are owned by this
    /// actor: their failures come to `on_worker_failed` below.
    #[init]
    async fn new(_params: (), ctx: &Context<Self>) -> Result<Self, ActorError> {
        let worker = ctx.spawn::<Worker>("worker", ()).await?;
        Ok(Manager {
            worker,
            restarts: 0,
        })
    }

    /// Forwards work to the current worker.
    #[endpoint]
    async fn double(&mut self, x: u64) -> Result<u64, CallError> {
        self.worker.double(x).call().await
    }

    /// How many times the worker was replaced.
    #[endpoint]
    async fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Called when an owned actor fails. Returning `true` says "handled": the
    /// manager keeps running. Returning `false` would stop it and pass the
    /// failure up to its own owner.
    #[on_supervision]
    async fn on_worker_failed(
        &mut self,
        ctx: &Context<Self>,
        event: &SupervisionEvent,
    ) -> Result<bool, ActorError> {
        println!("supervisor saw: {event}");
        self.worker = ctx.spawn::<Worker>("worker", ()).await?;
        self.restarts += 1;
        Ok(true)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = this_proc().spawn::<Manager>("manager", ()).await?;

    println!("2 doubled is {}", manager.double(2).call().await?);

    // The worker panics: the call fails with the panic's message...
    match manager.double(3).call().await {
        Ok(v) => println!("unexpected: {v}"),
        Err(e) => println!("call failed as expected: {e}"),
    }

    // ...and the manager has already replaced the worker, so work goes on.
    println!("4 doubled is {}", manager.double(4).call().await?);
    println!("restarts: {}", manager.restarts().call().await?);

    manager.stop().await?;
    Ok(())
}
