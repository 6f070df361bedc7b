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

    /// Ends this process with a segmentation fault.
    #[endpoint]
    async fn segfault(&self) {
        // SAFETY: raise(3) takes a plain integer. Rust's own SIGSEGV handler
        // (for stack overflows) lets a signal that is no guard-page fault
        // pass by restoring the default action and returning, so the second
        // one ends the process as a segfault does.
        unsafe {
            libc::raise(libc::SIGSEGV);
            libc::raise(libc::SIGSEGV);
        }
    }

    /// Ends this process with exit status `code`.
    #[endpoint]
    async fn exit_now(&self, code: i32) {
        std::process::exit(code);
    }

    /// Where this actor stands: rank, point and shape of its mesh, its
    /// owner, and (through a mesh) its rank and point in the slice called.
    #[endpoint]
    async fn placement(&self, ctx: &Context<Self>) -> Placement {
        Placement {
            rank: ctx.rank(),
            point: ctx.point().to_string(),
            shape: ctx.shape().to_string(),
            owner: ctx.owner().to_string(),
            cast: ctx
                .cast_point()
                .map(|p| (p.rank(), format!("{} in {}", p.point(), p.shape()))),
        }
    }

    /// A reply of `n` characters.
    #[endpoint]
    async fn text_of(&self, n: usize) -> String {
        "x".repeat(n)
    }

    /// Fails with an error that has a cause.
    #[endpoint]
    async fn load(&self) -> Result<(), LoadFailed> {
        Err(LoadFailed(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "step-100.ckpt is missing",
        )))
    }

    /// Takes an argument that cannot be written out.
    #[endpoint]
    async fn take(&self, _value: Unwritable) {}

    /// Replies with a value that cannot be written out.
    #[endpoint]
    async fn give(&self) -> Unwritable {
        Unwritable
    }

    /// Streams `0..n` to `port`.
    #[endpoint]
    async fn count_to(&self, n: u64, port: Port<u64>) {
        for i in 0..n {
            let _ = port.send(i);
        }
    }
}

/// Where an actor stands, as [`Counter::placement`] reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Placement {
    pub(crate) rank: usize,
    pub(crate) point: String,
    pub(crate) shape: String,
    pub(crate) owner: String,
    pub(crate) cast: Option<(usize, String)>,
}

/// An error with a cause, as a user's error type wrapping a library's.
#[derive(Debug, thiserror::Error)]
#[error("loading the checkpoint failed")]
pub(crate) struct LoadFailed(#[source] std::io::Error);

/// A value whose serialisation always fails, as a type with a broken
/// `Serialize` would.
#[derive(Debug)]
pub(crate) struct Unwritable;

impl serde::Serialize for Unwritable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "Unwritable refuses to be written",
        ))
    }
}

impl<'de> serde::Deserialize<'de> for Unwritable {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <()>::deserialize(deserializer).map(|()| Unwritable)
    }
}

/// Says `ready <rank>` on the port it was spawned with, tells whatever it is
/// asked to, and reports on the same port what comes back undelivered.
pub(crate) struct Bouncer {
    said: Port<String>,
}

#[actor]
impl Bouncer {
    #[init]
    async fn new(said: Port<String>, ctx: &Context<Self>) -> Result<Self, ActorError> {
        said.send(format!("ready {}", ctx.rank()))?;
        Ok(Bouncer { said })
    }

    #[endpoint]
    async fn tell(&self, target: ActorRef<Counter>) -> bool {
        target.incr(1).send().is_ok()
    }

    #[on_undeliverable]
    async fn bounced(
        &mut self,
        _ctx: &Context<Self>,
        message: &monarch::Undeliverable,
    ) -> Result<(), ActorError> {
        let sender = message
            .sender
            .as_ref()
            .map_or("nobody".to_string(), ToString::to_string);
        self.said.send(format!(
            "bounced from {sender} to {} ({}): {}",
            message.to, message.endpoint, message.reason
        ))?;
        Ok(())
    }
}

/// An actor whose `init` never returns.
pub(crate) struct Stuck;

#[actor]
impl Stuck {
    #[init]
    async fn new(_: ()) -> Self {
        std::future::pending().await
    }

    #[endpoint]
    async fn ping(&self) {}
}

/// An actor whose `init` fails on every rank, saying which.
pub(crate) struct NoGpu;

#[actor]
impl NoGpu {
    #[init]
    async fn new(_: (), ctx: &Context<Self>) -> Result<Self, ActorError> {
        Err(ActorError::msg(format!("no GPU on rank {}", ctx.rank())))
    }

    #[endpoint]
    async fn ping(&self) {}
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

    /// Tries to stop a mesh it was handed, which it does not own.
    #[endpoint]
    async fn try_stop(&self, counters: ActorMesh<Counter>) -> String {
        match counters.stop().await {
            Ok(()) => "stopped".to_string(),
            Err(error) => error.to_string(),
        }
    }

    /// The id of the job's ledger singleton `name`, as seen from here.
    #[endpoint]
    async fn ledger(&self, name: String) -> Result<String, String> {
        let ledger = get_or_spawn_controller::<Ledger>(&name, ())
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

    #[endpoint]
    async fn break_down(&self) {
        panic!("the ledger broke down");
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

    /// The mesh it owns.
    #[endpoint]
    async fn counters(&self) -> ActorMesh<Counter> {
        self.counters.clone()
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
