//! Trainable policy models on candle, built from differentiable operations
//! only (see [`crate::train`] for why; the norm, rotary embedding and
//! attention softmax are fused CPU kernels with backward passes of their
//! own), with batched generation over a
//! key-value cache and a [`Policy`](crate::zorplex::Policy) that records
//! what it sampled for training.

mod cache;
mod checkpoint;
mod generate;
mod hf_tokenizer;
mod kernels;
mod layers;
mod llama;
mod policy;
mod pretrained;
mod spec;
mod tiny;
mod tokenizer;
mod vocab;

use candle_core::{Device, Result, Tensor};

pub use cache::{KvCache, Step};
pub use checkpoint::{
    load_checkpoint, load_policy, read_checkpoint, read_checkpoint_info, read_checkpoint_weights,
    save_checkpoint, CheckpointError, CheckpointInfo,
};
pub use generate::{continue_cached, generate, Finish, GenerateOptions, Generated, Sampler};
pub use hf_tokenizer::HfTokenizer;
pub use llama::{Llama, LlamaConfig};
pub use policy::{ModelPolicy, Trajectory};
pub use pretrained::{Pretrained, Qwen2, SmolLM2};
pub use spec::{AnyModel, AnyTokenizer, BuiltModel, ModelSpec};
pub use tiny::{TinyConfig, TinyTransformer};
pub use tokenizer::{StreamDecoder, TextTokenizer};
pub use vocab::ZorplexTokenizer;

/// The environment that keeps candle to one thread per operation, for a
/// process that runs a small model: candle's matrix products take their
/// thread count from `RAYON_NUM_THREADS`, its other operations from
/// `CANDLE_NUM_THREADS`. A small model's operations are too small to pay for
/// splitting over cores; its process goes faster running a step's
/// micro-batches, or its episodes, side by side on threads of its own
/// ([`crate::train::TrainerConfig::threads`]; BENCHMARKS.md, "Policy models").
///
/// ```
/// let mut command = std::process::Command::new("worker");
/// command.envs(monarch_rl::model::ONE_THREAD_PER_OPERATION);
/// ```
pub const ONE_THREAD_PER_OPERATION: [(&str, &str); 2] =
    [("RAYON_NUM_THREADS", "1"), ("CANDLE_NUM_THREADS", "1")];

/// A causal language model that generation and training drive.
pub trait LanguageModel: Send + Sync {
    /// The logits of the next token after each of `step`'s tokens,
    /// `(B, T, vocab)` (`(B, 1, vocab)` when `step.last_only`), attending to
    /// the tokens in `cache` (which the step's keys and values are appended
    /// to) and to the step's own.
    fn forward_step(&self, step: &Step, cache: Option<&mut KvCache>) -> Result<Tensor>;

    /// An empty cache for this model.
    fn new_cache(&self) -> KvCache;

    /// Ids in the vocabulary.
    fn vocab_size(&self) -> usize;

    /// The longest sequence the model takes.
    fn max_len(&self) -> usize;

    /// Where the model's weights live.
    fn device(&self) -> &Device;

    /// The logits of the next token at every position of `tokens` `(B, T)`,
    /// from scratch: what training uses.
    fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        self.forward_step(&Step::causal(tokens, 0)?, None)
    }
}

/// An error of a policy model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// candle failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Text could not be encoded, or ids decoded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A sequence does not fit the model.
    #[error("a sequence of {len} tokens does not fit the model's {max} positions")]
    TooLong {
        /// The sequence's length.
        len: usize,
        /// The model's longest.
        max: usize,
    },
    /// A training configuration asks for what cannot be done.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Weights or a configuration could not be read.
    #[error("{path}: {reason}")]
    Load {
        /// The file.
        path: String,
        /// What went wrong, and what to do.
        reason: String,
    },
}
