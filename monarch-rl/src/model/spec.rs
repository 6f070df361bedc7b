//! Which policy model to use, chosen at run time: what the async RL actors
//! and checkpoints carry, so that one job runs the tiny transformer,
//! SmolLM2 or Qwen2 unchanged.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::{
    HfTokenizer, KvCache, LanguageModel, Llama, ModelError, Qwen2, SmolLM2, Step, TextTokenizer,
    TinyConfig, TinyTransformer, ZorplexTokenizer,
};

/// A policy model to build: its family and where its weights come from.
///
/// ```
/// use monarch_rl::model::{ModelSpec, TextTokenizer, TinyConfig, ZorplexTokenizer};
/// use candle_core::Device;
///
/// let spec = ModelSpec::Tiny {
///     config: TinyConfig { vocab: ZorplexTokenizer::new().vocab_size(), dim: 16, layers: 1, heads: 2, ffn: 32, max_len: 64 },
/// };
/// let built = spec.build(7, &Device::Cpu).unwrap();
/// assert_eq!(built.tokenizer.vocab_size(), ZorplexTokenizer::new().vocab_size());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSpec {
    /// The tiny transformer with the Zorplex tokenizer, weights drawn from
    /// the build seed.
    Tiny {
        /// Its shape.
        config: TinyConfig,
    },
    /// SmolLM2 from its GGUF file (see `scripts/fetch-smollm2.sh`).
    Smollm2 {
        /// The GGUF file.
        path: PathBuf,
    },
    /// Qwen2 from a Hugging Face directory (safetensors, `config.json`,
    /// `tokenizer.json`).
    Qwen2 {
        /// The directory.
        dir: PathBuf,
    },
}

/// A built model: the model, its trainable weights and its tokenizer.
pub struct BuiltModel {
    /// The model.
    pub model: AnyModel,
    /// Its weights.
    pub vars: VarMap,
    /// Its tokenizer.
    pub tokenizer: AnyTokenizer,
}

impl ModelSpec {
    /// Builds the model on `device`, its weights in f32: the tiny
    /// transformer's drawn from `seed`, a pretrained model's loaded (the
    /// seed is then unused).
    pub fn build(&self, seed: u64, device: &Device) -> Result<BuiltModel, ModelError> {
        match self {
            ModelSpec::Tiny { config } => {
                let (vars, model) = TinyTransformer::seeded(*config, seed, device)?;
                let tokenizer = ZorplexTokenizer::new();
                TinyTransformer::embed_digit_values(&vars, &tokenizer.digits(), seed)?;
                Ok(BuiltModel {
                    model: AnyModel::Tiny(model),
                    vars,
                    tokenizer: AnyTokenizer::Zorplex(tokenizer),
                })
            }
            ModelSpec::Smollm2 { path } => {
                let loaded = SmolLM2::load(path, DType::F32, device)?;
                Ok(BuiltModel {
                    model: AnyModel::Llama(loaded.model),
                    vars: loaded.vars,
                    tokenizer: AnyTokenizer::Hf(Box::new(loaded.tokenizer)),
                })
            }
            ModelSpec::Qwen2 { dir } => {
                let loaded = Qwen2::load(dir, DType::F32, device)?;
                Ok(BuiltModel {
                    model: AnyModel::Llama(loaded.model),
                    vars: loaded.vars,
                    tokenizer: AnyTokenizer::Hf(Box::new(loaded.tokenizer)),
                })
            }
        }
    }

    /// The family's name: `tiny`, `smollm2` or `qwen2`.
    pub fn family(&self) -> &'static str {
        match self {
            ModelSpec::Tiny { .. } => "tiny",
            ModelSpec::Smollm2 { .. } => "smollm2",
            ModelSpec::Qwen2 { .. } => "qwen2",
        }
    }
}

/// Any of this crate's policy models.
pub enum AnyModel {
    /// The tiny transformer.
    Tiny(TinyTransformer),
    /// A Llama-family model (SmolLM2, Qwen2).
    Llama(Llama),
}

impl LanguageModel for AnyModel {
    fn forward_step(
        &self,
        step: &Step,
        cache: Option<&mut KvCache>,
    ) -> candle_core::Result<Tensor> {
        match self {
            AnyModel::Tiny(m) => m.forward_step(step, cache),
            AnyModel::Llama(m) => m.forward_step(step, cache),
        }
    }

    fn new_cache(&self) -> KvCache {
        match self {
            AnyModel::Tiny(m) => m.new_cache(),
            AnyModel::Llama(m) => m.new_cache(),
        }
    }

    fn vocab_size(&self) -> usize {
        match self {
            AnyModel::Tiny(m) => m.vocab_size(),
            AnyModel::Llama(m) => m.vocab_size(),
        }
    }

    fn max_len(&self) -> usize {
        match self {
            AnyModel::Tiny(m) => m.max_len(),
            AnyModel::Llama(m) => m.max_len(),
        }
    }

    fn device(&self) -> &Device {
        match self {
            AnyModel::Tiny(m) => m.device(),
            AnyModel::Llama(m) => m.device(),
        }
    }
}

/// The tokenizer of any of this crate's policy models.
pub enum AnyTokenizer {
    /// The Zorplex tokenizer of the tiny transformer.
    Zorplex(ZorplexTokenizer),
    /// A Hugging Face tokenizer (SmolLM2, Qwen2), boxed: it is large.
    Hf(Box<HfTokenizer>),
}

impl TextTokenizer for AnyTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        match self {
            AnyTokenizer::Zorplex(t) => t.encode(text),
            AnyTokenizer::Hf(t) => t.encode(text),
        }
    }

    fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        match self {
            AnyTokenizer::Zorplex(t) => t.decode(ids),
            AnyTokenizer::Hf(t) => t.decode(ids),
        }
    }

    fn vocab_size(&self) -> usize {
        match self {
            AnyTokenizer::Zorplex(t) => t.vocab_size(),
            AnyTokenizer::Hf(t) => t.vocab_size(),
        }
    }

    fn end_of_turn(&self) -> Option<u32> {
        match self {
            AnyTokenizer::Zorplex(t) => t.end_of_turn(),
            AnyTokenizer::Hf(t) => t.end_of_turn(),
        }
    }

    fn pad(&self) -> u32 {
        match self {
            AnyTokenizer::Zorplex(t) => t.pad(),
            AnyTokenizer::Hf(t) => t.pad(),
        }
    }
}
