//! Task specifications: how each kind of Zorplex task is generated, which tools it
//! offers, how tool calls are executed and how answers are scored.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::extract::extract_answer;
use super::tools::{parse_tool_calls, Tool, ToolCall, ToolResult};
use super::{multi_step_key, word_index, PyRandom, ZorplexTable, WORDS};

/// Which kind of task a [`TaskSpec`] generates.
///
/// The string forms (`simple`, `compositional_easy`, `multi_step`, `recursive_2`,
/// ...) are the names of the golden file and of the CLI.
///
/// ```
/// use monarch_rl::zorplex::SpecKind;
///
/// let kind: SpecKind = "recursive_2".parse().unwrap();
/// assert_eq!(kind, SpecKind::Recursive { max_depth: 2 });
/// assert_eq!(kind.to_string(), "recursive_2");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SpecKind {
    /// One `LOOKUP`.
    Simple,
    /// Several `LOOKUP`s combined by arithmetic.
    Compositional(Difficulty),
    /// `GETKEY` then `FETCH`.
    MultiStep,
    /// `LOOKUP`s following `SEE: word` redirects, chains of up to `max_depth` (1..=3).
    Recursive {
        /// Longest redirect chain a redirecting word starts; clamped to 1..=3.
        max_depth: u8,
    },
}

/// Difficulty of a compositional task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Difficulty {
    /// Two words, `+`.
    Easy,
    /// Two words, one of `+ - *`.
    Medium,
    /// Three words, one of `+ - *` applied left to right.
    Hard,
}

impl Difficulty {
    /// How many words a task of this difficulty combines.
    fn terms(self) -> usize {
        match self {
            Difficulty::Easy | Difficulty::Medium => 2,
            Difficulty::Hard => 3,
        }
    }

    /// The operators a task of this difficulty draws from.
    fn operators(self) -> &'static [char] {
        match self {
            Difficulty::Easy => &['+'],
            Difficulty::Medium | Difficulty::Hard => &['+', '-', '*'],
        }
    }
}

impl SpecKind {
    /// Every variant the golden file covers, in a stable order.
    pub const ALL: [SpecKind; 8] = [
        SpecKind::Simple,
        SpecKind::Compositional(Difficulty::Easy),
        SpecKind::Compositional(Difficulty::Medium),
        SpecKind::Compositional(Difficulty::Hard),
        SpecKind::MultiStep,
        SpecKind::Recursive { max_depth: 1 },
        SpecKind::Recursive { max_depth: 2 },
        SpecKind::Recursive { max_depth: 3 },
    ];

    /// The mix RL trains and evaluates on: one spec of each family, the
    /// compositional one with two words and `+`, redirect chains up to 2.
    pub const fn rl_mix() -> [SpecKind; 4] {
        [
            SpecKind::Simple,
            SpecKind::Compositional(Difficulty::Easy),
            SpecKind::MultiStep,
            SpecKind::Recursive { max_depth: 2 },
        ]
    }

    /// The tools a task of this kind offers.
    pub fn tools(self) -> &'static [Tool] {
        match self {
            SpecKind::MultiStep => &[Tool::GetKey, Tool::Fetch],
            _ => &[Tool::Lookup],
        }
    }
}

impl fmt::Display for SpecKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecKind::Simple => f.write_str("simple"),
            SpecKind::Compositional(Difficulty::Easy) => f.write_str("compositional_easy"),
            SpecKind::Compositional(Difficulty::Medium) => f.write_str("compositional_medium"),
            SpecKind::Compositional(Difficulty::Hard) => f.write_str("compositional_hard"),
            SpecKind::MultiStep => f.write_str("multi_step"),
            SpecKind::Recursive { max_depth } => write!(f, "recursive_{max_depth}"),
        }
    }
}

/// A spec name that is not one of [`SpecKind::ALL`]'s.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown zorplex spec `{0}`: expected simple, compositional_easy, compositional_medium, compositional_hard, multi_step, recursive_1, recursive_2 or recursive_3")]
pub struct UnknownSpec(pub String);

