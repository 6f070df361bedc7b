//! Actors in other processes: round trips, throughput, mesh calls, large
//! arguments and mesh startup, each next to its limit or target in the same
//! run. The binary re-executes itself as the workers, so `main` calls
//! `monarch::bootstrap()` before criterion starts.
//!
//! `cargo bench --bench mesh -- --warm-up-time 1 --measurement-time 5 --noplot`
//! prints criterion's figures, then a table of rates and ratios.

use std::future::Future;
use std::net::UdpSocket;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use monarch::prelude::*;
use monarch::CastTree;

/// Counts, echoes and swallows what it is sent.
#[derive(Default)]
struct Echo {
    count: u64,
}

#[actor]
impl Echo {
    #[endpoint]
    async fn ping(&self) {}

    #[endpoint]
    async fn incr(&mut self) {
        self.count += 1;
    }

    #[endpoint]
    async fn count(&self) -> u64 {
        self.count
    }

    #[endpoint]
    async fn take(&self, data: Bytes) -> usize {
        data.len()
    }

    /// Starts a bare quinn echo server in this process; returns its address.
    #[endpoint]
    async fn quinn_echo(&self) -> Result<String, String> {
        monarch::testing::bare_quinn_echo().await
    }

    /// Starts a bare Unix-socket echo server in this process (an abstract
    /// socket, as the same-host path uses); returns its name.
    #[endpoint]
    async fn unix_echo(&self) -> Result<String, String> {
        use std::io::{Read, Write};
        use std::os::linux::net::SocketAddrExt;
        let name = format!("monarch-bench-echo-{}", std::process::id());
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(&name).map_err(|e| e.to_string())?;
        let listener =
            std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            while let Ok((mut stream, _)) = listener.accept() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok(name)
    }

    /// Starts a bare UDP echo server in this process; returns its address.
    #[endpoint]
    async fn udp_echo(&self) -> Result<String, String> {
        let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = socket.local_addr().map_err(|e| e.to_string())?.to_string();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                if socket.send_to(&buf[..n], from).is_err() {
                    break;
                }
            }
        });
        Ok(addr)
    }
}

const TELLS: u64 = 100_000;
const BIG: usize = 64 << 20;
/// The size of the large mesh that casts are measured on.
const WIDE: usize = 32;
/// The argument broadcast to the large mesh.
const CAST_BYTES: usize = 8 << 20;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

struct Fixture {
    _procs: [ProcMesh; 4],
    /// One actor in another process, over the same-host path.
    one: ActorMesh<Echo>,
    /// One actor in another process, over QUIC.
    one_quic: ActorMesh<Echo>,
    /// One actor in a worker with a one-thread runtime, same-host path.
    one_thread: ActorMesh<Echo>,
    eight: ActorMesh<Echo>,
    /// One actor in each of `WIDE` processes.
    wide: ActorMesh<Echo>,
    udp_peer: String,
    /// A bare Unix-socket echo server in the same-host worker.
    unix_peer: String,
    /// A bare quinn echo server in the QUIC worker.
    quinn_peer: String,
}

async fn fixture() -> Fixture {
    let procs = this_host()
        .spawn_procs(shape! { procs = 8 })
        .await
        .expect("procs");
    let eight = procs.spawn::<Echo>("echo", ()).await.expect("spawn");
    let one = eight.slice("procs", 0..1).expect("slice");
    let quic_procs = this_host()
        .with_env("MONARCH_TRANSPORT", "quic")
        .spawn_procs(shape! { procs = 1 })
        .await
        .expect("procs");
    let one_quic = quic_procs.spawn::<Echo>("echo", ()).await.expect("spawn");
    let thread_procs = this_host()
        .with_env("MONARCH_WORKER_THREADS", "1")
        .spawn_procs(shape! { procs = 1 })
        .await
        .expect("procs");
    let one_thread = thread_procs.spawn::<Echo>("echo", ()).await.expect("spawn");
    let wide_procs = this_host()
        .spawn_procs(shape! { procs = WIDE })
        .await
        .expect("procs");
    let wide = wide_procs.spawn::<Echo>("echo", ()).await.expect("spawn");
    let udp_peer = one.udp_echo().call_one().await.expect("udp");
    let unix_peer = one.unix_echo().call_one().await.expect("unix");
    let quinn_peer = one_quic.quinn_echo().call_one().await.expect("quinn");
    Fixture {
        _procs: [procs, quic_procs, thread_procs, wide_procs],
        one,
        one_quic,
        one_thread,
        eight,
        wide,
        udp_peer,
        unix_peer,
        quinn_peer,
    }
}

