//! Loading pretrained Llama-family models into trainable variables:
//! SmolLM2 from its GGUF file, Qwen2 from a Hugging Face directory.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use super::{HfTokenizer, Llama, LlamaConfig, ModelError};

/// A pretrained model ready to generate and train.
pub struct Pretrained {
    /// The model.
    pub model: Llama,
    /// Its weights, trainable.
    pub vars: VarMap,
    /// Its tokenizer.
    pub tokenizer: HfTokenizer,
    /// The chat template the model was tuned with (Jinja), if it ships one.
    pub chat_template: Option<String>,
}

/// SmolLM2 (a Llama) from a GGUF file, dequantised into `dtype` variables.
pub struct SmolLM2;

impl SmolLM2 {
    /// Where `scripts/fetch-smollm2.sh` puts the GGUF: `$MONARCH_SMOLLM2_GGUF`
    /// if set, else `SmolLM2-135M-Instruct.Q4_1.gguf` in `$MONARCH_MODEL_CACHE`
    /// (by default `~/.cache/monarch-rs/models`). The file may not exist.
    pub fn default_path() -> std::path::PathBuf {
        use std::path::PathBuf;
        if let Some(path) = std::env::var_os("MONARCH_SMOLLM2_GGUF") {
            return PathBuf::from(path);
        }
        let cache = std::env::var_os("MONARCH_MODEL_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/monarch-rs/models")
            });
        cache.join("SmolLM2-135M-Instruct.Q4_1.gguf")
    }

    /// Loads the GGUF at `path` (see `scripts/fetch-smollm2.sh`): weights
    /// dequantised to `dtype` (`F32`, or `BF16` to halve the memory), the
    /// tokenizer and chat template from its metadata.
    pub fn load(path: &Path, dtype: DType, device: &Device) -> Result<Pretrained, ModelError> {
        let load_error = |reason: String| ModelError::Load {
            path: path.display().to_string(),
            reason,
        };
        let mut file = File::open(path).map_err(|e| load_error(format!("cannot open: {e}")))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| load_error(format!("not a GGUF file: {e}")))?;
        let meta = Metadata {
            content: &content,
            error: &load_error,
        };
        let arch = meta.string("general.architecture")?;
        if arch != "llama" {
            return Err(load_error(format!(
                "architecture `{arch}`, expected `llama`"
            )));
        }
        let heads = meta.u32("llama.attention.head_count")? as usize;
        let kv_heads = meta.u32("llama.attention.head_count_kv")? as usize;
        let tokens = meta.strings("tokenizer.ggml.tokens")?;
        let has_output = content.tensor_infos.contains_key("output.weight");
        let config = LlamaConfig {
            vocab_size: tokens.len(),
            hidden_size: meta.u32("llama.embedding_length")? as usize,
            intermediate_size: meta.u32("llama.feed_forward_length")? as usize,
            num_hidden_layers: meta.u32("llama.block_count")? as usize,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            rope_theta: f64::from(meta.f32("llama.rope.freq_base").unwrap_or(10_000.0)),
            rms_norm_eps: f64::from(meta.f32("llama.attention.layer_norm_rms_epsilon")?),
            max_position_embeddings: meta.u32("llama.context_length")? as usize,
            tie_word_embeddings: !has_output,
            attention_bias: false,
        };
        let head_dim = config.hidden_size / heads;
        let mut tensors = HashMap::new();
        for name in content.tensor_infos.keys() {
            let Some(hf) = hf_name(name) else {
                return Err(load_error(format!("unexpected tensor `{name}`")));
            };
            let tensor = content
                .tensor(&mut file, name, device)
                .and_then(|q| q.dequantize(device))
                .map_err(|e| load_error(format!("tensor `{name}`: {e}")))?;
            // llama.cpp stores the query and key rows interleaved for its
            // rotary kernel; put them back in the Hugging Face order.
            let tensor = if name.ends_with("attn_q.weight") {
                unpermute(&tensor, heads, head_dim)?
            } else if name.ends_with("attn_k.weight") {
                unpermute(&tensor, kv_heads, head_dim)?
            } else {
                tensor
            };
            tensors.insert(hf, tensor.to_dtype(dtype)?);
        }
        let vars = trainable(tensors)?;
        let model = Llama::new(config, VarBuilder::from_varmap(&vars, dtype, device))?;
        let merges = meta.strings("tokenizer.ggml.merges")?;
        let types = meta.u32s("tokenizer.ggml.token_type").unwrap_or_default();
        // Token type 3 is a control token (`<|im_start|>`, `<|im_end|>`, ...).
        let specials: Vec<String> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, &t)| t == 3)
            .map(|(s, _)| s.clone())
            .collect();
        let tokenizer = HfTokenizer::byte_level_bpe(&tokens, &merges, &specials, "<|im_end|>")?;
        Ok(Pretrained {
            model,
            vars,
            tokenizer,
            chat_template: meta.string("tokenizer.chat_template").ok(),
        })
    }
}

