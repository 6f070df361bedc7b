//! A language model as a Zorplex [`Policy`]: it keeps the conversation as
//! tokens with their key-value cache across turns, and records every token
//! of the episode with whether the model produced it and its behaviour
//! log-probability, which is what the trainer needs.

use serde::{Deserialize, Serialize};

use super::generate::{continue_cached, GenerateOptions, Generated, Sampler};
use super::{KvCache, LanguageModel, ModelError, TextTokenizer};
use crate::zorplex::{GenerateRequest, Policy, PolicyError};

/// Every token of one episode as the model saw it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trajectory {
    /// The tokens, prompt and tool results included.
    pub tokens: Vec<u32>,
    /// Whether the model sampled each token (only those train).
    pub model_mask: Vec<bool>,
    /// The behaviour log-probability of each sampled token (0 elsewhere).
    pub behaviour_logp: Vec<f32>,
    /// Where each token's text ends in the transcript, in bytes: exact for
    /// sampled tokens; context tokens encoded together (a prompt, a tool
    /// result) all end where their text does. Empty where unknown.
    pub text_ends: Vec<usize>,
}

impl Trajectory {
    /// How many tokens the model produced.
    pub fn model_tokens(&self) -> usize {
        self.model_mask.iter().filter(|&&m| m).count()
    }

    /// The sampled tokens whose text overlaps `span` of the transcript, as
    /// a range of token indices (empty where none does).
    pub fn sampled_tokens_in(&self, span: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let mut start = None;
        let mut end = 0;
        let mut token_start = 0;
        for (i, (&text_end, &sampled)) in self.text_ends.iter().zip(&self.model_mask).enumerate() {
            if sampled && token_start < span.end && text_end > span.start {
                start.get_or_insert(i);
                end = i + 1;
            }
            token_start = text_end;
        }
        start.map_or(0..0, |start| start..end)
    }

    fn push_context(&mut self, tokens: &[u32], text_end: usize) {
        self.text_ends
            .extend(std::iter::repeat_n(text_end, tokens.len()));
        self.tokens.extend_from_slice(tokens);
        self.model_mask
            .extend(std::iter::repeat_n(false, tokens.len()));
        self.behaviour_logp
            .extend(std::iter::repeat_n(0.0, tokens.len()));
    }

    fn push_sampled(&mut self, tokens: &[u32], logp: &[f32], text_ends: &[usize]) {
        self.text_ends.extend_from_slice(text_ends);
        self.tokens.extend_from_slice(tokens);
        self.model_mask
            .extend(std::iter::repeat_n(true, tokens.len()));
        self.behaviour_logp.extend_from_slice(logp);
    }
}

/// A [`LanguageModel`] and its tokenizer playing the Zorplex loop.
///
/// A request whose prompt extends the previous prompt and the text returned
/// for it continues the same episode: only the new text is encoded, and the
/// cache is reused. Any other prompt starts a new episode, with a sampler
/// seeded from the request. Text cut by the stop rule is dropped from the
/// cache and the trajectory, so both hold exactly the episode's transcript.
/// When the model's context is full the policy says nothing (an empty turn
/// ends the episode), and logs it.
pub struct ModelPolicy<M, T> {
    model: M,
    tokenizer: T,
    text: String,
    trajectory: Trajectory,
    cache: Option<KvCache>,
    sampler: Option<Sampler>,
}