/// The members measured over each path.
fn paths(f: &Fixture) -> [(&'static str, ActorRef<Echo>); 3] {
    [
        ("monarch", f.one.member(0).expect("member").clone()),
        (
            "monarch_quic",
            f.one_quic.member(0).expect("member").clone(),
        ),
        (
            "monarch_1thread",
            f.one_thread.member(0).expect("member").clone(),
        ),
    ]
}

fn ask(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("remote_ask");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("loopback", "udp_ping_pong"), |b| {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.connect(&f.udp_peer).expect("connect");
        let mut buf = [0u8; 64];
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                socket.send(b"ping").expect("send");
                socket.recv(&mut buf).expect("recv");
            }
            start.elapsed()
        })
    });
    group.bench_function(BenchmarkId::new("loopback", "unix_ping_pong"), |b| {
        use std::io::{Read, Write};
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(&f.unix_peer).expect("name");
        let mut stream = std::os::unix::net::UnixStream::connect_addr(&addr).expect("connect");
        let mut buf = [0u8; 4];
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                stream.write_all(b"ping").expect("send");
                stream.read_exact(&mut buf).expect("recv");
            }
            start.elapsed()
        })
    });
    group.bench_function(BenchmarkId::new("loopback", "quinn_ping_pong"), |b| {
        let mut client = RUNTIME
            .block_on(monarch::testing::BareQuinnPingPong::connect(&f.quinn_peer))
            .expect("connect");
        b.iter_custom(|iters| {
            RUNTIME.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    client.round_trip().await.expect("round trip");
                }
                start.elapsed()
            })
        })
    });
    for (name, member) in paths(f) {
        group.bench_function(BenchmarkId::new("loopback", name), |b| {
            b.iter_custom(|iters| timed(iters, || member.ping().call()))
        });
    }
    // The same asks from a task of the runtime rather than from `block_on`'s
    // thread: the reply wakes the caller on the thread that read it.
    let member = f.one.member(0).expect("member").clone();
    group.bench_function(BenchmarkId::new("loopback", "monarch_in_task"), |b| {
        b.iter_custom(|iters| {
            let member = member.clone();
            RUNTIME.block_on(async move {
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        member.ping().call().await.expect("ask");
                    }
                    start.elapsed()
                })
                .await
                .expect("the task ran")
            })
        })
    });
    group.finish();
}

/// Runs `op` `iters` times on the bench runtime, one after another, and returns
/// the time taken.
fn timed<F, T, E>(iters: u64, op: impl Fn() -> F) -> Duration
where
    F: Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    RUNTIME.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            op().await.expect("the measured operation failed");
        }
        start.elapsed()
    })
}

fn tell(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("remote_tell_100k");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(TELLS));
    for (name, member) in paths(f) {
        let member = &member;
        group.bench_function(BenchmarkId::new("loopback", name), |b| {
            b.iter_custom(|iters| {
                timed(iters, || async move {
                    let before = member.count().call().await?;
                    for _ in 0..TELLS {
                        member.incr().send().expect("tell");
                    }
                    let after = member.count().call().await?;
                    assert_eq!(after - before, TELLS);
                    Ok::<_, CallError>(())
                })
            })
        });
    }
    group.finish();
}

fn mesh_call(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("mesh_call");
    group.throughput(Throughput::Elements(1));
    let member = f.one.member(0).expect("member").clone();
    group.bench_function(BenchmarkId::new("loopback", "ask_1"), |b| {
        b.iter_custom(|iters| timed(iters, || member.ping().call()))
    });
    group.bench_function(BenchmarkId::new("loopback", "call_8"), |b| {
        b.iter_custom(|iters| timed(iters, || f.eight.ping().call()))
    });
    group.finish();
}

