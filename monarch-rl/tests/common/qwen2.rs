//! A small Qwen2 directory for tests: random weights of the Qwen2.5 layout
//! and a byte-level tokenizer, written to a temporary directory.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use monarch_rl::model::TextTokenizer;

/// A Qwen2 directory with small random weights, a byte-level tokenizer and
/// the Qwen2.5 layout (biased query/key/value projections, untied head).
pub(crate) fn tiny_qwen2_dir() -> tempdir::Dir {
    let dir = tempdir::Dir::new("qwen2");
    let specials = ["<|im_start|>", "<|im_end|>"];
    let tokenizer = monarch_rl::model::HfTokenizer::byte_level_bpe_alphabet(&specials);
    tokenizer.save(&dir.path.join("tokenizer.json")).unwrap();
    let vocab = tokenizer.vocab_size();
    let config = serde_json::json!({
        "model_type": "qwen2", "vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "max_position_embeddings": 1024,
        "tie_word_embeddings": false
    });
    std::fs::write(dir.path.join("config.json"), config.to_string()).unwrap();
    let device = Device::Cpu;
    let mut seed = 0u32;
    let mut random = |shape: &[usize]| {
        seed += 1;
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 1000) as f32
                    / 5000.0
                    - 0.1
            })
            .collect();
        Tensor::from_vec(values, shape, &device).unwrap()
    };
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    tensors.insert("model.embed_tokens.weight".into(), random(&[vocab, 32]));
    tensors.insert("lm_head.weight".into(), random(&[vocab, 32]));
    tensors.insert(
        "model.norm.weight".into(),
        Tensor::ones(32, DType::F32, &device).unwrap(),
    );
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![32, 32]),
            ("self_attn.q_proj.bias", vec![32]),
            ("self_attn.k_proj.weight", vec![16, 32]),
            ("self_attn.k_proj.bias", vec![16]),
            ("self_attn.v_proj.weight", vec![16, 32]),
            ("self_attn.v_proj.bias", vec![16]),
            ("self_attn.o_proj.weight", vec![32, 32]),
            ("mlp.gate_proj.weight", vec![64, 32]),
            ("mlp.up_proj.weight", vec![64, 32]),
            ("mlp.down_proj.weight", vec![32, 64]),
        ] {
            tensors.insert(format!("{p}.{name}"), random(&shape));
        }
        for norm in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
            tensors.insert(
                format!("{p}.{norm}"),
                Tensor::ones(32, DType::F32, &device).unwrap(),
            );
        }
    }
    candle_core::safetensors::save(&tensors, dir.path.join("model.safetensors")).unwrap();
    dir
}

/// A temporary directory removed on drop.
mod tempdir {
    pub(crate) struct Dir {
        pub(crate) path: std::path::PathBuf,
    }

    impl Dir {
        pub(crate) fn new(name: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("monarch-rl-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
