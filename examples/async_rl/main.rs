//! The main job: warm a tiny transformer up on noisy scripted Zorplex
//! demonstrations, then train it with GRPO on actors, generators and trainer
//! in processes of their own, weights through registered memory, in sync
//! and in async mode from the same warm weights, and compare.
//! `--model smollm2` (the GGUF `scripts/fetch-smollm2.sh` fetches) and
//! `--model qwen2 --model-path DIR` run the same loop on those models,
//! without a warm-up unless `--warm-up-steps` asks for one (slow on CPU:
//! 135 M parameters and up).
//!
//! `cargo run --release --example async_rl` (about 11 minutes on two cores);
//! `-- --help` lists the flags. A progress bar shows each run's step, reward,
//! accuracy and policy version (a line per step where stderr is not a
//! terminal); every step is written as a JSON line to `--metrics` (default
//! `target/async_rl/metrics.jsonl`), the held-out accuracy of versions kept
//! along the way to `curve.jsonl` beside it, and reward and held-out accuracy
//! against wall time are plotted to `--plot` (`.svg` and `.png`).
//!
//! The held-out curve costs the runs nothing: an evaluator process (a
//! generator outside the pool) copies the newest weights every
//! `--curve-every` steps, a few milliseconds, and scores the copies once
//! both runs are over.

mod cpu;
mod plot;

/// Candle allocates a fresh buffer for every tensor: mimalloc reuses freed
/// pages for the next one (the worker processes are this binary too), and
/// with `MIMALLOC_PURGE_DELAY=-1` never returns them to the kernel, which
/// would fault them in again on every step. `cargo run` sets it from
/// `.cargo/config.toml` and the workers inherit it; set it yourself where
/// you start the binary another way.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use monarch::prelude::*;
use monarch::rl::async_rl::{
    evaluate, run_loop, spawn_generators, weighted_kinds, Generator, GeneratorParams, LoopConfig,
    LoopReport, Mode, PolicyTrainer, StepMetrics, TrainerParams, WarmUp,
};
use monarch::rl::model::{
    ModelSpec, SmolLM2, TextTokenizer, TinyConfig, ZorplexTokenizer, ONE_THREAD_PER_OPERATION,
};
use monarch::rl::zorplex::{EpisodeConfig, Noise, ReportTable, Sampling, SpecKind, SpecReport};
use monarch::Host;

