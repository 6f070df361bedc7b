//! Ordering across processes and casts through trees of relays, relays
//! lost mid-cast, and a soak.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libtest_mimic::Failed;
use monarch::prelude::*;
use monarch::{CastTree, Host, Step};

use crate::actors::{Caller, Counter};
use crate::support::{bounded, check, recording_owner, settles, signal, wait_stopped};

pub(crate) async fn ordering_across_processes(transport: &str) -> Result<(), Failed> {
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
pub(crate) const TREE: CastTree = CastTree {
    fanout: 2,
    min_procs: 2,
};

/// Sends `0..n` as `sender` to a mesh of eight counters (`hosts = 2, gpus =
/// 4`): casts to the whole mesh, casts to its second host (another tree) and
/// direct sends, interleaved. Returns the sequence each rank should record.
pub(crate) fn send_mixed(
    mesh: &ActorMesh<Counter>,
    sender: &str,
    n: u64,
) -> Result<Vec<Vec<u64>>, MeshError> {
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

pub(crate) async fn casts_through_a_tree(transport: &str) -> Result<(), Failed> {
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
    // Each member learns its place in the slice called, through the relays too.
    let placed = bounded(counters.slice("gpus", Step(.., 2))?.placement().call()).await?;
    let casts: Vec<_> = placed.values().iter().map(|p| p.cast.clone()).collect();
    let expected: Vec<_> = (0..4)
        .map(|r| {
            let point = format!("{{hosts={}, gpus={}}}", r / 2, r % 2);
            Some((r, format!("{point} in {{hosts=2, gpus=2}}")))
        })
        .collect();
    check(
        casts == expected,
        &format!("cast points are relative to the slice: {casts:?}"),
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
    bounded(counters.stop()).await.expect("the owner stops it");
    bounded(procs.stop()).await;
    Ok(())
}

pub(crate) async fn a_lost_relay_holds_nothing_up() -> Result<(), Failed> {
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
pub(crate) async fn soak_tree_casts_with_losses() -> Result<(), Failed> {
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
