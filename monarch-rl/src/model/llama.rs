//! The Llama family of decoders (SmolLM2, Qwen2): grouped-query attention
//! with rotary positions, a SwiGLU MLP and RMS norms, from differentiable
//! operations so that every weight trains. Weights use the Hugging Face
//! names and layout; [`super::gguf`] converts GGUF files into it.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{linear_b, linear_no_bias, Embedding, Linear, VarBuilder};
use serde::Deserialize;

use super::layers::{attention_softmax, rms_norm, rope, rotary_at, rotary_tables, silu};
use super::{KvCache, LanguageModel, Step};

/// The shape of a [`Llama`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct LlamaConfig {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key and value heads (dividing the query heads).
    pub num_key_value_heads: usize,
    /// The rotary embedding's base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// The RMS norms' epsilon.
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    /// The longest sequence (the model's own limit; generation here caps it
    /// at [`LlamaConfig::context`]).
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Whether the output head is the token embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Whether the query, key and value projections have biases (Qwen2).
    #[serde(default)]
    pub attention_bias: bool,
}

fn default_rope_theta() -> f64 {
    10_000.0
}

fn default_rms_eps() -> f64 {
    1e-6
}

fn default_max_positions() -> usize {
    2048
}

impl LlamaConfig {
    /// A `config.json` of Hugging Face Transformers (`model_type` `llama` or
    /// `qwen2`; Qwen2's projections have biases).
    pub fn from_hf_json(json: &str) -> std::result::Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Kind {
            #[serde(default)]
            model_type: String,
        }
        let mut config: LlamaConfig = serde_json::from_str(json)?;
        if serde_json::from_str::<Kind>(json)?.model_type == "qwen2" {
            config.attention_bias = true;
        }
        Ok(config)
    }

    /// The positions generation and training use: the model's limit, at
    /// most 4096 (the rotary tables are built for this many).
    pub fn context(&self) -> usize {
        self.max_position_embeddings.min(4096)
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// A Llama-family decoder.
pub struct Llama {
    config: LlamaConfig,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: Tensor,
    head: Linear,
    cos: Tensor,
    sin: Tensor,
}

struct Block {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    mlp_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Llama {
    /// A model of shape `config` with its weights from `vb`, under the
    /// Hugging Face names (`model.layers.N.self_attn.q_proj.weight`, ...).
    pub fn new(config: LlamaConfig, vb: VarBuilder<'_>) -> Result<Self> {
        let (heads, kv_heads) = (config.num_attention_heads, config.num_key_value_heads);
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 || config.hidden_size % heads != 0 {
            return Err(candle_core::Error::Msg(format!(
                "{heads} query heads, {kv_heads} key-value heads and a width of {} do not fit together",
                config.hidden_size
            )));
        }
        let (hidden, head_dim) = (config.hidden_size, config.head_dim());
        let ones = candle_nn::Init::Const(1.0);
        let model = vb.pp("model");
        let blocks = (0..config.num_hidden_layers)
            .map(|i| {
                let vb = model.pp(format!("layers.{i}"));
                let attn = vb.pp("self_attn");
                let mlp = vb.pp("mlp");
                let bias = config.attention_bias;
                Ok(Block {
                    attn_norm: vb
                        .pp("input_layernorm")
                        .get_with_hints(hidden, "weight", ones)?,
                    q: linear_b(hidden, heads * head_dim, bias, attn.pp("q_proj"))?,
                    k: linear_b(hidden, kv_heads * head_dim, bias, attn.pp("k_proj"))?,
                    v: linear_b(hidden, kv_heads * head_dim, bias, attn.pp("v_proj"))?,
                    o: linear_no_bias(heads * head_dim, hidden, attn.pp("o_proj"))?,
                    mlp_norm: vb
                        .pp("post_attention_layernorm")
                        .get_with_hints(hidden, "weight", ones)?,
                    gate: linear_no_bias(hidden, config.intermediate_size, mlp.pp("gate_proj"))?,
                    up: linear_no_bias(hidden, config.intermediate_size, mlp.pp("up_proj"))?,
                    down: linear_no_bias(config.intermediate_size, hidden, mlp.pp("down_proj"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embeddings = model.pp("embed_tokens").get_with_hints(
            (config.vocab_size, hidden),
            "weight",
            candle_nn::Init::Randn {
                mean: 0.0,
                stdev: 0.02,
            },
        )?;
        let head = if config.tie_word_embeddings {
            Linear::new(embeddings.clone(), None)
        } else {
            linear_no_bias(hidden, config.vocab_size, vb.pp("lm_head"))?
        };
        let (cos, sin) = rotary_tables(
            config.head_dim(),
            config.context(),
            config.rope_theta,
            vb.device(),
        )?;
        let (cos, sin) = (cos.to_dtype(vb.dtype())?, sin.to_dtype(vb.dtype())?);
        Ok(Llama {
            embed: Embedding::new(embeddings, hidden),
            blocks,
            norm: model.pp("norm").get_with_hints(hidden, "weight", ones)?,
            head,
            cos,
            sin,
            config,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    fn attention(
        &self,
        block: &Block,
        x: &Tensor,
        step: &Step,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Result<Tensor> {
        let (batch, len, _) = x.dims3()?;
        let c = &self.config;
        let (heads, kv_heads, head_dim) =
            (c.num_attention_heads, c.num_key_value_heads, c.head_dim());
        let split = |t: Tensor, n: usize| t.reshape((batch, len, n, head_dim))?.transpose(1, 2);
        let (cos, sin) = rotary_at(
            &self.cos,
            &self.sin,
            &step.positions,
            (batch, len, head_dim),
        )?;
        let q = rope(&split(block.q.forward(x)?, heads)?, &cos, &sin)?;
        let k = rope(&split(block.k.forward(x)?, kv_heads)?, &cos, &sin)?.contiguous()?;
        let v = split(block.v.forward(x)?, kv_heads)?.contiguous()?;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v)?,
            None => (k, v),
        };
        let (k, v) = (
            repeat_kv(&k, heads / kv_heads)?,
            repeat_kv(&v, heads / kv_heads)?,
        );
        let scores = q.contiguous()?.matmul(&k.t()?.contiguous()?)?;
        let weights = attention_softmax(
            &scores,
            &step.bias.to_dtype(q.dtype())?,
            (head_dim as f64).powf(-0.5),
        )?;
        let mixed = weights.matmul(&v)?;
        block.o.forward(
            &mixed
                .transpose(1, 2)?
                .reshape((batch, len, heads * head_dim))?,
        )
    }
}

impl LanguageModel for Llama {
    fn forward_step(&self, step: &Step, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let len = step.tokens.dim(1)?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        if past + len > self.config.context() {
            return Err(candle_core::Error::Msg(format!(
                "a sequence of {} tokens is longer than the model's {}",
                past + len,
                self.config.context()
            )));
        }
        let eps = self.config.rms_norm_eps;
        let mut x = self.embed.forward(&step.tokens)?;
        for (index, block) in self.blocks.iter().enumerate() {
            let normed = rms_norm(&x, &block.attn_norm, eps)?;
            let attended = self.attention(
                block,
                &normed,
                step,
                cache.as_deref_mut().map(|c| (c, index)),
            )?;
            x = (x + attended)?;
            let normed = rms_norm(&x, &block.mlp_norm, eps)?;
            let hidden = (silu(&block.gate.forward(&normed)?)? * block.up.forward(&normed)?)?;
            x = (x + block.down.forward(&hidden)?)?;
        }
        if step.last_only {
            x = x.narrow(1, len - 1, 1)?;
        }
        self.head.forward(&rms_norm(&x, &self.norm, eps)?)
    }

    fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_hidden_layers)
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn max_len(&self) -> usize {
        self.config.context()
    }

    fn device(&self) -> &Device {
        self.norm.device()
    }
}

/// `x` `(B, kv, T, d)` with each head repeated `n` times: `(B, kv * n, T, d)`.
fn repeat_kv(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (b, kv, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kv, n, t, d))?
        .reshape((b, kv * n, t, d))
}
