//! The policy-gradient losses: PPO's clipped ratio against the behaviour
//! policy's log-probabilities, or REINFORCE with truncated importance
//! weights, aggregated over the tokens the model produced; optionally with a
//! KL penalty that anchors the policy to a frozen reference.

use candle_core::{DType, Result, Tensor, D};

/// What the loss optimises.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// PPO's clipped surrogate: `min(r A, clip(r, 1 - low, 1 + high) A)`.
    PpoClip,
    /// REINFORCE with truncated importance weights for stale samples:
    /// `min(r, cap) A log p` with the weight held constant.
    TruncatedIs,
}

/// The loss's settings; the defaults are those of the reference
/// recipe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossConfig {
    /// What the loss optimises.
    pub objective: Objective,
    /// The ratio's lower clip: `1 - clip_low`.
    pub clip_low: f64,
    /// The ratio's upper clip: `1 + clip_high`.
    pub clip_high: f64,
    /// The cap of truncated importance weights.
    pub is_cap: f64,
    /// The weight of the KL penalty towards the reference policy (GRPO's
    /// beta); 0 turns it off. Per trained token it is the unbiased,
    /// non-negative estimator `exp(d) - d - 1` with `d = log p_ref - log p`.
    pub kl_coef: f64,
    /// The temperature the samples were drawn at: the policy trained is
    /// the model's distribution at this temperature, so [`policy_loss`]
    /// divides the logits by it before taking log-probabilities (the
    /// reference's too, where there is one), as the sampler did for the
    /// behaviour log-probabilities it recorded. [`crate::grpo::train_step`]
    /// sets it from its samples.
    pub temperature: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            objective: Objective::PpoClip,
            clip_low: 0.2,
            clip_high: 0.28,
            is_cap: 2.0,
            kl_coef: 0.0,
            temperature: 1.0,
        }
    }
}

/// One batch of sequences to train on, `B` sequences of `T` positions.
pub struct Batch<'a> {
    /// The model's logits for the next token at each position, `(B, T, V)`.
    pub logits: &'a Tensor,
    /// The token that came next at each position, `(B, T)`, `u32`.
    pub targets: &'a Tensor,
    /// 1 where the model produced the token (and it trains), 0 for prompts,
    /// tool results and padding, `(B, T)`.
    pub mask: &'a Tensor,
    /// The behaviour policy's log-probability of each target, `(B, T)`.
    pub behaviour_logp: &'a Tensor,
    /// Each sequence's advantage, `(B,)`, or each target's, `(B, T)`.
    pub advantages: &'a Tensor,
    /// The frozen reference policy's log-probability of each target at the
    /// loss's temperature, `(B, T)`, when there is one: the KL penalty and
    /// [`LossStats::kl`] are computed from it.
    pub reference_logp: Option<&'a Tensor>,
}

/// What a loss computation saw, for logs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossStats {
    /// The loss.
    pub loss: f64,
    /// The mean ratio of current to behaviour probability over trained tokens.
    pub mean_ratio: f64,
    /// The fraction of trained tokens whose ratio lay outside the clip range.
    pub clip_fraction: f64,
    /// The effective sample size of the importance weights, as a fraction of
    /// the trained tokens: `(sum w)^2 / (n sum w^2)`.
    pub effective_sample_size: f64,
    /// The mean squared ratio over trained tokens (what the effective
    /// sample size of several parts is computed from).
    pub mean_square_ratio: f64,
    /// The mean KL estimate to the reference policy over trained tokens
    /// (0 without a reference).
    pub kl: f64,
    /// How many tokens trained.
    pub tokens: f64,
}

impl LossStats {
    /// The stats of one batch from those of its parts, each a token-level
    /// mean over its own tokens: the means weighted by tokens, the loss as
    /// that of the whole batch (each part's loss scaled by its share of the
    /// tokens, see [`policy_loss`]).
    pub fn merge(parts: &[LossStats]) -> LossStats {
        let tokens: f64 = parts.iter().map(|p| p.tokens).sum();
        let denominator = tokens.max(1.0);
        let mean = |field: fn(&LossStats) -> f64| {
            parts.iter().map(|p| field(p) * p.tokens).sum::<f64>() / denominator
        };
        let mean_ratio = mean(|p| p.mean_ratio);
        let mean_square_ratio = mean(|p| p.mean_square_ratio);
        LossStats {
            loss: mean(|p| p.loss),
            mean_ratio,
            clip_fraction: mean(|p| p.clip_fraction),
            kl: mean(|p| p.kl),
            effective_sample_size: if mean_square_ratio > 0.0 {
                mean_ratio * mean_ratio / mean_square_ratio
            } else {
                0.0
            },
            mean_square_ratio,
            tokens,
        }
    }
}

