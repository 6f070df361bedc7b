//! GRPO-style advantages: each sequence's reward against the others of its
//! group (the completions of one prompt).

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
}
