//! One-sided transfers across real processes: this binary re-executes itself
//! as the workers (so it has its own `main`, calling `bootstrap` first) and
//! runs the scenarios with libtest-mimic.
//!
//! Run alone with `cargo test -p monarch-rs-rdma --test transfers`; the
//! 1 GiB scenario is ignored by default (it needs about 3 GiB of memory and a
//! few seconds): add `-- --ignored` to run it.

#[path = "common/peer.rs"]
mod peer;

use std::time::Duration;

use monarch_core::prelude::*;
use monarch_core::testing::{runtime, Failed, Scenarios};
use monarch_core::Host;
use monarch_rdma::{
    cuda_available, Backend, RdmaBatch, RdmaBuffer, RdmaError, RegisteredMemory, Route,
    SnapshotRing, TransferOptions,
};

use peer::{filled, pattern, Kind, Opts, Peer};

/// Every wait is bounded by this.
const LIMIT: Duration = Duration::from_secs(120);

fn main() {
    monarch_core::bootstrap();
    if let Ok(handle) = std::env::var("RDMA_TEST_INTRUDE") {
        intrude(&handle);
    }
    Scenarios::new()
        .limit(LIMIT)
        // The scenarios start processes of their own: one at a time.
        .one_at_a_time()
        .test("same_process_memcpy", || Box::pin(same_process()))
        .test("shared_memory_across_processes", || {
            Box::pin(across(Kind::Shared, Opts::AUTO, "auto", "shared memory"))
        })
        .test("process_vm_across_processes", || {
            Box::pin(across(
                Kind::Vec,
                Opts::AUTO,
                "auto",
                "process_vm_readv/writev",
            ))
        })
        .test("bytes_mut_across_processes", || {
            Box::pin(across(
                Kind::BytesMut,
                Opts::AUTO,
                "auto",
                "process_vm_readv/writev",
            ))
        })
        .test("bulk_streams_over_a_unix_socket", || {
            Box::pin(across(Kind::Shared, SPLIT, "auto", "bulk streams"))
        })
        .test("bulk_streams_over_quic", || {
            Box::pin(across(Kind::Shared, SPLIT, "quic", "bulk streams"))
        })
        .test("bulk_streams_from_handed_over_memory_over_quic", || {
            Box::pin(across(Kind::Vec, SPLIT, "quic", "bulk streams"))
        })
        .test("dropped_and_unknown_buffers_fail_cleanly", || {
            Box::pin(dropped())
        })
        .test("a_process_without_the_credential_is_refused", || {
            Box::pin(refused())
        })
        .test("batches_span_owners_under_one_deadline", || {
            Box::pin(batch())
        })
        .test("ring_never_tears_across_processes", || {
            Box::pin(ring_stress())
        })
        .test("ring_property_over_random_shapes", || {
            Box::pin(ring_property())
        })
        .test("handles_are_small", || Box::pin(small_handles()))
        .test("no_cuda_device_is_reported", || Box::pin(no_cuda()))
        .ignored("one_gib_across_processes", || Box::pin(one_gib()))
        .run();
}

/// Bulk streams split into several parts even for the small test buffers.
const SPLIT: Opts = Opts {
    bulk: true,
    streams: 4,
    chunk: 64 << 10,
};

fn check(condition: bool, what: &str) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(what.into())
    }
}

async fn workers(transport: &str, n: usize) -> Result<ProcMesh, Failed> {
    Ok(Host::owned_by(this_proc())
        .with_env("MONARCH_TRANSPORT", transport)
        .spawn_procs(shape! { procs = n })
        .await?)
}

