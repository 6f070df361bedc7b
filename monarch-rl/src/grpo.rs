//! Synchronous GRPO in one process: the policy plays groups of episodes of
//! the same task, each episode's reward is compared with its group's, and
//! the model takes a policy-gradient step on the tokens it produced.

use std::time::Instant;

use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::model::{LanguageModel, ModelError, ModelPolicy, TextTokenizer, Trajectory};
use crate::train::{
    group_advantages, pack, policy_loss, Batch, LossConfig, Sequence, Trainer, TrainerConfig,
};
use crate::zorplex::{run_episode, EpisodeConfig, SpecKind, TaskSpec};

/// How to run GRPO.
#[derive(Clone, Debug)]
pub struct GrpoConfig {
    /// The specs trained on, in turn.
    pub kinds: Vec<SpecKind>,
    /// Optimiser steps.
    pub steps: usize,
    /// Groups (tasks) per step.
    pub groups_per_step: usize,
    /// Episodes per group.
    pub group_size: usize,
    /// Divide advantages by the group's standard deviation.
    pub normalize_std: bool,
    /// The loss.
    pub loss: LossConfig,
    /// The optimiser.
    pub trainer: TrainerConfig,
    /// Limits of each episode; its sampling seed is replaced per episode.
    pub episode: EpisodeConfig,
    /// Seeds the tasks and the sampling.
    pub seed: u64,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        let mut trainer = TrainerConfig::default();
        trainer.adamw.lr = 2e-4;
        GrpoConfig {
            kinds: SpecKind::rl_mix().to_vec(),
            steps: 20,
            groups_per_step: 4,
            group_size: 8,
            normalize_std: false,
            loss: LossConfig::default(),
            trainer,
            episode: EpisodeConfig::sampled(),
            seed: 0,
        }
    }
}

/// What one step saw and did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step, from 0.
    pub step: usize,
    /// Episodes played.
    pub episodes: usize,
    /// Their mean reward.
    pub mean_reward: f64,
    /// The fraction answered correctly.
    pub accuracy: f64,
    /// Sequences trained on (groups whose rewards were all equal drop out).
    pub trained: usize,
    /// The loss, or 0 when nothing trained.
    pub loss: f64,
    /// The mean importance ratio over trained tokens.
    pub mean_ratio: f64,
    /// The fraction of trained tokens clipped.
    pub clip_fraction: f64,
    /// The gradient norm before clipping.
    pub grad_norm: f64,
    /// Wall time of the step, in seconds.
    pub seconds: f64,
}

/// One played episode ready for training.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The tokens and their mask and behaviour log-probabilities.
    pub trajectory: Trajectory,
    /// The episode's reward.
    pub reward: f64,
    /// Whether it answered correctly.
    pub correct: bool,
}

/// Runs `config.steps` GRPO steps on `policy`'s model, whose weights are
/// `vars`; calls `on_step` after each.
pub async fn train_grpo<M: LanguageModel, T: TextTokenizer>(
    policy: &mut ModelPolicy<M, T>,
    vars: &VarMap,
    config: &GrpoConfig,
    mut on_step: impl FnMut(&StepReport),
) -> Result<Vec<StepReport>, ModelError> {
    let mut trainer = Trainer::new(vars.all_vars(), config.trainer.clone())?;
    let mut reports = Vec::with_capacity(config.steps);
    let mut group_index = 0u64;
    for step in 0..config.steps {
        let started = Instant::now();
        let mut samples = Vec::with_capacity(config.groups_per_step * config.group_size);
        for _ in 0..config.groups_per_step {
            // Each group draws its own value table (see the warm-up).
            let kind = config.kinds[group_index as usize % config.kinds.len()];
            let mut spec = TaskSpec::new(kind, task_seed(config.seed, group_index));
            let task = spec.generate_task();
            for member in 0..config.group_size {
                let mut episode_config = config.episode;
                episode_config.sampling.seed = config.seed
                    ^ (group_index << 20)
                    ^ (member as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let episode = run_episode(&spec, &task, policy, &episode_config)
                    .await
                    .map_err(|e| ModelError::Tokenizer(e.0))?;
                samples.push(Sample {
                    trajectory: policy.take_trajectory(),
                    reward: episode.reward,
                    correct: episode.correct,
                });
            }
            group_index += 1;
        }
        let mut report = train_step(policy.model(), &mut trainer, &samples, config)?;
        report.step = step;
        report.seconds = started.elapsed().as_secs_f64();
        on_step(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// The task seed of group `index` of a run seeded `seed`; runs seeded apart
/// never share tasks with the warm-up's (below 2^40) or each other.
pub(crate) fn task_seed(seed: u64, index: u64) -> i64 {
    ((1u64 << 40) + (seed << 24) + index) as i64
}

/// One policy-gradient step on `samples` (consecutive groups of
/// `config.group_size`).
pub fn train_step(
    model: &dyn LanguageModel,
    trainer: &mut Trainer,
    samples: &[Sample],
    config: &GrpoConfig,
) -> Result<StepReport, ModelError> {
    let rewards: Vec<f32> = samples.iter().map(|s| s.reward as f32).collect();
    let advantages = group_advantages(&rewards, config.group_size, config.normalize_std)
        .map_err(ModelError::Tokenizer)?;
    let n = samples.len().max(1) as f64;
    let mut report = StepReport {
        step: 0,
        episodes: samples.len(),
        mean_reward: rewards.iter().map(|&r| f64::from(r)).sum::<f64>() / n,
        accuracy: samples.iter().filter(|s| s.correct).count() as f64 / n,
        trained: 0,
        loss: 0.0,
        mean_ratio: 0.0,
        clip_fraction: 0.0,
        grad_norm: 0.0,
        seconds: 0.0,
    };
    let kept: Vec<usize> = (0..samples.len())
        .filter(|&i| advantages.keep[i] && samples[i].trajectory.tokens.len() > 1)
        .collect();
    if kept.is_empty() {
        return Ok(report);
    }
    let sequences: Vec<Sequence<'_>> = kept
        .iter()
        .map(|&i| {
            let t = &samples[i].trajectory;
            Sequence {
                tokens: &t.tokens,
                mask: &t.model_mask,
                behaviour_logp: &t.behaviour_logp,
            }
        })
        .collect();
    let values: Vec<f32> = kept.iter().map(|&i| advantages.values[i]).collect();
    let packed = pack(&sequences, 0, model.device())?;
    let logits = model.forward(&packed.inputs)?;
    let advantages = candle_core::Tensor::new(values.as_slice(), model.device())?;
    let batch = Batch {
        logits: &logits,
        targets: &packed.targets,
        mask: &packed.mask,
        behaviour_logp: &packed.behaviour_logp,
        advantages: &advantages,
    };
    let (loss, stats) = policy_loss(&batch, &config.loss)?;
    report.grad_norm = trainer.step(&loss)?;
    report.trained = kept.len();
    report.loss = stats.loss;
    report.mean_ratio = stats.mean_ratio;
    report.clip_fraction = stats.clip_fraction;
    Ok(report)
}
