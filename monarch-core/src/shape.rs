//! Shapes: named dimensions laid over a list of ranks, sliced by name.
//!
//! A [`Shape`] is a view into a row-major layout of ranks (the *base*): a mesh
//! of `hosts = 2, gpus = 4` has base ranks `0..8`, and `slice("gpus", 1..3)` is
//! the view of base ranks `1, 2, 5, 6`. Views keep their own dense ranks
//! (`0..len()`) and map them back to base ranks with [`Shape::base_rank`].
//!
//! ```
//! use monarch_core::shape;
//!
//! let mesh = shape! { hosts = 2, gpus = 4 };
//! let view = mesh.slice("gpus", 1..3).unwrap();
//! assert_eq!(view.base_ranks().collect::<Vec<_>>(), [1, 2, 5, 6]);
//! assert_eq!(view.point(3).unwrap().to_string(), "{hosts=1, gpus=1}");
//! let one = view.slice("hosts", 1).unwrap(); // an index drops the dimension
//! assert_eq!(one.to_string(), "{gpus=2}");
//! ```

use std::fmt;
use std::ops::{Bound, RangeBounds};

use serde::{Deserialize, Serialize};

/// Named dimensions over a row-major layout of ranks: a view of base ranks,
/// sliced by dimension name. See [`Shape::slice`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    dims: Vec<Dim>,
    offset: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Dim {
    name: String,
    size: usize,
    stride: usize,
}

/// A shape could not be built or sliced as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Two dimensions share a name.
    #[error("dimension `{0}` appears twice")]
    DuplicateDim(String),
    /// A dimension has size zero.
    #[error("dimension `{0}` has size 0; every dimension needs at least one point")]
    EmptyDim(String),
    /// No dimension has this name.
    #[error("no dimension `{name}` in {shape}")]
    NoSuchDim {
        /// The name asked for.
        name: String,
        /// The shape it was looked up in.
        shape: String,
    },
    /// An index or range falls outside a dimension.
    #[error("{what} is out of range for dimension `{name}` of size {size}")]
    OutOfRange {
        /// The dimension.
        name: String,
        /// Its size.
        size: usize,
        /// The index or range asked for.
        what: String,
    },
    /// A rank is past the end of the shape.
    #[error("rank {rank} is out of range for a shape of {len} ranks")]
    RankOutOfRange {
        /// The rank asked for.
        rank: usize,
        /// The number of ranks.
        len: usize,
    },
    /// A list meant to hold one item per point has a different length.
    #[error("{got} items for a shape of {expected} points")]
    WrongCount {
        /// The items given.
        got: usize,
        /// The points of the shape.
        expected: usize,
    },
    /// A point does not have one coordinate per dimension, or one is too large.
    #[error("point {point:?} does not fit {shape}")]
    BadPoint {
        /// The coordinates given.
        point: Vec<usize>,
        /// The shape.
        shape: String,
    },
}

impl Shape {
    /// A shape with these dimensions, outermost first, over base ranks
    /// `0..product of sizes`.
    pub fn new<S: AsRef<str>>(dims: &[(S, usize)]) -> Result<Self, ShapeError> {
        let mut out: Vec<Dim> = Vec::with_capacity(dims.len());
        let mut stride = 1;
        for (name, size) in dims.iter().rev() {
            let name = name.as_ref().to_string();
            if *size == 0 {
                return Err(ShapeError::EmptyDim(name));
            }
            if out.iter().any(|d| d.name == name) {
                return Err(ShapeError::DuplicateDim(name));
            }
            out.push(Dim {
                name,
                size: *size,
                stride,
            });
            stride *= size;
        }
        out.reverse();
        Ok(Shape {
            dims: out,
            offset: 0,
        })
    }

    /// A one-dimensional shape `name = len`.
    pub fn line(name: &str, len: usize) -> Result<Self, ShapeError> {
        Shape::new(&[(name, len)])
    }

    /// The number of ranks (points) in this view.
    pub fn len(&self) -> usize {
        self.dims.iter().map(|d| d.size).product()
    }

    /// Whether the view has no points (never true for a valid shape).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dimensions' names, outermost first.
    pub fn dim_names(&self) -> impl Iterator<Item = &str> {
        self.dims.iter().map(|d| d.name.as_str())
    }

