//! Async reinforcement learning on monarch-rs.
//!
//! This crate starts with [`zorplex`], the tool-use benchmark that the generator,
//! trainer, replay-buffer and weight-sync actors are trained and measured on;
//! [`train`] holds the training pieces every trainable policy shares
//! (group-relative advantages, PPO-clipped and truncated-importance losses,
//! AdamW with global-norm clipping, weights as one flat buffer) and [`model`]
//! the models, on candle (chosen over burn: it loads GGUF and safetensors
//! weights directly, and its gaps, fused kernels without a backward pass, are
//! closed by CPU kernels of ours with backward passes for the norm, the
//! rotary embedding and the attention softmax, and by its differentiable
//! operations elsewhere): a tiny
//! transformer trained from scratch, SmolLM2 from its GGUF and Qwen2 from a
//! Hugging Face directory, with batched generation over a key-value cache
//! and a [`model::ModelPolicy`] that plays Zorplex and records what it
//! sampled. [`pretrain`] warms a tiny model up on noisy scripted
//! demonstrations and [`grpo`] trains a policy with group-relative RL in one
//! process; [`async_rl`] runs the same training on actors across processes,
//! with generation and training overlapping, its generators a
//! [`service::Service`]: replicas of an actor behind one handle, with
//! health, retries and a job-wide registry. [`model::ModelSpec`] picks the
//! model at run time and [`model::save_checkpoint`] writes a trained policy
//! that `monarch zorplex eval --policy model` scores.
//!
//! GPU: this crate's `cuda` feature turns on candle's, which needs nvcc and
//! the CUDA toolkit at build time, so it is off by default and in CI; the
//! models run on whatever candle `Device` their weights are loaded on.

pub mod async_rl;
pub mod grpo;
pub mod model;
pub mod pretrain;
pub mod replay;
pub mod service;
pub mod train;
pub mod zorplex;
