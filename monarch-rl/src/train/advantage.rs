//! GRPO-style advantages: each sequence's reward against the others of its
//! group (the completions of one prompt), and per-token additions for the
//! parts of a sequence checked on their own.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Per-sequence advantages, and which sequences train: those of a group
/// whose rewards were all equal carry no signal and are dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct Advantages {
    /// One per sequence, 0 for dropped ones.
    pub values: Vec<f32>,
    /// Whether each sequence trains.
    pub keep: Vec<bool>,
}

/// The advantages of `rewards`, in consecutive groups of `group` sequences:
/// reward minus the group's mean, divided by the group's standard deviation
/// when `normalize_std` is set.
///
/// ```
/// use monarch_rl::train::group_advantages;
///
/// let a = group_advantages(&[1.0, 0.0, 0.5, 0.5], 2, false).unwrap();
/// assert_eq!(a.values, vec![0.5, -0.5, 0.0, 0.0]);
/// assert_eq!(a.keep, vec![true, true, false, false]);
/// ```
pub fn group_advantages(
    rewards: &[f32],
    group: usize,
    normalize_std: bool,
) -> Result<Advantages, String> {
    if group == 0 || rewards.len() % group != 0 {
        return Err(format!(
            "{} rewards do not split into groups of {group}",
            rewards.len()
        ));
    }
    let mut values = Vec::with_capacity(rewards.len());
    let mut keep = Vec::with_capacity(rewards.len());
    for rewards in rewards.chunks(group) {
        let n = rewards.len() as f32;
        let mean = rewards.iter().sum::<f32>() / n;
        let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f32>() / n;
        let std = var.sqrt();
        let signal = rewards.iter().any(|r| (r - mean).abs() > f32::EPSILON);
        for r in rewards {
            let centred = r - mean;
            values.push(match (signal, normalize_std) {
                (false, _) => 0.0,
                (true, true) => centred / (std + 1e-6),
                (true, false) => centred,
            });
            keep.push(signal);
        }
    }
    Ok(Advantages { values, keep })
}

/// A part of a sequence that was checked right or wrong on its own (one
/// column of a worked sum, say), and the tokens it covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartCredit {
    /// Which part: parts of the same index are compared across a group.
    pub part: usize,
    /// The sequence's tokens it covers.
    pub tokens: Range<usize>,
    /// Whether it was right.
    pub right: bool,
}

/// Additions to one sequence's advantage at some of its tokens: each range
/// of tokens and what it adds there.
pub type TokenAdvantages = Vec<(Range<usize>, f32)>;

/// Per-token additions to the sequence advantages, from the checked parts
/// of each sequence (`credits`, one list per sequence, in consecutive
/// groups of `group`): a part's tokens get `weight` times 1 if it was right
/// (0 if not) minus the share of its group that got that part right (a
/// sequence without the part counts as wrong). Parts that every sequence of
/// the group got right, or all wrong, add nothing.
///
/// An episode-level reward blames or credits every token of an attempt at
/// once; this points at the tokens that made the difference.
///
/// ```
/// use monarch_rl::train::{part_advantages, PartCredit};
///
/// let part = |part, tokens, right| PartCredit { part, tokens, right };
/// let credits = vec![
///     vec![part(0, 3..5, true), part(1, 6..8, true)],
///     vec![part(0, 3..5, true), part(1, 6..9, false)],
/// ];
/// let extra = part_advantages(&credits, 2, 0.5).unwrap();
/// assert_eq!(extra[0], vec![(6..8, 0.25)]);
/// assert_eq!(extra[1], vec![(6..9, -0.25)]);
/// ```
pub fn part_advantages<C: AsRef<[PartCredit]>>(
    credits: &[C],
    group: usize,
    weight: f32,
) -> Result<Vec<TokenAdvantages>, String> {
    if group == 0 || credits.len() % group != 0 {
        return Err(format!(
            "{} sequences do not split into groups of {group}",
            credits.len()
        ));
    }
    let mut out = Vec::with_capacity(credits.len());
    for members in credits.chunks(group) {
        let mut right = std::collections::BTreeMap::<usize, f32>::new();
        for credit in members.iter().flat_map(|m| m.as_ref()).filter(|c| c.right) {
            *right.entry(credit.part).or_default() += 1.0;
        }
        for member in members {
            let extra = member
                .as_ref()
                .iter()
                .filter_map(|credit| {
                    let share = right.get(&credit.part).copied().unwrap_or(0.0) / group as f32;
                    let value = weight * (f32::from(u8::from(credit.right)) - share);
                    (value != 0.0).then(|| (credit.tokens.clone(), value))
                })
                .collect();
            out.push(extra);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_centred_scaled_and_flat_ones_dropped() {
        let a = group_advantages(&[1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0], 4, true).unwrap();
        assert!((a.values[0] - 3f32.sqrt()).abs() < 1e-4);
        assert!((a.values[1] + 1.0 / 3f32.sqrt()).abs() < 1e-4);
        assert_eq!(&a.values[4..], &[0.0; 4]);
        assert_eq!(
            a.keep,
            vec![true, true, true, true, false, false, false, false]
        );
        assert!(group_advantages(&[1.0, 2.0, 3.0], 2, true).is_err());
    }

    #[test]
    fn parts_are_compared_within_their_group_only() {
        let part = |part, right| PartCredit {
            part,
            tokens: part..part + 1,
            right,
        };
        let credits = vec![
            // Group one: part 2 is right in one of four, missing in one.
            vec![part(2, true)],
            vec![part(2, false)],
            vec![part(2, false)],
            vec![],
            // Group two: everyone has part 0 right; part 1 in two of four.
            vec![part(0, true), part(1, true)],
            vec![part(0, true), part(1, true)],
            vec![part(0, true), part(1, false)],
            vec![part(0, true)],
        ];
        let extra = part_advantages(&credits, 4, 1.0).unwrap();
        assert_eq!(extra[0], vec![(2..3, 0.75)]);
        assert_eq!(extra[1], vec![(2..3, -0.25)]);
        assert_eq!(extra[3], vec![]);
        assert_eq!(extra[4], vec![(1..2, 0.5)]);
        assert_eq!(extra[6], vec![(1..2, -0.5)]);
        assert_eq!(extra[7], vec![]);
        assert!(part_advantages(&credits[..3], 2, 1.0).is_err());
    }
}
