//! The `monarch` command-line tool.
//!
//! `monarch host --listen ADDR --credential FILE` runs a host agent that
//! controllers holding the job credential attach to
//! (`monarch::HostMesh::attach`); `monarch credential new FILE` mints that
//! credential. `monarch kubernetes manifests` prints the objects that run
//! agents on Kubernetes; `monarch spmd` runs a torchrun-style program once
//! per proc.
//!
//! `monarch zorplex tasks` prints the tasks of a seed and spec;
//! `monarch zorplex eval` runs a scripted policy, or a trained model saved by
//! `async_rl --save DIR` (`--policy model --model-path DIR`), over every spec
//! and prints a table (or JSON with `--json`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use monarch::rl::model::load_policy;
use monarch::rl::zorplex::{
    evaluate_spec_each, Compat, Episode, EpisodeConfig, Noise, NoisyPolicy, OraclePolicy, Policy,
    ReportTable, Sampling, SpecKind, SpecReport, TaskSpec,
};
use monarch::{
    advertised_addr, local_hostname, run_host_agent, this_host, AgentOptions, HostMesh,
    JobCredential, KubernetesJob, Rendezvous, Shape, SpmdCommand, DEFAULT_AGENT_PORT,
};

#[derive(Parser)]
#[command(name = "monarch", version, about = "monarch-rs tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a host agent: controllers with the job credential attach to it
    /// and start worker procs on this host through it.
    Host(HostArgs),
    /// Run a command once per proc, as torchrun does (RANK, LOCAL_RANK,
    /// WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT set), on this
    /// host or on attached host agents; every rank's output is printed with
    /// a rank prefix, and the exit status is non-zero if any rank failed.
    Spmd(SpmdArgs),
    /// Job credentials for host agents.
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Host agents on Kubernetes.
    #[command(subcommand)]
    Kubernetes(KubernetesCommand),
    /// The Zorplex tool-use benchmark.
    #[command(subcommand)]
    Zorplex(ZorplexCommand),
}

#[derive(Args)]
struct HostArgs {
    /// Where to listen for controllers (QUIC, UDP); `0.0.0.0:PORT` listens
    /// on every interface.
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], DEFAULT_AGENT_PORT)))]
    listen: SocketAddr,
    /// The job credential (`monarch credential new FILE`); only controllers
    /// holding it are accepted.
    #[arg(long)]
    credential: PathBuf,
    /// This host's name in proc ids and errors (default: the hostname).
    #[arg(long)]
    name: Option<String>,
    /// Where programs sent by controllers are kept (default: under the
    /// system's temporary folder).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// A rendezvous folder on shared storage to write this agent's name and
    /// address into once it listens (`RANK.agent`), for launchers such as
    /// `monarch::SlurmJob`.
    #[arg(long)]
    announce: Option<PathBuf>,
    /// This agent's rank in the rendezvous (default: SLURM_PROCID, else
    /// JOB_COMPLETION_INDEX as a Kubernetes indexed Job sets it).
    #[arg(long, requires = "announce")]
    rank: Option<usize>,
    /// The address to announce (default: the listening address, or for
    /// 0.0.0.0 the address this host's name resolves to).
    #[arg(long, requires = "announce")]
    advertise: Option<SocketAddr>,
}

