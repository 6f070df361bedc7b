//! The actor runtime: actors and their mailboxes, the context an actor sees,
//! procs and the task that runs each actor, references, ports, the registry
//! of addressable actors, remote spawn and per-process services.
//!
//! The runtime knows nothing of sockets or frames. A reference to an actor in
//! another process holds an [`remote::Outbound`], which the transport
//! implements; references and ports serialise as plain data.

pub(crate) mod actor;
pub(crate) mod context;
pub(crate) mod mailbox;
pub(crate) mod port;
pub(crate) mod proc;
pub(crate) mod queue;
pub(crate) mod reference;
pub(crate) mod registry;
pub(crate) mod remote;
pub(crate) mod service;
pub(crate) mod spawn;
