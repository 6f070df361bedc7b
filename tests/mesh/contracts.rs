//! The delivery, supervision, stop and error contracts across processes, and
//! what an actor learns of its place: each scenario checks what a Monarch user
//! relies on when a peer, a hook or a message misbehaves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libtest_mimic::Failed;
use monarch::prelude::*;
use monarch::{Config, Host, ProcMeshError, SendError};

use crate::actors::{Bouncer, Caller, Counter, NoGpu, Overseer, Stuck, Unwritable};
use crate::support::{bounded, check, recording_owner, wait_gone};

/// A port in spawn parameters reaches every member open; a tell from a
/// worker's actor to an actor that never existed on another worker comes back
/// to the sender's undeliverable hook, naming sender, destination and reason.
pub(crate) async fn ports_in_spawn_params_and_tells_that_bounce() -> Result<(), Failed> {
    let (owner, _events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { procs = 2 })
        .await?;
    let (said, mut hearing) = open_port::<String>();
    let bouncers = procs.spawn::<Bouncer>("bouncer", said).await?;
    let mut ready = vec![
        bounded(hearing.recv())
            .await
            .ok_or("no word from a bouncer")?,
        bounded(hearing.recv())
            .await
            .ok_or("no word from a bouncer")?,
    ];
    ready.sort();
    check(
        ready == ["ready 0", "ready 1"],
        &format!("every member sent on the port it was spawned with: {ready:?}"),
    )?;

    let counters = procs.spawn::<Counter>("counter", ()).await?;
    let mut wire = serde_json::to_value(counters.member(1)?)?;
    wire["id"]["name"] = "nobody".into();
    let nobody: ActorRef<Counter> = serde_json::from_value(wire)?;
    let sender = bouncers.member(0)?;
    check(
        bounded(sender.tell(nobody.clone()).call()).await?,
        "the tell was accepted",
    )?;
    let bounced = bounded(hearing.recv()).await.ok_or("nothing came back")?;
    let expected = format!(
        "bounced from {} to {} (incr): ",
        sender.actor_id(),
        nobody.actor_id()
    );
    check(
        bounced.starts_with(&expected) && bounced.len() > expected.len(),
        &format!("the hook heard sender, destination and reason: {bounced}"),
    )?;
    bounded(procs.stop()).await;
    Ok(())
}

/// A mesh spawned with `spawn_owned` stops with its owner; a holder of the
/// mesh that is not its owner cannot stop it.
pub(crate) async fn owned_meshes_stop_with_their_owner_and_only_owners_stop() -> Result<(), Failed>
{
    let (owner, _events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { procs = 2 })
        .await?;
    let (failures, _reported) = open_port::<String>();
    let overseer = owner
        .spawn::<Overseer>("overseer", (procs.clone(), failures))
        .await?;
    let counters = bounded(overseer.counters().call()).await?;
    let callers = procs.spawn::<Caller>("caller", ()).await?;
    let refused = bounded(callers.member(0)?.try_stop(counters.clone()).call()).await?;
    check(
        refused.contains("may be stopped only by its owner"),
        &format!("a mesh received in a message stops nothing: {refused}"),
    )?;
    check(
        bounded(counters.get().call()).await.is_ok(),
        "the mesh still runs",
    )?;

    bounded(overseer.stop()).await?;
    match bounded(counters.member(1)?.get().call()).await {
        Err(CallError::Undeliverable { reason, .. }) => check(
            reason.contains("stopped"),
            &format!("the owned mesh stopped with its owner: {reason}"),
        )?,
        other => return Err(format!("expected the member to be gone, got {other:?}").into()),
    }
    bounded(procs.stop()).await;
    Ok(())
}

