//! Services across real processes: round-robin and least-loaded routing,
//! a failing replica marked, retried around and reinstated by the probe, a
//! SIGKILLed replica marked by supervision and replaced, and the registry
//! found from another process. This binary re-executes itself as the
//! workers, so it has its own `main`.
//!
//! `cargo test -p monarch-rs-rl --test service` (seconds).

use std::time::Duration;

use monarch_core::prelude::*;
use monarch_core::testing::{Failed, Scenarios};
use monarch_rl::service::{
    find, probe, publish, Probe, RegistryError, Service, ServiceConfig, ServiceError,
};

/// Every scenario is bounded by this.
const LIMIT: Duration = Duration::from_secs(120);

/// Every wait inside a scenario is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

fn main() {
    monarch_core::bootstrap();
    Scenarios::new()
        .limit(LIMIT)
        // Workers are killed on purpose.
        .log_worker_faults()
        // The scenarios start processes of their own: one at a time.
        .one_at_a_time()
        .test("round_robin_marks_and_recovers_a_replica", || {
            Box::pin(round_robin())
        })
        .test("least_loaded_avoids_a_busy_replica", || {
            Box::pin(least_loaded())
        })
        .test(
            "a_killed_replica_is_marked_by_supervision_and_replaced",
            || Box::pin(killed_replica()),
        )
        .test("a_replica_spans_several_processes", || {
            Box::pin(several_procs())
        })
        .test("the_registry_finds_a_service_from_another_process", || {
            Box::pin(registry_elsewhere())
        })
        .run();
}

/// A replica: answers with its id unless told to fail.
struct Echo {
    id: usize,
    broken: bool,
}

/// What a broken [`Echo`] answers.
#[derive(Debug, thiserror::Error)]
#[error("echo {0} is broken")]
struct Broken(usize);

#[monarch_derive::actor]
impl Echo {
    #[init]
    async fn new(id: usize) -> Self {
        Echo { id, broken: false }
    }

    #[endpoint]
    async fn whoami(&self) -> Result<usize, Broken> {
        if self.broken {
            Err(Broken(self.id))
        } else {
            Ok(self.id)
        }
    }

    #[endpoint]
    async fn set_broken(&mut self, broken: bool) {
        self.broken = broken;
    }

    #[endpoint]
    async fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Its replica's id, its rank in the replica's mesh and its process.
    #[endpoint]
    async fn place(&self, ctx: &Context<Self>) -> (usize, usize, u32) {
        (self.id, ctx.rank(), std::process::id())
    }
}

/// In another process: finds the echo service in the registry and asks it.
#[derive(Default)]
struct Finder;

/// What a [`Finder`] could not do.
#[derive(Debug, thiserror::Error)]
enum FinderError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

#[monarch_derive::actor]
impl Finder {
    /// The ids of `calls` round-robin calls to the service `name`.
    #[endpoint]
    async fn ask(&self, name: String, calls: usize) -> Result<Vec<usize>, FinderError> {
        let service = find::<Echo>(&name).await?.connect(config(0), echo_probe());
        let mut ids = Vec::with_capacity(calls);
        for _ in 0..calls {
            ids.push(service.route(whoami).await?.value);
        }
        Ok(ids)
    }

    /// Why looking `name` up failed, if it did.
    #[endpoint]
    async fn missing(&self, name: String) -> Option<String> {
        find::<Echo>(&name).await.err().map(|e| e.to_string())
    }
}

fn config(replicas: usize) -> ServiceConfig {
    ServiceConfig {
        replicas,
        probe_every: Duration::from_millis(50),
        probe_timeout: Duration::from_secs(5),
        call_timeout: WAIT,
        ..ServiceConfig::default()
    }
}

fn echo_probe() -> Probe<Echo> {
    probe(|mesh: ActorMesh<Echo>| async move { mesh.whoami().timeout(WAIT).call_one().await })
}

