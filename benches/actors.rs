//! In-process actor benchmarks: monarch against a bare tokio channel (the limit)
//! and the Rust actor peers actix 0.13, ractor 0.16 and kameo 0.22, in one run.
//!
//! Run with `cargo bench --bench actors`. After criterion's own output it prints
//! a table of throughputs and ratios read back from criterion's estimates.
//!
//! Every implementation does the same work: a counter actor that `incr`ements on
//! a tell and returns its count on an ask.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;

const TELLS: u64 = 1_000_000;
const SPAWNS: u64 = 10_000;

fn runtime(flavor: &str) -> Runtime {
    match flavor {
        "current_thread" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    }
    .expect("tokio runtime")
}

/// One implementation under test.
trait Subject {
    /// `n` tells to one actor, then one ask that confirms all arrived.
    fn tell_throughput(&self, n: u64) -> Duration;
    /// `n` sequential asks to one actor.
    fn ask_round_trips(&self, n: u64) -> Duration;
    /// Spawn `n` actors, one ask each, then stop them all.
    fn spawn_ask_stop(&self, n: u64) -> Duration;
}

mod bare {
    //! The limit: a task reading an unbounded mpsc channel, oneshot replies.
    use super::*;
    use tokio::sync::{mpsc, oneshot};

    pub(super) enum Msg {
        Incr,
        Get(oneshot::Sender<u64>),
    }

    fn spawn_counter() -> (mpsc::UnboundedSender<Msg>, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(async move {
            let mut count = 0u64;
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Incr => count += 1,
                    Msg::Get(reply) => {
                        let _ = reply.send(count);
                    }
                }
            }
        });
        (tx, handle)
    }

    async fn get(tx: &mpsc::UnboundedSender<Msg>) -> u64 {
        let (reply, rx) = oneshot::channel();
        tx.send(Msg::Get(reply)).unwrap();
        rx.await.unwrap()
    }

    pub(super) struct Bare(pub(super) Runtime);

    impl Subject for Bare {
        fn tell_throughput(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let (tx, _h) = spawn_counter();
                let start = Instant::now();
                for _ in 0..n {
                    tx.send(Msg::Incr).unwrap();
                }
                assert_eq!(get(&tx).await, n);
                start.elapsed()
            })
        }

        fn ask_round_trips(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let (tx, _h) = spawn_counter();
                let start = Instant::now();
                for _ in 0..n {
                    black_box(get(&tx).await);
                }
                start.elapsed()
            })
        }

        fn spawn_ask_stop(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let start = Instant::now();
                let actors: Vec<_> = (0..n).map(|_| spawn_counter()).collect();
                for (tx, _) in &actors {
                    black_box(get(tx).await);
                }
                for (tx, handle) in actors {
                    drop(tx);
                    handle.await.unwrap();
                }
                start.elapsed()
            })
        }
    }
}

mod monarch_impl {
    use super::*;
    use monarch::prelude::*;

    #[derive(Default)]
    pub(super) struct Counter {
        count: u64,
    }

    #[actor]
    impl Counter {
        #[endpoint]
        async fn incr(&mut self) {
            self.count += 1;
        }

        #[endpoint]
        async fn get(&self) -> u64 {
            self.count
        }
    }

    pub(super) struct Monarch(pub(super) Runtime, pub(super) Proc);

    impl Subject for Monarch {
        fn tell_throughput(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let counter = self.1.spawn::<Counter>("counter", ()).await.unwrap();
                let start = Instant::now();
                for _ in 0..n {
                    counter.incr().send().unwrap();
                }
                assert_eq!(counter.get().call().await.unwrap(), n);
                let elapsed = start.elapsed();
                counter.stop().await.unwrap();
                elapsed
            })
        }

        fn ask_round_trips(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let counter = self.1.spawn::<Counter>("counter", ()).await.unwrap();
                let start = Instant::now();
                for _ in 0..n {
                    black_box(counter.get().call().await.unwrap());
                }
                let elapsed = start.elapsed();
                counter.stop().await.unwrap();
                elapsed
            })
        }

        fn spawn_ask_stop(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let start = Instant::now();
                let mut actors = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    actors.push(self.1.spawn::<Counter>("counter", ()).await.unwrap());
                }
                for a in &actors {
                    black_box(a.get().call().await.unwrap());
                }
                // Every stop is requested before any is awaited, as the
                // other subjects stop theirs all at once: the proc stops its
                // root actors, these 10 000.
                self.1.stop().await;
                start.elapsed()
            })
        }
    }
}

mod actix_impl {
    use super::*;
    use actix::prelude::*;

    struct Counter(u64);

    impl Actor for Counter {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Incr;

    #[derive(Message)]
    #[rtype(result = "u64")]
    struct Get;

