//! Host agents started by SLURM: `srun` inside the caller's allocation, or
//! a batch job submitted with `sbatch`; the agents announce themselves in a
//! [`Rendezvous`] folder on shared storage and the controller attaches to
//! them there.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::rendezvous::{AnnouncedAgent, Rendezvous, RendezvousError};
use super::{HostMesh, HostMeshError};
use crate::transport::JobCredential;

/// Host agents to start under SLURM: one per node by default, listening on
/// [`DEFAULT_AGENT_PORT`](super::DEFAULT_AGENT_PORT).
///
/// Inside an allocation (`SLURM_JOB_ID` set, as under `salloc` or in a batch
/// script) the agents are one `srun` step of it; elsewhere they are a batch
/// job of their own (`sbatch`). The agent program (`monarch`), the
/// credential file and the rendezvous folder must be at the same paths on
/// every node: shared storage, as a cluster's home or scratch file system
/// is.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use monarch_core::{shape, JobCredential, SlurmJob};
///
/// let credential = JobCredential::read("/shared/job.pem".as_ref())?;
/// let agents = SlurmJob::new(4, "/shared/bin/monarch", "/shared/job.pem")
///     .rendezvous("/shared/monarch-rendezvous")
///     .partition("gpu")
///     .launch()
///     .await?;
/// let hosts = agents.attach(&credential).await?;
/// let procs = hosts.spawn_procs(shape! { gpus = 8 }).await?;
/// // ... run the job on `procs` ...
/// procs.stop().await;
/// agents.cancel().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SlurmJob {
    nodes: usize,
    agents_per_node: usize,
    program: PathBuf,
    credential: PathBuf,
    rendezvous: PathBuf,
    port: Option<u16>,
    submit: Submit,
    partition: Option<String>,
    time_limit: Option<String>,
    extra: Vec<String>,
    start_timeout: Duration,
}

/// How a [`SlurmJob`] starts its agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submit {
    /// A step of the current allocation if there is one, else a batch job.
    Auto,
    /// `srun` in the current allocation.
    Step,
    /// `sbatch`: a job of its own, queued like any other.
    Batch,
}

/// Starting agents under SLURM went wrong.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// A SLURM command could not be run or refused the request.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// What it said.
        reason: String,
    },
    /// The agents did not all announce themselves.
    #[error(transparent)]
    Rendezvous(#[from] RendezvousError),
}

/// Agents SLURM runs for this job; [`SlurmAgents::cancel`] ends them (and
/// dropping this does, without waiting).
#[derive(Debug)]
pub struct SlurmAgents {
    job: Running,
    agents: Vec<AnnouncedAgent>,
    rendezvous: Rendezvous,
}

#[derive(Debug)]
enum Running {
    Step(Option<Child>),
    Batch(Option<String>),
}

impl SlurmJob {
    /// Agents on `nodes` nodes, run from `program` (the `monarch` binary)
    /// with the credential in `credential_file`, both paths as the nodes see
    /// them.
    pub fn new(
        nodes: usize,
        program: impl Into<PathBuf>,
        credential_file: impl Into<PathBuf>,
    ) -> Self {
        let credential: PathBuf = credential_file.into();
        let rendezvous = credential
            .parent()
            .unwrap_or(Path::new("."))
            .join("monarch-rendezvous");
        SlurmJob {
            nodes,
            agents_per_node: 1,
            program: program.into(),
            credential,
            rendezvous,
            port: None,
            submit: Submit::Auto,
            partition: None,
            time_limit: None,
            extra: Vec::new(),
            start_timeout: Duration::from_secs(300),
        }
    }

    /// Agents per node (default 1; more listen on ports the system picks).
    pub fn agents_per_node(mut self, agents: usize) -> Self {
        self.agents_per_node = agents;
        self
    }

    /// The shared folder the agents announce themselves in (default:
    /// `monarch-rendezvous` beside the credential file); each launch uses a
    /// fresh folder inside it.
    pub fn rendezvous(mut self, dir: impl Into<PathBuf>) -> Self {
        self.rendezvous = dir.into();
        self
    }

    /// The port agents listen on (default 26600 with one agent per node, a
    /// free one otherwise).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// How the agents are started (default [`Submit::Auto`]).
    pub fn submit(mut self, submit: Submit) -> Self {
        self.submit = submit;
        self
    }

    /// The partition (`--partition`).
    pub fn partition(mut self, partition: impl Into<String>) -> Self {
        self.partition = Some(partition.into());
        self
    }

    /// The time limit (`--time`, in SLURM's format, e.g. `2:00:00`).
    pub fn time_limit(mut self, limit: impl Into<String>) -> Self {
        self.time_limit = Some(limit.into());
        self
    }

    /// Another option for `srun` or `sbatch` (`--account=ml`, `--gpus-per-node=8`).
    pub fn option(mut self, option: impl Into<String>) -> Self {
        self.extra.push(option.into());
        self
    }

