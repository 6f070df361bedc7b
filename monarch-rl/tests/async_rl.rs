//! The async RL loop across real processes: a trainer process and generator
//! processes, weights through a ring of registered memory. This binary
//! re-executes itself as the workers, so it has its own `main`.
//!
//! `cargo test -p monarch-rs-rl --test async_rl` (a minute or so on two
//! cores: the model is small and untrained, the episodes short).

#[path = "common/qwen2.rs"]
mod qwen2;

use std::time::Duration;

use monarch_core::prelude::*;
use monarch_core::testing::{Failed, Scenarios};
use monarch_core::Host;
use monarch_rl::async_rl::{
    run_loop, spawn_generators, GeneratorParams, GeneratorPool, GroupRequest, LoopConfig,
    LoopReport, Mode, PolicyTrainer, PoolEvent, TrainerParams, WarmUp,
};
use monarch_rl::model::{
    ModelSpec, SmolLM2, TextTokenizer, TinyConfig, Trajectory, ZorplexTokenizer,
};
use monarch_rl::replay::{Group, TrajectoryRecord};
use monarch_rl::train::PartCredit;
use monarch_rl::zorplex::{EpisodeConfig, FailureMode, Sampling, SpecKind};

/// Every scenario is bounded by this.
const LIMIT: Duration = Duration::from_secs(300);

fn main() {
    monarch_core::bootstrap();
    Scenarios::new()
        .limit(LIMIT)
        // Workers are killed on purpose.
        .log_worker_faults()
        // The scenarios start processes of their own: one at a time.
        .one_at_a_time()
        .test("both_modes_advance_the_policy_version", || {
            Box::pin(both_modes())
        })
        .test("a_killed_generator_does_not_stop_training", || {
            Box::pin(killed_generator())
        })
        .test("samples_older_than_the_bound_are_never_trained_on", || {
            Box::pin(stale_refused())
        })
        .test("the_trainer_credits_the_parts_of_a_working", || {
            Box::pin(credited_parts())
        })
        .test("a_trainer_starts_from_a_saved_policy", || {
            Box::pin(starts_from_a_checkpoint())
        })
        .test("smollm2_plays_and_syncs_through_the_actors", || {
            Box::pin(smollm2())
        })
        .test("qwen2_plays_and_syncs_through_the_actors", || {
            Box::pin(qwen2())
        })
        .run();
}

fn check(condition: bool, what: &str) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn model() -> ModelSpec {
    ModelSpec::Tiny {
        config: TinyConfig {
            vocab: ZorplexTokenizer::new().vocab_size(),
            dim: 32,
            layers: 1,
            heads: 2,
            ffn: 64,
            max_len: 512,
        },
    }
}

fn loop_config(mode: Mode) -> LoopConfig {
    LoopConfig {
        mode,
        steps: 3,
        groups_per_step: 2,
        group_size: 4,
        max_policy_age: 1,
        kinds: vec![SpecKind::Simple, SpecKind::MultiStep],
        seed: 3,
        call_timeout: Duration::from_secs(120),
        kill_generator_after: None,
    }
}

/// A group of four made-up trajectories played by `version`, two of them
/// rewarded, so that a step trains on all four.
fn made_up_group(version: u64) -> Group {
    let members = (0..4)
        .map(|i| TrajectoryRecord {
            trajectory: Trajectory {
                tokens: vec![5, 9, 12 + i, 7, 30, 8],
                model_mask: vec![false, false, true, true, true, true],
                behaviour_logp: vec![0.0, 0.0, -4.0, -4.0, -4.0, -4.0],
                text_ends: Vec::new(),
            },
            reward: f64::from(i % 2),
            correct: i % 2 == 1,
            turns: 1,
            tool_calls: 0,
            failure_mode: FailureMode::WrongAnswer,
            generator: 0,
            policy_version: version,
            temperature: 1.0,
            working: Vec::new(),
            lookups: Vec::new(),
        })
        .collect();
    Group {
        task_seed: 0,
        members,
    }
}