/// Casts to `WIDE` processes, one send per process against a tree.
fn wide_cast(c: &mut Criterion, f: &Fixture) {
    let direct = f.wide.with_cast_tree(CastTree::DIRECT);
    let tree = f.wide.with_cast_tree(CastTree {
        fanout: 8,
        min_procs: 2,
    });
    let mut group = c.benchmark_group("cast_32_procs");
    group.throughput(Throughput::Elements(1));
    for (name, mesh) in [("call_direct", &direct), ("call_tree", &tree)] {
        group.bench_function(BenchmarkId::new("loopback", name), |b| {
            b.iter_custom(|iters| timed(iters, || mesh.ping().call()))
        });
    }
    let data = Bytes::from(vec![7u8; CAST_BYTES]);
    group.sample_size(10);
    for (name, mesh) in [("bytes_direct", &direct), ("bytes_tree", &tree)] {
        let data = &data;
        group.bench_function(BenchmarkId::new("loopback", name), |b| {
            b.iter_custom(|iters| {
                timed(iters, || async move {
                    let sizes = mesh.take(data.clone()).call().await?;
                    assert!(sizes.values().iter().all(|n| *n == CAST_BYTES));
                    Ok::<_, MeshError>(())
                })
            })
        });
    }
    group.finish();
}

fn big(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("bytes_64MiB");
    group
        .sample_size(10)
        .throughput(Throughput::Bytes(BIG as u64));
    let data = Bytes::from(vec![7u8; BIG]);
    for (name, member) in paths(f) {
        let (member, data) = (&member, &data);
        group.bench_function(BenchmarkId::new("loopback", name), |b| {
            b.iter_custom(|iters| {
                timed(iters, || async move {
                    let n = member.take(data.clone()).call().await?;
                    assert_eq!(n, BIG);
                    Ok::<_, CallError>(())
                })
            })
        });
    }
    group.bench_function(BenchmarkId::new("loopback", "bare_quinn"), |b| {
        b.iter_custom(|iters| {
            RUNTIME.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += monarch::testing::bare_quinn_transfer(BIG)
                        .await
                        .expect("quinn");
                }
                total
            })
        })
    });
    group.finish();
}

fn startup(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn_8_procs");
    group.sample_size(10).throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("loopback", "monarch"), |b| {
        b.iter_custom(|iters| {
            RUNTIME.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let procs = this_host()
                        .spawn_procs(shape! { procs = 8 })
                        .await
                        .expect("procs");
                    let echoes = procs.spawn::<Echo>("echo", ()).await.expect("spawn");
                    echoes.ping().call().await.expect("ready");
                    total += start.elapsed();
                    procs.stop().await;
                }
                total
            })
        })
    });
    group.finish();
}

fn main() {
    monarch::bootstrap();
    let mut c = Criterion::default().configure_from_args();
    let f = RUNTIME.block_on(fixture());
    ask(&mut c, &f);
    tell(&mut c, &f);
    mesh_call(&mut c, &f);
    wide_cast(&mut c, &f);
    big(&mut c, &f);
    startup(&mut c);
    c.final_summary();
    report::print();
}

mod report {
    //! Reads criterion's estimates back and prints rates and ratios.
    use std::path::PathBuf;

