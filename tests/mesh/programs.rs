//! Scenarios that run this binary as a program of its own: a controller
//! that is killed, a root failure with the default fault hook, a `main` that
//! forgets `bootstrap()`, a failing job singleton, a whole shutdown.

use libtest_mimic::Failed;
use monarch::prelude::*;
use monarch::Host;

use crate::actors::{Caller, Counter, Ledger};
use crate::support::{bounded, check, process_gone, recording_owner, signal, wait_gone, LIMIT};
use crate::RUNTIME;

pub(crate) async fn controller_killed_takes_workers_along() -> Result<(), Failed> {
    let exe = std::env::current_exe()?;
    let mut controller = tokio::process::Command::new(exe)
        .env("MESH_TEST_CONTROLLER", "1")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = controller.stdout.take().ok_or("no stdout")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut pids = Vec::new();
    let mut forwarded = false;
    while let Some(line) = bounded(lines.next_line()).await? {
        if let Some(rest) = line.strip_prefix("worker pids: ") {
            pids = rest
                .split(',')
                .map(|p| p.trim().parse::<u32>())
                .collect::<Result<_, _>>()?;
        }
        // Worker output comes back named by actor mesh, proc mesh and rank.
        forwarded |= line == "[counter@procs0 1] hello from a worker";
        if forwarded && !pids.is_empty() {
            break;
        }
    }
    check(pids.len() == 2, "the controller reported its workers")?;
    check(forwarded, "a worker's output came back with its prefix")?;
    let controller_pid = controller.id().ok_or("no pid")?;
    signal(controller_pid, libc::SIGKILL);
    let _ = bounded(controller.wait()).await;
    for pid in pids {
        check(wait_gone(pid).await, "workers exit after their controller")?;
    }
    Ok(())
}

pub(crate) async fn default_fault_hook_reports_and_exits() -> Result<(), Failed> {
    let exe = std::env::current_exe()?;
    let output = tokio::process::Command::new(exe)
        .env("MESH_TEST_UNHANDLED", "1")
        .output();
    let output = bounded(output).await?;
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    check(output.status.code() == Some(1), "the program exits with 1")?;
    check(
        stderr.contains("unhandled actor failure")
            && stderr.contains("counter#")
            && stderr.contains("panic_now")
            && stderr.contains("asked to panic"),
        &format!("the report names the actor, endpoint and cause: {stderr}"),
    )?;
    Ok(())
}

/// The program for `default_fault_hook_reports_and_exits`: a root actor
/// fails with nobody awaiting, and `this_proc()`'s default hook handles it.
pub(crate) fn run_unhandled() -> ! {
    RUNTIME.block_on(async {
        let counter = this_proc()
            .spawn::<Counter>("counter", ())
            .await
            .expect("spawn");
        counter.panic_now().send().expect("send");
        tokio::time::sleep(LIMIT).await;
    });
    std::process::exit(0)
}

pub(crate) async fn a_worker_without_bootstrap_fails_fast() -> Result<(), Failed> {
    let exe = std::env::current_exe()?;
    let output = tokio::process::Command::new(exe)
        .env("MESH_TEST_NO_BOOTSTRAP", "1")
        .output();
    let output = bounded(output).await?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    check(
        stdout.contains("spawn_procs failed") && stdout.contains("before connecting"),
        &format!("the controller learns at once that its worker died: {stdout}"),
    )?;
    check(
        stderr.contains("refusing to start workers of workers"),
        &format!("the worker says why, through the controller: {stderr}"),
    )?;
    Ok(())
}

/// The program for `a_worker_without_bootstrap_fails_fast`: a `main` that
/// forgets `bootstrap()`, as controller and (re-executed) as worker.
pub(crate) fn run_without_bootstrap() -> ! {
    RUNTIME.block_on(async {
        match this_host().spawn_procs(shape! { procs = 1 }).await {
            Ok(_) => println!("spawn_procs succeeded"),
            Err(error) => {
                // The worker's copy ends here, its error on stderr.
                eprintln!("{error}");
                println!("spawn_procs failed: {error}");
            }
        }
    });
    std::process::exit(3)
}

/// The controller for `controller_killed_takes_workers_along`: spawn two
/// workers, print their pids, wait to be killed.
pub(crate) fn run_controller() -> ! {
    RUNTIME.block_on(async {
        let (owner, _events) = recording_owner();
        let procs = Host::owned_by(&owner)
            .spawn_procs(shape! { procs = 2 })
            .await
            .expect("spawn procs");
        let counters = procs.spawn::<Counter>("counter", ()).await.expect("spawn");
        let who = counters.whoami().call().await.expect("whoami");
        let one = counters.member(1).expect("rank 1");
        one.say("hello from a worker".into())
            .call()
            .await
            .expect("say");
        let pids: Vec<String> = who.values().iter().map(|(_, p)| p.to_string()).collect();
        println!("worker pids: {}", pids.join(","));
        tokio::time::sleep(LIMIT).await;
    });
    std::process::exit(0)
}

