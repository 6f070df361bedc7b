//! Supervised warm-up of a model trained from scratch, on demonstrations of
//! a noisy scripted policy: the warm model has learnt the tools and the
//! answer format, and also the scripted policy's mistakes (guessing without
//! tools, stopping early, calling tools again and again), which RL then has
//! to remove.

use std::time::Instant;

use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::model::{LanguageModel, ModelError, TextTokenizer};
use crate::train::{
    micro_batches, pack, token_logprobs, trained_targets, Sequence, Trainer, TrainerConfig,
};
use crate::zorplex::{run_episode, EpisodeConfig, Noise, NoisyPolicy, SpecKind, TaskSpec};

/// How to warm a model up.
#[derive(Clone, Debug)]
pub struct PretrainConfig {
    /// The specs demonstrated, in equal shares.
    pub kinds: Vec<SpecKind>,
    /// Demonstrated episodes per spec.
    pub episodes_per_kind: usize,
    /// The fraction of demonstrations in which the scripted policy
    /// misbehaves (each kind of [`Noise`] in equal shares).
    pub error_rate: f64,
    /// Optimiser steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// AdamW's learning rate.
    pub lr: f64,
    /// Seeds the tasks, the noise and the batches.
    pub seed: u64,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
            kinds: crate::zorplex::SpecKind::rl_mix().to_vec(),
            episodes_per_kind: 400,
            error_rate: 0.3,
            steps: 500,
            batch_size: 16,
            lr: 3e-3,
            seed: 0,
        }
    }
}

/// One demonstrated episode as tokens, with the tokens the policy wrote
/// marked (and an end-of-turn token after its last turn, when that turn did
/// not call a tool).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Demonstration {
    /// The tokens.
    pub tokens: Vec<u32>,
    /// Which tokens the policy wrote.
    pub mask: Vec<bool>,
}

/// What a warm-up did.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PretrainReport {
    /// Demonstrations trained on.
    pub demonstrations: usize,
    /// Optimiser steps taken.
    pub steps: usize,
    /// The mean loss (per trained token) over the first and the last tenth
    /// of the steps.
    pub first_loss: f64,
    /// See `first_loss`.
    pub last_loss: f64,
    /// Wall time, in seconds.
    pub seconds: f64,
}

/// The scripted demonstrations of `config`, tokenized.
pub async fn demonstrations(
    config: &PretrainConfig,
    tokenizer: &dyn TextTokenizer,
) -> Result<Vec<Demonstration>, ModelError> {
    let mut out = Vec::with_capacity(config.kinds.len() * config.episodes_per_kind);
    let episode_config = EpisodeConfig::default();
    for (k, &kind) in config.kinds.iter().enumerate() {
        // Every episode draws its own value table, so the values cannot be
        // memorised: only reading them from the tools' results works.
        let seed = (config.seed as i64 * 16 + k as i64) * 1_000_000;
        let mut policies: Vec<NoisyPolicy> = Noise::ALL
            .iter()
            .enumerate()
            .map(|(n, &noise)| NoisyPolicy::new(kind, noise, config.error_rate, seed + n as i64))
            .collect();
        for episode_index in 0..config.episodes_per_kind {
            let mut spec = TaskSpec::new(kind, seed + episode_index as i64);
            let task = spec.generate_task();
            let policy = &mut policies[episode_index % Noise::ALL.len()];
            let episode = run_episode(&spec, &task, policy, &episode_config)
                .await
                .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
            let mut demo = Demonstration {
                tokens: Vec::new(),
                mask: Vec::new(),
            };
            for (text, written) in episode.segments() {
                let ids = tokenizer.encode(text)?;
                demo.mask.extend(std::iter::repeat_n(written, ids.len()));
                demo.tokens.extend(ids);
            }
            let ended_without_call = episode
                .turns
                .last()
                .is_some_and(|t| t.tool_calls.is_empty());
            if let (true, Some(end)) = (ended_without_call, tokenizer.end_of_turn()) {
                demo.tokens.push(end);
                demo.mask.push(true);
            }
            out.push(demo);
        }
    }
    Ok(out)
}