/// Qwen2 (the Qwen2.5 layout) from a Hugging Face directory.
pub struct Qwen2;

impl Qwen2 {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` (or
    /// `model-*.safetensors` shards) from `dir` into `dtype` variables.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Pretrained, ModelError> {
        let load_error = |path: &Path, reason: String| ModelError::Load {
            path: path.display().to_string(),
            reason,
        };
        let config_path = dir.join("config.json");
        let json = std::fs::read_to_string(&config_path)
            .map_err(|e| load_error(&config_path, format!("cannot read: {e}")))?;
        let config = LlamaConfig::from_hf_json(&json)
            .map_err(|e| load_error(&config_path, format!("not a model config: {e}")))?;
        let mut shards: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| load_error(dir, format!("cannot list: {e}")))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        shards.sort();
        if shards.is_empty() {
            return Err(load_error(dir, "no .safetensors file".into()));
        }
        let mut tensors = HashMap::new();
        for shard in &shards {
            let loaded = candle_core::safetensors::load(shard, device)
                .map_err(|e| load_error(shard, format!("not a safetensors file: {e}")))?;
            for (name, tensor) in loaded {
                tensors.insert(name, tensor.to_dtype(dtype)?);
            }
        }
        if config.tie_word_embeddings {
            tensors.remove("lm_head.weight");
        }
        let vars = trainable(tensors)?;
        let model = Llama::new(config, VarBuilder::from_varmap(&vars, dtype, device))?;
        let tokenizer = HfTokenizer::from_json_file(&dir.join("tokenizer.json"), "<|im_end|>")?;
        let template = std::fs::read_to_string(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("chat_template")?.as_str().map(str::to_string));
        Ok(Pretrained {
            model,
            vars,
            tokenizer,
            chat_template: template,
        })
    }
}

/// Tensors as the variables of a map.
fn trainable(tensors: HashMap<String, Tensor>) -> Result<VarMap, ModelError> {
    let vars = VarMap::new();
    {
        let mut data = vars.data().lock().expect("a fresh map");
        for (name, tensor) in tensors {
            data.insert(name, Var::from_tensor(&tensor)?);
        }
    }
    Ok(vars)
}

/// The Hugging Face name of a llama.cpp tensor.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, tail) = rest.split_once('.')?;
    let hf = match tail {
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// Undoes llama.cpp's interleaving of the rotary halves of each head's rows.
fn unpermute(w: &Tensor, heads: usize, head_dim: usize) -> candle_core::Result<Tensor> {
    let (out, inp) = w.dims2()?;
    w.reshape((heads, head_dim / 2, 2, inp))?
        .transpose(1, 2)?
        .reshape((out, inp))
}

/// Typed reads of GGUF metadata, with errors naming the key.
struct Metadata<'a, E> {
    content: &'a gguf_file::Content,
    error: &'a E,
}

impl<E: Fn(String) -> ModelError> Metadata<'_, E> {
    fn value(&self, key: &str) -> Result<&gguf_file::Value, ModelError> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| (self.error)(format!("no `{key}` in the metadata")))
    }

    fn typed<T>(
        &self,
        key: &str,
        read: impl FnOnce(&gguf_file::Value) -> candle_core::Result<T>,
    ) -> Result<T, ModelError> {
        read(self.value(key)?).map_err(|e| (self.error)(format!("`{key}`: {e}")))
    }

    fn string(&self, key: &str) -> Result<String, ModelError> {
        self.typed(key, |v| v.to_string().cloned())
    }

    fn u32(&self, key: &str) -> Result<u32, ModelError> {
        self.typed(key, |v| v.to_u32())
    }

    fn f32(&self, key: &str) -> Result<f32, ModelError> {
        self.typed(key, |v| v.to_f32())
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, ModelError> {
        self.typed(key, |v| {
            v.to_vec()?.iter().map(|s| s.to_string().cloned()).collect()
        })
    }

    fn u32s(&self, key: &str) -> Result<Vec<u32>, ModelError> {
        self.typed(key, |v| {
            v.to_vec()?
                .iter()
                .map(|x| x.to_i32().map(|i| i as u32).or_else(|_| x.to_u32()))
                .collect()
        })
    }
}