/// [`made_up_group`] with every episode reward level, the members
/// differing only in one checked part (tokens 3 and 4), right in every
/// other member: a part of their working and, the same, one of their
/// lookups.
fn level_group_with_parts(version: u64) -> Group {
    let mut group = made_up_group(version);
    for (i, member) in group.members.iter_mut().enumerate() {
        member.reward = 0.0;
        member.correct = false;
        member.working = vec![PartCredit {
            part: 2,
            tokens: 3..5,
            right: i % 2 == 0,
        }];
        member.lookups = member.working.clone();
    }
    group
}

/// The parameters of a small trainer seeded apart from [`start`]'s.
fn other_trainer(model: ModelSpec, kl_coef: f64) -> TrainerParams {
    TrainerParams {
        model,
        seed: 2,
        ring_slots: 2,
        group_size: 4,
        normalize_std: false,
        lr: 1e-3,
        max_policy_age: 1,
        kl_coef,
        working_credit: 0.0,
        lookup_credit: 0.0,
    }
}

/// A trainer process and `generators` generator processes.
async fn start(
    generators: usize,
) -> Result<(ProcMesh, ActorMesh<PolicyTrainer>, GeneratorPool), Failed> {
    let trainer_procs = Host::owned_by(this_proc())
        .spawn_procs(shape! { trainer = 1 })
        .await?;
    let params = TrainerParams {
        model: model(),
        seed: 1,
        ring_slots: 2,
        group_size: 4,
        normalize_std: false,
        lr: 1e-3,
        max_policy_age: 1,
        kl_coef: 0.05,
        working_credit: 0.0,
        lookup_credit: 0.0,
    };
    let trainer = trainer_procs
        .spawn::<PolicyTrainer>("trainer", params)
        .await?;
    // A short warm-up, so that the members of a group differ in reward
    // (GRPO drops groups whose rewards are all equal, and a step that trains
    // on nothing publishes no version).
    // No worked sums: these tasks add nothing.
    let warm_up = WarmUp {
        episodes_per_kind: 30,
        steps: 40,
        drill_rows: 0,
        ..WarmUp::default()
    };
    trainer.warm_up(warm_up).call_one().await?;
    let weights = trainer.weights().call_one().await?;
    let episode = EpisodeConfig {
        max_turns: 2,
        max_tokens_per_turn: 24,
        sampling: Sampling {
            temperature: 1.0,
            top_p: 1.0,
            seed: 0,
        },
        ..EpisodeConfig::default()
    };
    let pool = spawn_generators(
        generators,
        GeneratorParams {
            model: model(),
            weights,
            episode,
            sync_deadline_ms: 30_000,
            id: 0,
        },
        Duration::from_secs(120),
    )
    .await?;
    Ok((trainer_procs, trainer, pool))
}

/// Checks what every run must hold: the steps ran, each published a new
/// version, and nothing trained on was older than the bound.
fn check_run(report: &LoopReport, config: &LoopConfig, first: u64) -> Result<(), Failed> {
    check(report.steps.len() == config.steps, "every step ran")?;
    // A step publishes a new version exactly when it trained on something
    // (GRPO drops groups whose rewards are all equal).
    let mut previous = first;
    for step in &report.steps {
        let advanced = step.version == previous + 1;
        check(
            advanced == (step.train.step.trained > 0) && step.version >= previous,
            &format!("step {}: version {previous} -> {}", step.step, step.version),
        )?;
        previous = step.version;
    }
    check(previous > first, "the policy version advanced")?;
    for step in &report.steps {
        check(
            step.train.max_gap <= config.max_policy_age && step.train.refused_stale == 0,
            &format!(
                "step {} trained on a sample older than the bound",
                step.step
            ),
        )?;
        check(
            step.train.groups == config.groups_per_step,
            "whole batches of groups",
        )?;
    }
    check(
        report
            .syncs
            .iter()
            .all(|s| s.bytes > 0 && s.version > s.previous),
        "every sync loaded a newer version",
    )?;
    Ok(())
}

