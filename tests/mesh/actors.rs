//! The actors the scenarios spawn in worker processes.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use monarch::prelude::*;

use crate::ordering::send_mixed;

/// A counter that also reports where it runs and can misbehave on request.
#[derive(Default)]
pub(crate) struct Counter {
    value: i64,
    seen: HashMap<String, Vec<u64>>,
    kept: Option<Bytes>,
}

#[actor]
impl Counter {
    #[endpoint]
    async fn incr(&mut self, by: i64) {
        self.value += by;
    }

    #[endpoint]
    async fn get(&self) -> i64 {
        self.value
    }

    /// The rank this actor was spawned with and its process id.
    #[endpoint]
    async fn whoami(&self, ctx: &Context<Self>) -> (usize, u32) {
        (ctx.rank(), std::process::id())
    }

    /// Says on `started` that it has begun, then replies after `millis`: a
    /// call that stays in flight.
    #[endpoint]
    async fn slow(&self, started: Port<()>, millis: u64) -> u64 {
        let _ = started.send(());
        drop(started);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    /// How many cast subtrees this process still awaits.
    #[endpoint]
    async fn casts_in_flight(&self) -> usize {
        monarch::testing::casts_in_flight()
    }

    /// How many casts this process has sent through a tree.
    #[endpoint]
    async fn casts_started(&self) -> u64 {
        monarch::testing::casts_started()
    }

    /// Prints `line` on this process's standard output.
    #[endpoint]
    async fn say(&self, line: String) {
        println!("{line}");
    }

    #[endpoint]
    async fn fail(&self, why: String) -> Result<(), String> {
        Err(why)
    }

    #[endpoint]
    async fn panic_now(&self) {
        panic!("asked to panic");
    }

    /// Records `seq` from `sender`, to check ordering.
    #[endpoint]
    async fn record(&mut self, sender: String, seq: u64) {
        self.seen.entry(sender).or_default().push(seq);
    }

    #[endpoint]
    async fn seen(&self) -> HashMap<String, Vec<u64>> {
        self.seen.clone()
    }

    #[endpoint]
    async fn size_of(&self, data: Bytes) -> (usize, u8) {
        (data.len(), data.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
    }

    /// Keeps `data` (a large argument may be a mapping of the sender's memory).
    #[endpoint]
    async fn keep(&mut self, data: Bytes) {
        self.kept = Some(data);
    }

    /// The kept data's length and checksum.
    #[endpoint]
    async fn kept(&self) -> (usize, u8) {
        let data = self.kept.as_deref().unwrap_or_default();
        (data.len(), data.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
    }

    /// Streams `0..n` to `port`.
    #[endpoint]
    async fn count_to(&self, n: u64, port: Port<u64>) {
        for i in 0..n {
            let _ = port.send(i);
        }
    }
}

/// Calls a mesh it is handed, from whichever process it lives in.
#[derive(Default)]
pub(crate) struct Caller;

#[actor]
impl Caller {
    #[endpoint]
    async fn sum_of(&self, counters: ActorMesh<Counter>) -> Result<i64, String> {
        let values = counters.get().call().await.map_err(|e| e.to_string())?;
        Ok(values.values().iter().sum())
    }

    /// Sends `0..n` to `target` as sender `name`, then asks it something: the
    /// reply comes after all of them were handled.
    #[endpoint]
    async fn send_sequence(&self, target: ActorRef<Counter>, name: String, n: u64) -> bool {
        (0..n).all(|seq| target.record(name.clone(), seq).send().is_ok())
            && target.get().call().await.is_ok()
    }

    /// Sends `0..n` to `mesh` as sender `name`, mixing casts and direct
    /// sends (see `send_mixed`), then calls every member so that all were
    /// handled; returns what each rank should have seen.
    #[endpoint]
    async fn mixed_sequence(
        &self,
        mesh: ActorMesh<Counter>,
        name: String,
        n: u64,
    ) -> Result<Vec<Vec<u64>>, String> {
        let expected = send_mixed(&mesh, &name, n).map_err(|e| e.to_string())?;
        mesh.get().call().await.map_err(|e| e.to_string())?;
        Ok(expected)
    }

    /// Passes `port` on to `target`, which streams `0..n` to it.
    #[endpoint]
    async fn relay(&self, target: ActorRef<Counter>, n: u64, port: Port<u64>) -> bool {
        target.count_to(n, port).send().is_ok()
    }

    /// Starts a mesh of its own from this worker, uses it and stops it; returns
    /// the members' proc names and values.
    #[endpoint]
    async fn nested(&self, by: i64) -> Result<Vec<(String, i64)>, String> {
        let procs = this_host()
            .spawn_procs(shape! { inner = 2 })
            .await
            .map_err(|e| e.to_string())?;
        let counters = procs
            .spawn::<Counter>("inner", ())
            .await
            .map_err(|e| e.to_string())?;
        counters.incr(by).broadcast().map_err(|e| e.to_string())?;
        let values = counters.get().call().await.map_err(|e| e.to_string())?;
        let names = counters
            .members()
            .map(|(_, member)| member.actor_id().proc_id().job().to_string());
        let result = names.zip(values.into_values()).collect();
        procs.stop().await;
        Ok(result)
    }

    /// The id of the job's ledger singleton, as seen from here.
    #[endpoint]
    async fn ledger(&self) -> Result<String, String> {
        let ledger = get_or_spawn_controller::<Ledger>("ledger", ())
            .await
            .map_err(|e| e.to_string())?;
        ledger.touch().call().await.map_err(|e| e.to_string())?;
        Ok(ledger.actor_id().to_string())
    }
}

/// A job-wide singleton.
#[derive(Default)]
pub(crate) struct Ledger {
    touches: u64,
}

#[actor]
impl Ledger {
    #[endpoint]
    async fn touch(&mut self) -> u64 {
        self.touches += 1;
        self.touches
    }
}

/// Owns a mesh from inside an actor: failures of its members come to its
/// supervision hook, which reports them and carries on.
pub(crate) struct Overseer {
    counters: ActorMesh<Counter>,
    failures: Port<String>,
}

#[actor]
impl Overseer {
    #[init]
    async fn new(
        (procs, failures): (ProcMesh, Port<String>),
        ctx: &Context<Self>,
    ) -> Result<Self, ActorError> {
        let counters = procs
            .spawn_owned::<Counter, _>(ctx, "counter", ())
            .await
            .map_err(ActorError::msg)?;
        Ok(Overseer { counters, failures })
    }

    /// The pid of the member at `rank`.
    #[endpoint]
    async fn pid_of(&self, rank: usize) -> Result<u32, String> {
        let member = self.counters.member(rank).map_err(|e| e.to_string())?;
        let (_, pid) = member.whoami().call().await.map_err(|e| e.to_string())?;
        Ok(pid)
    }

    #[on_supervision]
    async fn member_failed(&mut self, _ctx: &Context<Self>, event: &SupervisionEvent) -> bool {
        let _ = self.failures.send(event.to_string());
        true
    }
}
