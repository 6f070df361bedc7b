//! The RDMA benchmark: one run, whole processes, ratios to the limits
//! measured in the same run. A bench binary rather than criterion: every
//! figure is a transfer between processes this binary starts (it re-executes
//! itself as the workers).
//!
//! `cargo bench -p monarch-rs-rdma --bench rdma` (about a minute; needs
//! about 8 GiB of memory). Figures go into BENCHMARKS.md.

#[path = "../tests/common/peer.rs"]
#[allow(dead_code)] // the tests use more of it than the benchmark
mod peer;

use std::time::Instant;

use monarch_core::prelude::*;
use monarch_core::Host;
use monarch_rdma::RdmaBuffer;

use peer::{Kind, Opts, Peer, Pulled};

const GIB: usize = 1 << 30;
/// The ring's snapshot: 500 MB.
const SNAPSHOT: usize = 500_000_000;
/// PyTorch Monarch's RDMA TCP fallback for a 1 GiB read on these 2-core
/// machines, as reported (GiB/s): quoted, not measured here.
const MONARCH_TCP: (f64, f64) = (0.57, 0.75);

fn main() {
    // One message argument of 1 GiB must fit a frame, here and in the
    // workers (which inherit the environment).
    std::env::set_var("MONARCH_MAX_FRAME_BYTES", (2 * GIB).to_string());
    monarch_core::bootstrap();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    if let Err(error) = runtime.block_on(run()) {
        eprintln!("the benchmark failed: {error}");
        std::process::exit(1);
    }
}

fn gibs(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / GIB as f64 / seconds
}

fn best(seconds: &[f64]) -> f64 {
    seconds.iter().copied().fold(f64::INFINITY, f64::min)
}

fn row(what: &str, seconds: f64, bytes: usize, limit: Option<(&str, f64)>) {
    let rate = gibs(bytes, seconds);
    match limit {
        Some((name, limit)) => println!(
            "{what:<58} {:>9.1} ms {rate:>7.2} GiB/s  {:>5.2}x {name}",
            seconds * 1e3,
            rate / limit
        ),
        None => println!("{what:<58} {:>9.1} ms {rate:>7.2} GiB/s", seconds * 1e3),
    }
}

