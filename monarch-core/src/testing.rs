//! Probes and baselines for tests and benchmarks, behind the `testing`
//! feature: not part of the API a program builds on.

pub use crate::transport::baseline::{
    bare_quinn_echo, bare_quinn_fetch, bare_quinn_source, bare_quinn_transfer, BareQuinnPingPong,
};

/// How many casts this process has sent through a tree, for tests that check
/// a tree was used.
pub fn casts_started() -> u64 {
    crate::transport::current().map_or(0, |router| {
        router
            .casts_started
            .load(std::sync::atomic::Ordering::Relaxed)
    })
}

/// How many subtrees this process still awaits replies or a delivery report
/// from, over all casts it sent or relayed: zero once every cast is done.
pub fn casts_in_flight() -> usize {
    crate::transport::current().map_or(0, |router| router.casts_in_flight())
}

/// Tries to join the process listening at `addr` without the job credential,
/// as an intruder would, over QUIC and the same-host socket. `Ok` means it was
/// let in on either, which must never happen; the error says how each attempt
/// was refused.
pub async fn probe_as_intruder(addr: &str) -> Result<(), String> {
    crate::transport::probe::probe_as_intruder(addr).await
}

/// The multi-threaded runtime a test binary's scenarios run on, made on
/// first use; programs a test re-executes itself as can use it too.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the scenarios")
    });
    &RUNTIME
}

pub use libtest_mimic::Failed;

/// A scenario: an async test that returns why it failed.
pub type Scenario =
    fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Failed>>>>;

/// The scenarios of a test binary with `harness = false` (one that starts
/// processes of its own and so has its own `main`, which calls
/// [`crate::bootstrap`] first), run as tests on [`runtime`] with the usual
/// test-runner flags.
///
/// ```no_run
/// use monarch_core::testing::{Failed, Scenarios};
///
/// async fn adds() -> Result<(), Failed> {
///     if 1 + 1 == 2 { Ok(()) } else { Err("arithmetic".into()) }
/// }
///
/// fn main() {
///     monarch_core::bootstrap();
///     Scenarios::new()
///         .limit(std::time::Duration::from_secs(60))
///         .test("adds", || Box::pin(adds()))
///         .run();
/// }
/// ```
#[derive(Default)]
pub struct Scenarios {
    limit: Option<std::time::Duration>,
    serial: bool,
    log_faults: bool,
    trials: Vec<(&'static str, Scenario, bool)>,
    cleanup: Option<Box<dyn FnOnce()>>,
}

impl Scenarios {
    /// No scenarios yet, run in parallel and without a time limit.
    pub fn new() -> Self {
        Scenarios::default()
    }

    /// Fails any scenario still running after `limit`.
    pub fn limit(mut self, limit: std::time::Duration) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Runs the scenarios one at a time (for those that start processes and
    /// measure or kill them).
    pub fn one_at_a_time(mut self) -> Self {
        self.serial = true;
        self
    }

    /// Logs failures that reach this process's root (a worker killed on
    /// purpose, say) instead of exiting, as scenarios that inject faults
    /// need.
    pub fn log_worker_faults(mut self) -> Self {
        self.log_faults = true;
        self
    }

    /// Runs `cleanup` after the scenarios, before the process exits (to
    /// take down what `main` set up for them).
    pub fn finally(mut self, cleanup: impl FnOnce() + 'static) -> Self {
        self.cleanup = Some(Box::new(cleanup));
        self
    }

    /// Adds a scenario.
    pub fn test(mut self, name: &'static str, scenario: Scenario) -> Self {
        self.trials.push((name, scenario, false));
        self
    }

    /// Adds a scenario that runs only when asked for (`--ignored`).
    pub fn ignored(mut self, name: &'static str, scenario: Scenario) -> Self {
        self.trials.push((name, scenario, true));
        self
    }

    /// Runs the scenarios the command line selects and exits with the
    /// result.
    pub fn run(self) -> ! {
        if self.log_faults {
            crate::this_proc().set_fault_hook(std::sync::Arc::new(
                |event: &crate::SupervisionEvent| {
                    tracing::warn!(%event, "a failure reached this process's root");
                },
            ));
        }
        let limit = self.limit;
        let trials = self
            .trials
            .into_iter()
            .map(|(name, scenario, ignored)| {
                libtest_mimic::Trial::test(name, move || {
                    runtime().block_on(async move {
                        match limit {
                            Some(limit) => tokio::time::timeout(limit, scenario())
                                .await
                                .map_err(|_| Failed::from(format!("{name} ran past {limit:?}")))?,
                            None => scenario().await,
                        }
                    })
                })
                .with_ignored_flag(ignored)
            })
            .collect();
        let mut args = libtest_mimic::Arguments::from_args();
        if self.serial {
            args.test_threads = Some(1);
        }
        let conclusion = libtest_mimic::run(&args, trials);
        if let Some(cleanup) = self.cleanup {
            cleanup();
        }
        conclusion.exit()
    }
}
