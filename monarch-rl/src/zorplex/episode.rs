//! The multi-turn agentic loop: a [`Policy`] talks, tools answer, the episode is
//! scored.

use std::future::Future;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::tools::first_tool_call_end;
use super::{Task, TaskSpec, Tool, ToolCall, ToolResult};

/// Something that continues a prompt with text: a language model, a remote
/// generator service, or a scripted stand-in.
///
/// A policy should stop as soon as [`StopRule::stop_point`] finds a stop in what it
/// has generated (checking after each token) and return the text up to that point;
/// the loop cuts the returned text at the first stop point in any case.
pub trait Policy {
    /// Continues `request.prompt`.
    fn generate(
        &mut self,
        request: &GenerateRequest<'_>,
    ) -> impl Future<Output = Result<String, PolicyError>> + Send;
}

impl<P: Policy + Send> Policy for &mut P {
    fn generate(
        &mut self,
        request: &GenerateRequest<'_>,
    ) -> impl Future<Output = Result<String, PolicyError>> + Send {
        (**self).generate(request)
    }
}

/// An error from a [`Policy`].
#[derive(Debug, thiserror::Error)]
#[error("policy failed to generate: {0}")]
pub struct PolicyError(pub String);

/// One call of [`Policy::generate`].
#[derive(Clone, Debug)]
pub struct GenerateRequest<'a> {
    /// The whole conversation so far, ending where the assistant speaks next.
    pub prompt: &'a str,
    /// Most tokens to generate in this turn.
    pub max_tokens: usize,
    /// Sampling settings.
    pub sampling: Sampling,
    /// When to stop early.
    pub stop: &'a StopRule,
}

/// Sampling settings for a model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Softmax temperature; `0.0` means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass.
    pub top_p: f32,
    /// Seed for the sampler, where the policy samples.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.7,
            top_p: 0.95,
            seed: 0,
        }
    }
}

/// Decides where a turn's generation ends: after the first complete tool call, or
/// after a complete `[ANSWER] <number>`.
///
/// An answer is complete only once the character after its last digit has been
/// generated (or generation ended), so `[ANSWER] 30` is not cut to `[ANSWER] 3`.
/// [`StopRule::reference`] reproduces the reference's flawed rule, which stopped at
/// the first digit.
///
/// ```
/// use monarch_rl::zorplex::{SpecKind, StopRule};
///
/// let rule = StopRule::for_spec(SpecKind::Simple);
/// assert_eq!(rule.stop_point("[ANSWER] 3"), None);          // more digits may follow
/// assert_eq!(rule.stop_point("[ANSWER] 30\n"), Some(11));   // complete
/// assert_eq!(rule.finish("[ANSWER] 30"), "[ANSWER] 30");    // generation ended
/// assert_eq!(StopRule::reference(SpecKind::Simple).finish("[ANSWER] 30"), "[ANSWER] 3");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopRule {
    tools: Vec<Tool>,
    first_digit_only: bool,
}

impl StopRule {
    /// The rule for a spec's tools, waiting for whole answers.
    pub fn for_spec(kind: super::SpecKind) -> Self {
        StopRule {
            tools: kind.tools().to_vec(),
            first_digit_only: false,
        }
    }

    /// The reference's rule, which stops one digit into the answer.
    pub fn reference(kind: super::SpecKind) -> Self {
        StopRule {
            first_digit_only: true,
            ..StopRule::for_spec(kind)
        }
    }