    /// The dimensions' sizes, outermost first.
    pub fn sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.dims.iter().map(|d| d.size)
    }

    /// The size of dimension `name`.
    pub fn size(&self, name: &str) -> Option<usize> {
        self.dims.iter().find(|d| d.name == name).map(|d| d.size)
    }

    /// The view restricted along `dim`: a range keeps the dimension (with the
    /// range's length), a [`Step`] keeps every n-th coordinate of a range, and
    /// an index removes the dimension.
    ///
    /// ```
    /// use monarch_core::{shape, Step};
    ///
    /// let mesh = shape! { hosts = 2, gpus = 8 };
    /// let even = mesh.slice("gpus", Step(0..8, 2)).unwrap();
    /// assert_eq!(even.to_string(), "{hosts=2, gpus=4}");
    /// assert_eq!(even.base_ranks().take(4).collect::<Vec<_>>(), [0, 2, 4, 6]);
    /// ```
    pub fn slice(&self, dim: &str, at: impl SliceArg) -> Result<Shape, ShapeError> {
        let position = self
            .dims
            .iter()
            .position(|d| d.name == dim)
            .ok_or_else(|| ShapeError::NoSuchDim {
                name: dim.to_string(),
                shape: self.to_string(),
            })?;
        let d = &self.dims[position];
        let selected = at.resolve(d.size).ok_or_else(|| ShapeError::OutOfRange {
            name: d.name.clone(),
            size: d.size,
            what: at.describe(),
        })?;
        let mut out = self.clone();
        out.offset += selected.start * d.stride;
        if selected.keep {
            out.dims[position].size = selected.len;
            out.dims[position].stride *= selected.step;
        } else {
            out.dims.remove(position);
        }
        Ok(out)
    }

    /// The point of view rank `rank`.
    pub fn point(&self, rank: usize) -> Result<Point, ShapeError> {
        if rank >= self.len() {
            return Err(ShapeError::RankOutOfRange {
                rank,
                len: self.len(),
            });
        }
        let mut coords = vec![0; self.dims.len()];
        let mut rest = rank;
        for (i, d) in self.dims.iter().enumerate().rev() {
            coords[i] = rest % d.size;
            rest /= d.size;
        }
        Ok(self.make_point(coords))
    }

    /// The view rank of the point with these coordinates (one per dimension).
    pub fn rank_of(&self, coords: &[usize]) -> Result<usize, ShapeError> {
        if coords.len() != self.dims.len()
            || coords.iter().zip(&self.dims).any(|(c, d)| *c >= d.size)
        {
            return Err(ShapeError::BadPoint {
                point: coords.to_vec(),
                shape: self.to_string(),
            });
        }
        Ok(coords
            .iter()
            .zip(&self.dims)
            .fold(0, |rank, (c, d)| rank * d.size + c))
    }

    /// The base rank behind view rank `rank`.
    pub fn base_rank(&self, rank: usize) -> Result<usize, ShapeError> {
        let point = self.point(rank)?;
        Ok(self.offset
            + point
                .coords
                .iter()
                .zip(&self.dims)
                .map(|(c, d)| c * d.stride)
                .sum::<usize>())
    }

    /// Every point of the view, in rank order.
    pub fn points(&self) -> impl Iterator<Item = Point> + '_ {
        (0..self.len()).map(|rank| self.point(rank).expect("rank below len"))
    }

    /// The base rank of every point of the view, in rank order.
    pub fn base_ranks(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).map(|rank| self.base_rank(rank).expect("rank below len"))
    }

    fn make_point(&self, coords: Vec<usize>) -> Point {
        Point {
            names: self.dims.iter().map(|d| d.name.clone()).collect(),
            coords,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", d.name, d.size)?;
        }
        f.write_str("}")
    }
}

/// A point of a shape: one coordinate per named dimension.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Point {
    names: Vec<String>,
    coords: Vec<usize>,
}

impl Point {
    /// The coordinate along dimension `name`.
    pub fn get(&self, name: &str) -> Option<usize> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| self.coords[i])
    }

    /// The coordinates, outermost dimension first.
    pub fn coords(&self) -> &[usize] {
        &self.coords
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, c)) in self.names.iter().zip(&self.coords).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}={c}")?;
        }
        f.write_str("}")
    }
}

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

