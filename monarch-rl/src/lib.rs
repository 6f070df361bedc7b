//! Async reinforcement learning on monarch-rs.
//!
//! This crate starts with [`zorplex`], the tool-use benchmark that the generator,
//! trainer, replay-buffer and weight-sync actors are trained and measured on.

pub mod zorplex;