    /// The byte offset where generation should stop if `text` is what was
    /// generated so far, or `None` to keep going.
    pub fn stop_point(&self, text: &str) -> Option<usize> {
        let tool_end = first_tool_call_end(&self.tools, text);
        let answer_end = ANSWER_TAG.captures(text).and_then(|c| {
            let number = c.get(1).expect("number group");
            if self.first_digit_only {
                let digits = number.as_str().trim_start_matches('-');
                Some(number.end() - digits.len() + 1)
            } else if number.end() < text.len() {
                Some(number.end())
            } else {
                None
            }
        });
        match (tool_end, answer_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A scanner that finds this rule's stop point in text arriving piece by
    /// piece, looking only at the text a new stop could lie in.
    pub fn scanner(&self) -> StopScanner<'_> {
        StopScanner {
            rule: self,
            text: String::new(),
        }
    }

    /// `text` as it stands when generation has ended: cut at the first stop point,
    /// where an answer running to the very end counts as complete.
    pub fn finish<'t>(&self, text: &'t str) -> &'t str {
        match self.stop_point(text) {
            Some(end) => &text[..end],
            None => text,
        }
    }
}

/// Finds a [`StopRule`]'s stop point incrementally as generated text arrives.
///
/// Every stop (a tool call `NAME[arg]` or `[ANSWER] <number>`) holds exactly
/// one `[`, starts on that `[`'s line and ends before the next `[`; so once a
/// piece has been checked, a stop can only begin on the line of the last `[`
/// before the next piece, and only that tail is scanned again.
///
/// ```
/// use monarch_rl::zorplex::{SpecKind, StopRule};
///
/// let rule = StopRule::for_spec(SpecKind::Simple);
/// let mut scanner = rule.scanner();
/// assert_eq!(scanner.push("Let me look. LOOKUP[c"), None);
/// assert_eq!(scanner.push("at]\n[Result"), Some(24));
/// ```
#[derive(Clone, Debug)]
pub struct StopScanner<'r> {
    rule: &'r StopRule,
    text: String,
}

impl StopScanner<'_> {
    /// Adds `piece`; returns the byte offset in all the text so far where
    /// generation should stop, if there is one now.
    pub fn push(&mut self, piece: &str) -> Option<usize> {
        let piece_start = self.text.len();
        self.text.push_str(piece);
        let anchor = self.text[..piece_start].rfind('[').unwrap_or(piece_start);
        let window = self.text[..anchor].rfind('\n').map_or(0, |i| i + 1);
        self.rule
            .stop_point(&self.text[window..])
            .map(|end| window + end)
    }

    /// All the text pushed so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}

static ANSWER_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[ANSWER\]\s*(-?[0-9]+)").expect("valid regex"));

/// Limits and sampling for one episode.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpisodeConfig {
    /// Most assistant turns. The default is 10: redirect chains are longer than
    /// the reference assumed (it allowed 5 turns for "at most 4 lookups"), since
    /// later chains extend earlier ones; over seeds 0..2000, `recursive_3` words
    /// need up to 8 lookups and an answer turn.
    pub max_turns: usize,
    /// Most tokens per turn.
    pub max_tokens_per_turn: usize,
    /// Sampling settings passed to the policy.
    pub sampling: Sampling,
    /// Use the reference's flawed stop rule (for reproducing its numbers only).
    pub reference_stop_rule: bool,
}

impl EpisodeConfig {
    /// The default limits, sampling at temperature 1 with no nucleus cut:
    /// how a policy behaves while it is trained with RL.
    pub fn sampled() -> Self {
        EpisodeConfig {
            sampling: Sampling {
                temperature: 1.0,
                top_p: 1.0,
                seed: 0,
            },
            ..EpisodeConfig::default()
        }
    }
}

impl Default for EpisodeConfig {
    fn default() -> Self {
        EpisodeConfig {
            max_turns: 10,
            max_tokens_per_turn: 128,
            sampling: Sampling::default(),
            reference_stop_rule: false,
        }
    }
}

/// One assistant turn of an episode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// What the policy generated, cut at the stop point.
    pub output: String,
    /// The byte offset of `output` in the episode's transcript.
    pub start: usize,
    /// The tool calls in it, with their results.
    pub tool_calls: Vec<(ToolCall, ToolResult)>,
}

/// How an episode went wrong, if it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// The answer was right and given with the `[ANSWER]` tag.
    Success,
    /// No `[ANSWER] <number>` was given (even if a fallback read a right number).
    WrongFormat,
    /// The policy kept calling tools: it ran out of turns while still calling
    /// them, or made more than twice the calls the task needs.
    ToolSpam,
    /// An answer was given, and it was wrong.
    WrongAnswer,
}

