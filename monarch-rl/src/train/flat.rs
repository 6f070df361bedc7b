//! All of a model's parameters as one contiguous byte buffer with a small
//! layout table: what a trainer publishes into registered memory (one
//! transfer per version of the weights) and a generator loads back.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

/// Where one tensor lies in a [`FlatWeights`] buffer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorLayout {
    /// The parameter's name.
    pub name: String,
    /// Its element type (`f32`, `bf16`, `f16`, `f64`).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its first byte in the buffer (8-byte aligned).
    pub offset: usize,
    /// Its length in bytes.
    pub len: usize,
}

/// Named parameters exported into one buffer, in name order.
#[derive(Clone, Debug, PartialEq)]
pub struct FlatWeights {
    /// The layout table.
    pub layout: Vec<TensorLayout>,
    /// The bytes, little-endian.
    pub bytes: Vec<u8>,
}

/// A buffer does not fit the parameters it is loaded into.
#[derive(Debug, thiserror::Error)]
pub enum FlatError {
    /// A parameter has no entry in the layout, or the reverse.
    #[error("parameter `{0}` is in one of the layout and the model but not the other")]
    Missing(String),
    /// An entry's type or shape differs from the parameter's.
    #[error("parameter `{name}`: the layout says {layout}, the model has {model}")]
    Mismatch {
        /// The parameter.
        name: String,
        /// What the layout says.
        layout: String,
        /// What the model has.
        model: String,
    },
    /// An entry lies outside the buffer.
    #[error("parameter `{0}` lies outside the buffer")]
    OutOfBounds(String),
    /// An element type flat buffers do not carry.
    #[error("element type {0:?} is not supported in flat weights")]
    Unsupported(DType),
    /// candle failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl FlatWeights {
    /// Exports `vars`, by name.
    pub fn export(vars: &HashMap<String, Var>) -> Result<Self, FlatError> {
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        let mut layout = Vec::with_capacity(names.len());
        let mut bytes = Vec::new();
        for name in names {
            let tensor = vars[name].as_tensor().flatten_all()?;
            let offset = bytes.len().next_multiple_of(8);
            bytes.resize(offset, 0);
            append(&tensor, &mut bytes)?;
            layout.push(TensorLayout {
                name: name.clone(),
                dtype: dtype_name(tensor.dtype())?.to_string(),
                shape: vars[name].dims().to_vec(),
                offset,
                len: bytes.len() - offset,
            });
        }
        Ok(FlatWeights { layout, bytes })
    }

    /// Sets every one of `vars` from the buffer; the layout must name each
    /// exactly, with its type and shape.
    pub fn import(&self, vars: &HashMap<String, Var>) -> Result<(), FlatError> {
        if self.layout.len() != vars.len() {
            let missing = vars
                .keys()
                .find(|name| !self.layout.iter().any(|l| &l.name == *name))
                .cloned()
                .or_else(|| {
                    self.layout
                        .iter()
                        .find(|l| !vars.contains_key(&l.name))
                        .map(|l| l.name.clone())
                })
                .unwrap_or_default();
            return Err(FlatError::Missing(missing));
        }
        for entry in &self.layout {
            let var = vars
                .get(&entry.name)
                .ok_or_else(|| FlatError::Missing(entry.name.clone()))?;
            let model = format!("{} {:?}", dtype_name(var.dtype())?, var.dims());
            let said = format!("{} {:?}", entry.dtype, entry.shape);
            if model != said {
                return Err(FlatError::Mismatch {
                    name: entry.name.clone(),
                    layout: said,
                    model,
                });
            }
            let bytes = entry
                .offset
                .checked_add(entry.len)
                .and_then(|end| self.bytes.get(entry.offset..end))
                .ok_or_else(|| FlatError::OutOfBounds(entry.name.clone()))?;
            let tensor = read(bytes, var.dtype(), &entry.shape, var.device())?;
            var.set(&tensor)?;
        }
        Ok(())
    }
}

