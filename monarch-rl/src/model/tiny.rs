//! A small decoder-only transformer, trained from scratch: pre-norm blocks
//! of causal multi-head attention with rotary positions and a SiLU MLP, and
//! an untied output head. (Rotary positions make copying a number from a
//! tool result into the answer, which Zorplex is all about, far quicker to
//! learn than learned absolute positions did.)

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{embedding, linear_no_bias, Embedding, Linear, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use super::layers::{attention_softmax, rms_norm, rope, rotary_at, rotary_tables, silu};
use super::{KvCache, LanguageModel, Step};

/// The RMS norms' epsilon.
const EPS: f64 = 1e-6;

/// The shape of a [`TinyTransformer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TinyConfig {
    /// Tokens in the vocabulary.
    pub vocab: usize,
    /// Width of the residual stream.
    pub dim: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads (dividing `dim`).
    pub heads: usize,
    /// Width of the MLP's hidden layer.
    pub ffn: usize,
    /// The longest sequence.
    pub max_len: usize,
}

impl Default for TinyConfig {
    /// About 1.3 M parameters for the Zorplex vocabulary.
    fn default() -> Self {
        TinyConfig {
            vocab: 336,
            dim: 192,
            layers: 4,
            heads: 6,
            ffn: 512,
            max_len: 512,
        }
    }
}

#[cfg(test)]
impl TinyConfig {
    /// A model of an 11-token vocabulary small enough for a training step to
    /// take milliseconds, for tests.
    pub(crate) fn for_tests(max_len: usize) -> Self {
        TinyConfig {
            vocab: 11,
            dim: 16,
            layers: 2,
            heads: 2,
            ffn: 24,
            max_len,
        }
    }
}

/// A small decoder-only transformer whose every parameter trains.
pub struct TinyTransformer {
    config: TinyConfig,
    tokens: Embedding,
    blocks: Vec<Block>,
    cos: Tensor,
    sin: Tensor,
    norm: Tensor,
    head: Linear,
}

struct Block {
    attn_norm: Tensor,
    qkv: Linear,
    out: Linear,
    mlp_norm: Tensor,
    up: Linear,
    down: Linear,
}

