//! Generation and training throughput of the policy models on this machine's
//! CPU, with their memory: the tiny transformer always, SmolLM2 when its
//! GGUF has been fetched (`scripts/fetch-smollm2.sh`).
//!
//!     CANDLE_NUM_THREADS=1 cargo bench -p monarch-rs-rl --bench models
//!
//! (`CANDLE_NUM_THREADS=1` as in the example's trainer process, whose
//! training steps run their micro-batches on threads of their own; it
//! allocates with mimalloc, as this bench and the example's processes do.
//! That process also sets `RAYON_NUM_THREADS=1`, which candle's matrix
//! products follow; the bench leaves it unset so that its matrix-product
//! limit uses every core.)
//!
//! Each figure is the best of three timed runs after a warm-up run, printed
//! beside the limit this machine sets, measured in the same run: batch-1
//! generation reads every weight once per token, so it cannot beat memory
//! bandwidth / weight bytes; batched generation and training cannot beat
//! the machine's matrix-multiply rate divided by 2 (forward) or 6 (forward
//! and backward) flops per parameter per token.

use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use monarch_rl::grpo::{train_step, GrpoConfig, Sample};
use monarch_rl::model::{
    generate, GenerateOptions, LanguageModel, Sampler, SmolLM2, TextTokenizer, TinyConfig,
    TinyTransformer, Trajectory, ZorplexTokenizer,
};
use monarch_rl::pretrain::{demonstrations, PretrainConfig};
use monarch_rl::train::{
    pack, policy_loss, token_logprobs, Batch, FlatWeights, LossConfig, Sequence, Trainer,
    TrainerConfig,
};
use monarch_rl::zorplex::{Sampling, SpecKind, TaskSpec};

fn main() {
    let device = Device::Cpu;
    let limits = Limits::measure(&device);
    println!(
        "limits: memcpy {:.1} GiB/s, f32 matmul {:.1} GFLOP/s (candle, 1024x1024)",
        limits.copy_bytes_per_s / (1u64 << 30) as f64,
        limits.flops / 1e9
    );
    let prompt_text = {
        let mut spec = TaskSpec::new(SpecKind::Simple, 1);
        let task = spec.generate_task();
        format!(
            "{}\n\nUser: {}\nAssistant: ",
            spec.system_prompt(),
            task.question
        )
    };
    println!(
        "model          params  weights MiB  RSS+ MiB | gen b=1 tok/s (of limit) | gen b=8 tok/s (of limit) | train tok/s (of limit)"
    );
    let before = resident_bytes();
    let tokenizer = ZorplexTokenizer::new();
    let config = TinyConfig {
        vocab: tokenizer.vocab_size(),
        ..TinyConfig::default()
    };
    let (vars, model) = TinyTransformer::seeded(config, 0, &device).unwrap();
    let loaded = resident_bytes().saturating_sub(before);
    report(
        "tiny",
        &model,
        &vars,
        &tokenizer,
        &prompt_text,
        loaded,
        &limits,
    );
    grpo_step(&model, &vars, &tokenizer);
    flat_weights("tiny", &vars, 20);

    let path = SmolLM2::default_path();
    if path.exists() {
        let before = resident_bytes();
        let smol = SmolLM2::load(&path, DType::F32, &device).unwrap();
        let loaded = resident_bytes().saturating_sub(before);
        report(
            "smollm2-135m",
            &smol.model,
            &smol.vars,
            &smol.tokenizer,
            &prompt_text,
            loaded,
            &limits,
        );
        flat_weights("smollm2-135m", &smol.vars, 1);
    } else {
        println!(
            "smollm2: skipped, no GGUF at {} (run scripts/fetch-smollm2.sh)",
            path.display()
        );
    }
}

