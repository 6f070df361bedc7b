//! Layer functions from differentiable operations (candle-nn's fused
//! `rms_norm`, `rope` and `softmax_last_dim` have no backward pass): the
//! norm, the rotary embedding and the attention softmax are this crate's
//! fused kernels with backward passes ([`super::kernels`]), the rest are
//! candle operations.

use candle_core::{DType, Device, Result, Tensor};

pub(crate) use super::kernels::{attention_softmax, rms_norm, rope};

/// SiLU, `x * sigmoid(x)`.
pub(crate) fn silu(x: &Tensor) -> Result<Tensor> {
    x * candle_nn::ops::sigmoid(x)?
}

/// The rotary tables for `positions` positions of heads `dim` wide, `f32`
/// `(positions, dim)` each, the frequencies of the two halves repeated.
/// The rows of the rotary tables `cos` and `sin` at `positions` (one per
/// token of a `(batch, len)` step), shaped `(batch, 1, len, head_dim)` to
/// broadcast over the heads.
pub(crate) fn rotary_at(
    cos: &Tensor,
    sin: &Tensor,
    positions: &Tensor,
    (batch, len, head_dim): (usize, usize, usize),
) -> Result<(Tensor, Tensor)> {
    let positions = positions.flatten_all()?;
    let at = |table: &Tensor| {
        table
            .index_select(&positions, 0)?
            .reshape((batch, 1, len, head_dim))
    };
    Ok((at(cos)?, at(sin)?))
}

pub(crate) fn rotary_tables(
    dim: usize,
    positions: usize,
    theta: f64,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = (0..dim / 2)
        .map(|i| (1.0 / theta.powf(2.0 * i as f64 / dim as f64)) as f32)
        .collect();
    let inv = Tensor::new(inv.as_slice(), device)?;
    let at = Tensor::arange(0u32, positions as u32, device)?.to_dtype(DType::F32)?;
    let freqs = at.unsqueeze(1)?.broadcast_mul(&inv.unsqueeze(0)?)?;
    let freqs = Tensor::cat(&[&freqs, &freqs], 1)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// The gradient of `sum(f(x) * probe)` against central differences.
    fn check(f: impl Fn(&Tensor) -> Result<Tensor>, shape: &[usize]) {
        let device = Device::Cpu;
        let n: usize = shape.iter().product();
        let values: Vec<f64> = (0..n)
            .map(|i| ((i * 7 + 3) % 11) as f64 / 5.0 - 1.0)
            .collect();
        let probe_values: Vec<f64> = (0..n * 4)
            .map(|i| ((i * 5 + 1) % 7) as f64 / 3.0 - 1.0)
            .collect();
        let x = Var::from_vec(values.clone(), shape, &device).unwrap();
        let out = f(x.as_tensor()).unwrap();
        let probe = Tensor::from_vec(
            probe_values[..out.elem_count()].to_vec(),
            out.shape(),
            &device,
        )
        .unwrap();
        let grads = (out * &probe)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let analytic: Vec<f64> = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let eps = 1e-5;
        for i in 0..n {
            let at = |delta: f64| {
                let mut v = values.clone();
                v[i] += delta;
                let t = Tensor::from_vec(v, shape, &device).unwrap();
                (f(&t).unwrap() * &probe)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (numeric - analytic[i]).abs() < 1e-6 * (1.0 + numeric.abs()),
                "element {i}: {numeric} vs {}",
                analytic[i]
            );
        }
    }

    #[test]
    fn every_layer_function_matches_finite_differences() {
        let device = Device::Cpu;
        let weight = Tensor::new(&[0.5f64, -1.5, 2.0, 1.0], &device).unwrap();
        check(|x| rms_norm(x, &weight, 1e-6), &[2, 3, 4]);
        check(silu, &[3, 4]);
        let bias = Tensor::new(&[[0.0f64, -1e9, 0.5, 0.0, -0.25]], &device).unwrap();
        check(|x| attention_softmax(x, &bias, 0.7), &[1, 2, 1, 5]);
        let angles = Tensor::new(&[[0.3f64, 1.1, 0.3, 1.1], [2.0, -0.4, 2.0, -0.4]], &device)
            .unwrap()
            .reshape((1, 1, 2, 4))
            .unwrap();
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        check(|x| rope(x, &cos, &sin), &[1, 2, 2, 4]);
    }
}
