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
    /// Threads [`Trainer::accumulate_parallel`] computes a step's parts on.
    ///
    /// A small model's operations are too small for candle to spread each
    /// over several cores, so on the CPU a step's micro-batches go faster
    /// side by side, each on a thread of its own; run the process with
    /// [`ONE_THREAD_PER_OPERATION`](crate::model::ONE_THREAD_PER_OPERATION)
    /// in its environment so that candle does not also split each operation
    /// over the same cores (BENCHMARKS.md, "Policy models").
    pub threads: usize,
}

impl Default for TrainerConfig {
    /// A learning rate of 1e-4, no weight decay, clipping at 1, and a
    /// thread for each core (at most four: a step holds only a few
    /// micro-batches).
    fn default() -> Self {
        TrainerConfig {
            adamw: ParamsAdamW {
                lr: 1e-4,
                weight_decay: 0.0,
                ..ParamsAdamW::default()
            },
            max_grad_norm: 1.0,
            threads: std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(MAX_THREADS),
        }
    }
}

/// The most threads [`TrainerConfig::default`] asks for.
const MAX_THREADS: usize = 4;

/// AdamW over a set of variables, stepping on clipped gradients.
///
/// A step may sum the gradients of several losses first (micro-batches of
/// one batch): [`Trainer::accumulate`] each, or all of them at once with
/// [`Trainer::accumulate_parallel`], then [`Trainer::apply`].
pub struct Trainer {
    vars: Vec<Var>,
    optimizer: AdamW,
    max_grad_norm: f64,
    threads: usize,
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
            threads: config.threads,
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
        let grads = loss.backward()?;
        self.add_gradients(grads)
    }

    /// Computes `loss_of` of every part of a step on up to
    /// [`TrainerConfig::threads`] threads side by side, back-propagates
    /// each loss and adds all their gradients to the step being built, in
    /// the order of `parts`; returns what `loss_of` gave beside each loss,
    /// in that order. The gradients are exactly those of
    /// [`accumulate`](Self::accumulate) on each part in turn, whatever the
    /// number of threads.
    pub fn accumulate_parallel<P, R>(
        &mut self,
        parts: &[P],
        loss_of: impl Fn(&P) -> Result<(Tensor, R)> + Sync,
    ) -> Result<Vec<R>>
    where
        P: Sync,
        R: Send,
    {
        let threads = self.threads.clamp(1, parts.len().max(1));
        let loss_of = &loss_of;
        // Thread `t` takes parts t, t + threads, ...: parts come sorted by
        // length, so each thread gets a like share of the work. A part's
        // gradients hold only the variables' (backward drops the rest).
        let shares: Vec<Result<Vec<(usize, R, GradStore)>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let mut done = Vec::new();
                        for (i, part) in parts.iter().enumerate().skip(t).step_by(threads) {
                            let (loss, result) = loss_of(part)?;
                            done.push((i, result, loss.backward()?));
                        }
                        Ok(done)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut done = Vec::with_capacity(parts.len());
        for share in shares {
            done.extend(share?);
        }
        done.sort_by_key(|(i, _, _)| *i);
        let mut results = Vec::with_capacity(done.len());
        for (_, result, grads) in done {
            self.add_gradients(grads)?;
            results.push(result);
        }
        Ok(results)
    }

    /// Adds gradients computed elsewhere to those of the step being built.
    fn add_gradients(&mut self, mut grads: GradStore) -> Result<()> {
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

    /// The threads [`accumulate_parallel`](Self::accumulate_parallel)
    /// computes parts on ([`TrainerConfig::threads`], at least 1).
    pub fn threads(&self) -> usize {
        self.threads.max(1)
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

    /// The losses of `parts` (one weight per part) for a variable `w`:
    /// `part * sum(w^3)`.
    fn cubic(w: &Var, part: &f32) -> Result<(Tensor, f32)> {
        let loss = (w.powf(3.0)?.sum_all()? * f64::from(*part))?;
        Ok((loss, *part))
    }

    #[test]
    fn parallel_accumulation_sums_every_part_whatever_the_threads() {
        let parts = [0.5f32, -1.25, 2.0, 0.125, 3.0];
        // `None`: one `accumulate` call per part, on this thread.
        let grads_with = |threads: Option<usize>| {
            let w = Var::new(&[1.5f32, -0.7, 0.3], &Device::Cpu).unwrap();
            let config = TrainerConfig {
                threads: threads.unwrap_or(1),
                ..TrainerConfig::default()
            };
            let mut trainer = Trainer::new(vec![w.clone()], config).unwrap();
            let results = match threads {
                None => {
                    for part in &parts {
                        trainer.accumulate(&cubic(&w, part).unwrap().0).unwrap();
                    }
                    parts.to_vec()
                }
                Some(_) => trainer
                    .accumulate_parallel(&parts, |part| cubic(&w, part))
                    .unwrap(),
            };
            let pending = trainer.pending.as_ref().unwrap();
            let grad: Vec<f32> = pending.get(w.as_tensor()).unwrap().to_vec1().unwrap();
            (results, grad)
        };
        let (_, sequential) = grads_with(None);
        // d/dw of c * w^3 is 3 c w^2, and the parts' c sum to 4.375.
        let expected: Vec<f32> = [1.5f32, -0.7, 0.3]
            .iter()
            .map(|w| 3.0 * 4.375 * w * w)
            .collect();
        for (got, want) in sequential.iter().zip(&expected) {
            assert!((got - want).abs() < 1e-4, "{sequential:?} vs {expected:?}");
        }
        for threads in [1, 2, 3, 8] {
            let (results, grad) = grads_with(Some(threads));
            assert_eq!(results, parts, "results in the parts' order");
            assert_eq!(grad, sequential, "bit for bit with {threads} threads");
        }
    }
}
