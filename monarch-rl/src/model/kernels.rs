//! Fused CPU kernels, with their backward passes, for the layer functions
//! whose composite candle forms dominate a training step: each composite
//! operation writes a fresh tensor, so the attention softmax alone made a
//! dozen passes over `(B, H, T, T)` per layer, forward and backward.
//!
//! candle-nn's own fused kernels have no backward pass (see `layers`);
//! these are custom operations with one. Contiguous `f32`/`f64`
//! tensors on the CPU take them; anything else takes the composite form,
//! which computes the same function.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Tensor, D};
use num_traits::Float;
use rayon::prelude::*;

/// `softmax(scores * scale + bias)` over the last dimension: `scores`
/// `(B, H, T, S)`, `bias` `(T, S)` or `(B, 1, T, S)` (a causal or padding
/// mask). Differentiable in `scores`; the bias is a constant.
pub(crate) fn attention_softmax(scores: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
    let bias = match bias.rank() {
        2 => bias.unsqueeze(0)?.unsqueeze(0)?,
        _ => bias.clone(),
    };
    if fused(&[scores, &bias]) {
        let op = AttentionSoftmax { scale };
        scores.contiguous()?.apply_op2(&bias.contiguous()?, op)
    } else {
        candle_nn::ops::softmax(&(scores * scale)?.broadcast_add(&bias)?, D::Minus1)
    }
}

/// Rotary position embedding in the "rotate half" layout: `x` `(B, H, T,
/// d)`, `cos` and `sin` `(B, 1, T, d)`. Differentiable in `x`.
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if fused(&[x, cos, sin]) {
        x.contiguous()?.apply_op3(
            &cos.contiguous()?,
            &sin.contiguous()?,
            Rope { transpose: false },
        )
    } else {
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
    }
}

/// RMS normalisation of the last dimension, scaled by `weight`.
/// Differentiable in both.
pub(crate) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(&[x, weight]) {
        x.contiguous()?
            .apply_op2(&weight.contiguous()?, RmsNorm { eps })
    } else {
        let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(mean_square + eps)?.sqrt()?)?
            .broadcast_mul(weight)
    }
}

/// Whether the fused kernels take these tensors: all on the CPU, all of
/// one floating dtype they support.
fn fused(tensors: &[&Tensor]) -> bool {
    let dtype = tensors[0].dtype();
    matches!(dtype, candle_core::DType::F32 | candle_core::DType::F64)
        && tensors
            .iter()
            .all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == dtype)
}

/// The contiguous slice of `storage` under `layout`.
fn slice<'a, T>(data: &'a [T], layout: &Layout, name: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{name}: the input is not contiguous"),
    }
}

/// Evaluates `$body` with each `$v` bound to the contiguous slice of its
/// storage `$s` under layout `$l`, all of one float type, and wraps the
/// `Vec` it returns as `CpuStorage` of that type.
macro_rules! float_storages {
    ($name:expr, ($($s:ident, $l:ident => $v:ident),+), $body:expr) => {
        match ($($s,)+) {
            ($(CpuStorage::F32($v),)+) => {
                $(let $v = slice($v, $l, $name)?;)+
                CpuStorage::F32($body)
            }
            ($(CpuStorage::F64($v),)+) => {
                $(let $v = slice($v, $l, $name)?;)+
                CpuStorage::F64($body)
            }
            _ => candle_core::bail!("{}: f32 or f64 inputs of one dtype only", $name),
        }
    };
}

struct AttentionSoftmax {
    scale: f64,
}