/// Every registration kind in this process: reads and writes with offsets,
/// and the errors of bad sizes and ranges.
async fn same_process() -> Result<(), Failed> {
    check(
        RegisteredMemory::alloc(0).err() == Some(RdmaError::ZeroSize)
            && RegisteredMemory::from_vec(Vec::<u8>::new()).err() == Some(RdmaError::ZeroSize),
        "a size of 0 is an error",
    )?;
    let floats = [1.5f32, -2.0, 3.25];
    let as_floats = RegisteredMemory::from_slice(&floats)?;
    let halves = [half::bf16::from_f32(0.5), half::bf16::from_f32(-4.0)];
    let as_halves = RegisteredMemory::from_slice(&halves)?;
    check(
        as_floats.to_vec()? == bytemuck::cast_slice::<f32, u8>(&floats)
            && as_halves.to_vec()? == bytemuck::cast_slice::<half::bf16, u8>(&halves),
        "typed slices register as their bytes",
    )?;
    for kind in [Kind::Shared, Kind::Vec, Kind::BytesMut] {
        let memory = peer::register(kind, 10_000, 3)?;
        let handle = memory.handle();
        check(handle.backend() == Backend::Memcpy, "one process: memcpy")?;
        let mut all = vec![0u8; 12_000];
        handle.read_into(&mut all).await?;
        check(all[..10_000] == filled(3, 10_000), "a whole read")?;
        let mut part = vec![0u8; 100];
        handle.read_range_into(9_900, &mut part).await?;
        check(part == filled(3, 10_000)[9_900..], "a read at an offset")?;
        handle.write_range_from(17, b"written").await?;
        let mut back = [0u8; 7];
        memory.read_at(17, &mut back)?;
        check(&back == b"written", "a write at an offset lands")?;
        let too_small = handle.read_into(&mut [0u8; 9_999]).await;
        check(
            matches!(too_small, Err(RdmaError::SizeMismatch { .. })),
            "a short destination is refused",
        )?;
        let too_big = handle.write_from(&[0u8; 10_001]).await;
        check(
            matches!(too_big, Err(RdmaError::SizeMismatch { .. })),
            "a long source is refused",
        )?;
        let outside = handle.read_range_into(9_999, &mut [0u8; 2]).await;
        check(
            matches!(outside, Err(RdmaError::OutOfRange { .. })),
            "a range past the end is refused",
        )?;
        drop(memory);
        let gone = handle.read_into(&mut all).await;
        check(
            matches!(gone, Err(RdmaError::Dropped { .. })),
            &format!("a dropped buffer fails: {gone:?}"),
        )?;
    }
    Ok(())
}

/// A worker's memory read and written from here, and this process's memory
/// read and written from the worker, with offsets and lengths.
async fn across(kind: Kind, opts: Opts, transport: &str, backend: &str) -> Result<(), Failed> {
    let procs = workers(transport, 1).await?;
    let peers = procs.spawn::<Peer>("peer", ()).await?;
    let worker = peers.member(0)?;
    const LEN: u64 = 1 << 20;
    let theirs: RdmaBuffer = worker.register(kind, LEN, 5).call().await?;
    let theirs = opts.apply(&theirs);
    for (offset, len) in [
        (0u64, LEN),
        (1, 1),
        (4095, 4098),
        (LEN - 7, 7),
        (123_456, 300_001),
    ] {
        let mut out = vec![0u8; len as usize];
        theirs.read_range_into(offset, &mut out).await?;
        check(
            out == filled(5, LEN)[offset as usize..(offset + len) as usize],
            &format!("read {len} bytes at {offset}"),
        )?;
    }
    check(
        theirs.backend().to_string() == backend,
        &format!(
            "reads from the worker took {} ({backend} expected)",
            theirs.backend()
        ),
    )?;
    let data = filled(9, 200_003);
    theirs.write_range_from(77_777, &data).await?;
    let landed: Vec<u8> = worker.bytes(theirs.id(), 77_777, 200_003).call().await?;
    check(landed == data, "a write at an offset landed in the worker")?;
    let untouched: Vec<u8> = worker.bytes(theirs.id(), 0, 77_777).call().await?;
    check(
        untouched == filled(5, LEN)[..77_777],
        "bytes before the write are untouched",
    )?;

    let ours = peer::register(kind, LEN, 11)?;
    let (read, took): (Vec<u8>, String) = worker
        .read(ours.handle(), 1000, 50_000, opts)
        .call()
        .await?;
    check(
        read == filled(11, LEN)[1000..51_000],
        "the worker read this process's memory",
    )?;
    check(took == backend, &format!("the worker's read took {took}"))?;
    let took: String = worker
        .write(ours.handle(), 3, b"from the worker".to_vec(), opts)
        .call()
        .await?;
    let mut back = [0u8; 15];
    ours.read_at(3, &mut back)?;
    check(
        &back == b"from the worker" && took == backend,
        "the worker's write landed",
    )?;
    procs.stop().await;
    Ok(())
}

