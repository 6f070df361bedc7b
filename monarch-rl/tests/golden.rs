//! Parity with the reference implementation: every seed and spec variant of the
//! golden file (a copy of `shared/zorplex/golden.json`).

use monarch_rl::zorplex::{
    Compat, SpecKind, TaskMetadata, TaskSpec, Tool, ToolCall, ToolResult, ZorplexTable, WORDS,
};
use serde_json::Value;

fn golden() -> Value {
    let text = include_str!("data/golden.json");
    serde_json::from_str(text).expect("golden file is JSON")
}

fn seeds(golden: &Value) -> Vec<(i64, &Value)> {
    let seeds = golden["seeds"].as_object().expect("seeds object");
    assert!(seeds.len() >= 5, "golden file lists several seeds");
    seeds
        .iter()
        .map(|(s, v)| (s.parse().expect("integer seed"), v))
        .collect()
}

fn tool_result(value: &Value) -> ToolResult {
    match value {
        Value::Number(n) => ToolResult::Value(n.as_i64().expect("integer result")),
        Value::String(s) => ToolResult::Text(s.clone()),
        other => panic!("unexpected tool result {other}"),
    }
}

#[test]
fn word_list_matches() {
    let golden = golden();
    let words: Vec<&str> = golden["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(words, WORDS);
}

#[test]
fn tables_match_for_every_seed() {
    let golden = golden();
    for (seed, data) in seeds(&golden) {
        let table = ZorplexTable::new(seed);
        for (word, value) in data["table"].as_object().unwrap() {
            assert_eq!(table.get(word), value.as_i64(), "seed {seed} word {word}");
        }
    }
}

#[test]
fn tasks_match_for_every_seed_and_spec() {
    let golden = golden();
    let mut checked = 0;
    for (seed, data) in seeds(&golden) {
        let specs = data["specs"].as_object().unwrap();
        assert_eq!(specs.len(), SpecKind::ALL.len());
        for (name, spec_data) in specs {
            let kind: SpecKind = name.parse().unwrap();
            let mut spec = TaskSpec::new(kind, seed);
            let tasks = spec_data["tasks"].as_array().unwrap();
            assert_eq!(tasks.len(), 25);
            for (i, expected) in tasks.iter().enumerate() {
                let task = spec.generate_task();
                let context = format!("seed {seed} spec {name} task {i}");
                assert_eq!(
                    task.question,
                    expected["question"].as_str().unwrap(),
                    "{context}"
                );
                assert_eq!(Some(task.answer), expected["answer"].as_i64(), "{context}");
                let metadata = serde_json::to_value(&task.metadata).unwrap();
                assert_eq!(metadata, expected["metadata"], "{context}");
                if let TaskMetadata::Recursive { chain, .. } = &task.metadata {
                    assert_eq!(task.needed_tool_calls(), chain.len());
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 5 * 8 * 25);
}

#[test]
fn tool_results_match_for_every_seed_and_spec() {
    let golden = golden();
    for (seed, data) in seeds(&golden) {
        for (name, spec_data) in data["specs"].as_object().unwrap() {
            let kind: SpecKind = name.parse().unwrap();
            let spec = TaskSpec::new(kind, seed);
            let tool = match kind {
                SpecKind::MultiStep => Tool::GetKey,
                _ => Tool::Lookup,
            };
            for (word, expected) in spec_data["tool_results"].as_object().unwrap() {
                let call = ToolCall {
                    tool,
                    argument: word.clone(),
                };
                assert_eq!(
                    spec.execute_tool(&call),
                    tool_result(expected),
                    "seed {seed} spec {name} {call}"
                );
            }
        }
    }
}

#[test]
fn parse_cases_match_in_reference_mode() {
    let golden = golden();
    let mut checked = 0;
    for (seed, data) in seeds(&golden) {
        for (name, spec_data) in data["specs"].as_object().unwrap() {
            let kind: SpecKind = name.parse().unwrap();
            let mut spec = TaskSpec::new(kind, seed).with_compat(Compat::Reference);
            let task = spec.generate_task();
            for case in spec_data["parse_cases"].as_array().unwrap() {
                let output = case["output"].as_str().unwrap();
                let evaluation = spec.evaluate(&task, output);
                let context = format!("seed {seed} spec {name} output {output:?}");
                let expected_calls: Vec<(ToolCall, ToolResult)> = case["tool_calls"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        let tool = match c[0].as_str().unwrap() {
                            "LOOKUP" => Tool::Lookup,
                            "GETKEY" => Tool::GetKey,
                            "FETCH" => Tool::Fetch,
                            other => panic!("unknown tool {other}"),
                        };
                        let call = ToolCall {
                            tool,
                            argument: c[1].as_str().unwrap().into(),
                        };
                        (call, tool_result(&c[2]))
                    })
                    .collect();
                assert_eq!(evaluation.tool_calls, expected_calls, "{context}");
                assert_eq!(
                    evaluation.extracted_answer,
                    case["extracted_answer"].as_i64(),
                    "{context}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 5 * 8 * 10);
}
