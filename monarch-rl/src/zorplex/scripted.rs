//! Scripted policies: an oracle that solves tasks through the tools, and noisy
//! variants of it that fail in one chosen way at a seeded rate.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::episode::{GenerateRequest, Policy, PolicyError};
use super::{worked_sum, PyRandom, SpecKind};

/// Solves every task by calling the tools and reading their results from the
/// conversation, as a perfect model would. It never sees the answer. A sum
/// of two values is worked out column by column ([`worked_sum`]) before
/// the answer.
///
/// It writes a little text after its answer, so that the loop's stop rule decides
/// where the turn ends.
#[derive(Clone, Debug)]
pub struct OraclePolicy {
    kind: SpecKind,
}

impl OraclePolicy {
    /// An oracle for tasks of `kind`.
    pub fn new(kind: SpecKind) -> Self {
        OraclePolicy { kind }
    }

    /// The oracle's next turn for `prompt`.
    pub fn next_turn(&self, prompt: &str) -> String {
        let conversation = Conversation::parse(prompt);
        match self.kind {
            SpecKind::Compositional(_) => {
                let Some((words, op)) = conversation.compositional() else {
                    return "I cannot read this question.".into();
                };
                let values = conversation.numeric_results();
                if values.len() < words.len() {
                    return format!("LOOKUP[{}]\n", words[values.len()]);
                }
                let answer = values[1..]
                    .iter()
                    .fold(values[0], |acc, &v| super::spec::apply(op, acc, v));
                let working = match (op, values.as_slice()) {
                    ('+', &[a, b]) => worked_sum(a, b),
                    _ => {
                        let terms: Vec<String> = values.iter().map(i64::to_string).collect();
                        format!("{} = {answer}.", terms.join(&format!(" {op} ")))
                    }
                };
                format!("{working} [ANSWER] {answer}\nThat is my final answer.")
            }
            SpecKind::Simple | SpecKind::MultiStep | SpecKind::Recursive { .. } => {
                let Some(word) = conversation.asked_word() else {
                    return "I cannot read this question.".into();
                };
                let last = conversation.results.last().map(String::as_str);
                match (self.kind, last) {
                    (_, Some(r)) if r.parse::<i64>().is_ok() => {
                        format!("[ANSWER] {r}\nThat is my final answer.")
                    }
                    (SpecKind::MultiStep, None) => format!("GETKEY[{word}]\n"),
                    (SpecKind::MultiStep, Some(key)) => format!("FETCH[{key}]\n"),
                    (SpecKind::Recursive { .. }, Some(r)) if r.starts_with("SEE: ") => {
                        format!("LOOKUP[{}]\n", &r[5..])
                    }
                    (_, None) => format!("LOOKUP[{word}]\n"),
                    (_, Some(other)) => format!("The tool said {other}; I cannot go on."),
                }
            }
        }
    }
}

impl Policy for OraclePolicy {
    async fn generate(&mut self, request: &GenerateRequest<'_>) -> Result<String, PolicyError> {
        Ok(stream_out(&self.next_turn(request.prompt), request))
    }
}

/// The way a [`NoisyPolicy`] misbehaves.
///
/// Its name, as [`Display`](fmt::Display) writes and [`FromStr`] reads it,
/// is the variant's in snake case:
///
/// ```
/// use monarch_rl::zorplex::Noise;
///
/// let noise: Noise = "give_up_when_hard".parse().unwrap();
/// assert_eq!(noise, Noise::GiveUpWhenHard);
/// assert_eq!(Noise::SpamTools.to_string(), "spam_tools");
/// assert!("give_up".parse::<Noise>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Noise {
    /// Answers at once with a guess, without calling any tool.
    SkipTools,
    /// Calls the first tool, then stops without giving an answer.
    StopEarly,
    /// Calls the same tool again and again instead of answering.
    SpamTools,
    /// Plays as the oracle until a tool result looks hard and more work
    /// than reporting an answer is left, then stops without an answer. A
    /// result looks hard when it is a value of [`HARD_VALUE`] or more, or
    /// a redirect that follows a redirect.
    GiveUpWhenHard,
}

/// The smallest value at which [`Noise::GiveUpWhenHard`] gives up.
pub const HARD_VALUE: i64 = 70;

impl Noise {
    /// The ways the reference's scripted policies misbehave, which a
    /// warm-up demonstrates for a spec unless told otherwise.
    pub const ALL: [Noise; 3] = [Noise::SkipTools, Noise::StopEarly, Noise::SpamTools];

    /// Every way, [`Noise::ALL`] and those of this crate.
    pub const EVERY: [Noise; 4] = [
        Noise::SkipTools,
        Noise::StopEarly,
        Noise::SpamTools,
        Noise::GiveUpWhenHard,
    ];

    fn name(self) -> &'static str {
        match self {
            Noise::SkipTools => "skip_tools",
            Noise::StopEarly => "stop_early",
            Noise::SpamTools => "spam_tools",
            Noise::GiveUpWhenHard => "give_up_when_hard",
        }
    }
}

