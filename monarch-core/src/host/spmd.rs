//! SPMD jobs on a proc mesh, as `torchrun` runs them: an existing
//! multi-process program started once per proc with the environment
//! `torch.distributed` reads, every rank's output streamed back with a rank
//! prefix, and each rank's exit status returned. The procs stay up, so the
//! same mesh runs the next command at once.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::ProcMesh;
use crate::{open_port, Port, ProcId, ReplyPort};

/// A command to run on every proc of a mesh ([`ProcMesh::run_spmd`]).
///
/// ```no_run
/// # use monarch_core::{this_host, shape, SpmdCommand};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let procs = this_host().spawn_procs(shape! { gpus = 4 }).await?;
/// let exits = procs.run_spmd(&SpmdCommand::new("python").arg("train.py")).await?;
/// assert!(exits.iter().all(|exit| exit.success()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpmdCommand {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    master_port: Option<u16>,
    timeout: Duration,
}

impl SpmdCommand {
    /// Runs `program` (a path, or a name looked up in each proc's `PATH`).
    pub fn new(program: impl Into<String>) -> Self {
        SpmdCommand {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            master_port: None,
            timeout: Duration::from_secs(24 * 3600),
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets `key=value` in every rank's environment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The `MASTER_PORT` (default: a port free on rank 0's host when the run
    /// starts).
    pub fn master_port(mut self, port: u16) -> Self {
        self.master_port = Some(port);
        self
    }

    /// How long a rank may run (default: a day); past it the run fails.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// How one rank of an SPMD run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpmdExit {
    /// The rank (`RANK`).
    pub rank: usize,
    /// Its exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    /// How it ended, in words ("exited with code 0").
    pub how: String,
}

impl SpmdExit {
    /// Whether the rank exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// An SPMD run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum SpmdError {
    /// The mesh has no procs.
    #[error("an SPMD run needs at least one proc")]
    Empty,
    /// A rank could not be started or asked, or its proc was lost.
    #[error("rank {rank} ({proc}): {reason}")]
    Rank {
        /// The rank.
        rank: usize,
        /// Its proc.
        proc: ProcId,
        /// Why.
        reason: String,
    },
}

/// What each rank is told.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RankEnv {
    rank: usize,
    local_rank: usize,
    world_size: usize,
    local_world_size: usize,
    master_addr: String,
    master_port: u16,
}

impl RankEnv {
    fn vars(&self) -> [(&'static str, String); 6] {
        [
            ("RANK", self.rank.to_string()),
            ("LOCAL_RANK", self.local_rank.to_string()),
            ("WORLD_SIZE", self.world_size.to_string()),
            ("LOCAL_WORLD_SIZE", self.local_world_size.to_string()),
            ("MASTER_ADDR", self.master_addr.clone()),
            ("MASTER_PORT", self.master_port.to_string()),
        ]
    }
}

/// A line a rank wrote.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RankLine {
    rank: usize,
    line: String,
    stderr: bool,
}

impl ProcMesh {
    /// Runs `command` once per proc of this mesh (a slice runs on its procs
    /// only), with `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`,
    /// `MASTER_ADDR` and `MASTER_PORT` set as torchrun sets them (ranks in
    /// this mesh's order; local ranks count the procs of each host; the
    /// master is rank 0's host). Every rank's output is printed here, each
    /// line prefixed `[rank N]`. Returns each rank's exit once all have
    /// ended; the procs stay up for the next run.
    pub async fn run_spmd(&self, command: &SpmdCommand) -> Result<Vec<SpmdExit>, SpmdError> {
        let procs: Vec<_> = self.procs().cloned().collect();
        let first = procs.first().ok_or(SpmdError::Empty)?;
        let rank_failed = |rank: usize, reason: String| SpmdError::Rank {
            rank,
            proc: procs[rank].id().clone(),
            reason,
        };
        let runners = procs
            .iter()
            .enumerate()
            .map(|(rank, proc)| {
                proc.service::<SpmdRunner>()
                    .map_err(|e| rank_failed(rank, e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let master_addr = first
            .addr()
            .split('/')
            .next()
            .and_then(|socket| socket.parse::<std::net::SocketAddr>().ok())
            .map(|socket| socket.ip().to_string())
            .unwrap_or_else(|| "127.0.0.1".to_string());
        let master_port = match command.master_port {
            Some(port) => port,
            None => runners[0]
                .free_port()
                .call()
                .await
                .map_err(|e| rank_failed(0, e.to_string()))?,
        };
        let mut per_host: HashMap<&str, usize> = HashMap::new();
        let local_ranks: Vec<usize> = procs
            .iter()
            .map(|proc| {
                let seen = per_host.entry(proc.id().host()).or_default();
                *seen += 1;
                *seen - 1
            })
            .collect();
        let (output, mut lines) = open_port::<RankLine>();
        let printer = tokio::spawn(async move {
            while let Some(RankLine { rank, line, stderr }) = lines.recv().await {
                if stderr {
                    eprintln!("[rank {rank}] {line}");
                } else {
                    println!("[rank {rank}] {line}");
                }
            }
        });
        let runs = runners.iter().enumerate().map(|(rank, runner)| {
            let env = RankEnv {
                rank,
                local_rank: local_ranks[rank],
                world_size: procs.len(),
                local_world_size: per_host[procs[rank].id().host()],
                master_addr: master_addr.clone(),
                master_port,
            };
            let output = output.clone();
            async move {
                runner
                    .run(command.clone(), env, output)
                    .timeout(command.timeout + REPLY_MARGIN)
                    .call()
                    .await
            }
        });
        let results = futures::future::join_all(runs).await;
        drop(output);
        let exits = results
            .into_iter()
            .enumerate()
            .map(|(rank, result)| match result {
                Ok(Ok((code, how))) => Ok(SpmdExit { rank, code, how }),
                Ok(Err(reason)) => Err(rank_failed(rank, reason)),
                Err(error) => Err(rank_failed(rank, error.to_string())),
            })
            .collect::<Result<Vec<_>, _>>();
        // Lines sent before the replies are printed before returning.
        let _ = tokio::time::timeout(Duration::from_secs(2), printer).await;
        exits
    }
}

/// How much longer than a run's timeout its caller waits for the rank's
/// own report that it ran past.
const REPLY_MARGIN: Duration = Duration::from_secs(30);

/// The service on every proc that runs SPMD ranks.
#[derive(Default)]
pub(crate) struct SpmdRunner;

#[monarch_derive::actor]
impl SpmdRunner {
    /// A TCP port free on this host now, for `MASTER_PORT`.
    #[endpoint]
    async fn free_port(&self) -> Result<u16, String> {
        std::net::TcpListener::bind(("0.0.0.0", 0))
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .map_err(|e| format!("no free port: {e}"))
    }

    /// Runs `command` as rank `env.rank`, sending its output to `output`;
    /// replies with its exit code and how it ended.
    #[endpoint]
    async fn run(
        &self,
        command: SpmdCommand,
        env: RankEnv,
        output: Port<RankLine>,
        reply: ReplyPort<Result<(Option<i32>, String), String>>,
    ) {
        tokio::spawn(async move {
            reply.send(run_rank(command, env, output).await);
        });
    }
}

async fn run_rank(
    command: SpmdCommand,
    env: RankEnv,
    output: Port<RankLine>,
) -> Result<(Option<i32>, String), String> {
    let mut child = Command::new(&command.program)
        .args(&command.args)
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .envs(env.vars())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", command.program))?;
    let copies = [
        copy_lines(child.stdout.take(), output.clone(), env.rank, false),
        copy_lines(child.stderr.take(), output, env.rank, true),
    ];
    let status = match tokio::time::timeout(command.timeout, child.wait()).await {
        Ok(status) => status.map_err(|e| format!("cannot wait for {}: {e}", command.program))?,
        Err(_) => {
            let _ = child.kill().await;
            return Err(format!(
                "{} ran past its timeout of {:?} and was killed",
                command.program, command.timeout
            ));
        }
    };
    futures::future::join_all(copies).await;
    Ok((status.code(), super::exit::describe(&status)))
}

fn copy_lines(
    stream: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    output: Port<RankLine>,
    rank: usize,
    stderr: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(stream) = stream else { return };
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if output.send(RankLine { rank, line, stderr }).is_err() {
                break;
            }
        }
    })
}
