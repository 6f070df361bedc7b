//! The agentic loop with the scripted policies: the oracle solves everything, each
//! kind of noise is classified as the failure it is, and every task is solvable.

use monarch_rl::zorplex::{
    evaluate, run_episode, Compat, EpisodeConfig, FailureMode, GenerateRequest, Noise, NoisyPolicy,
    OraclePolicy, Policy, PolicyError, SpecKind, TaskSpec, HARD_VALUE,
};
use proptest::prelude::*;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[test]
fn oracle_scores_full_marks_on_every_spec() {
    for seed in [0, 1, 7, 42, 1234, 99_999] {
        let reports = block_on(evaluate(
            &SpecKind::ALL,
            seed,
            40,
            Compat::Improved,
            &EpisodeConfig::default(),
            OraclePolicy::new,
        ))
        .unwrap();
        for r in &reports {
            assert_eq!(r.accuracy, 1.0, "seed {seed} spec {}", r.spec);
            assert_eq!(r.format_rate, 1.0, "seed {seed} spec {}", r.spec);
            assert_eq!(r.failure_modes[&FailureMode::Success], 40);
            assert!(r.mean_reward > 1.19, "{}: no tool call wasted", r.spec);
        }
    }
}

#[test]
fn noisy_policies_fail_the_way_they_misbehave() {
    let config = EpisodeConfig::default();
    for kind in SpecKind::ALL {
        for noise in Noise::ALL {
            // Always misbehaving, so every episode must show the noise's failure.
            let mut spec = TaskSpec::new(kind, 5);
            let mut policy = NoisyPolicy::new(kind, noise, 1.0, 11);
            for _ in 0..20 {
                let task = spec.generate_task();
                let episode = block_on(run_episode(&spec, &task, &mut policy, &config)).unwrap();
                let expected = match noise {
                    Noise::SkipTools if episode.correct => FailureMode::Success,
                    Noise::SkipTools => FailureMode::WrongAnswer,
                    Noise::StopEarly => FailureMode::WrongFormat,
                    Noise::SpamTools => FailureMode::ToolSpam,
                    Noise::GiveUpWhenHard => unreachable!("not one of the reference's"),
                };
                assert_eq!(
                    episode.failure_mode, expected,
                    "{kind} {noise:?}: {}",
                    episode.transcript
                );
                match noise {
                    Noise::SkipTools => assert_eq!(episode.tool_call_count(), 0),
                    Noise::StopEarly => assert!(!episode.used_answer_tag),
                    Noise::GiveUpWhenHard => unreachable!("not one of the reference's"),
                    Noise::SpamTools => {
                        assert_eq!(episode.turns.len(), config.max_turns);
                        assert!(
                            episode.reward < 1.0,
                            "spam is penalised: {}",
                            episode.reward
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn giving_up_when_hard_stops_only_after_a_hard_result_and_never_instead_of_an_answer() {
    let config = EpisodeConfig::default();
    let looks_hard = |results: &[String]| match results {
        [.., before, last] if before.starts_with("SEE: ") && last.starts_with("SEE: ") => true,
        [.., last] => last.parse::<i64>().is_ok_and(|v| v >= HARD_VALUE),
        [] => false,
    };
    for kind in SpecKind::rl_mix() {
        let mut spec = TaskSpec::new(kind, 9);
        let mut policy = NoisyPolicy::new(kind, Noise::GiveUpWhenHard, 1.0, 4);
        let (mut solved, mut gave_up) = (0, 0);
        for _ in 0..60 {
            let task = spec.generate_task();
            let episode = block_on(run_episode(&spec, &task, &mut policy, &config)).unwrap();
            let results: Vec<String> = episode
                .turns
                .iter()
                .flat_map(|t| t.tool_calls.iter().map(|(_, r)| r.to_string()))
                .collect();
            if episode.failure_mode == FailureMode::Success {
                solved += 1;
                continue;
            }
            gave_up += 1;
            assert_eq!(
                episode.failure_mode,
                FailureMode::WrongFormat,
                "{kind}: {}",
                episode.transcript
            );
            assert!(looks_hard(&results), "{kind}: {}", episode.transcript);
            // Up to the last tool result it played as the oracle did.
            let earlier: Vec<bool> = (1..results.len())
                .map(|n| looks_hard(&results[..n]))
                .collect();
            assert!(!earlier.contains(&true), "{kind}: {}", episode.transcript);
        }
        match kind {
            // The last result of these is the answer, reported at once.
            SpecKind::Simple | SpecKind::MultiStep => assert_eq!(gave_up, 0, "{kind}"),
            // Two values of which either may be large; chains of two
            // redirects or more.
            _ => assert!(
                solved > 5 && gave_up > 5,
                "{kind}: {solved} solved, {gave_up} gave up"
            ),
        }
    }
}

#[test]
fn error_rate_sets_the_share_of_failures() {
    let reports = block_on(evaluate(
        &[SpecKind::Simple],
        3,
        400,
        Compat::Improved,
        &EpisodeConfig::default(),
        |kind| NoisyPolicy::new(kind, Noise::SpamTools, 0.25, 8),
    ))
    .unwrap();
    let spam = reports[0].failure_modes[&FailureMode::ToolSpam] as f64 / 400.0;
    assert!((0.18..0.32).contains(&spam), "spam share {spam}");
}

/// A policy that writes one canned answer followed by more text, as a sampling
/// model might.
struct Canned(&'static str);

impl Policy for Canned {
    async fn generate(&mut self, request: &GenerateRequest<'_>) -> Result<String, PolicyError> {
        let _ = request;
        Ok(self.0.to_string())
    }
}

#[test]
fn stop_rule_keeps_multi_digit_answers_and_reference_rule_does_not() {
    let kind = SpecKind::Compositional(monarch_rl::zorplex::Difficulty::Medium);
    let mut spec = TaskSpec::new(kind, 0);
    let task = (0..25)
        .map(|_| spec.generate_task())
        .find(|t| t.answer >= 10)
        .expect("a multi-digit answer");
    let text: &'static str = Box::leak(format!("[ANSWER] {}\nDone.", task.answer).into_boxed_str());
    let fixed = block_on(run_episode(
        &spec,
        &task,
        &mut Canned(text),
        &EpisodeConfig::default(),
    ))
    .unwrap();
    assert!(fixed.correct, "{}", fixed.transcript);
    assert_eq!(fixed.turns[0].output, format!("[ANSWER] {}", task.answer));

    let reference = EpisodeConfig {
        reference_stop_rule: true,
        ..EpisodeConfig::default()
    };
    let flawed = block_on(run_episode(&spec, &task, &mut Canned(text), &reference)).unwrap();
    assert!(!flawed.correct);
    assert_eq!(flawed.failure_mode, FailureMode::WrongAnswer);
}

#[test]
fn negative_answers_survive_the_loop() {
    let kind = SpecKind::Compositional(monarch_rl::zorplex::Difficulty::Hard);
    let mut spec = TaskSpec::new(kind, 0);
    let task = (0..25)
        .map(|_| spec.generate_task())
        .find(|t| t.answer < -9)
        .expect("negative answer");
    let mut oracle = OraclePolicy::new(kind);
    let episode = block_on(run_episode(
        &spec,
        &task,
        &mut oracle,
        &EpisodeConfig::default(),
    ))
    .unwrap();
    assert!(episode.correct, "{}", episode.transcript);
    assert_eq!(episode.extracted_answer, Some(task.answer));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any seed, any spec: following the tools from the question reaches the answer.
    #[test]
    fn every_task_is_solvable_through_its_tools(seed in any::<i64>(), which in 0usize..8, skip in 0usize..30) {
        let kind = SpecKind::ALL[which];
        let mut spec = TaskSpec::new(kind, seed);
        for _ in 0..skip {
            spec.generate_task();
        }
        let task = spec.generate_task();
        let mut oracle = OraclePolicy::new(kind);
        let episode = block_on(run_episode(&spec, &task, &mut oracle, &EpisodeConfig::default())).unwrap();
        prop_assert!(episode.correct, "{}", episode.transcript);
        prop_assert_eq!(episode.tool_call_count(), task.needed_tool_calls());
        prop_assert_eq!(episode.turns.len(), task.needed_tool_calls() + 1);
    }
}