/// An init that never returns fails its spawn within the spawn timeout, and
/// stopping the procs finishes within the stop timeout by killing them; an
/// init that fails everywhere reports every rank.
pub(crate) async fn spawn_and_stop_are_bounded_whatever_init_does() -> Result<(), Failed> {
    let (owner, _events) = recording_owner();
    let config = Config::builder()
        .spawn_timeout(Duration::from_secs(2))
        .stop_timeout(Duration::from_secs(1))
        .build();
    let procs = Host::owned_by(&owner)
        .with_config(config)
        .spawn_procs(shape! { procs = 2 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    let pids: Vec<u32> = bounded(counters.whoami().call())
        .await?
        .values()
        .iter()
        .map(|(_, pid)| *pid)
        .collect();

    match bounded(procs.spawn::<NoGpu>("no_gpu", ())).await {
        Err(ProcMeshError::Spawn { failures, .. }) => {
            let errors: Vec<(usize, bool)> = failures
                .iter()
                .map(|f| {
                    (
                        f.rank,
                        f.error.contains(&format!("no GPU on rank {}", f.rank)),
                    )
                })
                .collect();
            check(
                errors == [(0, true), (1, true)],
                &format!("every failed rank is listed with its error: {failures:?}"),
            )?;
        }
        other => return Err(format!("expected a spawn error, got {other:?}").into()),
    }

    let started = Instant::now();
    match bounded(procs.spawn::<Stuck>("stuck", ())).await {
        Err(ProcMeshError::Spawn { failures, .. }) => check(
            failures.len() == 2
                && failures
                    .iter()
                    .all(|f| f.error.contains("its init has not returned")),
            &format!("a spawn whose init hangs fails on every rank: {failures:?}"),
        )?,
        other => return Err(format!("expected a spawn error, got {other:?}").into()),
    }
    check(
        started.elapsed() < Duration::from_secs(10),
        "the spawn gave up within its timeout",
    )?;

    let stopping = Instant::now();
    bounded(procs.stop()).await;
    let took = stopping.elapsed();
    check(
        took < Duration::from_secs(8),
        &format!("stop is bounded by the stop timeout: {took:?}"),
    )?;
    for pid in pids {
        check(wait_gone(pid).await, "the hung workers were killed")?;
    }
    Ok(())
}

/// A fault hook that panics is reported, and every other actor on the same
/// procs keeps working at once.
pub(crate) async fn a_panicking_fault_hook_harms_nothing() -> Result<(), Failed> {
    let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    let owner = Proc::new("test").with_fault_hook(Arc::new(move |event: &SupervisionEvent| {
        let _ = tx.send(event.to_string());
        panic!("the fault hook itself fails");
    }));
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { procs = 2 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    counters.slice("procs", 0)?.panic_now().broadcast()?;
    let event = bounded(heard.recv()).await.ok_or("the hook never ran")?;
    check(event.contains("asked to panic"), "the hook heard the panic")?;
    let prompt = Duration::from_secs(5);
    let value = tokio::time::timeout(prompt, counters.member(1)?.get().call()).await??;
    check(value == 0, "the sibling answers at once")?;
    let more = procs.spawn::<Counter>("more", ()).await?;
    tokio::time::timeout(prompt, more.get().call()).await??;
    counters.slice("procs", 1)?.panic_now().broadcast()?;
    let again = bounded(heard.recv())
        .await
        .ok_or("the hook ran only once")?;
    check(again.contains("asked to panic"), "the hook still runs")?;
    bounded(procs.stop()).await;
    Ok(())
}

/// How a worker died reaches pending and later calls and the supervision
/// event; a stopped mesh's calls say it was stopped.
pub(crate) async fn exit_statuses_reach_callers() -> Result<(), Failed> {
    let (owner, mut events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { procs = 3 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;

    let exiting = counters.member(0)?;
    match bounded(exiting.exit_now(1).call()).await {
        Err(CallError::Unreachable { reason, .. }) => check(
            reason.contains("exited with code 1"),
            &format!("the pending call says how the process ended: {reason}"),
        )?,
        other => return Err(format!("expected unreachable, got {other:?}").into()),
    }
    let event = bounded(events.recv()).await.ok_or("no event")?;
    check(
        event.to_string().contains("exited with code 1"),
        &format!("so does the supervision event: {event}"),
    )?;
    match bounded(exiting.get().call()).await {
        Err(CallError::Unreachable { reason, .. }) => check(
            reason.contains("exited with code 1"),
            &format!("and a later call: {reason}"),
        )?,
        other => return Err(format!("expected unreachable, got {other:?}").into()),
    }

    counters.member(1)?.segfault().send()?;
    let event = bounded(events.recv()).await.ok_or("no event")?;
    check(
        event.to_string().contains("killed by signal 11 (SIGSEGV"),
        &format!("a crash is named by its signal: {event}"),
    )?;
    match bounded(counters.member(1)?.get().call()).await {
        Err(CallError::Unreachable { reason, .. }) => check(
            reason.contains("signal 11 (SIGSEGV"),
            &format!("in calls too: {reason}"),
        )?,
        other => return Err(format!("expected unreachable, got {other:?}").into()),
    }

    bounded(procs.stop()).await;
    let after = bounded(counters.member(2)?.get().call()).await;
    check(
        after
            .as_ref()
            .is_err_and(|e| e.to_string().contains("stopped")),
        &format!("a call on a stopped mesh says it was stopped: {after:?}"),
    )?;
    Ok(())
}

/// A message or reply over the peer's frame limit fails with an error that
/// says so, and the link stays up; a large `Bytes` argument that travels in
/// shared memory is not held to the limit.
pub(crate) async fn oversized_messages_and_replies_say_so() -> Result<(), Failed> {
    let (owner, mut events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .with_env("MONARCH_MAX_FRAME_BYTES", &(1 << 20).to_string())
        .spawn_procs(shape! { procs = 1 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    let counter = counters.member(0)?;
    let big = "x".repeat(2 << 20);

    match bounded(counter.record(big.clone(), 0).call()).await {
        Err(error @ CallError::TooLarge { .. }) => check(
            error.to_string().contains("over the frame limit")
                && error.to_string().contains("counter"),
            &format!("the caller learns the message was too large: {error}"),
        )?,
        other => return Err(format!("expected too large, got {other:?}").into()),
    }
    check(
        matches!(
            counter.record(big, 0).send(),
            Err(SendError::TooLarge { .. })
        ),
        "a tell that is too large is refused at once",
    )?;
    match bounded(counter.text_of(2 << 20).call()).await {
        Err(CallError::Codec { reason, .. }) => check(
            reason.contains("the reply is") && reason.contains("over the frame limit"),
            &format!("a reply too large says so: {reason}"),
        )?,
        other => return Err(format!("expected a codec error, got {other:?}").into()),
    }
    let shared = Bytes::from(vec![1u8; 2 << 20]);
    let (len, _) = bounded(counter.size_of(shared).call()).await?;
    check(len == 2 << 20, "shared memory carries what a frame may not")?;
    check(
        bounded(counter.get().call()).await? == 0,
        "the link is still up",
    )?;
    check(events.try_recv().is_err(), "and no process was lost")?;
    bounded(procs.stop()).await;
    Ok(())
}

/// An endpoint error keeps its causes across processes, a serialisation
/// failure keeps the codec's message, and after a fatal failure later calls
/// name it.
pub(crate) async fn errors_keep_their_causes_across_processes() -> Result<(), Failed> {
    let (owner, mut events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { procs = 1 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    let counter = counters.member(0)?;
    match bounded(counter.load().call()).await {
        Err(CallError::Endpoint { error, .. }) => check(
            error
                .chain()
                .eq(["loading the checkpoint failed", "step-100.ckpt is missing"]),
            &format!("the chain travels: {error:?}"),
        )?,
        other => return Err(format!("expected an endpoint error, got {other:?}").into()),
    }
    match bounded(counter.take(Unwritable).call()).await {
        Err(CallError::Codec { reason, .. }) => check(
            reason.contains("Unwritable refuses to be written"),
            &format!("the codec's own message: {reason}"),
        )?,
        other => return Err(format!("expected a codec error, got {other:?}").into()),
    }
    match bounded(counter.give().call()).await {
        Err(CallError::Codec { reason, .. }) => check(
            reason.contains("Unwritable refuses to be written"),
            &format!("a reply that cannot be written says why: {reason}"),
        )?,
        other => return Err(format!("expected a codec error, got {other:?}").into()),
    }
    counter.panic_now().send()?;
    bounded(events.recv()).await.ok_or("no event")?;
    match bounded(counter.get().call()).await {
        Err(CallError::Undeliverable { reason, .. }) => check(
            reason.contains("`panic_now`") && reason.contains("asked to panic"),
            &format!("a later call names the failure: {reason}"),
        )?,
        other => return Err(format!("expected undeliverable, got {other:?}").into()),
    }
    bounded(procs.stop()).await;
    Ok(())
}

/// An actor's context tells its point, its mesh's shape and its owner, and
/// for a message through a mesh its rank in the slice called; an actor mesh
/// can be spawned on a slice of a proc mesh; `reduce` folds replies.
pub(crate) async fn context_slices_and_reduce() -> Result<(), Failed> {
    let (owner, _events) = recording_owner();
    let procs = Host::owned_by(&owner)
        .spawn_procs(shape! { hosts = 2, gpus = 2 })
        .await?;
    let counters = procs.spawn::<Counter>("counter", ()).await?;
    let placed = bounded(counters.placement().call()).await?;
    let last = &placed.values()[3];
    check(
        last.rank == 3 && last.point == "{hosts=1, gpus=1}" && last.shape == "{hosts=2, gpus=2}",
        &format!("rank, point and shape: {last:?}"),
    )?;
    check(
        last.owner == format!("proc {}", owner.proc_id()),
        &format!("owned by the host's owner: {}", last.owner),
    )?;
    check(
        last.cast == Some((3, "{hosts=1, gpus=1} in {hosts=2, gpus=2}".into())),
        &format!("addressed through the whole mesh: {:?}", last.cast),
    )?;
    let column = bounded(counters.slice("gpus", 1)?.placement().call()).await?;
    let casts: Vec<_> = column.values().iter().map(|p| p.cast.clone()).collect();
    check(
        casts
            == [
                Some((0, "{hosts=0} in {hosts=2}".to_string())),
                Some((1, "{hosts=1} in {hosts=2}".to_string())),
            ],
        &format!("ranks relative to the slice called: {casts:?}"),
    )?;
    let direct = bounded(counters.member(2)?.placement().call()).await?;
    check(direct.cast.is_none(), "a direct call came through no mesh")?;

    let upper = procs.slice("hosts", 1)?;
    let on_upper = upper.spawn::<Counter>("upper", ()).await?;
    check(
        on_upper.shape().to_string() == "{gpus=2}",
        "a mesh on a slice has the slice's shape",
    )?;
    let upper_ids: Vec<_> = upper.proc_ids().cloned().collect();
    let member_procs: Vec<_> = on_upper
        .members()
        .map(|(_, m)| m.actor_id().proc_id().clone())
        .collect();
    let all_ids: Vec<_> = procs.proc_ids().cloned().collect();
    check(
        member_procs == upper_ids && upper_ids == all_ids[2..],
        "its members live on the slice's procs",
    )?;
    let upper_placed = bounded(on_upper.placement().call()).await?;
    check(
        upper_placed.values()[1].rank == 1 && upper_placed.values()[1].shape == "{gpus=2}",
        "ranks are the slice's own",
    )?;

    on_upper.incr(3).broadcast()?;
    counters.incr(1).broadcast()?;
    let total = bounded(on_upper.get().reduce(0, |sum, v| sum + v)).await?;
    check(
        total == 6,
        &format!("reduce folds the slice's replies: {total}"),
    )?;
    let total = bounded(counters.get().reduce(0, |sum, v| sum + v)).await?;
    check(total == 4, &format!("and the whole mesh's: {total}"))?;
    bounded(procs.stop()).await;
    Ok(())
}
