//! Worker mode: how a binary started by [`crate::Host::spawn_procs`] becomes a
//! proc of its controller's job.
//!
//! The controller re-executes its own binary with the worker's settings in the
//! environment. [`bootstrap`], called first thing in `main` (or by
//! `#[monarch::main]`), sees them and serves as that worker until the
//! controller stops it or goes away; in any other process it returns at once.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::net::{start_router, Credential, Header};
use crate::{this_proc, ProcId, Shape};

/// The variable that carries a worker's settings.
pub(crate) const WORKER_ENV: &str = "MONARCH_WORKER";

/// What a worker is told at launch.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerConfig {
    pub(crate) proc_id: ProcId,
    pub(crate) controller: String,
    pub(crate) credential: Credential,
    pub(crate) shape: Shape,
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

/// The proc id of this process, once [`bootstrap`] has made it a worker.
static WORKER_PROC: OnceLock<ProcId> = OnceLock::new();

/// This process's proc id as a worker, if [`bootstrap`] made it one.
pub(crate) fn worker_proc_id() -> Option<ProcId> {
    WORKER_PROC.get().cloned()
}

/// Whether this process was started as a worker but has not called
/// [`bootstrap`] (so its `main` is running as if it were the controller).
pub(crate) fn started_as_worker_without_bootstrap() -> bool {
    WORKER_PROC.get().is_none() && std::env::var_os(WORKER_ENV).is_some()
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

/// Makes this binary a valid worker: call it first thing in `main`.
///
/// In a process started by [`crate::Host::spawn_procs`] it never returns: it
/// serves actors until the controller stops the proc or exits (however it
/// exits), then ends the process. Anywhere else it returns at once.
///
/// ```no_run
/// monarch_core::bootstrap();
/// // ... the controller's program
/// ```
pub fn bootstrap() {
    if WORKER_PROC.get().is_some() {
        return;
    }
    let Some(config) = take_worker_config() else {
        return;
    };
    let _ = WORKER_PROC.set(config.proc_id.clone());
    // MONARCH_WORKER_THREADS: 0 for a current-thread runtime, n for n worker
    // threads; unset, tokio's default (one per core). Fewer threads cut
    // cross-process latency (fewer thread wake-ups per message) but let an
    // actor that blocks its thread stall the heartbeats too.
    let threads: Option<usize> = std::env::var("MONARCH_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut builder = match threads {
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
    let code = runtime.block_on(serve(config));
    std::process::exit(code);
}

/// Serves as a worker until the controller goes away; returns the exit code.
async fn serve(config: WorkerConfig) -> i32 {
    let proc = this_proc();
    let router = match start_router(Some(config.credential), proc) {
        Ok(router) => router,
        Err(error) => {
            eprintln!("monarch worker {}: {error}", config.proc_id);
            return 2;
        }
    };
    let controller = router.link(&config.controller);
    router.set_controller(std::sync::Arc::clone(&controller));
    // A failure nobody here handles goes to the actor's owner in the controller.
    proc.set_fault_hook(std::sync::Arc::new(move |event| {
        let header = Header::Supervision {
            event: event.clone(),
        };
        if !controller.send(header, bytes::Bytes::new()) {
            eprintln!("monarch worker: cannot report a failure, controller gone:\n  {event}");
            std::process::exit(1);
        }
    }));
    tracing::debug!(proc = %config.proc_id, "worker serving");
    // The controller holds the other end of stdin: end of file means it is gone
    // (exited, crashed or killed) or done with this proc.
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
    })
    .await;
    0
}
