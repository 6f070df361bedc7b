//! The loop that drives a run: it asks generators for groups, admits only as
//! many as the staleness bound allows, feeds whole fresh groups to the
//! trainer, retries the groups of a failed generator on another one and
//! replaces the failed generator.
//!
//! `Sync` and `Async` are one loop with two admission rules: in sync mode a
//! batch of groups is started only once the previous batch was trained on
//! (generation and training alternate); in async mode generators run up to
//! `max_policy_age` batches ahead of the trainer, so generation and training
//! overlap and no trained sample is more than `max_policy_age` versions old.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use monarch_core::prelude::*;
use serde::{Deserialize, Serialize};

use super::generator::{GroupRequest, GroupResult};
use super::pool::{kill_generator, GeneratorPool, KillError};
use super::trainer::{PolicyTrainer, TrainReport};
use super::weights::SyncRecord;
use crate::grpo::task_seed;
use crate::replay::{ReplayBuffer, ReplayStats};
use crate::service::{Routed, ServiceError};
use crate::zorplex::{SpecKind, SpecReport};

/// How generation and training are scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Generate a batch, train on it, sync, repeat.
    Sync,
    /// Generators run continuously, at most `max_policy_age` batches ahead.
    Async,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
        })
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sync" => Ok(Mode::Sync),
            "async" => Ok(Mode::Async),
            other => Err(format!("unknown mode `{other}`: expected sync or async")),
        }
    }
}

/// What a run does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopConfig {
    /// Sync or async.
    pub mode: Mode,
    /// Trainer steps.
    pub steps: usize,
    /// Groups per trainer step.
    pub groups_per_step: usize,
    /// Episodes per group.
    pub group_size: usize,
    /// The most versions a trained sample's policy may be behind (async).
    pub max_policy_age: u64,
    /// The specs trained on, in turn.
    pub kinds: Vec<SpecKind>,
    /// Seeds the tasks and the sampling.
    pub seed: u64,
    /// The longest any one call may take.
    pub call_timeout: Duration,
    /// Kill one generator's process once this many steps are done.
    pub kill_generator_after: Option<usize>,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            mode: Mode::Async,
            steps: 20,
            groups_per_step: 4,
            group_size: 8,
            max_policy_age: 1,
            kinds: SpecKind::rl_mix().to_vec(),
            seed: 0,
            call_timeout: Duration::from_secs(300),
            kill_generator_after: None,
        }
    }
}

/// [`LoopConfig::kinds`] for a weighted mix: each of `kinds` as often as its
/// weight in `weights`, spread over the cycle.
///
/// ```
/// use monarch_rl::async_rl::weighted_kinds;
/// use monarch_rl::zorplex::SpecKind::{MultiStep, Simple};
///
/// let kinds = weighted_kinds(&[Simple, MultiStep], &[1, 3]).unwrap();
/// assert_eq!(kinds, [Simple, MultiStep, MultiStep, MultiStep]);
/// assert!(weighted_kinds(&[Simple], &[1, 2]).is_err());
/// ```
pub fn weighted_kinds(kinds: &[SpecKind], weights: &[usize]) -> Result<Vec<SpecKind>, LoopError> {
    if weights.len() != kinds.len() || weights.iter().all(|&w| w == 0) {
        let names: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        return Err(LoopError::Config(format!(
            "{} weights, not all 0, are needed (one for each of {}); got {weights:?}",
            kinds.len(),
            names.join(", ")
        )));
    }
    let rounds = weights.iter().copied().max().unwrap_or(0);
    Ok((0..rounds)
        .flat_map(|round| {
            kinds
                .iter()
                .zip(weights)
                .filter(move |(_, &weight)| weight > round)
                .map(|(&kind, _)| kind)
        })
        .collect())
}

/// What one trainer step saw, for the progress bar and the metrics file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Sync or async.
    pub mode: Mode,
    /// The step, from 1.
    pub step: usize,
    /// The version published after it.
    pub version: u64,
    /// Seconds since the loop started.
    pub wall_seconds: f64,
    /// Trajectories received so far.
    pub trajectories: usize,
    /// Mean reward of the batch trained on.
    pub mean_reward: f64,
    /// Fraction of the batch answered correctly.
    pub accuracy: f64,
    /// The step's loss and statistics.
    pub train: TrainReport,
    /// Healthy generators.
    pub healthy_generators: usize,
}

