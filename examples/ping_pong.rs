//! Two actors in two processes bounce a ball back and forth.
//!
//! Run with `cargo run --release --example ping_pong`. Each `Player` gets the
//! other's reference (references are serialisable and work from any process
//! of the job), and the controller times the rally.

use std::time::Instant;

use monarch::prelude::*;

/// Hits the ball back to its opponent until the rally is over.
#[derive(Default)]
struct Player {
    opponent: Option<ActorRef<Player>>,
    hits: u64,
}

#[actor]
impl Player {
    /// Introduces the opponent.
    #[endpoint]
    async fn face(&mut self, opponent: ActorRef<Player>) {
        self.opponent = Some(opponent);
    }

    /// Receives the ball with `left` hits to go; when none are left, reports
    /// on `done` (a port back to the controller).
    #[endpoint]
    async fn hit(&mut self, left: u64, done: Port<u64>) -> Result<(), String> {
        self.hits += 1;
        if left == 0 {
            let _ = done.send(self.hits);
            return Ok(());
        }
        let opponent = self.opponent.as_ref().ok_or("no opponent yet")?;
        opponent
            .hit(left - 1, done)
            .send()
            .map_err(|e| e.to_string())
    }

    /// The process this player is in.
    #[endpoint]
    async fn pid(&self) -> u32 {
        std::process::id()
    }
}

#[monarch::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let procs = this_host().spawn_procs(shape! { players = 2 }).await?;
    let players = procs.spawn::<Player>("player", ()).await?;
    let (ping, pong) = (players.member(0)?.clone(), players.member(1)?.clone());
    ping.face(pong.clone()).call().await?;
    pong.face(ping.clone()).call().await?;
    println!(
        "ping in process {}, pong in process {}",
        ping.pid().call().await?,
        pong.pid().call().await?
    );

    const HITS: u64 = 10_000;
    let (done, mut finished) = open_port::<u64>();
    let start = Instant::now();
    ping.hit(HITS, done).send()?;
    let last_hits = finished.recv().await.ok_or("the rally never finished")?;
    let elapsed = start.elapsed();
    println!(
        "{HITS} hits across processes in {elapsed:.2?}: {:.1} us per hit (last player hit {last_hits} times)",
        elapsed.as_secs_f64() * 1e6 / HITS as f64
    );
    procs.stop().await;
    Ok(())
}