    impl Handler<Incr> for Counter {
        type Result = ();
        fn handle(&mut self, _: Incr, _: &mut Context<Self>) {
            self.0 += 1;
        }
    }

    impl Handler<Get> for Counter {
        type Result = u64;
        fn handle(&mut self, _: Get, _: &mut Context<Self>) -> u64 {
            self.0
        }
    }

    /// actix runs on its own single-threaded System.
    pub(super) struct Actix;

    impl Subject for Actix {
        fn tell_throughput(&self, n: u64) -> Duration {
            System::new().block_on(async move {
                let addr = Counter(0).start();
                let start = Instant::now();
                for _ in 0..n {
                    addr.do_send(Incr);
                }
                assert_eq!(addr.send(Get).await.unwrap(), n);
                start.elapsed()
            })
        }

        fn ask_round_trips(&self, n: u64) -> Duration {
            System::new().block_on(async move {
                let addr = Counter(0).start();
                let start = Instant::now();
                for _ in 0..n {
                    black_box(addr.send(Get).await.unwrap());
                }
                start.elapsed()
            })
        }

        fn spawn_ask_stop(&self, n: u64) -> Duration {
            System::new().block_on(async move {
                let start = Instant::now();
                let actors: Vec<_> = (0..n).map(|_| Counter(0).start()).collect();
                for a in &actors {
                    black_box(a.send(Get).await.unwrap());
                }
                // An actix actor stops when its last address is dropped.
                drop(actors);
                tokio::task::yield_now().await;
                start.elapsed()
            })
        }
    }
}

mod ractor_impl {
    use super::*;
    use ractor::{call, Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

    struct Counter;

    pub(super) enum Msg {
        Incr,
        Get(RpcReplyPort<u64>),
    }

    impl Actor for Counter {
        type Msg = Msg;
        type State = u64;
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<Msg>, _: ()) -> Result<u64, ActorProcessingErr> {
            Ok(0)
        }

        async fn handle(
            &self,
            _: ActorRef<Msg>,
            msg: Msg,
            state: &mut u64,
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                Msg::Incr => *state += 1,
                Msg::Get(reply) => {
                    let _ = reply.send(*state);
                }
            }
            Ok(())
        }
    }

    pub(super) struct Ractor(pub(super) Runtime);

    impl Subject for Ractor {
        fn tell_throughput(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let (actor, handle) = Actor::spawn(None, Counter, ()).await.unwrap();
                let start = Instant::now();
                for _ in 0..n {
                    actor.cast(Msg::Incr).unwrap();
                }
                assert_eq!(call!(actor, Msg::Get).unwrap(), n);
                let elapsed = start.elapsed();
                actor.stop(None);
                handle.await.unwrap();
                elapsed
            })
        }

        fn ask_round_trips(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let (actor, handle) = Actor::spawn(None, Counter, ()).await.unwrap();
                let start = Instant::now();
                for _ in 0..n {
                    black_box(call!(actor, Msg::Get).unwrap());
                }
                let elapsed = start.elapsed();
                actor.stop(None);
                handle.await.unwrap();
                elapsed
            })
        }

        fn spawn_ask_stop(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let start = Instant::now();
                let mut actors = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    actors.push(Actor::spawn(None, Counter, ()).await.unwrap());
                }
                for (a, _) in &actors {
                    black_box(call!(a, Msg::Get).unwrap());
                }
                for (a, handle) in actors {
                    a.stop(None);
                    handle.await.unwrap();
                }
                start.elapsed()
            })
        }
    }
}

mod kameo_impl {
    use super::*;
    use kameo::mailbox;
    use kameo::prelude::*;

    #[derive(kameo::Actor)]
    struct Counter {
        count: u64,
    }

    struct Incr;
    struct Get;

    impl Message<Incr> for Counter {
        type Reply = ();
        async fn handle(&mut self, _: Incr, _: &mut Context<Self, ()>) {
            self.count += 1;
        }
    }

    impl Message<Get> for Counter {
        type Reply = u64;
        async fn handle(&mut self, _: Get, _: &mut Context<Self, u64>) -> u64 {
            self.count
        }
    }

    fn spawn() -> ActorRef<Counter> {
        Counter::spawn_with_mailbox(Counter { count: 0 }, mailbox::unbounded())
    }

    pub(super) struct Kameo(pub(super) Runtime);