impl CustomOp2 for AttentionSoftmax {
    fn name(&self) -> &'static str {
        "attention-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, heads, len, keys) = l1.shape().dims4()?;
        let (bias_batch, one, bias_len, bias_keys) = l2.shape().dims4()?;
        if keys == 0
            || one != 1
            || bias_len != len
            || bias_keys != keys
            || !(bias_batch == 1 || bias_batch == batch)
        {
            candle_core::bail!(
                "attention-softmax: a bias of {:?} does not fit scores of {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        let rows = RowsOf {
            heads,
            len,
            bias_batch,
        };
        let out = float_storages!(self.name(), (s1, l1 => scores, s2, l2 => bias), {
            softmax_forward(scores, bias, keys, rows, self.scale)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _scores: &Tensor,
        _bias: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad =
            res.apply_op2_no_bwd(&grad_res.contiguous()?, &SoftmaxGrad { scale: self.scale })?;
        Ok((Some(grad), None))
    }
}

/// Where the bias row of a score row is.
#[derive(Clone, Copy)]
struct RowsOf {
    heads: usize,
    len: usize,
    bias_batch: usize,
}

fn softmax_forward<T: Float + Send + Sync>(
    scores: &[T],
    bias: &[T],
    keys: usize,
    rows: RowsOf,
    scale: f64,
) -> Vec<T> {
    by_rows(scores.len(), keys, |row, out| {
        let b = if rows.bias_batch == 1 {
            0
        } else {
            row / (rows.heads * rows.len)
        };
        let at = (b * rows.len + row % rows.len) * keys;
        softmax_row(out, row_of(scores, row, keys), &bias[at..at + keys], scale);
    })
}

/// `out = softmax(scores * scale + bias)`, one row.
fn softmax_row<T: Float>(out: &mut [T], scores: &[T], bias: &[T], scale: f64) {
    let scale = T::from(scale).expect("a float dtype holds the scale");
    let mut max = T::neg_infinity();
    for ((o, &s), &b) in out.iter_mut().zip(scores).zip(bias) {
        *o = s * scale + b;
        max = max.max(*o);
    }
    let mut sum = T::zero();
    for o in out.iter_mut() {
        *o = (*o - max).exp();
        sum = sum + *o;
    }
    for o in out.iter_mut() {
        *o = *o / sum;
    }
}

/// The gradient of `softmax(scores * scale + bias)` in `scores`, from its
/// result `y` and the gradient `g` of the result: `scale * y * (g - y.g)`.
struct SoftmaxGrad {
    scale: f64,
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "attention-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let keys = l1.shape().dims().last().copied().unwrap_or(1).max(1);
        let out = float_storages!(self.name(), (s1, l1 => y, s2, l2 => g), {
            softmax_backward(y, g, keys, self.scale)
        });
        Ok((out, l1.shape().clone()))
    }
}

fn softmax_backward<T: Float + Send + Sync>(y: &[T], g: &[T], keys: usize, scale: f64) -> Vec<T> {
    let scale = T::from(scale).expect("a float dtype holds the scale");
    by_rows(y.len(), keys, |row, out| {
        let (y, g) = (row_of(y, row, keys), row_of(g, row, keys));
        let dot = y.iter().zip(g).fold(T::zero(), |acc, (&y, &g)| acc + y * g);
        for ((o, &y), &g) in out.iter_mut().zip(y).zip(g) {
            *o = scale * y * (g - dot);
        }
    })
}

/// Rotates `x` by the angles of `cos` and `sin`, or applies that linear
/// map's transpose (`transpose`, the backward pass).
struct Rope {
    transpose: bool,
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (batch, heads, len, dim) = l1.shape().dims4()?;
        let table = (batch, 1, len, dim);
        if l2.shape().dims4()? != table || l3.shape().dims4()? != table || dim == 0 || dim % 2 != 0
        {
            candle_core::bail!(
                "rope: tables of {:?} and {:?} do not fit {:?} (an even head width)",
                l2.shape(),
                l3.shape(),
                l1.shape()
            );
        }
        let out = float_storages!(self.name(), (s1, l1 => x, s2, l2 => cos, s3, l3 => sin), {
            rope_rows(x, cos, sin, (heads, len, dim), self.transpose)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad_res.contiguous()?.apply_op3_no_bwd(
            cos,
            sin,
            &Rope {
                transpose: !self.transpose,
            },
        )?;
        Ok((Some(grad), None, None))
    }
}

fn rope_rows<T: Float + Send + Sync>(
    x: &[T],
    cos: &[T],
    sin: &[T],
    (heads, len, dim): (usize, usize, usize),
    transpose: bool,
) -> Vec<T> {
    let half = dim / 2;
    by_rows(x.len(), dim, |row, out| {
        let x = row_of(x, row, dim);
        // The tables have a row per batch element and position.
        let table_row = (row / (heads * len)) * len + row % len;
        let (cos, sin) = (row_of(cos, table_row, dim), row_of(sin, table_row, dim));
        for i in 0..half {
            let (a, b) = (x[i], x[i + half]);
            if transpose {
                out[i] = a * cos[i] + b * sin[i + half];
                out[i + half] = b * cos[i + half] - a * sin[i];
            } else {
                out[i] = a * cos[i] - b * sin[i];
                out[i + half] = b * cos[i + half] + a * sin[i + half];
            }
        }
    })
}

/// `x / rms(x) * weight` over the last dimension.
struct RmsNorm {
    eps: f64,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dim = l1.shape().dims().last().copied().unwrap_or(0);
        if l2.shape().dims() != [dim] || dim == 0 {
            candle_core::bail!(
                "rms-norm: a weight of {:?} does not fit {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        let out = float_storages!(self.name(), (s1, l1 => x, s2, l2 => weight), {
            rms_norm_forward(x, weight, self.eps)
        });
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad_res = grad_res.contiguous()?;
        let grad_x = x.apply_op3_no_bwd(weight, &grad_res, &RmsNormGrad { eps: self.eps })?;
        // d weight = sum over rows of g * x / rms(x).
        let normed = x.apply_op2_no_bwd(&weight.ones_like()?, &RmsNorm { eps: self.eps })?;
        let dim = weight.dim(0)?;
        let grad_weight = (grad_res * normed)?.reshape(((), dim))?.sum(0)?;
        Ok((Some(grad_x), Some(grad_weight)))
    }
}

fn rms_norm_forward<T: Float + Send + Sync>(x: &[T], weight: &[T], eps: f64) -> Vec<T> {
    let dim = weight.len();
    by_rows(x.len(), dim, |row, out| {
        let x = row_of(x, row, dim);
        let r = inverse_rms(x, eps);
        for ((o, &x), &w) in out.iter_mut().zip(x).zip(weight) {
            *o = x * r * w;
        }
    })
}

/// The gradient of [`RmsNorm`] in `x`, from `x`, the weight and the
/// gradient `g` of the result: `r * (g w - x r^2 mean(g w x))`.
struct RmsNormGrad {
    eps: f64,
}

impl CustomOp3 for RmsNormGrad {
    fn name(&self) -> &'static str {
        "rms-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = float_storages!(self.name(), (s1, l1 => x, s2, l2 => weight, s3, l3 => g), {
            rms_norm_backward(x, weight, g, self.eps)
        });
        Ok((out, l1.shape().clone()))
    }
}

