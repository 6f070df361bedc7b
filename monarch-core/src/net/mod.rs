//! Transport between processes: frames, links, the job credential and the
//! router that ties them to local actors.

mod baseline;
mod cast;
mod credential;
mod frame;
mod gather;
mod link;
mod local;
mod router;
mod sequence;
mod shm;
mod tree;

pub use baseline::{bare_quinn_echo, bare_quinn_transfer, BareQuinnPingPong};
pub(crate) use cast::{cast, Target};
pub use cast::{casts_in_flight, casts_started};
pub(crate) use credential::Credential;
pub use credential::CredentialError;
pub(crate) use frame::Header;
pub(crate) use link::Link;
pub(crate) use router::{fail, router, start_router, Router, SupervisionSink};
pub use router::{probe_as_intruder, TransportError};
pub(crate) use shm::{map as map_shared, Segment};
pub use tree::CastTree;