impl fmt::Display for Noise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no [`Noise`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown noise `{0}`: expected skip_tools, stop_early, spam_tools or give_up_when_hard")]
pub struct UnknownNoise(pub String);

impl FromStr for Noise {
    type Err = UnknownNoise;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Noise::EVERY
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| UnknownNoise(s.to_string()))
    }
}

/// An oracle that, in a seeded fraction of episodes, misbehaves as its [`Noise`]
/// says for the whole episode.
#[derive(Clone, Debug)]
pub struct NoisyPolicy {
    oracle: OraclePolicy,
    noise: Noise,
    error_rate: f64,
    rng: PyRandom,
    misbehaving: bool,
}

impl NoisyPolicy {
    /// A policy for `kind` that misbehaves in `error_rate` (0..=1) of episodes.
    pub fn new(kind: SpecKind, noise: Noise, error_rate: f64, seed: i64) -> Self {
        NoisyPolicy {
            oracle: OraclePolicy::new(kind),
            noise,
            error_rate: error_rate.clamp(0.0, 1.0),
            rng: PyRandom::new(seed),
            misbehaving: false,
        }
    }

    fn next_turn(&mut self, prompt: &str) -> String {
        let conversation = Conversation::parse(prompt);
        if conversation.results.is_empty() {
            // A new episode: draw whether this one goes wrong.
            let draw = self.rng.getrandbits(53) as f64 / (1u64 << 53) as f64;
            self.misbehaving = draw < self.error_rate;
        }
        if !self.misbehaving {
            return self.oracle.next_turn(prompt);
        }
        match self.noise {
            Noise::SkipTools => {
                let guess = self.rng.randint(1, 100);
                format!("I would guess. [ANSWER] {guess}\n")
            }
            Noise::StopEarly if conversation.results.is_empty() => self.oracle.next_turn(prompt),
            Noise::StopEarly => "I am not sure how to go on from here.".into(),
            Noise::GiveUpWhenHard => {
                let turn = self.oracle.next_turn(prompt);
                if looks_hard(&conversation.results) && !turn.starts_with("[ANSWER]") {
                    "I am not sure how to go on from here.".into()
                } else {
                    turn
                }
            }
            Noise::SpamTools => {
                let call = self.oracle.next_turn(&strip_results(prompt));
                call.lines().next().unwrap_or_default().to_string() + "\n"
            }
        }
    }
}

impl Policy for NoisyPolicy {
    async fn generate(&mut self, request: &GenerateRequest<'_>) -> Result<String, PolicyError> {
        let text = self.next_turn(request.prompt);
        Ok(stream_out(&text, request))
    }
}

/// Whether the latest of `results` looks hard ([`Noise::GiveUpWhenHard`]).
fn looks_hard(results: &[String]) -> bool {
    let redirect = |r: &String| r.starts_with("SEE: ");
    match results {
        [.., before, last] if redirect(before) && redirect(last) => true,
        [.., last] => last.trim().parse::<i64>().is_ok_and(|v| v >= HARD_VALUE),
        [] => false,
    }
}

/// Emits `text` one character at a time, as a model emits tokens, stopping where
/// the request's stop rule says or at its token budget.
fn stream_out(text: &str, request: &GenerateRequest<'_>) -> String {
    let mut scanner = request.stop.scanner();
    for ch in text.chars().take(request.max_tokens) {
        if let Some(end) = scanner.push(ch.encode_utf8(&mut [0; 4])) {
            return scanner.text()[..end].to_string();
        }
    }
    scanner.text().to_string()
}

/// The conversation as far as the scripted policies need it: the question asked
/// and the tool results seen since.
struct Conversation {
    question: String,
    results: Vec<String>,
}

impl Conversation {
    fn parse(prompt: &str) -> Self {
        // The system prompt holds a worked example: the real question is the last.
        let start = prompt.rfind("User: ").map_or(0, |i| i + "User: ".len());
        let tail = &prompt[start..];
        let question = tail.lines().next().unwrap_or_default().to_string();
        let results = RESULT
            .captures_iter(tail)
            .map(|c| c[1].to_string())
            .collect();
        Conversation { question, results }
    }

    fn asked_word(&self) -> Option<String> {
        QUOTED.captures(&self.question).map(|c| c[1].to_string())
    }

    fn compositional(&self) -> Option<(Vec<String>, char)> {
        let words: Vec<String> = QUOTED
            .captures_iter(&self.question)
            .map(|c| c[1].to_string())
            .collect();
        let op = OPERATOR.captures(&self.question)?[1].chars().next()?;
        (words.len() >= 2).then_some((words, op))
    }

    fn numeric_results(&self) -> Vec<i64> {
        self.results.iter().filter_map(|r| r.parse().ok()).collect()
    }
}

/// The prompt up to the question, without any turns after it.
fn strip_results(prompt: &str) -> String {
    let start = prompt.rfind("User: ").unwrap_or(0);
    let line_end = prompt[start..]
        .find('\n')
        .map_or(prompt.len(), |i| start + i);
    format!("{}\nAssistant: ", &prompt[..line_end])
}

static RESULT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[Result: ([^\]\n]*)\]").expect("valid regex"));
static QUOTED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"'(\w+)'").expect("valid regex"));
static OPERATOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\) ([-+*]) zorplex").expect("valid regex"));
