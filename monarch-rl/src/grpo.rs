//! Synchronous GRPO in one process: the policy plays groups of episodes of
//! the same task, each episode's reward is compared with its group's, and
//! the model takes a policy-gradient step on the tokens it produced.

use std::ops::Range;
use std::time::Instant;

use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::model::{LanguageModel, ModelError, ModelPolicy, TextTokenizer, Trajectory};
use crate::train::{
    group_advantages, micro_batches, pack, part_advantages, policy_loss, tempered, token_logprobs,
    trained_targets, Batch, LossConfig, LossStats, PartCredit, Sequence, TokenAdvantages, Trainer,
    TrainerConfig,
};
use crate::zorplex::{self, run_episode, Episode, EpisodeConfig, SpecKind, TaskSpec, Turn};

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
    /// Weight of the per-token credit for each part of a sum's working
    /// ([`Sample::working`], [`part_advantages`]); 0 trains on the
    /// benchmark's episode reward alone.
    pub working_credit: f32,
    /// Weight of the per-token credit for each lookup of a recursive
    /// task's chain ([`Sample::lookups`], [`part_advantages`]); 0 trains
    /// on the benchmark's episode reward alone.
    pub lookup_credit: f32,
    /// The loss.
    pub loss: LossConfig,
    /// The most tokens, padding included, in one forward pass of a step:
    /// a step's episodes are trained in micro-batches of similar length
    /// within this budget, their gradients summed.
    pub micro_batch_tokens: usize,
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
            working_credit: 0.0,
            lookup_credit: 0.0,
            micro_batch_tokens: 2048,
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
    /// The mean KL estimate to the reference policy over trained tokens (0
    /// without a reference).
    pub kl: f64,
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
    /// The temperature it was sampled at, which its behaviour
    /// log-probabilities are under ([`crate::model::Generated::logprobs`]).
    pub temperature: f32,
    /// The parts of its working checked on their own ([`working_credits`]),
    /// for [`GrpoConfig::working_credit`].
    pub working: Vec<PartCredit>,
    /// Its lookups of a recursive task's chain checked on their own
    /// ([`lookup_credits`]), for [`GrpoConfig::lookup_credit`].
    pub lookups: Vec<PartCredit>,
}

