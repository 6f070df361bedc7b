//! The tiny transformer learns Zorplex: the default seeded warm-up on
//! noisy scripted demonstrations lands in the intended accuracy band, and a
//! short GRPO run raises held-out accuracy on simple tasks by a clear margin.
//!
//! About five minutes on two cores; deterministic for a given machine.

/// candle allocates a fresh buffer for every tensor; mimalloc reuses freed
/// pages where the system allocator returns them to the kernel (the warm-up
/// runs about a fifth faster), and with `MIMALLOC_PURGE_DELAY=-1` (set by
/// `.cargo/config.toml`) never returns them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Once;

use candle_core::Device;
use candle_nn::VarMap;
use monarch_rl::grpo::{train_grpo, GrpoConfig};
use monarch_rl::model::{
    ModelPolicy, TextTokenizer, TinyConfig, TinyTransformer, ZorplexTokenizer,
    ONE_THREAD_PER_OPERATION,
};
use monarch_rl::pretrain::{demonstrations, pretrain, sum_drills, PretrainConfig};
use monarch_rl::zorplex::{
    evaluate_spec, Compat, EpisodeConfig, ReportTable, Sampling, SpecKind, SpecReport,
};

/// Held-out tasks: seeds no warm-up or RL run draws from (task i is the
/// first task of `HELD_OUT + i`, each from a table of its own).
const HELD_OUT: i64 = 10_000;

/// The intended band of the warm model's accuracy on compositional and
/// recursive tasks.
const BAND_LOW: f64 = 0.2;
const BAND_HIGH: f64 = 0.5;

/// How much GRPO must raise the sampled accuracy on simple tasks.
const MARGIN: f64 = 0.3;

/// Accuracy on 40 held-out tasks, decoding greedily or, with `temperature`
/// 1, sampling as the policy behaves in RL (greedy decoding hides much of
/// the noise the warm-up taught).
async fn held_out<P: monarch_rl::zorplex::Policy>(
    kind: SpecKind,
    temperature: f32,
    policy: &mut P,
) -> SpecReport {
    let config = EpisodeConfig {
        sampling: Sampling {
            temperature,
            top_p: 1.0,
            seed: 5,
        },
        ..EpisodeConfig::default()
    };
    evaluate_spec(kind, HELD_OUT, 40, Compat::default(), &config, policy)
        .await
        .unwrap()
}

/// The tiny model of the main job, seeded 0, warmed up by `warm_up`.
async fn warm_model(
    warm_up: &PretrainConfig,
) -> (VarMap, ModelPolicy<TinyTransformer, ZorplexTokenizer>) {
    // The warm-up computes its micro-batches on threads side by side; candle
    // splitting each small operation over the same cores only slows it. Set
    // once, before either test runs candle.
    static ONE_CANDLE_THREAD: Once = Once::new();
    ONE_CANDLE_THREAD.call_once(|| {
        for (name, value) in ONE_THREAD_PER_OPERATION {
            std::env::set_var(name, value);
        }
    });
    let tokenizer = ZorplexTokenizer::new();
    let config = TinyConfig {
        vocab: tokenizer.vocab_size(),
        ..TinyConfig::default()
    };
    let (vars, model) = TinyTransformer::seeded(config, 0, &Device::Cpu).unwrap();
    TinyTransformer::embed_digit_values(&vars, &tokenizer.digits(), 0).unwrap();
    let demos = demonstrations(warm_up, &tokenizer).await.unwrap();
    let drills = sum_drills(warm_up, &tokenizer).unwrap();
    let report = pretrain(&model, &vars, tokenizer.pad(), &demos, &drills, warm_up).unwrap();
    eprintln!("{report:?}");
    assert!(report.last_loss < report.first_loss / 4.0, "{report:?}");
    (vars, ModelPolicy::new(model, tokenizer))
}

#[tokio::test(flavor = "current_thread")]
async fn the_default_warm_up_lands_in_the_band() {
    let (_, mut policy) = warm_model(&PretrainConfig::default()).await;
    let mut warm = Vec::new();
    for kind in SpecKind::rl_mix() {
        warm.push(held_out(kind, 0.0, &mut policy).await);
    }
    eprintln!("warm model, held-out tasks, greedy\n{}", ReportTable(&warm));
    let accuracy = |name: &str| warm.iter().find(|r| r.spec == name).unwrap().accuracy;
    // It has learnt the tools and the answer format...
    let simple = warm.iter().find(|r| r.spec == "simple").unwrap();
    assert!(
        simple.format_rate >= 0.8,
        "format rate {}",
        simple.format_rate
    );
    assert!(
        simple.mean_tool_calls >= 0.8,
        "tool calls {}",
        simple.mean_tool_calls
    );
    // ...and is far from perfect where tasks compose: in the band taken
    // over the two composed specs, and neither spec failed or solved (each
    // alone moves by ten points or more with the float order of a step,
    // BENCHMARKS.md, "Policy models").
    let (compositional, recursive) = (accuracy("compositional_easy"), accuracy("recursive_2"));
    let composed = (compositional + recursive) / 2.0;
    assert!(
        (BAND_LOW..=BAND_HIGH).contains(&composed),
        "composed accuracy {composed} outside the band {BAND_LOW}..={BAND_HIGH}"
    );
    for (name, hard) in [
        ("compositional_easy", compositional),
        ("recursive_2", recursive),
    ] {
        assert!(
            (0.1..=0.8).contains(&hard),
            "{name} accuracy {hard}: failed or solved"
        );
    }
}

/// A warm-up of half the default steps without worked sums, every spec's
/// demonstrations misbehaving at the one rate, leaves the simple tasks'
/// failure in (the model reads the value, then misreports it), and GRPO
/// raises accuracy past it. It does so the cheap way the benchmark allows:
/// the model learns to stop after the lookup, and Zorplex, as the
/// reference, reads a simple task's tool value as the answer when none is
/// tagged (the format rate falls to 0%; BENCHMARKS.md, "Policy models").
///
/// The warm model is this test's own, not the default's: ten steps move a
/// model only as far as its sampled failures differ in reward, and that
/// depends on the whole warm-up (when only the recursive demonstrations
/// misbehaved more often, at 40%, this warm-up's model went from 15% to
/// 22.5% in the same ten steps, on tasks of one table; BENCHMARKS.md,
/// "Policy models").
#[tokio::test(flavor = "current_thread")]
async fn grpo_raises_simple_accuracy_by_a_clear_margin() {
    let warm_up = PretrainConfig {
        steps: 250,
        drill_rows: 0,
        spec_error_rates: Vec::new(),
        spec_noises: Vec::new(),
        ..PretrainConfig::default()
    };
    let (vars, mut policy) = warm_model(&warm_up).await;
    let before = held_out(SpecKind::Simple, 1.0, &mut policy).await;
    eprintln!(
        "warm model, sampled\n{}",
        ReportTable(std::slice::from_ref(&before))
    );
    let rl = GrpoConfig {
        kinds: vec![SpecKind::Simple],
        steps: 10,
        ..GrpoConfig::default()
    };
    let steps = train_grpo(&mut policy, &vars, None, &rl, |step| eprintln!("{step:?}"))
        .await
        .unwrap();
    assert_eq!(steps.len(), 10);
    let after = held_out(SpecKind::Simple, 1.0, &mut policy).await;
    eprintln!(
        "after GRPO, sampled\n{}",
        ReportTable(std::slice::from_ref(&after))
    );
    assert!(
        after.accuracy >= before.accuracy + MARGIN,
        "simple accuracy {} -> {}",
        before.accuracy,
        after.accuracy
    );
}