async fn whoami(mesh: ActorMesh<Echo>) -> Result<usize, MeshError> {
    mesh.whoami().timeout(WAIT).call_one().await
}

async fn echo(name: &str, replicas: usize) -> Result<Service<Echo>, Failed> {
    Service::<Echo>::spawn(name, config(replicas), |id| id, echo_probe())
        .await
        .map_err(|e| Failed::from(e.to_string()))
}

fn check(condition: bool, what: String) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn failed(e: impl std::fmt::Display) -> Failed {
    Failed::from(e.to_string())
}

async fn served(service: &Service<Echo>, calls: usize) -> Result<Vec<usize>, Failed> {
    let mut slots = Vec::with_capacity(calls);
    for _ in 0..calls {
        let routed = service.route(whoami).await.map_err(failed)?;
        check(
            routed.value == service.replica_id(routed.replica).map_err(failed)?,
            format!("replica {} answered as {}", routed.replica, routed.value),
        )?;
        slots.push(routed.replica);
    }
    Ok(slots)
}

async fn round_robin() -> Result<(), Failed> {
    let service = echo("echo-rr", 3).await?;
    let slots = served(&service, 6).await?;
    check(slots == [0, 1, 2, 0, 1, 2], format!("served by {slots:?}"))?;

    // A replica that fails is marked and the request retried on another.
    let broken = service.replica(1).map_err(failed)?;
    broken
        .set_broken(true)
        .timeout(WAIT)
        .call_one()
        .await
        .map_err(failed)?;
    let first = service.route(whoami).await.map_err(failed)?;
    check(
        first.replica == 0,
        format!("first went to {}", first.replica),
    )?;
    let retried = service.route(whoami).await.map_err(failed)?;
    check(
        retried.replica == 2 && retried.failures.len() == 1 && retried.failures[0].replica == 1,
        format!("retried {retried:?}"),
    )?;
    check(
        retried.failures[0].error.contains("echo 1 is broken"),
        format!("failure named {:?}", retried.failures[0].error),
    )?;
    let status = service.status();
    check(
        status.healthy == 2 && status.unhealthy.len() == 1 && status.unhealthy[0].replica == 1,
        format!("status {status:?}"),
    )?;
    let slots = served(&service, 4).await?;
    check(
        slots.iter().all(|&s| s != 1),
        format!("served by {slots:?} while replica 1 was unhealthy"),
    )?;

    // Repaired, it answers the probe and is reinstated.
    broken
        .set_broken(false)
        .timeout(WAIT)
        .call_one()
        .await
        .map_err(failed)?;
    let (status, back) = service.wait_until(WAIT, |s| s.healthy == 3).await;
    check(back, format!("not reinstated: {status:?}"))?;
    let slots = served(&service, 3).await?;
    check(
        slots.contains(&1),
        format!("served by {slots:?} after recovery"),
    )?;
    service.stop().await;
    Ok(())
}

async fn least_loaded() -> Result<(), Failed> {
    let service = echo("echo-ll", 2).await?;
    // A request held in flight on the first replica until the gate opens,
    // polled once so that it has picked its replica...
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let held = |mesh| {
        let gate = gate.clone();
        async move {
            let _open = gate.acquire().await;
            whoami(mesh).await
        }
    };
    let mut busy = Box::pin(service.route_least_loaded(held));
    check(
        futures::poll!(busy.as_mut()).is_pending(),
        "the held request answered before its gate opened".into(),
    )?;
    // ...sends every other request to the second.
    for _ in 0..3 {
        let routed = service.route_least_loaded(whoami).await.map_err(failed)?;
        check(
            routed.replica == 1,
            format!("went to {} with 0 busy", routed.replica),
        )?;
    }
    gate.add_permits(1);
    let routed = busy.await.map_err(failed)?;
    check(
        routed.replica == 0,
        format!("busy went to {}", routed.replica),
    )?;
    // Round-robin would not have: it alternates.
    let a = service.route(whoami).await.map_err(failed)?.replica;
    let b = service.route(whoami).await.map_err(failed)?.replica;
    check(a != b, format!("round-robin sent two in a row to {a}"))?;
    service.stop().await;
    Ok(())
}