/// Builds a [`Shape`] from `name = size` pairs, outermost first.
///
/// Panics on a repeated name or a size of zero; use [`Shape::new`] to get an
/// error instead.
///
/// ```
/// let s = monarch_core::shape! { hosts = 2, gpus = 8 };
/// assert_eq!(s.len(), 16);
/// ```
#[macro_export]
macro_rules! shape {
    ($($name:ident = $size:expr),+ $(,)?) => {
        match $crate::Shape::new(&[$((stringify!($name), $size as usize)),+]) {
            ::core::result::Result::Ok(shape) => shape,
            ::core::result::Result::Err(error) => panic!("invalid shape: {error}"),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dims() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(1usize..5, 1..4)
    }

    fn named(sizes: &[usize]) -> Shape {
        let dims: Vec<(String, usize)> = sizes
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("d{i}"), *s))
            .collect();
        Shape::new(&dims).unwrap()
    }

    proptest! {
        #[test]
        fn rank_point_round_trip(sizes in dims()) {
            let shape = named(&sizes);
            prop_assert_eq!(shape.len(), sizes.iter().product::<usize>());
            for rank in 0..shape.len() {
                let point = shape.point(rank).unwrap();
                prop_assert_eq!(shape.rank_of(point.coords()).unwrap(), rank);
                prop_assert_eq!(shape.base_rank(rank).unwrap(), rank);
            }
        }

        #[test]
        fn slices_select_the_matching_base_ranks(
            sizes in dims(),
            pick in any::<proptest::sample::Index>(),
            a in 0usize..5,
            b in 0usize..5,
        ) {
            let base = named(&sizes);
            let dim = pick.index(sizes.len());
            let name = format!("d{dim}");
            let (start, end) = (a.min(b), a.max(b) + 1);
            let expected: Vec<usize> = (0..base.len())
                .filter(|r| {
                    let c = base.point(*r).unwrap().coords()[dim];
                    (start..end).contains(&c)
                })
                .collect();
            match base.slice(&name, start..end) {
                Ok(view) => {
                    prop_assert_eq!(view.base_ranks().collect::<Vec<_>>(), expected);
                    prop_assert_eq!(view.size(&name), Some(end - start));
                }
                Err(ShapeError::OutOfRange { .. }) => prop_assert!(end > sizes[dim]),
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
            if start < sizes[dim] {
                let fixed = base.slice(&name, start).unwrap();
                prop_assert_eq!(fixed.size(&name), None);
                let expected: Vec<usize> = (0..base.len())
                    .filter(|r| base.point(*r).unwrap().coords()[dim] == start)
                    .collect();
                prop_assert_eq!(fixed.base_ranks().collect::<Vec<_>>(), expected);
            }
        }

        #[test]
        fn steps_select_every_nth_coordinate(
            sizes in dims(),
            pick in any::<proptest::sample::Index>(),
            a in 0usize..5,
            b in 0usize..5,
            step in 1usize..4,
        ) {
            let base = named(&sizes);
            let dim = pick.index(sizes.len());
            let name = format!("d{dim}");
            let (start, end) = (a.min(b), (a.max(b) + 1).min(sizes[dim]));
            prop_assume!(start < end);
            let picked = |c: usize| (start..end).contains(&c) && (c - start) % step == 0;
            let expected: Vec<usize> = (0..base.len())
                .filter(|r| picked(base.point(*r).unwrap().coords()[dim]))
                .collect();
            let view = base.slice(&name, Step(start..end, step)).unwrap();
            prop_assert_eq!(view.base_ranks().collect::<Vec<_>>(), expected);
            prop_assert_eq!(view.size(&name), Some((start..end).step_by(step).count()));
            // A step of a step composes.
            if let Ok(twice) = view.slice(&name, Step(.., 2)) {
                let again: Vec<usize> = view.base_ranks()
                    .filter(|r| {
                        let c = base.point(*r).unwrap().coords()[dim];
                        ((c - start) / step) % 2 == 0
                    })
                    .collect();
                prop_assert_eq!(twice.base_ranks().collect::<Vec<_>>(), again);
            }
        }

        #[test]
        fn slicing_twice_composes(sizes in proptest::collection::vec(2usize..5, 2..4)) {
            let base = named(&sizes);
            let view = base.slice("d0", 1..).unwrap().slice("d1", ..1).unwrap();
            for (rank, base_rank) in view.base_ranks().enumerate() {
                let p = base.point(base_rank).unwrap();
                prop_assert!(p.coords()[0] >= 1 && p.coords()[1] == 0);
                let q = view.point(rank).unwrap();
                prop_assert_eq!(q.coords()[0] + 1, p.coords()[0]);
            }
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let s = shape! { hosts = 2, gpus = 4 };
        assert_eq!(
            s.slice("cpus", 0).unwrap_err().to_string(),
            "no dimension `cpus` in {hosts=2, gpus=4}"
        );
        assert_eq!(
            s.slice("gpus", 3..6).unwrap_err().to_string(),
            "range 3..6 is out of range for dimension `gpus` of size 4"
        );
        assert!(matches!(
            Shape::new(&[("a", 1), ("a", 2)]),
            Err(ShapeError::DuplicateDim(_))
        ));
        assert!(matches!(
            Shape::new(&[("a", 0)]),
            Err(ShapeError::EmptyDim(_))
        ));
        assert!(s.point(8).is_err());
        assert_eq!(
            s.slice("gpus", Step(0..4, 0)).unwrap_err().to_string(),
            "range 0..4 in steps of 0 is out of range for dimension `gpus` of size 4"
        );
    }
}