/// A GRPO step of the tiny model on 24 scripted episodes of every spec
/// (lengths as RL sees them), trained in micro-batches within the default
/// token budget on one thread against the same step in one batch padded to
/// the longest episode (the step as it was before micro-batches); the
/// micro-batches on [`TrainerConfig::threads`] threads side by side against
/// one thread (set `CANDLE_NUM_THREADS=1`, as the example's trainer process
/// does, for candle not to split each operation over the same cores as
/// well); and the step with a KL penalty, whose frozen reference model runs
/// forward on every micro-batch too, against the step without one.
fn grpo_step(model: &TinyTransformer, vars: &VarMap, tokenizer: &ZorplexTokenizer) {
    let warm_up = PretrainConfig {
        episodes_per_kind: 16,
        ..PretrainConfig::default()
    };
    let demos = futures::executor::block_on(demonstrations(&warm_up, tokenizer)).unwrap();
    let samples: Vec<Sample> = demos
        .iter()
        .step_by(2)
        .take(24)
        .enumerate()
        .map(|(i, demo)| Sample {
            trajectory: Trajectory {
                tokens: demo.tokens.clone(),
                model_mask: demo.mask.clone(),
                behaviour_logp: vec![-1.0; demo.tokens.len()],
                text_ends: Vec::new(),
            },
            // Alternating rewards, so that no group is dropped.
            reward: (i % 2) as f64,
            correct: i % 2 == 1,
            temperature: 1.0,
            working: Vec::new(),
            lookups: Vec::new(),
        })
        .collect();
    let tokens: usize = samples.iter().map(|s| s.trajectory.tokens.len()).sum();
    let longest = samples
        .iter()
        .map(|s| s.trajectory.tokens.len())
        .max()
        .unwrap_or(0);
    let (_, reference) = TinyTransformer::seeded(*model.config(), 1, &Device::Cpu).unwrap();
    let threads = TrainerConfig::default().threads;
    let seconds = |micro_batch_tokens: usize, kl_coef: f64, threads: usize| {
        let mut trainer = Trainer::new(
            vars.all_vars(),
            TrainerConfig {
                threads,
                ..TrainerConfig::default()
            },
        )
        .unwrap();
        let config = GrpoConfig {
            micro_batch_tokens,
            loss: LossConfig {
                kl_coef,
                ..LossConfig::default()
            },
            ..GrpoConfig::default()
        };
        let reference = (kl_coef > 0.0).then_some(&reference as &dyn LanguageModel);
        1.0 / best_of(|| {
            train_step(model, reference, &mut trainer, &samples, &config).unwrap();
            1
        })
    };
    let budget = GrpoConfig::default().micro_batch_tokens;
    let micro = seconds(budget, 0.0, threads);
    let whole = seconds(usize::MAX, 0.0, 1);
    let with_kl = seconds(budget, 0.2, threads);
    let one_thread = seconds(budget, 0.0, 1);
    println!(
        "tiny GRPO step, {} episodes ({tokens} tokens, longest {longest}): one padded batch {whole:.3} s, micro-batches of {budget} tokens {one_thread:.3} s ({:.2}x faster), the same on {threads} threads {micro:.3} s ({:.2}x faster again; CANDLE_NUM_THREADS={}); with a KL penalty {with_kl:.3} s ({:.2}x the step without)",
        samples.len(),
        whole / one_thread,
        one_thread / micro,
        std::env::var("CANDLE_NUM_THREADS").unwrap_or_else(|_| "unset".into()),
        with_kl / micro,
    );
}

/// Exporting a model's weights into one flat buffer (what the trainer
/// publishes) and importing them back (what a generator does after its
/// one-sided read), against a memcpy of the same bytes between two warm
/// buffers: the peer a weight sync is measured against. Each timed run
/// repeats every operation `repeats` times.
fn flat_weights(name: &str, vars: &VarMap, repeats: usize) {
    let vars = vars.data().lock().unwrap().clone();
    let flat = FlatWeights::export(&vars).unwrap();
    let len = flat.bytes.len();
    let mut copy = vec![0u8; len];
    let seconds = |rate: f64| (len * repeats) as f64 / rate;
    let memcpy = seconds(best_of(|| {
        for _ in 0..repeats {
            copy.copy_from_slice(std::hint::black_box(&flat.bytes));
            std::hint::black_box(&mut copy);
        }
        len * repeats
    }));
    let import = seconds(best_of(|| {
        for _ in 0..repeats {
            flat.import(&vars).unwrap();
        }
        len * repeats
    }));
    let export = seconds(best_of(|| {
        for _ in 0..repeats {
            std::hint::black_box(FlatWeights::export(&vars).unwrap());
        }
        len * repeats
    }));
    let ms = |s: f64| s * 1e3 / repeats as f64;
    println!(
        "{name} flat weights ({:.1} MiB): memcpy {:.3} ms, import {:.3} ms ({:.1}x memcpy), export {:.3} ms ({:.1}x memcpy)",
        len as f64 / (1u64 << 20) as f64,
        ms(memcpy),
        ms(import),
        import / memcpy,
        ms(export),
        export / memcpy
    );
}

