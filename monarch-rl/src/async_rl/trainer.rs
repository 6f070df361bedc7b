//! The trainer actor: warms the policy up, takes policy-gradient steps on
//! whole groups no older than the staleness bound (anchored, when asked, by
//! a KL penalty to a frozen copy of the starting policy), and publishes
//! every new version of the weights into a ring of registered memory.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use candle_nn::VarMap;
use monarch_rdma::{RdmaError, SnapshotRing};
use serde::{Deserialize, Serialize};

use super::generator::cpu_bound;
use super::weights::WeightSource;
use crate::grpo::{train_step, GrpoConfig, Sample, StepReport};
use crate::model::{
    read_checkpoint_info, read_checkpoint_weights, save_checkpoint, AnyModel, AnyTokenizer,
    CheckpointError, CheckpointInfo, LanguageModel, ModelError, ModelSpec, TextTokenizer,
};
use crate::pretrain::{demonstrations, pretrain, sum_drills, PretrainConfig, PretrainReport};
use crate::replay::Group;
use crate::train::{FlatError, FlatWeights, LossConfig, Trainer, TrainerConfig};
use crate::zorplex::{Noise, SpecKind};

/// How a [`PolicyTrainer`] is made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainerParams {
    /// The model.
    pub model: ModelSpec,
    /// Seeds the initial weights (of a model trained from scratch).
    pub seed: u64,
    /// Slots of the weight ring (readers lapped by more than this many
    /// publishes retry on the newest).
    pub ring_slots: usize,
    /// Episodes per group.
    pub group_size: usize,
    /// Divide advantages by the group's standard deviation.
    pub normalize_std: bool,
    /// The learning rate of the RL steps.
    pub lr: f64,
    /// The most versions a trained sample's policy may be behind.
    pub max_policy_age: u64,
    /// The weight of the KL penalty towards the starting policy (the warm
    /// model, or the checkpoint loaded); 0 turns it off and saves the
    /// reference model's memory and forward passes.
    pub kl_coef: f64,
    /// The weight of the per-token credit for each part of a sum's working
    /// ([`GrpoConfig::working_credit`]); 0 trains on the episode reward alone.
    pub working_credit: f32,
    /// The weight of the per-token credit for each lookup of a recursive
    /// task's chain ([`GrpoConfig::lookup_credit`]); 0 trains on the
    /// episode reward alone.
    pub lookup_credit: f32,
}

/// How to warm the model up (see [`PretrainConfig`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WarmUp {
    /// Demonstrations per spec.
    pub episodes_per_kind: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// AdamW's peak learning rate.
    pub lr: f64,
    /// Rows of worked sums trained at each step beside the demonstrations.
    pub drill_rows: usize,
    /// The weight of the worked sums' loss against the demonstrations'
    /// ([`PretrainConfig::drill_weight`]).
    pub drill_weight: f64,
    /// The fraction of demonstrations in which the scripted policy
    /// misbehaves ([`PretrainConfig::error_rate`]).
    pub error_rate: f64,
    /// Specs whose demonstrations misbehave at their own rate
    /// ([`PretrainConfig::spec_error_rates`]).
    pub spec_error_rates: Vec<(SpecKind, f64)>,
    /// Specs whose demonstrations misbehave only in the named ways
    /// ([`PretrainConfig::spec_noises`]).
    pub spec_noises: Vec<(SpecKind, Vec<Noise>)>,
    /// Seeds the demonstrations and batches.
    pub seed: u64,
}

impl Default for WarmUp {
    fn default() -> Self {
        let defaults = PretrainConfig::default();
        WarmUp {
            episodes_per_kind: defaults.episodes_per_kind,
            steps: defaults.steps,
            lr: defaults.lr,
            drill_rows: defaults.drill_rows,
            drill_weight: defaults.drill_weight,
            error_rate: defaults.error_rate,
            spec_error_rates: defaults.spec_error_rates,
            spec_noises: defaults.spec_noises,
            seed: defaults.seed,
        }
    }
}

/// What one RL step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// The loss and its statistics.
    pub step: StepReport,
    /// The version published after the step.
    pub version: u64,
    /// Groups trained on.
    pub groups: usize,
    /// Groups refused because their policy was more than `max_policy_age`
    /// versions behind.
    pub refused_stale: usize,
    /// The largest version gap among the groups trained on.
    pub max_gap: u64,
    /// Time to publish the new version, in seconds.
    pub publish_seconds: f64,
    /// Bytes published.
    pub publish_bytes: u64,
}

