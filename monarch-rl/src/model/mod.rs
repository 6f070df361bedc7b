//! Trainable policy models on candle, built from differentiable operations
//! only (see [`crate::train`] for why).

mod tiny;

pub use tiny::{TinyConfig, TinyTransformer};
