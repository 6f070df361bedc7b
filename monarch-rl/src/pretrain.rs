//! Supervised warm-up of a model trained from scratch, on demonstrations of
//! a noisy scripted policy: the warm model has learnt the tools and the
//! answer format, and also the scripted policy's mistakes (guessing without
//! tools, stopping early, calling tools again and again, giving up when a
//! task turns hard), which RL then has to remove. Beside the
//! demonstrations it drills the column-by-column sums that compositional
//! tasks end in ([`sum_drills`]): the episodes alone hold too few of them
//! to learn to add from.

use std::time::Instant;

use candle_core::Tensor;
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::model::{LanguageModel, ModelError, TextTokenizer};
use crate::train::{
    micro_batches, pack, token_logprobs, trained_targets, Sequence, Trainer, TrainerConfig,
};
use crate::zorplex::{
    run_episode, worked_sum, Difficulty, EpisodeConfig, Noise, NoisyPolicy, SpecKind, TaskSpec,
    WORDS,
};

/// How to warm a model up.
#[derive(Clone, Debug)]
pub struct PretrainConfig {
    /// The specs demonstrated, in equal shares.
    pub kinds: Vec<SpecKind>,
    /// Demonstrated episodes per spec.
    pub episodes_per_kind: usize,
    /// The fraction of demonstrations in which the scripted policy
    /// misbehaves (each kind of [`Noise`] in equal shares), for every spec
    /// not named in `spec_error_rates`.
    pub error_rate: f64,
    /// Specs whose demonstrations misbehave at their own rate instead of
    /// `error_rate`.
    pub spec_error_rates: Vec<(SpecKind, f64)>,
    /// Specs whose demonstrations misbehave only in the named ways (in
    /// equal shares) instead of the reference's three ([`Noise::ALL`]).
    pub spec_noises: Vec<(SpecKind, Vec<Noise>)>,
    /// Optimiser steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// AdamW's learning rate.
    pub lr: f64,
    /// Rows of worked sums ([`sum_drills`]) trained beside each step's
    /// demonstrations; 0 for none.
    pub drill_rows: usize,
    /// The most tokens in one row of worked sums.
    pub drill_tokens: usize,
    /// The weight of the worked sums' mean loss against the
    /// demonstrations' (which weighs 1); 0 trains on the drills not at all.
    pub drill_weight: f64,
    /// Threads computing a step's micro-batches side by side
    /// ([`TrainerConfig::threads`]).
    pub threads: usize,
    /// Seeds the tasks, the noise and the batches.
    pub seed: u64,
}

impl PretrainConfig {
    /// The rate at which `kind`'s demonstrations misbehave: its own from
    /// `spec_error_rates` where it has one, else `error_rate`.
    pub fn error_rate_of(&self, kind: SpecKind) -> f64 {
        self.spec_error_rates
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(self.error_rate, |&(_, rate)| rate)
    }

