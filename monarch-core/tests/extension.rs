//! The extension point other crates build on, used from outside the crate as
//! `monarch-rdma` does: a proc's locality, per-process services started on
//! demand, bulk byte streams between processes, and shared memory mapped by
//! another process of the host.
//!
//! The binary re-executes itself as the workers, so it has its own `main`
//! (calling `bootstrap()` first) and runs the scenarios with libtest-mimic.
//! Run alone with `cargo test -p monarch-rs-core --test extension`.

use std::sync::LazyLock;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use monarch_core::bulk::{self, BulkError};
use monarch_core::shm::{Access, RegionHandle, SharedRegion};
use monarch_core::{shape, this_host, this_proc, CallError, Config, Locality, ProcRef, Transport};
use monarch_derive::actor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every wait here is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

/// A per-process service: counts calls, serves an echo over bulk streams,
/// and reads and writes shared regions of other processes.
#[derive(Default)]
struct Helper {
    calls: u64,
    listening: Option<tokio::task::JoinHandle<()>>,
}

#[actor]
impl Helper {
    /// How many times this process's helper has been called.
    #[endpoint]
    async fn count(&mut self) -> u64 {
        self.calls += 1;
        self.calls
    }

    /// The process the helper runs in.
    #[endpoint]
    async fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Starts echoing bulk streams of protocol `protocol` back.
    #[endpoint]
    async fn listen(&mut self, protocol: String) -> Result<(), String> {
        let mut listener = bulk::listen(&protocol).map_err(|e| e.to_string())?;
        self.listening = Some(tokio::spawn(async move {
            while let Some(mut stream) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        }));
        Ok(())
    }

    /// Maps `region`, checks it holds `expect` at its start, and writes
    /// `reply` after it.
    #[endpoint]
    async fn touch(
        &self,
        region: RegionHandle,
        expect: Vec<u8>,
        reply: Vec<u8>,
    ) -> Result<(), String> {
        let mapped = region.map(Access::ReadWrite).map_err(|e| e.to_string())?;
        let mut seen = vec![0u8; expect.len()];
        mapped.read_at(0, &mut seen).map_err(|e| e.to_string())?;
        if seen != expect {
            return Err(format!("the region holds {seen:?}, not {expect:?}"));
        }
        mapped
            .write_at(expect.len(), &reply)
            .map_err(|e| e.to_string())
    }
}

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

fn check(condition: bool, what: &str) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(what.into())
    }
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("timed out waiting")
}

/// Starts one worker over `transport` and returns it as a proc reference.
async fn one_worker(transport: Transport) -> Result<(monarch_core::ProcMesh, ProcRef), Failed> {
    let config = Config::builder().transport(transport).build();
    let procs = this_host()
        .with_config(config)
        .spawn_procs(shape! { procs = 1 })
        .await?;
    let proc = procs.procs().next().ok_or("no proc")?.clone();
    Ok((procs, proc))
}

async fn localities_and_services(transport: Transport) -> Result<(), Failed> {
    let (procs, worker) = one_worker(transport).await?;
    let here = ProcRef::here().ok_or("the transport runs")?;
    check(
        here.locality() == Locality::SameProcess,
        "here is this process",
    )?;
    check(
        worker.locality() == Locality::SameHost,
        "the worker is on this host",
    )?;
    // A proc reference travels as plain data.
    let travelled: ProcRef =
        postcard::from_bytes(&postcard::to_allocvec(&worker).expect("encodes")).expect("decodes");
    check(travelled == worker, "a proc reference round-trips")?;

    // The worker's helper starts on the first message; later ones find it.
    let helper = worker.service::<Helper>()?;
    check(
        bounded(helper.count().call()).await? == 1,
        "started on demand",
    )?;
    let again = travelled.service::<Helper>()?;
    check(
        bounded(again.count().call()).await? == 2,
        "one helper per process",
    )?;
    let pid = bounded(helper.pid().call()).await?;
    check(pid != std::process::id(), "the helper runs in the worker")?;
    // This process's own helper is another one.
    let local = this_proc().service::<Helper>()?;
    check(
        bounded(local.pid().call()).await? == std::process::id(),
        "a helper here",
    )?;
    bounded(procs.stop()).await;
    // A stopped proc's services say so.
    match bounded(helper.count().call()).await {
        Err(CallError::Unreachable { reason, .. }) => check(
            reason.contains("stopped"),
            &format!("the reason says stopped: {reason}"),
        )?,
        other => return Err(format!("expected an unreachable proc, got {other:?}").into()),
    }
    Ok(())
}