async fn both_modes() -> Result<(), Failed> {
    let (procs, trainer, pool) = start(2).await?;
    let mut kls = Vec::new();
    for mode in [Mode::Sync, Mode::Async] {
        let config = loop_config(mode);
        let first = trainer.version().call_one().await?;
        let report = run_loop(&trainer, &pool, &config, |_| {}).await?;
        check_run(&report, &config, first)?;
        kls.extend(
            report
                .steps
                .iter()
                .filter(|s| s.train.step.trained > 0)
                .map(|s| s.train.step.kl),
        );
        check(report.events.is_empty(), "no generator failed")?;
        if mode == Mode::Sync {
            // In sync mode every group is played with the newest weights.
            check(
                report.steps.iter().all(|s| s.train.max_gap == 0),
                "sync mode trains on the current policy only",
            )?;
            // ...which the generators pulled between batches.
            let published_before_last = report.steps[..report.steps.len() - 1]
                .iter()
                .any(|s| s.train.step.trained > 0);
            check(
                !published_before_last || !report.syncs.is_empty(),
                &format!(
                    "{} run: generators synced the versions published during the run: {:?}",
                    report.mode,
                    report
                        .steps
                        .iter()
                        .map(|s| (s.version, s.train.step.trained, s.train.max_gap))
                        .collect::<Vec<_>>()
                ),
            )?;
        }
    }
    // The KL penalty anchors to the warm model: nothing before the first
    // trained step moved the weights away from it, every later step has.
    check(
        kls.first().is_none_or(|kl| kl.abs() < 1e-6) && kls.iter().skip(1).all(|&kl| kl > 0.0),
        &format!("the KL to the warm model over the trained steps: {kls:?}"),
    )?;
    pool.stop().await;
    procs.stop().await;
    Ok(())
}

async fn killed_generator() -> Result<(), Failed> {
    let (procs, trainer, pool) = start(2).await?;
    let config = LoopConfig {
        steps: 4,
        kill_generator_after: Some(1),
        ..loop_config(Mode::Async)
    };
    let first = trainer.version().call_one().await?;
    let report = run_loop(&trainer, &pool, &config, |_| {}).await?;
    check_run(&report, &config, first)?;
    let killed = report
        .events
        .iter()
        .find_map(|e| match e {
            PoolEvent::Killed { generator, .. } => Some(*generator),
            _ => None,
        })
        .ok_or("the kill is reported")?;
    check(
        report
            .events
            .iter()
            .any(|e| matches!(e, PoolEvent::Replaced { failed, .. } if *failed == killed)),
        &format!("the killed generator is replaced: {:?}", report.events),
    )?;
    check(
        report
            .events
            .iter()
            .any(|e| matches!(e, PoolEvent::Failed { generator, .. } if *generator == killed)),
        &format!(
            "the service marked the killed generator: {:?}",
            report.events
        ),
    )?;
    check(pool.started() == 3, "one replacement was started")?;
    check(
        pool.healthy().len() == 2,
        "the pool is back to two healthy generators",
    )?;
    // Every trained sequence came from a completed episode of a healthy
    // generator: the killed one produced nothing after the kill, and no
    // group was trained on in part.
    for step in &report.steps {
        check(
            step.train.step.episodes == config.groups_per_step * config.group_size,
            "whole groups only",
        )?;
    }
    pool.stop().await;
    procs.stop().await;
    Ok(())
}

/// A group played by a policy two versions behind a trainer whose bound is
/// one is refused whole, trains nothing and publishes no version; a fresh
/// group beside it is trained on.
async fn stale_refused() -> Result<(), Failed> {
    let (procs, trainer, pool) = start(1).await?;
    let current = trainer.version().call_one().await?;
    let fresh = pool
        .replica(0)?
        .play_group(GroupRequest {
            kind: SpecKind::Simple,
            task_seed: 7,
            size: 4,
            sample_seed: 1,
        })
        .call_one()
        .await?
        .group;
    check(
        fresh.policy_version() == current,
        "played with the newest weights",
    )?;
    let mut stale = fresh.clone();
    for member in &mut stale.members {
        member.policy_version = current - 2;
    }
    let only_stale = trainer.train(vec![stale.clone()]).call_one().await?;
    check(
        only_stale.refused_stale == 1
            && only_stale.groups == 0
            && only_stale.step.episodes == 0
            && only_stale.version == current,
        &format!("a stale group alone trains nothing: {only_stale:?}"),
    )?;
    let mixed = trainer.train(vec![stale, fresh]).call_one().await?;
    check(
        mixed.refused_stale == 1 && mixed.groups == 1 && mixed.step.episodes == 4,
        &format!("only the fresh group is trained on: {mixed:?}"),
    )?;
    pool.stop().await;
    procs.stop().await;
    Ok(())
}

