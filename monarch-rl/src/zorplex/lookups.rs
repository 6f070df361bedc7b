//! The lookups of a recursive task's episode, each checked against the
//! task's redirect chain: which call followed the chain and which strayed
//! from it (looked a word up again, or went on past the number).

use std::ops::Range;

use super::tools::tool_calls_at;
use super::{Task, TaskMetadata, Tool, Turn};

/// One `LOOKUP` call of an episode, checked against the task's chain
/// ([`check_lookups`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupPart {
    /// Which call of the episode, from 0: it should look up the chain's
    /// word of this index.
    pub index: usize,
    /// The turn it was written in.
    pub turn: usize,
    /// Where it lies in that turn's output.
    pub span: Range<usize>,
    /// Whether it looked up the chain's word of its index.
    pub right: bool,
}

/// The `LOOKUP` calls of `turns` in order, each checked against the same
/// step of the redirect chain of `task`: call `i` is right when it looks up
/// the chain's word `i` (the word asked about, then each word a redirect
/// named). `None` where the task is not a recursive one.
///
/// An episode that loses its way in a chain, looking up a word it has
/// already seen instead of the one the last redirect named, gets the
/// answer wrong; this says at which call it strayed, for a reward per call.
///
/// ```
/// use monarch_rl::zorplex::{check_lookups, Task, TaskMetadata, Turn};
///
/// let task = Task {
///     question: "What is the zorplex value of apple?".into(),
///     answer: 42,
///     metadata: TaskMetadata::Recursive {
///         word: "apple".into(),
///         chain: vec!["apple".into(), "yellow".into(), "umbrella".into()],
///     },
/// };
/// let turn = |output: &str| Turn { output: output.into(), start: 0, tool_calls: Vec::new() };
/// let turns = [turn("LOOKUP[apple]"), turn("LOOKUP[yellow]"), turn("Then LOOKUP[apple]")];
/// let right: Vec<bool> = check_lookups(&task, &turns).unwrap().iter().map(|c| c.right).collect();
/// assert_eq!(right, [true, true, false]);
/// assert_eq!(check_lookups(&task, &turns).unwrap()[2].span, 5..18);
/// ```
pub fn check_lookups(task: &Task, turns: &[Turn]) -> Option<Vec<LookupPart>> {
    let TaskMetadata::Recursive { chain, .. } = &task.metadata else {
        return None;
    };
    let calls = turns.iter().enumerate().flat_map(|(turn, t)| {
        tool_calls_at(Tool::Lookup, &t.output)
            .into_iter()
            .map(move |(span, call)| (turn, span, call))
    });
    let parts = calls
        .enumerate()
        .map(|(index, (turn, span, call))| LookupPart {
            index,
            turn,
            span,
            right: chain.get(index) == Some(&call.argument),
        })
        .collect();
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recursive_task(chain: &[&str]) -> Task {
        Task {
            question: format!("What is the zorplex value of {}?", chain[0]),
            answer: 7,
            metadata: TaskMetadata::Recursive {
                word: chain[0].into(),
                chain: chain.iter().map(|w| w.to_string()).collect(),
            },
        }
    }

    fn turn(output: &str) -> Turn {
        Turn {
            output: output.into(),
            start: 0,
            tool_calls: Vec::new(),
        }
    }

    #[test]
    fn calls_past_the_chain_and_calls_out_of_place_are_wrong() {
        let task = recursive_task(&["cat", "dog"]);
        let turns = [
            turn("LOOKUP['Cat']"),
            turn("LOOKUP[dog] and LOOKUP[dog]"),
            turn("[ANSWER] 7"),
        ];
        let parts = check_lookups(&task, &turns).unwrap();
        let seen: Vec<(usize, usize, bool)> =
            parts.iter().map(|p| (p.index, p.turn, p.right)).collect();
        assert_eq!(seen, [(0, 0, true), (1, 1, true), (2, 1, false)]);
        assert_eq!(parts[2].span, 16..27);
        // A chain looked up out of order is wrong from where it strays.
        let swapped = check_lookups(&task, &[turn("LOOKUP[dog]"), turn("LOOKUP[cat]")]).unwrap();
        assert!(swapped.iter().all(|p| !p.right));
    }

    #[test]
    fn only_recursive_tasks_are_checked() {
        let simple = Task {
            question: "What is the zorplex value of cat?".into(),
            answer: 7,
            metadata: TaskMetadata::Simple { word: "cat".into() },
        };
        assert_eq!(check_lookups(&simple, &[turn("LOOKUP[cat]")]), None);
        let task = recursive_task(&["cat", "dog"]);
        assert_eq!(
            check_lookups(&task, &[turn("[ANSWER] 7")]),
            Some(Vec::new())
        );
    }
}
