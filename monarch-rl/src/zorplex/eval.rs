//! Evaluating a policy over many tasks and summarising the results per spec.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::episode::{run_episode, Episode, EpisodeConfig, FailureMode, Policy, PolicyError};
use super::{Compat, SpecKind, TaskSpec};

/// The summary of one policy on one spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecReport {
    /// The spec evaluated.
    pub spec: String,
    /// Episodes run.
    pub tasks: usize,
    /// Fraction answered correctly.
    pub accuracy: f64,
    /// Fraction that gave an `[ANSWER] <number>` tag.
    pub format_rate: f64,
    /// Mean assistant turns per episode.
    pub mean_turns: f64,
    /// Mean tool calls per episode.
    pub mean_tool_calls: f64,
    /// Mean reward per episode.
    pub mean_reward: f64,
    /// Episodes per failure mode (every mode listed, zeros included).
    pub failure_modes: BTreeMap<FailureMode, usize>,
}

impl SpecReport {
    /// Adds the episodes of `other`, a report of the same spec (more
    /// samples of the same tasks, say): the means become those over both
    /// reports' episodes.
    ///
    /// ```
    /// use monarch_rl::zorplex::{evaluate_spec, Compat, EpisodeConfig, OraclePolicy, SpecKind};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let kind = SpecKind::Simple;
    /// let config = EpisodeConfig::default();
    /// let mut oracle = OraclePolicy::new(kind);
    /// let mut report = evaluate_spec(kind, 1, 2, Compat::default(), &config, &mut oracle).await.unwrap();
    /// let more = evaluate_spec(kind, 3, 6, Compat::default(), &config, &mut oracle).await.unwrap();
    /// report.merge(&more);
    /// assert_eq!(report.tasks, 8);
    /// assert_eq!(report.accuracy, 1.0);
    /// # });
    /// ```
    ///
    /// # Panics
    ///
    /// If `other` reports another spec.
    pub fn merge(&mut self, other: &SpecReport) {
        assert_eq!(self.spec, other.spec, "only reports of one spec merge");
        let total = (self.tasks + other.tasks).max(1) as f64;
        let (mine, theirs) = (self.tasks as f64 / total, other.tasks as f64 / total);
        let mean = |a: f64, b: f64| a * mine + b * theirs;
        self.accuracy = mean(self.accuracy, other.accuracy);
        self.format_rate = mean(self.format_rate, other.format_rate);
        self.mean_turns = mean(self.mean_turns, other.mean_turns);
        self.mean_tool_calls = mean(self.mean_tool_calls, other.mean_tool_calls);
        self.mean_reward = mean(self.mean_reward, other.mean_reward);
        for (&mode, &count) in &other.failure_modes {
            *self.failure_modes.entry(mode).or_default() += count;
        }
        self.tasks += other.tasks;
    }
}

/// Runs `tasks` episodes of each spec in `kinds` (the tasks of
/// [`evaluate_spec`]), making a fresh policy for each spec with
/// `make_policy`.
pub async fn evaluate<P, F>(
    kinds: &[SpecKind],
    seed: i64,
    tasks: usize,
    compat: Compat,
    config: &EpisodeConfig,
    mut make_policy: F,
) -> Result<Vec<SpecReport>, PolicyError>
where
    P: Policy,
    F: FnMut(SpecKind) -> P,
{
    let mut reports = Vec::with_capacity(kinds.len());
    for &kind in kinds {
        let mut policy = make_policy(kind);
        reports.push(evaluate_spec(kind, seed, tasks, compat, config, &mut policy).await?);
    }
    Ok(reports)
}

/// Runs `tasks` episodes of `kind` with `policy`: task `i` is the first task
/// of seed `seed + i`.
///
/// Every task comes from a table of its own. A seed draws one table (26
/// words and their values or redirects), and its tasks ask about those few
/// words again and again; a policy that decodes greedily answers a question
/// asked twice alike, so a hundred tasks of one seed would measure little
/// more than two dozen.
pub async fn evaluate_spec<P: Policy>(
    kind: SpecKind,
    seed: i64,
    tasks: usize,
    compat: Compat,
    config: &EpisodeConfig,
    policy: &mut P,
) -> Result<SpecReport, PolicyError> {
    evaluate_spec_each(kind, seed, tasks, compat, config, policy, |_, _| {}).await
}

