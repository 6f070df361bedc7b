//! Pretrained Llama-family policies: SmolLM2 from its GGUF (when
//! `scripts/fetch-smollm2.sh` has fetched it; skipped with a message
//! otherwise) against reference logits from an independent implementation,
//! and Qwen2 from a Hugging Face directory of small weights made here.

#[path = "common/qwen2.rs"]
mod qwen2;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use monarch_rl::model::{
    generate, GenerateOptions, LanguageModel, Pretrained, Qwen2, Sampler, SmolLM2, TextTokenizer,
};
use monarch_rl::train::{policy_loss, token_logprobs, Batch, FlatWeights, LossConfig};
use monarch_rl::zorplex::Sampling;

fn smollm2_path() -> Option<PathBuf> {
    let path = SmolLM2::default_path();
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipped: no SmolLM2 GGUF at {} (run scripts/fetch-smollm2.sh)",
            path.display()
        );
        None
    }
}

/// One policy-gradient step's gradients reach every variable.
fn assert_every_parameter_trains(loaded: &Pretrained, tokens: &[u32]) {
    let device = loaded.model.device();
    let n = tokens.len() - 1;
    let input = Tensor::new(&tokens[..n], device)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let targets = Tensor::new(&tokens[1..], device)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = loaded.model.forward(&input).unwrap();
    let behaviour = token_logprobs(&logits, &targets).unwrap().detach();
    let mask = Tensor::ones((1, n), DType::F32, device).unwrap();
    let advantages = Tensor::new(&[1.0f32], device).unwrap();
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
    let vars = loaded.vars.data().lock().unwrap();
    for (name, var) in vars.iter() {
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name} has no gradient"));
        let size = grad
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(size > 0.0, "{name} has a zero gradient");
    }
}

#[test]
fn smollm2_tokenizes_digits_one_by_one_and_matches_the_reference_logits() {
    let Some(path) = smollm2_path() else { return };
    let loaded = SmolLM2::load(&path, DType::F32, &Device::Cpu).unwrap();
    let config = loaded.model.config();
    assert_eq!(
        (
            config.num_hidden_layers,
            config.hidden_size,
            config.vocab_size
        ),
        (30, 576, 49152)
    );
    assert!(config.tie_word_embeddings);
    assert!(loaded
        .chat_template
        .as_deref()
        .is_some_and(|t| t.contains("<|im_start|>")));

    let tokenizer = &loaded.tokenizer;
    let ids = tokenizer.encode("[ANSWER] 12345").unwrap();
    let digits: Vec<String> = ids[ids.len() - 5..]
        .iter()
        .map(|&id| tokenizer.decode(&[id]).unwrap())
        .collect();
    assert_eq!(digits, ["1", "2", "3", "4", "5"], "{ids:?}");
    let text = "What is zorplex('cat') + zorplex('dog')?\nAssistant: LOOKUP[cat]\n[Result: 42]";
    assert_eq!(
        tokenizer.decode(&tokenizer.encode(text).unwrap()).unwrap(),
        text
    );
    assert_eq!(
        tokenizer.end_of_turn(),
        tokenizer.encode("<|im_end|>").unwrap().first().copied()
    );

    let reference: serde_json::Value =
        serde_json::from_str(include_str!("data/smollm2_reference.json")).unwrap();
    let tolerance = reference["tolerance"].as_f64().unwrap();
    for case in reference["prompts"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let ids = tokenizer.encode(prompt).unwrap();
        let expected: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ids, expected, "tokens of {prompt:?}");
        let input = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits: Vec<f32> = loaded
            .model
            .forward(&input)
            .unwrap()
            .get(0)
            .unwrap()
            .get(ids.len() - 1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let top_ids = case["top_ids"].as_array().unwrap();
        let top_logits = case["top_logits"].as_array().unwrap();
        let mut worst = 0f64;
        for (id, want) in top_ids.iter().zip(top_logits) {
            let got = f64::from(logits[id.as_u64().unwrap() as usize]);
            worst = worst.max((got - want.as_f64().unwrap()).abs());
        }
        eprintln!("{prompt:?}: logits within {worst:.2e} of the reference");
        assert!(
            worst < tolerance,
            "{prompt:?}: logits differ by up to {worst}"
        );
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        assert_eq!(
            order[0] as u64,
            top_ids[0].as_u64().unwrap(),
            "{prompt:?}: the most likely token"
        );
    }
    assert_every_parameter_trains(
        &loaded,
        &tokenizer.encode("LOOKUP[cat]\n[Result: 42]").unwrap(),
    );
}

#[test]
fn qwen2_loads_generates_deterministically_and_trains_every_weight() {
    let dir = qwen2::tiny_qwen2_dir();
    let loaded = Qwen2::load(&dir.path, DType::F32, &Device::Cpu).unwrap();
    assert!(loaded.model.config().attention_bias);
    let prompt = loaded
        .tokenizer
        .encode("<|im_start|>user\nLOOKUP[cat] 42<|im_end|>")
        .unwrap();
    assert_eq!(
        loaded.tokenizer.decode(&prompt).unwrap(),
        "user\nLOOKUP[cat] 42",
        "specials are skipped in text"
    );
    let options = GenerateOptions {
        max_tokens: 8,
        stop: None,
    };
    let greedy = || {
        Sampler::new(Sampling {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        })
    };
    let a = generate(
        &loaded.model,
        &loaded.tokenizer,
        &[&prompt],
        &options,
        &mut greedy(),
    )
    .unwrap();
    let b = generate(
        &loaded.model,
        &loaded.tokenizer,
        &[&prompt, &prompt[..5]],
        &options,
        &mut greedy(),
    )
    .unwrap();
    assert_eq!(a[0].tokens, b[0].tokens);
    assert_every_parameter_trains(&loaded, &prompt);

    let vars: HashMap<_, _> = loaded.vars.data().lock().unwrap().clone();
    let flat = FlatWeights::export(&vars).unwrap();
    let again = Qwen2::load(&dir.path, DType::F32, &Device::Cpu).unwrap();
    let again_vars: HashMap<_, _> = again.vars.data().lock().unwrap().clone();
    flat.import(&again_vars).unwrap();
    assert_eq!(FlatWeights::export(&again_vars).unwrap(), flat);

    let missing = Qwen2::load(&dir.path.join("absent"), DType::F32, &Device::Cpu)
        .err()
        .unwrap();
    assert!(missing.to_string().contains("config.json"), "{missing}");
}