/// Trains `model` (whose weights are `vars`) to imitate `demos`, with the
/// mean cross-entropy over the tokens the policy wrote.
pub fn pretrain(
    model: &dyn LanguageModel,
    vars: &VarMap,
    pad: u32,
    demos: &[Demonstration],
    config: &PretrainConfig,
) -> Result<PretrainReport, ModelError> {
    let started = Instant::now();
    let mut trainer_config = TrainerConfig::default();
    trainer_config.adamw.lr = config.lr;
    let mut trainer = Trainer::new(vars.all_vars(), trainer_config)?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let fits: Vec<&Demonstration> = demos
        .iter()
        .filter(|d| d.tokens.len() <= model.max_len() + 1)
        .collect();
    if fits.is_empty() {
        return Err(ModelError::TooLong {
            len: demos.iter().map(|d| d.tokens.len()).min().unwrap_or(0),
            max: model.max_len(),
        });
    }
    let batch_size = config.batch_size.clamp(1, fits.len());
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut losses = Vec::with_capacity(config.steps);
    for step in 0..config.steps {
        if batches.is_empty() {
            batches = length_bucketed_batches(&fits, batch_size, &mut rng);
        }
        let indices = batches.pop().expect("refilled above");
        trainer.set_learning_rate(config.lr * schedule(step, config.steps));
        // The batch's mean over its trained tokens, computed in parts that
        // each stay within the token budget.
        let total = indices
            .iter()
            .map(|&i| trained_targets(&fits[i].mask))
            .sum::<usize>()
            .max(1) as f64;
        let mut loss_sum = 0.0;
        for micro in micro_batches(&indices, MICRO_BATCH_TOKENS, |i| fits[i].tokens.len()) {
            let batch: Vec<Sequence<'_>> = micro
                .iter()
                .map(|&i| Sequence {
                    tokens: &fits[i].tokens,
                    mask: &fits[i].mask,
                    behaviour_logp: &[],
                })
                .collect();
            let packed = pack(&batch, pad, model.device())?;
            let logits = model.forward(&packed.inputs)?;
            let logp = token_logprobs(&logits, &packed.targets)?;
            let loss = ((logp * &packed.mask)?.sum_all()?.neg()? / total)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?);
            trainer.accumulate(&loss)?;
        }
        losses.push(loss_sum);
        trainer.apply()?;
    }
    let tenth = (losses.len() / 10).max(1);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    Ok(PretrainReport {
        demonstrations: fits.len(),
        steps: losses.len(),
        first_loss: mean(&losses[..tenth.min(losses.len())]),
        last_loss: mean(&losses[losses.len().saturating_sub(tenth)..]),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The most tokens, padding included, in one forward pass of the warm-up
/// (as [`crate::grpo::GrpoConfig::micro_batch_tokens`] for RL).
const MICRO_BATCH_TOKENS: usize = 2048;

/// The learning rate's factor at `step` of `steps`: a linear warm-up over
/// the first 5%, then a linear decay to a tenth.
fn schedule(step: usize, steps: usize) -> f64 {
    let warm = (steps / 20).max(1);
    if step < warm {
        (step + 1) as f64 / warm as f64
    } else {
        let left = (steps - step) as f64 / (steps - warm).max(1) as f64;
        0.1 + 0.9 * left
    }
}

/// One epoch of batches, each of demonstrations of similar length (so
/// little of a batch is padding) and sorted by length, as
/// [`micro_batches`] takes them; the batches in random order.
fn length_bucketed_batches(
    demos: &[&Demonstration],
    batch_size: usize,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..demos.len()).collect();
    order.shuffle(rng);
    let mut batches: Vec<Vec<usize>> = order
        .chunks(batch_size * 16)
        .flat_map(|pool| {
            let mut pool = pool.to_vec();
            pool.sort_by_key(|&i| demos[i].tokens.len());
            pool.chunks(batch_size)
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .filter(|b| b.len() == batch_size)
        .collect();
    batches.shuffle(rng);
    batches
}