async fn killed_replica() -> Result<(), Failed> {
    let service = echo("echo-kill", 2).await?;
    let pid = service
        .replica(0)
        .map_err(failed)?
        .pid()
        .timeout(WAIT)
        .call_one()
        .await
        .map_err(failed)?;
    let raw = libc::pid_t::try_from(pid).map_err(failed)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let killed = unsafe { libc::kill(raw, libc::SIGKILL) };
    check(killed == 0, format!("kill({pid}) returned {killed}"))?;
    // Supervision marks it without any request having been sent to it.
    let (status, marked) = service
        .wait_until(WAIT, |s| s.unhealthy.iter().any(|u| u.replica == 0))
        .await;
    check(marked, format!("not marked: {status:?}"))?;
    check(
        status.unhealthy[0].error.contains("supervision"),
        format!("marked for {:?}", status.unhealthy[0].error),
    )?;
    let slots = served(&service, 3).await?;
    check(slots == [1, 1, 1], format!("served by {slots:?}"))?;
    let id = service.replace(0).await.map_err(failed)?;
    check(id == 2, format!("replacement id {id}"))?;
    check(
        service.status().healthy == 2,
        "replaced but not healthy".into(),
    )?;
    let slots = served(&service, 2).await?;
    check(
        slots.contains(&0),
        format!("served by {slots:?} after replace"),
    )?;
    service.stop().await;
    Ok(())
}

async fn registry_elsewhere() -> Result<(), Failed> {
    let service = echo("echo-reg", 2).await?;
    publish(&service).await.map_err(failed)?;
    let procs = this_host()
        .spawn_procs(shape! { finders = 1 })
        .await
        .map_err(failed)?;
    let finders = procs.spawn::<Finder>("finder", ()).await.map_err(failed)?;
    let ids = finders
        .ask("echo-reg".into(), 4)
        .timeout(WAIT)
        .call_one()
        .await
        .map_err(failed)?;
    check(ids == [0, 1, 0, 1], format!("the finder got {ids:?}"))?;
    let missing = finders
        .missing("no-such-service".into())
        .timeout(WAIT)
        .call_one()
        .await
        .map_err(failed)?
        .unwrap_or_default();
    check(
        missing.contains("no service `no-such-service`") && missing.contains("echo-reg"),
        format!("a missing service reads {missing:?}"),
    )?;
    match find::<Finder>("echo-reg").await {
        Err(RegistryError::WrongType { found, .. }) => {
            check(found.contains("Echo"), format!("found {found}"))?
        }
        other => return Err(format!("a wrong type gave {other:?}").into()),
    }
    procs.stop().await;
    service.stop().await;
    Ok(())
}

async fn several_procs() -> Result<(), Failed> {
    let config = ServiceConfig {
        procs_per_replica: 2,
        ..config(2)
    };
    let service = Service::<Echo>::spawn("echo-wide", config, |id| id, echo_probe())
        .await
        .map_err(failed)?;
    let mut pids = Vec::new();
    for expected in [0, 1] {
        let routed = service
            .route(|mesh| async move { mesh.place().timeout(WAIT).call().await })
            .await
            .map_err(failed)?;
        let places = routed.value.into_values();
        check(
            routed.replica == expected
                && places.len() == 2
                && places
                    .iter()
                    .enumerate()
                    .all(|(rank, &(id, r, _))| id == expected && r == rank),
            format!("replica {expected} answered {places:?}"),
        )?;
        pids.extend(places.iter().map(|&(_, _, pid)| pid));
    }
    pids.sort_unstable();
    pids.dedup();
    check(pids.len() == 4, format!("four processes, got {pids:?}"))?;
    service.stop().await;
    Ok(())
}