#[derive(Args)]
struct SpmdArgs {
    /// Host agents to run on (`ADDR:PORT`, comma-separated); this host when
    /// none are given.
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<SocketAddr>,
    /// The job credential the agents were started with (needed with
    /// --hosts).
    #[arg(long)]
    credential: Option<PathBuf>,
    /// Procs (ranks) per host.
    #[arg(long, default_value_t = 1)]
    procs_per_host: usize,
    /// MASTER_PORT (default: a port free on rank 0's host).
    #[arg(long)]
    master_port: Option<u16>,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum CredentialCommand {
    /// Mint a job credential into FILE (readable by its owner only; an
    /// existing file is left alone).
    New {
        /// The file to write.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum KubernetesCommand {
    /// Print the manifests of a StatefulSet of agents, its headless Service
    /// and the credential's Secret, as one JSON List for
    /// `kubectl apply -f -`.
    Manifests(ManifestsArgs),
}

#[derive(Args)]
struct ManifestsArgs {
    /// The job's name: the StatefulSet and Service are called this, the
    /// pods NAME-0, NAME-1, ...
    #[arg(long)]
    name: String,
    /// The container image, with `monarch` on its PATH.
    #[arg(long)]
    image: String,
    /// How many agent pods (hosts).
    #[arg(long)]
    replicas: usize,
    /// The namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// GPUs each pod asks for (`nvidia.com/gpu`).
    #[arg(long)]
    gpus_per_pod: Option<u32>,
    /// The agents' port.
    #[arg(long, default_value_t = DEFAULT_AGENT_PORT)]
    port: u16,
    /// The job credential to put in the Secret.
    #[arg(long)]
    credential: PathBuf,
}

#[derive(Subcommand)]
enum ZorplexCommand {
    /// Print the first tasks of a spec for a seed.
    Tasks(TasksArgs),
    /// Evaluate a scripted policy, or a saved model, on every spec (or the
    /// ones named).
    Eval(EvalArgs),
}

#[derive(Args)]
struct TasksArgs {
    /// Spec: simple, compositional_easy|medium|hard, multi_step, recursive_1|2|3.
    #[arg(long, default_value = "simple")]
    spec: SpecKind,
    /// Seed of the task generator and the value table.
    #[arg(long, default_value_t = 42)]
    seed: i64,
    /// How many tasks to print.
    #[arg(long, default_value_t = 10)]
    count: usize,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// The policy to evaluate.
    #[arg(long, value_enum, default_value_t = PolicyChoice::Oracle)]
    policy: PolicyChoice,
    /// The checkpoint folder of `--policy model` (what `async_rl --save`
    /// writes).
    #[arg(long, required_if_eq("policy", "model"))]
    model_path: Option<PathBuf>,
    /// Sampling temperature of `--policy model`; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Episodes per task for `--policy model` above temperature 0, each
    /// sampled with a seed of its own; the table counts every episode.
    #[arg(long, default_value_t = 1)]
    samples: u64,
    /// Fraction of episodes in which a noisy policy misbehaves.
    #[arg(long, default_value_t = 0.3)]
    error_rate: f64,
    /// Tasks per spec.
    #[arg(long, default_value_t = 50)]
    tasks: usize,
    /// First seed of the tasks: task i is the first task of seed + i, each
    /// from a table of its own (the noisy policies use seed + 1).
    #[arg(long, default_value_t = 42)]
    seed: i64,
    /// Evaluate only these specs (repeatable); all by default.
    #[arg(long = "spec")]
    specs: Vec<SpecKind>,
    /// Most assistant turns per episode.
    #[arg(long, default_value_t = EpisodeConfig::default().max_turns)]
    max_turns: usize,
    /// Score as the reference does, flaws included (answer parsing and the
    /// one-digit stop rule).
    #[arg(long)]
    reference_compat: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Print each episode the policy got wrong (its task, failure mode and
    /// turns with what the tools returned) before the table.
    #[arg(long, conflicts_with = "json")]
    failures: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum PolicyChoice {
    /// Solves every task through the tools.
    Oracle,
    /// Sometimes guesses without tools.
    SkipTools,
    /// Sometimes stops before answering.
    StopEarly,
    /// Sometimes calls tools over and over.
    SpamTools,
    /// Sometimes gives up where a task turns hard (a large value, or a
    /// second redirect).
    GiveUpWhenHard,
    /// A trained model from `--model-path`.
    Model,
}

fn main() -> ExitCode {
    // `monarch spmd` runs its procs as copies of this binary.
    monarch::bootstrap();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Host(args) => run_host(args),
        Command::Spmd(args) => run_spmd(args),
        Command::Credential(CredentialCommand::New { file }) => new_credential(&file),
        Command::Kubernetes(KubernetesCommand::Manifests(args)) => print_manifests(&args),
        Command::Zorplex(ZorplexCommand::Tasks(args)) => print_tasks(&args),
        Command::Zorplex(ZorplexCommand::Eval(args)) => run_eval(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_host(args: HostArgs) -> Result<(), String> {
    let credential = JobCredential::read(&args.credential).map_err(|e| e.to_string())?;
    let announce = match args.announce {
        Some(dir) => Some((Rendezvous::new(dir), scheduler_rank(args.rank)?)),
        None => None,
    };
    let name = args.name.unwrap_or_else(default_agent_name);
    let options = AgentOptions {
        listen: args.listen,
        credential,
        name: Some(name.clone()),
        cache_dir: args.cache_dir,
    };
    let advertise = args.advertise;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime
        .block_on(run_host_agent(options, |addr| {
            // Scripts wait for this line (and read the port from it).
            println!("monarch host agent listening on {addr}");
            if let Some((rendezvous, rank)) = &announce {
                let addr = advertise.unwrap_or_else(|| advertised_addr(addr));
                if let Err(e) = rendezvous.announce(*rank, &name, addr) {
                    // An agent nobody can find would only be waited for.
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
            }
        }))
        .map_err(|e| e.to_string())
}

/// The agent's rank in a rendezvous: `--rank`, else what the scheduler set.
fn scheduler_rank(rank: Option<usize>) -> Result<usize, String> {
    if let Some(rank) = rank {
        return Ok(rank);
    }
    for var in ["SLURM_PROCID", "JOB_COMPLETION_INDEX"] {
        if let Ok(value) = std::env::var(var) {
            return value
                .parse()
                .map_err(|_| format!("{var}={value:?} is not a rank"));
        }
    }
    Err("--announce needs --rank where neither SLURM_PROCID nor JOB_COMPLETION_INDEX is set".into())
}

/// The hostname; under SLURM with several agents per node, the second and
/// later ones add their local id (`node7-1`) so that every host is named
/// once.
fn default_agent_name() -> String {
    let host = local_hostname();
    match std::env::var("SLURM_LOCALID") {
        Ok(local) if local != "0" && !local.is_empty() => format!("{host}-{local}"),
        _ => host,
    }
}

fn run_spmd(args: SpmdArgs) -> Result<(), String> {
    let (program, rest) = args.command.split_first().ok_or("no command given")?;
    let mut command = SpmdCommand::new(program.clone()).args(rest.iter().cloned());
    if let Some(port) = args.master_port {
        command = command.master_port(port);
    }
    let per_host = Shape::line("procs", args.procs_per_host).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    runtime.block_on(async {
        let procs = if args.hosts.is_empty() {
            this_host().spawn_procs(per_host).await
        } else {
            let file = args
                .credential
                .as_deref()
                .ok_or("--hosts needs --credential")?;
            let credential = JobCredential::read(file).map_err(|e| e.to_string())?;
            let hosts = HostMesh::attach(&args.hosts, &credential)
                .await
                .map_err(|e| e.to_string())?;
            hosts.spawn_procs(per_host).await
        }
        .map_err(|e| e.to_string())?;
        let exits = procs.run_spmd(&command).await;
        procs.stop().await;
        let exits = exits.map_err(|e| e.to_string())?;
        let failed: Vec<String> = exits
            .iter()
            .filter(|exit| !exit.success())
            .map(|exit| format!("rank {} {}", exit.rank, exit.how))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("; "))
        }
    })
}

fn print_manifests(args: &ManifestsArgs) -> Result<(), String> {
    let credential = JobCredential::read(&args.credential).map_err(|e| e.to_string())?;
    let mut job = KubernetesJob::new(&args.name, &args.image, args.replicas)
        .namespace(&args.namespace)
        .port(args.port);
    if let Some(gpus) = args.gpus_per_pod {
        job = job.gpus_per_pod(gpus);
    }
    println!("{}", job.manifests(&credential).to_json());
    Ok(())
}

fn new_credential(file: &Path) -> Result<(), String> {
    let credential = JobCredential::mint().map_err(|e| e.to_string())?;
    credential.write(file).map_err(|e| e.to_string())?;
    println!("wrote a job credential to {}", file.display());
    Ok(())
}

fn print_tasks(args: &TasksArgs) -> Result<(), String> {
    let mut spec = TaskSpec::new(args.spec, args.seed);
    for i in 0..args.count {
        let task = spec.generate_task();
        if args.json {
            println!(
                "{}",
                serde_json::to_string(&task).map_err(|e| e.to_string())?
            );
        } else {
            println!("{i:>3}. {}  -> {}", task.question, task.answer);
        }
    }
    Ok(())
}

fn run_eval(args: &EvalArgs) -> Result<(), String> {
    if args.samples == 0 {
        return Err("--samples must be 1 or more".into());
    }
    if args.samples > 1 && !matches!(args.policy, PolicyChoice::Model) {
        return Err(
            "--samples above 1 needs --policy model: a scripted policy plays a task \
                    alike every time"
                .into(),
        );
    }
    if args.samples > 1 && args.temperature <= 0.0 {
        return Err(
            "--samples above 1 needs --temperature above 0: greedy decoding plays a \
                    task alike every time"
                .into(),
        );
    }
    let kinds = if args.specs.is_empty() {
        SpecKind::ALL.to_vec()
    } else {
        args.specs.clone()
    };
    let compat = if args.reference_compat {
        Compat::Reference
    } else {
        Compat::Improved
    };
    let config = EpisodeConfig {
        max_turns: args.max_turns,
        reference_stop_rule: args.reference_compat,
        ..EpisodeConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let reports = runtime.block_on(async {
        let noise = match args.policy {
            PolicyChoice::Oracle => {
                return eval_with(&kinds, args, compat, &config, OraclePolicy::new).await
            }
            PolicyChoice::SkipTools => Noise::SkipTools,
            PolicyChoice::StopEarly => Noise::StopEarly,
            PolicyChoice::SpamTools => Noise::SpamTools,
            PolicyChoice::GiveUpWhenHard => Noise::GiveUpWhenHard,
            PolicyChoice::Model => return eval_model(&kinds, args, compat, &config).await,
        };
        let seed = args.seed.wrapping_add(1);
        eval_with(&kinds, args, compat, &config, |kind| {
            NoisyPolicy::new(kind, noise, args.error_rate, seed)
        })
        .await
    })?;
    if args.json {
        let json = serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?;
        println!("{json}");
    } else {
        print!("{}", ReportTable(&reports));
    }
    Ok(())
}

/// Evaluates the checkpoint at `--model-path` with one policy for every
/// spec, sampling as `--temperature` says (seeded by `--seed`).
async fn eval_model(
    kinds: &[SpecKind],
    args: &EvalArgs,
    compat: Compat,
    config: &EpisodeConfig,
) -> Result<Vec<SpecReport>, String> {
    let dir = args
        .model_path
        .as_deref()
        .ok_or("--policy model needs --model-path DIR")?;
    let (mut policy, info) = load_policy(dir).map_err(|e| e.to_string())?;
    eprintln!(
        "{}: a {} model at policy version {}",
        dir.display(),
        info.model.family(),
        info.version
    );
    // Sample 0 keeps `--seed`, the others a seed of their own.
    let sampled = |sample: u64| EpisodeConfig {
        sampling: Sampling {
            temperature: args.temperature,
            top_p: 1.0,
            seed: args.seed as u64 ^ sample.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        },
        ..*config
    };
    let mut reports = Vec::with_capacity(kinds.len());
    for &kind in kinds {
        let mut report = eval_spec(kind, args, 0, compat, &sampled(0), &mut policy).await?;
        for sample in 1..args.samples {
            let more = eval_spec(kind, args, sample, compat, &sampled(sample), &mut policy).await?;
            report.merge(&more);
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Evaluates a fresh policy from `make_policy` on each spec.
async fn eval_with<P: Policy>(
    kinds: &[SpecKind],
    args: &EvalArgs,
    compat: Compat,
    config: &EpisodeConfig,
    mut make_policy: impl FnMut(SpecKind) -> P,
) -> Result<Vec<SpecReport>, String> {
    let mut reports = Vec::with_capacity(kinds.len());
    for &kind in kinds {
        let mut policy = make_policy(kind);
        reports.push(eval_spec(kind, args, 0, compat, config, &mut policy).await?);
    }
    Ok(reports)
}

/// Evaluates `policy` on the tasks of `kind` that `args` names (as its
/// `sample`-th sample of them), printing the episodes it got wrong where
/// `--failures` asks for them.
async fn eval_spec<P: Policy>(
    kind: SpecKind,
    args: &EvalArgs,
    sample: u64,
    compat: Compat,
    config: &EpisodeConfig,
    policy: &mut P,
) -> Result<SpecReport, String> {
    evaluate_spec_each(
        kind,
        args.seed,
        args.tasks,
        compat,
        config,
        policy,
        |seed, episode| {
            if args.failures && !episode.correct {
                let sample = (args.samples > 1).then_some(sample);
                print_failure(kind, seed, sample, episode);
            }
        },
    )
    .await
    .map_err(|e| e.to_string())
}

/// A failed episode: its task (and which sample of it), how it failed,
/// then each turn as written with what its tool calls returned.
fn print_failure(kind: SpecKind, seed: i64, sample: Option<u64>, episode: &Episode) {
    let sample = sample.map_or(String::new(), |s| format!(", sample {s}"));
    println!(
        "{kind}, seed {seed}{sample}: {} (answer {}): {}",
        episode.task.question,
        episode.task.answer,
        episode.failure_mode.name()
    );
    for (index, turn) in episode.turns.iter().enumerate() {
        let results: Vec<String> = turn
            .tool_calls
            .iter()
            .map(|(call, result)| format!("{call} -> {result}"))
            .collect();
        if results.is_empty() {
            println!("  {}: {:?}", index + 1, turn.output);
        } else {
            println!(
                "  {}: {:?}  [{}]",
                index + 1,
                turn.output,
                results.join("; ")
            );
        }
    }
}