/// A dropped buffer fails every backend cleanly, after a read that set its
/// way up; a forged id is unknown.
async fn dropped() -> Result<(), Failed> {
    let procs = workers("auto", 1).await?;
    let peers = procs.spawn::<Peer>("peer", ()).await?;
    let worker = peers.member(0)?;
    for (kind, opts) in [
        (Kind::Shared, Opts::AUTO),
        (Kind::Vec, Opts::AUTO),
        (Kind::Shared, Opts::BULK),
    ] {
        let handle: RdmaBuffer = worker.register(kind, 4096, 1).call().await?;
        let handle = opts.apply(&handle);
        let mut out = vec![0u8; 4096];
        handle.read_into(&mut out).await?;
        let released: bool = worker.release(handle.id()).call().await?;
        check(released, "the worker dropped it")?;
        let read = handle.read_into(&mut out).await;
        check(
            matches!(read, Err(RdmaError::Dropped { .. })),
            &format!(
                "a read of a dropped {kind:?} buffer ({}) fails: {read:?}",
                handle.backend()
            ),
        )?;
        let write = handle.write_from(&out).await;
        check(
            matches!(write, Err(RdmaError::Dropped { .. })),
            &format!("a write to a dropped {kind:?} buffer fails: {write:?}"),
        )?;
    }
    let real: RdmaBuffer = worker.register(Kind::Shared, 64, 1).call().await?;
    // The id of a registration of this process, which the worker never had.
    let stranger = RegisteredMemory::alloc(64)?;
    let forged = serde_json::to_string(&real)?.replacen(
        &serde_json::to_string(&real.id())?,
        &serde_json::to_string(&stranger.id())?,
        1,
    );
    let forged: RdmaBuffer = serde_json::from_str(&forged)?;
    for opts in [Opts::AUTO, Opts::BULK] {
        let read = opts.apply(&forged).read_into(&mut [0u8; 64]).await;
        check(
            matches!(read, Err(RdmaError::UnknownBuffer { .. })),
            &format!("a forged id is unknown: {read:?}"),
        )?;
    }
    procs.stop().await;
    Ok(())
}

