//! GPU memory across processes, for a machine with a GPU:
//! `scripts/gpu-check.sh` (or `cargo test --release -p monarch-rs-rdma
//! --features cuda --test gpu`). Without a device it says so and passes.
//!
//! It registers device memory, reads and writes it in this process, from
//! another process of the host (CUDA IPC, or bulk streams where the driver
//! gives no IPC handle for the allocation) and over bulk streams through
//! pinned staging; then it measures a 1 GiB device-to-host read against the
//! driver's own copy into pinned memory.

use std::time::{Duration, Instant};

use cudarc::driver::CudaContext;
use monarch_core::prelude::*;
use monarch_core::Host;
use monarch_derive::actor;
use monarch_rdma::{cuda_available, RdmaBuffer, RegisteredMemory, Route, TransferOptions};

fn main() {
    monarch_core::bootstrap();
    if let Err(why) = cuda_available() {
        println!("skipped: {why}");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    match runtime.block_on(tokio::time::timeout(Duration::from_secs(200), run())) {
        Ok(Ok(())) => println!("gpu checks passed"),
        Ok(Err(error)) => {
            eprintln!("gpu check failed: {error}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("gpu checks timed out");
            std::process::exit(1);
        }
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

/// Registers GPU memory in a worker.
#[derive(Default)]
struct GpuPeer {
    kept: Vec<RegisteredMemory>,
}

#[actor]
impl GpuPeer {
    /// `len` bytes of device 0 filled with the pattern of `seed`.
    #[endpoint]
    async fn register(&mut self, len: u64, seed: u8) -> Result<RdmaBuffer, String> {
        let memory = device_memory(len as usize, seed).map_err(|e| e.to_string())?;
        let handle = memory.handle();
        self.kept.push(memory);
        Ok(handle)
    }
}

fn device_memory(len: usize, seed: u8) -> Result<RegisteredMemory, Box<dyn std::error::Error>> {
    let ctx = CudaContext::new(0)?;
    let stream = ctx.default_stream();
    let slice = stream.clone_htod(&pattern(len, seed))?;
    stream.synchronize()?;
    Ok(RegisteredMemory::from_cuda(slice)?)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    const LEN: usize = 8 << 20;
    let here = device_memory(LEN, 1)?;
    let handle = here.handle();
    assert!(handle.is_gpu());
    let mut out = vec![0u8; LEN];
    handle.read_into(&mut out).await?;
    assert_eq!(out, pattern(LEN, 1), "a read of device memory here");
    handle.write_range_from(100, b"into the gpu").await?;
    let mut back = [0u8; 12];
    here.read_at(100, &mut back)?;
    assert_eq!(&back, b"into the gpu");
    println!("same process: {}", handle.backend());

    let procs = Host::owned_by(this_proc())
        .spawn_procs(shape! { procs = 1 })
        .await?;
    let peers = procs.spawn::<GpuPeer>("gpu", ()).await?;
    let theirs: RdmaBuffer = peers.member(0)?.register(LEN as u64, 2).call().await?;
    for route in [Route::Auto, Route::Bulk] {
        let theirs = theirs.with_options(TransferOptions {
            route,
            chunk_bytes: 1 << 20,
            ..TransferOptions::default()
        });
        out.fill(0);
        theirs.read_into(&mut out).await?;
        assert_eq!(out, pattern(LEN, 2), "a read of a worker's GPU memory");
        let mut part = vec![0u8; 4097];
        theirs.read_range_into(12_345, &mut part).await?;
        assert_eq!(part, pattern(LEN, 2)[12_345..12_345 + 4097]);
        theirs.write_range_from(7, b"from afar").await?;
        theirs.read_range_into(7, &mut back[..9]).await?;
        assert_eq!(&back[..9], b"from afar");
        println!("other process, {route:?}: {}", theirs.backend());
    }

    const BIG: usize = 1 << 30;
    let big = device_memory(BIG, 3)?;
    let handle = big.handle();
    let mut host = vec![0u8; BIG];
    handle.read_into(&mut host).await?;
    let started = Instant::now();
    handle.read_into(&mut host).await?;
    let ours = started.elapsed().as_secs_f64();
    let ctx = CudaContext::new(0)?;
    // SAFETY: the pinned bytes are written by the copy before anything reads them.
    let mut pinned = unsafe { ctx.alloc_pinned_with_flags::<u8>(BIG, 0) }?;
    let stream = ctx.default_stream();
    let source = stream.clone_htod(&host)?;
    stream.memcpy_dtoh(&source, &mut pinned)?;
    stream.synchronize()?;
    let started = Instant::now();
    stream.memcpy_dtoh(&source, &mut pinned)?;
    stream.synchronize()?;
    let driver = started.elapsed().as_secs_f64();
    let gib = |s: f64| BIG as f64 / (1u64 << 30) as f64 / s;
    println!(
        "1 GiB device to host: read_into {:.2} GiB/s (pageable destination), driver into pinned {:.2} GiB/s: {:.2}x",
        gib(ours),
        gib(driver),
        driver / ours
    );
    let theirs_big: RdmaBuffer = peers.member(0)?.register(BIG as u64, 4).call().await?;
    let started = Instant::now();
    theirs_big.read_into(&mut host).await?;
    println!(
        "1 GiB from a worker's GPU: {:.2} GiB/s by {}",
        gib(started.elapsed().as_secs_f64()),
        theirs_big.backend()
    );
    procs.stop().await;
    Ok(())
}
