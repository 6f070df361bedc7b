//! AdamW with global-norm gradient clipping: one training step.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

/// Scales the gradients of `vars` in `grads` so that their global L2 norm is
/// at most `max_norm`; returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let mut total = 0.0;
    for var in vars {
        if let Some(grad) = grads.get(var.as_tensor()) {
            total += grad
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = total.sqrt();
    if norm > max_norm && norm > 0.0 {
        let scale = max_norm / norm;
        for var in vars {
            if let Some(grad) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (grad * scale)?);
            }
        }
    }
    Ok(norm)
}

/// A trainer's settings.
#[derive(Clone, Debug)]
pub struct TrainerConfig {
    /// AdamW's settings.
    pub adamw: ParamsAdamW,
    /// The most the gradients' global norm may be after clipping.
    pub max_grad_norm: f64,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        TrainerConfig {
            adamw: ParamsAdamW {
                lr: 1e-4,
                weight_decay: 0.0,
                ..ParamsAdamW::default()
            },
            max_grad_norm: 1.0,
        }
    }
}

/// AdamW over a set of variables, stepping on clipped gradients.
///
/// A step may sum the gradients of several losses first (micro-batches of
/// one batch): [`Trainer::accumulate`] each, then [`Trainer::apply`].
pub struct Trainer {
    vars: Vec<Var>,
    optimizer: AdamW,
    max_grad_norm: f64,
    /// The gradients accumulated since the last step.
    pending: Option<GradStore>,
}

impl Trainer {
    /// A trainer of `vars`.
    pub fn new(vars: Vec<Var>, config: TrainerConfig) -> Result<Self> {
        Ok(Trainer {
            optimizer: AdamW::new(vars.clone(), config.adamw)?,
            vars,
            max_grad_norm: config.max_grad_norm,
            pending: None,
        })
    }

    /// Back-propagates `loss`, clips, and steps; returns the gradient norm
    /// before clipping.
    pub fn step(&mut self, loss: &Tensor) -> Result<f64> {
        self.accumulate(loss)?;
        self.apply()
    }

    /// Back-propagates `loss` and adds its gradients to those of the step
    /// being built; the graph behind `loss` can be dropped afterwards.
    pub fn accumulate(&mut self, loss: &Tensor) -> Result<()> {
        let mut grads = loss.backward()?;
        let Some(pending) = self.pending.as_mut() else {
            self.pending = Some(grads);
            return Ok(());
        };
        for var in &self.vars {
            let Some(grad) = grads.remove(var.as_tensor()) else {
                continue;
            };
            let sum = match pending.remove(var.as_tensor()) {
                Some(earlier) => (earlier + grad)?,
                None => grad,
            };
            pending.insert(var.as_tensor(), sum);
        }
        Ok(())
    }

    /// Clips the accumulated gradients and steps; returns their norm before
    /// clipping. An error if nothing was accumulated since the last step.
    pub fn apply(&mut self) -> Result<f64> {
        let Some(mut grads) = self.pending.take() else {
            return Err(candle_core::Error::Msg(
                "no gradients to apply: accumulate a loss first".into(),
            ));
        };
        let norm = clip_grad_norm(&mut grads, &self.vars, self.max_grad_norm)?;
        self.optimizer.step(&grads)?;
        Ok(norm)
    }

    /// Sets the learning rate of the following steps.
    pub fn set_learning_rate(&mut self, lr: f64) {
        self.optimizer.set_learning_rate(lr);
    }

    /// The variables trained.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn clipping_bounds_the_global_norm() {
        let device = Device::Cpu;
        let a = Var::new(&[3f64, 0.0], &device).unwrap();
        let b = Var::new(&[0f64, 4.0], &device).unwrap();
        // d/dx of x.x is 2x: gradients (6, 0) and (0, 8), norm 10.
        let loss =
            (a.sqr().unwrap().sum_all().unwrap() + b.sqr().unwrap().sum_all().unwrap()).unwrap();
        let mut grads = loss.backward().unwrap();
        let vars = [a.clone(), b.clone()];
        let norm = clip_grad_norm(&mut grads, &vars, 5.0).unwrap();
        assert!((norm - 10.0).abs() < 1e-12);
        let after = clip_grad_norm(&mut grads, &vars, 5.0).unwrap();
        assert!((after - 5.0).abs() < 1e-12);
        let ga: Vec<f64> = grads.get(a.as_tensor()).unwrap().to_vec1().unwrap();
        assert!((ga[0] - 3.0).abs() < 1e-12);
    }
}