/// A process outside the job (its own credential) is refused at the
/// handshake, reading or writing, on one host and forced onto bulk streams.
async fn refused() -> Result<(), Failed> {
    let procs = workers("auto", 1).await?;
    let peers = procs.spawn::<Peer>("peer", ()).await?;
    let handle: RdmaBuffer = peers
        .member(0)?
        .register(Kind::Shared, 4096, 1)
        .call()
        .await?;
    let json = serde_json::to_string(&handle)?;
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .env("RDMA_TEST_INTRUDE", json)
        .kill_on_drop(true)
        .output()
        .await?;
    let said = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = said.lines().collect();
    check(
        lines.len() == 4 && lines.iter().all(|line| line.starts_with("refused")),
        &format!(
            "every attempt was refused: {said}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    )?;
    procs.stop().await;
    Ok(())
}

/// The intruder: a program of its own (its own job and credential) that was
/// handed a handle of another job.
fn intrude(handle: &str) -> ! {
    let handle: RdmaBuffer = serde_json::from_str(handle).expect("a handle");
    runtime().block_on(async move {
        // A transport of its own, as any monarch program has.
        let procs = workers("auto", 1).await.expect("its own workers");
        for route in [Route::Auto, Route::Bulk] {
            let handle = handle.with_options(TransferOptions {
                timeout: Duration::from_secs(20),
                route,
                ..TransferOptions::default()
            });
            let read = handle.read_into(&mut [0u8; 4096]).await;
            let write = handle.write_from(b"intruder").await;
            for result in [read, write] {
                match result {
                    Err(RdmaError::Refused { why, .. }) => println!("refused: {why}"),
                    other => println!("not refused: {other:?}"),
                }
            }
        }
        procs.stop().await;
    });
    std::process::exit(0);
}

/// One batch reads and writes buffers of two owners; a bad transfer is
/// named by its position.
async fn batch() -> Result<(), Failed> {
    let procs = workers("auto", 2).await?;
    let peers = procs.spawn::<Peer>("peer", ()).await?;
    let a: RdmaBuffer = peers
        .member(0)?
        .register(Kind::Shared, 10_000, 1)
        .call()
        .await?;
    let b: RdmaBuffer = peers
        .member(1)?
        .register(Kind::Vec, 10_000, 2)
        .call()
        .await?;
    let b_bulk = Opts::BULK.apply(&b);
    let (mut x, mut y, mut z) = (vec![0u8; 100], vec![0u8; 10_000], vec![0u8; 10]);
    let payload = b"scattered".to_vec();
    RdmaBatch::new()
        .read(&a, 500, &mut x)
        .read(&b, 0, &mut y)
        .read(&b_bulk, 9_990, &mut z)
        .write(&a, 0, &payload)
        .submit(Duration::from_secs(30))
        .await?;
    check(
        x == filled(1, 10_000)[500..600]
            && y == filled(2, 10_000)
            && z == filled(2, 10_000)[9_990..],
        "every read of the batch",
    )?;
    let landed: Vec<u8> = peers.member(0)?.bytes(a.id(), 0, 9).call().await?;
    check(landed == payload, "the write of the batch")?;
    let mut w = vec![0u8; 10];
    let failed = RdmaBatch::new()
        .read(&a, 0, &mut x)
        .read(&b, 9_995, &mut w)
        .submit(Duration::from_secs(30))
        .await;
    check(
        matches!(&failed, Err(e) if e.index == 1 && matches!(e.error, RdmaError::OutOfRange { .. })),
        &format!("the failed transfer is named: {failed:?}"),
    )?;
    procs.stop().await;
    Ok(())
}

/// A writer in one process publishes as fast as it can into a ring of one
/// slot, so that every publish overwrites the snapshot being read; readers in two other
/// processes (one over bulk streams) and this one pull the newest version
/// and check every byte: none may be torn.
async fn ring_stress() -> Result<(), Failed> {
    let procs = workers("auto", 3).await?;
    let peers = procs.spawn::<Peer>("peer", ()).await?;
    const CAPACITY: usize = 256 << 10;
    let ring: monarch_rdma::RingHandle = peers
        .member(0)?
        .ring(1, CAPACITY, 1_000_000, 0)
        .call()
        .await?;
    let (r1, r2) = (peers.member(1)?, peers.member(2)?);
    let (a, b, c) = tokio::join!(
        r1.pull(ring.clone(), 400, Opts::AUTO, true).call(),
        r2.pull(ring.clone(), 100, Opts::BULK, true).call(),
        peer::pull(&ring, 400, Opts::AUTO, true),
    );
    let (a, b, c) = (a?, b?, c?);
    for (who, pulled) in [
        ("mapped reader", &a),
        ("bulk reader", &b),
        ("reader here", &c),
    ] {
        check(
            pulled.torn == 0,
            &format!("the {who} saw a torn snapshot: {pulled:?}"),
        )?;
        check(
            pulled.intact > 0 && pulled.newest >= 1,
            &format!(
                "the {who} read snapshots: {} intact, {} lapped",
                pulled.intact, pulled.lapped
            ),
        )?;
    }
    println!(
        "ring: intact/lapped mapped {}/{}, bulk {}/{}, here {}/{}",
        a.intact, a.lapped, b.intact, b.lapped, c.intact, c.lapped
    );
    procs.stop().await;
    Ok(())
}

/// For random ring shapes, snapshot sizes and writer paces, readers in
/// another process never see a torn snapshot.
async fn ring_property() -> Result<(), Failed> {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let procs = workers("auto", 2).await?;
    let peers = procs.spawn::<Peer>("peer", ()).await?;
    let (writer, reader) = (peers.member(0)?.clone(), peers.member(1)?.clone());
    let runtime = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 8,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (1usize..=3, 8usize..=2048, 0u64..=50, any::<bool>());
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(slots, words, pace_us, bulk)| {
            let capacity = words * 8 + 56;
            let opts = if bulk { Opts::BULK } else { Opts::AUTO };
            let pulled = runtime.block_on(async {
                let ring: monarch_rdma::RingHandle = writer
                    .ring(slots, capacity, 3_000, pace_us)
                    .call()
                    .await
                    .map_err(|e| e.to_string())?;
                reader
                    .pull(ring, 60, opts, true)
                    .call()
                    .await
                    .map_err(|e| e.to_string())
            });
            let pulled = pulled.map_err(TestCaseError::fail)?;
            prop_assert_eq!(pulled.torn, 0);
            prop_assert!(pulled.intact > 0);
            Ok(())
        })
    });
    procs.stop().await;
    outcome.map_err(|e| Failed::from(e.to_string()))
}

