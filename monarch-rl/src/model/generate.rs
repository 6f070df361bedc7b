//! Batched generation over a key-value cache: temperature, nucleus or greedy
//! sampling, the Zorplex stop rule checked incrementally after each token,
//! and the log-probability of every sampled token.

use candle_core::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cache::{left_padded, padded_step};
use super::{KvCache, LanguageModel, ModelError, StreamDecoder, TextTokenizer};
use crate::zorplex::{Sampling, StopRule};

/// How much to generate and when to stop.
#[derive(Clone, Copy, Debug)]
pub struct GenerateOptions<'a> {
    /// Most tokens to generate per row.
    pub max_tokens: usize,
    /// Where a row's text is complete, checked after each token.
    pub stop: Option<&'a StopRule>,
}

/// Why a row stopped generating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The stop rule found a stop in the text.
    Stop,
    /// The model produced its end-of-turn token.
    EndOfTurn,
    /// The token budget, or the model's context, ran out.
    Length,
}

/// What one row generated.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    /// Every sampled token, in order (the last may lie past the stop point).
    pub tokens: Vec<u32>,
    /// The log-probability of each sampled token under the distribution it
    /// was drawn from (the logits divided by the sampling temperature,
    /// before the nucleus cut; the model's own distribution when decoding
    /// greedily): the behaviour log-probabilities a trainer compares
    /// against at the same temperature ([`crate::train::LossConfig::temperature`]).
    pub logprobs: Vec<f32>,
    /// The byte length of `text` once each token was added.
    pub ends: Vec<usize>,
    /// The text of all sampled tokens.
    pub text: String,
    /// Where the stop rule cut the text, if it did.
    pub stop: Option<usize>,
    /// Why the row stopped.
    pub finish: Finish,
}

impl Generated {
    /// The text up to the stop point.
    pub fn stopped_text(&self) -> &str {
        &self.text[..self.stop.unwrap_or(self.text.len())]
    }
}

/// Draws tokens from logits with a seeded generator.
#[derive(Clone, Debug)]
pub struct Sampler {
    rng: StdRng,
    temperature: f32,
    top_p: f32,
}

impl Sampler {
    /// A sampler with `sampling`'s temperature, nucleus mass and seed.
    pub fn new(sampling: Sampling) -> Self {
        Sampler {
            rng: StdRng::seed_from_u64(sampling.seed),
            temperature: sampling.temperature,
            top_p: sampling.top_p,
        }
    }

    /// A token drawn from `logits` and its log-probability under the
    /// distribution it was drawn from: `logits` divided by the temperature
    /// (before the nucleus cut), or `logits` themselves when greedy.
    ///
    /// ```
    /// use monarch_rl::model::Sampler;
    /// use monarch_rl::zorplex::Sampling;
    ///
    /// let mut greedy = Sampler::new(Sampling { temperature: 0.0, top_p: 1.0, seed: 0 });
    /// let (token, logp) = greedy.sample(&[0.0, 2.0, 1.0]);
    /// assert_eq!(token, 1);
    /// assert!(logp < 0.0 && logp > -1.0);
    /// ```
    pub fn sample(&mut self, logits: &[f32]) -> (u32, f32) {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let scale = if self.temperature > 0.0 {
            1.0 / self.temperature
        } else {
            1.0
        };
        let log_norm = logits
            .iter()
            .map(|&l| ((l - max) * scale).exp())
            .sum::<f32>()
            .ln();
        let token = if self.temperature <= 0.0 {
            argmax(logits)
        } else {
            self.draw(logits, max)
        };
        (token as u32, (logits[token] - max) * scale - log_norm)
    }

    fn draw(&mut self, logits: &[f32], max: f32) -> usize {
        let mut probs: Vec<(usize, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i, ((l - max) / self.temperature).exp()))
            .collect();
        let total: f32 = probs.iter().map(|p| p.1).sum();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut kept = 0;
        let mut mass = 0.0;
        for &(_, p) in &probs {
            kept += 1;
            mass += p / total;
            if mass >= self.top_p {
                break;
            }
        }
        let nucleus = &probs[..kept];
        let kept_mass: f32 = nucleus.iter().map(|p| p.1).sum();
        let mut u = self.rng.random::<f32>() * kept_mass;
        for &(index, p) in nucleus {
            if u < p {
                return index;
            }
            u -= p;
        }
        nucleus[kept - 1].0
    }
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Generates a continuation of each of `prompts` (token ids), batched:
/// rows are padded on the left and padding is never attended to, so a
/// row's result does not depend on the rows beside it.
pub fn generate(
    model: &dyn LanguageModel,
    tokenizer: &dyn TextTokenizer,
    prompts: &[&[u32]],
    options: &GenerateOptions<'_>,
    sampler: &mut Sampler,
) -> Result<Vec<Generated>, ModelError> {
    if prompts.is_empty() {
        return Ok(Vec::new());
    }
    let (tokens, pads) = left_padded(prompts, tokenizer.pad(), model.device())?;
    let len = tokens.dim(1)?;
    if len == 0 || len > model.max_len() {
        return Err(ModelError::TooLong {
            len,
            max: model.max_len(),
        });
    }
    let mut cache = model.new_cache();
    let logits = model.forward_step(&padded_step(&tokens, 0, &pads)?, Some(&mut cache))?;
    decode(
        model, tokenizer, &mut cache, logits, &pads, options, sampler,
    )
}