fn dtype_name(dtype: DType) -> Result<&'static str, FlatError> {
    Ok(match dtype {
        DType::F32 => "f32",
        DType::F64 => "f64",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        other => return Err(FlatError::Unsupported(other)),
    })
}

fn append(tensor: &Tensor, out: &mut Vec<u8>) -> Result<(), FlatError> {
    match tensor.dtype() {
        DType::F32 => out.extend_from_slice(bytemuck::cast_slice(&tensor.to_vec1::<f32>()?)),
        DType::F64 => out.extend_from_slice(bytemuck::cast_slice(&tensor.to_vec1::<f64>()?)),
        DType::BF16 => {
            out.extend_from_slice(bytemuck::cast_slice(&tensor.to_vec1::<half::bf16>()?))
        }
        DType::F16 => out.extend_from_slice(bytemuck::cast_slice(&tensor.to_vec1::<half::f16>()?)),
        other => return Err(FlatError::Unsupported(other)),
    }
    Ok(())
}

fn read(bytes: &[u8], dtype: DType, shape: &[usize], device: &Device) -> Result<Tensor, FlatError> {
    fn typed<T: bytemuck::Pod + candle_core::WithDType>(
        bytes: &[u8],
        shape: &[usize],
        device: &Device,
    ) -> Result<Tensor, FlatError> {
        // The buffer's alignment is the caller's: copy into an aligned vector.
        let values: Vec<T> = bytes
            .chunks_exact(std::mem::size_of::<T>())
            .map(bytemuck::pod_read_unaligned)
            .collect();
        Ok(Tensor::from_vec(values, shape, device)?)
    }
    match dtype {
        DType::F32 => typed::<f32>(bytes, shape, device),
        DType::F64 => typed::<f64>(bytes, shape, device),
        DType::BF16 => typed::<half::bf16>(bytes, shape, device),
        DType::F16 => typed::<half::f16>(bytes, shape, device),
        other => Err(FlatError::Unsupported(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(seed: f32) -> HashMap<String, Var> {
        let device = Device::Cpu;
        let mut vars = HashMap::new();
        let w: Vec<f32> = (0..24).map(|i| (i as f32 * 0.37 + seed).sin()).collect();
        vars.insert(
            "layer.w".into(),
            Var::from_tensor(&Tensor::from_vec(w, (4, 6), &device).unwrap()).unwrap(),
        );
        let b: Vec<half::bf16> = (0..5)
            .map(|i| half::bf16::from_f32(i as f32 - seed))
            .collect();
        vars.insert(
            "layer.b".into(),
            Var::from_tensor(&Tensor::from_vec(b, 5, &device).unwrap()).unwrap(),
        );
        vars
    }

    #[test]
    fn export_then_import_is_exact() {
        let source = model(0.5);
        let flat = FlatWeights::export(&source).unwrap();
        assert_eq!(flat.layout.len(), 2);
        assert!(flat.layout.iter().all(|l| l.offset % 8 == 0));
        let target = model(9.0);
        flat.import(&target).unwrap();
        for (name, var) in &source {
            let a = var.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
            let b = target[name]
                .flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap();
            assert_eq!(a.to_vec1::<f64>().unwrap(), b.to_vec1::<f64>().unwrap());
        }
        assert_eq!(FlatWeights::export(&target).unwrap(), flat);
    }

    #[test]
    fn a_buffer_that_does_not_fit_is_refused() {
        let mut flat = FlatWeights::export(&model(0.5)).unwrap();
        let mut other = model(0.5);
        other.remove("layer.b");
        assert!(matches!(flat.import(&other), Err(FlatError::Missing(_))));
        flat.layout[1].shape = vec![3, 8];
        assert!(matches!(
            flat.import(&model(1.0)),
            Err(FlatError::Mismatch { .. })
        ));
        flat.layout[1].shape = vec![4, 6];
        flat.layout[1].offset = flat.bytes.len();
        assert!(matches!(
            flat.import(&model(1.0)),
            Err(FlatError::OutOfBounds(_))
        ));
    }
}
