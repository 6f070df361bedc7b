//! The generator actor: a copy of the policy that plays groups of Zorplex
//! episodes with the newest weights it can pull, and reports them as
//! trajectories.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use candle_core::Device;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::weights::{SyncError, SyncRecord, WeightSource, WeightSync};
use crate::grpo::{lookup_credits, working_credits};
use crate::model::{AnyModel, AnyTokenizer, ModelError, ModelPolicy, ModelSpec};
use crate::replay::{Group, TrajectoryRecord};
use crate::train::{FlatError, FlatWeights};
use crate::zorplex::{
    evaluate_spec, run_episode, Compat, EpisodeConfig, PolicyError, SpecKind, SpecReport, TaskSpec,
};

/// How a [`Generator`] is made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GeneratorParams {
    /// The model (its weights come from `weights`).
    pub model: ModelSpec,
    /// Where the trainer publishes its weights.
    pub weights: WeightSource,
    /// Limits and sampling of each episode (the sampling seed is set per
    /// episode).
    pub episode: EpisodeConfig,
    /// The longest a weight sync may take, in milliseconds.
    pub sync_deadline_ms: u64,
    /// This generator's id in trajectories and logs ([`super::spawn_generators`]
    /// gives each replica its own).
    pub id: usize,
}

/// One group to play: `size` episodes of the same task.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupRequest {
    /// The task's spec.
    pub kind: SpecKind,
    /// The task's seed.
    pub task_seed: i64,
    /// Episodes in the group.
    pub size: usize,
    /// Seeds the sampling of the group's episodes.
    pub sample_seed: u64,
}

/// A played group and how it was played.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupResult {
    /// The trajectories.
    pub group: Group,
    /// The weight sync made before playing, if a newer version was there.
    pub sync: Option<SyncRecord>,
    /// Time spent playing, in seconds.
    pub seconds: f64,
}

/// Why a generator could not play.
#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    /// The weights could not be synced.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The policy failed inside an episode.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// `evaluate_kept` of a version `keep` did not keep.
    #[error("version {0} was not kept: call keep() while it is the newest")]
    NotKept(u64),
    /// Kept weights could not be loaded back.
    #[error(transparent)]
    Flat(#[from] FlatError),
}

/// A generator: a copy of the policy model, its tokenizer and its weight
/// sync.
pub struct Generator {
    id: usize,
    vars: VarMap,
    policy: ModelPolicy<AnyModel, AnyTokenizer>,
    sync: WeightSync,
    episode: EpisodeConfig,
    /// Versions copied by `keep`, to evaluate later.
    kept: BTreeMap<u64, FlatWeights>,
}

#[monarch_derive::actor]
impl Generator {
    /// Builds the model and loads the newest published weights.
    #[init]
    async fn new(params: GeneratorParams) -> Result<Self, GeneratorError> {
        let built = cpu_bound(async { params.model.build(0, &Device::Cpu) })?;
        let mut generator = Generator {
            id: params.id,
            vars: built.vars,
            policy: ModelPolicy::new(built.model, built.tokenizer),
            sync: WeightSync::new(
                params.weights,
                Duration::from_millis(params.sync_deadline_ms),
            ),
            episode: params.episode,
            kept: BTreeMap::new(),
        };
        generator.pull().await?;
        Ok(generator)
    }