    /// The ways `kind`'s demonstrations misbehave: its own from
    /// `spec_noises` where it has a non-empty list, else [`Noise::ALL`].
    pub fn noises_of(&self, kind: SpecKind) -> &[Noise] {
        self.spec_noises
            .iter()
            .find(|(k, noises)| *k == kind && !noises.is_empty())
            .map_or(&Noise::ALL[..], |(_, noises)| &noises[..])
    }
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig {
            kinds: crate::zorplex::SpecKind::rl_mix().to_vec(),
            episodes_per_kind: 400,
            error_rate: 0.3,
            // The composed specs' demonstrations give up where a task
            // turns hard, in 70% of compositional ones and 60% of recursive
            // ones: the warm model gives up there (greedy decoding follows
            // the larger share) and solves the rest, which RL can build on.
            // Noise spread over every kind at a shared rate showed each
            // failure in too few demonstrations to be the model's choice: it
            // failed by imitating badly instead, which RL mends slowly
            // (BENCHMARKS.md, "Giving up when a task turns hard"). At 70%
            // the recursive give-up came out all but certain (sampled at
            // temperature 1, the model gave up in 16 of 16 tries on every
            // task where it gave up at all), so a
            // group rarely held a sample that went on; at 60% some do, and
            // RL removes the give-ups within 50-90 steps in three seeds
            // (BENCHMARKS.md, "Fewer recursive give-ups in the warm-up").
            spec_error_rates: vec![
                (SpecKind::Compositional(Difficulty::Easy), 0.7),
                (SpecKind::Recursive { max_depth: 2 }, 0.6),
            ],
            spec_noises: vec![
                (
                    SpecKind::Compositional(Difficulty::Easy),
                    vec![Noise::GiveUpWhenHard],
                ),
                (
                    SpecKind::Recursive { max_depth: 2 },
                    vec![Noise::GiveUpWhenHard],
                ),
            ],
            steps: 500,
            batch_size: 16,
            lr: 3e-3,
            drill_rows: 12,
            drill_tokens: 240,
            // At twice the demonstrations' weight the warm model learns the
            // column facts far better, and alike across seeds: 80-85% of
            // its workings are right given the lookups, against 38-69% at
            // equal weights (BENCHMARKS.md, "Weighing the drills").
            drill_weight: 2.0,
            threads: TrainerConfig::default().threads,
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
    /// The mean loss over the first and the last tenth of the steps: per
    /// trained token of the demonstrations, plus per trained token of the
    /// worked sums where there are any.
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
        let error_rate = config.error_rate_of(kind);
        let mut policies: Vec<NoisyPolicy> = config
            .noises_of(kind)
            .iter()
            .enumerate()
            .map(|(n, &noise)| NoisyPolicy::new(kind, noise, error_rate, seed + n as i64))
            .collect();
        for episode_index in 0..config.episodes_per_kind {
            let mut spec = TaskSpec::new(kind, seed + episode_index as i64);
            let task = spec.generate_task();
            let shares = policies.len();
            let policy = &mut policies[episode_index % shares];
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

/// The arithmetic a warm-up drills beside the demonstrations:
/// `config.drill_rows` rows of worked sums for every step, each row as
/// many sums as fit in `config.drill_tokens`.
///
/// A worked sum is the end of a compositional episode: the two values
/// looked up are given (`[Result: 48]`, `LOOKUP[word]`, `[Result: 57]`),
/// only the working and the answer train
/// (`48 + 57: 8+7=15, 4+5+1=10, so 105. [ANSWER] 105`, [`worked_sum`]).
/// A warm-up of a few minutes holds a few hundred compositional episodes:
/// far too few to learn the single-digit facts, with and without a carry,
/// that their workings are made of; the drills bring thousands.
pub fn sum_drills(
    config: &PretrainConfig,
    tokenizer: &dyn TextTokenizer,
) -> Result<Vec<Demonstration>, ModelError> {
    let mut rng = StdRng::seed_from_u64(config.seed ^ DRILL_SEED);
    let rows = config.drill_rows * config.steps;
    let mut out = Vec::with_capacity(rows);
    for _ in 0..rows {
        out.push(drill_row(config.drill_tokens, tokenizer, || {
            let (a, b) = (rng.random_range(1..=100), rng.random_range(1..=100));
            let word = WORDS[rng.random_range(0..WORDS.len())];
            (
                format!("[Result: {a}]\nAssistant: LOOKUP[{word}]\n[Result: {b}]\nAssistant: "),
                format!("{} [ANSWER] {}", worked_sum(a, b), a + b),
            )
        })?);
    }
    Ok(out)
}

/// One row of as many items from `item` (what is given, then what trains,
/// then an untrained line break) as fit in `max_tokens`.
fn drill_row(
    max_tokens: usize,
    tokenizer: &dyn TextTokenizer,
    mut item: impl FnMut() -> (String, String),
) -> Result<Demonstration, ModelError> {
    let mut row = Demonstration {
        tokens: Vec::with_capacity(max_tokens),
        mask: Vec::with_capacity(max_tokens),
    };
    let line_break = tokenizer.encode("\n")?;
    loop {
        let (given, learnt) = item();
        let parts = [
            (tokenizer.encode(&given)?, false),
            (tokenizer.encode(&learnt)?, true),
            (line_break.clone(), false),
        ];
        let len: usize = parts.iter().map(|(ids, _)| ids.len()).sum();
        if row.tokens.len() + len > max_tokens {
            if row.tokens.is_empty() {
                return Err(ModelError::Config(format!(
                    "drill_tokens is {max_tokens}, too few for one worked sum of {len} tokens"
                )));
            }
            return Ok(row);
        }
        for (ids, trains) in parts {
            row.mask.extend(std::iter::repeat_n(trains, ids.len()));
            row.tokens.extend(ids);
        }
    }
}

/// Trains `model` (whose weights are `vars`) to imitate `demos`, with the
/// mean cross-entropy over the tokens the policy wrote, and at each step
/// on the next `config.drill_rows` of `drills`
/// ([`sum_drills`]), whose mean cross-entropy over their trained tokens,
/// times `config.drill_weight`, is added to the loss.
pub fn pretrain(
    model: &dyn LanguageModel,
    vars: &VarMap,
    pad: u32,
    demos: &[Demonstration],
    drills: &[Demonstration],
    config: &PretrainConfig,
) -> Result<PretrainReport, ModelError> {
    let started = Instant::now();
    let mut trainer_config = TrainerConfig::default();
    trainer_config.adamw.lr = config.lr;
    trainer_config.threads = config.threads;
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
    let drill_weight = config.drill_weight;
    if !(drill_weight.is_finite() && drill_weight >= 0.0) {
        return Err(ModelError::Config(format!(
            "drill_weight is {drill_weight}; it must be a finite number of 0 or more"
        )));
    }
    let drill_rows = config.drill_rows;
    if drill_rows > 0 && drills.is_empty() {
        return Err(ModelError::Config(format!(
            "the warm-up asks for {drill_rows} rows of worked sums a step and none were given \
             (make them with sum_drills, or set drill_rows to 0)"
        )));
    }
    let batch_size = config.batch_size.clamp(1, fits.len());
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut losses = Vec::with_capacity(config.steps);
    let mut next_drill = 0;
    for step in 0..config.steps {
        if batches.is_empty() {
            batches = length_bucketed_batches(&fits, batch_size, &mut rng);
        }
        let indices = batches.pop().expect("refilled above");
        trainer.set_learning_rate(config.lr * schedule(step, config.steps));
        let mut rows: Vec<&Demonstration> = (0..drill_rows)
            .map(|k| &drills[(next_drill + k) % drills.len()])
            .collect();
        next_drill += drill_rows;
        rows.sort_by_key(|row| row.tokens.len());
        let demos: Vec<&Demonstration> = indices.iter().map(|&i| fits[i]).collect();
        // The demonstrations' mean and the drills' weighted mean, each over
        // its own trained tokens, in micro-batches within the token budget.
        let parts: Vec<(Vec<&Demonstration>, f64)> = [(demos, 1.0), (rows, drill_weight)]
            .into_iter()
            .filter(|(_, weight)| *weight > 0.0)
            .flat_map(|(part, weight)| {
                let total = part.iter().map(|d| trained_targets(&d.mask)).sum::<usize>();
                let scale = weight / total.max(1) as f64;
                let order: Vec<usize> = (0..part.len()).collect();
                micro_batches(&order, MICRO_BATCH_TOKENS, |i| part[i].tokens.len())
                    .map(|micro| (micro.iter().map(|&i| part[i]).collect(), scale))
                    .collect::<Vec<_>>()
            })
            .collect();
        let loss_sum: f64 = trainer
            .accumulate_parallel(&parts, |(micro, scale)| {
                cross_entropy(model, pad, micro, *scale)
            })?
            .into_iter()
            .sum();
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

/// The cross-entropy summed over the trained tokens of `micro`, times
/// `scale`, and its value.
fn cross_entropy(
    model: &dyn LanguageModel,
    pad: u32,
    micro: &[&Demonstration],
    scale: f64,
) -> candle_core::Result<(Tensor, f64)> {
    let batch: Vec<Sequence<'_>> = micro
        .iter()
        .map(|d| Sequence {
            tokens: &d.tokens,
            mask: &d.mask,
            behaviour_logp: &[],
        })
        .collect();
    let packed = pack(&batch, pad, model.device())?;
    let logits = model.forward(&packed.inputs)?;
    let logp = token_logprobs(&logits, &packed.targets)?;
    let loss = ((logp * &packed.mask)?.sum_all()?.neg()? * scale)?;
    let value = f64::from(loss.to_scalar::<f32>()?);
    Ok((loss, value))
}

/// Seeds the worked sums apart from the demonstrations' batches.
const DRILL_SEED: u64 = 0x005E_ED0F_5A45;

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

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::model::{TinyConfig, TinyTransformer, ZorplexTokenizer};

    #[tokio::test]
    async fn a_spec_with_its_own_error_rate_misbehaves_at_that_rate() {
        let tokenizer = ZorplexTokenizer::new();
        let recursive = SpecKind::Recursive { max_depth: 2 };
        let config = PretrainConfig {
            kinds: vec![SpecKind::Simple, recursive],
            episodes_per_kind: 12,
            error_rate: 0.0,
            spec_error_rates: vec![(SpecKind::Simple, 1.0)],
            ..PretrainConfig::default()
        };
        assert_eq!(config.error_rate_of(SpecKind::Simple), 1.0);
        assert_eq!(config.error_rate_of(recursive), 0.0);
        let demos = demonstrations(&config, &tokenizer).await.unwrap();
        // Only the scripted oracle answers without guessing; the noisy
        // variants guess, give up or keep calling tools.
        let clean: Vec<bool> = written_texts(&demos, &tokenizer)
            .iter()
            .map(|text| text.contains("[ANSWER]") && !text.contains("guess"))
            .collect();
        assert_eq!(clean[..12], [false; 12], "simple: every one misbehaves");
        assert_eq!(clean[12..], [true; 12], "recursive: none does");
    }

    #[tokio::test]
    async fn a_spec_with_its_own_noises_misbehaves_only_in_those_ways() {
        let tokenizer = ZorplexTokenizer::new();
        let compositional = SpecKind::Compositional(Difficulty::Easy);
        let config = PretrainConfig {
            kinds: vec![SpecKind::Simple, compositional],
            episodes_per_kind: 12,
            error_rate: 1.0,
            spec_error_rates: Vec::new(),
            spec_noises: vec![(SpecKind::Simple, vec![Noise::StopEarly])],
            ..PretrainConfig::default()
        };
        assert_eq!(config.noises_of(SpecKind::Simple), [Noise::StopEarly]);
        assert_eq!(config.noises_of(compositional), Noise::ALL);
        let demos = demonstrations(&config, &tokenizer).await.unwrap();
        let written = written_texts(&demos, &tokenizer);
        let stops = |text: &String| text.contains("not sure how to go on");
        assert!(written[..12].iter().all(stops), "simple: every one stops");
        let guesses = written[12..].iter().filter(|t| t.contains("guess")).count();
        assert_eq!(guesses, 4, "compositional: a third of them guess");
    }

    /// What the policy wrote in each demonstration: the prompt's worked
    /// example answers too, so only the masked tokens tell.
    fn written_texts(demos: &[Demonstration], tokenizer: &ZorplexTokenizer) -> Vec<String> {
        demos
            .iter()
            .map(|d| {
                let ids: Vec<u32> = d
                    .tokens
                    .iter()
                    .zip(&d.mask)
                    .filter_map(|(&token, &written)| written.then_some(token))
                    .collect();
                tokenizer.decode(&ids).unwrap()
            })
            .collect()
    }

    #[test]
    fn drills_train_the_working_and_answer_only_and_fit_their_rows() {
        let tokenizer = ZorplexTokenizer::new();
        let config = PretrainConfig {
            steps: 3,
            drill_rows: 2,
            ..PretrainConfig::default()
        };
        let drills = sum_drills(&config, &tokenizer).unwrap();
        assert_eq!(drills.len(), 6);
        for row in &drills {
            assert!(row.tokens.len() <= config.drill_tokens);
            assert_eq!(row.tokens.len(), row.mask.len());
            // The trained runs are the workings and answers, each ending in
            // its sum; what precedes one is the two values looked up.
            let text = tokenizer.decode(&row.tokens).unwrap();
            let mut trained = Vec::new();
            let mut run = Vec::new();
            for (&token, &trains) in row.tokens.iter().zip(&row.mask) {
                if trains {
                    run.push(token);
                } else if !run.is_empty() {
                    trained.push(tokenizer.decode(&std::mem::take(&mut run)).unwrap());
                }
            }
            assert!(run.is_empty(), "a row ends on its separator: {text}");
            assert!(trained.len() >= 2, "{text}");
            for working in &trained {
                let (sum, answer) = working.split_once(" [ANSWER] ").unwrap();
                let (terms, _) = sum.split_once(':').unwrap();
                let (a, b) = terms.split_once(" + ").unwrap();
                let (a, b): (i64, i64) = (a.parse().unwrap(), b.parse().unwrap());
                assert_eq!(sum, worked_sum(a, b), "{text}");
                assert_eq!(answer, (a + b).to_string(), "{text}");
                assert!(text.contains(&format!("[Result: {a}]")), "{text}");
            }
        }
        assert_eq!(drills, sum_drills(&config, &tokenizer).unwrap(), "seeded");
        let cramped = PretrainConfig {
            drill_tokens: 10,
            ..config
        };
        let err = sum_drills(&cramped, &tokenizer).unwrap_err();
        assert!(err.to_string().contains("drill_tokens is 10"), "{err}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_drills_loss_counts_at_its_weight() {
        let (tokenizer, config, demos) = one_step_warm_up(2).await;
        let drills = sum_drills(&config, &tokenizer).unwrap();
        let shape = small_shape(&tokenizer);
        // One step from the same start: its loss, taken before the step, is
        // the demonstrations' mean plus the weight times the drills' mean.
        let first_loss = |drill_weight| {
            let (vars, model) = TinyTransformer::seeded(shape, 0, &Device::Cpu).unwrap();
            let config = PretrainConfig {
                drill_weight,
                ..config.clone()
            };
            pretrain(&model, &vars, tokenizer.pad(), &demos, &drills, &config)
                .map(|report| report.first_loss)
        };
        let (none, once, twice) = (
            first_loss(0.0).unwrap(),
            first_loss(1.0).unwrap(),
            first_loss(2.0).unwrap(),
        );
        assert!(
            once > none,
            "the drills add to the loss: {none} then {once}"
        );
        assert!(
            ((twice - once) - (once - none)).abs() < 1e-4,
            "{none}, {once}, {twice}"
        );
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let err = first_loss(bad).unwrap_err();
            assert!(err.to_string().contains("drill_weight"), "{err}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_warm_up_that_asks_for_drills_needs_them() {
        let (tokenizer, config, demos) =
            one_step_warm_up(PretrainConfig::default().drill_rows).await;
        let shape = small_shape(&tokenizer);
        let (vars, model) = TinyTransformer::seeded(shape, 0, &Device::Cpu).unwrap();
        let err = pretrain(&model, &vars, tokenizer.pad(), &demos, &[], &config).unwrap_err();
        assert!(matches!(err, ModelError::Config(_)), "{err}");
        let drills = sum_drills(&config, &tokenizer).unwrap();
        let report = pretrain(&model, &vars, tokenizer.pad(), &demos, &drills, &config).unwrap();
        assert_eq!(report.steps, 1);
    }

    /// A warm-up of one step over two demonstrations per spec, with
    /// `drill_rows` rows of worked sums: the tokenizer, the config and the
    /// demonstrations.
    async fn one_step_warm_up(
        drill_rows: usize,
    ) -> (ZorplexTokenizer, PretrainConfig, Vec<Demonstration>) {
        let tokenizer = ZorplexTokenizer::new();
        let config = PretrainConfig {
            episodes_per_kind: 2,
            steps: 1,
            drill_rows,
            ..PretrainConfig::default()
        };
        let demos = demonstrations(&config, &tokenizer).await.unwrap();
        (tokenizer, config, demos)
    }

    /// A model shape small enough for a warm-up step to take milliseconds,
    /// over the Zorplex vocabulary.
    fn small_shape(tokenizer: &ZorplexTokenizer) -> TinyConfig {
        TinyConfig {
            vocab: tokenizer.vocab_size(),
            ..TinyConfig::for_tests(512)
        }
    }
}