/// Continues one sequence whose earlier tokens are in `cache`: feeds
/// `tokens` (at least one) and generates after them.
pub fn continue_cached(
    model: &dyn LanguageModel,
    tokenizer: &dyn TextTokenizer,
    cache: &mut KvCache,
    tokens: &[u32],
    options: &GenerateOptions<'_>,
    sampler: &mut Sampler,
) -> Result<Generated, ModelError> {
    let past = cache.len();
    if tokens.is_empty() || past + tokens.len() > model.max_len() {
        return Err(ModelError::TooLong {
            len: past + tokens.len(),
            max: model.max_len(),
        });
    }
    let input = Tensor::new(tokens, model.device())?.unsqueeze(0)?;
    let logits = model.forward_step(&padded_step(&input, past, &[0])?, Some(cache))?;
    let mut rows = decode(model, tokenizer, cache, logits, &[0], options, sampler)?;
    Ok(rows.remove(0))
}

/// The decoding loop from the logits of each row's last prompt position.
fn decode(
    model: &dyn LanguageModel,
    tokenizer: &dyn TextTokenizer,
    cache: &mut KvCache,
    mut logits: Tensor,
    pads: &[usize],
    options: &GenerateOptions<'_>,
    sampler: &mut Sampler,
) -> Result<Vec<Generated>, ModelError> {
    let rows = pads.len();
    let mut out: Vec<Generated> = (0..rows)
        .map(|_| Generated {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            ends: Vec::new(),
            text: String::new(),
            stop: None,
            finish: Finish::Length,
        })
        .collect();
    let mut scanners: Vec<_> = (0..rows)
        .map(|_| options.stop.map(StopRule::scanner))
        .collect();
    let mut decoders: Vec<StreamDecoder> = (0..rows).map(|_| StreamDecoder::new()).collect();
    let mut done = vec![false; rows];
    let end_of_turn = tokenizer.end_of_turn();
    for _ in 0..options.max_tokens {
        let last: Vec<Vec<f32>> = logits
            .narrow(1, logits.dim(1)? - 1, 1)?
            .squeeze(1)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec2()?;
        let mut next = Vec::with_capacity(rows);
        for (row, row_logits) in last.iter().enumerate() {
            if done[row] {
                next.push(tokenizer.pad());
                continue;
            }
            let (token, logp) = sampler.sample(row_logits);
            let generated = &mut out[row];
            generated.tokens.push(token);
            generated.logprobs.push(logp);
            if Some(token) == end_of_turn {
                generated.ends.push(generated.text.len());
                generated.finish = Finish::EndOfTurn;
                done[row] = true;
            } else {
                if let Some(piece) = decoders[row].step(tokenizer, token)? {
                    generated.text.push_str(&piece);
                    if let Some(stop) = scanners[row].as_mut().and_then(|s| s.push(&piece)) {
                        generated.stop = Some(stop);
                        generated.finish = Finish::Stop;
                        done[row] = true;
                    }
                }
                generated.ends.push(generated.text.len());
            }
            next.push(token);
        }
        if done.iter().all(|&d| d) || cache.len() + 1 > model.max_len() {
            break;
        }
        let input = Tensor::from_vec(next, (rows, 1), model.device())?;
        logits = model.forward_step(&padded_step(&input, cache.len(), pads)?, Some(cache))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nucleus_sampling_keeps_the_top_mass_only() {
        let logits = [5.0f32, 4.0, -10.0, -10.0];
        let mut sampler = Sampler::new(Sampling {
            temperature: 1.0,
            top_p: 0.5,
            seed: 7,
        });
        for _ in 0..200 {
            assert_eq!(sampler.sample(&logits).0, 0);
        }
        let mut sampler = Sampler::new(Sampling {
            temperature: 1.0,
            top_p: 1.0,
            seed: 7,
        });
        let draws: Vec<u32> = (0..400).map(|_| sampler.sample(&logits).0).collect();
        let ones = draws.iter().filter(|&&t| t == 1).count();
        // p(1) = 1 / (1 + e) = 0.27
        assert!((70..150).contains(&ones), "{ones} of 400");
        let (_, logp) = sampler.sample(&[0.0, 0.0]);
        assert!((logp - 0.5f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn the_same_seed_draws_the_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let sampling = Sampling {
            temperature: 0.8,
            top_p: 0.9,
            seed: 3,
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(sampling);
            (0..100).map(|_| s.sample(&logits).0).collect()
        };
        let mut s = Sampler::new(sampling);
        let b: Vec<u32> = (0..100).map(|_| s.sample(&logits).0).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|&t| t != a[0]));
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn behaviour_logprobs_are_those_the_loss_computes_at_the_same_temperature() {
        use crate::train::{tempered, token_logprobs};
        let logits = [2.0f32, 0.5, -1.0, 1.5];
        let as_tensor =
            candle_core::Tensor::from_slice(&logits, (1, 1, 4), &candle_core::Device::Cpu).unwrap();
        for temperature in [0.0f32, 0.5, 1.0, 1.7] {
            let mut sampler = Sampler::new(Sampling {
                temperature,
                top_p: 0.9,
                seed: 11,
            });
            for _ in 0..20 {
                let (token, logp) = sampler.sample(&logits);
                let targets =
                    candle_core::Tensor::new(&[[token]], &candle_core::Device::Cpu).unwrap();
                let scaled = tempered(&as_tensor, f64::from(temperature)).unwrap();
                let expected: Vec<Vec<f32>> = token_logprobs(&scaled, &targets)
                    .unwrap()
                    .to_vec2()
                    .unwrap();
                assert!(
                    (logp - expected[0][0]).abs() < 1e-5,
                    "temperature {temperature}: {logp} vs {}",
                    expected[0][0]
                );
            }
        }
    }
}

#[cfg(test)]
mod model_tests {
    use candle_core::Device;

    use super::*;
    use crate::model::{TinyConfig, TinyTransformer, ZorplexTokenizer};

    fn model() -> (ZorplexTokenizer, TinyTransformer) {
        let tokenizer = ZorplexTokenizer::new();
        let config = TinyConfig {
            vocab: tokenizer.vocab_size(),
            dim: 32,
            layers: 2,
            heads: 4,
            ffn: 48,
            max_len: 96,
        };
        let (_, model) = TinyTransformer::seeded(config, 5, &Device::Cpu).unwrap();
        (tokenizer, model)
    }

    fn greedy() -> Sampler {
        Sampler::new(Sampling {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        })
    }

    /// Greedy decoding by running the whole sequence again for every token.
    fn uncached(model: &TinyTransformer, prompt: &[u32], count: usize) -> Vec<u32> {
        let mut tokens = prompt.to_vec();
        for _ in 0..count {
            let input = Tensor::new(tokens.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let logits = model.forward(&input).unwrap();
            let last: Vec<f32> = logits
                .get(0)
                .unwrap()
                .get(tokens.len() - 1)
                .unwrap()
                .to_vec1()
                .unwrap();
            tokens.push(argmax(&last) as u32);
        }
        tokens[prompt.len()..].to_vec()
    }

    #[test]
    fn cached_batched_and_uncached_greedy_generation_agree() {
        let (tokenizer, model) = model();
        let a = tokenizer
            .encode("User: What is the zorplex value of 'cat'?\nAssistant: ")
            .unwrap();
        let b = tokenizer.encode("LOOKUP[dog]\n").unwrap();
        let options = GenerateOptions {
            max_tokens: 12,
            stop: None,
        };
        let batched = generate(&model, &tokenizer, &[&a, &b], &options, &mut greedy()).unwrap();
        for (prompt, row) in [&a, &b].into_iter().zip(&batched) {
            assert_eq!(row.tokens.len(), 12);
            assert_eq!(row.tokens, uncached(&model, prompt, 12));
            let alone = generate(&model, &tokenizer, &[prompt], &options, &mut greedy()).unwrap();
            assert_eq!(alone[0].tokens, row.tokens);
            assert_eq!(
                alone[0],
                generate(&model, &tokenizer, &[prompt], &options, &mut greedy()).unwrap()[0]
            );
            for (x, y) in alone[0].logprobs.iter().zip(&row.logprobs) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
        }
    }

    #[test]
    fn a_continued_cache_matches_a_fresh_prefill() {
        let (tokenizer, model) = model();
        let ids = tokenizer
            .encode("Assistant: LOOKUP[cat]\n[Result: 42]\nAssistant: ")
            .unwrap();
        let options = GenerateOptions {
            max_tokens: 6,
            stop: None,
        };
        let mut cache = model.new_cache();
        continue_cached(
            &model,
            &tokenizer,
            &mut cache,
            &ids[..10],
            &options,
            &mut greedy(),
        )
        .unwrap();
        cache.truncate(10).unwrap();
        let continued = continue_cached(
            &model,
            &tokenizer,
            &mut cache,
            &ids[10..],
            &options,
            &mut greedy(),
        )
        .unwrap();
        let fresh = generate(&model, &tokenizer, &[&ids], &options, &mut greedy()).unwrap();
        assert_eq!(continued.tokens, fresh[0].tokens);
        let too_long = vec![3u32; 97];
        assert!(matches!(
            generate(&model, &tokenizer, &[&too_long], &options, &mut greedy()),
            Err(ModelError::TooLong { len: 97, max: 96 })
        ));
    }
}