/// Something that happened to the run's generators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PoolEvent {
    /// A generator's process was killed on request.
    Killed {
        /// The generator.
        generator: usize,
        /// Its process.
        pid: u32,
        /// After this many steps.
        after_step: usize,
    },
    /// A call to a generator failed and it was marked unhealthy.
    Failed {
        /// The generator.
        generator: usize,
        /// Why.
        error: String,
    },
    /// A fresh generator took a failed one's place.
    Replaced {
        /// The failed generator.
        failed: usize,
        /// Its replacement.
        by: usize,
    },
    /// A group was played again on another generator.
    Retried {
        /// The group's task seed.
        task_seed: i64,
    },
    /// A group was given up after its retry failed too; none of it is
    /// trained on.
    Dropped {
        /// The group's task seed.
        task_seed: i64,
    },
}

/// What a whole run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoopReport {
    /// Sync or async.
    pub mode: Mode,
    /// Every step.
    pub steps: Vec<StepMetrics>,
    /// Wall time of the loop, in seconds.
    pub wall_seconds: f64,
    /// Trajectories received.
    pub trajectories: usize,
    /// Every weight sync the generators reported.
    pub syncs: Vec<SyncRecord>,
    /// The replay buffer's counters.
    pub replay: ReplayStats,
    /// What happened to generators.
    pub events: Vec<PoolEvent>,
}

