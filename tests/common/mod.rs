//! Helpers shared by the integration tests.

use std::sync::Arc;
use std::time::Duration;

use monarch::{Proc, SupervisionEvent};
use tokio::sync::mpsc;

/// Every wait in the tests is bounded by this.
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes longer than [`LIMIT`].
pub(crate) async fn bounded<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("test step timed out")
}

/// A proc whose root failures are recorded instead of exiting the process.
pub(crate) fn recording_proc() -> (Proc, mpsc::UnboundedReceiver<SupervisionEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let proc = Proc::new("test").with_fault_hook(Arc::new(move |event: &SupervisionEvent| {
        let _ = tx.send(event.clone());
    }));
    (proc, rx)
}
