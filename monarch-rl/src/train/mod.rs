//! Training pieces every trainable policy shares, on candle: group-relative
//! advantages, the policy-gradient losses, an AdamW step with global-norm
//! gradient clipping, and the weights as one flat buffer.
//!
//! Only differentiable operations are used here: candle-nn's fused kernels
//! (`softmax_last_dim`, `rms_norm`, `rope`, ...) have no backward pass and
//! leave the parameters before them without a gradient, which the tests of
//! this module would catch.

mod advantage;
mod flat;
mod loss;
mod optim;
mod pack;

pub use advantage::{group_advantages, part_advantages, Advantages, PartCredit, TokenAdvantages};
pub use flat::{FlatError, FlatWeights, TensorLayout};
pub use loss::{policy_loss, tempered, token_logprobs, Batch, LossConfig, LossStats, Objective};
pub use optim::{clip_grad_norm, Trainer, TrainerConfig};
pub use pack::{micro_batches, pack, trained_targets, Packed, Sequence};