/// Async RL on Zorplex with the tiny transformer (or SmolLM2, or Qwen2).
#[derive(Parser, Debug)]
struct Args {
    /// The policy model: `tiny` (trained from scratch), `smollm2` (a GGUF
    /// file) or `qwen2` (a Hugging Face directory).
    #[arg(long, value_enum, default_value_t = Family::Tiny)]
    model: Family,
    /// The GGUF file of `--model smollm2` (by default where
    /// `scripts/fetch-smollm2.sh` puts it), the directory of `--model qwen2`.
    #[arg(long, required_if_eq("model", "qwen2"))]
    model_path: Option<PathBuf>,
    /// `sync`, `async`, or `both` (the same warm weights, one after the other).
    #[arg(long, default_value = "both")]
    mode: String,
    /// Generator processes.
    #[arg(long, default_value_t = 2)]
    generators: usize,
    /// Trainer steps per mode.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Groups (tasks) per trainer step.
    #[arg(long, default_value_t = 4)]
    groups_per_step: usize,
    /// Episodes per group.
    #[arg(long, default_value_t = 8)]
    group_size: usize,
    /// Divide each group's advantages by its rewards' standard deviation.
    #[arg(long)]
    normalize_std: bool,
    /// The most versions a trained sample's policy may be behind.
    #[arg(long, default_value_t = 1)]
    max_policy_age: u64,
    /// Learning rate of the RL steps.
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    /// Weight of the KL penalty that anchors the policy to the model RL
    /// starts from (0: none).
    #[arg(long, default_value_t = 0.1)]
    kl_coef: f64,
    /// The temperature the generators sample at (the loss trains the
    /// policy at the temperature its samples were drawn at).
    #[arg(long, default_value_t = 0.5)]
    temperature: f32,
    /// How often each spec comes up in training, as weights of simple,
    /// compositional, multi-step and recursive tasks (evaluation scores
    /// each spec alike).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 3, 1, 3])]
    mix: Vec<usize>,
    /// Weight of the per-token credit for each part of a sum's working
    /// (the operands copied, each column added) against the rest of its
    /// group (0: the benchmark's episode reward alone).
    #[arg(long, default_value_t = 1.0)]
    working_credit: f32,
    /// Weight of the per-token credit for each lookup of a recursive task
    /// (right when it looks up the word the last redirect named) against
    /// the rest of its group (0: the benchmark's episode reward alone).
    #[arg(long, default_value_t = 1.0)]
    lookup_credit: f32,
    /// Seeds the model, the warm-up and the training tasks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Warm-up optimiser steps on scripted demonstrations (default: the
    /// warm-up's own for the tiny model, none for a pretrained one).
    #[arg(long)]
    warm_up_steps: Option<usize>,
    /// The warm-up's peak learning rate.
    #[arg(long, default_value_t = WarmUp::default().lr)]
    warm_up_lr: f64,
    /// Scripted demonstrations per spec the warm-up learns from.
    #[arg(long, default_value_t = WarmUp::default().episodes_per_kind)]
    warm_up_episodes: usize,
    /// Rows of worked sums the warm-up trains at each step (0: none).
    #[arg(long, default_value_t = WarmUp::default().drill_rows)]
    warm_up_drills: usize,
    /// The weight of the worked sums' loss in the warm-up against the
    /// demonstrations' (which weighs 1; 0: the drills train nothing).
    #[arg(long, default_value_t = WarmUp::default().drill_weight, value_parser = weight)]
    warm_up_drill_weight: f64,
    /// The fraction of the warm-up's demonstrations in which the scripted
    /// policy misbehaves, for the specs `--warm-up-spec-error-rates` does
    /// not name.
    #[arg(long, default_value_t = WarmUp::default().error_rate)]
    warm_up_error_rate: f64,
    /// Specs whose warm-up demonstrations misbehave at their own rate
    /// instead, as SPEC=RATE pairs separated by commas (default: the
    /// warm-up's own, compositional_easy=0.7 and recursive_2=0.6).
    #[arg(long, value_delimiter = ',', value_parser = spec_rate)]
    warm_up_spec_error_rates: Option<Vec<(SpecKind, f64)>>,
    /// Specs whose warm-up demonstrations misbehave only in the named ways,
    /// as SPEC=NOISE+NOISE pairs separated by commas, each NOISE one of
    /// skip_tools, stop_early, spam_tools, give_up_when_hard (default: the
    /// warm-up's own, compositional_easy=give_up_when_hard and
    /// recursive_2=give_up_when_hard; a spec not named misbehaves in the
    /// first three ways, in equal shares).
    #[arg(long, value_delimiter = ',', value_parser = spec_noises)]
    warm_up_spec_noises: Option<Vec<(SpecKind, Vec<Noise>)>>,
    /// First seed of the held-out evaluation tasks (task i is the first
    /// task of this seed + i, each from a table of its own).
    #[arg(long, default_value_t = 10_000)]
    eval_seed: i64,
    /// Held-out tasks per spec.
    #[arg(long, default_value_t = 100)]
    eval_tasks: usize,
    /// Most assistant turns per episode.
    #[arg(long, default_value_t = EpisodeConfig::default().max_turns)]
    max_turns: usize,
    /// Most tokens the model writes per turn.
    #[arg(long, default_value_t = EpisodeConfig::default().max_tokens_per_turn)]
    max_tokens_per_turn: usize,
    /// Kill one generator's process after this many steps of each run.
    #[arg(long)]
    kill_generator_after: Option<usize>,
    /// Where the per-step metrics go, one JSON object a line.
    #[arg(long, default_value = "target/async_rl/metrics.jsonl")]
    metrics: PathBuf,
    /// Keep the weights for the held-out curve every this many steps.
    #[arg(long, default_value_t = 10)]
    curve_every: usize,
    /// Held-out tasks per spec for each point of the curve.
    #[arg(long, default_value_t = 20)]
    curve_tasks: usize,
    /// The held-out accuracy on the curve (mean over the specs, 0..1) whose
    /// wall time to reach is reported for each mode (default: ten points
    /// above the starting policy's).
    #[arg(long)]
    target_accuracy: Option<f64>,
    /// The plot's path without extension: `.svg` and `.png` are written.
    #[arg(long, default_value = "target/async_rl/plot")]
    plot: PathBuf,
    /// Save the starting policy in `DIR/warm` and each run's final policy
    /// here (in `DIR/sync` and `DIR/async` when both run), for `monarch
    /// zorplex eval --policy model --model-path` and `--init`.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Start from this checkpoint (as `--save` writes them, `DIR/warm` for
    /// a warm model) instead of fresh weights, with no warm-up unless
    /// `--warm-up-steps` asks for one.
    #[arg(long)]
    init: Option<PathBuf>,
}