/// Why the trainer could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The weights could not be exported.
    #[error(transparent)]
    Flat(#[from] FlatError),
    /// The weights could not be published.
    #[error("publishing weights: {0}")]
    Publish(#[from] RdmaError),
    /// The checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A checkpoint holds another model than the trainer's.
    #[error("{}: the checkpoint holds {checkpoint:?}, not this trainer's {trainer:?}", dir.display())]
    OtherModel {
        /// The checkpoint's folder.
        dir: PathBuf,
        /// The checkpoint's model.
        checkpoint: Box<ModelSpec>,
        /// The trainer's model.
        trainer: Box<ModelSpec>,
    },
}

/// The trainer: the policy's master weights, the optimiser and the ring.
pub struct PolicyTrainer {
    spec: ModelSpec,
    model: AnyModel,
    tokenizer: AnyTokenizer,
    vars: VarMap,
    optimiser: Trainer,
    ring: SnapshotRing,
    layout: Vec<crate::train::TensorLayout>,
    /// What `reset` goes back to: the weights after the warm-up, or the
    /// initial ones.
    warm: FlatWeights,
    /// A frozen copy of `warm` that the KL penalty anchors to, when there is
    /// one.
    reference: Option<Reference>,
    grpo: GrpoConfig,
    lr: f64,
    max_policy_age: u64,
}

#[monarch_derive::actor]
impl PolicyTrainer {
    /// Builds the model (from its seed, or its pretrained weights) and
    /// publishes its weights as version 1.
    #[init]
    async fn new(params: TrainerParams) -> Result<Self, TrainerError> {
        let built = cpu_bound(async { params.model.build(params.seed, &Device::Cpu) })?;
        let vars = built.vars;
        let exported = cpu_bound(async { export(&vars) })?;
        let mut ring = SnapshotRing::new(params.ring_slots.max(1), exported.bytes.len())?;
        ring.publish(&exported.bytes)?;
        let grpo = GrpoConfig {
            group_size: params.group_size,
            normalize_std: params.normalize_std,
            working_credit: params.working_credit,
            lookup_credit: params.lookup_credit,
            loss: LossConfig {
                kl_coef: params.kl_coef,
                ..LossConfig::default()
            },
            ..GrpoConfig::default()
        };
        let reference = if params.kl_coef != 0.0 {
            Some(cpu_bound(async {
                let built = params.model.build(params.seed, &Device::Cpu)?;
                exported.import(&built.vars.data().lock().expect("var map lock"))?;
                Ok::<_, TrainerError>(Reference {
                    model: built.model,
                    vars: built.vars,
                })
            })?)
        } else {
            None
        };
        Ok(PolicyTrainer {
            optimiser: optimiser(&vars, params.lr)?,
            spec: params.model,
            model: built.model,
            tokenizer: built.tokenizer,
            vars,
            ring,
            layout: exported.layout.clone(),
            warm: exported,
            reference,
            grpo,
            lr: params.lr,
            max_policy_age: params.max_policy_age,
        })
    }

    /// Where generators pull the weights from.
    #[endpoint]
    async fn weights(&self) -> WeightSource {
        WeightSource {
            ring: self.ring.handle(),
            layout: self.layout.clone(),
        }
    }

    /// The newest published version.
    #[endpoint]
    async fn version(&self) -> u64 {
        self.ring.version()
    }

    /// Writes the current weights into the folder `dir` on the trainer's
    /// host (see [`crate::model::save_checkpoint`]).
    #[endpoint]
    async fn save(&self, dir: PathBuf) -> Result<CheckpointInfo, TrainerError> {
        let version = self.ring.version();
        Ok(cpu_bound(async {
            save_checkpoint(&dir, &self.spec, &self.vars, version)
        })?)
    }

    /// Starts from the checkpoint in the folder `dir` on the trainer's host
    /// (as [`save`](PolicyTrainerClient::save) writes it): its weights
    /// replace the current ones, are kept for
    /// [`reset`](PolicyTrainerClient::reset) and are published, and the
    /// optimiser starts afresh. The checkpoint must hold the trainer's model.
    #[endpoint]
    async fn load(&mut self, dir: PathBuf) -> Result<(CheckpointInfo, u64), TrainerError> {
        let loaded = cpu_bound(async {
            // The model is compared before the weights are read.
            let info = read_checkpoint_info(&dir)?;
            if info.model != self.spec {
                return Err(TrainerError::OtherModel {
                    dir,
                    checkpoint: Box::new(info.model),
                    trainer: Box::new(self.spec.clone()),
                });
            }
            let weights = read_checkpoint_weights(&dir)?;
            weights.import(&self.vars.data().lock().expect("var map lock"))?;
            let version = self.ring.publish(&weights.bytes)?;
            self.warm = weights;
            self.anchor_reference()?;
            Ok((info, version))
        })?;
        self.optimiser = optimiser(&self.vars, self.lr)?;
        Ok(loaded)
    }

    /// Warms the model up on noisy scripted demonstrations, keeps the result
    /// for [`reset`](PolicyTrainerClient::reset) and publishes it.
    #[endpoint]
    async fn warm_up(&mut self, warm_up: WarmUp) -> Result<(PretrainReport, u64), TrainerError> {
        let config = PretrainConfig {
            episodes_per_kind: warm_up.episodes_per_kind,
            steps: warm_up.steps,
            lr: warm_up.lr,
            drill_rows: warm_up.drill_rows,
            drill_weight: warm_up.drill_weight,
            error_rate: warm_up.error_rate,
            spec_error_rates: warm_up.spec_error_rates,
            spec_noises: warm_up.spec_noises,
            seed: warm_up.seed,
            ..PretrainConfig::default()
        };
        let demos = cpu_bound(demonstrations(&config, &self.tokenizer))?;
        let drills = sum_drills(&config, &self.tokenizer)?;
        let report = cpu_bound(async {
            pretrain(
                &self.model,
                &self.vars,
                self.tokenizer.pad(),
                &demos,
                &drills,
                &config,
            )
        })?;
        let warm = export(&self.vars)?;
        let version = self.ring.publish(&warm.bytes)?;
        self.warm = warm;
        cpu_bound(async { self.anchor_reference() })?;
        self.optimiser = optimiser(&self.vars, self.lr)?;
        Ok((report, version))
    }

    /// Puts the warm weights back (the initial ones if there was no warm-up)
    /// with a fresh optimiser and publishes them as a new version, so that
    /// another run starts where this one did.
    #[endpoint]
    async fn reset(&mut self) -> Result<u64, TrainerError> {
        let version = cpu_bound(async {
            self.warm
                .import(&self.vars.data().lock().expect("var map lock"))?;
            Ok::<_, TrainerError>(self.ring.publish(&self.warm.bytes)?)
        })?;
        self.optimiser = optimiser(&self.vars, self.lr)?;
        Ok(version)
    }

    /// One policy-gradient step on `groups`; groups whose policy is more
    /// than `max_policy_age` versions behind are refused, never trained on.
    #[endpoint]
    async fn train(&mut self, groups: Vec<Group>) -> Result<TrainReport, TrainerError> {
        let current = self.ring.version();
        let (fresh, stale): (Vec<Group>, Vec<Group>) = groups
            .into_iter()
            .partition(|g| current.saturating_sub(g.policy_version()) <= self.max_policy_age);
        let max_gap = fresh
            .iter()
            .map(|g| current.saturating_sub(g.policy_version()))
            .max()
            .unwrap_or(0);
        let samples: Vec<Sample> = fresh
            .iter()
            .flat_map(|g| &g.members)
            .map(|m| Sample {
                trajectory: m.trajectory.clone(),
                reward: m.reward,
                correct: m.correct,
                temperature: m.temperature,
                working: m.working.clone(),
                lookups: m.lookups.clone(),
            })
            .collect();
        let started = Instant::now();
        let reference = self
            .reference
            .as_ref()
            .map(|r| &r.model as &dyn LanguageModel);
        let mut step = cpu_bound(async {
            train_step(
                &self.model,
                reference,
                &mut self.optimiser,
                &samples,
                &self.grpo,
            )
        })?;
        step.seconds = started.elapsed().as_secs_f64();
        let mut report = TrainReport {
            step,
            version: current,
            groups: fresh.len(),
            refused_stale: stale.len(),
            max_gap,
            publish_seconds: 0.0,
            publish_bytes: 0,
        };
        if report.step.trained > 0 {
            // Only a step that changed the weights makes a new version.
            let published = Instant::now();
            let (exported, version) = cpu_bound(async {
                let exported = export(&self.vars)?;
                let version = self.ring.publish(&exported.bytes)?;
                Ok::<_, TrainerError>((exported, version))
            })?;
            report.version = version;
            report.publish_seconds = published.elapsed().as_secs_f64();
            report.publish_bytes = exported.bytes.len() as u64;
        }
        Ok(report)
    }
}

impl PolicyTrainer {
    /// Makes the reference model, if there is one, a copy of the warm
    /// weights.
    fn anchor_reference(&self) -> Result<(), FlatError> {
        if let Some(reference) = &self.reference {
            self.warm
                .import(&reference.vars.data().lock().expect("var map lock"))?;
        }
        Ok(())
    }
}

/// The frozen model of the KL penalty and its weights.
struct Reference {
    model: AnyModel,
    vars: VarMap,
}

fn export(vars: &VarMap) -> Result<FlatWeights, FlatError> {
    FlatWeights::export(&vars.data().lock().expect("var map lock"))
}

fn optimiser(vars: &VarMap, lr: f64) -> Result<Trainer, ModelError> {
    let mut config = TrainerConfig::default();
    config.adamw.lr = lr;
    Ok(Trainer::new(vars.all_vars(), config)?)
}