impl FromStr for SpecKind {
    type Err = UnknownSpec;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpecKind::ALL
            .into_iter()
            .find(|k| k.to_string() == s)
            .ok_or_else(|| UnknownSpec(s.to_string()))
    }
}

/// How closely to follow the reference implementation where it is flawed.
///
/// [`Compat::Improved`] (the default) differs from the reference in three places;
/// [`Compat::Reference`] reproduces the reference exactly, for comparing scores
/// with results produced by it:
///
/// 1. `[ANSWER] -12` reads as `-12` for every spec. The reference drops the sign
///    everywhere but in compositional tasks, so negative answers score as wrong.
/// 2. The last-number fallback ignores digits inside words and keys: the reference
///    reads `FETCH[ZK_ABC123]` as the answer `123`.
/// 3. Multi-step tool calls are kept in the order they were written; the reference
///    lists every `GETKEY` before every `FETCH`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Compat {
    /// The corrected behaviour.
    #[default]
    Improved,
    /// The reference's behaviour, bug for bug.
    Reference,
}

/// One generated task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The question put to the model.
    pub question: String,
    /// The correct answer.
    pub answer: i64,
    /// What the task was built from.
    pub metadata: TaskMetadata,
}

/// What a task was built from, per kind; also what a solver needs to check itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TaskMetadata {
    /// A simple lookup of `word`.
    Simple {
        /// The word asked about.
        word: String,
    },
    /// `words[0] op words[1] (op words[2])`, applied left to right.
    Compositional {
        /// The words, in question order.
        words: Vec<String>,
        /// Their zorplex values.
        values: Vec<i64>,
        /// The operator symbol: `+`, `-` or `*`.
        op: String,
    },
    /// A `GETKEY` / `FETCH` chain for `word`.
    MultiStep {
        /// The word asked about.
        word: String,
        /// Its key.
        key: String,
    },
    /// A redirect chain starting at `word`.
    Recursive {
        /// The word asked about.
        word: String,
        /// Every word looked up on the way, the word asked about first.
        chain: Vec<String>,
    },
}

impl Task {
    /// How many tool calls a perfect solver makes for this task.
    pub fn needed_tool_calls(&self) -> usize {
        match &self.metadata {
            TaskMetadata::Simple { .. } => 1,
            TaskMetadata::Compositional { words, .. } => words.len(),
            TaskMetadata::MultiStep { .. } => 2,
            TaskMetadata::Recursive { chain, .. } => chain.len(),
        }
    }
}

/// What one model output scores: the tool calls found with their results, the
/// answer read from it and whether that answer is right.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Tool calls in the output, each with what the tool returned.
    pub tool_calls: Vec<(ToolCall, ToolResult)>,
    /// The answer read from the output, if any.
    pub extracted_answer: Option<i64>,
    /// Whether the extracted answer equals the task's.
    pub correct: bool,
}

/// A seeded generator of tasks of one kind, with their tools and scoring.
///
/// Generating from a spec built with the same seed and kind yields exactly the
/// reference's task sequence.
///
/// ```
/// use monarch_rl::zorplex::{SpecKind, TaskSpec};
///
/// let mut spec = TaskSpec::new(SpecKind::Simple, 0);
/// let task = spec.generate_task();
/// assert_eq!(task.question, "What is the zorplex value of 'moon'?");
/// assert_eq!(task.answer, 28);
/// ```
#[derive(Clone, Debug)]
pub struct TaskSpec {
    kind: SpecKind,
    seed: i64,
    compat: Compat,
    rng: PyRandom,
    table: ZorplexTable,
    redirects: Option<RedirectTable>,
}