/// `host`, its processes told to keep candle to one thread per operation.
fn one_thread_per_operation(host: Host) -> Host {
    ONE_THREAD_PER_OPERATION
        .iter()
        .fold(host, |host, &(name, value)| host.with_env(name, value))
}

/// A weight of `--warm-up-drill-weight`: a finite number of 0 or more.
fn weight(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|w| w.is_finite() && *w >= 0.0)
        .ok_or_else(|| format!("`{text}` is not a weight (a number of 0 or more)"))
}

/// A SPEC=RATE pair of `--warm-up-spec-error-rates`.
fn spec_rate(pair: &str) -> Result<(SpecKind, f64), String> {
    let (spec, rate) = spec_pair(pair, "SPEC=RATE", "recursive_2=0.4")?;
    let rate = rate
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("`{rate}` is not a rate between 0 and 1"))?;
    Ok((spec, rate))
}

/// A SPEC=NOISE+NOISE pair of `--warm-up-spec-noises`.
fn spec_noises(pair: &str) -> Result<(SpecKind, Vec<Noise>), String> {
    let (spec, noises) = spec_pair(pair, "SPEC=NOISE+NOISE", "recursive_2=give_up_when_hard")?;
    let noises = noises
        .split('+')
        .map(|n| n.parse::<Noise>().map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((spec, noises))
}

/// The spec of a `SPEC=...` pair written as `form` (`example` shows one),
/// and the text after the `=`.
fn spec_pair<'a>(pair: &'a str, form: &str, example: &str) -> Result<(SpecKind, &'a str), String> {
    let (spec, rest) = pair
        .split_once('=')
        .ok_or_else(|| format!("`{pair}` is not {form} (for example {example})"))?;
    let spec = spec.parse::<SpecKind>().map_err(|e| e.to_string())?;
    Ok((spec, rest))
}

/// A model family of `--model`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Family {
    Tiny,
    Smollm2,
    Qwen2,
}

/// One mode's run: the loop's report, the held-out table after it, and the
/// versions kept for the curve with the wall time each was published at.
struct Run {
    report: LoopReport,
    after: Vec<SpecReport>,
    kept: Vec<(u64, f64)>,
    /// How busy the machine's CPUs were during the loop.
    cpu_busy: Option<cpu::CpuBusy>,
}

/// A point of the held-out curve.
#[derive(serde::Serialize)]
struct CurvePoint {
    mode: Mode,
    version: u64,
    wall_seconds: f64,
    /// Mean over the specs.
    accuracy: f64,
    per_spec: Vec<(String, f64)>,
}

