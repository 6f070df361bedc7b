//! monarch-rs: distributed actors for GPU and ML workloads, in the style of
//! PyTorch Monarch.
//!
//! ```
//! use monarch::prelude::*;
//!
//! #[derive(Default)]
//! struct Counter {
//!     value: i64,
//! }
//!
//! #[actor]
//! impl Counter {
//!     /// Adds `by` to the count.
//!     #[endpoint]
//!     async fn incr(&mut self, by: i64) {
//!         self.value += by;
//!     }
//!
//!     /// The count so far.
//!     #[endpoint]
//!     async fn get(&self) -> i64 {
//!         self.value
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let counter = this_proc().spawn::<Counter>("counter", ()).await?;
//! counter.incr(5).send()?;                  // tell: no reply
//! assert_eq!(counter.get().call().await?, 5); // ask: awaits the reply
//! counter.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! The runtime ([`monarch_core`]) is re-exported at the root; [`rdma`] holds
//! registered memory and one-sided transfers, [`rl`] the async RL library and the
//! Zorplex benchmark.

pub use monarch_core::*;
pub use monarch_derive::{actor, endpoint, main};
pub use monarch_rdma as rdma;
pub use monarch_rl as rl;

/// The names most programs need: `use monarch::prelude::*;`.
pub mod prelude {
    pub use monarch_core::prelude::*;
    pub use monarch_derive::{actor, endpoint};
}