impl TaskSpec {
    /// A spec of `kind` seeded with `seed`, with [`Compat::Improved`] scoring.
    pub fn new(kind: SpecKind, seed: i64) -> Self {
        let kind = match kind {
            SpecKind::Recursive { max_depth } => SpecKind::Recursive {
                max_depth: max_depth.clamp(1, 3),
            },
            other => other,
        };
        let table = ZorplexTable::new(seed);
        let mut rng = PyRandom::new(seed);
        let redirects = match kind {
            SpecKind::Recursive { max_depth } => {
                Some(RedirectTable::build(&table, &mut rng, max_depth))
            }
            _ => None,
        };
        TaskSpec {
            kind,
            seed,
            compat: Compat::default(),
            rng,
            table,
            redirects,
        }
    }

    /// The same spec with another [`Compat`] mode for parsing and scoring.
    pub fn with_compat(mut self, compat: Compat) -> Self {
        self.compat = compat;
        self
    }

    /// The kind of tasks generated.
    pub fn kind(&self) -> SpecKind {
        self.kind
    }

    /// The seed the spec was built with.
    pub fn seed(&self) -> i64 {
        self.seed
    }

    /// The parsing and scoring mode.
    pub fn compat(&self) -> Compat {
        self.compat
    }

    /// The next task of the seeded sequence.
    pub fn generate_task(&mut self) -> Task {
        match self.kind {
            SpecKind::Simple => {
                let word = *self.rng.choice(&WORDS).expect("WORDS is not empty");
                Task {
                    question: format!("What is the zorplex value of '{word}'?"),
                    answer: self.table.get(word).expect("word from WORDS"),
                    metadata: TaskMetadata::Simple {
                        word: word.to_string(),
                    },
                }
            }
            SpecKind::Compositional(difficulty) => self.generate_compositional(difficulty),
            SpecKind::MultiStep => {
                let word = *self.rng.choice(&WORDS).expect("WORDS is not empty");
                Task {
                    question: format!("What is the zorplex value of '{word}'?"),
                    answer: self.table.get(word).expect("word from WORDS"),
                    metadata: TaskMetadata::MultiStep {
                        word: word.to_string(),
                        key: multi_step_key(word, self.seed),
                    },
                }
            }
            SpecKind::Recursive { .. } => {
                let redirects = self
                    .redirects
                    .as_ref()
                    .expect("recursive spec has redirects");
                let candidates = redirects.redirecting_words();
                let word = match self.rng.choice(&candidates) {
                    Some(&w) => w,
                    None => *self.rng.choice(&WORDS).expect("WORDS is not empty"),
                };
                let (chain, answer) = redirects.resolve(word);
                Task {
                    question: format!("What is the zorplex value of '{word}'?"),
                    answer,
                    metadata: TaskMetadata::Recursive {
                        word: word.to_string(),
                        chain: chain.into_iter().map(str::to_string).collect(),
                    },
                }
            }
        }
    }

    fn generate_compositional(&mut self, difficulty: Difficulty) -> Task {
        let words = self.rng.sample(&WORDS, difficulty.terms());
        let values: Vec<i64> = words
            .iter()
            .map(|w| self.table.get(w).expect("word from WORDS"))
            .collect();
        let op = *self
            .rng
            .choice(difficulty.operators())
            .expect("ops is not empty");
        let answer = values[1..]
            .iter()
            .fold(values[0], |acc, &v| apply(op, acc, v));
        let terms: Vec<String> = words.iter().map(|w| format!("zorplex('{w}')")).collect();
        Task {
            question: format!("What is {}?", terms.join(&format!(" {op} "))),
            answer,
            metadata: TaskMetadata::Compositional {
                words: words.iter().map(|w| w.to_string()).collect(),
                values,
                op: op.to_string(),
            },
        }
    }

