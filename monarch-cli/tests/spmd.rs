//! SPMD runs on one host: `ProcMesh::run_spmd` gives every rank torchrun's
//! environment, the ranks find each other through the master address, each
//! rank's exit status comes back, the same procs run again, and `monarch
//! spmd` does the same from the command line with rank-prefixed output.
//!
//! `cargo test -p monarch-rs-cli --test spmd` (seconds).

mod peer;

use std::time::Duration;

use monarch::prelude::*;
use monarch::testing::{Failed, Scenarios};
use monarch::SpmdCommand;

/// Every scenario is bounded by this.
const LIMIT: Duration = Duration::from_secs(120);

fn main() {
    peer::bootstrap();
    Scenarios::new()
        .limit(LIMIT)
        .one_at_a_time()
        .test(
            "ranks_get_torchrun_env_and_meet_twice_on_the_same_procs",
            || Box::pin(meet_twice()),
        )
        .test("each_rank_exit_status_comes_back", || {
            Box::pin(exit_statuses())
        })
        .test("monarch_spmd_runs_a_command_on_local_procs", || {
            Box::pin(from_the_command_line())
        })
        .run();
}

async fn meet_twice() -> Result<(), Failed> {
    let procs = this_host().spawn_procs(shape! { procs = 3 }).await?;
    for round in 0..2 {
        let exits = procs.run_spmd(&peer::command()?).await?;
        if exits.len() != 3 || !exits.iter().all(|e| e.success()) {
            return Err(format!("round {round}: {exits:?}").into());
        }
    }
    procs.stop().await;
    Ok(())
}

async fn exit_statuses() -> Result<(), Failed> {
    let procs = this_host().spawn_procs(shape! { procs = 3 }).await?;
    let command = SpmdCommand::new("sh").args(["-c", "echo rank $RANK of $WORLD_SIZE; exit $RANK"]);
    let exits = procs.run_spmd(&command).await?;
    let codes: Vec<Option<i32>> = exits.iter().map(|e| e.code).collect();
    if codes != [Some(0), Some(1), Some(2)] {
        return Err(format!("exit codes {codes:?}").into());
    }
    if exits[2].how != "exited with code 2" || exits[1].success() {
        return Err(format!("{:?}", exits[2]).into());
    }
    let slow = SpmdCommand::new("sleep")
        .arg("30")
        .timeout(Duration::from_millis(300));
    let error = procs
        .slice("procs", 0)?
        .run_spmd(&slow)
        .await
        .err()
        .ok_or("a rank past its timeout came back as a success")?;
    if !error.to_string().contains("timeout") {
        return Err(format!("a rank past its timeout: {error}").into());
    }
    procs.stop().await;
    Ok(())
}

async fn from_the_command_line() -> Result<(), Failed> {
    let exe = std::env::current_exe()?;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_monarch"))
        .args(["spmd", "--procs-per-host", "2", "--"])
        .arg(&exe)
        .env(peer::PEER_ENV, "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(LIMIT / 2, output)
        .await
        .map_err(|_| "monarch spmd did not finish")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("monarch spmd: {}\n{stdout}\n{stderr}", output.status).into());
    }
    for rank in 0..2 {
        if !stdout.contains(&format!("[rank {rank}] rank {rank}")) {
            return Err(format!("no line of rank {rank} in:\n{stdout}").into());
        }
    }
    let failing = tokio::process::Command::new(env!("CARGO_BIN_EXE_monarch"))
        .args([
            "spmd",
            "--procs-per-host",
            "2",
            "--",
            "sh",
            "-c",
            "exit $RANK",
        ])
        .kill_on_drop(true)
        .output();
    let failing = tokio::time::timeout(LIMIT / 2, failing)
        .await
        .map_err(|_| "monarch spmd did not finish")??;
    let said = String::from_utf8_lossy(&failing.stderr);
    if failing.status.success() || !said.contains("rank 1") {
        return Err(format!("a failing rank: {} {said}", failing.status).into());
    }
    Ok(())
}