/// `logits` divided by `temperature` (as they are where it is 1 or not
/// positive).
pub fn tempered(logits: &Tensor, temperature: f64) -> Result<Tensor> {
    if temperature > 0.0 && temperature != 1.0 {
        logits / temperature
    } else {
        Ok(logits.clone())
    }
}

/// The log-probability under `logits` `(B, T, V)` of each of `targets`
/// `(B, T)`: `(B, T)`. Differentiable; what a generator records as the
/// behaviour log-probs of the tokens it sampled.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    candle_nn::ops::log_softmax(logits, D::Minus1)?
        .gather(&targets.contiguous()?.unsqueeze(D::Minus1)?, D::Minus1)?
        .squeeze(D::Minus1)
}

/// The loss of `batch` (token-level mean over trained tokens), to call
/// `backward` on, and its statistics.
///
/// A positive [`LossConfig::kl_coef`] needs the batch's
/// [`reference_logp`](Batch::reference_logp).
pub fn policy_loss(batch: &Batch<'_>, config: &LossConfig) -> Result<(Tensor, LossStats)> {
    let dtype = batch.logits.dtype();
    let mask = batch.mask.to_dtype(dtype)?;
    let logp = token_logprobs(&tempered(batch.logits, config.temperature)?, batch.targets)?;
    let behaviour = batch.behaviour_logp.to_dtype(dtype)?;
    let ratio = (&logp - &behaviour)?.exp()?;
    let advantages = batch.advantages.to_dtype(dtype)?;
    let advantages = match advantages.rank() {
        1 => advantages.unsqueeze(1)?.broadcast_as(ratio.shape())?,
        _ => advantages,
    };
    let fixed_ratio = ratio.detach();
    let (low, high) = (1.0 - config.clip_low, 1.0 + config.clip_high);
    let objective = match config.objective {
        Objective::PpoClip => {
            let unclipped = (&ratio * &advantages)?;
            let clipped = (fixed_ratio.clamp(low, high)? * &advantages)?;
            // Where the clipped term is the smaller, it is constant in the
            // parameters: PPO's gradient flows through the unclipped one only.
            let through = unclipped.detach().le(&clipped)?.to_dtype(dtype)?;
            let held = (through.ones_like()? - &through)?;
            ((&through * &unclipped)? + (&held * &clipped)?)?
        }
        Objective::TruncatedIs => {
            let weight = fixed_ratio.clamp(0.0, config.is_cap)?;
            ((weight * &advantages)? * &logp)?
        }
    };
    let tokens = mask.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    let denominator = tokens.max(1.0);
    let kl = match batch.reference_logp {
        Some(reference) => {
            let d = (reference.to_dtype(dtype)?.detach() - &logp)?;
            Some(((d.exp()? - &d)? - 1.0)?)
        }
        None if config.kl_coef != 0.0 => {
            return Err(candle_core::Error::Msg(
                "a KL penalty (kl_coef > 0) needs the reference policy's log-probabilities".into(),
            ))
        }
        None => None,
    };
    let penalised = match &kl {
        Some(kl) if config.kl_coef != 0.0 => (&objective - (kl * config.kl_coef)?)?,
        _ => objective,
    };
    let loss = ((&penalised * &mask)?.sum_all()?.neg()? / denominator)?;

    let masked = |t: &Tensor| -> Result<f64> {
        (t * &mask)?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()
    };
    let outside = fixed_ratio
        .lt(low)?
        .to_dtype(dtype)?
        .add(&fixed_ratio.gt(high)?.to_dtype(dtype)?)?;
    let sum_w = masked(&fixed_ratio)?;
    let sum_w2 = masked(&fixed_ratio.sqr()?)?;
    let stats = LossStats {
        loss: loss.to_dtype(DType::F64)?.to_scalar::<f64>()?,
        mean_ratio: sum_w / denominator,
        clip_fraction: masked(&outside)? / denominator,
        effective_sample_size: if sum_w2 > 0.0 {
            sum_w * sum_w / (denominator * sum_w2)
        } else {
            0.0
        },
        mean_square_ratio: sum_w2 / denominator,
        kl: match &kl {
            Some(kl) => masked(&kl.detach())? / denominator,
            None => 0.0,
        },
        tokens,
    };
    Ok((loss, stats))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    fn batch_parts(device: &Device) -> (Var, Tensor, Tensor, Tensor, Tensor) {
        let logits = Var::from_tensor(
            &Tensor::new(
                &[
                    [[0.3f64, -0.2, 0.9], [1.1, 0.0, -0.5]],
                    [[-0.7, 0.4, 0.2], [0.05, 0.6, -1.2]],
                ],
                device,
            )
            .unwrap(),
        )
        .unwrap();
        let targets = Tensor::new(&[[2u32, 0], [1, 1]], device).unwrap();
        let mask = Tensor::new(&[[1f64, 1.0], [0.0, 1.0]], device).unwrap();
        // Behaviour close to the current policy, one token far from it so
        // that its ratio is clipped.
        let behaviour = Tensor::new(&[[-0.6f64, -0.5], [-1.0, -1.9]], device).unwrap();
        let advantages = Tensor::new(&[1.5f64, -0.8], device).unwrap();
        (logits, targets, mask, behaviour, advantages)
    }

    /// A reference policy's log-probabilities, apart from the behaviour's.
    fn reference_logp(device: &Device) -> Tensor {
        Tensor::new(&[[-0.9f64, -1.4], [-0.3, -0.7]], device).unwrap()
    }

    /// The analytic gradient of each objective, with and without the KL
    /// penalty, matches central finite differences: of the loss itself for
    /// PPO; for truncated importance sampling, of the surrogate with the
    /// weights held at their value (the weights are constants of that
    /// objective by design).
    #[test]
    fn gradients_match_finite_differences() {
        let device = Device::Cpu;
        let cases = [
            (Objective::PpoClip, 0.0),
            (Objective::TruncatedIs, 0.0),
            (Objective::PpoClip, 0.3),
            (Objective::TruncatedIs, 0.3),
        ];
        for (objective, kl_coef) in cases {
            let (logits, targets, mask, behaviour, advantages) = batch_parts(&device);
            let reference = reference_logp(&device);
            let reference_logp = (kl_coef > 0.0).then_some(&reference);
            let config = LossConfig {
                objective,
                kl_coef,
                ..LossConfig::default()
            };
            let base: Vec<f64> = logits.flatten_all().unwrap().to_vec1().unwrap();
            let logp_of = |values: &Tensor| token_logprobs(values, &targets).unwrap();
            let held_weight = (logp_of(logits.as_tensor()) - &behaviour)
                .unwrap()
                .exp()
                .unwrap()
                .clamp(0.0, config.is_cap)
                .unwrap();
            let loss_at = |values: &Tensor| {
                let batch = Batch {
                    logits: values,
                    targets: &targets,
                    mask: &mask,
                    behaviour_logp: &behaviour,
                    advantages: &advantages,
                    reference_logp,
                };
                policy_loss(&batch, &config).unwrap()
            };
            let value_at = |values: &Tensor| -> f64 {
                match objective {
                    Objective::PpoClip => loss_at(values).1.loss,
                    Objective::TruncatedIs => {
                        let a = advantages
                            .unsqueeze(1)
                            .unwrap()
                            .broadcast_as((2, 2))
                            .unwrap();
                        let logp = logp_of(values);
                        let terms = ((&held_weight * a).unwrap() * &logp).unwrap();
                        let sum = (terms * &mask).unwrap().sum_all().unwrap();
                        let d: Vec<Vec<f64>> = (&reference - &logp).unwrap().to_vec2().unwrap();
                        let m: Vec<Vec<f64>> = mask.to_vec2().unwrap();
                        let kl: f64 = (0..2)
                            .flat_map(|b| (0..2).map(move |t| (b, t)))
                            .map(|(b, t)| m[b][t] * (d[b][t].exp() - d[b][t] - 1.0))
                            .sum();
                        (-sum.to_scalar::<f64>().unwrap() + kl_coef * kl) / 3.0
                    }
                }
            };
            let (loss, stats) = loss_at(logits.as_tensor());
            assert!(stats.tokens == 3.0 && stats.mean_ratio > 0.0);
            assert_eq!(stats.kl > 0.0, kl_coef > 0.0, "{stats:?}");
            assert!((stats.loss - value_at(logits.as_tensor())).abs() < 1e-12);
            let grads = loss.backward().unwrap();
            let analytic: Vec<f64> = grads
                .get(logits.as_tensor())
                .expect("the logits have a gradient")
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let h = 1e-6;
            for (i, want) in analytic.iter().enumerate() {
                let shifted = |delta: f64| {
                    let mut values = base.clone();
                    values[i] += delta;
                    Tensor::from_vec(values, logits.shape(), &device).unwrap()
                };
                let numeric = (value_at(&shifted(h)) - value_at(&shifted(-h))) / (2.0 * h);
                assert!(
                    (numeric - want).abs() < 1e-6,
                    "{objective:?}, kl {kl_coef}, logit {i}: analytic {want}, numeric {numeric}"
                );
            }
        }
    }

    #[test]
    fn clipped_tokens_are_counted_and_stop_their_gradient() {
        let device = Device::Cpu;
        let (logits, targets, mask, _, advantages) = batch_parts(&device);
        // A behaviour far below the current policy: every ratio is above the
        // clip, with positive advantage for sequence 0.
        let behaviour = Tensor::new(&[[-9f64, -9.0], [-9.0, -9.0]], &device).unwrap();
        let batch = Batch {
            logits: logits.as_tensor(),
            targets: &targets,
            mask: &mask,
            behaviour_logp: &behaviour,
            advantages: &advantages,
            reference_logp: None,
        };
        let (loss, stats) = policy_loss(&batch, &LossConfig::default()).unwrap();
        assert_eq!(stats.clip_fraction, 1.0);
        let grads = loss.backward().unwrap();
        let grad: Vec<f64> = grads
            .get(logits.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        // Sequence 0 (positive advantage, ratio above 1 + high) is clipped:
        // no gradient; sequence 1's negative advantage keeps the unclipped
        // term, the smaller one.
        assert!(grad[..6].iter().all(|g| *g == 0.0));
        assert!(grad[9..].iter().any(|g| *g != 0.0));
    }

    #[test]
    fn the_kl_penalty_is_zero_at_the_reference_and_needs_one() {
        let device = Device::Cpu;
        let (logits, targets, mask, behaviour, advantages) = batch_parts(&device);
        let current = token_logprobs(logits.as_tensor(), &targets).unwrap();
        let plain = LossConfig::default();
        let penalised = LossConfig {
            kl_coef: 0.5,
            ..plain
        };
        let batch = |reference_logp| Batch {
            logits: logits.as_tensor(),
            targets: &targets,
            mask: &mask,
            behaviour_logp: &behaviour,
            advantages: &advantages,
            reference_logp,
        };
        let (_, without) = policy_loss(&batch(None), &plain).unwrap();
        // At the reference the penalty and its estimate vanish.
        let (_, at_reference) = policy_loss(&batch(Some(&current)), &penalised).unwrap();
        assert!(at_reference.kl.abs() < 1e-12, "{at_reference:?}");
        assert!((at_reference.loss - without.loss).abs() < 1e-12);
        // Away from it the loss grows by kl_coef times the mean estimate.
        let reference = reference_logp(&device);
        let (_, away) = policy_loss(&batch(Some(&reference)), &penalised).unwrap();
        assert!(away.kl > 0.0);
        assert!((away.loss - without.loss - 0.5 * away.kl).abs() < 1e-12);
        // A penalty without a reference is refused, not silently dropped.
        let error = policy_loss(&batch(None), &penalised).unwrap_err();
        assert!(error.to_string().contains("reference"), "{error}");
    }

    #[test]
    fn per_token_advantages_weigh_each_target() {
        let device = Device::Cpu;
        let (logits, targets, mask, behaviour, advantages) = batch_parts(&device);
        let config = LossConfig::default();
        let loss = |advantages: &Tensor| {
            let batch = Batch {
                logits: logits.as_tensor(),
                targets: &targets,
                mask: &mask,
                behaviour_logp: &behaviour,
                advantages,
                reference_logp: None,
            };
            policy_loss(&batch, &config).unwrap().1.loss
        };
        // The same advantage at every target is the sequence's.
        let per_token = advantages
            .unsqueeze(1)
            .unwrap()
            .broadcast_as(targets.shape())
            .unwrap()
            .contiguous()
            .unwrap();
        assert!((loss(&advantages) - loss(&per_token)).abs() < 1e-12);
        // Raising one trained target's advantage moves the loss by its term.
        let mut raised = per_token.to_vec2::<f64>().unwrap();
        let (row, col) = (0..raised.len())
            .flat_map(|r| (0..raised[r].len()).map(move |c| (r, c)))
            .find(|&(r, c)| mask.to_vec2::<f64>().unwrap()[r][c] == 1.0)
            .unwrap();
        raised[row][col] += 1.0;
        let raised = Tensor::new(raised, &device).unwrap();
        assert!(loss(&raised) < loss(&per_token));
    }
}
