//! What a slice selects along one dimension: an index, a range, or every
//! n-th coordinate of a range.

use std::ops::{Bound, RangeBounds};

/// What [`Shape::slice`] takes: an index (drops the dimension), a range of
/// `usize` (keeps it), or a [`Step`] through a range.
pub trait SliceArg {
    /// What the argument selects within a dimension of `size`, or `None` if
    /// it is out of range or empty.
    fn resolve(&self, size: usize) -> Option<Selected>;
    /// The argument, for error messages.
    fn describe(&self) -> String;
}

/// The coordinates a [`SliceArg`] selects within one dimension: `len` of
/// them, from `start`, `step` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selected {
    /// The first coordinate.
    pub start: usize,
    /// How many.
    pub len: usize,
    /// The distance between neighbours (1 for a range).
    pub step: usize,
    /// Whether the dimension stays (a range) or goes (an index).
    pub keep: bool,
}

/// Every `self.1`-th coordinate of the range `self.0`, as Python's
/// `slice(start, stop, step)`: `Step(0..8, 2)` selects 0, 2, 4 and 6.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step<R>(pub R, pub usize);

impl SliceArg for usize {
    fn resolve(&self, size: usize) -> Option<Selected> {
        (*self < size).then_some(Selected {
            start: *self,
            len: 1,
            step: 1,
            keep: false,
        })
    }

    fn describe(&self) -> String {
        format!("index {self}")
    }
}

macro_rules! range_slice_arg {
    ($($ty:ty),*) => {$(
        impl SliceArg for $ty {
            fn resolve(&self, size: usize) -> Option<Selected> {
                range_within(self, size, 1)
            }

            fn describe(&self) -> String {
                format!("range {self:?}")
            }
        }

        impl SliceArg for Step<$ty> {
            fn resolve(&self, size: usize) -> Option<Selected> {
                range_within(&self.0, size, self.1)
            }

            fn describe(&self) -> String {
                format!("range {:?} in steps of {}", self.0, self.1)
            }
        }
    )*};
}

range_slice_arg!(
    std::ops::Range<usize>,
    std::ops::RangeInclusive<usize>,
    std::ops::RangeFrom<usize>,
    std::ops::RangeTo<usize>,
    std::ops::RangeToInclusive<usize>,
    std::ops::RangeFull
);

fn range_within(range: &impl RangeBounds<usize>, size: usize, step: usize) -> Option<Selected> {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.checked_add(1)?,
        Bound::Excluded(e) => *e,
        Bound::Unbounded => size,
    };
    (start < end && end <= size && step > 0).then(|| Selected {
        start,
        len: (end - start).div_ceil(step),
        step,
        keep: true,
    })
}