fn rms_norm_backward<T: Float + Send + Sync>(x: &[T], weight: &[T], g: &[T], eps: f64) -> Vec<T> {
    let dim = weight.len();
    let n = T::from(dim).expect("a float dtype holds the width");
    by_rows(x.len(), dim, |row, out| {
        let (x, g) = (row_of(x, row, dim), row_of(g, row, dim));
        let r = inverse_rms(x, eps);
        let mean = x
            .iter()
            .zip(g)
            .zip(weight)
            .fold(T::zero(), |acc, ((&x, &g), &w)| acc + g * w * x)
            / n;
        for (((o, &x), &g), &w) in out.iter_mut().zip(x).zip(g).zip(weight) {
            *o = r * (g * w - x * r * r * mean);
        }
    })
}

/// A new buffer of `len` values computed in rows `width` wide:
/// `fill(row, out)` writes row `row`. The rows are spread over rayon's
/// threads when there are several and at least [`PARALLEL_MIN_VALUES`]
/// values; otherwise they are computed on the calling thread, since a
/// thread outside rayon's pool hands the work over and sleeps until it is
/// done, two context switches per call even with one rayon thread.
fn by_rows<T: Float + Send + Sync>(
    len: usize,
    width: usize,
    fill: impl Fn(usize, &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::zero(); len];
    if len >= PARALLEL_MIN_VALUES && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(width)
            .enumerate()
            .for_each(|(row, out)| fill(row, out));
    } else {
        out.chunks_mut(width)
            .enumerate()
            .for_each(|(row, out)| fill(row, out));
    }
    out
}

