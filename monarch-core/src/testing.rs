//! Probes and baselines for tests and benchmarks, behind the `testing`
//! feature: not part of the API a program builds on.

pub use crate::transport::baseline::{
    bare_quinn_echo, bare_quinn_fetch, bare_quinn_source, bare_quinn_transfer, BareQuinnPingPong,
};

/// How many casts this process has sent through a tree, for tests that check
/// a tree was used.
pub fn casts_started() -> u64 {
    crate::transport::current().map_or(0, |router| {
        router
            .casts_started
            .load(std::sync::atomic::Ordering::Relaxed)
    })
}

/// How many subtrees this process still awaits replies or a delivery report
/// from, over all casts it sent or relayed: zero once every cast is done.
pub fn casts_in_flight() -> usize {
    crate::transport::current().map_or(0, |router| router.casts_in_flight())
}

/// Tries to join the process listening at `addr` without the job credential,
/// as an intruder would, over QUIC and the same-host socket. `Ok` means it was
/// let in on either, which must never happen; the error says how each attempt
/// was refused.
pub async fn probe_as_intruder(addr: &str) -> Result<(), String> {
    crate::transport::probe::probe_as_intruder(addr).await
}