    /// How long to wait for every agent to start, queueing included
    /// (default 5 minutes).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts the agents and waits until each has announced where it
    /// listens; a job that ends or fails first is an error carrying its
    /// output.
    pub async fn launch(self) -> Result<SlurmAgents, SlurmError> {
        static LAUNCHES: AtomicU64 = AtomicU64::new(0);
        let folder = format!(
            "agents-{}-{}",
            std::process::id(),
            LAUNCHES.fetch_add(1, Ordering::Relaxed)
        );
        let rendezvous = Rendezvous::new(self.rendezvous.join(folder));
        create_dir(rendezvous.dir())?;
        let agents = self.nodes * self.agents_per_node;
        let in_allocation = std::env::var_os("SLURM_JOB_ID").is_some();
        let step = match self.submit {
            Submit::Auto => in_allocation,
            Submit::Step => true,
            Submit::Batch => false,
        };
        let mut running = if step {
            Running::Step(Some(self.start_step(&rendezvous)?))
        } else {
            Running::Batch(Some(self.submit_batch(&rendezvous).await?))
        };
        let mut last_check = Instant::now();
        let waited = rendezvous
            .wait(agents, self.start_timeout, async || {
                running.check(rendezvous.dir(), &mut last_check).await
            })
            .await;
        match waited {
            Ok(announced) => Ok(SlurmAgents {
                job: running,
                agents: announced,
                rendezvous,
            }),
            Err(e) => {
                running.end().await;
                Err(e.into())
            }
        }
    }

    /// The agent's command line: program and arguments.
    fn agent_command(&self, rendezvous: &Rendezvous) -> Vec<String> {
        let port = self.port.unwrap_or(if self.agents_per_node == 1 {
            super::DEFAULT_AGENT_PORT
        } else {
            0
        });
        vec![
            self.program.display().to_string(),
            "host".into(),
            "--listen".into(),
            format!("0.0.0.0:{port}"),
            "--credential".into(),
            self.credential.display().to_string(),
            "--announce".into(),
            rendezvous.dir().display().to_string(),
        ]
    }

    /// The options `srun` and `sbatch` share.
    fn shape_options(&self) -> Vec<String> {
        let mut options = vec![
            format!("--nodes={}", self.nodes),
            format!("--ntasks-per-node={}", self.agents_per_node),
            "--job-name=monarch-agents".into(),
        ];
        options.extend(self.partition.iter().map(|p| format!("--partition={p}")));
        options.extend(self.time_limit.iter().map(|t| format!("--time={t}")));
        options.extend(self.extra.iter().cloned());
        options
    }

    fn start_step(&self, rendezvous: &Rendezvous) -> Result<Child, SlurmError> {
        let output = rendezvous.dir().join("srun.out");
        let log = std::fs::File::create(&output).map_err(|source| RendezvousError::Io {
            path: output.clone(),
            source,
        })?;
        let err_log = log.try_clone().map_err(|source| RendezvousError::Io {
            path: output.clone(),
            source,
        })?;
        let mut args = self.shape_options();
        args.push(format!("--ntasks={}", self.nodes * self.agents_per_node));
        args.push("--kill-on-bad-exit=0".into());
        args.extend(self.agent_command(rendezvous));
        tracing::info!(args = ?args, "starting host agents with srun");
        Command::new("srun")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SlurmError::Command {
                command: format!("srun {}", args.join(" ")),
                reason: e.to_string(),
            })
    }

    async fn submit_batch(&self, rendezvous: &Rendezvous) -> Result<String, SlurmError> {
        let script = rendezvous.dir().join("agents.sbatch");
        let srun: Vec<String> = ["srun".to_string(), "--kill-on-bad-exit=0".to_string()]
            .into_iter()
            .chain(self.agent_command(rendezvous))
            .map(|word| shell_quote(&word))
            .collect();
        let text = format!("#!/bin/sh\nexec {}\n", srun.join(" "));
        std::fs::write(&script, text).map_err(|source| RendezvousError::Io {
            path: script.clone(),
            source,
        })?;
        let mut args = self.shape_options();
        args.push("--parsable".into());
        args.push(format!(
            "--output={}",
            rendezvous.dir().join("slurm-%j.out").display()
        ));
        args.push(script.display().to_string());
        let stdout = run("sbatch", &args).await?;
        // `--parsable` prints `JOBID` or `JOBID;CLUSTER`.
        let id = stdout.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() {
            return Err(SlurmError::Command {
                command: format!("sbatch {}", args.join(" ")),
                reason: "it printed no job id".into(),
            });
        }
        tracing::info!(job = %id, "submitted host agents with sbatch");
        Ok(id)
    }
}

impl SlurmAgents {
    /// The agents, by rank.
    pub fn agents(&self) -> &[AnnouncedAgent] {
        &self.agents
    }

    /// The batch job's id (`None` for a step of the caller's allocation).
    pub fn job_id(&self) -> Option<&str> {
        match &self.job {
            Running::Batch(id) => id.as_deref(),
            Running::Step(_) => None,
        }
    }

    /// Attaches to every agent, in rank order along `hosts`.
    pub async fn attach(&self, credential: &JobCredential) -> Result<HostMesh, HostMeshError> {
        let addrs: Vec<_> = self.agents.iter().map(|agent| agent.addr).collect();
        HostMesh::attach(&addrs, credential).await
    }

