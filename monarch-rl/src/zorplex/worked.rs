//! Sums written out column by column, as the scripted oracle writes them
//! and as a model trained from scratch learns to.
//!
//! A small transformer that must write `48 + 57 = 105` in one go has to
//! carry across columns before it writes the first digit; it learns that
//! slowly. Written out from the units up, every digit it writes depends on
//! a few digits just before it:
//!
//! ```
//! use monarch_rl::zorplex::worked_sum;
//!
//! assert_eq!(worked_sum(48, 57), "48 + 57: 8+7=15, 4+5+1=10, so 105.");
//! assert_eq!(worked_sum(5, 30), "5 + 30: 5+0=05, 0+3+0=03, so 35.");
//! ```

use std::ops::Range;

use super::{Task, TaskMetadata};

/// `a + b` worked column by column for operands of `0..=999`: each
/// column's two digits (a missing one reads as 0), the carry from the
/// column before, and their sum as two digits, then the total. Other
/// operands (negative, or of four digits and more) are written plainly,
/// `a + b = s.`
pub fn worked_sum(a: i64, b: i64) -> String {
    if !(0..=999).contains(&a) || !(0..=999).contains(&b) {
        return format!("{a} + {b} = {}.", a + b);
    }
    let digit = |n: i64, column: u32| n / 10_i64.pow(column) % 10;
    // Columns past the tens are written only where an operand has them.
    let columns = if a.max(b) >= 100 { 3 } else { 2 };
    let mut facts = Vec::with_capacity(columns as usize);
    let mut carry = 0;
    for column in 0..columns {
        let (x, y) = (digit(a, column), digit(b, column));
        let sum = x + y + carry;
        facts.push(if column == 0 {
            format!("{x}+{y}={sum:02}")
        } else {
            format!("{x}+{y}+{carry}={sum:02}")
        });
        carry = sum / 10;
    }
    format!("{a} + {b}: {}, so {}.", facts.join(", "), a + b)
}

/// One part of a written working, checked against the task's
/// ([`check_working`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkingPart {
    /// Which part: 0 and 1 the operands, 2 on the column facts in order.
    pub index: usize,
    /// Where it lies in the text checked.
    pub span: Range<usize>,
    /// Whether it is the task's part of that index.
    pub right: bool,
}

/// The parts of the last working in `text` (`A + B: f1, f2, so S`: the two
/// operands, then each column's fact), each checked against the same part
/// of [`worked_sum`]'s working of `task`. `None` where the task is not the
/// sum of two values that [`worked_sum`] works out column by column; an
/// empty list where `text` has no working.
///
/// A policy that gets the answer wrong can still have copied the operands
/// and added most columns right; this says which parts it got right and
/// where they are, for a reward per part.
///
/// ```
/// use monarch_rl::zorplex::{check_working, Task, TaskMetadata};
///
/// let task = Task {
///     question: "What is alpha + beta?".into(),
///     answer: 105,
///     metadata: TaskMetadata::Compositional {
///         words: vec!["alpha".into(), "beta".into()],
///         values: vec![48, 57],
///         op: "+".into(),
///     },
/// };
/// let right = |text| -> Vec<bool> {
///     check_working(&task, text).unwrap().iter().map(|p| p.right).collect()
/// };
/// assert_eq!(right("48 + 57: 8+7=15, 4+5+1=10, so 105."), [true; 4]);
/// assert_eq!(right("48 + 57: 8+7=15, 4+5+1=11, so 115."), [true, true, true, false]);
/// assert_eq!(right("48 + 75: 8+5=13"), [true, false, false]);
/// assert!(right("[ANSWER] 105").is_empty());
/// ```
pub fn check_working(task: &Task, text: &str) -> Option<Vec<WorkingPart>> {
    let TaskMetadata::Compositional { values, op, .. } = &task.metadata else {
        return None;
    };
    let [a, b] = values[..] else {
        return None;
    };
    let expected = worked_sum(a, b);
    if op != "+" || !expected.contains(", so ") {
        return None;
    }
    let expected_parts = working_parts(&expected);
    let parts = working_parts(text)
        .into_iter()
        .filter_map(|(index, span)| {
            let (_, want) = expected_parts.iter().find(|(i, _)| *i == index)?;
            let right = text[span.clone()] == expected[want.clone()];
            Some(WorkingPart { index, span, right })
        })
        .collect();
    Some(parts)
}