    fn mean_ns(group: &str, name: &str) -> Option<f64> {
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        let path = dir
            .join("criterion")
            .join(group)
            .join("loopback")
            .join(name)
            .join("new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        // Criterion's own headline figure: the slope of time over iterations
        // where it has one, else the mean.
        json["slope"]["point_estimate"]
            .as_f64()
            .or_else(|| json["mean"]["point_estimate"].as_f64())
    }

    pub(super) fn print() {
        let us = |group, name| mean_ns(group, name).map(|ns| ns / 1e3);
        println!("\n{:<48} {:>14}   against", "measure", "figure");
        const PATHS: [(&str, &str); 3] = [
            ("monarch", "same-host"),
            ("monarch_quic", "QUIC"),
            ("monarch_1thread", "same-host, 1-thread worker"),
        ];
        const ASKS: [(&str, &str); 4] = [
            ("monarch", "same-host"),
            ("monarch_in_task", "same-host, from a runtime task"),
            ("monarch_quic", "QUIC"),
            ("monarch_1thread", "same-host, 1-thread worker"),
        ];
        for (name, path) in ASKS {
            if let (Some(m), Some(u)) = (us("remote_ask", name), us("remote_ask", "udp_ping_pong"))
            {
                row(
                    &format!("ask round trip, other process, {path}"),
                    format!("{m:.1} us"),
                    format!("{:.2}x UDP ({u:.1} us); target 1.5x", m / u),
                );
            }
            if let (Some(m), Some(u)) = (us("remote_ask", name), us("remote_ask", "unix_ping_pong"))
            {
                row(
                    &format!("ask round trip, other process, {path}"),
                    format!("{m:.1} us"),
                    format!("{:.2}x a Unix socket ({u:.1} us); target 1.5x", m / u),
                );
            }
        }
        if let (Some(m), Some(q)) = (
            us("remote_ask", "monarch_quic"),
            us("remote_ask", "quinn_ping_pong"),
        ) {
            row(
                "ask round trip, QUIC, against bare quinn",
                format!("{m:.1} us"),
                format!("{:.2}x a bare quinn stream ping-pong ({q:.1} us)", m / q),
            );
        }
        for (name, path) in PATHS {
            if let Some(ns) = mean_ns("remote_tell_100k", name) {
                let rate = super::TELLS as f64 / (ns * 1e-9);
                row(
                    &format!("tell throughput, other process, {path}"),
                    format!("{:.0} k msg/s", rate / 1e3),
                    format!("{:.2}x target 500 k", rate / 500e3),
                );
            }
        }
        if let (Some(call), Some(one)) = (us("mesh_call", "call_8"), us("mesh_call", "ask_1")) {
            row(
                "call() on 8 procs",
                format!("{call:.1} us"),
                format!("{:.2}x one ask ({one:.1} us); target 3x", call / one),
            );
        }
        if let (Some(tree), Some(direct)) = (
            us("cast_32_procs", "call_tree"),
            us("cast_32_procs", "call_direct"),
        ) {
            row(
                "call() on 32 procs through a tree (fanout 8)",
                format!("{tree:.1} us"),
                format!("{:.2}x one send per proc ({direct:.1} us)", tree / direct),
            );
        }
        if let (Some(tree), Some(direct)) = (
            us("cast_32_procs", "bytes_tree"),
            us("cast_32_procs", "bytes_direct"),
        ) {
            row(
                "8 MiB Bytes call() on 32 procs through a tree",
                format!("{:.1} ms", tree / 1e3),
                format!(
                    "{:.2}x one send per proc ({:.1} ms)",
                    tree / direct,
                    direct / 1e3
                ),
            );
        }
        let gib = |ns: f64| super::BIG as f64 / (ns * 1e-9) / (1u64 << 30) as f64;
        let quinn = mean_ns("bytes_64MiB", "bare_quinn").map(gib);
        if let Some(m) = mean_ns("bytes_64MiB", "monarch") {
            row(
                "64 MiB Bytes argument, same-host path",
                format!("{:.2} GiB/s", gib(m)),
                "target 2 GiB/s".to_string(),
            );
        }
        if let Some(m) = mean_ns("bytes_64MiB", "monarch_1thread") {
            row(
                "64 MiB Bytes argument, same-host, 1-thread worker",
                format!("{:.2} GiB/s", gib(m)),
                "target 2 GiB/s".to_string(),
            );
        }
        if let (Some(m), Some(q)) = (mean_ns("bytes_64MiB", "monarch_quic"), quinn) {
            row(
                "64 MiB Bytes argument, QUIC",
                format!("{:.2} GiB/s", gib(m)),
                format!("bare quinn stream {q:.2} GiB/s ({:.2}x)", gib(m) / q),
            );
        }
        if let Some(ns) = mean_ns("spawn_8_procs", "monarch") {
            row(
                "spawn 8 procs + actors, ready",
                format!("{:.0} ms", ns / 1e6),
                "target 300 ms".to_string(),
            );
        }
    }

    fn row(measure: &str, figure: String, against: String) {
        println!("{measure:<48} {figure:>14}   {against}");
    }
}