impl LoopReport {
    /// Trajectories received per second of wall time.
    pub fn trajectories_per_second(&self) -> f64 {
        self.trajectories as f64 / self.wall_seconds.max(1e-9)
    }
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// The trainer failed or did not answer.
    #[error("trainer: {0}")]
    Trainer(String),
    /// The generators' service failed: no generator could be started.
    #[error("generators: {0}")]
    Generators(#[from] ServiceError),
    /// A generator could not be killed for fault injection.
    #[error(transparent)]
    Kill(#[from] KillError),
    /// The configuration cannot run.
    #[error("bad loop configuration: {0}")]
    Config(String),
    /// Nothing was in flight and nothing could be started: a bug.
    #[error("the loop stalled with {admitted} groups admitted and {held} held: {detail}")]
    Stalled {
        /// The loop's counters.
        detail: String,
        /// Groups admitted so far.
        admitted: usize,
        /// Groups in the replay buffer.
        held: usize,
    },
}

type Played = (
    GroupRequest,
    usize,
    Result<Routed<GroupResult>, ServiceError>,
);
type PlayFuture<'a> = Pin<Box<dyn Future<Output = Played> + Send + 'a>>;
type TrainFuture = Pin<Box<dyn Future<Output = Result<TrainReport, LoopError>> + Send>>;

/// Runs `config.steps` trainer steps with `trainer` and the generators of
/// `pool`, calling `on_step` after each.
pub async fn run_loop(
    trainer: &ActorMesh<PolicyTrainer>,
    pool: &GeneratorPool,
    config: &LoopConfig,
    mut on_step: impl FnMut(&StepMetrics),
) -> Result<LoopReport, LoopError> {
    if config.steps == 0 || config.groups_per_step == 0 || config.group_size == 0 {
        return Err(LoopError::Config(
            "steps, groups per step and group size must be at least 1".into(),
        ));
    }
    if config.kinds.is_empty() {
        return Err(LoopError::Config("no spec to train on".into()));
    }
    let started = Instant::now();
    let timeout = config.call_timeout;
    let mut version = trainer_call(timeout, trainer.version().timeout(timeout).call_one()).await?;
    let ahead = match config.mode {
        Mode::Sync => 0,
        Mode::Async => config.max_policy_age as usize,
    };
    let batch = config.groups_per_step;
    let mut buffer = ReplayBuffer::new(batch * (ahead + 2), config.max_policy_age);
    let mut report = LoopReport {
        mode: config.mode,
        steps: Vec::with_capacity(config.steps),
        wall_seconds: 0.0,
        trajectories: 0,
        syncs: Vec::new(),
        replay: ReplayStats::default(),
        events: Vec::new(),
    };
    // Groups to play again, with the failed attempts they have had.
    let mut retries: VecDeque<(GroupRequest, usize)> = VecDeque::new();
    let mut in_flight: FuturesUnordered<PlayFuture<'_>> = FuturesUnordered::new();
    let mut training: Option<TrainFuture> = None;
    let mut admitted = 0usize;
    let mut lost = 0usize;
    let mut killed = false;
    while report.steps.len() < config.steps {
        let trained = report.steps.len();
        // Generators the service found unhealthy (a failed call, or
        // supervision) are replaced; the fresh ones load the newest weights.
        for failed in pool.status().unhealthy {
            report.events.push(PoolEvent::Failed {
                generator: failed.id,
                error: failed.error,
            });
            let by = pool.replace(failed.replica).await?;
            report.events.push(PoolEvent::Replaced {
                failed: failed.id,
                by,
            });
        }
        // Groups too old for the trainer go first, so that admission counts
        // their replacements.
        buffer.evict_stale(version);
        // Admission: groups that can still reach the trainer stay within
        // `ahead` batches beyond the one being gathered; one group per
        // healthy generator is in flight.
        let limit = batch * (trained + ahead + 1).min(config.steps);
        let capacity = pool.healthy().len();
        while in_flight.len() < capacity {
            let (request, failures) = if let Some(retry) = retries.pop_front() {
                if retry.1 > 0 {
                    report.events.push(PoolEvent::Retried {
                        task_seed: retry.0.task_seed,
                    });
                }
                retry
            } else if admitted - lost - evicted(&buffer) < limit {
                let index = admitted as u64;
                admitted += 1;
                let kind = config.kinds[index as usize % config.kinds.len()];
                let request = GroupRequest {
                    kind,
                    task_seed: task_seed(config.seed, index),
                    size: config.group_size,
                    sample_seed: config.seed ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03),
                };
                (request, 0)
            } else {
                break;
            };
            in_flight.push(play(pool, request, failures, timeout));
        }
        if training.is_none() {
            if let Some(groups) = buffer.sample(batch, version) {
                let trainer = trainer.clone();
                training = Some(Box::pin(async move {
                    trainer_call(timeout, trainer.train(groups).timeout(timeout).call_one()).await
                }));
            }
        }
        if in_flight.is_empty() && training.is_none() {
            return Err(LoopError::Stalled {
                admitted,
                held: buffer.len(),
                detail: format!(
                    "trained {trained}, lost {lost}, evicted {}, retries {}, healthy {capacity}, limit {limit}, events {:?}",
                    evicted(&buffer),
                    retries.len(),
                    report.events
                ),
            });
        }
        let event = tokio::select! {
            Some(played) = in_flight.next(), if !in_flight.is_empty() => Event::Played(played),
            trained = async { training.as_mut().expect("guarded").await }, if training.is_some() => {
                Event::Trained(trained)
            }
        };
        match event {
            Event::Played((request, _, Ok(routed))) => {
                if !routed.failures.is_empty() {
                    report.events.push(PoolEvent::Retried {
                        task_seed: request.task_seed,
                    });
                }
                report.trajectories += routed.value.group.members.len();
                report.syncs.extend(routed.value.sync);
                buffer.add(routed.value.group);
            }
            Event::Played((request, before, Err(ServiceError::Failed { failures, .. }))) => {
                if failures.len() > 1 {
                    report.events.push(PoolEvent::Retried {
                        task_seed: request.task_seed,
                    });
                }
                let attempts = before + failures.len();
                if attempts < 2 {
                    retries.push_back((request, attempts));
                } else {
                    // Its trajectories are never trained on: a partial or
                    // placeholder group would bias the advantages.
                    report.events.push(PoolEvent::Dropped {
                        task_seed: request.task_seed,
                    });
                    lost += 1;
                }
            }
            Event::Played((request, before, Err(ServiceError::NoHealthyReplica { .. }))) => {
                retries.push_back((request, before));
            }
            Event::Played((_, _, Err(other))) => return Err(other.into()),
            Event::Trained(result) => {
                training = None;
                let train = result?;
                version = train.version;
                lost += train.refused_stale;
                let step = report.steps.len() + 1;
                let mut train = train;
                train.step.step = step;
                let metrics = StepMetrics {
                    mode: config.mode,
                    step,
                    version,
                    wall_seconds: started.elapsed().as_secs_f64(),
                    trajectories: report.trajectories,
                    mean_reward: train.step.mean_reward,
                    accuracy: train.step.accuracy,
                    healthy_generators: pool.healthy().len(),
                    train,
                };
                on_step(&metrics);
                report.steps.push(metrics);
                if config.kill_generator_after == Some(step) && !killed {
                    killed = true;
                    let slot = pool.healthy().first().copied().unwrap_or(0);
                    let generator = pool.replica_id(slot)?;
                    let pid = kill_generator(pool, slot, timeout).await?;
                    report.events.push(PoolEvent::Killed {
                        generator,
                        pid,
                        after_step: step,
                    });
                }
            }
        }
    }
    // Groups still being played are not trained on; wait for them so that
    // no generator is busy when the next run starts.
    while let Some((_, _, result)) = in_flight.next().await {
        if let Ok(routed) = result {
            report.trajectories += routed.value.group.members.len();
            report.syncs.extend(routed.value.sync);
        }
    }
    report.replay = buffer.stats();
    report.wall_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

enum Event {
    Played(Played),
    Trained(Result<TrainReport, LoopError>),
}

/// Groups the buffer dropped: they will never reach the trainer.
fn evicted(buffer: &ReplayBuffer) -> usize {
    let stats = buffer.stats();
    (stats.evicted_stale + stats.evicted_full) as usize
}

/// Plays `request` on the least loaded healthy generator, retried once on
/// another by the service if that one fails.
fn play(
    pool: &GeneratorPool,
    request: GroupRequest,
    failures: usize,
    timeout: Duration,
) -> PlayFuture<'_> {
    Box::pin(async move {
        let result = pool
            .route_least_loaded(|generator| async move {
                generator
                    .play_group(request)
                    .timeout(timeout)
                    .call_one()
                    .await
            })
            .await;
        (request, failures, result)
    })
}

async fn trainer_call<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, MeshError>>,
) -> Result<T, LoopError> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| LoopError::Trainer(format!("no answer within {timeout:?}")))?
        .map_err(|e| LoopError::Trainer(e.to_string()))
}