    /// The system prompt: it names the tools, their syntax and the
    /// `[ANSWER] <number>` convention, with one worked example.
    pub fn system_prompt(&self) -> String {
        let answer_rule = "When you know the final answer, write it as [ANSWER] <number> and stop.";
        let no_code = "Write tool calls exactly as shown, one per line, and wait for each result; do not write code.";
        match self.kind {
            SpecKind::Simple => format!(
                "You answer questions about zorplex values, which only the LOOKUP tool knows.\n\
                 Write LOOKUP[word] to get the zorplex value of a word. {no_code}\n{answer_rule}\n\n\
                 Example:\nUser: What is the zorplex value of 'cat'?\n\
                 Assistant: LOOKUP[cat]\n[Result: 42]\nAssistant: [ANSWER] 42"
            ),
            SpecKind::Compositional(_) => format!(
                "You answer arithmetic questions about zorplex values, which only the LOOKUP tool knows.\n\
                 Write LOOKUP[word] to get the zorplex value of a word; look up one word at a time. \
                 Apply the operators left to right. {no_code}\n{answer_rule}\n\n\
                 Example:\nUser: What is zorplex('cat') - zorplex('dog')?\n\
                 Assistant: LOOKUP[cat]\n[Result: 42]\nAssistant: LOOKUP[dog]\n[Result: 50]\n\
                 Assistant: 42 - 50 = -8. [ANSWER] -8"
            ),
            SpecKind::MultiStep => format!(
                "You answer questions about zorplex values, which take two tools to read.\n\
                 First write GETKEY[word] to get the word's key (it looks like ZK_1A2B3C), \
                 then FETCH[key] with that key to get the value. {no_code}\n{answer_rule}\n\n\
                 Example:\nUser: What is the zorplex value of 'cat'?\n\
                 Assistant: GETKEY[cat]\n[Result: ZK_1A2B3C]\nAssistant: FETCH[ZK_1A2B3C]\n\
                 [Result: 42]\nAssistant: [ANSWER] 42"
            ),
            SpecKind::Recursive { .. } => format!(
                "You answer questions about zorplex values, which only the LOOKUP tool knows.\n\
                 Write LOOKUP[word] to look a word up. A lookup may answer with a redirect such as \
                 SEE: other; then look up that word, and keep following redirects until you get a number. \
                 {no_code}\n{answer_rule}\n\n\
                 Example:\nUser: What is the zorplex value of 'cat'?\n\
                 Assistant: LOOKUP[cat]\n[Result: SEE: dog]\nAssistant: LOOKUP[dog]\n[Result: 42]\n\
                 Assistant: [ANSWER] 42"
            ),
        }
    }

    /// The tool calls in `text`, in the order this spec's [`Compat`] mode lists them.
    pub fn parse_tool_calls(&self, text: &str) -> Vec<ToolCall> {
        parse_tool_calls(self.kind.tools(), text, self.compat)
    }

    /// Runs one tool call against this spec's tables.
    pub fn execute_tool(&self, call: &ToolCall) -> ToolResult {
        if !self.kind.tools().contains(&call.tool) {
            return ToolResult::Text("UNKNOWN_TOOL".into());
        }
        match call.tool {
            Tool::Lookup => match &self.redirects {
                Some(redirects) => redirects.lookup(&call.argument),
                None => match self.table.get(&call.argument) {
                    Some(v) => ToolResult::Value(v),
                    None => ToolResult::Text("UNKNOWN".into()),
                },
            },
            Tool::GetKey => match word_index(&call.argument) {
                Some(i) => ToolResult::Text(multi_step_key(WORDS[i], self.seed)),
                None => ToolResult::Text("UNKNOWN_WORD".into()),
            },
            Tool::Fetch => {
                let key = call.argument.to_ascii_uppercase();
                match WORDS
                    .iter()
                    .position(|w| multi_step_key(w, self.seed) == key)
                {
                    Some(i) => ToolResult::Value(self.table.value_at(i)),
                    None => ToolResult::Text("INVALID_KEY".into()),
                }
            }
        }
    }

    /// Parses, executes and scores one model output for `task`.
    pub fn evaluate(&self, task: &Task, output: &str) -> Evaluation {
        let tool_calls: Vec<(ToolCall, ToolResult)> = self
            .parse_tool_calls(output)
            .into_iter()
            .map(|call| {
                let result = self.execute_tool(&call);
                (call, result)
            })
            .collect();
        let extracted_answer = self.extract_answer(output, &tool_calls);
        Evaluation {
            correct: extracted_answer == Some(task.answer),
            tool_calls,
            extracted_answer,
        }
    }

