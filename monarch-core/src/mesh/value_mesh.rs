//! Values gathered from a mesh, laid over its shape.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::shape::{Point, Shape, ShapeError, SliceArg};

/// One value per point of a shape: what [`MeshCall::call`] gathers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValueMesh<T> {
    pub(super) shape: Shape,
    pub(super) values: Vec<T>,
}

impl<T> ValueMesh<T> {
    /// One value per point of `shape`, in rank order.
    ///
    /// ```
    /// use monarch_core::{shape, ValueMesh};
    ///
    /// let losses = ValueMesh::new(shape! { hosts = 2, gpus = 2 }, vec![0.5, 0.4, 0.3, 0.2]).unwrap();
    /// assert_eq!(*losses.at(&[1, 0]).unwrap(), 0.3);
    /// assert_eq!(
    ///     losses.to_string(),
    ///     "           gpus=0  gpus=1\n{hosts=0}  0.5     0.4\n{hosts=1}  0.3     0.2"
    /// );
    /// ```
    pub fn new(shape: Shape, values: Vec<T>) -> Result<Self, ShapeError> {
        if values.len() != shape.len() {
            return Err(ShapeError::WrongCount {
                got: values.len(),
                expected: shape.len(),
            });
        }
        Ok(ValueMesh { shape, values })
    }

    /// The shape the values are laid over.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The value at `rank`.
    pub fn get(&self, rank: usize) -> Option<&T> {
        self.values.get(rank)
    }

    /// The value at the point with these coordinates.
    pub fn at(&self, coords: &[usize]) -> Result<&T, ShapeError> {
        Ok(&self.values[self.shape.rank_of(coords)?])
    }

    /// The values with their points, in rank order.
    pub fn iter(&self) -> impl Iterator<Item = (Point, &T)> + '_ {
        self.shape.points().zip(&self.values)
    }

    /// The values in rank order.
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// The values in rank order, owned.
    pub fn into_values(self) -> Vec<T> {
        self.values
    }

    /// The values along `dim` as `at` selects (an index drops the dimension,
    /// a range keeps it), as [`crate::ActorMesh::slice`] selects actors.
    ///
    /// ```
    /// use monarch_core::{shape, ValueMesh};
    ///
    /// let losses = ValueMesh::new(shape! { hosts = 2, gpus = 2 }, vec![0.5, 0.4, 0.3, 0.2]).unwrap();
    /// let host1 = losses.slice("hosts", 1).unwrap();
    /// assert_eq!(host1.values(), [0.3, 0.2]);
    /// assert_eq!(host1.shape().to_string(), "{gpus=2}");
    /// ```
    pub fn slice(&self, dim: &str, at: impl SliceArg) -> Result<ValueMesh<T>, ShapeError>
    where
        T: Clone,
    {
        let view = self.dense().slice(dim, at)?;
        let values = view.base_ranks().map(|r| self.values[r].clone()).collect();
        Ok(ValueMesh {
            shape: view.compact(),
            values,
        })
    }

    /// The same values over one dimension `name` (see [`Shape::flatten`]).
    pub fn flatten(self, name: &str) -> Result<ValueMesh<T>, ShapeError> {
        let shape = self.dense().flatten(name)?;
        Ok(ValueMesh { shape, ..self })
    }

    /// The same values with dimension `from` called `to`.
    pub fn rename(self, from: &str, to: &str) -> Result<ValueMesh<T>, ShapeError> {
        let shape = self.shape.rename(from, to)?;
        Ok(ValueMesh { shape, ..self })
    }

    /// The same values with dimension `dim` split into `into` (see
    /// [`Shape::split`]).
    ///
    /// ```
    /// use monarch_core::{shape, ValueMesh};
    ///
    /// let ranks = ValueMesh::new(shape! { ranks = 4 }, vec![0, 1, 2, 3]).unwrap();
    /// let grid = ranks.split("ranks", &[("hosts", 2), ("gpus", 2)]).unwrap();
    /// assert_eq!(*grid.at(&[1, 0]).unwrap(), 2);
    /// ```
    pub fn split<S: AsRef<str>>(
        self,
        dim: &str,
        into: &[(S, usize)],
    ) -> Result<ValueMesh<T>, ShapeError> {
        let shape = self.dense().split(dim, into)?;
        Ok(ValueMesh { shape, ..self })
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The shape over the values as they are stored: rank `r` is `values[r]`.
    fn dense(&self) -> Shape {
        self.shape.compact()
    }
}

/// A table: the innermost dimension across, the others down.
///
/// ```text
///              gpus=0  gpus=1
/// {hosts=0}    10      11
/// {hosts=1}    20      21
/// ```
impl<T: fmt::Display> fmt::Display for ValueMesh<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.shape.dim_names().collect();
        let sizes: Vec<usize> = self.shape.sizes().collect();
        let (Some(inner), Some(&across)) = (names.last(), sizes.last()) else {
            return f.write_str("{}");
        };
        let cells: Vec<String> = self.values.iter().map(|v| v.to_string()).collect();
        let rows = self.values.len() / across;
        let labels: Vec<String> = (0..rows)
            .map(|row| {
                let point = self.shape.point(row * across).expect("rank of shape");
                let outer: Vec<String> = names[..names.len() - 1]
                    .iter()
                    .map(|n| format!("{n}={}", point.get(n).expect("dim of point")))
                    .collect();
                format!("{{{}}}", outer.join(", "))
            })
            .collect();
        let label_width = labels.iter().map(String::len).max().unwrap_or(0);
        let headers: Vec<String> = (0..across).map(|i| format!("{inner}={i}")).collect();
        let widths: Vec<usize> = (0..across)
            .map(|col| {
                (0..rows)
                    .map(|row| cells[row * across + col].len())
                    .chain([headers[col].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        // Every column but the last is padded to its width.
        let cell = |f: &mut fmt::Formatter<'_>, text: &str, col: usize| {
            if col + 1 == across {
                write!(f, "  {text}")
            } else {
                write!(f, "  {text:<width$}", width = widths[col])
            }
        };
        write!(f, "{:label_width$}", "")?;
        for (col, header) in headers.iter().enumerate() {
            cell(f, header, col)?;
        }
        for (row, label) in labels.iter().enumerate() {
            write!(f, "\n{label:label_width$}")?;
            for col in 0..across {
                cell(f, &cells[row * across + col], col)?;
            }
        }
        Ok(())
    }
}
