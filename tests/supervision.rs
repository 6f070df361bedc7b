//! Every supervision path: returned errors, panics, failing init, unhandled
//! events climbing three levels, and a supervision handler that itself fails.

use monarch::prelude::*;
use monarch::{CallError, Failure, SpawnError};

mod common;

use common::{bounded, recording_proc};

#[derive(Debug, thiserror::Error)]
#[error("bad input {0}")]
struct BadInput(i64);

/// A worker whose endpoints fail on demand.
#[derive(Default)]
struct Worker {
    calls: u32,
}

#[actor]
impl Worker {
    #[endpoint]
    async fn check(&mut self, x: i64) -> Result<i64, BadInput> {
        self.calls += 1;
        if x < 0 {
            Err(BadInput(x))
        } else {
            Ok(x)
        }
    }

    #[endpoint]
    async fn boom(&mut self) -> u32 {
        panic!("boom after {} calls", self.calls)
    }

    #[endpoint]
    async fn calls(&self) -> u32 {
        self.calls
    }
}

#[tokio::test]
async fn returned_error_goes_to_the_caller_and_the_actor_lives() {
    let (proc, mut faults) = recording_proc();
    let worker = proc.spawn::<Worker>("worker", ()).await.unwrap();
    let err = bounded(worker.check(-3).call()).await.unwrap_err();
    match &err {
        CallError::Endpoint {
            endpoint, error, ..
        } => {
            assert_eq!(*endpoint, "check");
            assert_eq!(error.message(), "bad input -3");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("worker"), "{err}");
    assert_eq!(bounded(worker.check(4).call()).await.unwrap(), 4);
    assert_eq!(bounded(worker.calls().call()).await.unwrap(), 2);
    assert!(faults.try_recv().is_err(), "no supervision event");
}

#[tokio::test]
async fn error_with_nobody_awaiting_stops_the_actor_and_tells_the_owner() {
    let (proc, mut faults) = recording_proc();
    let worker = proc.spawn::<Worker>("worker", ()).await.unwrap();
    worker.check(-1).send().unwrap();
    let event = bounded(faults.recv()).await.unwrap();
    assert_eq!(event.actor, *worker.actor_id());
    assert_eq!(event.endpoint.as_deref(), Some("check"));
    assert_eq!(event.failure, Failure::Error("bad input -1".into()));
    bounded(worker.wait_stopped()).await;
    assert!(worker.is_stopped());
}

#[tokio::test]
async fn panic_fails_the_call_and_stops_the_actor() {
    let (proc, mut faults) = recording_proc();
    let worker = proc.spawn::<Worker>("worker", ()).await.unwrap();
    worker.check(1).send().unwrap();
    let err = bounded(worker.boom().call()).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Panicked { endpoint: "boom", message, .. } if message == "boom after 1 calls"),
        "{err:?}"
    );
    let event = bounded(faults.recv()).await.unwrap();
    assert_eq!(
        event.failure,
        Failure::Panicked("boom after 1 calls".into())
    );
    assert!(matches!(
        bounded(worker.calls().call()).await,
        Err(CallError::Undeliverable { .. })
    ));
}

/// An actor whose init fails in the way its parameters say.
struct Fragile;

#[derive(Debug, thiserror::Error)]
#[error("no GPU left")]
struct NoGpu;

#[actor]
impl Fragile {
    #[init]
    async fn new(mode: String, ctx: &Context<Self>) -> Result<Self, ActorError> {
        // A child spawned during a failing init must be stopped with it.
        let _child = ctx.spawn::<Worker>("helper", ()).await?;
        match mode.as_str() {
            "panic" => panic!("init exploded"),
            "error" => Err(NoGpu.into()),
            _ => Ok(Fragile),
        }
    }
}

