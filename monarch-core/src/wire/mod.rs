//! The protocol between processes, as plain state machines with no I/O and no
//! clock of their own (as quinn-proto is under quinn): the transport feeds
//! them bytes, frames and the time, and carries out what they answer.
//!
//! - [`codec`]: values to bytes and back; a message's `Bytes` segments.
//! - [`frame`]: the frames one process sends another, and their decoder.
//! - [`session`]: per peer, the numbering of ordered frames, request ids and
//!   the replies they wait for, and heartbeats.
//! - [`sequence`]: receive order per origin process, whichever path each
//!   message took.
//! - [`tree`], [`gather`] and [`cast`]: casts to many processes through a tree
//!   of relays: planning, what each relay gathers, and what it forwards.

pub(crate) mod cast;
pub(crate) mod codec;
pub(crate) mod frame;
pub(crate) mod gather;
pub(crate) mod sequence;
pub(crate) mod session;
pub(crate) mod tree;

pub use codec::{Payload, RemoteError};
pub use tree::CastTree;