/// The fewest values [`by_rows`] spreads over threads. Picked, not tuned:
/// the calls that the hand-over slowed (generation, a few hundred values
/// each) lie far below it, and a training step's attention and norms
/// above it (BENCHMARKS.md, "Kernels off rayon's pool").
const PARALLEL_MIN_VALUES: usize = 1 << 15;

/// Row `row` of `values`, rows `width` wide.
fn row_of<T>(values: &[T], row: usize, width: usize) -> &[T] {
    &values[row * width..(row + 1) * width]
}

/// `1 / sqrt(mean(x^2) + eps)` of one row.
fn inverse_rms<T: Float>(x: &[T], eps: f64) -> T {
    let n = T::from(x.len()).expect("a float dtype holds the width");
    let eps = T::from(eps).expect("a float dtype holds eps");
    let mean_square = x.iter().fold(T::zero(), |acc, &v| acc + v * v) / n;
    (mean_square + eps).sqrt().recip()
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Var};

    use super::*;

    /// The fused and composite forms agree, forward and backward, on
    /// tensors that take the fused path (`f32` on the CPU) and on `f64`.
    fn agree(
        fused_form: impl Fn(&Tensor) -> Result<Tensor>,
        composite: impl Fn(&Tensor) -> Result<Tensor>,
        shape: &[usize],
    ) {
        for dtype in [DType::F32, DType::F64] {
            let device = Device::Cpu;
            let n: usize = shape.iter().product();
            let values: Vec<f64> = (0..n)
                .map(|i| ((i * 7 + 3) % 11) as f64 / 5.0 - 1.0)
                .collect();
            let x = Var::from_tensor(
                &Tensor::from_vec(values, shape, &device)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap(),
            )
            .unwrap();
            let outputs: Vec<(Vec<f64>, Vec<f64>)> =
                [&fused_form as &dyn Fn(&Tensor) -> _, &composite]
                    .iter()
                    .map(|f| {
                        let out = f(x.as_tensor()).unwrap();
                        let probe = Tensor::arange(0u32, out.elem_count() as u32, &device)
                            .unwrap()
                            .to_dtype(dtype)
                            .unwrap()
                            .reshape(out.shape())
                            .unwrap()
                            .sin()
                            .unwrap();
                        let grads = (&out * probe)
                            .unwrap()
                            .sum_all()
                            .unwrap()
                            .backward()
                            .unwrap();
                        let flat = |t: &Tensor| {
                            t.to_dtype(DType::F64)
                                .unwrap()
                                .flatten_all()
                                .unwrap()
                                .to_vec1::<f64>()
                                .unwrap()
                        };
                        (flat(&out), flat(grads.get(x.as_tensor()).unwrap()))
                    })
                    .collect();
            let tolerance = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            for (fused_values, composite_values) in [
                (&outputs[0].0, &outputs[1].0),
                (&outputs[0].1, &outputs[1].1),
            ] {
                for (a, b) in fused_values.iter().zip(composite_values) {
                    assert!(
                        (a - b).abs() <= tolerance * (1.0 + b.abs()),
                        "{a} vs {b} ({dtype:?})"
                    );
                }
            }
        }
    }

    #[test]
    fn rows_are_the_same_on_one_thread_and_several_small_or_large() {
        let width = 96;
        let fill = |row: usize, out: &mut [f32]| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = (row * width + i) as f32;
            }
        };
        for len in [width * 3, PARALLEL_MIN_VALUES.next_multiple_of(width) * 2] {
            let expected: Vec<f32> = (0..len).map(|i| i as f32).collect();
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let rows = pool.install(|| by_rows(len, width, fill));
                assert_eq!(rows, expected, "{len} values on {threads} threads");
            }
        }
    }

    #[test]
    fn the_attention_softmax_is_the_composite_one() {
        let device = Device::Cpu;
        for bias_shape in [&[3usize, 5][..], &[2, 1, 3, 5], &[1, 1, 3, 5]] {
            let n: usize = bias_shape.iter().product();
            let bias: Vec<f64> = (0..n)
                .map(|i| if i % 4 == 0 { -1e9 } else { i as f64 / 7.0 })
                .collect();
            let bias = Tensor::from_vec(bias, bias_shape, &device).unwrap();
            let bias_of = |x: &Tensor| bias.to_dtype(x.dtype()).unwrap();
            agree(
                |x| attention_softmax(x, &bias_of(x), 0.3),
                |x| {
                    let bias = bias_of(x);
                    let bias = if bias.rank() == 2 {
                        bias.unsqueeze(0)?.unsqueeze(0)?
                    } else {
                        bias
                    };
                    candle_nn::ops::softmax(&(x * 0.3)?.broadcast_add(&bias)?, D::Minus1)
                },
                &[2, 2, 3, 5],
            );
        }
    }

    #[test]
    fn the_fused_rope_is_the_composite_one() {
        let device = Device::Cpu;
        // Angles whose halves differ: the backward pass is the exact
        // transpose, not the inverse rotation the models' tables allow.
        let angles = Tensor::arange(0u32, 2 * 3 * 4, &device)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .reshape((2, 1, 3, 4))
            .unwrap();
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        let tables = |x: &Tensor| {
            (
                cos.to_dtype(x.dtype()).unwrap(),
                sin.to_dtype(x.dtype()).unwrap(),
            )
        };
        agree(
            |x| {
                let (cos, sin) = tables(x);
                rope(x, &cos, &sin)
            },
            |x| {
                let (cos, sin) = tables(x);
                let half = 2;
                let x1 = x.narrow(D::Minus1, 0, half)?;
                let x2 = x.narrow(D::Minus1, half, half)?;
                let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
                x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
            },
            &[2, 3, 3, 4],
        );
    }

    #[test]
    fn the_fused_rms_norm_is_the_composite_one_in_both_arguments() {
        let device = Device::Cpu;
        let weight = [0.5f64, -1.5, 2.0, 1.0];
        let weight_of = |x: &Tensor| {
            Tensor::new(&weight, &device)
                .unwrap()
                .to_dtype(x.dtype())
                .unwrap()
        };
        let composite = |x: &Tensor, w: &Tensor| {
            let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
            x.broadcast_div(&(mean_square + 1e-6)?.sqrt()?)?
                .broadcast_mul(w)
        };
        agree(
            |x| rms_norm(x, &weight_of(x), 1e-6),
            |x| composite(x, &weight_of(x)),
            &[2, 3, 4],
        );
        // In the weight: the input fixed, the weight the variable.
        let input = Tensor::arange(0u32, 24, &device)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap()
            .cos()
            .unwrap();
        let input_of = |w: &Tensor| input.to_dtype(w.dtype()).unwrap();
        agree(
            |w| rms_norm(&input_of(w), w, 1e-6),
            |w| composite(&input_of(w), w),
            &[4],
        );
    }
}