/// This machine's limits, measured in this run.
struct Limits {
    copy_bytes_per_s: f64,
    flops: f64,
}

impl Limits {
    fn measure(device: &Device) -> Self {
        let source = vec![1u8; 256 << 20];
        let mut target = vec![0u8; source.len()];
        let copy = best_of(|| {
            target.copy_from_slice(std::hint::black_box(&source));
            std::hint::black_box(&mut target);
            source.len()
        });
        let n = 1024;
        let a = Tensor::randn(0f32, 1.0, (n, n), device).unwrap();
        let b = Tensor::randn(0f32, 1.0, (n, n), device).unwrap();
        let flops = best_of(|| {
            std::hint::black_box(a.matmul(&b).unwrap());
            2 * n * n * n
        });
        Limits {
            copy_bytes_per_s: copy,
            flops,
        }
    }
}

fn report(
    name: &str,
    model: &dyn LanguageModel,
    vars: &VarMap,
    tokenizer: &dyn TextTokenizer,
    prompt_text: &str,
    loaded_bytes: u64,
    limits: &Limits,
) {
    let params: usize = vars.all_vars().iter().map(|v| v.elem_count()).sum();
    let weight_bytes = (params * 4) as f64;
    let prompt = tokenizer.encode(prompt_text).unwrap();
    let options = GenerateOptions {
        max_tokens: 32,
        stop: None,
    };
    let sampling = Sampling {
        temperature: 1.0,
        top_p: 1.0,
        seed: 1,
    };
    // Generated tokens only: the prompt's prefill is part of the time.
    let gen = |rows: usize| {
        best_of(|| {
            let prompts: Vec<&[u32]> = (0..rows).map(|_| prompt.as_slice()).collect();
            let out = generate(
                model,
                tokenizer,
                &prompts,
                &options,
                &mut Sampler::new(sampling),
            )
            .unwrap();
            out.iter().map(|g| g.tokens.len()).sum::<usize>()
        })
    };
    let single = gen(1);
    let batched = gen(8);
    let train_len = 64;
    let train = {
        let mut trainer = Trainer::new(vars.all_vars(), TrainerConfig::default()).unwrap();
        let tokens: Vec<u32> = prompt.iter().copied().cycle().take(train_len + 1).collect();
        let mask = vec![true; tokens.len()];
        best_of(|| {
            let sequences: Vec<Sequence<'_>> = (0..8)
                .map(|_| Sequence {
                    tokens: &tokens,
                    mask: &mask,
                    behaviour_logp: &[],
                })
                .collect();
            let packed = pack(&sequences, 0, model.device()).unwrap();
            let logits = model.forward(&packed.inputs).unwrap();
            let behaviour = token_logprobs(&logits, &packed.targets).unwrap().detach();
            let advantages = Tensor::ones(8, DType::F32, model.device()).unwrap();
            let batch = Batch {
                logits: &logits,
                targets: &packed.targets,
                mask: &packed.mask,
                behaviour_logp: &behaviour,
                advantages: &advantages,
                reference_logp: None,
            };
            let (loss, _) = policy_loss(&batch, &LossConfig::default()).unwrap();
            trainer.step(&loss).unwrap();
            8 * train_len
        })
    };
    let single_limit = limits.copy_bytes_per_s / weight_bytes;
    let forward_limit = limits.flops / (2.0 * params as f64);
    let train_limit = limits.flops / (6.0 * params as f64);
    let mib = |bytes: f64| bytes / (1u64 << 20) as f64;
    println!(
        "{name:<14} {:>5.1} M {:>11.1} {:>9.1} | {single:>13.1} ({:>5.1}%)  | {batched:>13.1} ({:>5.1}%)  | {train:>11.1} ({:>5.1}%)",
        params as f64 / 1e6,
        mib(weight_bytes),
        mib(loaded_bytes as f64),
        100.0 * single / single_limit,
        100.0 * batched / forward_limit,
        100.0 * train / train_limit,
    );
}

/// This process's resident memory, from `/proc/self/statm` (0 where there
/// is none).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Units per second of `run` (which returns the units it processed): the
/// best of three after one warm-up.
fn best_of(mut run: impl FnMut() -> usize) -> f64 {
    run();
    (0..3)
        .map(|_| {
            let started = Instant::now();
            let units = run();
            units as f64 / started.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}