impl FailureMode {
    /// Every mode, in table order.
    pub const ALL: [FailureMode; 4] = [
        FailureMode::Success,
        FailureMode::WrongFormat,
        FailureMode::ToolSpam,
        FailureMode::WrongAnswer,
    ];

    /// The mode's snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            FailureMode::Success => "success",
            FailureMode::WrongFormat => "wrong_format",
            FailureMode::ToolSpam => "tool_spam",
            FailureMode::WrongAnswer => "wrong_answer",
        }
    }
}

/// The record of one episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// The task attempted.
    pub task: Task,
    /// Every assistant turn, in order.
    pub turns: Vec<Turn>,
    /// The answer read from the assistant's text.
    pub extracted_answer: Option<i64>,
    /// Whether it is the task's answer.
    pub correct: bool,
    /// Whether an `[ANSWER] <number>` tag was given.
    pub used_answer_tag: bool,
    /// +1 if correct, +0.2 for the answer tag, -0.1 per tool call beyond the
    /// number the task needs.
    pub reward: f64,
    /// How it went.
    pub failure_mode: FailureMode,
    /// The whole conversation, prompt included.
    pub transcript: String,
}

impl Episode {
    /// The transcript in pieces, each marked with whether the policy wrote
    /// it (the system prompt, question and tool results are not).
    pub fn segments(&self) -> Vec<(&str, bool)> {
        let mut pieces = Vec::with_capacity(2 * self.turns.len() + 1);
        let mut at = 0;
        for turn in &self.turns {
            pieces.push((&self.transcript[at..turn.start], false));
            at = turn.start + turn.output.len();
            pieces.push((&self.transcript[turn.start..at], true));
        }
        pieces.push((&self.transcript[at..], false));
        pieces.retain(|(text, _)| !text.is_empty());
        pieces
    }

    /// Tool calls made over all turns.
    pub fn tool_call_count(&self) -> usize {
        self.turns.iter().map(|t| t.tool_calls.len()).sum()
    }
}

/// Runs `policy` on `task` until it answers or runs out of turns, executing its tool
/// calls against `spec`, and scores the result.
pub async fn run_episode<P: Policy>(
    spec: &TaskSpec,
    task: &Task,
    policy: &mut P,
    config: &EpisodeConfig,
) -> Result<Episode, PolicyError> {
    let stop = if config.reference_stop_rule {
        StopRule::reference(spec.kind())
    } else {
        StopRule::for_spec(spec.kind())
    };
    let mut transcript = format!(
        "{}\n\nUser: {}\nAssistant: ",
        spec.system_prompt(),
        task.question
    );
    let mut turns = Vec::new();
    let mut ended_on_tool_call = false;
    for _ in 0..config.max_turns {
        let request = GenerateRequest {
            prompt: &transcript,
            max_tokens: config.max_tokens_per_turn,
            sampling: config.sampling,
            stop: &stop,
        };
        let generated = policy.generate(&request).await?;
        let output = stop.finish(&generated).to_string();
        let tool_calls: Vec<(ToolCall, ToolResult)> = spec
            .parse_tool_calls(&output)
            .into_iter()
            .map(|call| {
                let result = spec.execute_tool(&call);
                (call, result)
            })
            .collect();
        let start = transcript.len();
        transcript.push_str(&output);
        ended_on_tool_call = !tool_calls.is_empty();
        for (_, result) in &tool_calls {
            transcript.push_str(&format!("\n[Result: {result}]"));
        }
        turns.push(Turn {
            output,
            start,
            tool_calls,
        });
        if !ended_on_tool_call {
            break;
        }
        transcript.push_str("\nAssistant: ");
    }
    Ok(score(spec, task, turns, transcript, ended_on_tool_call))
}