pub(crate) async fn singletons_fail_loudly_and_respawn() -> Result<(), Failed> {
    let said = run_program("MESH_TEST_SINGLETON").await?;
    for expected in [
        "worker sees the same singleton",
        "failed: the job's singleton `fragile`",
        "worker learns it failed",
        "respawned with a new id",
        "a fresh count: 1",
    ] {
        check(
            said.iter().any(|line| line.contains(expected)),
            &format!("the program said `{expected}`: {said:?}"),
        )?;
    }
    let failed = said
        .iter()
        .find(|line| line.starts_with("failed:"))
        .ok_or("no failure line")?;
    check(
        failed.contains("the ledger broke down") && failed.contains("respawn_controller"),
        &format!("the error names the failure and the way out: {failed}"),
    )?;
    Ok(())
}

/// The program for `singletons_fail_loudly_and_respawn`: a root process
/// whose singleton fails (its fault hook records rather than exits).
pub(crate) fn run_singleton() -> ! {
    RUNTIME.block_on(async {
        this_proc().set_fault_hook(std::sync::Arc::new(|_: &SupervisionEvent| {}));
        let procs = this_host()
            .spawn_procs(shape! { procs = 1 })
            .await
            .expect("spawn procs");
        let callers = procs.spawn::<Caller>("caller", ()).await.expect("spawn");
        let caller = callers.member(0).expect("rank 0");
        let ledger = get_or_spawn_controller::<Ledger>("fragile", ())
            .await
            .expect("the singleton");
        let seen = caller.ledger("fragile".into()).call().await;
        if seen.ok() == Some(ledger.actor_id().to_string()) {
            println!("worker sees the same singleton");
        }
        let _ = ledger.break_down().call().await;
        ledger.wait_stopped().await;
        match get_or_spawn_controller::<Ledger>("fragile", ()).await {
            Ok(again) => println!("silently replaced by {}", again.actor_id()),
            Err(error) => println!("failed: {error}"),
        }
        match caller.ledger("fragile".into()).call().await {
            Err(error) if error.to_string().contains("broke down") => {
                println!("worker learns it failed")
            }
            other => println!("worker got {other:?}"),
        }
        let fresh = respawn_controller::<Ledger>("fragile", ())
            .await
            .expect("respawn");
        if fresh.actor_id() != ledger.actor_id() {
            println!("respawned with a new id");
        }
        let count = fresh.touch().call().await.expect("touch");
        println!("a fresh count: {count}");
        procs.stop().await;
    });
    std::process::exit(0)
}

pub(crate) async fn shutdown_ends_every_worker() -> Result<(), Failed> {
    let said = run_program("MESH_TEST_SHUTDOWN").await?;
    check(
        said.iter().any(|line| line == "every worker is gone"),
        &format!("shutdown waited for every worker: {said:?}"),
    )?;
    Ok(())
}

/// The program for `shutdown_ends_every_worker`: two proc meshes (one used
/// through a slice only), then `monarch::shutdown()`.
pub(crate) fn run_shutdown() -> ! {
    RUNTIME.block_on(async {
        let (owner, _events) = recording_owner();
        let first = Host::owned_by(&owner)
            .spawn_procs(shape! { procs = 2 })
            .await
            .expect("spawn procs");
        let second = Host::owned_by(&owner)
            .spawn_procs(shape! { hosts = 2, gpus = 1 })
            .await
            .expect("spawn procs");
        let slice = second.slice("hosts", 1).expect("a slice");
        drop(second);
        let a = first.spawn::<Counter>("a", ()).await.expect("spawn");
        let b = slice.spawn::<Counter>("b", ()).await.expect("spawn");
        let mut pids: Vec<u32> = a
            .whoami()
            .call()
            .await
            .expect("whoami")
            .values()
            .iter()
            .map(|(_, p)| *p)
            .collect();
        pids.extend(
            b.whoami()
                .call()
                .await
                .expect("whoami")
                .values()
                .iter()
                .map(|(_, p)| *p),
        );
        // The slice keeps all of its mesh's procs up.
        let Some(first_of_second) = slice.proc_ids().next().cloned() else {
            unreachable!("a slice has procs")
        };
        println!("workers: {pids:?} (slice of {first_of_second})");
        monarch::shutdown().await;
        let left: Vec<u32> = pids.into_iter().filter(|pid| !process_gone(*pid)).collect();
        if left.is_empty() {
            println!("every worker is gone");
        } else {
            println!("still running: {left:?}");
        }
    });
    std::process::exit(0)
}

/// Runs this binary with `mode` set and returns what it printed.
async fn run_program(mode: &str) -> Result<Vec<String>, Failed> {
    let exe = std::env::current_exe()?;
    let output = tokio::process::Command::new(exe).env(mode, "1").output();
    let output = bounded(output).await?;
    check(
        output.status.success(),
        &format!(
            "the program succeeded: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
    )?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}