    impl Subject for Kameo {
        fn tell_throughput(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let actor = spawn();
                let start = Instant::now();
                for _ in 0..n {
                    actor.tell(Incr).try_send().unwrap();
                }
                assert_eq!(actor.ask(Get).await.unwrap(), n);
                let elapsed = start.elapsed();
                actor.stop_gracefully().await.unwrap();
                actor.wait_for_shutdown().await;
                elapsed
            })
        }

        fn ask_round_trips(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let actor = spawn();
                let start = Instant::now();
                for _ in 0..n {
                    black_box(actor.ask(Get).await.unwrap());
                }
                let elapsed = start.elapsed();
                actor.stop_gracefully().await.unwrap();
                actor.wait_for_shutdown().await;
                elapsed
            })
        }

        fn spawn_ask_stop(&self, n: u64) -> Duration {
            self.0.block_on(async {
                let start = Instant::now();
                let actors: Vec<_> = (0..n).map(|_| spawn()).collect();
                for a in &actors {
                    black_box(a.ask(Get).await.unwrap());
                }
                for a in &actors {
                    a.stop_gracefully().await.unwrap();
                    a.wait_for_shutdown().await;
                }
                start.elapsed()
            })
        }
    }
}

/// The subjects for a tokio flavour; actix only runs on its own current-thread
/// System, so it appears under `current_thread` alone.
fn subjects(flavor: &str) -> Vec<(&'static str, Box<dyn Subject>)> {
    let proc = monarch::Proc::new("bench");
    let mut subjects: Vec<(&'static str, Box<dyn Subject>)> = vec![
        ("tokio_channel", Box::new(bare::Bare(runtime(flavor)))),
        (
            "monarch",
            Box::new(monarch_impl::Monarch(runtime(flavor), proc)),
        ),
        ("ractor", Box::new(ractor_impl::Ractor(runtime(flavor)))),
        ("kameo", Box::new(kameo_impl::Kameo(runtime(flavor)))),
    ];
    if flavor == "current_thread" {
        subjects.push(("actix", Box::new(actix_impl::Actix)));
    }
    subjects
}

const FLAVORS: [&str; 2] = ["current_thread", "multi_thread"];

/// One criterion group: every subject on every flavour, `elements` per
/// iteration, timed by `run(subject, iters)`.
fn bench_group(
    c: &mut Criterion,
    name: &str,
    elements: u64,
    samples: usize,
    run: impl Fn(&dyn Subject, u64) -> Duration,
) {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(samples)
        .throughput(Throughput::Elements(elements));
    for flavor in FLAVORS {
        for (subject_name, subject) in subjects(flavor) {
            group.bench_function(BenchmarkId::new(flavor, subject_name), |b| {
                b.iter_custom(|iters| run(subject.as_ref(), iters))
            });
        }
    }
    group.finish();
}

fn tell(c: &mut Criterion) {
    bench_group(c, "tell_1M", TELLS, 10, |s, iters| {
        (0..iters).map(|_| s.tell_throughput(TELLS)).sum()
    });
}

fn ask(c: &mut Criterion) {
    bench_group(c, "ask_round_trip", 1, 100, |s, iters| {
        s.ask_round_trips(iters)
    });
}

fn spawn(c: &mut Criterion) {
    bench_group(c, "spawn_ask_stop_10k", SPAWNS, 10, |s, iters| {
        (0..iters).map(|_| s.spawn_ask_stop(SPAWNS)).sum()
    });
}

criterion_group!(benches, tell, ask, spawn);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report::print_ratios();
}

mod report {
    //! Reads criterion's estimates back and prints throughputs and ratios.
    use std::path::PathBuf;

    fn estimate_ns(group: &str, flavor: &str, name: &str) -> Option<f64> {
        let dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        let path = dir
            .join("criterion")
            .join(group)
            .join(flavor)
            .join(name)
            .join("new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["mean"]["point_estimate"].as_f64()
    }

    pub(super) fn print_ratios() {
        let groups = [
            ("tell_1M", super::TELLS as f64, "msg/s"),
            ("ask_round_trip", 1.0, "asks/s"),
            ("spawn_ask_stop_10k", super::SPAWNS as f64, "actors/s"),
        ];
        let names = ["tokio_channel", "monarch", "actix", "ractor", "kameo"];
        println!(
            "\n{:<20} {:<15} {:<14} {:>14} {:>12} {:>14}",
            "benchmark", "flavor", "subject", "per second", "time", "vs monarch"
        );
        for (group, elements, unit) in groups {
            for flavor in super::FLAVORS {
                let monarch = estimate_ns(group, flavor, "monarch");
                for name in names {
                    let Some(ns) = estimate_ns(group, flavor, name) else {
                        continue;
                    };
                    let rate = elements / (ns * 1e-9);
                    let ratio = monarch
                        .map(|m| format!("{:.2}x", ns / m))
                        .unwrap_or_default();
                    println!(
                        "{group:<20} {flavor:<15} {name:<14} {:>10.2} M {unit:<8} {:>9.1} us {:>10}",
                        rate / 1e6,
                        ns / 1e3,
                        ratio
                    );
                }
            }
        }
        println!(
            "(vs monarch: the subject's time divided by monarch's; above 1.00x monarch is faster)"
        );
    }
}
