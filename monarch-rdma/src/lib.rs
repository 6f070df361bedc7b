//! Registered memory and one-sided transfers between monarch-rs processes.
//!
//! This crate will hold `RdmaBuffer`, a serialisable handle to registered host or
//! GPU memory that any process holding it can read from or write to without the
//! owner's code running, with backends by locality (memcpy in process, shared
//! memory and CUDA IPC on one host, QUIC bulk streams across hosts). It is part
//! of the workspace now so that the crate family builds and is versioned
//! together; it exports nothing yet.
