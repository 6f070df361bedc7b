//! Proc and actor meshes across real processes: this test binary re-executes
//! itself as the workers, so it has its own `main` (calling
//! `monarch::bootstrap()` first) and runs the scenarios with libtest-mimic.
//!
//! Run alone with `cargo test --test mesh`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libtest_mimic::{Arguments, Failed, Trial};
use monarch::prelude::*;
use monarch::{CastTree, Failure, Host, Step};

/// Every wait in these tests is bounded by this.
const LIMIT: Duration = Duration::from_secs(60);

/// A counter that also reports where it runs and can misbehave on request.
#[derive(Default)]
struct Counter {
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
struct Caller;

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
struct Ledger {
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

/// One runtime for every scenario: the process's transport lives on it.
/// Owns a mesh from inside an actor: failures of its members come to its
/// supervision hook, which reports them and carries on.
struct Overseer {
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

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

/// A proc whose fault hook records events instead of exiting.
fn recording_owner() -> (Proc, tokio::sync::mpsc::UnboundedReceiver<SupervisionEvent>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let proc = Proc::new("test").with_fault_hook(Arc::new(move |event: &SupervisionEvent| {
        let _ = tx.send(event.clone());
    }));
    (proc, rx)
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("timed out waiting")
}

fn check(condition: bool, what: &str) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// The state letter of process `pid` (`R`, `S`, `T` stopped, `Z` zombie...),
/// or `None` once it is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

fn process_gone(pid: u32) -> bool {
    // A zombie has exited; only its parent's bookkeeping remains.
    matches!(process_state(pid), None | Some('Z'))
}

/// Waits until every thread of `pid` has taken a SIGSTOP: the signal is
/// asynchronous, and a message can be handled in between.
async fn wait_stopped(pid: u32) -> bool {
    for _ in 0..200 {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
        let all_stopped = tasks.is_ok_and(|tasks| {
            tasks.flatten().all(|task| {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
                state.starts_with('T') || state.starts_with('t')
            })
        });
        if all_stopped {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Waits up to ten seconds for `condition` to hold.
async fn settles(condition: impl Fn() -> bool) -> bool {
    for _ in 0..1000 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn wait_gone(pid: u32) -> bool {
    for _ in 0..200 {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let status = unsafe { libc::kill(pid, signal) };
    let error = std::io::Error::last_os_error();
    // A process to be killed that is already gone (its owner killed it for
    // silence first, on a slow machine) is what was wanted.
    let gone = signal == libc::SIGKILL && error.raw_os_error() == Some(libc::ESRCH);
    assert!(status == 0 || gone, "kill({pid}, {signal}) failed: {error}");
}

async fn every_adverb_on_a_2x2_mesh(transport: &str) -> Result<(), Failed> {
    let (owner, _events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .with_env("MONARCH_TRANSPORT", transport)
        .spawn_procs(shape! { hosts = 2, gpus = 2 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    check(counters.len() == 4, "four counters")?;

    counters.incr(5).broadcast()?;
    let all: ValueMesh<i64> = bounded(counters.get().call()).await?;
    check(all.values() == [5, 5, 5, 5], "broadcast reached every rank")?;

    let who = bounded(counters.whoami().call()).await?;
    let ranks: Vec<usize> = who.values().iter().map(|(r, _)| *r).collect();
    check(ranks == [0, 1, 2, 3], "ranks in order")?;
    let mut pids: Vec<u32> = who.values().iter().map(|(_, p)| *p).collect();
    pids.sort_unstable();
    pids.dedup();
    check(pids.len() == 4, "one process per point")?;
    check(!pids.contains(&std::process::id()), "not in the controller")?;

    let one = bounded(
        counters
            .slice("hosts", 1)?
            .slice("gpus", 0)?
            .whoami()
            .call_one(),
    )
    .await?;
    check(one.0 == 2, "call_one on {hosts=1, gpus=0} is rank 2")?;
    let not_one = counters.get().call_one().await;
    check(
        matches!(not_one, Err(MeshError::NotOne { len: 4 })),
        "call_one refuses a mesh of four",
    )?;

    let mut chosen = Vec::new();
    for _ in 0..8 {
        chosen.push(bounded(counters.whoami().choose()).await?.0);
    }
    chosen.sort_unstable();
    chosen.dedup();
    check(chosen.len() == 4, "choose spreads over idle members")?;

    let mut stream = counters.whoami().stream();
    let mut points = Vec::new();
    while let Some((point, reply)) = bounded(stream.next()).await {
        points.push((point.to_string(), reply?.0));
    }
    points.sort();
    check(points.len() == 4, "stream yields every member")?;
    check(
        points[3] == ("{hosts=1, gpus=1}".to_string(), 3),
        "stream names the point",
    )?;

    let failed = bounded(counters.fail("nope".into()).call()).await;
    match failed {
        Err(MeshError::Member { rank, error, .. }) => {
            check(rank < 4, "a rank is named")?;
            check(error.to_string().contains("nope"), "the endpoint's error")?;
        }
        other => return Err(format!("expected a member error, got {other:?}").into()),
    }
    check(
        bounded(counters.get().call()).await?.values() == [5, 5, 5, 5],
        "an endpoint error leaves the actors running",
    )?;

    let (port, receiver) = open_port::<u64>();
    counters
        .slice("hosts", 0)?
        .slice("gpus", 1)?
        .count_to(5, port)
        .broadcast()?;
    let streamed: Vec<u64> = bounded(receiver.collect()).await;
    check(
        streamed == [0, 1, 2, 3, 4],
        "a port streams back and closes",
    )?;

    bounded(procs.stop()).await;
    for pid in pids {
        check(wait_gone(pid).await, "stopped workers exit")?;
    }
    Ok(())
}

async fn slices_and_refs_travel() -> Result<(), Failed> {
    let (owner, _events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { hosts = 2, gpus = 2 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    let callers = procs.spawn::<Caller>("caller", ()).await?;

    let column = counters.slice("gpus", 1)?;
    column.incr(10).broadcast()?;
    let who = bounded(column.whoami().call()).await?;
    let ranks: Vec<usize> = who.values().iter().map(|(r, _)| *r).collect();
    check(ranks == [1, 3], "the gpus=1 column is ranks 1 and 3")?;

    // A mesh handed to an actor in another process, which calls it.
    let remote_caller = callers.slice("hosts", 1)?.slice("gpus", 1)?;
    let sum = bounded(remote_caller.sum_of(counters.clone()).call_one()).await?;
    check(sum == 20, "the mesh was usable from the other process")?;

    // A port passed on from one worker to another: values go straight to us,
    // and the stream ends once both have dropped their copies.
    let (port, receiver) = open_port::<u64>();
    let relayed = callers
        .member(1)?
        .relay(counters.member(2)?.clone(), 100, port)
        .call();
    check(bounded(relayed).await?, "relayed")?;
    let streamed: Vec<u64> = bounded(receiver.collect()).await;
    check(
        streamed.iter().copied().eq(0..100),
        "a relayed port streams back in order and closes",
    )?;

    // A worker starts a mesh of its own, named under it.
    let inner = bounded(callers.member(3)?.nested(7).call()).await?;
    check(
        inner.len() == 2
            && inner
                .iter()
                .all(|(name, value)| *value == 7 && name.contains(".3.procs")),
        &format!("a nested mesh works and is named under its parent: {inner:?}"),
    )?;

    // The singleton is one actor, whoever asks.
    let mine = get_or_spawn_controller::<Ledger>("ledger", ()).await?;
    let theirs = bounded(callers.ledger().call()).await?;
    for id in theirs.values() {
        check(id == &mine.actor_id().to_string(), "same ledger everywhere")?;
    }
    check(
        bounded(mine.touch().call()).await? == 5,
        "four workers and us touched it",
    )?;
    let wrong_type = get_or_spawn_controller::<Counter>("ledger", ()).await;
    check(
        wrong_type
            .as_ref()
            .is_err_and(|e| e.to_string().contains("is a")),
        &format!("a singleton's name is bound to its type: {wrong_type:?}"),
    )?;

    bounded(procs.stop()).await;
    Ok(())
}

async fn ordering_across_processes(transport: &str) -> Result<(), Failed> {
    let (owner, _events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .with_env("MONARCH_TRANSPORT", transport)
        .spawn_procs(shape! { procs = 3 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    let callers = procs.spawn::<Caller>("caller", ()).await?;
    let target = counters.member(0)?.clone();
    const N: u64 = 2000;

    // Remote senders in two other processes, and local ones, all at once.
    let remote = [1, 2].map(|rank| {
        let caller = callers.member(rank).unwrap().clone();
        let target = target.clone();
        tokio::spawn(async move {
            caller
                .send_sequence(target, format!("remote{rank}"), N)
                .call()
                .await
        })
    });
    let local: Vec<_> = (0..3)
        .map(|i| {
            let target = target.clone();
            tokio::spawn(async move {
                for seq in 0..N {
                    target.record(format!("local{i}"), seq).send().unwrap();
                    if seq % 100 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for handle in remote {
        check(bounded(handle).await??, "remote sends accepted")?;
    }
    for handle in local {
        bounded(handle).await?;
    }
    let seen = bounded(target.seen().call()).await?;
    check(seen.len() == 5, "five senders")?;
    for (sender, seqs) in &seen {
        check(
            seqs.iter().copied().eq(0..N),
            &format!("{sender}'s messages arrived complete and in order"),
        )?;
    }
    bounded(procs.stop()).await;
    Ok(())
}

/// Casts through a tree with two children per process, so that most members
/// of an 8-proc mesh are reached through relays.
const TREE: CastTree = CastTree {
    fanout: 2,
    min_procs: 2,
};

/// Sends `0..n` as `sender` to a mesh of eight counters (`hosts = 2, gpus =
/// 4`): casts to the whole mesh, casts to its second host (another tree) and
/// direct sends, interleaved. Returns the sequence each rank should record.
fn send_mixed(mesh: &ActorMesh<Counter>, sender: &str, n: u64) -> Result<Vec<Vec<u64>>, MeshError> {
    let mut expected: Vec<Vec<u64>> = vec![Vec::new(); mesh.len()];
    let back_half = mesh.slice("hosts", 1).expect("two hosts");
    for seq in 0..n {
        match seq % 4 {
            0 => {
                mesh.record(sender.into(), seq).broadcast()?;
                expected.iter_mut().for_each(|e| e.push(seq));
            }
            1 => {
                back_half.record(sender.into(), seq).broadcast()?;
                expected[4..].iter_mut().for_each(|e| e.push(seq));
            }
            _ => {
                let rank = (seq as usize * 7) % 8;
                let member = mesh.member(rank).expect("eight members");
                member
                    .record(sender.into(), seq)
                    .send()
                    .map_err(|error| MeshError::Send {
                        rank,
                        point: mesh.shape().point(rank).expect("rank of the mesh"),
                        error,
                    })?;
                expected[rank].push(seq);
            }
        }
    }
    Ok(expected)
}

async fn casts_through_a_tree(transport: &str) -> Result<(), Failed> {
    let (owner, _events) = recording_owner();
    // The workers' own default is a tree (fanout 2) from two procs; a mesh
    // handed to them carries its own setting, which wins.
    let procs = Host::owned_by(&owner)
        .with_env("MONARCH_TRANSPORT", transport)
        .with_env("MONARCH_CAST_FANOUT", "2")
        .with_env("MONARCH_CAST_TREE_MIN", "2")
        .spawn_procs(shape! { hosts = 2, gpus = 4 })
        .await?;
    let counters = procs
        .spawn::<Counter>("counter", ())
        .await?
        .with_cast_tree(TREE);

    // Replies are gathered back through the relays.
    let who = bounded(counters.whoami().call()).await?;
    check(
        who.values().iter().map(|(rank, _)| *rank).eq(0..8),
        &format!("every rank answered in its place: {who:?}"),
    )?;
    let pids: std::collections::HashSet<u32> = who.values().iter().map(|(_, p)| *p).collect();
    check(pids.len() == 8, "from eight processes")?;
    // A large argument: on one host the relays pass on the caller's shared
    // copy rather than copying it again.
    let big = Bytes::from(
        (0..3u32 << 20)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let expected = big.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    for _ in 0..3 {
        let sizes = bounded(counters.size_of(big.clone()).call()).await?;
        check(
            sizes.values().iter().all(|s| *s == (3 << 20, expected)),
            &format!("every member got the large argument intact: {sizes:?}"),
        )?;
    }
    let even = bounded(counters.slice("gpus", Step(.., 2))?.whoami().call()).await?;
    check(
        even.values().iter().map(|(rank, _)| *rank).eq([0, 2, 4, 6]),
        &format!("a strided slice calls every other gpu: {even:?}"),
    )?;
    let mut stream = counters.get().stream();
    let mut streamed = Vec::new();
    while let Some((point, value)) = bounded(stream.next()).await {
        streamed.push((counters.shape().rank_of(point.coords())?, value?));
    }
    streamed.sort_unstable();
    check(
        streamed == (0..8).map(|r| (r, 0)).collect::<Vec<_>>(),
        "a stream through the tree yields every member once",
    )?;
    match bounded(counters.fail("no".into()).call()).await {
        Err(MeshError::Member { rank, error, .. }) => check(
            rank < 8 && matches!(error, CallError::Endpoint { .. }),
            "an endpoint error comes back through the relays with its rank",
        )?,
        other => return Err(format!("expected a member error, got {other:?}").into()),
    }

    // Three senders at once (two workers and this process) each mix casts
    // through trees and direct sends: every member handles each sender's
    // messages in the order sent.
    let callers = procs.spawn::<Caller>("caller", ()).await?;
    const N: u64 = 600;
    let workers = [2, 6].map(|rank| {
        let caller = callers.member(rank).unwrap().clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            caller
                .mixed_sequence(counters, format!("worker{rank}"), N)
                .call()
                .await
        })
    });
    let mut expected = vec![(
        "controller".to_string(),
        send_mixed(&counters, "controller", N)?,
    )];
    for (handle, rank) in workers.into_iter().zip([2, 6]) {
        expected.push((format!("worker{rank}"), bounded(handle).await??));
        let trees = bounded(counters.member(rank)?.casts_started().call()).await?;
        check(
            trees >= N / 2,
            &format!("worker {rank} cast through trees ({trees} casts)"),
        )?;
    }
    let seen = bounded(counters.seen().call()).await?;
    for (sender, expected) in &expected {
        for (rank, seen) in seen.values().iter().enumerate() {
            check(
                seen.get(sender) == Some(&expected[rank]),
                &format!("rank {rank} saw {sender}'s messages complete and in order"),
            )?;
        }
    }

    // A broadcast through the tree reaches every member once.
    counters.incr(5).broadcast()?;
    let totals = bounded(counters.get().call()).await?;
    check(
        totals.values().iter().all(|v| *v == 5),
        "every member counted",
    )?;
    // A worker casts to the mesh it is handed: one member is in its own
    // process, the seven others are reached through a tree, unless the mesh
    // says otherwise.
    let worker = callers.member(5)?;
    let plain = ActorMesh::new(
        counters.shape().clone(),
        counters.members().map(|(_, m)| m.clone()).collect(),
    )?;
    let direct = counters.with_cast_tree(CastTree::DIRECT);
    for (mesh, tree) in [(&plain, true), (&direct, false), (&counters, true)] {
        let before = bounded(counters.member(5)?.casts_started().call()).await?;
        let sum = bounded(worker.sum_of(mesh.clone()).call()).await?;
        check(sum == 40, &format!("a worker's cast gathered {sum}"))?;
        let after = bounded(counters.member(5)?.casts_started().call()).await?;
        check(
            (after > before) == tree,
            &format!(
                "a worker's cast went through a tree: {}, expected {tree}",
                after > before
            ),
        )?;
    }
    // Every cast is done once its last delivery reports are in: nothing stays,
    // here or in the relays (asked directly, not through a cast).
    check(
        settles(|| monarch::testing::casts_in_flight() == 0).await,
        &format!(
            "no cast left in flight here ({})",
            monarch::testing::casts_in_flight()
        ),
    )?;
    for (_, member) in counters.members() {
        let mut left = usize::MAX;
        for _ in 0..1000 {
            left = bounded(member.casts_in_flight().call()).await?;
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        check(
            left == 0,
            &format!("no cast left in flight at {}", member.actor_id()),
        )?;
    }
    bounded(counters.stop()).await;
    bounded(procs.stop()).await;
    Ok(())
}

async fn a_lost_relay_holds_nothing_up() -> Result<(), Failed> {
    let (owner, _events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { procs = 8 })
        .await?;
    let counters = procs
        .spawn::<Counter>("counter", ())
        .await?
        .with_cast_tree(TREE);
    let who = bounded(counters.whoami().call()).await?;
    let pid = |rank: usize| who.values()[rank].1;

    // With two children each, a cast to all eight goes 0 -> {1 -> 2, 3} and
    // 4 -> {5 -> 6, 7}: rank 2 is reached only through ranks 0 and 1. Stop
    // rank 1, so that the cast waits in it.
    signal(pid(1), libc::SIGSTOP);
    check(wait_stopped(pid(1)).await, "rank 1 stops")?;
    counters.record("cast".into(), 0).broadcast()?;
    // A direct call sent after the cast must wait for it...
    let behind = tokio::spawn({
        let target = counters.member(2)?.clone();
        async move { target.record("direct".into(), 1).call().await }
    });
    let waited = tokio::time::timeout(Duration::from_millis(300), async {
        while !behind.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    check(
        waited.is_err(),
        "a direct call does not overtake a cast still in a relay",
    )?;
    // ...until the relay is lost: rank 0 reports the cast lost for ranks 1
    // and 2, and the controller tells rank 2 not to wait for it.
    signal(pid(1), libc::SIGKILL);
    bounded(behind).await??;
    let seen = bounded(counters.member(2)?.seen().call()).await?;
    check(
        seen.get("direct") == Some(&vec![1]) && !seen.contains_key("cast"),
        &format!("rank 2 handled the direct call and lost the cast: {seen:?}"),
    )?;
    let seen = bounded(counters.member(3)?.seen().call()).await?;
    check(
        seen.get("cast") == Some(&vec![0]),
        "rank 3, behind the live relay 0, got the cast",
    )?;

    // A relay the controller sends to itself: the last four form a tree
    // 4 -> 5 and 6 -> 7.
    let back = counters.slice("procs", 4..8)?;
    signal(pid(4), libc::SIGSTOP);
    check(wait_stopped(pid(4)).await, "rank 4 stops")?;
    back.record("cast".into(), 2).broadcast()?;
    let behind = tokio::spawn({
        let target = counters.member(5)?.clone();
        async move { target.record("direct".into(), 3).call().await }
    });
    signal(pid(4), libc::SIGKILL);
    bounded(behind).await??;
    let seen = bounded(counters.member(5)?.seen().call()).await?;
    check(
        seen.get("direct") == Some(&vec![3]) && seen.get("cast") == Some(&vec![0]),
        &format!("rank 5 handled the direct call and lost the second cast: {seen:?}"),
    )?;

    // A call through the tree names the lost members and gets the rest.
    let mut stream = counters.get().stream();
    let (mut ok, mut lost) = (Vec::new(), Vec::new());
    while let Some((point, value)) = bounded(stream.next()).await {
        match value {
            Ok(_) => ok.push(point.coords()[0]),
            Err(_) => lost.push(point.coords()[0]),
        }
    }
    ok.sort_unstable();
    lost.sort_unstable();
    check(
        ok == [0, 2, 3, 5, 6, 7] && lost == [1, 4],
        &format!("the live members answer ({ok:?}), the lost ones fail ({lost:?})"),
    )?;

    // A relay lost while a call is in flight: the six live procs form the tree
    // 0 -> {2, 3} and 5 -> {6, 7}. Once every live member has begun, rank 0
    // goes; the replies of 2 and 3 had to come back through it.
    let (started, mut begun) = open_port::<()>();
    let mut stream = counters.slow(started, 3000).stream();
    for _ in 0..6 {
        bounded(begun.recv()).await.ok_or("a member never began")?;
    }
    signal(pid(0), libc::SIGKILL);
    let mut results = Vec::new();
    while let Some((point, value)) = bounded(stream.next()).await {
        results.push((point.coords()[0], value));
    }
    results.sort_by_key(|(rank, _)| *rank);
    for (rank, result) in &results {
        let fine = match (rank, result) {
            (5..=7, Ok(3000)) => true,
            (0 | 2 | 3, Err(CallError::Unreachable { reason, .. })) => {
                reason.contains("path through")
            }
            (1 | 4, Err(_)) => true,
            _ => false,
        };
        check(fine, &format!("rank {rank}: {result:?}"))?;
    }
    check(results.len() == 8, "every rank answered or failed")?;
    check(
        settles(|| monarch::testing::casts_in_flight() == 0).await,
        "lost subtrees leave nothing in flight",
    )?;
    bounded(procs.stop()).await;
    Ok(())
}

/// A soak, ignored by default (`cargo test --test mesh -- --ignored soak`;
/// `MESH_SOAK_ROUNDS` sets its length, 40 by default, `MESH_SOAK_SEED` which
/// workers it kills, `MESH_SOAK_TRANSPORT=quic` the transport): sixteen procs
/// in a deep tree (fanout 2) take bursts of casts to the whole mesh and to
/// half of it, mixed with direct sends, with a call through the tree after
/// each burst; part-way through every fifth burst a random worker is killed.
/// No call hangs, live members answer, lost ones fail, every survivor sees
/// the controller's messages in increasing order, the last burst reaches
/// every survivor in full, and nothing is left in flight.
async fn soak_tree_casts_with_losses() -> Result<(), Failed> {
    let rounds: u64 = std::env::var("MESH_SOAK_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(40);
    let transport = std::env::var("MESH_SOAK_TRANSPORT").unwrap_or_else(|_| "same-host".into());
    let (owner, _events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .with_env("MONARCH_TRANSPORT", &transport)
        .spawn_procs(shape! { procs = 16 })
        .await?;
    let counters = procs
        .spawn::<Counter>("counter", ())
        .await?
        .with_cast_tree(TREE);
    let who = bounded(counters.whoami().call()).await?;
    let mut alive = [true; 16];
    let mut sent: Vec<Vec<u64>> = vec![Vec::new(); 16];
    let mut state: u64 = std::env::var("MESH_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15)
        | 1;
    let mut random = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let back_half = counters.slice("procs", 8..16)?;
    let mut seq = 0u64;
    let mut last_burst_start = 0;
    for round in 0..rounds {
        last_burst_start = seq;
        // Every fifth burst but the last loses a worker part-way through, with
        // messages to the procs behind it still on their way.
        let living = alive.iter().filter(|a| **a).count();
        let kill_at = (round % 5 == 4 && round + 1 < rounds && living > 4).then(|| random(200));
        for at in 0..200 {
            if kill_at == Some(at) {
                let living: Vec<usize> = (0..16).filter(|r| alive[*r]).collect();
                let victim = living[random(living.len())];
                signal(who.values()[victim].1, libc::SIGKILL);
                alive[victim] = false;
                let member = counters.member(victim)?.clone();
                check(
                    settles(|| member.is_stopped()).await,
                    "the controller notices the loss",
                )?;
            }
            match random(3) {
                0 => {
                    // Sent to every live member; the first lost one is reported.
                    let _ = counters.record("soak".into(), seq).broadcast();
                    (0..16)
                        .filter(|r| alive[*r])
                        .for_each(|r| sent[r].push(seq));
                }
                1 => {
                    let _ = back_half.record("soak".into(), seq).broadcast();
                    (8..16)
                        .filter(|r| alive[*r])
                        .for_each(|r| sent[r].push(seq));
                }
                _ => {
                    let rank = random(16);
                    if alive[rank] {
                        counters.member(rank)?.record("soak".into(), seq).send()?;
                        sent[rank].push(seq);
                    }
                }
            }
            seq += 1;
        }
        let mut stream = counters.get().stream();
        while let Some((point, value)) = bounded(stream.next()).await {
            let rank = point.coords()[0];
            check(
                value.is_ok() == alive[rank],
                &format!(
                    "round {round}: rank {rank} (alive: {}) gave {value:?}",
                    alive[rank]
                ),
            )?;
        }
    }
    for rank in (0..16).filter(|r| alive[*r]) {
        let seen = bounded(counters.member(rank)?.seen().call()).await?;
        let seen = seen.get("soak").cloned().unwrap_or_default();
        check(
            seen.windows(2).all(|w| w[0] < w[1]),
            &format!("rank {rank} saw the messages in order"),
        )?;
        let last: Vec<u64> = sent[rank]
            .iter()
            .copied()
            .filter(|s| *s >= last_burst_start)
            .collect();
        check(
            seen.ends_with(&last),
            &format!("rank {rank} got all of the last burst"),
        )?;
        check(
            seen.iter().all(|s| sent[rank].contains(s)),
            &format!("rank {rank} saw only what was sent to it"),
        )?;
    }
    check(
        settles(|| monarch::testing::casts_in_flight() == 0).await,
        "nothing left in flight",
    )?;
    bounded(procs.stop()).await;
    Ok(())
}

async fn large_bytes_argument(transport: &str) -> Result<(), Failed> {
    let (owner, _events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .with_env("MONARCH_TRANSPORT", transport)
        .spawn_procs(shape! { procs = 1 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    let data: Vec<u8> = (0..64 << 20).map(|i: u32| (i % 251) as u8).collect();
    let expected = data.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let data = Bytes::from(data);
    let (len, sum) = bounded(counters.size_of(data.clone()).call_one()).await?;
    check(len == 64 << 20, "64 MiB arrived")?;
    check(sum == expected, "intact")?;

    // Large buffers' memory is reused once the receiver is done with it, never
    // while it still holds it.
    bounded(counters.keep(data).call_one()).await?;
    for round in 1..=3u8 {
        let other = Bytes::from(vec![round; 8 << 20]);
        let (len, sum) = bounded(counters.size_of(other).call_one()).await?;
        check(
            len == 8 << 20 && sum == ((8u64 << 20) * round as u64 % 256) as u8,
            "later buffers intact",
        )?;
    }
    let (len, sum) = bounded(counters.kept().call_one()).await?;
    check(
        len == 64 << 20 && sum == expected,
        "the kept buffer is untouched",
    )?;
    bounded(procs.stop()).await;
    Ok(())
}

async fn killed_worker_fails_calls_and_reports() -> Result<(), Failed> {
    let (owner, mut events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { procs = 2 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    let victim = counters.member(1)?.clone();
    let (_, pid) = bounded(victim.whoami().call()).await?;

    let (started, mut begun) = open_port::<()>();
    let pending = tokio::spawn({
        let victim = victim.clone();
        async move { victim.slow(started, 30_000).call().await }
    });
    bounded(begun.recv())
        .await
        .ok_or("the call never started")?;
    signal(pid, libc::SIGKILL);

    let failed = bounded(pending).await?;
    match failed {
        Err(CallError::Unreachable { actor, reason, .. }) => {
            check(actor.proc_id().rank() == 1, "the error names rank 1")?;
            check(
                reason.contains("killed by signal 9 (SIGKILL)"),
                &format!("and says how the process ended: {reason}"),
            )?;
        }
        other => return Err(format!("expected Unreachable, got {other:?}").into()),
    }
    let event = bounded(events.recv()).await.ok_or("no event")?;
    check(
        event.actor == *victim.actor_id(),
        "event for the killed actor",
    )?;
    check(matches!(event.failure, Failure::ProcLost(_)), "proc lost")?;
    check(
        matches!(
            victim.get().call().await,
            Err(CallError::Unreachable { .. })
        ),
        "later calls fail at once",
    )?;
    check(
        victim.incr(1).send().is_err(),
        "later sends are undeliverable",
    )?;
    check(
        bounded(counters.member(0)?.get().call()).await? == 0,
        "the rest of the mesh works",
    )?;
    bounded(procs.stop()).await;
    Ok(())
}

async fn stopped_worker_is_noticed_by_heartbeat() -> Result<(), Failed> {
    let (owner, mut events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { procs = 1 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    let (_, pid) = bounded(counters.whoami().call_one()).await?;
    signal(pid, libc::SIGSTOP);
    check(wait_stopped(pid).await, "the worker stops")?;
    let started = std::time::Instant::now();
    let result = bounded(counters.get().call_one()).await;
    let waited = started.elapsed();
    check(
        matches!(
            result,
            Err(MeshError::Member {
                error: CallError::Unreachable { .. },
                ..
            })
        ),
        &format!("the call fails as unreachable: {result:?}"),
    )?;
    check(
        waited < Duration::from_secs(10),
        &format!("within the heartbeat bound: {waited:?}"),
    )?;
    let event = bounded(events.recv()).await.ok_or("no event")?;
    check(
        event.to_string().contains("no heartbeat"),
        &format!("the event says why: {event}"),
    )?;
    check(wait_gone(pid).await, "the hung worker is killed")?;
    Ok(())
}

async fn an_actor_owns_a_mesh_and_hears_of_its_failures() -> Result<(), Failed> {
    let (owner, mut root_events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { procs = 2 })
        .await?;
    let (failures, mut reported) = open_port::<String>();
    let overseer = owner
        .spawn::<Overseer>("overseer", (procs.clone(), failures))
        .await?;
    let pid = bounded(overseer.pid_of(1).call()).await?;
    signal(pid, libc::SIGKILL);
    let report = bounded(reported.recv()).await.ok_or("no report")?;
    check(
        report.contains("counter") && report.contains("its process was lost"),
        &format!("the owning actor heard of the lost member: {report}"),
    )?;
    check(
        bounded(overseer.pid_of(0).call()).await.is_ok(),
        "the owner carries on, and so does the other member",
    )?;
    check(
        root_events.try_recv().is_err(),
        "nothing reached the root: the owner handled it",
    )?;
    overseer.stop().await;
    bounded(procs.stop()).await;
    Ok(())
}

async fn supervision_event_from_a_remote_panic() -> Result<(), Failed> {
    let (owner, mut events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { procs = 2 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    counters.slice("procs", 0)?.panic_now().broadcast()?;
    let event = bounded(events.recv()).await.ok_or("no event")?;
    check(event.actor.proc_id().rank() == 0, "rank 0 failed")?;
    check(
        event.to_string().contains("asked to panic"),
        "the panic text travels",
    )?;
    check(
        event.endpoint.as_deref() == Some("panic_now"),
        "and the endpoint",
    )?;
    check(
        matches!(
            bounded(counters.member(0)?.get().call()).await,
            Err(CallError::Undeliverable { .. })
        ),
        "the failed actor is gone",
    )?;
    check(
        bounded(counters.member(1)?.get().call()).await? == 0,
        "its sibling lives",
    )?;
    bounded(procs.stop()).await;
    Ok(())
}

async fn intruders_and_garbage_are_refused() -> Result<(), Failed> {
    let (owner, _events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { procs = 1 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    let addr = procs.addr(0).ok_or("no address")?.to_string();

    // A separate process without the job credential.
    let exe = std::env::current_exe()?;
    let output = tokio::process::Command::new(exe)
        .env("MESH_TEST_INTRUDE", &addr)
        .output();
    let output = bounded(output).await?;
    let said = String::from_utf8_lossy(&output.stdout).to_string();
    check(
        said.contains("refused"),
        &format!("intruder refused: {said}"),
    )?;

    // Garbage datagrams at the worker's port.
    let socket_addr = addr.split('/').next().ok_or("no socket address")?;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    for size in [1usize, 17, 1200, 1500] {
        let junk: Vec<u8> = (0..size).map(|i| (i * 31 % 256) as u8).collect();
        socket.send_to(&junk, socket_addr).await?;
    }
    counters.incr(2).broadcast()?;
    check(
        bounded(counters.get().call_one()).await? == 2,
        "the worker is alive and serving",
    )?;
    bounded(procs.stop()).await;
    Ok(())
}

async fn controller_killed_takes_workers_along() -> Result<(), Failed> {
    let exe = std::env::current_exe()?;
    let mut controller = tokio::process::Command::new(exe)
        .env("MESH_TEST_CONTROLLER", "1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = controller.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut pids = Vec::new();
    let mut forwarded = false;
    while let Some(line) = bounded(lines.next_line()).await? {
        if let Some(rest) = line.strip_prefix("worker pids: ") {
            pids = rest
                .split(',')
                .map(|p| p.trim().parse::<u32>())
                .collect::<Result<_, _>>()?;
        }
        // Worker output comes back named by actor mesh, proc mesh and rank.
        forwarded |= line == "[counter@procs0 1] hello from a worker";
        if forwarded && !pids.is_empty() {
            break;
        }
    }
    check(pids.len() == 2, "the controller reported its workers")?;
    check(forwarded, "a worker's output came back with its prefix")?;
    let controller_pid = controller.id().ok_or("no pid")?;
    signal(controller_pid, libc::SIGKILL);
    let _ = bounded(controller.wait()).await;
    for pid in pids {
        check(wait_gone(pid).await, "workers exit after their controller")?;
    }
    Ok(())
}

async fn default_fault_hook_reports_and_exits() -> Result<(), Failed> {
    let exe = std::env::current_exe()?;
    let output = tokio::process::Command::new(exe)
        .env("MESH_TEST_UNHANDLED", "1")
        .output();
    let output = bounded(output).await?;
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    check(output.status.code() == Some(1), "the program exits with 1")?;
    check(
        stderr.contains("unhandled actor failure")
            && stderr.contains("counter#")
            && stderr.contains("panic_now")
            && stderr.contains("asked to panic"),
        &format!("the report names the actor, endpoint and cause: {stderr}"),
    )?;
    Ok(())
}

/// The program for `default_fault_hook_reports_and_exits`: a root actor
/// fails with nobody awaiting, and `this_proc()`'s default hook handles it.
fn run_unhandled() -> ! {
    RUNTIME.block_on(async {
        let counter = this_proc()
            .spawn::<Counter>("counter", ())
            .await
            .expect("spawn");
        counter.panic_now().send().expect("send");
        tokio::time::sleep(LIMIT).await;
    });
    std::process::exit(0)
}

async fn a_worker_without_bootstrap_fails_fast() -> Result<(), Failed> {
    let exe = std::env::current_exe()?;
    let output = tokio::process::Command::new(exe)
        .env("MESH_TEST_NO_BOOTSTRAP", "1")
        .output();
    let output = bounded(output).await?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    check(
        stdout.contains("spawn_procs failed") && stdout.contains("before connecting"),
        &format!("the controller learns at once that its worker died: {stdout}"),
    )?;
    check(
        stderr.contains("refusing to start workers of workers"),
        &format!("the worker says why, through the controller: {stderr}"),
    )?;
    Ok(())
}

/// The program for `a_worker_without_bootstrap_fails_fast`: a `main` that
/// forgets `bootstrap()`, as controller and (re-executed) as worker.
fn run_without_bootstrap() -> ! {
    RUNTIME.block_on(async {
        match this_host().spawn_procs(shape! { procs = 1 }).await {
            Ok(_) => println!("spawn_procs succeeded"),
            Err(error) => {
                // The worker's copy ends here, its error on stderr.
                eprintln!("{error}");
                println!("spawn_procs failed: {error}");
            }
        }
    });
    std::process::exit(3)
}

/// The controller for `controller_killed_takes_workers_along`: spawn two
/// workers, print their pids, wait to be killed.
fn run_controller() -> ! {
    RUNTIME.block_on(async {
        let (owner, _events) = recording_owner();
        let procs = Host::owned_by(&owner)
            .spawn_procs(shape! { procs = 2 })
            .await
            .expect("spawn procs");
        let counters = procs.spawn::<Counter>("counter", ()).await.expect("spawn");
        let who = counters.whoami().call().await.expect("whoami");
        let one = counters.member(1).expect("rank 1");
        one.say("hello from a worker".into())
            .call()
            .await
            .expect("say");
        let pids: Vec<String> = who.values().iter().map(|(_, p)| p.to_string()).collect();
        println!("worker pids: {}", pids.join(","));
        tokio::time::sleep(LIMIT).await;
    });
    std::process::exit(0)
}

fn main() {
    if std::env::var("MESH_TEST_NO_BOOTSTRAP").is_ok() {
        run_without_bootstrap();
    }
    monarch::bootstrap();
    if let Ok(addr) = std::env::var("MESH_TEST_INTRUDE") {
        let result = RUNTIME.block_on(monarch::testing::probe_as_intruder(&addr));
        match result {
            Ok(()) => println!("accepted"),
            Err(reason) => println!("refused: {reason}"),
        }
        std::process::exit(0);
    }
    if std::env::var("MESH_TEST_CONTROLLER").is_ok() {
        run_controller();
    }
    if std::env::var("MESH_TEST_UNHANDLED").is_ok() {
        run_unhandled();
    }
    // Quick heartbeats, so a hung worker is noticed within the test's patience.
    std::env::set_var("MONARCH_HEARTBEAT_TIMEOUT_MS", "1500");

    type Scenario =
        fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Failed>>>>;
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("every_adverb_on_a_2x2_mesh", || {
            Box::pin(every_adverb_on_a_2x2_mesh("same-host"))
        }),
        ("every_adverb_on_a_2x2_mesh_over_quic", || {
            Box::pin(every_adverb_on_a_2x2_mesh("quic"))
        }),
        ("slices_and_refs_travel", || {
            Box::pin(slices_and_refs_travel())
        }),
        ("ordering_across_processes", || {
            Box::pin(ordering_across_processes("same-host"))
        }),
        ("ordering_across_processes_over_quic", || {
            Box::pin(ordering_across_processes("quic"))
        }),
        ("casts_through_a_tree", || {
            Box::pin(casts_through_a_tree("same-host"))
        }),
        ("casts_through_a_tree_over_quic", || {
            Box::pin(casts_through_a_tree("quic"))
        }),
        ("a_lost_relay_holds_nothing_up", || {
            Box::pin(a_lost_relay_holds_nothing_up())
        }),
        ("large_bytes_argument", || {
            Box::pin(large_bytes_argument("same-host"))
        }),
        ("large_bytes_argument_over_quic", || {
            Box::pin(large_bytes_argument("quic"))
        }),
        ("killed_worker_fails_calls_and_reports", || {
            Box::pin(killed_worker_fails_calls_and_reports())
        }),
        ("stopped_worker_is_noticed_by_heartbeat", || {
            Box::pin(stopped_worker_is_noticed_by_heartbeat())
        }),
        ("an_actor_owns_a_mesh_and_hears_of_its_failures", || {
            Box::pin(an_actor_owns_a_mesh_and_hears_of_its_failures())
        }),
        ("supervision_event_from_a_remote_panic", || {
            Box::pin(supervision_event_from_a_remote_panic())
        }),
        ("intruders_and_garbage_are_refused", || {
            Box::pin(intruders_and_garbage_are_refused())
        }),
        ("default_fault_hook_reports_and_exits", || {
            Box::pin(default_fault_hook_reports_and_exits())
        }),
        ("a_worker_without_bootstrap_fails_fast", || {
            Box::pin(a_worker_without_bootstrap_fails_fast())
        }),
        ("controller_killed_takes_workers_along", || {
            Box::pin(controller_killed_takes_workers_along())
        }),
    ];
    let soaks: Vec<(&str, Scenario)> = vec![("soak_tree_casts_with_losses", || {
        Box::pin(soak_tree_casts_with_losses())
    })];
    let trials = scenarios
        .into_iter()
        .map(|(name, scenario)| Trial::test(name, move || RUNTIME.block_on(scenario())))
        .chain(soaks.into_iter().map(|(name, scenario)| {
            Trial::test(name, move || RUNTIME.block_on(scenario())).with_ignored_flag(true)
        }))
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
