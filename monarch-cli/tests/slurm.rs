//! Host agents under a real SLURM: a batch job of two agents on one node,
//! attached to through the rendezvous folder, runs actors and an SPMD job
//! and is cancelled with the agents' workers; agents as an `srun` step; a
//! job whose agents cannot start is an error carrying SLURM's output.
//!
//! Opt-in, against a running cluster: `scripts/slurm-test.sh` starts a
//! single-node one (root, Debian's slurm-wlm and munge), runs
//! `cargo test -p monarch-rs-cli --test slurm -- --ignored --nocapture` and
//! stops it. Skips with a message where `sinfo` shows no idle node.

mod peer;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use monarch::prelude::*;
use monarch::testing::{Failed, Scenarios};
use monarch::{HostMesh, JobCredential, SlurmJob, Submit};

/// Every scenario is bounded by this.
const LIMIT: Duration = Duration::from_secs(180);

/// Every wait inside a scenario is bounded by this.
const WAIT: Duration = Duration::from_secs(60);

fn main() {
    peer::bootstrap();
    Scenarios::new()
        .limit(LIMIT)
        .one_at_a_time()
        .ignored("a_batch_job_of_agents_runs_actors_and_spmd", || {
            Box::pin(batch_job())
        })
        .ignored("agents_run_as_an_srun_step", || Box::pin(srun_step()))
        .ignored(
            "agents_that_cannot_start_are_an_error_with_slurms_output",
            || Box::pin(broken_agents()),
        )
        .run();
}

/// An actor that says where it runs.
#[derive(Default)]
struct Where;

#[actor]
impl Where {
    #[endpoint]
    async fn host(&self) -> String {
        this_proc().proc_id().host().to_string()
    }
}

async fn batch_job() -> Result<(), Failed> {
    let Some(scratch) = cluster()? else {
        return Ok(());
    };
    let (path, credential) = credential(&scratch)?;
    let started = Instant::now();
    let agents = SlurmJob::new(1, monarch_binary(), &path)
        .agents_per_node(2)
        .submit(Submit::Batch)
        .rendezvous(scratch.join("rendezvous"))
        .start_timeout(WAIT)
        .launch()
        .await?;
    let job = agents.job_id().ok_or("a batch job has an id")?.to_string();
    let names: Vec<String> = agents.agents().iter().map(|a| a.name.clone()).collect();
    eprintln!(
        "job {job}: agents {names:?} announced after {:?}",
        started.elapsed()
    );
    if names.len() != 2 || names[0] == names[1] {
        return Err(format!("agents {names:?}").into());
    }
    let hosts = tokio::time::timeout(WAIT, agents.attach(&credential))
        .await
        .map_err(|_| "attach timed out")??;
    let procs = hosts.spawn_procs(shape! { procs = 2 }).await?;
    let mesh = procs.spawn::<Where>("where", ()).await?;
    let at = mesh.host().call().await?;
    let expected: Vec<String> = names.iter().flat_map(|n| [n.clone(), n.clone()]).collect();
    if at.values() != expected {
        return Err(format!("members run on {:?}, not {expected:?}", at.values()).into());
    }
    let command = peer::command()?;
    let exits = procs.run_spmd(&command).await?;
    if exits.len() != 4 || !exits.iter().all(|e| e.success()) {
        return Err(format!("spmd exits {exits:?}").into());
    }
    let addrs: Vec<_> = agents.agents().iter().map(|a| a.addr).collect();
    drop(mesh);
    tokio::time::timeout(WAIT, procs.stop())
        .await
        .map_err(|_| "stopping the mesh timed out")?;
    tokio::time::timeout(WAIT, agents.cancel())
        .await
        .map_err(|_| "cancel timed out")?;
    if !squeue(&job)?.is_empty() {
        return Err(format!("job {job} is still queued after cancel").into());
    }
    // The agents are gone: attaching again is refused or unanswered.
    let again = tokio::time::timeout(
        Duration::from_secs(15),
        HostMesh::attach(&addrs, &credential),
    )
    .await;
    if matches!(again, Ok(Ok(_))) {
        return Err("an agent still answers after its job was cancelled".into());
    }
    Ok(())
}

async fn srun_step() -> Result<(), Failed> {
    let Some(scratch) = cluster()? else {
        return Ok(());
    };
    let (path, credential) = credential(&scratch)?;
    let agents = SlurmJob::new(1, monarch_binary(), &path)
        .submit(Submit::Step)
        .port(0)
        .rendezvous(scratch.join("rendezvous"))
        .start_timeout(WAIT)
        .launch()
        .await?;
    if agents.job_id().is_some() || agents.agents().len() != 1 {
        return Err(format!("a step of one agent, not {:?}", agents.agents()).into());
    }
    let hosts = tokio::time::timeout(WAIT, agents.attach(&credential))
        .await
        .map_err(|_| "attach timed out")??;
    let procs = hosts.spawn_procs(shape! { procs = 1 }).await?;
    let mesh = procs.spawn::<Where>("where", ()).await?;
    let name = mesh.host().call_one().await?;
    if name != agents.agents()[0].name {
        return Err(format!("the member runs on {name}").into());
    }
    drop(mesh);
    tokio::time::timeout(WAIT, procs.stop())
        .await
        .map_err(|_| "stopping the mesh timed out")?;
    tokio::time::timeout(WAIT, agents.cancel())
        .await
        .map_err(|_| "cancel timed out")?;
    Ok(())
}

async fn broken_agents() -> Result<(), Failed> {
    let Some(scratch) = cluster()? else {
        return Ok(());
    };
    let (path, _) = credential(&scratch)?;
    let failed = SlurmJob::new(1, "/nonexistent/monarch", &path)
        .submit(Submit::Batch)
        .rendezvous(scratch.join("rendezvous"))
        .start_timeout(WAIT)
        .launch()
        .await;
    match failed {
        Ok(_) => Err("agents from a missing program announced themselves".into()),
        Err(e) => {
            let shown = e.to_string();
            eprintln!("as expected: {shown}");
            if shown.contains("/nonexistent/monarch") {
                Ok(())
            } else {
                Err(format!("the error does not show SLURM's output: {shown}").into())
            }
        }
    }
}

/// A scratch folder, or `None` (after saying so) where no SLURM node is idle.
fn cluster() -> Result<Option<PathBuf>, Failed> {
    let idle = std::process::Command::new("sinfo")
        .args(["-h", "-o", "%t"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("idle"))
        .unwrap_or(false);
    if !idle {
        eprintln!("skipped: no idle SLURM node (start one with scripts/slurm-single-node.sh)");
        return Ok(None);
    }
    let dir = std::env::temp_dir().join(format!("monarch-slurm-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(Some(dir))
}

/// The job credential, minted once into the scratch folder.
fn credential(scratch: &Path) -> Result<(PathBuf, JobCredential), Failed> {
    let path = scratch.join("job.pem");
    if path.exists() {
        return Ok((path.clone(), JobCredential::read(&path)?));
    }
    let credential = JobCredential::mint()?;
    credential.write(&path)?;
    Ok((path, credential))
}

fn monarch_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_monarch"))
}

/// What `squeue` lists for a job.
fn squeue(job: &str) -> Result<String, Failed> {
    let out = std::process::Command::new("squeue")
        .args(["-h", "-j", job])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