impl<M: LanguageModel, T: TextTokenizer> ModelPolicy<M, T> {
    /// A policy generating with `model` and `tokenizer`.
    pub fn new(model: M, tokenizer: T) -> Self {
        ModelPolicy {
            model,
            tokenizer,
            text: String::new(),
            trajectory: Trajectory::default(),
            cache: None,
            sampler: None,
        }
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &T {
        &self.tokenizer
    }

    /// The current episode's tokens so far; the next prompt that does not
    /// continue it starts afresh.
    pub fn take_trajectory(&mut self) -> Trajectory {
        self.text.clear();
        self.cache = None;
        std::mem::take(&mut self.trajectory)
    }

    /// One turn: encode what is new in the prompt, generate, cut at the stop.
    pub fn turn(&mut self, request: &GenerateRequest<'_>) -> Result<String, ModelError> {
        let continues = self.cache.is_some() && request.prompt.starts_with(&self.text);
        if !continues {
            self.text.clear();
            self.trajectory = Trajectory::default();
            self.cache = Some(self.model.new_cache());
            self.sampler = Some(Sampler::new(request.sampling));
        }
        let new = self.tokenizer.encode(&request.prompt[self.text.len()..])?;
        self.trajectory.push_context(&new, request.prompt.len());
        self.text = request.prompt.to_string();
        let cache = self.cache.as_mut().expect("set above");
        let sampler = self.sampler.as_mut().expect("set above");
        // Feed what the cache lacks: the new text, and any earlier tokens
        // sampled but never fed (the last token of a turn).
        let mut fed = cache.len().min(self.trajectory.tokens.len());
        if fed == self.trajectory.tokens.len() {
            // Nothing new: feed the last token again to get its logits.
            fed = fed.saturating_sub(1);
            cache.truncate(fed)?;
        }
        if self.trajectory.tokens.len() >= self.model.max_len() {
            tracing::warn!(
                tokens = self.trajectory.tokens.len(),
                max = self.model.max_len(),
                "the episode fills the model's context; the policy says nothing"
            );
            return Ok(String::new());
        }
        let options = GenerateOptions {
            max_tokens: request.max_tokens,
            stop: Some(request.stop),
        };
        let generated = continue_cached(
            &self.model,
            &self.tokenizer,
            cache,
            &self.trajectory.tokens[fed..],
            &options,
            sampler,
        )?;
        self.keep(&generated)
    }

    /// Keeps the sampled tokens that lie before the stop point, and encodes
    /// as context any text of a token the stop point cuts through.
    fn keep(&mut self, generated: &Generated) -> Result<String, ModelError> {
        let cut = generated.stop.unwrap_or(generated.text.len());
        let kept = generated.ends.iter().take_while(|&&end| end <= cut).count();
        let whole_end = if kept == 0 {
            0
        } else {
            generated.ends[kept - 1]
        };
        let context_len = self.trajectory.tokens.len();
        let base = self.text.len();
        let ends: Vec<usize> = generated.ends[..kept]
            .iter()
            .map(|end| base + end)
            .collect();
        self.trajectory.push_sampled(
            &generated.tokens[..kept],
            &generated.logprobs[..kept],
            &ends,
        );
        let rest = self.tokenizer.encode(&generated.text[whole_end..cut])?;
        self.trajectory.push_context(&rest, base + cut);
        let cache = self.cache.as_mut().expect("a turn is under way");
        cache.truncate(cache.len().min(context_len + kept))?;
        let text = &generated.text[..cut];
        self.text.push_str(text);
        Ok(text.to_string())
    }
}

impl<M: LanguageModel, T: TextTokenizer> Policy for ModelPolicy<M, T> {
    async fn generate(&mut self, request: &GenerateRequest<'_>) -> Result<String, PolicyError> {
        self.turn(request).map_err(|e| PolicyError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::model::{TinyConfig, TinyTransformer, ZorplexTokenizer};
    use crate::zorplex::{run_episode, EpisodeConfig, Sampling, SpecKind, TaskSpec};

    fn policy(seed: u64) -> ModelPolicy<TinyTransformer, ZorplexTokenizer> {
        let tokenizer = ZorplexTokenizer::new();
        let config = TinyConfig {
            vocab: tokenizer.vocab_size(),
            dim: 32,
            layers: 2,
            heads: 4,
            ffn: 48,
            max_len: 512,
        };
        let (_, model) = TinyTransformer::seeded(config, seed, &Device::Cpu).unwrap();
        ModelPolicy::new(model, tokenizer)
    }

    /// An untrained model's episode: its trajectory is the transcript, token
    /// for token, and the same seed plays the same episode.
    #[tokio::test]
    async fn the_trajectory_is_the_transcript() {
        let mut spec = TaskSpec::new(SpecKind::Recursive { max_depth: 2 }, 3);
        let task = spec.generate_task();
        let config = EpisodeConfig {
            max_turns: 3,
            max_tokens_per_turn: 24,
            sampling: Sampling {
                temperature: 1.0,
                top_p: 1.0,
                seed: 11,
            },
            ..EpisodeConfig::default()
        };
        let mut played = Vec::new();
        for _ in 0..2 {
            let mut policy = policy(1);
            let episode = run_episode(&spec, &task, &mut policy, &config)
                .await
                .unwrap();
            let trajectory = policy.take_trajectory();
            let text = policy.tokenizer().decode(&trajectory.tokens).unwrap();
            assert_eq!(text, episode.transcript);
            assert_eq!(trajectory.tokens.len(), trajectory.model_mask.len());
            assert_eq!(trajectory.tokens.len(), trajectory.behaviour_logp.len());
            assert_eq!(trajectory.tokens.len(), trajectory.text_ends.len());
            for (i, &end) in trajectory.text_ends.iter().enumerate() {
                if trajectory.model_mask[i] {
                    let before = policy.tokenizer().decode(&trajectory.tokens[..=i]).unwrap();
                    assert_eq!(end, before.len(), "where sampled token {i} ends");
                }
            }
            assert_eq!(trajectory.text_ends.last(), Some(&text.len()));
            let last = episode.turns.last().unwrap();
            let span = last.start..last.start + last.output.len();
            let tokens = trajectory.sampled_tokens_in(span.clone());
            assert!(!tokens.is_empty());
            let covered = policy
                .tokenizer()
                .decode(&trajectory.tokens[tokens])
                .unwrap();
            assert!(covered.contains(&episode.transcript[span]), "{covered:?}");
            let sampled: usize = episode.turns.iter().map(|t| t.output.len()).sum();
            assert!(trajectory.model_tokens() > 0 && trajectory.model_tokens() <= sampled + 3);
            for (mask, logp) in trajectory.model_mask.iter().zip(&trajectory.behaviour_logp) {
                assert_eq!(
                    *mask,
                    *logp < 0.0,
                    "sampled tokens have log-probs, context has none"
                );
            }
            played.push((episode, trajectory));
        }
        assert_eq!(played[0], played[1]);
    }
}
