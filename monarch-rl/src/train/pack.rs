//! Token sequences of different lengths packed into one right-padded batch
//! of inputs and next-token targets.

use candle_core::{Device, Result, Tensor};

/// A batch of `B` sequences of `T` positions: position `t` of a row reads
/// `inputs[t]` and is scored on `targets[t]`, the token after it.
#[derive(Clone, Debug)]
pub struct Packed {
    /// `(B, T)` `u32`.
    pub inputs: Tensor,
    /// `(B, T)` `u32`.
    pub targets: Tensor,
    /// 1 where the target trains, 0 for context and padding, `(B, T)` `f32`.
    pub mask: Tensor,
    /// The behaviour log-probability of each target (0 where it does not
    /// train), `(B, T)` `f32`.
    pub behaviour_logp: Tensor,
}

/// One sequence to pack: its tokens, which of them train, and their
/// behaviour log-probabilities (all the same length).
#[derive(Clone, Copy, Debug)]
pub struct Sequence<'a> {
    /// The tokens.
    pub tokens: &'a [u32],
    /// Whether each token is a target that trains.
    pub mask: &'a [bool],
    /// The behaviour log-probability of each token (ignored where `mask` is
    /// false; may be empty for supervised training).
    pub behaviour_logp: &'a [f32],
}

/// Packs `sequences` (each at least two tokens), padding on the right with
/// `pad`.
pub fn pack(sequences: &[Sequence<'_>], pad: u32, device: &Device) -> Result<Packed> {
    let len = sequences
        .iter()
        .map(|s| s.tokens.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    if len == 0 {
        return Err(candle_core::Error::Msg(
            "nothing to pack: every sequence is shorter than two tokens".into(),
        ));
    }
    let rows = sequences.len();
    let mut inputs = vec![pad; rows * len];
    let mut targets = vec![pad; rows * len];
    let mut mask = vec![0f32; rows * len];
    let mut behaviour = vec![0f32; rows * len];
    for (row, s) in sequences.iter().enumerate() {
        let n = s.tokens.len().saturating_sub(1);
        let at = row * len;
        inputs[at..at + n].copy_from_slice(&s.tokens[..n]);
        targets[at..at + n].copy_from_slice(&s.tokens[1..]);
        for t in 0..n {
            if s.mask[t + 1] {
                mask[at + t] = 1.0;
                behaviour[at + t] = s.behaviour_logp.get(t + 1).copied().unwrap_or(0.0);
            }
        }
    }
    Ok(Packed {
        inputs: Tensor::from_vec(inputs, (rows, len), device)?,
        targets: Tensor::from_vec(targets, (rows, len), device)?,
        mask: Tensor::from_vec(mask, (rows, len), device)?,
        behaviour_logp: Tensor::from_vec(behaviour, (rows, len), device)?,
    })
}

/// How many of a sequence's targets train under `mask` (its tokens' mask):
/// the targets are the tokens after the first, as [`pack`] shifts them.
pub fn trained_targets(mask: &[bool]) -> usize {
    mask.iter().skip(1).filter(|&&m| m).count()
}

/// Splits `sorted` (items ascending by `len`) into consecutive runs whose
/// padded size, rows times the longest row, stays within `tokens` (a row
/// longer than that is a run of its own): the micro-batches of one step.
///
/// ```
/// use monarch_rl::train::micro_batches;
///
/// let lens = [2, 3, 3, 4, 9];
/// let runs: Vec<&[usize]> = micro_batches(&[0, 1, 2, 3, 4], 9, |i| lens[i]).collect();
/// assert_eq!(runs, [&[0, 1, 2][..], &[3], &[4]]);
/// ```
pub fn micro_batches(
    sorted: &[usize],
    tokens: usize,
    len: impl Fn(usize) -> usize,
) -> impl Iterator<Item = &[usize]> {
    let mut rest = sorted;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut take = 1;
        while take < rest.len() && (take + 1).saturating_mul(len(rest[take])) <= tokens {
            take += 1;
        }
        let (run, tail) = rest.split_at(take);
        rest = tail;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_batches_keep_their_padded_size_within_the_budget() {
        let lens = [2usize, 3, 3, 4, 9, 20];
        let order: Vec<usize> = (0..lens.len()).collect();
        let runs: Vec<&[usize]> = micro_batches(&order, 9, |i| lens[i]).collect();
        assert_eq!(runs, vec![&[0, 1, 2][..], &[3][..], &[4][..], &[5][..]]);
        assert_eq!(micro_batches(&[], 9, |i| lens[i]).count(), 0);
    }

    /// The first token is never a target, so its mask does not count.
    #[test]
    fn trained_targets_skip_the_first_token() {
        assert_eq!(trained_targets(&[true, false, true, true]), 2);
        assert_eq!(trained_targets(&[true]), 0);
        assert_eq!(trained_targets(&[]), 0);
    }

    #[test]
    fn targets_are_shifted_and_padding_never_trains() {
        let a = Sequence {
            tokens: &[5, 6, 7],
            mask: &[false, true, true],
            behaviour_logp: &[0.0, -1.0, -2.0],
        };
        let b = Sequence {
            tokens: &[8, 9],
            mask: &[false, true],
            behaviour_logp: &[0.0, -3.0],
        };
        let packed = pack(&[a, b], 0, &Device::Cpu).unwrap();
        assert_eq!(packed.inputs.to_vec2::<u32>().unwrap(), [[5, 6], [8, 0]]);
        assert_eq!(packed.targets.to_vec2::<u32>().unwrap(), [[6, 7], [9, 0]]);
        assert_eq!(
            packed.mask.to_vec2::<f32>().unwrap(),
            [[1.0, 1.0], [1.0, 0.0]]
        );
        assert_eq!(
            packed.behaviour_logp.to_vec2::<f32>().unwrap(),
            [[-1.0, -2.0], [-3.0, 0.0]]
        );
        assert!(pack(
            &[Sequence {
                tokens: &[1],
                mask: &[true],
                behaviour_logp: &[]
            }],
            0,
            &Device::Cpu
        )
        .is_err());
    }
}