#[monarch::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let modes = match args.mode.as_str() {
        "both" => vec![Mode::Sync, Mode::Async],
        other => vec![other.parse::<Mode>()?],
    };
    if args.curve_every == 0 {
        return Err("--curve-every must be at least 1".into());
    }
    // A generator killed on purpose is a fault this job expects and
    // survives; report it instead of exiting.
    this_proc().set_fault_hook(Arc::new(|event: &SupervisionEvent| {
        eprintln!("worker fault: {event}");
    }));
    let kinds = SpecKind::rl_mix().to_vec();
    let training_kinds = weighted_kinds(&kinds, &args.mix).map_err(|e| format!("--mix: {e}"))?;
    let path = || args.model_path.clone().unwrap_or_default();
    let model = match args.model {
        Family::Tiny => ModelSpec::Tiny {
            config: TinyConfig {
                vocab: ZorplexTokenizer::new().vocab_size(),
                ..TinyConfig::default()
            },
        },
        Family::Smollm2 => ModelSpec::Smollm2 {
            path: args
                .model_path
                .clone()
                .unwrap_or_else(SmolLM2::default_path),
        },
        Family::Qwen2 => ModelSpec::Qwen2 { dir: path() },
    };
    let warm_up_steps = args
        .warm_up_steps
        .unwrap_or(match (&args.init, args.model) {
            (None, Family::Tiny) => WarmUp::default().steps,
            _ => 0,
        });
    let timeout = Duration::from_secs(600);

    // The trainer computes a step's micro-batches on a thread each, with
    // candle's own per-operation threads off (too small to pay here).
    let trainer_procs = one_thread_per_operation(Host::owned_by(this_proc()))
        .spawn_procs(shape! { trainer = 1 })
        .await?;
    let trainer = trainer_procs
        .spawn::<PolicyTrainer>(
            "trainer",
            TrainerParams {
                model: model.clone(),
                seed: args.seed,
                ring_slots: 2,
                group_size: args.group_size,
                normalize_std: args.normalize_std,
                lr: args.lr,
                max_policy_age: args.max_policy_age,
                kl_coef: args.kl_coef,
                working_credit: args.working_credit,
                lookup_credit: args.lookup_credit,
            },
        )
        .await?;
    if let Some(dir) = &args.init {
        let (info, _) = trainer
            .load(dir.clone())
            .timeout(timeout)
            .call_one()
            .await?;
        println!(
            "starting from {} (policy version {} there)",
            dir.display(),
            info.version
        );
    }
    if warm_up_steps > 0 {
        println!("warming up ({warm_up_steps} steps)...");
        let (warm_report, _) = trainer
            .warm_up(WarmUp {
                episodes_per_kind: args.warm_up_episodes,
                steps: warm_up_steps,
                lr: args.warm_up_lr,
                drill_rows: args.warm_up_drills,
                drill_weight: args.warm_up_drill_weight,
                error_rate: args.warm_up_error_rate,
                spec_error_rates: args
                    .warm_up_spec_error_rates
                    .clone()
                    .unwrap_or(WarmUp::default().spec_error_rates),
                spec_noises: args
                    .warm_up_spec_noises
                    .clone()
                    .unwrap_or(WarmUp::default().spec_noises),
                seed: args.seed,
            })
            .timeout(Duration::from_secs(3600))
            .call_one()
            .await?;
        println!(
            "warm-up: loss {:.3} -> {:.3} in {:.0} s",
            warm_report.first_loss, warm_report.last_loss, warm_report.seconds
        );
    }
    if let Some(dir) = &args.save {
        let dir = dir.join("warm");
        trainer
            .save(dir.clone())
            .timeout(timeout)
            .call_one()
            .await?;
        println!("saved the starting policy to {}", dir.display());
    }
    let generator = GeneratorParams {
        model,
        weights: trainer.weights().call_one().await?,
        episode: EpisodeConfig {
            max_turns: args.max_turns,
            max_tokens_per_turn: args.max_tokens_per_turn,
            sampling: Sampling {
                temperature: args.temperature,
                ..EpisodeConfig::sampled().sampling
            },
            ..EpisodeConfig::sampled()
        },
        sync_deadline_ms: 30_000,
        id: 0,
    };
    let pool = spawn_generators(args.generators, generator.clone(), timeout).await?;
    let evaluator_procs = one_thread_per_operation(Host::owned_by(this_proc()))
        .spawn_procs(shape! { evaluator = 1 })
        .await?;
    let evaluator = evaluator_procs
        .spawn::<Generator>("evaluator", generator)
        .await?;
    let before = evaluate(&pool, &kinds, args.eval_seed, args.eval_tasks, 0.0, timeout).await?;
    println!(
        "\nwarm model, held-out tasks (greedy):\n{}",
        ReportTable(&before)
    );

    if let Some(dir) = args.metrics.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut metrics = std::fs::File::create(&args.metrics)?;
    let mut runs: Vec<Run> = Vec::new();
    for (i, &mode) in modes.iter().enumerate() {
        if i > 0 {
            trainer.reset().timeout(timeout).call_one().await?;
        }
        let config = LoopConfig {
            mode,
            steps: args.steps,
            groups_per_step: args.groups_per_step,
            group_size: args.group_size,
            max_policy_age: args.max_policy_age,
            kinds: training_kinds.clone(),
            seed: args.seed + 1,
            call_timeout: timeout,
            kill_generator_after: args.kill_generator_after,
        };
        println!("\n{mode} RL, {} steps:", args.steps);
        let started = Instant::now();
        let warm = evaluator.keep().timeout(timeout).call_one().await?;
        let (keep, keeper) = keeper(evaluator.clone(), timeout);
        let bar = progress(mode, args.steps);
        let mut write_error = None;
        let cpu_before = cpu::CpuTimes::now();
        let report = run_loop(&trainer, &pool, &config, |step: &StepMetrics| {
            show(&bar, step);
            if step.step % args.curve_every == 0 || step.step == args.steps {
                let _ = keep.send(());
            }
            if let Err(e) = serde_json::to_writer(&mut metrics, step)
                .map_err(std::io::Error::from)
                .and_then(|()| std::io::Write::write_all(&mut metrics, b"\n"))
            {
                write_error.get_or_insert(e);
            }
        })
        .await?;
        let cpu_busy = cpu_before
            .zip(cpu::CpuTimes::now())
            .map(|(before, after)| before.busy_until(&after));
        // The keeper ends once its sender is gone.
        drop(keep);
        bar.finish();
        if let Some(e) = write_error {
            return Err(format!("writing {}: {e}", args.metrics.display()).into());
        }
        let mut kept = vec![(warm, 0.0)];
        for version in keeper.await?? {
            if let Some(step) = report.steps.iter().find(|s| s.version == version) {
                kept.push((version, step.wall_seconds));
            }
        }
        for event in &report.events {
            println!("  event: {event:?}");
        }
        let after = evaluate(&pool, &kinds, args.eval_seed, args.eval_tasks, 0.0, timeout).await?;
        println!(
            "{mode}: {:.1} s, {:.2} trajectories/s; held-out after training (greedy):\n{}",
            started.elapsed().as_secs_f64(),
            report.trajectories_per_second(),
            ReportTable(&after)
        );
        if let Some(dir) = &args.save {
            let dir = if modes.len() > 1 {
                dir.join(mode.to_string())
            } else {
                dir.clone()
            };
            let info = trainer
                .save(dir.clone())
                .timeout(timeout)
                .call_one()
                .await?;
            println!(
                "saved policy version {} to {} (score it with: cargo run -p monarch-rs-cli -- zorplex eval --policy model --model-path {} --seed S)",
                info.version,
                dir.display(),
                dir.display()
            );
        }
        if let Some(busy) = cpu_busy {
            println!(
                "{mode}: the machine's CPUs were {:.0}% busy during the loop ({} cores)",
                busy.fraction * 100.0,
                busy.cpus
            );
        }
        runs.push(Run {
            report,
            after,
            kept,
            cpu_busy,
        });
    }

    println!(
        "\nscoring the held-out curve ({} kept versions, {} tasks per spec)...",
        runs.iter().map(|r| r.kept.len()).sum::<usize>(),
        args.curve_tasks
    );
    let mut curves: Vec<Vec<CurvePoint>> = Vec::new();
    for run in &runs {
        let mut curve = Vec::with_capacity(run.kept.len());
        for &(version, wall_seconds) in &run.kept {
            let mut per_spec = Vec::with_capacity(kinds.len());
            for &kind in &kinds {
                let report = evaluator
                    .evaluate_kept(version, kind, args.eval_seed, args.curve_tasks, 0.0)
                    .timeout(timeout)
                    .call_one()
                    .await?;
                per_spec.push((kind.to_string(), report.accuracy));
            }
            let accuracy = per_spec.iter().map(|(_, a)| a).sum::<f64>() / per_spec.len() as f64;
            curve.push(CurvePoint {
                mode: run.report.mode,
                version,
                wall_seconds,
                accuracy,
                per_spec,
            });
        }
        curves.push(curve);
    }
    write_curve(&args.metrics.with_file_name("curve.jsonl"), &curves)?;

    println!(
        "\nsummary (held-out accuracy, greedy, {} tasks per spec):",
        args.eval_tasks
    );
    print!("{:<10}", "");
    for kind in &kinds {
        print!("{:>20}", kind.to_string());
    }
    println!("{:>16}{:>14}", "trajectories/s", "sync mean ms");
    print_row("warm", &before, None);
    for run in &runs {
        print_row(&run.report.mode.to_string(), &run.after, Some(&run.report));
    }
    // Every run's curve starts at the same starting weights.
    let start = curves
        .first()
        .and_then(|c| c.first())
        .map_or(0.0, |p| p.accuracy);
    let target = args.target_accuracy.unwrap_or((start + 0.1).min(1.0));
    for (run, curve) in runs.iter().zip(&curves) {
        let best = curve.iter().map(|p| p.accuracy).fold(0.0, f64::max);
        match curve.iter().find(|p| p.accuracy >= target) {
            Some(point) => println!(
                "{}: held-out accuracy {:.0}% (target {:.0}%) reached at {:.1} s (version {})",
                run.report.mode,
                point.accuracy * 100.0,
                target * 100.0,
                point.wall_seconds,
                point.version
            ),
            None => println!(
                "{}: held-out accuracy target {:.0}% not reached (best {:.0}%)",
                run.report.mode,
                target * 100.0,
                best * 100.0
            ),
        }
    }
    if let Some(bytes) = runs
        .iter()
        .flat_map(|r| &r.report.syncs)
        .map(|s| s.bytes)
        .max()
    {
        let syncs: Vec<f64> = runs
            .iter()
            .flat_map(|r| &r.report.syncs)
            .map(|s| s.seconds)
            .collect();
        let sync = syncs.iter().sum::<f64>() / syncs.len() as f64;
        let copy = memcpy_seconds(bytes as usize);
        println!(
            "weight sync: {:.2} ms per version of {:.1} MiB on average ({} syncs), a memcpy of the same bytes here {:.2} ms: {:.1}x",
            sync * 1e3,
            bytes as f64 / (1 << 20) as f64,
            syncs.len(),
            copy * 1e3,
            sync / copy
        );
    }
    if let [sync, async_] = runs.as_slice() {
        println!(
            "async / sync throughput: {:.2}x",
            async_.report.trajectories_per_second() / sync.report.trajectories_per_second()
        );
        if let Some(busy) = sync.cpu_busy {
            // Overlap only uses CPU time the sync loop left idle: the same
            // work at 100% busy takes busy x the sync loop's time. Busy time
            // includes threads spin-waiting for work, so this is an estimate.
            println!(
                "the sync loop kept the {} cores {:.0}% busy: overlapping the same work leaves room for about {:.2}x on this machine",
                busy.cpus,
                busy.fraction * 100.0,
                1.0 / busy.fraction.max(f64::EPSILON)
            );
        }
    }
    let series: Vec<plot::Series> = runs
        .iter()
        .zip(&curves)
        .map(|(run, curve)| plot::Series {
            name: run.report.mode.to_string(),
            reward: run
                .report
                .steps
                .iter()
                .map(|s| (s.wall_seconds, s.mean_reward))
                .collect(),
            accuracy: curve.iter().map(|p| (p.wall_seconds, p.accuracy)).collect(),
        })
        .collect();
    let written = plot::write(&args.plot, &series)?;
    println!(
        "plot: {} and {}{}",
        written.files[0].display(),
        written.files[1].display(),
        match &written.font {
            Some(_) => String::new(),
            None => " (no font found, drawn without text: set MONARCH_PLOT_FONT to a .ttf)".into(),
        }
    );
    println!("metrics: {}", args.metrics.display());
    pool.stop().await;
    evaluator_procs.stop().await;
    trainer_procs.stop().await;
    Ok(())
}