/// The checked parts of a working and the checked lookups travel with the
/// trajectories to the trainer process: a group whose episode rewards are
/// level trains there when the trainer credits either kind of part, and is
/// dropped when it credits neither.
async fn credited_parts() -> Result<(), Failed> {
    let procs = Host::owned_by(this_proc())
        .spawn_procs(shape! { trainer = 1 })
        .await?;
    let cases = [
        ("plain", 0.0, 0.0, 0),
        ("working", 1.0, 0.0, 4),
        ("lookups", 0.0, 1.0, 4),
    ];
    for (name, working_credit, lookup_credit, trained) in cases {
        let params = TrainerParams {
            working_credit,
            lookup_credit,
            ..other_trainer(model(), 0.0)
        };
        let trainer = procs.spawn::<PolicyTrainer>(name, params).await?;
        let version = trainer.version().call_one().await?;
        let report = trainer
            .train(vec![level_group_with_parts(version)])
            .call_one()
            .await?;
        check(
            report.step.trained == trained && (trained == 0 || report.step.grad_norm > 0.0),
            &format!("{name}: {trained} sequences trained, got {:?}", report.step),
        )?;
    }
    procs.stop().await;
    Ok(())
}

/// A warm trainer's saved policy, loaded by a trainer of other initial
/// weights, is published as a new version and saved again byte for byte; a
/// checkpoint of another model is refused by name.
async fn starts_from_a_checkpoint() -> Result<(), Failed> {
    let scratch = std::env::temp_dir().join(format!("monarch-rl-init-{}", std::process::id()));
    let (procs, trainer, pool) = start(1).await?;
    pool.stop().await;
    let warm = scratch.join("warm");
    trainer.save(warm.clone()).call_one().await?;

    let other_procs = Host::owned_by(this_proc())
        .spawn_procs(shape! { trainer = 1 })
        .await?;
    let params = |model: ModelSpec| other_trainer(model, 0.1);
    let other = other_procs
        .spawn::<PolicyTrainer>("other", params(model()))
        .await?;
    let before = other.version().call_one().await?;
    let (info, version) = other.load(warm.clone()).call_one().await?;
    check(
        version == before + 1 && info.model == model(),
        &format!("loading publishes a version: {before} -> {version}, {info:?}"),
    )?;
    let again = scratch.join("again");
    other.save(again.clone()).call_one().await?;
    let bytes = |dir: &std::path::Path| std::fs::read(dir.join("weights.bin"));
    check(
        bytes(&warm)? == bytes(&again)?,
        "the loaded weights are the saved ones",
    )?;
    // The KL penalty anchors to the loaded policy, not to the trainer's
    // own initial weights: zero at the first step, positive after it.
    let first = other.train(vec![made_up_group(version)]).call_one().await?;
    let second = other
        .train(vec![made_up_group(first.version)])
        .call_one()
        .await?;
    check(
        first.step.trained == 4 && first.step.kl.abs() < 1e-6 && second.step.kl > 0.0,
        &format!(
            "the KL to the loaded policy: {:?} then {:?}",
            first.step, second.step
        ),
    )?;

    let ModelSpec::Tiny { config } = model() else {
        unreachable!("the test model is tiny")
    };
    let wider = ModelSpec::Tiny {
        config: TinyConfig { dim: 64, ..config },
    };
    let mismatched = other_procs
        .spawn::<PolicyTrainer>("wider", params(wider))
        .await?;
    let refused = mismatched.load(warm.clone()).call_one().await;
    let said = format!("{:?}", refused.err());
    check(
        said.contains("the checkpoint holds") && said.contains("warm"),
        &format!("another model's checkpoint is refused by name: {said}"),
    )?;
    // The model is compared before the weights are read: a checkpoint
    // without its weights is refused for its model, not for the file.
    let no_weights = scratch.join("no-weights");
    std::fs::create_dir_all(&no_weights).map_err(|e| e.to_string())?;
    for file in ["model.json", "tokenizer.json", "layout.json"] {
        std::fs::copy(warm.join(file), no_weights.join(file)).map_err(|e| e.to_string())?;
    }
    let refused = mismatched.load(no_weights).call_one().await;
    let said = format!("{:?}", refused.err());
    check(
        said.contains("the checkpoint holds") && !said.contains("weights.bin"),
        &format!("the model is refused before the weights are read: {said}"),
    )?;
    other_procs.stop().await;
    procs.stop().await;
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// SmolLM2 through the same actors as the tiny model (see [`pretrained`]).
/// Skipped without the GGUF (`scripts/fetch-smollm2.sh`).
async fn smollm2() -> Result<(), Failed> {
    let path = SmolLM2::default_path();
    if !path.exists() {
        eprintln!(
            "skipped: no SmolLM2 GGUF at {} (run scripts/fetch-smollm2.sh)",
            path.display()
        );
        return Ok(());
    }
    // All 135 M parameters in f32 travel with each version.
    pretrained(ModelSpec::Smollm2 { path }, 500_000_000).await
}

/// Qwen2 (small random weights of its layout) through the same actors.
async fn qwen2() -> Result<(), Failed> {
    let dir = qwen2::tiny_qwen2_dir();
    pretrained(
        ModelSpec::Qwen2 {
            dir: dir.path.clone(),
        },
        10_000,
    )
    .await
}

/// A pretrained model through the actors: it plays a group in a generator
/// process, and a new version (at least `version_bytes` of weights) reaches
/// the generator through the ring before its next group, which the trainer
/// takes.
async fn pretrained(model: ModelSpec, version_bytes: u64) -> Result<(), Failed> {
    let trainer_procs = Host::owned_by(this_proc())
        .spawn_procs(shape! { trainer = 1 })
        .await?;
    let trainer = trainer_procs
        .spawn::<PolicyTrainer>(
            "trainer",
            TrainerParams {
                model: model.clone(),
                seed: 0,
                ring_slots: 2,
                group_size: 2,
                normalize_std: false,
                lr: 1e-5,
                max_policy_age: 1,
                kl_coef: 0.0,
                working_credit: 0.0,
                lookup_credit: 0.0,
            },
        )
        .await?;
    let weights = trainer.weights().call_one().await?;
    let episode = EpisodeConfig {
        max_turns: 1,
        max_tokens_per_turn: 12,
        ..EpisodeConfig::sampled()
    };
    let timeout = Duration::from_secs(240);
    let pool = spawn_generators(
        1,
        GeneratorParams {
            model,
            weights,
            episode,
            sync_deadline_ms: 60_000,
            id: 0,
        },
        timeout,
    )
    .await?;
    let request = GroupRequest {
        kind: SpecKind::Simple,
        task_seed: 5,
        size: 2,
        sample_seed: 1,
    };
    let generator = pool.replica(0)?;
    let first = generator
        .play_group(request)
        .timeout(timeout)
        .call_one()
        .await?;
    check(first.group.members.len() == 2, "a whole group")?;
    for member in &first.group.members {
        let t = &member.trajectory;
        check(
            t.model_tokens() > 0
                && t.tokens.len() > t.model_tokens()
                && t.model_mask.len() == t.tokens.len()
                && t.behaviour_logp.len() == t.tokens.len()
                && member.policy_version == 1,
            &format!(
                "a trajectory of version 1 with sampled tokens: {} tokens, {} sampled, version {}",
                t.tokens.len(),
                t.model_tokens(),
                member.policy_version
            ),
        )?;
    }
    let version = trainer.reset().timeout(timeout).call_one().await?;
    let second = generator
        .play_group(GroupRequest {
            sample_seed: 2,
            ..request
        })
        .timeout(timeout)
        .call_one()
        .await?;
    let sync = second.sync.ok_or("the generator pulled the new version")?;
    check(
        sync.version == version && sync.bytes >= version_bytes,
        &format!("all the model's weights were synced: {sync:?}"),
    )?;
    let trained = trainer
        .train(vec![second.group])
        .timeout(timeout)
        .call_one()
        .await?;
    check(
        trained.refused_stale == 0 && trained.step.episodes <= 2,
        &format!("the trainer took the fresh group: {trained:?}"),
    )?;
    pool.stop().await;
    trainer_procs.stop().await;
    Ok(())
}
