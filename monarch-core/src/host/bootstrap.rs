//! Worker mode: how a binary started by [`crate::Host::spawn_procs`] becomes a
//! proc of its parent's job, and what it does when its parent goes away.
//!
//! The parent re-executes its own binary with the worker's settings in the
//! environment. [`bootstrap`], called first thing in `main` (or by
//! `#[monarch::main]`), sees them and serves as that worker until the parent
//! stops it or goes away; in any other process it returns at once.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::logging::init_logging;
use super::supervise::Supervisor;
use crate::runtime::proc::set_process_id;
use crate::transport::{JobCredential, ProcRef};
use crate::{this_proc, Config, ProcId, Shape};

/// The variable that carries a worker's settings.
pub(crate) const WORKER_ENV: &str = "MONARCH_WORKER";

/// What a worker is told at launch.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerConfig {
    pub(crate) proc_id: ProcId,
    /// The process that started it, which owns its actors.
    pub(crate) parent: ProcRef,
    /// The job's root process (its controller), where singletons live.
    pub(crate) root: ProcRef,
    pub(crate) credential: JobCredential,
    pub(crate) shape: Shape,
    /// The settings its host was given, if any; else it reads its own
    /// environment.
    pub(crate) config: Option<Config>,
}

impl WorkerConfig {
    pub(crate) fn encode(&self) -> String {
        let bytes = postcard::to_allocvec(self).expect("worker settings always encode");
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn decode(text: &str) -> Option<Self> {
        if text.len() % 2 != 0 {
            return None;
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        postcard::from_bytes(&bytes).ok()
    }
}

/// What this process is, once [`bootstrap`] made it a worker.
struct Worker {
    root: ProcRef,
}

static WORKER: OnceLock<Worker> = OnceLock::new();

/// The job's root process, if this process is a worker.
pub(crate) fn worker_root() -> Option<ProcRef> {
    WORKER.get().map(|w| w.root.clone())
}

/// Whether this process was started as a worker but has not called
/// [`bootstrap`] (so its `main` is running as if it were the controller).
pub(crate) fn started_as_worker_without_bootstrap() -> bool {
    WORKER.get().is_none() && std::env::var_os(WORKER_ENV).is_some()
}

/// Reads and removes this process's worker settings. Removing them keeps them
/// from the processes this worker may start in turn.
fn take_worker_config() -> Option<WorkerConfig> {
    let text = std::env::var(WORKER_ENV).ok()?;
    std::env::remove_var(WORKER_ENV);
    let config = WorkerConfig::decode(&text);
    if config.is_none() {
        eprintln!("monarch: {WORKER_ENV} is set but malformed; running as a controller");
    }
    config
}

/// Makes this binary a valid worker: call it first thing in `main`
/// (`#[monarch::main]` does). It also installs the log subscriber
/// ([`crate::init_logging`]).
///
/// In a process started by [`crate::Host::spawn_procs`] it never returns: it
/// serves actors until the parent stops the proc or exits (however it
/// exits), then ends the process. Anywhere else it returns at once.
///
/// ```no_run
/// monarch_core::bootstrap();
/// // ... the controller's program
/// ```
pub fn bootstrap() {
    init_logging();
    if WORKER.get().is_some() {
        return;
    }
    let Some(worker) = take_worker_config() else {
        return;
    };
    if !set_process_id(worker.proc_id.clone()) {
        eprintln!("monarch worker: bootstrap() must come before any other use of the runtime");
        std::process::exit(2);
    }
    let _ = WORKER.set(Worker {
        root: worker.root.clone(),
    });
    let config = worker.config.clone().unwrap_or_else(Config::from_env);
    let mut builder = match config.worker_threads() {
        Some(0) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("monarch worker: cannot start a runtime: {error}");
            std::process::exit(2);
        }
    };
    let code = runtime.block_on(serve(worker, config));
    std::process::exit(code);
}

/// Serves as a worker until the parent goes away; returns the exit code.
async fn serve(worker: WorkerConfig, config: Config) -> i32 {
    let router = match crate::transport::start(&config, Some(worker.credential)) {
        Ok(router) => router,
        Err(error) => {
            eprintln!("monarch worker {}: {error}", worker.proc_id);
            return 2;
        }
    };
    // Connecting to the parent introduces this worker to it.
    let parent_link = router.link(worker.parent.addr());
    let supervisor = match worker.parent.service::<Supervisor>() {
        Ok(supervisor) => supervisor,
        Err(error) => {
            eprintln!("monarch worker {}: {error}", worker.proc_id);
            return 2;
        }
    };
    // A failure nobody here handles goes to the actor's owner, in the parent.
    this_proc().set_fault_hook(Arc::new(move |event| {
        if supervisor.report(event.clone()).send().is_err() {
            eprintln!("monarch worker: cannot report a failure, the parent is gone:\n  {event}");
            std::process::exit(1);
        }
    }));
    tracing::debug!(proc = %worker.proc_id, "worker serving");
    // The parent holds the other end of stdin: end of file means it is gone
    // (exited, crashed or killed) or done with this proc. Losing the link to
    // it means the same.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
    });
    tokio::select! {
        _ = stdin_closed => 0,
        () = parent_link.wait_closed() => {
            tracing::error!(reason = %parent_link.close_reason(), "lost the parent process; exiting");
            0
        }
    }
}
