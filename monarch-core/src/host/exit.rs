//! How a worker process ended, in words, and the referee that makes it the
//! reason its link closed.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::transport::CloseReason;

/// How long a link whose worker hung up waits for the worker's exit status.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A process's end, as a clause: "exited with code 1", "was killed by signal
/// 9 (SIGKILL)".
pub(crate) fn describe(status: &ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(signal) => {
            let dumped = if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            match signal_name(signal) {
                Some(name) => format!("was killed by signal {signal} ({name}{dumped})"),
                None => format!("was killed by signal {signal}{dumped}"),
            }
        }
        None => format!("ended ({status})"),
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return None,
    })
}

/// What a worker's link closes with when its proc mesh is stopped.
pub(crate) const STOPPED: &str = "its proc mesh was stopped";

/// A referee for a worker's link: when the worker hangs up, the reason is
/// that its mesh was stopped (when `stopping` is set), else how its process
/// ended, once that is known (within a grace period).
pub(crate) fn referee(
    exit: watch::Receiver<Option<String>>,
    stopping: Arc<AtomicBool>,
) -> crate::transport::Referee {
    Box::new(move |reason| {
        let mut exit = exit.clone();
        let stopping = Arc::clone(&stopping);
        Box::pin(async move {
            if stopping.load(Ordering::Acquire) {
                return CloseReason::Local(STOPPED.into());
            }
            let ended = tokio::time::timeout(EXIT_GRACE, exit.wait_for(Option::is_some)).await;
            match ended {
                Ok(Ok(ended)) => match ended.as_deref() {
                    Some(how) => CloseReason::Local(format!("the process {how}")),
                    None => reason,
                },
                _ => reason,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_by_code_and_signal() {
        assert_eq!(
            describe(&ExitStatus::from_raw(1 << 8)),
            "exited with code 1"
        );
        assert_eq!(
            describe(&ExitStatus::from_raw(libc::SIGKILL)),
            "was killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            describe(&ExitStatus::from_raw(libc::SIGSEGV | 0x80)),
            "was killed by signal 11 (SIGSEGV, core dumped)"
        );
    }
}
