//! What one forward step of a model sees: the new tokens, their positions,
//! the attention bias, and the keys and values of the tokens before them.

use candle_core::{Device, Result, Tensor};

/// The input of one forward step over `B` rows of `T` new tokens.
#[derive(Clone, Debug)]
pub struct Step {
    /// The new tokens, `(B, T)` `u32`.
    pub tokens: Tensor,
    /// Each token's position in its row, `(B, T)` `u32` (rows padded on the
    /// left start later).
    pub positions: Tensor,
    /// Added to the attention scores: 0 where a new token may attend to a
    /// key, a large negative number where it may not, `(B, 1, T, past + T)`.
    pub bias: Tensor,
    /// Compute the logits of the last position only (what generation needs).
    pub last_only: bool,
}

impl Step {
    /// `tokens` `(B, T)` following `past` cached tokens in every row, each
    /// attending to everything before it.
    pub fn causal(tokens: &Tensor, past: usize) -> Result<Step> {
        let (batch, len) = tokens.dims2()?;
        let device = tokens.device();
        let positions = Tensor::arange(past as u32, (past + len) as u32, device)?
            .unsqueeze(0)?
            .repeat((batch, 1))?;
        let bias = causal_bias(len, past, device)?
            .unsqueeze(0)?
            .unsqueeze(0)?
            .repeat((batch, 1, 1, 1))?;
        Ok(Step {
            tokens: tokens.clone(),
            positions,
            bias,
            last_only: false,
        })
    }
}

/// The bias of `len` new tokens after `past` cached ones: `(len, past + len)`.
pub(crate) fn causal_bias(len: usize, past: usize, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = (0..len)
        .flat_map(|i| (0..past + len).map(move |j| if j > past + i { MASKED } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (len, past + len), device)
}

/// The bias of a key a token may not attend to: finite, so a row that may
/// attend to nothing (a padding position) averages instead of becoming NaN.
pub(crate) const MASKED: f32 = -1e9;

/// The keys and values of every layer for the tokens seen so far,
/// `(B, kv_heads, len, head_dim)` each.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for a model of `layers` layers.
    pub fn new(layers: usize) -> Self {
        KvCache {
            layers: vec![None; layers],
        }
    }

    /// Tokens cached per row.
    pub fn len(&self) -> usize {
        match self.layers.first() {
            Some(Some((k, _))) => k.dim(2).unwrap_or(0),
            _ => 0,
        }
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a step's keys and values to `layer` and returns all of them.
    ///
    /// The cache is for generation: what it keeps is detached from the
    /// gradient graph, so the activations of earlier steps are not kept alive.
    pub fn append(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = (k.detach(), v.detach());
        let slot = &mut self.layers[layer];
        let (k, v) = match slot.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        *slot = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    /// Keeps the first `len` tokens of every row.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        for (k, v) in self.layers.iter_mut().flatten() {
            if len < k.dim(2)? {
                *k = k.narrow(2, 0, len)?;
                *v = v.narrow(2, 0, len)?;
            }
        }
        if len == 0 {
            self.layers.iter_mut().for_each(|slot| *slot = None);
        }
        Ok(())
    }
}

/// `(B, T)` `u32` of `rows`, each left-padded with `pad` to the longest.
pub(crate) fn left_padded(
    rows: &[&[u32]],
    pad: u32,
    device: &Device,
) -> Result<(Tensor, Vec<usize>)> {
    let len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let pads: Vec<usize> = rows.iter().map(|r| len - r.len()).collect();
    let data: Vec<u32> = rows
        .iter()
        .zip(&pads)
        .flat_map(|(row, &p)| std::iter::repeat_n(pad, p).chain(row.iter().copied()))
        .collect();
    Ok((Tensor::from_vec(data, (rows.len(), len), device)?, pads))
}

/// A step of `len` new tokens per row after `past` cached positions, where
/// row `b`'s first `pads[b]` positions are padding: positions count from the
/// first real token and padding is never attended to.
pub(crate) fn padded_step(tokens: &Tensor, past: usize, pads: &[usize]) -> Result<Step> {
    let (batch, len) = tokens.dims2()?;
    let device = tokens.device();
    let mut positions = Vec::with_capacity(batch * len);
    let mut bias = Vec::with_capacity(batch * len * (past + len));
    for &pad in pads {
        positions.extend((past..past + len).map(|t| t.saturating_sub(pad) as u32));
        for i in 0..len {
            bias.extend(
                (0..past + len).map(|j| if j > past + i || j < pad { MASKED } else { 0.0 }),
            );
        }
    }
    Ok(Step {
        tokens: tokens.clone(),
        positions: Tensor::from_vec(positions, (batch, len), device)?,
        bias: Tensor::from_vec(bias, (batch, 1, len, past + len), device)?,
        last_only: true,
    })
}
