//! The in-process runtime as a user sees it: tells and asks, ordering, deferred
//! and streamed replies, timeouts, stopping and undeliverable messages.

use std::time::Duration;

use futures::StreamExt;
use monarch::prelude::*;
use monarch::{CallError, OwnerId, Proc};
use proptest::prelude::*;
use tokio::sync::oneshot;

mod common;

use common::{bounded, recording_proc};

fn test_proc() -> Proc {
    Proc::new("test").with_fault_hook(std::sync::Arc::new(|event: &SupervisionEvent| {
        panic!("unexpected failure at the root: {event}")
    }))
}

#[derive(Default)]
struct Log {
    entries: Vec<(u32, u32)>,
}

#[actor]
impl Log {
    #[endpoint]
    async fn push(&mut self, sender: u32, seq: u32) {
        self.entries.push((sender, seq));
    }

    #[endpoint]
    async fn entries(&self) -> Vec<(u32, u32)> {
        self.entries.clone()
    }

    #[endpoint]
    async fn count_to(&self, n: u32, out: Port<u32>) {
        for i in 1..=n {
            out.send(i).expect("receiver alive");
        }
    }

    /// Replies from another task.
    #[endpoint]
    async fn later(&mut self, value: u64, reply: ReplyPort<u64>) {
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            reply.send(value * 2);
        });
    }

    #[endpoint]
    async fn crash(&self) {
        panic!("crash requested");
    }

    #[endpoint]
    async fn hang(&self) {
        std::future::pending::<()>().await;
    }

    #[endpoint]
    async fn who(&self, ctx: &Context<Self>) -> (String, usize) {
        (ctx.name().to_string(), ctx.rank())
    }
}

#[tokio::test]
async fn tell_then_ask_sees_every_message_in_order() {
    let proc = test_proc();
    let log = proc.spawn::<Log>("log", ()).await.unwrap();
    for seq in 0..100 {
        log.push(0, seq).send().unwrap();
    }
    let entries = bounded(log.entries().call()).await.unwrap();
    assert_eq!(entries, (0..100).map(|s| (0, s)).collect::<Vec<_>>());
    let (name, rank) = bounded(log.who().call()).await.unwrap();
    assert_eq!((name.as_str(), rank), ("log", 0));
    bounded(log.stop()).await.expect("the owner stops it");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Concurrent senders on a multi-threaded runtime: each sender's messages
    /// arrive in the order it sent them.
    #[test]
    fn per_sender_order_holds_under_concurrency(senders in 1u32..8, per_sender in 1u32..200) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
        let entries = runtime.block_on(async {
            let log = test_proc().spawn::<Log>("log", ()).await.unwrap();
            let tasks: Vec<_> = (0..senders)
                .map(|s| {
                    let log = log.clone();
                    tokio::spawn(async move {
                        for seq in 0..per_sender {
                            log.push(s, seq).send().unwrap();
                            if seq % 16 == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                    })
                })
                .collect();
            for t in tasks {
                bounded(t).await.unwrap();
            }
            bounded(log.entries().call()).await.unwrap()
        });
        prop_assert_eq!(entries.len() as u32, senders * per_sender);
        for s in 0..senders {
            let seen: Vec<u32> = entries.iter().filter(|e| e.0 == s).map(|e| e.1).collect();
            prop_assert_eq!(seen, (0..per_sender).collect::<Vec<_>>());
        }
    }
}

#[tokio::test]
async fn reply_later_from_another_task() {
    let log = test_proc().spawn::<Log>("log", ()).await.unwrap();
    assert_eq!(bounded(log.later(21).call()).await.unwrap(), 42);
    // A tell to a deferred endpoint needs no reply and is fine.
    log.later(1).send().unwrap();
    assert!(bounded(log.entries().call()).await.unwrap().is_empty());
}

