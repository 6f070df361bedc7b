//! Every adverb, slices, references and ports that travel, singletons and
//! large arguments, across processes.

use bytes::Bytes;
use futures::StreamExt;
use libtest_mimic::Failed;
use monarch::prelude::*;
use monarch::Host;

use crate::actors::{Caller, Counter, Ledger};
use crate::support::{bounded, check, recording_owner, wait_gone};

pub(crate) async fn every_adverb_on_a_2x2_mesh(transport: &str) -> Result<(), Failed> {
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

pub(crate) async fn slices_and_refs_travel() -> Result<(), Failed> {
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
    let theirs = bounded(callers.ledger("ledger".into()).call()).await?;
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

pub(crate) async fn large_bytes_argument(transport: &str) -> Result<(), Failed> {
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
