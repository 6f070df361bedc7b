//! Helpers every scenario uses: bounded waits, checks, and the state of
//! worker processes.

use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::Failed;
use monarch::prelude::*;

/// Every wait in these tests is bounded by this.
pub(crate) const LIMIT: Duration = Duration::from_secs(60);

/// A proc whose fault hook records events instead of exiting.
pub(crate) fn recording_owner() -> (Proc, tokio::sync::mpsc::UnboundedReceiver<SupervisionEvent>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let proc = Proc::new("test").with_fault_hook(Arc::new(move |event: &SupervisionEvent| {
        let _ = tx.send(event.clone());
    }));
    (proc, rx)
}

pub(crate) async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("timed out waiting")
}

pub(crate) fn check(condition: bool, what: &str) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// The state letter of process `pid` (`R`, `S`, `T` stopped, `Z` zombie...),
/// or `None` once it is gone.
pub(crate) fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

pub(crate) fn process_gone(pid: u32) -> bool {
    // A zombie has exited; only its parent's bookkeeping remains.
    matches!(process_state(pid), None | Some('Z'))
}

/// Waits until every thread of `pid` has taken a SIGSTOP: the signal is
/// asynchronous, and a message can be handled in between.
pub(crate) async fn wait_stopped(pid: u32) -> bool {
    for _ in 0..200 {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
        let all_stopped = tasks.is_ok_and(|tasks| {
            tasks.flatten().all(|task| {
                let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
                state.starts_with('T') || state.starts_with('t')
            })
        });
        if all_stopped {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Waits up to ten seconds for `condition` to hold.
pub(crate) async fn settles(condition: impl Fn() -> bool) -> bool {
    for _ in 0..1000 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

pub(crate) async fn wait_gone(pid: u32) -> bool {
    for _ in 0..200 {
        if process_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub(crate) fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits pid_t");
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let status = unsafe { libc::kill(pid, signal) };
    let error = std::io::Error::last_os_error();
    // A process to be killed that is already gone (its owner killed it for
    // silence first, on a slow machine) is what was wanted.
    let gone = signal == libc::SIGKILL && error.raw_os_error() == Some(libc::ESRCH);
    assert!(status == 0 || gone, "kill({pid}, {signal}) failed: {error}");
}
