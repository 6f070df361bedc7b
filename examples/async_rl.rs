//! The main job: warm a tiny transformer up on noisy scripted Zorplex
//! demonstrations, then train it with GRPO on actors, generators and trainer
//! in processes of their own, weights through registered memory, in sync
//! and in async mode from the same warm weights, and compare.
//!
//! `cargo run --release --example async_rl` (a few minutes on two cores);
//! `-- --help` lists the flags. Every step is printed and written as a JSON
//! line to `--metrics` (default `target/async_rl/metrics.jsonl`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use monarch::prelude::*;
use monarch::rl::async_rl::{
    evaluate, run_loop, spawn_generators, GeneratorParams, LoopConfig, LoopReport, Mode,
    PolicyTrainer, StepMetrics, TrainerParams, WarmUp,
};
use monarch::rl::model::{TextTokenizer, TinyConfig, ZorplexTokenizer};
use monarch::rl::zorplex::{EpisodeConfig, ReportTable, SpecKind, SpecReport};
use monarch::Host;

/// Async RL on Zorplex with the tiny transformer.
#[derive(Parser, Debug)]
struct Args {
    /// `sync`, `async`, or `both` (the same warm weights, one after the other).
    #[arg(long, default_value = "both")]
    mode: String,
    /// Generator processes.
    #[arg(long, default_value_t = 2)]
    generators: usize,
    /// Trainer steps per mode.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Groups (tasks) per trainer step.
    #[arg(long, default_value_t = 4)]
    groups_per_step: usize,
    /// Episodes per group.
    #[arg(long, default_value_t = 8)]
    group_size: usize,
    /// The most versions a trained sample's policy may be behind.
    #[arg(long, default_value_t = 1)]
    max_policy_age: u64,
    /// Learning rate of the RL steps.
    #[arg(long, default_value_t = 3e-4)]
    lr: f64,
    /// Seeds the model, the warm-up and the training tasks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Warm-up optimiser steps.
    #[arg(long, default_value_t = 500)]
    warm_up_steps: usize,
    /// First seed of the held-out evaluation tasks.
    #[arg(long, default_value_t = 10_000)]
    eval_seed: i64,
    /// Held-out tasks per spec.
    #[arg(long, default_value_t = 20)]
    eval_tasks: usize,
    /// Kill one generator's process after this many steps of each run.
    #[arg(long)]
    kill_generator_after: Option<usize>,
    /// Where the per-step metrics go, one JSON object a line.
    #[arg(long, default_value = "target/async_rl/metrics.jsonl")]
    metrics: PathBuf,
}

#[monarch::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let modes = match args.mode.as_str() {
        "both" => vec![Mode::Sync, Mode::Async],
        other => vec![other.parse::<Mode>()?],
    };
    // A generator killed on purpose is a fault this job expects and
    // survives; report it instead of exiting.
    this_proc().set_fault_hook(Arc::new(|event: &SupervisionEvent| {
        eprintln!("worker fault: {event}");
    }));
    let kinds = SpecKind::rl_mix().to_vec();
    let model = TinyConfig {
        vocab: ZorplexTokenizer::new().vocab_size(),
        ..TinyConfig::default()
    };
    let timeout = Duration::from_secs(600);

    let trainer_procs = Host::owned_by(this_proc())
        .spawn_procs(shape! { trainer = 1 })
        .await?;
    let trainer = trainer_procs
        .spawn::<PolicyTrainer>(
            "trainer",
            TrainerParams {
                model,
                seed: args.seed,
                ring_slots: 2,
                group_size: args.group_size,
                normalize_std: false,
                lr: args.lr,
                max_policy_age: args.max_policy_age,
            },
        )
        .await?;
    println!("warming up ({} steps)...", args.warm_up_steps);
    let (warm_report, _) = trainer
        .warm_up(WarmUp {
            steps: args.warm_up_steps,
            seed: args.seed,
            ..WarmUp::default()
        })
        .timeout(Duration::from_secs(3600))
        .call_one()
        .await?;
    println!(
        "warm-up: loss {:.3} -> {:.3} in {:.0} s",
        warm_report.first_loss, warm_report.last_loss, warm_report.seconds
    );
    let weights = trainer.weights().call_one().await?;
    let pool = spawn_generators(
        args.generators,
        GeneratorParams {
            model,
            weights,
            episode: EpisodeConfig::sampled(),
            sync_deadline_ms: 30_000,
            id: 0,
        },
        timeout,
    )
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
    let mut results: Vec<(LoopReport, Vec<SpecReport>)> = Vec::new();
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
            kinds: kinds.clone(),
            seed: args.seed + 1,
            call_timeout: timeout,
            kill_generator_after: args.kill_generator_after,
        };
        println!("\n{mode} RL, {} steps:", args.steps);
        let started = Instant::now();
        let mut write_error = None;
        let report = run_loop(&trainer, &pool, &config, |step: &StepMetrics| {
            println!(
                "  {mode} step {:>3}  v{:<3} reward {:>5.2}  accuracy {:>4.0}%  {:>5} trajectories  {:>6.1} s",
                step.step,
                step.version,
                step.mean_reward,
                step.accuracy * 100.0,
                step.trajectories,
                step.wall_seconds
            );
            if let Err(e) = serde_json::to_writer(&mut metrics, step)
                .map_err(std::io::Error::from)
                .and_then(|()| std::io::Write::write_all(&mut metrics, b"\n"))
            {
                write_error.get_or_insert(e);
            }
        })
        .await?;
        if let Some(e) = write_error {
            return Err(format!("writing {}: {e}", args.metrics.display()).into());
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
        results.push((report, after));
    }

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
    for (report, after) in &results {
        print_row(&report.mode.to_string(), after, Some(report));
    }
    if let [(sync, _), (async_, _)] = results.as_slice() {
        println!(
            "async / sync throughput: {:.2}x",
            async_.trajectories_per_second() / sync.trajectories_per_second()
        );
    }
    println!("metrics: {}", args.metrics.display());
    pool.stop().await;
    trainer_procs.stop().await;
    Ok(())
}

fn print_row(name: &str, reports: &[SpecReport], run: Option<&LoopReport>) {
    print!("{name:<10}");
    for report in reports {
        print!("{:>19.0}%", report.accuracy * 100.0);
    }
    if let Some(run) = run {
        let syncs = run.syncs.len().max(1) as f64;
        let mean = run.syncs.iter().map(|s| s.seconds).sum::<f64>() / syncs * 1e3;
        print!("{:>16.2}{:>14.2}", run.trajectories_per_second(), mean);
    }
    println!();
}