/// [`evaluate_spec`], handing each episode to `each` as it ends, with the
/// seed of its task: to print the episodes a policy failed, say.
///
/// ```
/// use monarch_rl::zorplex::{evaluate_spec_each, Compat, EpisodeConfig, OraclePolicy, SpecKind};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let kind = SpecKind::Recursive { max_depth: 2 };
/// let mut seeds = Vec::new();
/// let config = EpisodeConfig::default();
/// let mut oracle = OraclePolicy::new(kind);
/// let report = evaluate_spec_each(kind, 7, 3, Compat::default(), &config, &mut oracle, |seed, episode| {
///     assert!(episode.correct);
///     seeds.push(seed);
/// })
/// .await
/// .unwrap();
/// assert_eq!(seeds, [7, 8, 9]);
/// assert_eq!(report.accuracy, 1.0);
/// # });
/// ```
pub async fn evaluate_spec_each<P: Policy>(
    kind: SpecKind,
    seed: i64,
    tasks: usize,
    compat: Compat,
    config: &EpisodeConfig,
    policy: &mut P,
    mut each: impl FnMut(i64, &Episode),
) -> Result<SpecReport, PolicyError> {
    let mut report = SpecReport {
        spec: kind.to_string(),
        tasks,
        accuracy: 0.0,
        format_rate: 0.0,
        mean_turns: 0.0,
        mean_tool_calls: 0.0,
        mean_reward: 0.0,
        failure_modes: FailureMode::ALL.iter().map(|&m| (m, 0)).collect(),
    };
    for index in 0..tasks {
        let task_seed = seed + index as i64;
        let mut spec = TaskSpec::new(kind, task_seed).with_compat(compat);
        let task = spec.generate_task();
        let episode = run_episode(&spec, &task, policy, config).await?;
        report.accuracy += f64::from(u8::from(episode.correct));
        report.format_rate += f64::from(u8::from(episode.used_answer_tag));
        report.mean_turns += episode.turns.len() as f64;
        report.mean_tool_calls += episode.tool_call_count() as f64;
        report.mean_reward += episode.reward;
        *report
            .failure_modes
            .entry(episode.failure_mode)
            .or_default() += 1;
        each(task_seed, &episode);
    }
    let n = tasks.max(1) as f64;
    report.accuracy /= n;
    report.format_rate /= n;
    report.mean_turns /= n;
    report.mean_tool_calls /= n;
    report.mean_reward /= n;
    Ok(report)
}

/// Reports laid out as a plain-text table, one spec a row.
pub struct ReportTable<'a>(pub &'a [SpecReport]);

impl fmt::Display for ReportTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<22} {:>5} {:>8} {:>7} {:>6} {:>6} {:>7}",
            "spec", "tasks", "accuracy", "format", "turns", "tools", "reward"
        )?;
        for mode in FailureMode::ALL {
            write!(f, " {:>12}", mode.name())?;
        }
        writeln!(f)?;
        for r in self.0 {
            write!(
                f,
                "{:<22} {:>5} {:>7.1}% {:>6.1}% {:>6.2} {:>6.2} {:>7.3}",
                r.spec,
                r.tasks,
                100.0 * r.accuracy,
                100.0 * r.format_rate,
                r.mean_turns,
                r.mean_tool_calls,
                r.mean_reward
            )?;
            for mode in FailureMode::ALL {
                write!(
                    f,
                    " {:>12}",
                    r.failure_modes.get(&mode).copied().unwrap_or(0)
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zorplex::GenerateRequest;

    /// Records the question of each episode and answers nothing.
    #[derive(Default)]
    struct Questions(Vec<String>);

    impl Policy for Questions {
        async fn generate(&mut self, request: &GenerateRequest<'_>) -> Result<String, PolicyError> {
            let start = request.prompt.rfind("User: ").expect("a question");
            let question = request.prompt[start..].lines().next().unwrap_or_default();
            self.0.push(question.to_string());
            Ok(String::new())
        }
    }

    #[tokio::test]
    async fn merged_reports_weigh_each_episode_alike() {
        let kind = SpecKind::Recursive { max_depth: 2 };
        let config = EpisodeConfig::default();
        let mut oracle = crate::zorplex::OraclePolicy::new(kind);
        let mut quiet = Questions::default();
        let mut report = evaluate_spec(kind, 1, 3, Compat::default(), &config, &mut oracle)
            .await
            .unwrap();
        let failed = evaluate_spec(kind, 4, 1, Compat::default(), &config, &mut quiet)
            .await
            .unwrap();
        let turns = report.mean_turns;
        report.merge(&failed);
        assert_eq!(report.tasks, 4);
        assert_eq!(report.accuracy, 0.75);
        assert!((report.mean_turns - (3.0 * turns + 1.0) / 4.0).abs() < 1e-12);
        assert_eq!(report.failure_modes[&FailureMode::Success], 3);
        assert_eq!(report.failure_modes[&FailureMode::WrongFormat], 1);
    }

    #[tokio::test]
    async fn every_task_comes_from_a_table_of_its_own() {
        let kind = SpecKind::Simple;
        let mut policy = Questions::default();
        let config = EpisodeConfig::default();
        evaluate_spec(kind, 500, 60, Compat::default(), &config, &mut policy)
            .await
            .unwrap();
        let expected: Vec<String> = (0..60)
            .map(|i| {
                let task = TaskSpec::new(kind, 500 + i).generate_task();
                format!("User: {}", task.question)
            })
            .collect();
        assert_eq!(policy.0, expected);
    }
}