/// Runs `config.steps` GRPO steps on `policy`'s model, whose weights are
/// `vars`; calls `on_step` after each. `reference`, a frozen copy of the
/// starting model, anchors the policy when the loss has a KL penalty (see
/// [`train_step`]).
pub async fn train_grpo<M: LanguageModel, T: TextTokenizer>(
    policy: &mut ModelPolicy<M, T>,
    vars: &VarMap,
    reference: Option<&dyn LanguageModel>,
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
                let trajectory = policy.take_trajectory();
                samples.push(Sample {
                    working: working_credits(&episode, &trajectory),
                    lookups: lookup_credits(&episode, &trajectory),
                    trajectory,
                    reward: episode.reward,
                    correct: episode.correct,
                    temperature: episode_config.sampling.temperature,
                });
            }
            group_index += 1;
        }
        let mut report = train_step(policy.model(), reference, &mut trainer, &samples, config)?;
        report.step = step;
        report.seconds = started.elapsed().as_secs_f64();
        on_step(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// The checked parts of `episode`'s last working (see
/// [`zorplex::check_working`]), each with the sampled tokens of
/// `trajectory` that wrote it; empty where the task has no worked sum or
/// the trajectory does not say where its tokens' text lies.
pub fn working_credits(episode: &Episode, trajectory: &Trajectory) -> Vec<PartCredit> {
    let Some(turn) = episode.turns.last() else {
        return Vec::new();
    };
    let Some(parts) = zorplex::check_working(&episode.task, &turn.output) else {
        return Vec::new();
    };
    parts
        .into_iter()
        .filter_map(|part| placed(trajectory, turn, part.span, part.index, part.right))
        .collect()
}

/// The checked lookups of `episode` (see [`zorplex::check_lookups`]), each
/// with the sampled tokens of `trajectory` that wrote it; empty where the
/// task is not a recursive one or the trajectory does not say where its
/// tokens' text lies.
pub fn lookup_credits(episode: &Episode, trajectory: &Trajectory) -> Vec<PartCredit> {
    let Some(parts) = zorplex::check_lookups(&episode.task, &episode.turns) else {
        return Vec::new();
    };
    parts
        .into_iter()
        .filter_map(|part| {
            let turn = &episode.turns[part.turn];
            placed(trajectory, turn, part.span, part.index, part.right)
        })
        .collect()
}

/// The credit of part `part` (right or not), written at `span` of `turn`'s
/// output, on the sampled tokens of `trajectory` there; `None` where no
/// sampled token is.
fn placed(
    trajectory: &Trajectory,
    turn: &Turn,
    span: Range<usize>,
    part: usize,
    right: bool,
) -> Option<PartCredit> {
    let tokens = trajectory.sampled_tokens_in(turn.start + span.start..turn.start + span.end);
    (!tokens.is_empty()).then_some(PartCredit {
        part,
        tokens,
        right,
    })
}

/// The per-token additions to each of `samples`' advantages from its
/// checked parts: the parts of its working and its lookups, each kind
/// compared within its group at its own weight of `config`.
fn part_credit_advantages(
    samples: &[Sample],
    config: &GrpoConfig,
) -> Result<Vec<TokenAdvantages>, ModelError> {
    type Parts = fn(&Sample) -> &[PartCredit];
    let kinds: [(f32, Parts); 2] = [
        (config.working_credit, |s| &s.working),
        (config.lookup_credit, |s| &s.lookups),
    ];
    let mut extra = vec![Vec::new(); samples.len()];
    for (weight, parts) in kinds {
        if weight == 0.0 {
            continue;
        }
        let credits: Vec<&[PartCredit]> = samples.iter().map(parts).collect();
        let added =
            part_advantages(&credits, config.group_size, weight).map_err(ModelError::Config)?;
        for (extra, added) in extra.iter_mut().zip(added) {
            extra.extend(added);
        }
    }
    Ok(extra)
}

/// The `(B, T)` advantages of the sequences `micro`, packed as `inputs`:
/// each sequence's own at every target, plus its parts' `extra` at the
/// targets of their tokens (token `k` is the target at `k - 1`).
fn token_advantages(
    micro: &[usize],
    values: &[f32],
    extra: &[TokenAdvantages],
    inputs: &candle_core::Tensor,
) -> candle_core::Result<candle_core::Tensor> {
    let (rows, len) = inputs.dims2()?;
    let mut out = vec![0f32; rows * len];
    for (row, &i) in micro.iter().enumerate() {
        let at = &mut out[row * len..(row + 1) * len];
        at.fill(values[i]);
        for (tokens, value) in &extra[i] {
            let targets = tokens.start.max(1) - 1..(tokens.end - 1).min(len);
            for target in &mut at[targets] {
                *target += value;
            }
        }
    }
    candle_core::Tensor::from_vec(out, (rows, len), inputs.device())
}

/// The task seed of group `index` of a run seeded `seed`; runs seeded apart
/// never share tasks with the warm-up's (below 2^40) or each other.
pub(crate) fn task_seed(seed: u64, index: u64) -> i64 {
    ((1u64 << 40) + (seed << 24) + index) as i64
}

/// One policy-gradient step on `samples` (consecutive groups of
/// `config.group_size`), at the temperature they were sampled at (the
/// loss's [`LossConfig::temperature`] is taken from them; samples of
/// different temperatures are an error).
///
/// With a `reference` model (frozen, of the same tokenizer) each part also
/// runs through it, for the KL penalty of [`LossConfig::kl_coef`] and the
/// report's [`kl`](StepReport::kl); a positive `kl_coef` without one is an
/// error.
pub fn train_step(
    model: &dyn LanguageModel,
    reference: Option<&dyn LanguageModel>,
    trainer: &mut Trainer,
    samples: &[Sample],
    config: &GrpoConfig,
) -> Result<StepReport, ModelError> {
    let rewards: Vec<f32> = samples.iter().map(|s| s.reward as f32).collect();
    let advantages = group_advantages(&rewards, config.group_size, config.normalize_std)
        .map_err(ModelError::Config)?;
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
        kl: 0.0,
        seconds: 0.0,
    };
    let extra = part_credit_advantages(samples, config)?;
    let kept: Vec<usize> = (0..samples.len())
        .filter(|&i| {
            (advantages.keep[i] || !extra[i].is_empty()) && samples[i].trajectory.tokens.len() > 1
        })
        .collect();
    if kept.is_empty() {
        return Ok(report);
    }
    let temperature = samples[kept[0]].temperature;
    if let Some(other) = kept
        .iter()
        .map(|&i| samples[i].temperature)
        .find(|&t| t != temperature)
    {
        return Err(ModelError::Config(format!(
            "one step holds samples drawn at temperatures {temperature} and {other}: \
             their behaviour log-probabilities are under different distributions"
        )));
    }
    let loss_config = LossConfig {
        temperature: f64::from(temperature),
        ..config.loss
    };
    // Micro-batches of similar length, so that a long episode does not pad
    // every short one to its length; each part's loss is scaled by its
    // share of the trained tokens, so their gradients sum to the batch's.
    let mut by_length = kept.clone();
    by_length.sort_by_key(|&i| samples[i].trajectory.tokens.len());
    let total_tokens = by_length
        .iter()
        .map(|&i| trained_targets(&samples[i].trajectory.model_mask))
        .sum::<usize>()
        .max(1);
    // With several threads, at least a part for each, so that all of them
    // have work.
    let budget = match trainer.threads() {
        1 => config.micro_batch_tokens,
        threads => {
            let tokens: usize = by_length
                .iter()
                .map(|&i| samples[i].trajectory.tokens.len())
                .sum();
            config.micro_batch_tokens.min(tokens.div_ceil(threads))
        }
    };
    let micros: Vec<&[usize]> =
        micro_batches(&by_length, budget, |i| samples[i].trajectory.tokens.len()).collect();
    let parts = trainer.accumulate_parallel(&micros, |micro| {
        let sequences: Vec<Sequence<'_>> = micro
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
        let packed = pack(&sequences, 0, model.device())?;
        let logits = model.forward(&packed.inputs)?;
        let advantages = if micro.iter().all(|&i| extra[i].is_empty()) {
            let values: Vec<f32> = micro.iter().map(|&i| advantages.values[i]).collect();
            candle_core::Tensor::new(values.as_slice(), model.device())?
        } else {
            token_advantages(micro, &advantages.values, &extra, &packed.inputs)?
        };
        let reference_logp = match reference {
            Some(reference) => {
                let logits =
                    tempered(&reference.forward(&packed.inputs)?, loss_config.temperature)?;
                Some(token_logprobs(&logits, &packed.targets)?.detach())
            }
            None => None,
        };
        let batch = Batch {
            logits: &logits,
            targets: &packed.targets,
            mask: &packed.mask,
            behaviour_logp: &packed.behaviour_logp,
            advantages: &advantages,
            reference_logp: reference_logp.as_ref(),
        };
        let (loss, stats) = policy_loss(&batch, &loss_config)?;
        Ok(((loss * (stats.tokens / total_tokens as f64))?, stats))
    })?;
    let stats = LossStats::merge(&parts);
    report.grad_norm = trainer.apply()?;
    report.trained = kept.len();
    report.loss = stats.loss;
    report.mean_ratio = stats.mean_ratio;
    report.clip_fraction = stats.clip_fraction;
    report.kl = stats.kl;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::model::{TinyConfig, TinyTransformer};

    fn sample(tokens: &[u32], reward: f64) -> Sample {
        let model_mask: Vec<bool> = (0..tokens.len()).map(|i| i % 3 != 0).collect();
        let behaviour_logp = model_mask
            .iter()
            .map(|&m| if m { -2.0 } else { 0.0 })
            .collect();
        Sample {
            trajectory: Trajectory {
                tokens: tokens.to_vec(),
                model_mask,
                behaviour_logp,
                text_ends: Vec::new(),
            },
            reward,
            correct: reward > 0.5,
            temperature: 1.0,
            working: Vec::new(),
            lookups: Vec::new(),
        }
    }

    /// Micro-batches change how a step is computed, not what it computes:
    /// the loss and the gradient norm are those of one padded batch.
    #[test]
    fn a_step_in_micro_batches_is_the_step_of_one_batch() {
        let device = Device::Cpu;
        let samples = vec![
            sample(&[1, 2, 3], 1.0),
            sample(&[4, 5, 6, 7, 8, 9, 1, 2, 3], 0.0),
            sample(&[3, 3, 4, 5, 6], 0.0),
            sample(&[7, 1, 2, 8, 9, 10, 4], 1.0),
        ];
        let config = TinyConfig::for_tests(16);
        let step = |micro_batch_tokens: usize| {
            let (vars, model) = TinyTransformer::seeded(config, 3, &device).unwrap();
            // One thread: with more, a step splits itself for each of them.
            let one_thread = TrainerConfig {
                threads: 1,
                ..TrainerConfig::default()
            };
            let mut trainer = Trainer::new(vars.all_vars(), one_thread).unwrap();
            let grpo = GrpoConfig {
                group_size: 2,
                micro_batch_tokens,
                ..GrpoConfig::default()
            };
            train_step(&model, None, &mut trainer, &samples, &grpo).unwrap()
        };
        let whole = step(1 << 20);
        let parts = step(8);
        assert_eq!((whole.trained, parts.trained), (4, 4));
        for (a, b) in [
            (whole.loss, parts.loss),
            (whole.grad_norm, parts.grad_norm),
            (whole.mean_ratio, parts.mean_ratio),
        ] {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1e-3), "{a} vs {b}");
        }
        assert!(whole.grad_norm > 0.0);
    }

    /// A frozen copy of the starting model is at zero KL; another model is
    /// not, and a penalty without a reference is an error.
    #[test]
    fn the_kl_to_a_reference_is_reported_and_penalised() {
        let device = Device::Cpu;
        let samples = vec![sample(&[1, 2, 3, 4], 1.0), sample(&[4, 5, 6, 7, 8], 0.0)];
        let config = TinyConfig::for_tests(16);
        let grpo = GrpoConfig {
            group_size: 2,
            loss: LossConfig {
                kl_coef: 0.1,
                ..LossConfig::default()
            },
            ..GrpoConfig::default()
        };
        let step = |reference_seed: Option<u64>| {
            let (vars, model) = TinyTransformer::seeded(config, 3, &device).unwrap();
            let reference = reference_seed
                .map(|seed| TinyTransformer::seeded(config, seed, &device).unwrap().1);
            let mut trainer = Trainer::new(vars.all_vars(), TrainerConfig::default()).unwrap();
            let reference = reference.as_ref().map(|r| r as &dyn LanguageModel);
            train_step(&model, reference, &mut trainer, &samples, &grpo)
        };
        let same = step(Some(3)).unwrap();
        assert!(same.kl.abs() < 1e-6, "{same:?}");
        let other = step(Some(4)).unwrap();
        assert!(other.kl > 0.01, "{other:?}");
        assert!(other.loss > same.loss, "{same:?} {other:?}");
        assert!(step(None).is_err());
    }

    /// The loss is the policy's at the samples' temperature, and one step
    /// does not mix temperatures.
    #[test]
    fn a_step_trains_at_the_temperature_its_samples_were_drawn_at() {
        let device = Device::Cpu;
        let config = TinyConfig::for_tests(16);
        let step = |temperatures: [f32; 2]| {
            let samples: Vec<Sample> = [(&[1u32, 2, 3, 4][..], 1.0), (&[4, 5, 6, 7, 8][..], 0.0)]
                .into_iter()
                .zip(temperatures)
                .map(|((tokens, reward), temperature)| Sample {
                    temperature,
                    ..sample(tokens, reward)
                })
                .collect();
            let (vars, model) = TinyTransformer::seeded(config, 3, &device).unwrap();
            let mut trainer = Trainer::new(vars.all_vars(), TrainerConfig::default()).unwrap();
            let grpo = GrpoConfig {
                group_size: 2,
                ..GrpoConfig::default()
            };
            train_step(&model, None, &mut trainer, &samples, &grpo)
        };
        let hot = step([1.0, 1.0]).unwrap();
        let cold = step([0.5, 0.5]).unwrap();
        assert!(
            (hot.mean_ratio - cold.mean_ratio).abs() > 1e-4,
            "{hot:?} {cold:?}"
        );
        let err = step([1.0, 0.5]).unwrap_err();
        assert!(matches!(err, ModelError::Config(_)), "{err}");
    }

    /// An episode of `task` whose turns write `outputs` after a prompt, a
    /// tool's result between each two, as a trajectory of one token per
    /// byte, the turns' sampled.
    fn episode_of(task: crate::zorplex::Task, outputs: &[&str]) -> (Episode, Trajectory) {
        use crate::zorplex::{FailureMode, Turn};
        let mut transcript = format!("User: {}\nAssistant: ", task.question);
        let mut turns = Vec::new();
        let mut sampled = Vec::new();
        for output in outputs {
            if !turns.is_empty() {
                transcript.push_str("\nResult: 1\nAssistant: ");
            }
            turns.push(Turn {
                output: output.to_string(),
                start: transcript.len(),
                tool_calls: Vec::new(),
            });
            sampled.push(transcript.len()..transcript.len() + output.len());
            transcript.push_str(output);
        }
        let is_sampled = |i: usize| sampled.iter().any(|s| s.contains(&i));
        let trajectory = Trajectory {
            tokens: transcript.bytes().map(u32::from).collect(),
            model_mask: (0..transcript.len()).map(is_sampled).collect(),
            behaviour_logp: (0..transcript.len())
                .map(|i| if is_sampled(i) { -1.0 } else { 0.0 })
                .collect(),
            text_ends: (1..=transcript.len()).collect(),
        };
        let episode = Episode {
            task,
            turns,
            extracted_answer: None,
            correct: false,
            used_answer_tag: false,
            reward: 0.0,
            failure_mode: FailureMode::WrongFormat,
            transcript,
        };
        (episode, trajectory)
    }

    /// An episode of the sum `values[0] + values[1]` whose one turn writes
    /// `output` ([`episode_of`]).
    fn sum_episode(values: [i64; 2], output: &str) -> (Episode, Trajectory) {
        use crate::zorplex::{Task, TaskMetadata};
        let task = Task {
            question: "What is a + b?".into(),
            answer: values[0] + values[1],
            metadata: TaskMetadata::Compositional {
                words: vec!["a".into(), "b".into()],
                values: values.to_vec(),
                op: "+".into(),
            },
        };
        episode_of(task, &[output])
    }

    /// A recursive task whose redirect chain is `chain`.
    fn chain_task(chain: &[&str]) -> crate::zorplex::Task {
        use crate::zorplex::{Task, TaskMetadata};
        Task {
            question: format!("What is the zorplex value of {}?", chain[0]),
            answer: 1,
            metadata: TaskMetadata::Recursive {
                word: chain[0].into(),
                chain: chain.iter().map(|w| w.to_string()).collect(),
            },
        }
    }

    /// The text of each of `credits`' tokens (one a byte), its part and
    /// whether it was right.
    fn credited_text(
        credits: &[PartCredit],
        trajectory: &Trajectory,
    ) -> Vec<(usize, String, bool)> {
        credits
            .iter()
            .map(|c| {
                let bytes: Vec<u8> = trajectory.tokens[c.tokens.clone()]
                    .iter()
                    .map(|&t| t as u8)
                    .collect();
                (c.part, String::from_utf8(bytes).unwrap(), c.right)
            })
            .collect()
    }

    #[test]
    fn working_credits_point_at_the_tokens_of_each_part() {
        let (episode, trajectory) = sum_episode([48, 57], "48 + 75: 8+5=13, 4+5+1=10, so 103.");
        let credits = working_credits(&episode, &trajectory);
        assert_eq!(
            credited_text(&credits, &trajectory),
            [
                (0, "48".to_string(), true),
                (1, "75".to_string(), false),
                (2, "8+5=13".to_string(), false),
                (3, "4+5+1=10".to_string(), true),
            ]
        );
        // Without the tokens' places there is nothing to point at.
        let unplaced = Trajectory {
            text_ends: Vec::new(),
            ..trajectory
        };
        assert!(working_credits(&episode, &unplaced).is_empty());
    }

    #[test]
    fn lookup_credits_point_at_the_tokens_of_each_call() {
        let task = chain_task(&["apple", "yellow", "umbrella"]);
        let outputs = ["LOOKUP[apple]", "LOOKUP[yellow]", "Again: LOOKUP[apple]"];
        let (episode, trajectory) = episode_of(task, &outputs);
        let credits = lookup_credits(&episode, &trajectory);
        assert_eq!(
            credited_text(&credits, &trajectory),
            [
                (0, "LOOKUP[apple]".to_string(), true),
                (1, "LOOKUP[yellow]".to_string(), true),
                (2, "LOOKUP[apple]".to_string(), false),
            ]
        );
        // A sum has no chain to check.
        let (sum, trajectory) = sum_episode([1, 2], "LOOKUP[a]");
        assert!(lookup_credits(&sum, &trajectory).is_empty());
    }

    #[test]
    fn part_credit_lands_on_its_targets() {
        let inputs =
            candle_core::Tensor::zeros((2, 5), candle_core::DType::U32, &Device::Cpu).unwrap();
        let extra = vec![vec![(2..4, 1.0)], vec![(5..9, 2.0)]];
        let advantages = token_advantages(&[0, 1], &[0.5, -0.5], &extra, &inputs).unwrap();
        assert_eq!(
            advantages.to_vec2::<f32>().unwrap(),
            [[0.5, 1.5, 1.5, 0.5, 0.5], [-0.5, -0.5, -0.5, -0.5, 1.5]]
        );
    }

    /// A group whose episode rewards are level teaches nothing, unless its
    /// members' checked parts differ (their workings, their lookups) and
    /// the step credits those parts.
    #[test]
    fn part_credit_trains_a_group_whose_rewards_are_level() {
        let sample = |(episode, trajectory): (Episode, Trajectory)| Sample {
            working: working_credits(&episode, &trajectory),
            lookups: lookup_credits(&episode, &trajectory),
            trajectory,
            reward: 0.0,
            correct: false,
            temperature: 1.0,
        };
        let sums: Vec<Sample> = ["48 + 57: 8+7=15, 4+5+1=11", "48 + 57: 8+7=14, 4+5+1=10"]
            .into_iter()
            .map(|output| sample(sum_episode([48, 57], output)))
            .collect();
        let chain = chain_task(&["cat", "dog"]);
        let chains: Vec<Sample> = [
            ["LOOKUP[cat]", "LOOKUP[dog]"],
            ["LOOKUP[cat]", "LOOKUP[cat]"],
        ]
        .into_iter()
        .map(|outputs| sample(episode_of(chain.clone(), &outputs)))
        .collect();
        let device = Device::Cpu;
        let config = TinyConfig {
            vocab: 128,
            ..TinyConfig::for_tests(128)
        };
        let step = |samples: &[Sample], working_credit, lookup_credit| {
            let (vars, model) = TinyTransformer::seeded(config, 3, &device).unwrap();
            let mut trainer = Trainer::new(vars.all_vars(), TrainerConfig::default()).unwrap();
            let grpo = GrpoConfig {
                group_size: 2,
                working_credit,
                lookup_credit,
                ..GrpoConfig::default()
            };
            train_step(&model, None, &mut trainer, samples, &grpo).unwrap()
        };
        for samples in [&sums, &chains] {
            assert_eq!(step(samples, 0.0, 0.0).trained, 0);
        }
        // Each kind of credit trains on its own kind of part only.
        assert_eq!(step(&sums, 0.0, 1.0).trained, 0);
        assert_eq!(step(&chains, 1.0, 0.0).trained, 0);
        for credited in [step(&sums, 1.0, 0.0), step(&chains, 0.0, 1.0)] {
            assert_eq!(credited.trained, 2);
            assert!(credited.grad_norm > 0.0, "{credited:?}");
        }
    }
}