impl TinyTransformer {
    /// A model of shape `config` with its parameters from `vb` (a
    /// `VarBuilder` over a `VarMap` makes them trainable).
    pub fn new(config: TinyConfig, vb: VarBuilder<'_>) -> Result<Self> {
        if config.heads == 0 || config.dim % config.heads != 0 {
            return Err(candle_core::Error::Msg(format!(
                "{} heads do not divide a width of {}",
                config.heads, config.dim
            )));
        }
        let ones = candle_nn::Init::Const(1.0);
        let blocks = (0..config.layers)
            .map(|i| {
                let vb = vb.pp(format!("block{i}"));
                Ok(Block {
                    attn_norm: vb.get_with_hints(config.dim, "attn_norm", ones)?,
                    qkv: linear_no_bias(config.dim, 3 * config.dim, vb.pp("qkv"))?,
                    out: linear_no_bias(config.dim, config.dim, vb.pp("out"))?,
                    mlp_norm: vb.get_with_hints(config.dim, "mlp_norm", ones)?,
                    up: linear_no_bias(config.dim, config.ffn, vb.pp("up"))?,
                    down: linear_no_bias(config.ffn, config.dim, vb.pp("down"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (cos, sin) = rotary_tables(
            config.dim / config.heads,
            config.max_len,
            10_000.0,
            vb.device(),
        )?;
        Ok(TinyTransformer {
            config,
            tokens: embedding(config.vocab, config.dim, vb.pp("tokens"))?,
            cos,
            sin,
            blocks,
            norm: vb.get_with_hints(config.dim, "norm", ones)?,
            head: linear_no_bias(config.dim, config.vocab, vb.pp("head"))?,
        })
    }

    /// A fresh model with weights drawn from `seed`, trainable through the
    /// returned map: embeddings from N(0, 0.02²), projections from
    /// N(0, 1/fan_in), norms at 1. The same seed gives the same weights.
    pub fn seeded(config: TinyConfig, seed: u64, device: &Device) -> Result<(VarMap, Self)> {
        let vars = VarMap::new();
        let model =
            TinyTransformer::new(config, VarBuilder::from_varmap(&vars, DType::F32, device))?;
        let mut rng = StdRng::seed_from_u64(seed);
        let data = vars.data().lock().expect("no one panicked holding the map");
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let dims = var.dims().to_vec();
            if name.ends_with("norm") {
                continue;
            }
            let std = if name.starts_with("tokens") {
                0.02
            } else {
                1.0 / (dims[1] as f32).sqrt()
            };
            let normal =
                Normal::new(0.0, std).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let values: Vec<f32> = (0..var.elem_count())
                .map(|_| normal.sample(&mut rng))
                .collect();
            var.set(&Tensor::from_vec(values, dims, device)?)?;
        }
        drop(data);
        Ok((vars, model))
    }

    /// Writes each digit's value into the starting embedding of its token:
    /// `digits` holds the tokens of `0`, `1`, ..., `9` in order, `vars` the
    /// weights of a model made by [`seeded`](Self::seeded). Digit `d` gets
    /// `d / 10` of the way round a circle in one plane of the embedding
    /// space and `d / 10` along a third direction (the directions drawn
    /// from `seed`), on top of its random start.
    ///
    /// Starting from embeddings that already order the digits (on a line)
    /// and wrap them modulo ten (on the circle), as the number embeddings
    /// of arithmetic-trained transformers come to, a model of this shape
    /// learned worked sums about twice as fast as from random ones in a
    /// replica trained on sums alone (BENCHMARKS.md, "Policy models").
    /// Every value stays trainable.
    pub fn embed_digit_values(vars: &VarMap, digits: &[u32; 10], seed: u64) -> Result<()> {
        let data = vars.data().lock().expect("no one panicked holding the map");
        let var = data
            .get("tokens.weight")
            .ok_or_else(|| candle_core::Error::Msg("no tokens.weight in the map".into()))?;
        let (vocab, dim) = var.dims2()?;
        if let Some(&bad) = digits.iter().find(|&&id| id as usize >= vocab) {
            return Err(candle_core::Error::Msg(format!(
                "digit token {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 1.0).expect("a valid normal");
        let mut direction = || {
            let v: Vec<f32> = (0..dim).map(|_| normal.sample(&mut rng)).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(|x| x / norm).collect::<Vec<f32>>()
        };
        let (cos, sin, line) = (direction(), direction(), direction());
        let mut table = var.flatten_all()?.to_vec1::<f32>()?;
        for (d, &id) in digits.iter().enumerate() {
            let angle = std::f32::consts::TAU * d as f32 / 10.0;
            let row = &mut table[id as usize * dim..(id as usize + 1) * dim];
            for (i, x) in row.iter_mut().enumerate() {
                *x += DIGIT_CIRCLE * (angle.cos() * cos[i] + angle.sin() * sin[i])
                    + DIGIT_LINE * d as f32 * line[i];
            }
        }
        var.set(&Tensor::from_vec(table, (vocab, dim), var.device())?)
    }

    /// The model's shape.
    pub fn config(&self) -> &TinyConfig {
        &self.config
    }
}

/// The radius of the digits' circle in [`TinyTransformer::embed_digit_values`]
/// (a random embedding row has a norm of about 0.02 x sqrt(dim), 0.28 at
/// the default width).
const DIGIT_CIRCLE: f32 = 0.3;
/// How far along its line each unit of a digit's value moves it.
const DIGIT_LINE: f32 = 0.1;

impl LanguageModel for TinyTransformer {
    fn forward_step(&self, step: &Step, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (batch, len) = step.tokens.dims2()?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        if past + len > self.config.max_len {
            return Err(candle_core::Error::Msg(format!(
                "a sequence of {} tokens is longer than the model's {}",
                past + len,
                self.config.max_len
            )));
        }
        let mut x = self.tokens.forward(&step.tokens)?;
        for (index, block) in self.blocks.iter().enumerate() {
            let normed = rms_norm(&x, &block.attn_norm, EPS)?;
            let attended = self.attention(
                block,
                &normed,
                step,
                cache.as_deref_mut().map(|c| (c, index)),
                batch,
                len,
            )?;
            x = (x + attended)?;
            let hidden = block.up.forward(&rms_norm(&x, &block.mlp_norm, EPS)?)?;
            let activated = silu(&hidden)?;
            x = (x + block.down.forward(&activated)?)?;
        }
        if step.last_only {
            x = x.narrow(1, len - 1, 1)?;
        }
        self.head.forward(&rms_norm(&x, &self.norm, EPS)?)
    }

    fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.layers)
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab
    }

    fn max_len(&self) -> usize {
        self.config.max_len
    }

    fn device(&self) -> &Device {
        self.tokens.embeddings().device()
    }
}

impl TinyTransformer {
    fn attention(
        &self,
        block: &Block,
        x: &Tensor,
        step: &Step,
        cache: Option<(&mut KvCache, usize)>,
        batch: usize,
        len: usize,
    ) -> Result<Tensor> {
        let heads = self.config.heads;
        let head_dim = self.config.dim / heads;
        let qkv = block
            .qkv
            .forward(x)?
            .reshape((batch, len, 3, heads, head_dim))?
            .permute((2, 0, 3, 1, 4))?;
        let (cos, sin) = rotary_at(
            &self.cos,
            &self.sin,
            &step.positions,
            (batch, len, head_dim),
        )?;
        let q = rope(&qkv.get(0)?, &cos, &sin)?;
        let k = rope(&qkv.get(1)?, &cos, &sin)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v)?,
            None => (k, v),
        };
        let scores = q.contiguous()?.matmul(&k.t()?.contiguous()?)?;
        let weights = attention_softmax(&scores, &step.bias, (head_dim as f64).powf(-0.5))?;
        let mixed = weights.matmul(&v)?;
        let merged = mixed
            .transpose(1, 2)?
            .reshape((batch, len, self.config.dim))?;
        block.out.forward(&merged)
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::train::{policy_loss, token_logprobs, Batch, LossConfig, Trainer, TrainerConfig};

    #[test]
    fn digit_values_move_the_digits_embeddings_only_and_in_order() {
        let config = TinyConfig {
            vocab: 20,
            dim: 32,
            ..TinyConfig::for_tests(16)
        };
        let (vars, _) = TinyTransformer::seeded(config, 3, &Device::Cpu).unwrap();
        let table = |vars: &VarMap| -> Vec<Vec<f32>> {
            let data = vars.data().lock().unwrap();
            data["tokens.weight"].as_tensor().to_vec2().unwrap()
        };
        let before = table(&vars);
        let digits: [u32; 10] = std::array::from_fn(|d| 19 - d as u32);
        TinyTransformer::embed_digit_values(&vars, &digits, 3).unwrap();
        let after = table(&vars);
        let moved: Vec<Vec<f32>> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| a.iter().zip(b).map(|(a, b)| a - b).collect())
            .collect();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            moved[..10].iter().all(|row| norm(row) == 0.0),
            "other tokens kept"
        );
        // Each digit moves by the circle's radius and its value along the
        // line, whose directions are orthogonal in expectation: digit 0 by
        // the radius alone, digit 9 the most.
        let shift = |d: usize| norm(&moved[19 - d]);
        assert!((shift(0) - DIGIT_CIRCLE).abs() < 1e-5, "{}", shift(0));
        assert!(shift(9) > shift(1), "{} {}", shift(9), shift(1));
        let err = TinyTransformer::embed_digit_values(&vars, &[20; 10], 3).unwrap_err();
        assert!(err.to_string().contains("outside the vocabulary"), "{err}");
    }

    #[test]
    fn the_default_model_has_one_to_three_million_parameters() {
        let device = Device::Cpu;
        let vars = VarMap::new();
        TinyTransformer::new(
            TinyConfig::default(),
            VarBuilder::from_varmap(&vars, DType::F32, &device),
        )
        .unwrap();
        let count: usize = vars.all_vars().iter().map(|v| v.elem_count()).sum();
        assert!(
            (1_000_000..3_000_000).contains(&count),
            "{count} parameters"
        );
    }

    fn tiny_model(device: &Device) -> (VarMap, TinyTransformer) {
        let vars = VarMap::new();
        let model = TinyTransformer::new(
            TinyConfig::for_tests(8),
            VarBuilder::from_varmap(&vars, DType::F32, device),
        )
        .unwrap();
        (vars, model)
    }

    /// One policy-gradient step gives every parameter a gradient: what a
    /// fused operation without a backward pass would break.
    #[test]
    fn every_parameter_gets_a_gradient() {
        let device = Device::Cpu;
        let (vars, model) = tiny_model(&device);
        let tokens = Tensor::new(&[[1u32, 4, 2, 7, 3, 9], [5, 5, 0, 1, 8, 2]], &device).unwrap();
        let logits = model.forward(&tokens.narrow(1, 0, 5).unwrap()).unwrap();
        let targets = tokens.narrow(1, 1, 5).unwrap();
        let mask = Tensor::new(
            &[[0f32, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0, 1.0]],
            &device,
        )
        .unwrap();
        let behaviour = Tensor::full(-2.4f32, (2, 5), &device).unwrap();
        let advantages = Tensor::new(&[1.0f32, -1.0], &device).unwrap();
        let batch = Batch {
            logits: &logits,
            targets: &targets,
            mask: &mask,
            behaviour_logp: &behaviour,
            advantages: &advantages,
            reference_logp: None,
        };
        let (loss, _) = policy_loss(&batch, &LossConfig::default()).unwrap();
        let grads = loss.backward().unwrap();
        let named = vars.data().lock().unwrap();
        assert_eq!(named.len(), 3 + 6 * 2);
        for (name, var) in named.iter() {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name} has no gradient"));
            let size = grad
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(size > 0.0, "{name} has a zero gradient");
        }
    }

    /// Steps with a positive advantage on fixed completions raise their
    /// probability; the output at a position never depends on later tokens.
    #[test]
    fn training_raises_rewarded_tokens_and_attention_is_causal() {
        let device = Device::Cpu;
        let (vars, model) = tiny_model(&device);
        let a = model
            .forward(&Tensor::new(&[[1u32, 2, 3, 4]], &device).unwrap())
            .unwrap();
        let b = model
            .forward(&Tensor::new(&[[1u32, 2, 9, 9]], &device).unwrap())
            .unwrap();
        let diff = (a.narrow(1, 0, 2).unwrap() - b.narrow(1, 0, 2).unwrap()).unwrap();
        assert!(
            diff.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                < 1e-6
        );

        let tokens = Tensor::new(&[[3u32, 1, 4, 1, 5, 9, 2]], &device).unwrap();
        let inputs = tokens.narrow(1, 0, 6).unwrap();
        let targets = tokens.narrow(1, 1, 6).unwrap().contiguous().unwrap();
        let mask = Tensor::ones((1, 6), DType::F32, &device).unwrap();
        let advantages = Tensor::new(&[1.0f32], &device).unwrap();
        let mean_logp = |logits: &Tensor| {
            token_logprobs(logits, &targets)
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let before = mean_logp(&model.forward(&inputs).unwrap());
        let mut config = TrainerConfig::default();
        config.adamw.lr = 1e-2;
        let mut trainer = Trainer::new(vars.all_vars(), config).unwrap();
        for _ in 0..20 {
            let logits = model.forward(&inputs).unwrap();
            // On-policy: the behaviour is the current policy.
            let behaviour = token_logprobs(&logits, &targets).unwrap().detach();
            let batch = Batch {
                logits: &logits,
                targets: &targets,
                mask: &mask,
                behaviour_logp: &behaviour,
                advantages: &advantages,
                reference_logp: None,
            };
            let (loss, stats) = policy_loss(&batch, &LossConfig::default()).unwrap();
            assert!((stats.mean_ratio - 1.0).abs() < 1e-5);
            let norm = trainer.step(&loss).unwrap();
            assert!(norm.is_finite() && norm > 0.0);
        }
        let after = mean_logp(&model.forward(&inputs).unwrap());
        assert!(after > before + 0.5, "mean log-prob {before} -> {after}");
    }
}