fn score(
    spec: &TaskSpec,
    task: &Task,
    turns: Vec<Turn>,
    transcript: String,
    ended_on_tool_call: bool,
) -> Episode {
    let text: Vec<&str> = turns.iter().map(|t| t.output.as_str()).collect();
    let text = text.join("\n");
    let calls: Vec<(ToolCall, ToolResult)> =
        turns.iter().flat_map(|t| t.tool_calls.clone()).collect();
    let extracted_answer = spec.extract_answer(&text, &calls);
    let correct = extracted_answer == Some(task.answer);
    let used_answer_tag = ANSWER_TAG.is_match(&text);
    let needed = task.needed_tool_calls();
    let extra_calls = calls.len().saturating_sub(needed);
    let reward = f64::from(u8::from(correct)) + if used_answer_tag { 0.2 } else { 0.0 }
        - 0.1 * extra_calls as f64;
    let failure_mode = if correct && used_answer_tag {
        FailureMode::Success
    } else if ended_on_tool_call || calls.len() > 2 * needed {
        FailureMode::ToolSpam
    } else if !used_answer_tag {
        FailureMode::WrongFormat
    } else {
        FailureMode::WrongAnswer
    };
    Episode {
        task: task.clone(),
        turns,
        extracted_answer,
        correct,
        used_answer_tag,
        reward,
        failure_mode,
        transcript,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zorplex::SpecKind;

    #[test]
    fn stop_rule_keeps_multi_digit_and_negative_answers_whole() {
        let rule = StopRule::for_spec(SpecKind::Compositional(crate::zorplex::Difficulty::Hard));
        let mut text = String::new();
        let mut stopped = None;
        for ch in "[ANSWER] -1234. Thanks".chars() {
            text.push(ch);
            if let Some(end) = rule.stop_point(&text) {
                stopped = Some(text[..end].to_string());
                break;
            }
        }
        assert_eq!(stopped.as_deref(), Some("[ANSWER] -1234"));
        assert_eq!(rule.finish("[ANSWER] -"), "[ANSWER] -");
        assert_eq!(rule.finish("[ANSWER] 100"), "[ANSWER] 100");
    }

    /// The scanner finds the same stop as scanning the whole text, whatever
    /// the pieces.
    #[test]
    fn the_scanner_agrees_with_the_rule() {
        let rule = StopRule::for_spec(SpecKind::MultiStep);
        let texts = [
            "First GETKEY[dog]\n[Result: x]",
            "[x] no\n[ANSWER]\n 77 ok",
            "[ANSWER] 5[ANSWER] 6.",
            "text [[ GETKEY[\ncat] FETCH[ZK_12] and more",
            "[ANSWER] 12",
        ];
        for text in texts {
            for size in 1..5 {
                let mut scanner = rule.scanner();
                let mut found = None;
                let chars: Vec<char> = text.chars().collect();
                for chunk in chars.chunks(size) {
                    let piece: String = chunk.iter().collect();
                    if let Some(stop) = scanner.push(&piece) {
                        found = Some(stop);
                        assert_eq!(rule.stop_point(scanner.text()), Some(stop), "{text:?}");
                        break;
                    }
                }
                if found.is_none() {
                    assert_eq!(rule.stop_point(text), None, "{text:?} in pieces of {size}");
                }
            }
        }
    }

    #[test]
    fn reference_rule_cuts_after_one_digit() {
        let rule = StopRule::reference(SpecKind::Simple);
        assert_eq!(rule.stop_point("[ANSWER] 3"), Some(10));
        assert_eq!(rule.finish("[ANSWER] -45"), "[ANSWER] -4");
    }

    #[test]
    fn stop_rule_stops_after_first_complete_tool_call() {
        let rule = StopRule::for_spec(SpecKind::MultiStep);
        assert_eq!(rule.stop_point("GETKEY[cat"), None);
        assert_eq!(rule.finish("GETKEY[cat]\nFETCH[ZK_1]"), "GETKEY[cat]");
        assert_eq!(
            rule.finish("LOOKUP[cat] [ANSWER] 5"),
            "LOOKUP[cat] [ANSWER] 5"
        );
    }
}
