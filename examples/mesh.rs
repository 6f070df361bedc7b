//! A mesh of worker processes and one actor in each, driven as one.
//!
//! Run with `cargo run --example mesh`. The program starts four copies of
//! itself as workers (`#[monarch::main]` makes that work), spawns a `Trainer`
//! actor in each, and uses every way of calling a mesh.

use futures::StreamExt;
use monarch::prelude::*;

/// Stands in for a per-GPU worker: it knows its rank and keeps a step count.
#[derive(Default)]
struct Trainer {
    steps: u64,
}

#[actor]
impl Trainer {
    /// Takes `n` training steps (here: just counts them).
    #[endpoint]
    async fn step(&mut self, n: u64) {
        self.steps += n;
    }

    /// How many steps this trainer has taken.
    #[endpoint]
    async fn steps(&self) -> u64 {
        self.steps
    }

    /// A made-up loss that depends on the rank, to have something to print.
    #[endpoint]
    async fn loss(&self, ctx: &Context<Self>) -> f64 {
        1.0 / (1.0 + self.steps as f64) + ctx.rank() as f64 * 0.01
    }

    /// Which process this trainer runs in.
    #[endpoint]
    async fn pid(&self) -> u32 {
        std::process::id()
    }
}

#[monarch::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Four worker processes laid out as 2 hosts x 2 gpus (all on this machine).
    let procs = this_host()
        .spawn_procs(shape! { hosts = 2, gpus = 2 })
        .await?;
    // One Trainer per process: an ActorMesh<Trainer> of the same shape.
    let trainers = procs.spawn::<Trainer>("trainer", ()).await?;
    println!(
        "spawned {:?} in {} processes",
        trainers,
        procs.shape().len()
    );

    // broadcast: tell every trainer, without waiting.
    trainers.step(10).broadcast()?;

    // call: ask every trainer and gather one value per point.
    let steps: ValueMesh<u64> = trainers.steps().call().await?;
    println!("\nsteps per trainer:\n{steps}");
    let pids = trainers.pid().call().await?;
    println!("\nprocess ids:\n{pids}");

    // slice: the trainers of host 1 only; the dimension stays, with size 1.
    let host1 = trainers.slice("hosts", 1..2)?;
    host1.step(5).broadcast()?;
    println!(
        "\nafter stepping host 1 again:\n{}",
        trainers.steps().call().await?
    );

    // call_one: a slice down to one point, asked directly.
    let one = trainers.slice("hosts", 0)?.slice("gpus", 1)?;
    println!(
        "\n{{hosts=0, gpus=1}} took {} steps",
        one.steps().call_one().await?
    );

    // choose: one trainer, whichever has the fewest calls in flight.
    println!(
        "a chosen trainer's loss: {:.3}",
        trainers.loss().choose().await?
    );

    // stream: replies as they arrive, each with its point.
    let mut losses = trainers.loss().stream();
    while let Some((point, loss)) = losses.next().await {
        println!("loss at {point}: {:.3}", loss?);
    }

    // Stopping the proc mesh drains and stops the actors, then the processes.
    procs.stop().await;
    Ok(())
}
