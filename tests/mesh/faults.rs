//! Workers that die, hang or panic, owners that hear of it, and intruders.

use std::time::Duration;

use libtest_mimic::Failed;
use monarch::prelude::*;
use monarch::{Failure, Host};

use crate::actors::{Counter, Overseer};
use crate::support::{bounded, check, recording_owner, signal, wait_gone, wait_stopped};

pub(crate) async fn killed_worker_fails_calls_and_reports() -> Result<(), Failed> {
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

pub(crate) async fn stopped_worker_is_noticed_by_heartbeat() -> Result<(), Failed> {
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

pub(crate) async fn an_actor_owns_a_mesh_and_hears_of_its_failures() -> Result<(), Failed> {
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
    overseer.stop().await.expect("the owner stops it");
    bounded(procs.stop()).await;
    Ok(())
}

pub(crate) async fn supervision_event_from_a_remote_panic() -> Result<(), Failed> {
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

pub(crate) async fn intruders_and_garbage_are_refused() -> Result<(), Failed> {
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