#[tokio::test]
async fn init_errors_and_panics_fail_the_spawn() {
    let (proc, mut faults) = recording_proc();
    match bounded(proc.spawn::<Fragile>("fragile", "error".into())).await {
        Err(SpawnError::Init { error, .. }) => assert_eq!(error.to_string(), "no GPU left"),
        other => panic!("unexpected {other:?}"),
    }
    match bounded(proc.spawn::<Fragile>("fragile", "panic".into())).await {
        Err(SpawnError::InitPanicked { message, .. }) => assert_eq!(message, "init exploded"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(bounded(proc.spawn::<Fragile>("fragile", "ok".into()))
        .await
        .is_ok());
    assert!(
        faults.try_recv().is_err(),
        "a failed init is reported to the spawner only"
    );
}

/// Built with a `Default` that panics: the spawn does not wait for it.
struct Brittle;

impl Default for Brittle {
    fn default() -> Self {
        panic!("no default for you");
    }
}

#[actor]
impl Brittle {
    #[endpoint]
    async fn ping(&self) {}
}

#[tokio::test]
async fn a_panicking_default_reaches_the_owner() {
    let (proc, mut faults) = recording_proc();
    let brittle = bounded(proc.spawn::<Brittle>("brittle", ()))
        .await
        .expect("spawning a Default-built actor does not wait for it");
    let event = bounded(faults.recv()).await.expect("an event");
    assert_eq!(event.actor, *brittle.actor_id());
    assert_eq!(event.endpoint.as_deref(), Some("init"));
    assert_eq!(
        event.failure,
        Failure::Panicked("no default for you".into())
    );
    assert!(matches!(
        bounded(brittle.ping().call()).await,
        Err(CallError::Undeliverable { .. } | CallError::NoReply { .. })
    ));
}

/// One level of a supervision tree: spawns the next level down in init, and
/// either handles its child's failures (restarting it) or lets them climb.
struct Level {
    child: Option<ActorRef<Level>>,
    worker: Option<ActorRef<Worker>>,
    policy: Policy,
    seen: Port<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    Escalate,
    Restart,
    HandlerFails,
}

struct LevelParams {
    depth: u32,
    policy: Policy,
    seen: Port<String>,
}

#[actor]
impl Level {
    #[init]
    async fn new(p: LevelParams, ctx: &Context<Self>) -> Result<Self, ActorError> {
        let (child, worker) = if p.depth > 1 {
            let params = LevelParams {
                depth: p.depth - 1,
                policy: Policy::Escalate,
                seen: p.seen.clone(),
            };
            (
                Some(
                    ctx.spawn::<Level>(&format!("level{}", p.depth - 1), params)
                        .await?,
                ),
                None,
            )
        } else {
            (None, Some(ctx.spawn::<Worker>("worker", ()).await?))
        };
        Ok(Level {
            child,
            worker,
            policy: p.policy,
            seen: p.seen,
        })
    }

    /// The worker at the bottom of the tree.
    #[endpoint]
    async fn bottom(&self) -> Result<ActorRef<Worker>, CallError> {
        match (&self.worker, &self.child) {
            (Some(w), _) => Ok(w.clone()),
            (None, Some(c)) => c.bottom().call().await,
            (None, None) => unreachable!("a level has a child or a worker"),
        }
    }

    #[on_supervision]
    async fn supervise(
        &mut self,
        ctx: &Context<Self>,
        event: &SupervisionEvent,
    ) -> Result<bool, ActorError> {
        let _ = self
            .seen
            .send(format!("{} saw {}", ctx.name(), event.actor.name()));
        match self.policy {
            Policy::Escalate => Ok(false),
            Policy::HandlerFails => Err(ActorError::msg("cannot recover")),
            Policy::Restart => {
                self.worker = Some(ctx.spawn::<Worker>("worker", ()).await?);
                Ok(true)
            }
        }
    }
}

#[tokio::test]
async fn unhandled_events_climb_three_levels_to_the_root() {
    let (proc, mut faults) = recording_proc();
    let (seen, mut seen_rx) = open_port();
    let params = LevelParams {
        depth: 3,
        policy: Policy::Escalate,
        seen,
    };
    let top = proc.spawn::<Level>("level3", params).await.unwrap();
    let worker = bounded(top.bottom().call()).await.unwrap();
    worker.boom().send().unwrap();

    let event = bounded(faults.recv()).await.unwrap();
    let chain: Vec<&str> = event.chain().map(|e| e.actor.name()).collect();
    assert_eq!(chain, ["level3", "level2", "level1", "worker"]);
    assert_eq!(event.failure, Failure::UnhandledSupervision);
    let root = event.root_cause();
    assert_eq!(root.endpoint.as_deref(), Some("boom"));
    assert!(matches!(&root.failure, Failure::Panicked(m) if m.starts_with("boom")));
    let report = event.to_string();
    assert!(
        report.contains("caused by") && report.contains("`boom`"),
        "{report}"
    );
    for expected in [
        "level1 saw worker",
        "level2 saw level1",
        "level3 saw level2",
    ] {
        assert_eq!(bounded(seen_rx.recv()).await.unwrap(), expected);
    }
    bounded(top.wait_stopped()).await;
}

#[tokio::test]
async fn an_owner_that_handles_the_event_restarts_the_child() {
    let (proc, mut faults) = recording_proc();
    let (seen, mut seen_rx) = open_port();
    let params = LevelParams {
        depth: 1,
        policy: Policy::Restart,
        seen,
    };
    let owner = proc.spawn::<Level>("owner", params).await.unwrap();
    let first = bounded(owner.bottom().call()).await.unwrap();
    first.check(-5).send().unwrap();
    assert_eq!(bounded(seen_rx.recv()).await.unwrap(), "owner saw worker");
    let second = bounded(owner.bottom().call()).await.unwrap();
    assert_ne!(first.actor_id(), second.actor_id());
    assert_eq!(bounded(second.check(7).call()).await.unwrap(), 7);
    assert!(faults.try_recv().is_err());
    bounded(owner.stop()).await.expect("the owner stops it");
    assert!(second.is_stopped(), "children stop before their owner");
}

#[tokio::test]
async fn a_failing_supervision_handler_fails_its_actor() {
    let (proc, mut faults) = recording_proc();
    let (seen, _seen_rx) = open_port();
    let params = LevelParams {
        depth: 1,
        policy: Policy::HandlerFails,
        seen,
    };
    let owner = proc.spawn::<Level>("owner", params).await.unwrap();
    let worker = bounded(owner.bottom().call()).await.unwrap();
    worker.boom().send().unwrap();
    let event = bounded(faults.recv()).await.unwrap();
    assert_eq!(event.actor, *owner.actor_id());
    assert_eq!(
        event.failure,
        Failure::SupervisionHandlerFailed("cannot recover".into())
    );
    assert_eq!(event.caused_by.as_ref().unwrap().actor, *worker.actor_id());
}

/// An error with a cause, as a user's error type wrapping a library's.
#[derive(Debug, thiserror::Error)]
#[error("loading the checkpoint failed")]
struct LoadFailed(#[source] std::io::Error);

/// Owns a worker and logs, in order, the messages it handles and the
/// supervision events it hears; `hold` keeps it busy until released.
struct Foreman {
    worker: ActorRef<Worker>,
    gate: std::sync::Arc<tokio::sync::Notify>,
    log: Vec<String>,
}

#[actor]
impl Foreman {
    #[init]
    async fn new(
        gate: std::sync::Arc<tokio::sync::Notify>,
        ctx: &Context<Self>,
    ) -> Result<Self, ActorError> {
        let worker = ctx.spawn::<Worker>("worker", ()).await?;
        Ok(Foreman {
            worker,
            gate,
            log: Vec::new(),
        })
    }

    #[endpoint]
    async fn worker(&self) -> ActorRef<Worker> {
        self.worker.clone()
    }

    /// Waits for the gate: messages queue up meanwhile.
    #[endpoint]
    async fn hold(&self) {
        self.gate.notified().await;
    }

    #[endpoint]
    async fn note(&mut self, n: u32) {
        self.log.push(format!("note {n}"));
    }

    #[endpoint]
    async fn log(&self) -> Vec<String> {
        self.log.clone()
    }

    #[endpoint]
    async fn load(&self) -> Result<(), LoadFailed> {
        Err(LoadFailed(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "step-100.ckpt is missing",
        )))
    }

    #[on_supervision]
    async fn supervise(&mut self, _ctx: &Context<Self>, event: &SupervisionEvent) -> bool {
        self.log.push(format!("supervision {}", event.actor.name()));
        true
    }
}

#[tokio::test]
async fn supervision_overtakes_queued_messages() {
    let (proc, mut faults) = recording_proc();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let foreman = proc
        .spawn::<Foreman>("foreman", std::sync::Arc::clone(&gate))
        .await
        .unwrap();
    let worker = bounded(foreman.worker().call()).await.unwrap();
    foreman.hold().send().unwrap();
    for n in 0..200 {
        foreman.note(n).send().unwrap();
    }
    worker.boom().send().unwrap();
    // Once the worker's stop can be awaited, its owner has been told.
    bounded(worker.wait_stopped()).await;
    gate.notify_one();
    let log = bounded(foreman.log().call()).await.unwrap();
    assert_eq!(log.len(), 201, "{log:?}");
    assert_eq!(log[0], "supervision worker", "control before data: {log:?}");
    assert_eq!(log[1], "note 0");
    assert_eq!(log[200], "note 199");
    assert!(faults.try_recv().is_err(), "the foreman handled it");
}

#[tokio::test]
async fn endpoint_errors_keep_their_causes() {
    let (proc, _faults) = recording_proc();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let foreman = proc.spawn::<Foreman>("foreman", gate).await.unwrap();
    let error = bounded(foreman.load().call()).await.unwrap_err();
    let CallError::Endpoint { error: report, .. } = &error else {
        panic!("expected an endpoint error, got {error:?}");
    };
    assert_eq!(
        report.chain().collect::<Vec<_>>(),
        ["loading the checkpoint failed", "step-100.ckpt is missing"]
    );
    let source = std::error::Error::source(&error).expect("the call error has a source");
    assert_eq!(source.to_string(), "step-100.ckpt is missing");
}

#[tokio::test]
async fn later_calls_say_why_the_actor_stopped() {
    let (proc, mut faults) = recording_proc();
    let worker = proc.spawn::<Worker>("worker", ()).await.unwrap();
    worker.boom().send().unwrap();
    bounded(faults.recv()).await.unwrap();
    let error = bounded(worker.calls().call()).await.unwrap_err();
    let CallError::Undeliverable { reason, .. } = &error else {
        panic!("expected undeliverable, got {error:?}");
    };
    assert!(
        reason.contains("`boom`") && reason.contains("boom after 0 calls"),
        "names the endpoint and the panic: {reason}"
    );
    let send = worker.check(1).send().unwrap_err();
    assert!(send.to_string().contains("boom after 0 calls"), "{send}");

    // An owner whose supervision handler fails says so, and what it was handling.
    let (seen, _seen_rx) = open_port();
    let params = LevelParams {
        depth: 1,
        policy: Policy::HandlerFails,
        seen,
    };
    let owner = proc.spawn::<Level>("owner", params).await.unwrap();
    let bottom = bounded(owner.bottom().call()).await.unwrap();
    bottom.boom().send().unwrap();
    bounded(faults.recv()).await.unwrap();
    let error = bounded(owner.bottom().call()).await.unwrap_err();
    assert!(
        error.to_string().contains("cannot recover") && error.to_string().contains("worker"),
        "{error}"
    );
}
