//! What can go wrong with registered memory and transfers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::BufferId;

/// A registration or transfer failed. Plain data: an owner's answer carries
/// it back to the process that asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RdmaError {
    /// Registered memory needs at least one byte.
    #[error("registered memory needs at least one byte")]
    ZeroSize,
    /// The owner has no buffer of this id (it never had, or its process
    /// restarted).
    #[error("buffer {id} is not registered in {owner}")]
    UnknownBuffer {
        /// The buffer.
        id: BufferId,
        /// Its owner, as the handle names it.
        owner: String,
    },
    /// The owner dropped the buffer's last registration.
    #[error("buffer {id} was dropped by its owner")]
    Dropped {
        /// The buffer.
        id: BufferId,
    },
    /// The bytes asked for do not lie inside the buffer.
    #[error("{len} bytes at offset {offset} do not fit buffer {id} of {size} bytes")]
    OutOfRange {
        /// The buffer.
        id: BufferId,
        /// Its size.
        size: u64,
        /// Where the transfer starts.
        offset: u64,
        /// How many bytes it moves.
        len: u64,
    },
    /// A whole-buffer transfer was given a buffer of the wrong size: a
    /// destination smaller than the buffer, or a source larger.
    #[error("buffer {id} holds {size} bytes; the {side} given holds {got}")]
    SizeMismatch {
        /// The buffer.
        id: BufferId,
        /// Its size.
        size: u64,
        /// "destination" or "source".
        side: String,
        /// The size of what was given.
        got: u64,
    },
    /// The owner's process could not be reached.
    #[error("the owner of buffer {id} ({owner}) is unreachable: {why}")]
    OwnerUnreachable {
        /// The buffer.
        id: BufferId,
        /// Its owner.
        owner: String,
        /// Why.
        why: String,
    },
    /// The transfer did not finish in time.
    #[error("the transfer of buffer {id} did not finish within {after:?}")]
    Timeout {
        /// The buffer.
        id: BufferId,
        /// The deadline that passed.
        after: Duration,
    },
    /// A batch did not finish in time.
    #[error("the batch did not finish within {after:?}")]
    BatchTimeout {
        /// The deadline that passed.
        after: Duration,
    },
    /// The owner's process refused this one: it does not hold the job
    /// credential.
    #[error("refused by the owner of buffer {id}: {why}")]
    Refused {
        /// The buffer.
        id: BufferId,
        /// What the handshake said.
        why: String,
    },
    /// A snapshot ring's slot holds a newer version than the one asked for:
    /// the writer lapped the reader.
    #[error("version {version} was overwritten; the ring holds {newest} now")]
    Lapped {
        /// The version asked for.
        version: u64,
        /// The newest version the ring holds.
        newest: u64,
    },
    /// A snapshot ring has not published the version asked for (or any).
    #[error("version {version} is not published yet")]
    NotPublished {
        /// The version asked for.
        version: u64,
    },
    /// A snapshot does not fit the ring's slots, or the destination given.
    #[error("a snapshot of {len} bytes does not fit {room} bytes")]
    TooLarge {
        /// The snapshot's size.
        len: u64,
        /// The room there is.
        room: u64,
    },
    /// GPU memory was asked for where there is no CUDA device (or this
    /// build has no `cuda` feature).
    #[error("no CUDA device: {0}")]
    NoCudaDevice(String),
    /// The CUDA driver failed.
    #[error("CUDA: {0}")]
    Cuda(String),
    /// Shared memory could not be made or mapped.
    #[error("shared memory: {0}")]
    Memory(String),
    /// The stream to the owner broke, or carried something unexpected.
    #[error("the transfer of buffer {id} broke off: {why}")]
    Broken {
        /// The buffer.
        id: BufferId,
        /// What happened.
        why: String,
    },
}

impl RdmaError {
    /// The owner could not be reached, for `why`; a failed handshake is a
    /// refusal.
    pub(crate) fn unreachable(id: BufferId, owner: &impl std::fmt::Display, why: String) -> Self {
        if why.contains("handshake") || why.contains("credential") {
            RdmaError::Refused { id, why }
        } else {
            RdmaError::OwnerUnreachable {
                id,
                owner: owner.to_string(),
                why,
            }
        }
    }
}