async fn workers(transport: &str, n: usize) -> Result<ProcMesh, Box<dyn std::error::Error>> {
    Ok(Host::owned_by(this_proc())
        .with_env("MONARCH_TRANSPORT", transport)
        .spawn_procs(shape! { procs = n })
        .await?)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let memcpy = memcpy_seconds(GIB, 5);
    let memcpy_rate = gibs(GIB, memcpy);
    println!(
        "machine: {} cores",
        std::thread::available_parallelism()?.get()
    );
    row("memcpy 1 GiB in one process (best of 5)", memcpy, GIB, None);

    // Same host: mapped shared pages, and the kernel's copy.
    let procs = workers("auto", 1).await?;
    let peers = procs.spawn::<Peer>("peer", ()).await?;
    let worker = peers.member(0)?;
    // Its pages mapped in first: the first read then measures what the
    // transfer costs, not the destination's page faults.
    let mut dst = vec![1u8; GIB];
    for (kind, name) in [
        (Kind::Shared, "shared memory"),
        (Kind::Vec, "process_vm_readv"),
    ] {
        let handle: RdmaBuffer = worker.register(kind, GIB as u64, 4).call().await?;
        let started = Instant::now();
        handle.read_into(&mut dst).await?;
        let first = started.elapsed().as_secs_f64();
        let mut seconds = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            handle.read_into(&mut dst).await?;
            seconds.push(started.elapsed().as_secs_f64());
        }
        assert_eq!(
            handle.backend().to_string().contains("shared"),
            kind == Kind::Shared
        );
        row(
            &format!("read_into 1 GiB, other process, {name}, first read"),
            first,
            GIB,
            Some(("memcpy", memcpy_rate)),
        );
        row(
            &format!("read_into 1 GiB, other process, {name} (best of 5)"),
            best(&seconds),
            GIB,
            Some(("memcpy", memcpy_rate)),
        );
        let _: bool = worker.release(handle.id()).call().await?;
    }
    let handle: RdmaBuffer = worker.register(Kind::Shared, GIB as u64, 4).call().await?;
    let unix = bulk_best(&handle, &mut dst, 4, 2).await?;
    row(
        "read_into 1 GiB, bulk streams over Unix sockets, 4 streams",
        unix,
        GIB,
        Some(("memcpy", memcpy_rate)),
    );
    procs.stop().await;

    // Over QUIC: bulk streams against bare quinn and one message argument.
    let procs = workers("quic", 1).await?;
    let peers = procs.spawn::<Peer>("peer", ()).await?;
    let worker = peers.member(0)?;
    let handle: RdmaBuffer = worker.register(Kind::Shared, GIB as u64, 4).call().await?;
    let source: String = worker.quinn_source(GIB as u64).call().await?;
    for streams in [1usize, 4, 8] {
        let mut bare = Vec::new();
        for _ in 0..3 {
            bare.push(
                monarch_core::testing::bare_quinn_fetch(&source, &mut dst, streams)
                    .await?
                    .as_secs_f64(),
            );
        }
        let bare = best(&bare);
        let ours = bulk_best(&handle, &mut dst, streams, 3).await?;
        row(
            &format!("bare quinn, {streams} streams, 1 GiB (best of 3)"),
            bare,
            GIB,
            None,
        );
        row(
            &format!("read_into 1 GiB over QUIC, {streams} streams (best of 3)"),
            ours,
            GIB,
            Some(("bare quinn", gibs(GIB, bare))),
        );
        let rate = gibs(GIB, ours);
        println!(
            "{:<58} {:>28.2}-{:.2}x PyTorch Monarch TCP fallback (quoted {}-{} GiB/s)",
            "",
            rate / MONARCH_TCP.1,
            rate / MONARCH_TCP.0,
            MONARCH_TCP.0,
            MONARCH_TCP.1
        );
    }
    drop(dst);
    let argument = monarch_core::Bytes::from(vec![3u8; GIB - (64 << 10)]);
    let mut seconds = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let got: u64 = worker.sink(argument.clone()).call().await?;
        seconds.push(started.elapsed().as_secs_f64());
        assert_eq!(got as usize, argument.len());
    }
    row(
        "one Bytes argument of 1 GiB over QUIC (call, best of 2)",
        best(&seconds),
        argument.len(),
        None,
    );
    drop(argument);
    procs.stop().await;

    // The ring: a writer publishes 500 MB snapshots while two readers pull.
    let snapshot_memcpy = memcpy_seconds(SNAPSHOT, 5);
    row(
        "memcpy 500 MB in one process (best of 5)",
        snapshot_memcpy,
        SNAPSHOT,
        None,
    );
    let procs = workers("auto", 3).await?;
    let peers = procs.spawn::<Peer>("peer", ()).await?;
    let ring: monarch_rdma::RingHandle = peers.member(0)?.make_ring(SNAPSHOT).call().await?;
    let (writer, r1, r2) = (peers.member(0)?, peers.member(1)?, peers.member(2)?);
    let (published, a, b) = tokio::join!(
        writer.publish_timed(5).call(),
        r1.pull(ring.clone(), 5, Opts::AUTO, false).call(),
        r2.pull(ring.clone(), 5, Opts::AUTO, false).call(),
    );
    let (published, a, b): (Vec<f64>, Pulled, Pulled) = (published?, a?, b?);
    row(
        "ring publish of 500 MB while 2 readers pull (best of 5)",
        best(&published),
        SNAPSHOT,
        Some(("memcpy", gibs(SNAPSHOT, snapshot_memcpy))),
    );
    let worst = published.iter().copied().fold(0.0, f64::max);
    row(
        "ring publish of 500 MB, slowest of 5",
        worst,
        SNAPSHOT,
        Some(("memcpy", gibs(SNAPSHOT, snapshot_memcpy))),
    );
    for (name, pulled) in [("reader 1", &a), ("reader 2", &b)] {
        row(
            &format!(
                "ring pull of 500 MB, {name} (best of {})",
                pulled.seconds.len()
            ),
            best(&pulled.seconds),
            SNAPSHOT,
            Some(("memcpy", gibs(SNAPSHOT, snapshot_memcpy))),
        );
    }
    procs.stop().await;
    Ok(())
}

/// The best of `repeats` 1 GiB reads over `streams` bulk streams.
async fn bulk_best(
    handle: &RdmaBuffer,
    dst: &mut [u8],
    streams: usize,
    repeats: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let handle = Opts {
        bulk: true,
        streams,
        chunk: 4 << 20,
    }
    .apply(handle);
    let mut seconds = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        handle.read_into(dst).await?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    Ok(best(&seconds))
}

/// The best of `repeats` copies of `len` bytes between two buffers whose
/// pages are already mapped in.
fn memcpy_seconds(len: usize, repeats: usize) -> f64 {
    let src = vec![5u8; len];
    let mut dst = vec![0u8; len];
    dst.copy_from_slice(&src);
    let mut seconds = Vec::new();
    for _ in 0..repeats {
        let started = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
        seconds.push(started.elapsed().as_secs_f64());
    }
    best(&seconds)
}