    /// The answer in `text`, given the tool calls already executed from it.
    pub fn extract_answer(&self, text: &str, tool_calls: &[(ToolCall, ToolResult)]) -> Option<i64> {
        extract_answer(self.kind, self.compat, text, tool_calls)
    }
}

/// `a op b` for an operator of a compositional task (`*` for any other).
pub(crate) fn apply(op: char, a: i64, b: i64) -> i64 {
    match op {
        '+' => a + b,
        '-' => a - b,
        _ => a * b,
    }
}

/// The recursive spec's lookup table: terminal words hold values, the others
/// redirect to another word.
#[derive(Clone, Debug)]
struct RedirectTable {
    entries: [Entry; 26],
    /// Word indices in the order the reference first inserted them into its dict,
    /// which fixes the order of the candidates a task is drawn from.
    insertion_order: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Missing,
    Value(i64),
    See(usize),
}

impl RedirectTable {
    /// Builds the table as the reference does: shuffle the words, make the first
    /// half terminals, and give each other word a chain of `1..=max_depth` redirects
    /// (by its position) through other redirecting words to a random terminal.
    fn build(table: &ZorplexTable, rng: &mut PyRandom, max_depth: u8) -> Self {
        let mut words: Vec<usize> = (0..WORDS.len()).collect();
        rng.shuffle(&mut words);
        let (terminals, redirectors) = words.split_at(words.len() / 2);
        let mut this = RedirectTable {
            entries: [Entry::Missing; 26],
            insertion_order: Vec::with_capacity(26),
        };
        for &w in terminals {
            this.set(w, Entry::Value(table.value_at(w)));
        }
        for (i, &word) in redirectors.iter().enumerate() {
            let depth = i % usize::from(max_depth) + 1;
            let mut chain = vec![word];
            let mut available: Vec<usize> =
                redirectors.iter().copied().filter(|&w| w != word).collect();
            for _ in 1..depth {
                if available.is_empty() {
                    break;
                }
                let pick = rng.randbelow(available.len() as u64) as usize;
                chain.push(available.remove(pick));
            }
            chain.push(*rng.choice(terminals).expect("half the words are terminals"));
            for pair in chain.windows(2) {
                this.set(pair[0], Entry::See(pair[1]));
            }
        }
        this
    }

    fn set(&mut self, word: usize, entry: Entry) {
        if self.entries[word] == Entry::Missing {
            self.insertion_order.push(word);
        }
        self.entries[word] = entry;
    }

    fn redirecting_words(&self) -> Vec<&'static str> {
        self.insertion_order
            .iter()
            .filter(|&&w| matches!(self.entries[w], Entry::See(_)))
            .map(|&w| WORDS[w])
            .collect()
    }

    fn lookup(&self, word: &str) -> ToolResult {
        match word_index(word).map(|i| self.entries[i]) {
            Some(Entry::Value(v)) => ToolResult::Value(v),
            Some(Entry::See(next)) => ToolResult::Text(format!("SEE: {}", WORDS[next])),
            Some(Entry::Missing) | None => ToolResult::Text("UNKNOWN".into()),
        }
    }

    /// Follows redirects from `word` to its value. Chains always end at a terminal:
    /// each chain is written whole, so every pointer leads to a word rewritten no
    /// earlier than itself, and the walk cannot cycle.
    fn resolve(&self, word: &str) -> (Vec<&'static str>, i64) {
        let mut current = word_index(word).expect("word from WORDS");
        let mut chain = vec![WORDS[current]];
        loop {
            match self.entries[current] {
                Entry::Value(v) => return (chain, v),
                Entry::See(next) => {
                    current = next;
                    chain.push(WORDS[next]);
                }
                Entry::Missing => unreachable!("every word has an entry"),
            }
        }
    }
}