    /// Ends the agents (they kill their workers as they go) and removes the
    /// rendezvous folder.
    pub async fn cancel(mut self) {
        self.job.end().await;
        if let Err(e) = std::fs::remove_dir_all(self.rendezvous.dir()) {
            tracing::warn!(dir = %self.rendezvous.dir().display(), error = %e, "cannot remove the rendezvous folder");
        }
    }
}

impl Drop for SlurmAgents {
    fn drop(&mut self) {
        match &mut self.job {
            Running::Batch(Some(id)) => {
                let _ = std::process::Command::new("scancel").arg(&*id).status();
            }
            Running::Step(Some(child)) => terminate(child),
            _ => {}
        }
    }
}

impl Running {
    /// `Err` with what SLURM said once the agents' job has ended. A batch
    /// job is asked about at most once a second.
    async fn check(&mut self, dir: &Path, last: &mut Instant) -> Result<(), String> {
        match self {
            Running::Step(Some(child)) => match child.try_wait() {
                Ok(None) => Ok(()),
                Ok(Some(status)) => Err(format!(
                    "srun exited ({status}): {}",
                    tail_of(&dir.join("srun.out"))
                )),
                Err(e) => Err(format!("cannot wait for srun: {e}")),
            },
            Running::Batch(Some(id)) if last.elapsed() >= Duration::from_secs(1) => {
                *last = Instant::now();
                // squeue fails for a job id it no longer knows: ended.
                let args = ["-h", "-j", id.as_str(), "-o", "%T"].map(String::from);
                let state = run("squeue", &args)
                    .await
                    .map(|out| out.trim().to_string())
                    .unwrap_or_default();
                if matches!(state.as_str(), "PENDING" | "CONFIGURING" | "RUNNING") {
                    return Ok(());
                }
                let out = dir.join(format!("slurm-{id}.out"));
                let state = if state.is_empty() {
                    "ended"
                } else {
                    state.as_str()
                };
                Err(format!("job {id} {state}: {}", tail_of(&out)))
            }
            _ => Ok(()),
        }
    }

    /// Ends the job and waits (at most 30 s) for SLURM to have ended it.
    async fn end(&mut self) {
        match self {
            Running::Step(child) => {
                if let Some(mut child) = child.take() {
                    terminate(&child);
                    let waited = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
                    if waited.is_err() {
                        let _ = child.kill().await;
                    }
                }
            }
            Running::Batch(id) => {
                if let Some(id) = id.take() {
                    if let Err(e) = run("scancel", std::slice::from_ref(&id)).await {
                        tracing::warn!(job = %id, error = %e, "cannot cancel the agents' job");
                        return;
                    }
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let mut tick = tokio::time::interval(Duration::from_millis(200));
                    while Instant::now() < deadline {
                        tick.tick().await;
                        match run("squeue", &["-h".into(), "-j".into(), id.clone()]).await {
                            Ok(out) if out.trim().is_empty() => return,
                            Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                    tracing::warn!(job = %id, "the agents' job is still in the queue 30 s after scancel");
                }
            }
        }
    }
}

/// Asks `srun` to end its tasks: SIGTERM, which it passes on to them.
fn terminate(child: &Child) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) on the pid of a child this process has not reaped
        // (it still holds the Child), so the pid names that child.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// Runs a SLURM command to its end; its stdout, or an error with its stderr.
async fn run(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let command = || format!("{program} {}", args.join(" "));
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .map_err(|_| SlurmError::Command {
        command: command(),
        reason: "no answer within 60 s".into(),
    })?
    .map_err(|e| SlurmError::Command {
        command: command(),
        reason: e.to_string(),
    })?;
    if !output.status.success() {
        return Err(SlurmError::Command {
            command: command(),
            reason: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn create_dir(dir: &Path) -> Result<(), SlurmError> {
    std::fs::create_dir_all(dir).map_err(|source| {
        SlurmError::Rendezvous(RendezvousError::Io {
            path: dir.to_path_buf(),
            source,
        })
    })
}

/// The last lines of a log, for an error message.
fn tail_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(10)..].join("\n");
    if tail.is_empty() {
        format!("(nothing in {})", path.display())
    } else {
        tail
    }
}

/// `word` as one word of a POSIX shell command.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_script_quotes_every_word() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn agents_listen_on_the_default_port_alone_and_a_free_one_together() {
        let rendezvous = Rendezvous::new("/shared/r");
        let one = SlurmJob::new(2, "/bin/monarch", "/shared/job.pem");
        assert!(one
            .agent_command(&rendezvous)
            .contains(&"0.0.0.0:26600".to_string()));
        let two = one.clone().agents_per_node(2);
        assert!(two
            .agent_command(&rendezvous)
            .contains(&"0.0.0.0:0".to_string()));
        let options = two.partition("gpu").option("--account=ml").shape_options();
        assert_eq!(
            options,
            [
                "--nodes=2",
                "--ntasks-per-node=2",
                "--job-name=monarch-agents",
                "--partition=gpu",
                "--account=ml"
            ]
        );
    }
}