/// The parts of the last working in `text`, as (index, span): the operands
/// (0 and 1, the two numbers `A + B` just before its last `: `, where they
/// are there) and the column facts (2 on, what lies between that `: ` and
/// the `so` after it, split at commas).
fn working_parts(text: &str) -> Vec<(usize, Range<usize>)> {
    let Some(colon) = text.rfind(": ") else {
        return Vec::new();
    };
    let mut parts = Vec::new();
    let before = &text[..colon];
    let b_start = before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if b_start < colon {
        if let Some(rest) = before[..b_start].strip_suffix(" + ") {
            let a_start = rest.trim_end_matches(|c: char| c.is_ascii_digit()).len();
            if a_start < rest.len() {
                parts.push((0, a_start..rest.len()));
                parts.push((1, b_start..colon));
            }
        }
    }
    let facts_start = colon + 2;
    let facts = &text[facts_start..];
    let facts = facts.split_once("so").map_or(facts, |(facts, _)| facts);
    let mut at = facts_start;
    let mut index = 2;
    for fact in facts.split(',') {
        let lead = fact.len() - fact.trim_start().len();
        let trimmed = fact.trim();
        if !trimmed.is_empty() {
            parts.push((index, at + lead..at + lead + trimmed.len()));
            index += 1;
        }
        at += fact.len() + 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_working_ends_in_the_sum_and_its_facts_add_up() {
        for a in 0..=120 {
            for b in [0, 1, 9, 10, 55, 99, 100, 101] {
                let text = worked_sum(a, b);
                let (_, working) = text.split_once(": ").unwrap();
                let total = working.rsplit_once("so ").unwrap().1;
                assert_eq!(total, format!("{}.", a + b), "{text}");
                for fact in working.split(", ").filter(|f| f.contains('=')) {
                    let (terms, sum) = fact.split_once('=').unwrap();
                    let terms: i64 = terms.split('+').map(|t| t.parse::<i64>().unwrap()).sum();
                    assert_eq!(terms, sum.parse::<i64>().unwrap(), "{text}");
                }
            }
        }
    }

    #[test]
    fn a_hundreds_column_is_written_only_where_an_operand_has_one() {
        assert_eq!(
            worked_sum(100, 57),
            "100 + 57: 0+7=07, 0+5+0=05, 1+0+0=01, so 157."
        );
        assert_eq!(worked_sum(99, 99), "99 + 99: 9+9=18, 9+9+1=19, so 198.");
    }

    fn sum_task(values: Vec<i64>, op: &str) -> Task {
        Task {
            question: String::new(),
            answer: 0,
            metadata: TaskMetadata::Compositional {
                words: vec![String::new(); values.len()],
                values,
                op: op.into(),
            },
        }
    }

    #[test]
    fn check_working_finds_each_part_and_checks_it_in_its_place() {
        fn check(text: &str) -> Vec<(usize, &str, bool)> {
            check_working(&sum_task(vec![100, 57], "+"), text)
                .unwrap()
                .into_iter()
                .map(|p| (p.index, &text[p.span], p.right))
                .collect()
        }
        assert!(check(&worked_sum(100, 57)).iter().all(|p| p.2));
        // The last working counts; a fact out of its place is wrong.
        assert_eq!(
            check("100 + 57: 1+1=2, so 2. Then 100 + 57: 0+5+0=05,  0+7=07"),
            [
                (0, "100", true),
                (1, "57", true),
                (2, "0+5+0=05", false),
                (3, "0+7=07", false)
            ]
        );
        // An operand is the whole number: 3 is not 13. A fourth fact is
        // not part of this working.
        assert_eq!(
            check("13 + 57: 0+7=07, 0+5+0=06, 1+0+0=01, 0+0+0=00, so 167."),
            [
                (0, "13", false),
                (1, "57", true),
                (2, "0+7=07", true),
                (3, "0+5+0=06", false),
                (4, "1+0+0=01", true)
            ]
        );
        assert_eq!(check("sum: 0+7=07"), [(2, "0+7=07", true)]);
        assert_eq!(check("157"), []);
    }

    #[test]
    fn check_working_is_none_without_a_worked_sum() {
        assert_eq!(
            check_working(&sum_task(vec![4, 5], "*"), "4 * 5 = 20."),
            None
        );
        assert_eq!(check_working(&sum_task(vec![1, 2, 3], "+"), "6"), None);
        assert_eq!(
            check_working(&sum_task(vec![-4, 5], "+"), "-4 + 5 = 1."),
            None
        );
        let simple = Task {
            question: String::new(),
            answer: 1,
            metadata: TaskMetadata::Simple { word: "x".into() },
        };
        assert_eq!(check_working(&simple, "1"), None);
    }

    #[test]
    fn operands_outside_three_digits_are_written_plainly() {
        assert_eq!(worked_sum(-4, 10), "-4 + 10 = 6.");
        assert_eq!(worked_sum(1000, 1), "1000 + 1 = 1001.");
    }
}
