//! `monarch kubernetes manifests`: the objects printed for `kubectl apply -f -`
//! carry the job's shape and a credential; a missing credential is a clear
//! error.

use std::path::PathBuf;
use std::process::Command;

fn monarch() -> Command {
    Command::new(env!("CARGO_BIN_EXE_monarch"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("monarch-k8s-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn manifests_are_one_list_for_kubectl() {
    let dir = scratch("list");
    let credential = dir.join("job.pem");
    let minted = monarch()
        .args(["credential", "new"])
        .arg(&credential)
        .status()
        .unwrap();
    assert!(minted.success());
    let output = monarch()
        .args([
            "kubernetes",
            "manifests",
            "--name",
            "trainer",
            "--image",
            "example/monarch:1",
        ])
        .args([
            "--replicas",
            "4",
            "--namespace",
            "ml",
            "--gpus-per-pod",
            "8",
            "--credential",
        ])
        .arg(&credential)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    let set = items.iter().find(|i| i["kind"] == "StatefulSet").unwrap();
    assert_eq!(set["metadata"]["name"], "trainer");
    assert_eq!(set["metadata"]["namespace"], "ml");
    assert_eq!(set["spec"]["replicas"], 4);
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], "8");
    let secret = items.iter().find(|i| i["kind"] == "Secret").unwrap();
    let pem = secret["stringData"]["job.pem"].as_str().unwrap();
    assert_eq!(pem, std::fs::read_to_string(&credential).unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_missing_credential_is_a_clear_error() {
    let dir = scratch("missing");
    let output = monarch()
        .args([
            "kubernetes",
            "manifests",
            "--name",
            "t",
            "--image",
            "i",
            "--replicas",
            "1",
        ])
        .arg("--credential")
        .arg(dir.join("absent.pem"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("absent.pem"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}
