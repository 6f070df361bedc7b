//! Zorplex tools: their call syntax, parsing from model text and their results.

use std::fmt;
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::Compat;

/// A tool a task can offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tool {
    /// `LOOKUP[word]`: the word's value, or a `SEE: other` redirect.
    Lookup,
    /// `GETKEY[word]`: the word's `ZK_XXXXXX` key.
    GetKey,
    /// `FETCH[ZK_XXXXXX]`: the value behind a key.
    Fetch,
}

impl Tool {
    /// The tool's name as written in a call.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Lookup => "LOOKUP",
            Tool::GetKey => "GETKEY",
            Tool::Fetch => "FETCH",
        }
    }

    fn pattern(self) -> &'static Regex {
        static LOOKUP: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r#"(?i)LOOKUP\[['"]?(\w+)['"]?\]"#).expect("valid regex"));
        static GETKEY: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r#"(?i)GETKEY\[['"]?(\w+)['"]?\]"#).expect("valid regex"));
        static FETCH: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r#"(?i)FETCH\[['"]?(ZK_\w+)['"]?\]"#).expect("valid regex")
        });
        match self {
            Tool::Lookup => &LOOKUP,
            Tool::GetKey => &GETKEY,
            Tool::Fetch => &FETCH,
        }
    }

    /// Normalises a parsed argument: words are lower-cased, keys upper-cased.
    fn normalise(self, argument: &str) -> String {
        match self {
            Tool::Fetch => argument.to_uppercase(),
            _ => argument.to_lowercase(),
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tool call found in model output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Which tool.
    pub tool: Tool,
    /// Its argument, normalised (words lower-case, keys upper-case).
    pub argument: String,
}

impl fmt::Display for ToolCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.tool, self.argument)
    }
}

/// What a tool returned: a number, or text (a key, a redirect, or an error word
/// such as `UNKNOWN`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolResult {
    /// A zorplex value.
    Value(i64),
    /// Anything else the tool says.
    Text(String),
}

impl ToolResult {
    /// The number, if the result is one.
    pub fn value(&self) -> Option<i64> {
        match self {
            ToolResult::Value(v) => Some(*v),
            ToolResult::Text(_) => None,
        }
    }
}

impl fmt::Display for ToolResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolResult::Value(v) => write!(f, "{v}"),
            ToolResult::Text(t) => f.write_str(t),
        }
    }
}

/// Every call of `tools` in `text`. [`Compat::Improved`] keeps the order of the
/// text; [`Compat::Reference`] lists all calls of the first tool, then the next.
pub(crate) fn parse_tool_calls(tools: &[Tool], text: &str, compat: Compat) -> Vec<ToolCall> {
    let mut found: Vec<(usize, ToolCall)> = Vec::new();
    for &tool in tools {
        found.extend(
            tool_calls_at(tool, text)
                .into_iter()
                .map(|(span, call)| (span.start, call)),
        );
    }
    if compat == Compat::Improved {
        found.sort_by_key(|(start, _)| *start);
    }
    found.into_iter().map(|(_, call)| call).collect()
}

/// Every call of `tool` in `text`, in order, with where it lies.
pub(crate) fn tool_calls_at(tool: Tool, text: &str) -> Vec<(Range<usize>, ToolCall)> {
    tool.pattern()
        .captures_iter(text)
        .map(|captures| {
            let call = ToolCall {
                tool,
                argument: tool.normalise(&captures[1]),
            };
            (captures.get(0).expect("whole match").range(), call)
        })
        .collect()
}

/// The end (byte offset) of the first complete call of any of `tools` in `text`.
pub(crate) fn first_tool_call_end(tools: &[Tool], text: &str) -> Option<usize> {
    tools
        .iter()
        .filter_map(|tool| tool.pattern().find(text).map(|m| m.end()))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_and_mixed_case_calls() {
        let calls = parse_tool_calls(
            &[Tool::Lookup],
            "lookup['Banana'] then LOOKUP[\"cat\"]",
            Compat::Improved,
        );
        assert_eq!(
            calls,
            [
                ToolCall {
                    tool: Tool::Lookup,
                    argument: "banana".into()
                },
                ToolCall {
                    tool: Tool::Lookup,
                    argument: "cat".into()
                },
            ]
        );
    }

    #[test]
    fn multi_step_order_depends_on_compat() {
        let text = "FETCH[zk_000001] GETKEY[cat]";
        let tools = [Tool::GetKey, Tool::Fetch];
        let improved = parse_tool_calls(&tools, text, Compat::Improved);
        assert_eq!(improved[0].tool, Tool::Fetch);
        assert_eq!(improved[0].argument, "ZK_000001");
        let reference = parse_tool_calls(&tools, text, Compat::Reference);
        assert_eq!(reference[0].tool, Tool::GetKey);
    }

    #[test]
    fn finds_end_of_first_complete_call() {
        assert_eq!(first_tool_call_end(&[Tool::Lookup], "LOOKUP[ca"), None);
        assert_eq!(
            first_tool_call_end(&[Tool::Lookup], "x LOOKUP[cat] more"),
            Some(13)
        );
    }
}