#[tokio::test]
async fn endpoint_streams_values_through_a_port() {
    let log = test_proc().spawn::<Log>("log", ()).await.unwrap();
    let (port, receiver) = open_port::<u32>();
    log.count_to(50, port).send().unwrap();
    let values: Vec<u32> = bounded(receiver.collect()).await;
    assert_eq!(values, (1..=50).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn asks_time_out() {
    let log = test_proc().spawn::<Log>("log", ()).await.unwrap();
    let result = log.hang().timeout(Duration::from_millis(50)).call().await;
    assert!(
        matches!(
            result,
            Err(CallError::Timeout {
                endpoint: "hang",
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn stop_drains_what_was_sent_before_it() {
    let proc = test_proc();
    let log = proc.spawn::<Log>("log", ()).await.unwrap();
    let (stopped_tx, stopped_rx) = oneshot::channel();
    let witness = proc
        .spawn::<StopWitness>("witness", stopped_tx)
        .await
        .unwrap();
    for seq in 0..1000 {
        log.push(1, seq).send().unwrap();
    }
    let pending = log.entries();
    let asked = pending.call();
    bounded(log.stop()).await.expect("the owner stops it");
    assert!(log.is_stopped());
    // The ask sent before stop was answered with every message.
    assert_eq!(bounded(asked).await.unwrap().len(), 1000);
    // After stop: tells fail at once, asks are undeliverable.
    assert!(matches!(
        log.push(1, 0).send(),
        Err(SendError::Undeliverable { .. })
    ));
    let late = bounded(log.entries().call()).await;
    assert!(
        matches!(
            late,
            Err(CallError::Undeliverable {
                endpoint: "entries",
                ..
            })
        ),
        "{late:?}"
    );
    bounded(witness.stop()).await.expect("the owner stops it");
    assert_eq!(bounded(stopped_rx).await.unwrap(), StopReason::Requested);
}

/// Records its own stop reason, to check `on_stop` runs once with the right one.
struct StopWitness {
    report: Option<oneshot::Sender<StopReason>>,
}

#[actor]
impl StopWitness {
    #[init]
    async fn new(report: oneshot::Sender<StopReason>) -> Self {
        StopWitness {
            report: Some(report),
        }
    }

    #[on_stop]
    async fn stopping(&mut self, _ctx: &Context<Self>, reason: &StopReason) {
        if let Some(report) = self.report.take() {
            let _ = report.send(reason.clone());
        }
    }
}

/// Tells a target and reports, on a port, what comes back undeliverable.
struct Teller {
    bounced: Port<String>,
}

#[actor]
impl Teller {
    #[init]
    async fn new(bounced: Port<String>) -> Self {
        Teller { bounced }
    }

    /// Makes `target` fail with a message from us still queued behind the failure.
    #[endpoint]
    async fn crash_then_tell(&mut self, target: ActorRef<Log>) -> bool {
        target.crash().send().is_ok() && target.push(9, 9).send().is_ok()
    }

    #[on_undeliverable]
    async fn bounce(
        &mut self,
        _ctx: &Context<Self>,
        message: &monarch::Undeliverable,
    ) -> Result<(), ActorError> {
        self.bounced
            .send(message.endpoint.to_string())
            .map_err(ActorError::from)
    }
}

#[tokio::test]
async fn undeliverable_tells_return_to_the_sending_actor() {
    let (proc, mut faults) = recording_proc();
    let target = proc.spawn::<Log>("target", ()).await.unwrap();
    let (port, mut bounced) = open_port::<String>();
    let teller = proc.spawn::<Teller>("teller", port).await.unwrap();
    assert!(bounded(teller.crash_then_tell(target.clone()).call())
        .await
        .unwrap());
    assert_eq!(bounded(bounced.recv()).await.as_deref(), Some("push"));
    let fault = bounded(faults.recv()).await.unwrap();
    assert_eq!(fault.actor, *target.actor_id());
    assert_eq!(fault.endpoint.as_deref(), Some("crash"));
}

#[tokio::test]
async fn refs_and_ports_survive_serialisation_in_process() {
    let proc = test_proc();
    let log = proc.spawn::<Log>("log", ()).await.unwrap();
    let json = serde_json::to_string(&log).unwrap();
    let again: ActorRef<Log> = serde_json::from_str(&json).unwrap();
    assert_eq!(again, log);
    again.push(3, 1).send().unwrap();
    assert_eq!(bounded(log.entries().call()).await.unwrap(), [(3, 1)]);

    let (port, mut receiver) = open_port::<u32>();
    let port_json = serde_json::to_string(&port).unwrap();
    let port_again: Port<u32> = serde_json::from_str(&port_json).unwrap();
    port_again.send(7).unwrap();
    assert_eq!(bounded(receiver.recv()).await, Some(7));

    bounded(log.stop()).await.expect("the owner stops it");
    let stale: ActorRef<Log> = serde_json::from_str(&json).unwrap();
    assert!(matches!(
        stale.push(0, 0).send(),
        Err(SendError::Undeliverable { .. })
    ));
}

/// Runs work beside itself with `Context::spawn_task`, and says where it stands.
struct Planner {
    handled: u32,
    gate: Gate,
}

type Gate = std::sync::Arc<tokio::sync::Notify>;

#[actor]
impl Planner {
    #[init]
    async fn new(gate: Gate) -> Self {
        Planner { handled: 0, gate }
    }

    /// Answers through `reply` once the gate is released, from a task of its
    /// own: the actor handles other messages meanwhile.
    #[endpoint]
    async fn plan(&mut self, ctx: &Context<Self>, reply: ReplyPort<String>) {
        let gate = std::sync::Arc::clone(&self.gate);
        ctx.spawn_task(async move {
            gate.notified().await;
            reply.send("planned".to_string());
        });
    }

    /// Starts a task that never ends; `witness` closes when it is dropped.
    #[endpoint]
    async fn linger(&mut self, ctx: &Context<Self>, witness: Port<()>) {
        ctx.spawn_task(async move {
            let _witness = witness;
            std::future::pending::<()>().await;
        });
    }

    #[endpoint]
    async fn handled(&mut self) -> u32 {
        self.handled += 1;
        self.handled
    }

    /// Its rank, point, shape, owner and (through a mesh) where it was addressed.
    #[endpoint]
    async fn placement(
        &self,
        ctx: &Context<Self>,
    ) -> (usize, String, String, OwnerId, Option<(usize, String)>) {
        let cast = ctx
            .cast_point()
            .map(|p| (p.rank(), format!("{} in {}", p.point(), p.shape())));
        (
            ctx.rank(),
            ctx.point().to_string(),
            ctx.shape().to_string(),
            ctx.owner().clone(),
            cast,
        )
    }

    /// Spawns a child of its own and asks where the child stands.
    #[endpoint]
    async fn child_placement(&self, ctx: &Context<Self>) -> Result<OwnerId, ActorError> {
        let child = ctx.spawn::<Planner>("child", Gate::default()).await?;
        let (_, _, _, owner, _) = child.placement().call().await?;
        Ok(owner)
    }
}

#[tokio::test]
async fn tasks_answer_later_and_are_cancelled_with_their_actor() {
    let proc = test_proc();
    let gate = Gate::default();
    let planner = proc
        .spawn::<Planner>("planner", std::sync::Arc::clone(&gate))
        .await
        .unwrap();
    let planned = tokio::spawn({
        let planner = planner.clone();
        async move { planner.plan().call().await }
    });
    // The actor is free while its task waits.
    assert_eq!(bounded(planner.handled().call()).await.unwrap(), 1);
    assert_eq!(bounded(planner.handled().call()).await.unwrap(), 2);
    gate.notify_one();
    assert_eq!(bounded(planned).await.unwrap().unwrap(), "planned");

    let (witness, mut watching) = open_port::<()>();
    bounded(planner.linger(witness).call()).await.unwrap();
    bounded(planner.stop()).await.expect("the owner stops it");
    assert_eq!(
        bounded(watching.recv()).await,
        None,
        "the lingering task was cancelled before the stop returned"
    );
}

#[tokio::test]
async fn context_tells_place_owner_and_cast_point() {
    let proc = test_proc();
    let planner = proc
        .spawn::<Planner>("planner", Gate::default())
        .await
        .unwrap();
    let (rank, point, shape, owner, cast) = bounded(planner.placement().call()).await.unwrap();
    assert_eq!((rank, point.as_str(), shape.as_str()), (0, "{}", "{}"));
    assert_eq!(owner, OwnerId::Proc(proc.proc_id().clone()));
    assert_eq!(cast, None, "a direct message came through no mesh");
    assert_eq!(
        bounded(planner.child_placement().call()).await.unwrap(),
        OwnerId::Actor(planner.actor_id().clone())
    );

    // Through a mesh, each member learns its rank and point in the slice called.
    let mut members = Vec::new();
    for i in 0..4 {
        let name = format!("m{i}");
        members.push(proc.spawn::<Planner>(&name, Gate::default()).await.unwrap());
    }
    let mesh = ActorMesh::new(shape! { hosts = 2, gpus = 2 }, members).unwrap();
    let column = mesh.slice("gpus", 1).unwrap();
    let seen = bounded(column.placement().call()).await.unwrap();
    let casts: Vec<_> = seen.values().iter().map(|p| p.4.clone()).collect();
    assert_eq!(
        casts,
        [
            Some((0, "{hosts=0} in {hosts=2}".to_string())),
            Some((1, "{hosts=1} in {hosts=2}".to_string()))
        ]
    );
    let total = bounded(mesh.handled().reduce(0, |sum, n| sum + n))
        .await
        .unwrap();
    assert_eq!(total, 4, "reduce folds every member's reply");
}

#[tokio::test]
async fn only_the_owner_stops_an_actor() {
    let proc = test_proc();
    let log = proc.spawn::<Log>("log", ()).await.unwrap();
    let json = serde_json::to_string(&log).unwrap();
    let received: ActorRef<Log> = serde_json::from_str(&json).unwrap();
    assert!(matches!(
        bounded(received.stop()).await,
        Err(monarch::StopError::NotOwner { .. })
    ));
    assert!(
        !log.is_stopped(),
        "a reference that came in a message stops nothing"
    );
    bounded(log.clone().stop())
        .await
        .expect("a clone of the owner's may");
    assert!(log.is_stopped());
}
