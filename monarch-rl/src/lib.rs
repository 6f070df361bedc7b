//! Async reinforcement learning on monarch-rs.
//!
//! This crate starts with [`zorplex`], the tool-use benchmark that the generator,
//! trainer, replay-buffer and weight-sync actors are trained and measured on;
//! [`train`] holds the training pieces every trainable policy shares
//! (group-relative advantages, PPO-clipped and truncated-importance losses,
//! AdamW with global-norm clipping, weights as one flat buffer) and [`model`]
//! the models, on candle (chosen over burn: it loads GGUF and safetensors
//! weights directly, and its gaps, fused kernels without a backward pass, are
//! avoided by building from its differentiable operations).

pub mod model;
pub mod pretrain;
pub mod train;
pub mod zorplex;
