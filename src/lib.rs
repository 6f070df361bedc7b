//! monarch-rs: distributed actors for GPU and ML workloads, in the style of
//! PyTorch Monarch.
//!
//! This facade re-exports the crate family: [`core`] (actors, refs, ports,
//! supervision), [`rdma`] (registered memory and one-sided transfers) and [`rl`]
//! (async reinforcement learning and the Zorplex benchmark).

pub use monarch_core as core;
pub use monarch_rdma as rdma;
pub use monarch_rl as rl;
