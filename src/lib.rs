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
//! counter.stop().await?;
//! # Ok(())
//! # }
//! ```
//!
//! The same actor in a mesh of worker processes, one per point of a shape. The
//! program re-executes itself as the workers, so `main` starts with
//! `#[monarch::main]` (or a call to [`bootstrap`]):
//!
//! ```no_run
//! # use monarch::prelude::*;
//! # #[derive(Default)]
//! # struct Counter { value: i64 }
//! # #[actor]
//! # impl Counter {
//! #     #[endpoint]
//! #     async fn incr(&mut self, by: i64) { self.value += by; }
//! #     #[endpoint]
//! #     async fn get(&self) -> i64 { self.value }
//! # }
//! #[monarch::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let procs = this_host().spawn_procs(shape! { hosts = 2, gpus = 4 }).await?;
//!     let counters = procs.spawn::<Counter>("counter", ()).await?;
//!     counters.incr(1).broadcast()?;                    // every member
//!     let counts = counters.get().call().await?;        // a ValueMesh<i64>
//!     println!("{counts}");                             // printed as a table
//!     let gpu0 = counters.slice("gpus", 0)?;            // {hosts=2}
//!     let first = gpu0.slice("hosts", 0)?.get().call_one().await?;
//!     assert_eq!(first, 1);
//!     procs.stop().await;
//!     Ok(())
//! }
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
