//! The replay buffer of async RL: completed groups of trajectories, bounded,
//! evicted when their policy is too old, handed to the trainer a whole group
//! at a time (GRPO compares a trajectory only with its own group's).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::model::Trajectory;
use crate::train::PartCredit;
use crate::zorplex::FailureMode;

/// One played episode, as a generator reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryRecord {
    /// Tokens, the model-token mask and behaviour log-probabilities.
    pub trajectory: Trajectory,
    /// The episode's reward.
    pub reward: f64,
    /// Whether it answered correctly.
    pub correct: bool,
    /// Assistant turns.
    pub turns: usize,
    /// Tool calls made.
    pub tool_calls: usize,
    /// How it went.
    pub failure_mode: FailureMode,
    /// The generator that played it.
    pub generator: usize,
    /// The version of the weights that played it.
    pub policy_version: u64,
    /// The temperature it was sampled at, which its behaviour
    /// log-probabilities are under.
    pub temperature: f32,
    /// The parts of its working checked on their own
    /// ([`crate::grpo::working_credits`]).
    pub working: Vec<PartCredit>,
    /// Its lookups of a recursive task's chain checked on their own
    /// ([`crate::grpo::lookup_credits`]).
    pub lookups: Vec<PartCredit>,
}

/// All the trajectories of one task: what GRPO's advantages are computed
/// over. A group is only ever added whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The task's seed: it names the group in logs and orders a batch
    /// ([`ReplayBuffer::sample`]).
    pub task_seed: i64,
    /// The trajectories, one per member.
    pub members: Vec<TrajectoryRecord>,
}

impl Group {
    /// The oldest policy version among the members.
    pub fn policy_version(&self) -> u64 {
        self.members
            .iter()
            .map(|m| m.policy_version)
            .min()
            .unwrap_or(0)
    }
}

/// A bounded buffer of groups.
#[derive(Clone, Debug)]
pub struct ReplayBuffer {
    groups: VecDeque<Group>,
    capacity: usize,
    max_policy_age: u64,
    stats: ReplayStats,
}

/// What a [`ReplayBuffer`] has seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayStats {
    /// Groups added.
    pub added: u64,
    /// Groups handed to the trainer.
    pub sampled: u64,
    /// Groups dropped because the buffer was full (the oldest go first).
    pub evicted_full: u64,
    /// Groups dropped because their policy was too old.
    pub evicted_stale: u64,
    /// Groups held now.
    pub held: usize,
}

impl ReplayBuffer {
    /// A buffer of at most `capacity` groups, keeping groups played by a
    /// policy at most `max_policy_age` versions older than the trainer's.
    pub fn new(capacity: usize, max_policy_age: u64) -> Self {
        ReplayBuffer {
            groups: VecDeque::with_capacity(capacity),
            capacity: capacity.max(1),
            max_policy_age,
            stats: ReplayStats::default(),
        }
    }

    /// Adds a group, dropping the oldest one if the buffer is full.
    pub fn add(&mut self, group: Group) {
        if self.groups.len() == self.capacity {
            self.groups.pop_front();
            self.stats.evicted_full += 1;
        }
        self.groups.push_back(group);
        self.stats.added += 1;
    }

    /// Takes the `count` oldest groups, ordered by task seed, once that
    /// many are fresh for a trainer at `version`; stale groups are dropped
    /// first. `None` (and nothing taken) when fewer are ready.
    ///
    /// ```
    /// use monarch_rl::replay::{Group, ReplayBuffer};
    ///
    /// let mut buffer = ReplayBuffer::new(8, 1);
    /// buffer.add(Group { task_seed: 1, members: vec![] });
    /// assert!(buffer.sample(2, 0).is_none());
    /// buffer.add(Group { task_seed: 2, members: vec![] });
    /// assert_eq!(buffer.sample(2, 0).unwrap().len(), 2);
    /// ```
    pub fn sample(&mut self, count: usize, version: u64) -> Option<Vec<Group>> {
        self.evict_stale(version);
        if self.groups.len() < count {
            return None;
        }
        self.stats.sampled += count as u64;
        // The oldest arrivals go, in task order: which generator finished
        // first must not change the batch the trainer sums its gradients
        // over in, or the same run would train differently twice.
        let mut batch: Vec<Group> = self.groups.drain(..count).collect();
        batch.sort_by_key(|g| g.task_seed);
        Some(batch)
    }

    /// Drops the groups too old for a trainer at `version`.
    pub fn evict_stale(&mut self, version: u64) {
        let before = self.groups.len();
        let age = self.max_policy_age;
        self.groups
            .retain(|g| version.saturating_sub(g.policy_version()) <= age);
        self.stats.evicted_stale += (before - self.groups.len()) as u64;
    }

    /// Groups held.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no group is held.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The counters so far.
    pub fn stats(&self) -> ReplayStats {
        ReplayStats {
            held: self.groups.len(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(seed: i64, versions: &[u64]) -> Group {
        Group {
            task_seed: seed,
            members: versions
                .iter()
                .map(|&v| TrajectoryRecord {
                    trajectory: Trajectory::default(),
                    reward: 0.0,
                    correct: false,
                    turns: 1,
                    tool_calls: 0,
                    failure_mode: FailureMode::WrongFormat,
                    generator: 0,
                    policy_version: v,
                    temperature: 1.0,
                    working: Vec::new(),
                    lookups: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn stale_and_overflowing_groups_are_evicted_and_counted() {
        let mut buffer = ReplayBuffer::new(3, 1);
        buffer.add(group(1, &[0, 0]));
        buffer.add(group(2, &[1, 0]));
        buffer.add(group(3, &[2, 2]));
        buffer.add(group(4, &[2, 3]));
        assert_eq!(buffer.stats().evicted_full, 1);
        // At version 3: group 2 (oldest member at 0) is too old; 3 and 4 are fresh.
        let taken = buffer.sample(2, 3).unwrap();
        let seeds: Vec<i64> = taken.iter().map(|g| g.task_seed).collect();
        assert_eq!(seeds, [3, 4]);
        let stats = buffer.stats();
        assert_eq!(
            (stats.added, stats.sampled, stats.evicted_stale, stats.held),
            (4, 2, 1, 0)
        );
        assert!(buffer.sample(1, 3).is_none());
    }

    #[test]
    fn a_batch_is_the_oldest_groups_in_task_order_whatever_their_arrival() {
        let mut buffer = ReplayBuffer::new(8, 1);
        for seed in [7, 3, 5, 1] {
            buffer.add(group(seed, &[0]));
        }
        let seeds = |batch: Vec<Group>| batch.iter().map(|g| g.task_seed).collect::<Vec<_>>();
        assert_eq!(seeds(buffer.sample(3, 0).unwrap()), [3, 5, 7]);
        assert_eq!(seeds(buffer.sample(1, 0).unwrap()), [1]);
    }
}