    /// Plays one group with the newest weights, pulled first if newer.
    #[endpoint]
    async fn play_group(&mut self, request: GroupRequest) -> Result<GroupResult, GeneratorError> {
        let sync = self.pull().await?;
        let started = Instant::now();
        let version = self.sync.version();
        let mut spec = TaskSpec::new(request.kind, request.task_seed);
        let task = spec.generate_task();
        let mut members = Vec::with_capacity(request.size);
        for member in 0..request.size {
            let mut config = self.episode;
            config.sampling.seed =
                request.sample_seed ^ (member as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let episode = cpu_bound(run_episode(&spec, &task, &mut self.policy, &config))?;
            let trajectory = self.policy.take_trajectory();
            members.push(TrajectoryRecord {
                working: working_credits(&episode, &trajectory),
                lookups: lookup_credits(&episode, &trajectory),
                trajectory,
                reward: episode.reward,
                correct: episode.correct,
                turns: episode.turns.len(),
                tool_calls: episode.tool_call_count(),
                failure_mode: episode.failure_mode,
                generator: self.id,
                policy_version: version,
                temperature: config.sampling.temperature,
            });
        }
        Ok(GroupResult {
            group: Group {
                task_seed: request.task_seed,
                members,
            },
            sync,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Evaluates the newest weights on `tasks` tasks of `kind`, the first of
    /// each of the seeds from `seed` on ([`evaluate_spec`]), at
    /// `temperature` (0: greedy).
    #[endpoint]
    async fn evaluate(
        &mut self,
        kind: SpecKind,
        seed: i64,
        tasks: usize,
        temperature: f32,
    ) -> Result<SpecReport, GeneratorError> {
        self.pull().await?;
        self.score(kind, seed, tasks, temperature)
    }

    /// Pulls the newest weights and keeps a copy of them, to evaluate later
    /// with [`evaluate_kept`](GeneratorClient::evaluate_kept) without
    /// taking CPU from a run in progress; returns their version.
    #[endpoint]
    async fn keep(&mut self) -> Result<u64, GeneratorError> {
        self.pull().await?;
        let version = self.sync.version();
        if !self.kept.contains_key(&version) {
            let copy = cpu_bound(async {
                FlatWeights::export(&self.vars.data().lock().expect("var map lock"))
            })?;
            self.kept.insert(version, copy);
        }
        Ok(version)
    }

    /// Evaluates the kept `version` like [`evaluate`](GeneratorClient::evaluate)
    /// does the newest; the next pull loads the newest again.
    #[endpoint]
    async fn evaluate_kept(
        &mut self,
        version: u64,
        kind: SpecKind,
        seed: i64,
        tasks: usize,
        temperature: f32,
    ) -> Result<SpecReport, GeneratorError> {
        let kept = self
            .kept
            .get(&version)
            .ok_or(GeneratorError::NotKept(version))?;
        cpu_bound(async { kept.import(&self.vars.data().lock().expect("var map lock")) })?;
        self.sync.forget();
        self.score(kind, seed, tasks, temperature)
    }

    /// The version of the weights held.
    #[endpoint]
    async fn version(&self) -> u64 {
        self.sync.version()
    }

    /// The generator's process id (for fault-injection tests and
    /// `--kill-generator-after`).
    #[endpoint]
    async fn pid(&self) -> u32 {
        std::process::id()
    }
}

impl Generator {
    /// Evaluates the weights held on `tasks` tasks of `kind` from `seed`.
    fn score(
        &mut self,
        kind: SpecKind,
        seed: i64,
        tasks: usize,
        temperature: f32,
    ) -> Result<SpecReport, GeneratorError> {
        let mut config = self.episode;
        config.sampling.temperature = temperature;
        config.sampling.seed = seed as u64;
        Ok(cpu_bound(evaluate_spec(
            kind,
            seed,
            tasks,
            Compat::default(),
            &config,
            &mut self.policy,
        ))?)
    }

    async fn pull(&mut self) -> Result<Option<SyncRecord>, SyncError> {
        let vars = self.vars.data().lock().expect("var map lock").clone();
        // Loading a version copies all the weights: off the runtime's
        // threads, so that heartbeats keep going for a large model.
        cpu_bound(self.sync.pull_if_newer(&vars))
    }
}

/// Runs a future whose work is CPU-bound model code on this thread, telling
/// the runtime to move its other tasks (heartbeats, other messages) off it.
pub(crate) fn cpu_bound<F: std::future::Future>(work: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(work))
}
