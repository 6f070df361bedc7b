//! Async RL on actors: [`Generator`]s in processes of their own (a
//! [`GeneratorPool`], which is a [`crate::service::Service`]) play Zorplex
//! groups with the newest weights they can pull, a [`PolicyTrainer`] trains
//! on whole groups no older than the staleness bound and publishes every
//! version into a ring of registered memory, and [`run_loop`] drives both
//! in `sync` or `async` mode, surviving a dead generator. Both actors hold
//! the model a [`crate::model::ModelSpec`] names: the tiny transformer,
//! SmolLM2 or Qwen2.
//!
//! The replay buffer ([`crate::replay::ReplayBuffer`]) lives in the driver's
//! process, beside the loop that fills and drains it.

mod driver;
mod generator;
mod pool;
mod trainer;
mod weights;

pub use driver::{
    evaluate, run_loop, weighted_kinds, LoopConfig, LoopError, LoopReport, Mode, PoolEvent,
    StepMetrics,
};
pub use generator::{
    Generator, GeneratorClient, GeneratorError, GeneratorMeshClient, GeneratorParams, GroupRequest,
    GroupResult,
};
pub use pool::{kill_generator, spawn_generators, GeneratorPool, KillError, GENERATORS};
pub use trainer::{
    PolicyTrainer, PolicyTrainerClient, PolicyTrainerMeshClient, TrainReport, TrainerError,
    TrainerParams, WarmUp,
};
pub use weights::{SyncError, SyncRecord, WeightSource, WeightSync};
