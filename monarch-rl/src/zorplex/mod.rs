//! Zorplex: a synthetic benchmark for training language models on multi-step
//! tool use.
//!
//! A seeded table gives each of 26 words a "zorplex value" that only tools know.
//! Four kinds of task ([`SpecKind`]) ask for values directly, for arithmetic over
//! them, through a `GETKEY`/`FETCH` chain, or through `SEE: word` redirects. For the
//! same seed, [`TaskSpec`] generates exactly the tasks of the reference Python
//! implementation (its `random.Random` is reproduced bit for bit by [`PyRandom`]);
//! [`Compat`] says where scoring departs from the reference and why.
//!
//! The agentic loop ([`run_episode`]) drives any [`Policy`] through the tools and
//! scores the episode; [`OraclePolicy`] and [`NoisyPolicy`] are scripted baselines.
//!
//! ```
//! use monarch_rl::zorplex::{run_episode, EpisodeConfig, FailureMode, OraclePolicy, SpecKind, TaskSpec};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let kind: SpecKind = "multi_step".parse().unwrap();
//! let mut spec = TaskSpec::new(kind, 42);
//! let task = spec.generate_task();
//! let mut oracle = OraclePolicy::new(kind);
//! let episode = run_episode(&spec, &task, &mut oracle, &EpisodeConfig::default()).await.unwrap();
//! assert!(episode.correct);
//! assert_eq!(episode.failure_mode, FailureMode::Success);
//! assert_eq!(episode.tool_call_count(), 2); // GETKEY, then FETCH
//! # });
//! ```

mod episode;
mod eval;
mod extract;
mod lookups;
mod pyrandom;
mod scripted;
mod spec;
mod table;
mod tools;
mod worked;

pub use episode::{
    run_episode, Episode, EpisodeConfig, FailureMode, GenerateRequest, Policy, PolicyError,
    Sampling, StopRule, StopScanner, Turn,
};
pub use eval::{evaluate, evaluate_spec, evaluate_spec_each, ReportTable, SpecReport};
pub use lookups::{check_lookups, LookupPart};
pub use pyrandom::PyRandom;
pub use scripted::{Noise, NoisyPolicy, OraclePolicy, UnknownNoise, HARD_VALUE};
pub use spec::{
    Compat, Difficulty, Evaluation, SpecKind, Task, TaskMetadata, TaskSpec, UnknownSpec,
};
pub use table::{multi_step_key, word_index, ZorplexTable, WORDS};
pub use tools::{Tool, ToolCall, ToolResult};
pub use worked::{check_working, worked_sum, WorkingPart};
