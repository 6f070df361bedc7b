//! The owner is this process: one copy.

use crate::backend::{copy, seqlock_copy};
use crate::buffer::{Op, Stamps};
use crate::memory::lookup;
use crate::{BufferId, RdmaError};

/// Runs `op` on registration `id` of this process.
pub(crate) fn transfer(
    id: BufferId,
    offset: u64,
    op: Op<'_>,
    stamps: Option<Stamps>,
) -> Result<Option<(u64, u64)>, RdmaError> {
    let entry = lookup(id)?;
    entry.check_range(offset, op.len() as u64)?;
    let at = offset as usize;
    match (op, stamps) {
        (Op::Read(dst), Some(stamps)) => {
            let base = entry.host_ptr().ok_or_else(|| RdmaError::Broken {
                id,
                why: "version stamps live in host memory only".into(),
            })?;
            // SAFETY: the range was checked and stamps lie inside the
            // registration (checked by the handle), which `entry` keeps
            // alive; stamps are only touched atomically.
            Ok(Some(copy(dst.len(), || unsafe {
                seqlock_copy(base, offset, dst, stamps)
            })))
        }
        (Op::Read(dst), None) => copy(dst.len(), || entry.read_at(at, dst)).map(|()| None),
        (Op::Write(src), _) => copy(src.len(), || entry.write_at(at, src)).map(|()| None),
    }
}
