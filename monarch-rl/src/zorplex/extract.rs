//! Reading the final answer out of model text, per spec, as the reference does
//! (with [`Compat::Reference`]) or with its flaws fixed (with [`Compat::Improved`]).

use std::sync::LazyLock;

use regex::Regex;

use super::{Compat, SpecKind, Tool, ToolCall, ToolResult};

/// The answer in `text` for a task of `kind`, in this order of preference: the last
/// `[ANSWER] n` tag; a tool result (for the kinds where the reference uses one); an
/// explicit phrase such as "the answer is n" (for the kinds that look for one); the
/// last number in the text.
pub(crate) fn extract_answer(
    kind: SpecKind,
    compat: Compat,
    text: &str,
    tool_calls: &[(ToolCall, ToolResult)],
) -> Option<i64> {
    let reference = compat == Compat::Reference;
    // The reference reads a sign after [ANSWER] only in compositional tasks.
    let signed_tag = !reference || matches!(kind, SpecKind::Compositional(_));
    let tag = if signed_tag {
        &*SIGNED_TAG
    } else {
        &*UNSIGNED_TAG
    };
    if let Some(answer) = last_capture(tag, text) {
        return Some(answer);
    }

    match kind {
        SpecKind::Simple => {
            if let Some(v) = tool_calls.iter().find_map(|(_, r)| r.value()) {
                return Some(v);
            }
        }
        SpecKind::MultiStep => {
            let fetched = tool_calls
                .iter()
                .find(|(c, r)| c.tool == Tool::Fetch && r.value().is_some());
            if let Some((_, r)) = fetched {
                return r.value();
            }
        }
        SpecKind::Recursive { .. } => {
            if let Some(v) = tool_calls.iter().rev().find_map(|(_, r)| r.value()) {
                return Some(v);
            }
            for pattern in [&*RECURSIVE_PHRASE, &*RECURSIVE_VALUE_OF] {
                if let Some(answer) = last_capture(pattern, text) {
                    return Some(answer);
                }
            }
        }
        SpecKind::Compositional(_) => {
            for pattern in [&*COMPOSITIONAL_PHRASE, &*COMPOSITIONAL_EQUALS] {
                if let Some(answer) = last_capture(pattern, text) {
                    return Some(answer);
                }
            }
        }
    }

    let last_number = match (reference, kind) {
        (false, _) => &*STANDALONE_NUMBER,
        (true, SpecKind::Compositional(_)) => &*SIGNED_NUMBER,
        (true, _) => &*UNSIGNED_NUMBER,
    };
    last_capture(last_number, text)
}

fn last_capture(pattern: &Regex, text: &str) -> Option<i64> {
    pattern
        .captures_iter(text)
        .last()
        .and_then(|c| c[1].parse().ok())
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid regex")
}

static SIGNED_TAG: LazyLock<Regex> = LazyLock::new(|| regex(r"\[ANSWER\]\s*(-?[0-9]+)"));
static UNSIGNED_TAG: LazyLock<Regex> = LazyLock::new(|| regex(r"\[ANSWER\]\s*([0-9]+)"));
static COMPOSITIONAL_PHRASE: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)(?:the answer is|answer is|answer:)\s*(-?[0-9]+)"));
// Python's `$` without MULTILINE also matches before one final newline.
static COMPOSITIONAL_EQUALS: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)=\s*(-?[0-9]+)\.?\s*(?:The answer|\n?\z)"));
static RECURSIVE_PHRASE: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)(?:the answer is|answer is|answer:)\s*([0-9]+)"));
static RECURSIVE_VALUE_OF: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)(?:value of .+ is)\s*([0-9]+)"));
static SIGNED_NUMBER: LazyLock<Regex> = LazyLock::new(|| regex(r"(-?[0-9]+)"));
static UNSIGNED_NUMBER: LazyLock<Regex> = LazyLock::new(|| regex(r"([0-9]+)"));
// A number that is not part of a word or key: `ZK_ABC123` holds none.
static STANDALONE_NUMBER: LazyLock<Regex> = LazyLock::new(|| regex(r"(-?\b[0-9]+)\b"));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zorplex::Difficulty;

    fn extract(kind: SpecKind, compat: Compat, text: &str) -> Option<i64> {
        extract_answer(kind, compat, text, &[])
    }

    #[test]
    fn improved_mode_keeps_negative_answers_for_every_kind() {
        for kind in SpecKind::ALL {
            assert_eq!(
                extract(kind, Compat::Improved, "[ANSWER] -12"),
                Some(-12),
                "{kind}"
            );
        }
        assert_eq!(
            extract(SpecKind::Simple, Compat::Reference, "[ANSWER] -12"),
            Some(12)
        );
    }

    #[test]
    fn improved_mode_ignores_digits_inside_keys() {
        let text = "GETKEY[apple]\nFETCH[ZK_ABC123]";
        assert_eq!(extract(SpecKind::Simple, Compat::Improved, text), None);
        assert_eq!(
            extract(SpecKind::Simple, Compat::Reference, text),
            Some(123)
        );
        assert_eq!(
            extract(SpecKind::Simple, Compat::Improved, "it is 41, no 42"),
            Some(42)
        );
    }

    #[test]
    fn equals_pattern_matches_before_a_final_newline() {
        let kind = SpecKind::Compositional(Difficulty::Easy);
        assert_eq!(extract(kind, Compat::Reference, "3 = 7.\n"), Some(7));
    }
}