/// A handle's encoded size does not grow with the memory.
async fn small_handles() -> Result<(), Failed> {
    let procs = workers("auto", 1).await?;
    let peers = procs.spawn::<Peer>("peer", ()).await?;
    let small: RdmaBuffer = peers.member(0)?.register(Kind::Shared, 1, 0).call().await?;
    let huge = RegisteredMemory::alloc(1 << 30)?;
    for handle in [small, huge.handle()] {
        let postcard = postcard::to_stdvec(&handle)?.len();
        let json = serde_json::to_string(&handle)?.len();
        check(
            postcard < 256 && json < 1024,
            &format!(
                "a handle of {} bytes encodes in {postcard} (postcard), {json} (JSON)",
                handle.size()
            ),
        )?;
    }
    let ring = SnapshotRing::new(4, 1 << 20)?;
    let encoded = postcard::to_stdvec(&ring.handle())?.len();
    check(
        encoded < 1024,
        &format!("a ring of 4 slots encodes in {encoded} bytes"),
    )?;
    procs.stop().await;
    Ok(())
}

/// GPU paths say "no CUDA device" where there is none.
async fn no_cuda() -> Result<(), Failed> {
    match cuda_available() {
        Ok(()) => println!("a CUDA device is here: scripts/gpu-check.sh runs the GPU tests"),
        Err(RdmaError::NoCudaDevice(why)) => println!("no CUDA device: {why}"),
        Err(other) => return Err(format!("not a no-device error: {other}").into()),
    }
    Ok(())
}

/// 1 GiB from a worker, by every backend, checked.
async fn one_gib() -> Result<(), Failed> {
    let procs = workers("auto", 1).await?;
    let peers = procs.spawn::<Peer>("peer", ()).await?;
    const LEN: u64 = 1 << 30;
    let handle: RdmaBuffer = peers
        .member(0)?
        .register(Kind::Shared, LEN, 4)
        .call()
        .await?;
    let mut dst = vec![0u8; LEN as usize];
    for opts in [Opts::AUTO, Opts::BULK] {
        dst.fill(0);
        let handle = opts.apply(&handle);
        handle.read_into(&mut dst).await?;
        let good = (0..LEN)
            .step_by(4093)
            .all(|i| dst[i as usize] == pattern(4, i))
            && dst[LEN as usize - 1] == pattern(4, LEN - 1);
        check(good, &format!("1 GiB over {}", handle.backend()))?;
    }
    procs.stop().await;
    Ok(())
}