/// Evaluates the pool's current weights on `tasks` tasks of each of
/// `kinds` from `seed`, the specs spread over the healthy generators (and
/// retried on another if one fails).
pub async fn evaluate(
    pool: &GeneratorPool,
    kinds: &[SpecKind],
    seed: i64,
    tasks: usize,
    temperature: f32,
    timeout: Duration,
) -> Result<Vec<SpecReport>, ServiceError> {
    let calls = kinds.iter().map(|&kind| async move {
        pool.route_least_loaded(|generator| async move {
            generator
                .evaluate(kind, seed, tasks, temperature)
                .timeout(timeout)
                .call_one()
                .await
        })
        .await
        .map(|routed| routed.value)
    });
    futures::future::try_join_all(calls).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zorplex::Difficulty;

    #[test]
    fn weighted_kinds_spread_each_spec_by_its_weight() {
        let [s, c, m, r] = SpecKind::rl_mix();
        assert_eq!(
            weighted_kinds(&SpecKind::rl_mix(), &[1, 3, 1, 2]).unwrap(),
            [s, c, m, r, c, r, c]
        );
        assert_eq!(c, SpecKind::Compositional(Difficulty::Easy));
        // A weight of 0 leaves a spec out; all 0 or a count apart is refused.
        assert_eq!(weighted_kinds(&[s, c], &[0, 2]).unwrap(), [c, c]);
        for weights in [&[0, 0][..], &[1][..], &[1, 1, 1][..]] {
            let error = weighted_kinds(&[s, c], weights).unwrap_err();
            assert!(
                error.to_string().contains("simple, compositional_easy"),
                "{error}"
            );
        }
    }
}