async fn bulk_streams(transport: Transport) -> Result<(), Failed> {
    let (procs, worker) = one_worker(transport).await?;
    let helper = worker.service::<Helper>()?;
    bounded(helper.listen("echo".into()).call()).await?;
    // Several streams at once, each with a megabyte each way.
    let streams = (0..4u8).map(|i| {
        let worker = worker.clone();
        async move {
            let mut stream = worker.open_bulk("echo").await?;
            let sent: Vec<u8> = (0..1u32 << 20)
                .map(|b| (b as u8).wrapping_mul(i + 1))
                .collect();
            let writing = async { stream_write(&mut stream, &sent).await };
            writing.await?;
            let mut back = Vec::new();
            stream.read_to_end(&mut back).await?;
            Ok::<_, Failed>((sent == back, stream.is_quic()))
        }
    });
    for result in bounded(futures::future::join_all(streams)).await {
        let (echoed, quic) = result?;
        check(echoed, "every byte came back")?;
        // A worker told to use QUIC is reached over QUIC; one told to use the
        // same-host socket is where this process listens on one (it does
        // unless a QUIC scenario started this process's transport first).
        check(
            quic || transport != Transport::Quic,
            "over QUIC when told so",
        )?;
    }
    // A protocol nobody serves is refused, saying so.
    match bounded(worker.open_bulk("nobody")).await {
        Err(BulkError::Refused { why, .. }) => check(
            why.contains("no service listens"),
            &format!("the refusal says why: {why}"),
        )?,
        Err(other) => return Err(format!("expected a refusal, got {other}").into()),
        Ok(_) => return Err("a stream to nobody was opened".into()),
    }
    bounded(procs.stop()).await;
    Ok(())
}

/// Writes `data`, then ends the stream's sending side.
async fn stream_write(stream: &mut bulk::BulkStream, data: &[u8]) -> Result<(), Failed> {
    stream
        .write_bytes(bytes::Bytes::copy_from_slice(&data[..data.len() / 2]))
        .await?;
    stream.write_all(&data[data.len() / 2..]).await?;
    stream.shutdown().await?;
    Ok(())
}

async fn shared_memory_across_processes() -> Result<(), Failed> {
    let (procs, worker) = one_worker(Transport::Auto).await?;
    let region = SharedRegion::new(1 << 20)?;
    region.write_at(0, b"weights v1")?;
    let helper = worker.service::<Helper>()?;
    bounded(
        helper
            .touch(region.handle(), b"weights v1".to_vec(), b" read".to_vec())
            .call(),
    )
    .await?;
    let mut back = [0u8; 15];
    region.read_at(0, &mut back)?;
    check(
        &back == b"weights v1 read",
        "the worker wrote into this process's region",
    )?;
    bounded(procs.stop()).await;
    Ok(())
}

fn main() {
    monarch_core::bootstrap();
    type Scenario =
        fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Failed>>>>;
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("localities_and_services", || {
            Box::pin(localities_and_services(Transport::Auto))
        }),
        ("localities_and_services_over_quic", || {
            Box::pin(localities_and_services(Transport::Quic))
        }),
        ("bulk_streams", || Box::pin(bulk_streams(Transport::Auto))),
        ("bulk_streams_over_quic", || {
            Box::pin(bulk_streams(Transport::Quic))
        }),
        ("shared_memory_across_processes", || {
            Box::pin(shared_memory_across_processes())
        }),
    ];
    let trials = scenarios
        .into_iter()
        .map(|(name, scenario)| Trial::test(name, move || RUNTIME.block_on(scenario())))
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