/// A task that keeps the newest weights on the evaluator each time it is
/// told to, and returns the versions kept once the sender is dropped.
fn keeper(
    evaluator: ActorMesh<Generator>,
    timeout: Duration,
) -> (
    tokio::sync::mpsc::UnboundedSender<()>,
    tokio::task::JoinHandle<Result<Vec<u64>, String>>,
) {
    let (keep, mut requests) = tokio::sync::mpsc::unbounded_channel::<()>();
    let task = tokio::spawn(async move {
        let mut versions = Vec::new();
        while requests.recv().await.is_some() {
            let version = evaluator
                .keep()
                .timeout(timeout)
                .call_one()
                .await
                .map_err(|e| format!("keeping weights for the curve: {e}"))?;
            versions.push(version);
        }
        Ok(versions)
    });
    (keep, task)
}

fn progress(mode: Mode, steps: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>6} [{bar:30}] {pos:>3}/{len} {msg} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(mode.to_string());
    bar
}

/// Shows a step on the bar, or as a line where the bar is hidden (output
/// is not a terminal).
fn show(bar: &ProgressBar, step: &StepMetrics) {
    let message = format!(
        "v{:<3} reward {:>5.2}  accuracy {:>4.0}%  {:>5} trajectories  {} generators",
        step.version,
        step.mean_reward,
        step.accuracy * 100.0,
        step.trajectories,
        step.healthy_generators
    );
    if bar.is_hidden() {
        println!(
            "  {} step {:>3}  {message}  {:>6.1} s",
            step.mode, step.step, step.wall_seconds
        );
    }
    bar.set_message(message);
    bar.set_position(step.step as u64);
}

fn write_curve(path: &Path, curves: &[Vec<CurvePoint>]) -> Result<(), Box<dyn std::error::Error>> {
    let mut text = String::new();
    for point in curves.iter().flatten() {
        text.push_str(&serde_json::to_string(point)?);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()).into())
}

/// The median time of a memcpy of `bytes` between two buffers already
/// touched, in seconds.
fn memcpy_seconds(bytes: usize) -> f64 {
    let source = vec![1u8; bytes];
    let mut target = vec![0u8; bytes];
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let started = Instant::now();
            target.copy_from_slice(std::hint::black_box(&source));
            std::hint::black_box(&target);
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn print_row(name: &str, reports: &[SpecReport], run: Option<&LoopReport>) {
    print!("{name:<10}");
    for report in reports {
        print!("{:>19.0}%", report.accuracy * 100.0);
    }
    if let Some(run) = run {
        print!("{:>16.2}", run.trajectories_per_second());
        if run.syncs.is_empty() {
            print!("{:>14}", "-");
        } else {
            let total: f64 = run.syncs.iter().map(|s| s.seconds).sum();
            print!("{:>14.2}", total / run.syncs.len() as f64 * 1e3);
        }
    }
    println!();
}
