//! `monarch zorplex eval --policy model`: a saved checkpoint is scored on
//! any seed and spec; a missing or damaged one is refused by name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::Device;
use monarch::rl::model::{
    save_checkpoint, ModelSpec, TextTokenizer, TinyConfig, TinyTransformer, ZorplexTokenizer,
};
use monarch::rl::zorplex::SpecReport;

fn monarch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_monarch"))
        .args(args)
        .output()
        .expect("the monarch binary runs")
}

/// `monarch zorplex eval --policy model --model-path DIR` and `more`.
fn eval_model(dir: &Path, more: &[&str]) -> Output {
    let mut args = vec![
        "zorplex",
        "eval",
        "--policy",
        "model",
        "--model-path",
        path(dir),
    ];
    args.extend_from_slice(more);
    monarch(&args)
}

fn checkpoint(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("monarch-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = TinyConfig {
        vocab: ZorplexTokenizer::new().vocab_size(),
        dim: 16,
        layers: 1,
        heads: 2,
        ffn: 32,
        max_len: 256,
    };
    let (vars, _) = TinyTransformer::seeded(config, 3, &Device::Cpu).expect("a model");
    save_checkpoint(&dir, &ModelSpec::Tiny { config }, &vars, 9).expect("saved");
    dir
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("a UTF-8 temp path")
}

#[test]
fn a_saved_model_is_scored_on_any_seed_and_spec() {
    let dir = checkpoint("score");
    let args = [
        "--seed",
        "77",
        "--tasks",
        "2",
        "--spec",
        "simple",
        "--spec",
        "recursive_2",
        "--max-turns",
        "2",
        "--json",
    ];
    let out = eval_model(&dir, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<SpecReport> = serde_json::from_slice(&out.stdout).expect("JSON reports");
    let specs: Vec<&str> = reports.iter().map(|r| r.spec.as_str()).collect();
    assert_eq!(specs, ["simple", "recursive_2"]);
    assert!(reports
        .iter()
        .all(|r| r.tasks == 2 && (0.0..=1.0).contains(&r.accuracy)));
    assert!(String::from_utf8_lossy(&out.stderr).contains("policy version 9"));
    // The same seed scores the same (greedy), as a table too.
    let again = eval_model(&dir, &args);
    assert_eq!(out.stdout, again.stdout);
    let table = eval_model(
        &dir,
        &["--tasks", "1", "--spec", "simple", "--max-turns", "1"],
    );
    assert!(table.status.success());
    assert!(String::from_utf8_lossy(&table.stdout).contains("simple"));
    std::fs::remove_dir_all(&dir).expect("cleaned up");
}

#[test]
fn a_missing_or_damaged_checkpoint_is_refused_by_name() {
    let no_path = monarch(&["zorplex", "eval", "--policy", "model"]);
    assert!(!no_path.status.success());
    assert!(String::from_utf8_lossy(&no_path.stderr).contains("--model-path"));

    let dir = checkpoint("damaged");
    std::fs::write(dir.join("weights.bin"), b"short").expect("damaged");
    let out = eval_model(&dir, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("weights.bin"), "{stderr}");
    std::fs::remove_dir_all(&dir).expect("cleaned up");
}

#[test]
fn failures_are_printed_with_their_turns_before_the_table() {
    let dir = checkpoint("failures");
    // In one turn no recursive task can be looked up: the untrained model
    // gets both wrong.
    let args = [
        "--seed",
        "77",
        "--tasks",
        "2",
        "--spec",
        "recursive_2",
        "--max-turns",
        "1",
        "--failures",
    ];
    let out = eval_model(&dir, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.find("recursive_2, seed 77: ").expect("task 77");
    let second = stdout.find("recursive_2, seed 78: ").expect("task 78");
    let table = stdout.find("spec ").expect("the table");
    assert!(first < second && second < table, "{stdout}");
    assert!(stdout[first..second].contains("\n  1: "), "{stdout}");

    // A scripted policy's failures show what its tools returned; one that
    // fails nothing prints only the table.
    let scripted = |policy: &str| {
        let out = monarch(&[
            "zorplex",
            "eval",
            "--policy",
            policy,
            "--error-rate",
            "1",
            "--tasks",
            "4",
            "--spec",
            "recursive_2",
            "--failures",
        ]);
        assert!(out.status.success(), "{policy}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let gave_up = scripted("give-up-when-hard");
    assert!(gave_up.contains("wrong_format"), "{gave_up}");
    assert!(gave_up.contains("-> SEE: "), "{gave_up}");
    assert!(!scripted("oracle").contains(", seed "));

    // Failures are printed as text only.
    let both = eval_model(&dir, &["--failures", "--json"]);
    assert!(!both.status.success());
    std::fs::remove_dir_all(&dir).expect("cleaned up");
}

#[test]
fn samples_play_each_task_again_at_a_temperature() {
    let dir = checkpoint("samples");
    let base = ["--seed", "5", "--tasks", "2", "--spec", "simple"];
    let run = |more: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(more);
        eval_model(&dir, &args)
    };
    let out = run(&["--samples", "3", "--temperature", "1", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<SpecReport> = serde_json::from_slice(&out.stdout).expect("JSON reports");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].tasks, 6);
    let episodes: usize = reports[0].failure_modes.values().sum();
    assert_eq!(episodes, 6);

    // The untrained model fails in one turn; each failure names its sample.
    let failures = run(&[
        "--samples",
        "3",
        "--temperature",
        "1",
        "--max-turns",
        "1",
        "--failures",
    ]);
    let stdout = String::from_utf8_lossy(&failures.stdout);
    assert!(stdout.contains("simple, seed 5, sample 0: "), "{stdout}");
    assert!(stdout.contains("simple, seed 6, sample 2: "), "{stdout}");

    // Samples that could not differ are refused, saying why.
    for (more, why) in [
        (&["--samples", "0"][..], "1 or more"),
        (&["--samples", "2"][..], "--temperature"),
    ] {
        let refused = run(more);
        assert!(!refused.status.success());
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(why), "{stderr}");
    }
    let scripted = monarch(&["zorplex", "eval", "--samples", "2", "--temperature", "1"]);
    assert!(String::from_utf8_lossy(&scripted.stderr).contains("--policy model"));
    std::fs::remove_dir_all(&dir).expect("cleaned up");
}
