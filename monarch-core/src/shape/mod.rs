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

use serde::{Deserialize, Serialize};

mod select;

pub use select::{Selected, SliceArg, Step};

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
    /// A dimension split into sizes whose product is not its size.
    #[error(
        "dimension `{name}` of size {size} cannot be split into sizes whose product is {product}"
    )]
    BadSplit {
        /// The dimension.
        name: String,
        /// Its size.
        size: usize,
        /// The product of the sizes asked for.
        product: usize,
    },
    /// The view's ranks are not evenly spaced in its base, so its dimensions
    /// cannot be merged into one; [`Shape::compact`] first.
    #[error("the ranks of {shape} are not evenly spaced in its base, so its dimensions cannot be flattened in place")]
    NotContiguous {
        /// The shape.
        shape: String,
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
        let position = self.position(dim)?;
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

    /// The same dimensions over base ranks `0..len()`, dropping the view's
    /// place in its base: the shape of a list that holds just this view's
    /// points, in rank order (as a [`crate::ValueMesh`] does).
    ///
    /// ```
    /// use monarch_core::shape;
    ///
    /// let view = shape! { hosts = 2, gpus = 4 }.slice("gpus", 2..).unwrap();
    /// assert_eq!(view.compact().base_ranks().collect::<Vec<_>>(), [0, 1, 2, 3]);
    /// assert_eq!(view.compact(), shape! { hosts = 2, gpus = 2 });
    /// ```
    pub fn compact(&self) -> Shape {
        let mut stride = 1;
        let mut dims = self.dims.clone();
        for d in dims.iter_mut().rev() {
            d.stride = stride;
            stride *= d.size;
        }
        Shape { dims, offset: 0 }
    }

    /// The view with dimension `from` called `to`.
    ///
    /// ```
    /// use monarch_core::shape;
    ///
    /// let s = shape! { hosts = 2, gpus = 4 }.rename("gpus", "workers").unwrap();
    /// assert_eq!(s.to_string(), "{hosts=2, workers=4}");
    /// ```
    pub fn rename(&self, from: &str, to: &str) -> Result<Shape, ShapeError> {
        let position = self.position(from)?;
        if from != to && self.dims.iter().any(|d| d.name == to) {
            return Err(ShapeError::DuplicateDim(to.to_string()));
        }
        let mut out = self.clone();
        out.dims[position].name = to.to_string();
        Ok(out)
    }

    /// The view with every dimension merged into one named `name`, of the
    /// same ranks in the same order. Fails for a view whose ranks are not
    /// evenly spaced in its base (a slice of an inner dimension, say); the
    /// [`compact`](Shape::compact) form of any view flattens.
    ///
    /// ```
    /// use monarch_core::shape;
    ///
    /// let s = shape! { hosts = 2, gpus = 4 };
    /// let flat = s.flatten("ranks").unwrap();
    /// assert_eq!(flat.to_string(), "{ranks=8}");
    /// assert!(s.slice("gpus", 0..2).unwrap().flatten("ranks").is_err());
    /// assert!(s.slice("hosts", 1).unwrap().flatten("ranks").is_ok());
    /// ```
    pub fn flatten(&self, name: &str) -> Result<Shape, ShapeError> {
        let contiguous = self
            .dims
            .windows(2)
            .all(|pair| pair[0].stride == pair[1].stride * pair[1].size);
        if !contiguous {
            return Err(ShapeError::NotContiguous {
                shape: self.to_string(),
            });
        }
        let stride = self.dims.last().map_or(1, |d| d.stride);
        Ok(Shape {
            dims: vec![Dim {
                name: name.to_string(),
                size: self.len(),
                stride,
            }],
            offset: self.offset,
        })
    }

    /// The view with dimension `dim` split into `into` (outermost first),
    /// whose sizes multiply to its size; the ranks and their order stay.
    ///
    /// ```
    /// use monarch_core::shape;
    ///
    /// let s = shape! { ranks = 8 }.split("ranks", &[("hosts", 2), ("gpus", 4)]).unwrap();
    /// assert_eq!(s, shape! { hosts = 2, gpus = 4 });
    /// assert_eq!(s.point(5).unwrap().to_string(), "{hosts=1, gpus=1}");
    /// ```
    pub fn split<S: AsRef<str>>(
        &self,
        dim: &str,
        into: &[(S, usize)],
    ) -> Result<Shape, ShapeError> {
        let position = self.position(dim)?;
        let old = &self.dims[position];
        let product: usize = into.iter().map(|(_, size)| size).product();
        if product != old.size {
            return Err(ShapeError::BadSplit {
                name: old.name.clone(),
                size: old.size,
                product,
            });
        }
        let mut parts: Vec<Dim> = Vec::with_capacity(into.len());
        let mut stride = old.stride;
        for (name, size) in into.iter().rev() {
            let name = name.as_ref().to_string();
            if *size == 0 {
                return Err(ShapeError::EmptyDim(name));
            }
            let taken = |n: &str| n == name;
            let clashes = parts.iter().any(|d| taken(&d.name))
                || self
                    .dims
                    .iter()
                    .enumerate()
                    .any(|(i, d)| i != position && taken(&d.name));
            if clashes {
                return Err(ShapeError::DuplicateDim(name));
            }
            parts.push(Dim {
                name,
                size: *size,
                stride,
            });
            stride *= size;
        }
        parts.reverse();
        let mut out = self.clone();
        out.dims.splice(position..=position, parts);
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

    fn position(&self, dim: &str) -> Result<usize, ShapeError> {
        self.dims
            .iter()
            .position(|d| d.name == dim)
            .ok_or_else(|| ShapeError::NoSuchDim {
                name: dim.to_string(),
                shape: self.to_string(),
            })
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

/// Where a message sent through a mesh was addressed: the receiving actor's
/// rank in the slice that was called (which may be a part of its mesh), and
/// that slice's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CastPoint {
    rank: usize,
    shape: std::sync::Arc<Shape>,
}

impl CastPoint {
    pub(crate) fn new(rank: usize, shape: std::sync::Arc<Shape>) -> Self {
        CastPoint { rank, shape }
    }

    /// The actor's rank in the slice that was called.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The shape of the slice that was called.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The actor's point in the slice that was called.
    pub fn point(&self) -> Point {
        self.shape
            .point(self.rank)
            .expect("a cast's rank is in its slice's shape")
    }
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

    proptest! {
        #[test]
        fn compact_flatten_and_split_keep_ranks_in_order(
            sizes in proptest::collection::vec(1usize..5, 2..4),
            a in 0usize..5,
        ) {
            let base = named(&sizes);
            let view = base.slice("d1", (a % sizes[1])..).unwrap();
            let compact = view.compact();
            prop_assert_eq!(compact.base_ranks().collect::<Vec<_>>(), (0..view.len()).collect::<Vec<_>>());
            prop_assert_eq!(compact.points().collect::<Vec<_>>(), view.points().collect::<Vec<_>>());
            let flat = compact.flatten("all").unwrap();
            prop_assert_eq!(flat.base_ranks().collect::<Vec<_>>(), compact.base_ranks().collect::<Vec<_>>());
            // A contiguous view flattens in place, to the same base ranks.
            let outer = base.slice("d0", (a % sizes[0])..).unwrap();
            let flat = outer.flatten("all").unwrap();
            prop_assert_eq!(flat.base_ranks().collect::<Vec<_>>(), outer.base_ranks().collect::<Vec<_>>());
            // Splitting the flat dimension back gives the view's ranks and points.
            let dims: Vec<(String, usize)> = outer.dim_names().map(str::to_string).zip(outer.sizes()).collect();
            let back = flat.split("all", &dims).unwrap();
            prop_assert_eq!(back.base_ranks().collect::<Vec<_>>(), outer.base_ranks().collect::<Vec<_>>());
            prop_assert_eq!(back.points().collect::<Vec<_>>(), outer.points().collect::<Vec<_>>());
        }
    }

    #[test]
    fn rename_and_split_refuse_clashing_or_wrong_sizes() {
        let s = shape! { hosts = 2, gpus = 4 };
        assert_eq!(
            s.rename("gpus", "hosts").unwrap_err(),
            ShapeError::DuplicateDim("hosts".into())
        );
        assert!(matches!(
            s.rename("cpus", "x"),
            Err(ShapeError::NoSuchDim { .. })
        ));
        assert_eq!(s.rename("gpus", "gpus").unwrap(), s);
        assert_eq!(
            s.split("gpus", &[("a", 3), ("b", 2)])
                .unwrap_err()
                .to_string(),
            "dimension `gpus` of size 4 cannot be split into sizes whose product is 6"
        );
        assert_eq!(
            s.split("gpus", &[("hosts", 2), ("b", 2)]).unwrap_err(),
            ShapeError::DuplicateDim("hosts".into())
        );
        // A dimension may be split into one of its own name.
        let split = s.split("gpus", &[("gpus", 2), ("lanes", 2)]).unwrap();
        assert_eq!(split.to_string(), "{hosts=2, gpus=2, lanes=2}");
        // Splitting a slice keeps its base ranks.
        let view = s.slice("gpus", Step(0..4, 2)).unwrap();
        let split = view.split("hosts", &[("h", 2), ("one", 1)]).unwrap();
        assert_eq!(
            split.base_ranks().collect::<Vec<_>>(),
            view.base_ranks().collect::<Vec<_>>()
        );
        // Every other gpu is evenly spaced, so it flattens; half the gpus is not.
        let flat = view.flatten("x").unwrap();
        assert_eq!(flat.base_ranks().collect::<Vec<_>>(), [0, 2, 4, 6]);
        assert!(matches!(
            s.slice("gpus", 0..2).unwrap().flatten("x"),
            Err(ShapeError::NotContiguous { .. })
        ));
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
