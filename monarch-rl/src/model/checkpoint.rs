//! A trained policy on disk: what `async_rl --save DIR` writes and
//! `monarch zorplex eval --policy model --model-path DIR` reads.
//!
//! A checkpoint is a folder: `model.json` (the [`ModelSpec`] and the policy
//! version), `layout.json` (the [`TensorLayout`] table), `weights.bin` (the
//! flat little-endian weights that table describes) and, for the tiny
//! transformer, `tokenizer.json` (the Zorplex tokenizer's pieces in id
//! order, checked against this build's on load). A pretrained model's
//! checkpoint names the file or folder it was loaded from, which must still
//! be there: its architecture and tokenizer come from it, its weights from
//! the checkpoint.

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::{
    AnyModel, AnyTokenizer, BuiltModel, ModelError, ModelPolicy, ModelSpec, TextTokenizer,
    ZorplexTokenizer,
};
use crate::train::{FlatError, FlatWeights, TensorLayout};

/// What `model.json` says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointInfo {
    /// The model, and where a pretrained one was loaded from.
    pub model: ModelSpec,
    /// The policy version the weights are.
    pub version: u64,
}

/// A checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("{path}: {error}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        error: serde_json::Error,
    },
    /// The model the checkpoint names could not be built.
    #[error("{path}: building its {family} model: {error}")]
    Build {
        /// `model.json`.
        path: PathBuf,
        /// The model family.
        family: &'static str,
        /// What failed.
        error: ModelError,
    },
    /// The checkpoint's tokenizer is not this build's Zorplex tokenizer.
    #[error("{path}: the tokenizer differs from this build's Zorplex tokenizer at id {id}: the checkpoint was made by another version")]
    Tokenizer {
        /// `tokenizer.json`.
        path: PathBuf,
        /// The first id that differs.
        id: usize,
    },
    /// The weights do not fit the model the checkpoint describes.
    #[error("{path}: {error}")]
    Weights {
        /// `weights.bin`.
        path: PathBuf,
        /// What does not fit.
        error: FlatError,
    },
}

/// Writes the model whose parameters are `vars` into `dir` (created if
/// needed), replacing a checkpoint there.
pub fn save_checkpoint(
    dir: &Path,
    model: &ModelSpec,
    vars: &VarMap,
    version: u64,
) -> Result<CheckpointInfo, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|error| CheckpointError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    let flat =
        FlatWeights::export(&vars.data().lock().expect("var map lock")).map_err(|error| {
            CheckpointError::Weights {
                path: dir.join("weights.bin"),
                error,
            }
        })?;
    let info = CheckpointInfo {
        model: model.clone(),
        version,
    };
    if let ModelSpec::Tiny { .. } = model {
        let tokenizer = ZorplexTokenizer::new();
        let pieces: Vec<&str> = (0..tokenizer.vocab_size())
            .map(|id| tokenizer.piece(id as u32).unwrap_or(""))
            .collect();
        write_json(&dir.join("tokenizer.json"), &pieces)?;
    }
    write_json(&dir.join("model.json"), &info)?;
    write_json(&dir.join("layout.json"), &flat.layout)?;
    write(&dir.join("weights.bin"), &flat.bytes)?;
    Ok(info)
}

/// Loads the checkpoint in `dir` onto `device`: the model, its parameters,
/// its tokenizer and what `model.json` says.
pub fn load_checkpoint(
    dir: &Path,
    device: &Device,
) -> Result<(BuiltModel, CheckpointInfo), CheckpointError> {
    let (weights, info) = read_checkpoint(dir)?;
    let built = info
        .model
        .build(0, device)
        .map_err(|error| CheckpointError::Build {
            path: dir.join("model.json"),
            family: info.model.family(),
            error,
        })?;
    weights
        .import(&built.vars.data().lock().expect("var map lock"))
        .map_err(|error| CheckpointError::Weights {
            path: dir.join("weights.bin"),
            error,
        })?;
    Ok((built, info))
}

/// The weights in the checkpoint in `dir` as one flat buffer, with what
/// `model.json` says, without building the model (a tiny transformer's
/// tokenizer is checked against this build's).
pub fn read_checkpoint(dir: &Path) -> Result<(FlatWeights, CheckpointInfo), CheckpointError> {
    let info = read_checkpoint_info(dir)?;
    Ok((read_checkpoint_weights(dir)?, info))
}

/// What `model.json` of the checkpoint in `dir` says, without reading its
/// weights (a tiny transformer's tokenizer is checked against this
/// build's): enough to refuse a checkpoint of another model cheaply.
pub fn read_checkpoint_info(dir: &Path) -> Result<CheckpointInfo, CheckpointError> {
    let info: CheckpointInfo = read_json(&dir.join("model.json"))?;
    if let ModelSpec::Tiny { .. } = info.model {
        check_tokenizer(&dir.join("tokenizer.json"))?;
    }
    Ok(info)
}

/// The weights of the checkpoint in `dir` as one flat buffer, unchecked
/// against any model (see [`read_checkpoint_info`]).
pub fn read_checkpoint_weights(dir: &Path) -> Result<FlatWeights, CheckpointError> {
    let layout: Vec<TensorLayout> = read_json(&dir.join("layout.json"))?;
    let weights_path = dir.join("weights.bin");
    let bytes = std::fs::read(&weights_path).map_err(|error| CheckpointError::Io {
        path: weights_path,
        error,
    })?;
    Ok(FlatWeights { layout, bytes })
}

/// The checkpoint in `dir` as a Zorplex [`Policy`](crate::zorplex::Policy)
/// on the CPU, with what `model.json` says.
pub fn load_policy(
    dir: &Path,
) -> Result<(ModelPolicy<AnyModel, AnyTokenizer>, CheckpointInfo), CheckpointError> {
    let (built, info) = load_checkpoint(dir, &Device::Cpu)?;
    Ok((ModelPolicy::new(built.model, built.tokenizer), info))
}

/// Refuses a tiny transformer's checkpoint made with another tokenizer.
fn check_tokenizer(path: &Path) -> Result<(), CheckpointError> {
    let pieces: Vec<String> = read_json(path)?;
    let tokenizer = ZorplexTokenizer::new();
    let ours = tokenizer.vocab_size();
    match (0..pieces.len().max(ours))
        .find(|&id| pieces.get(id).map(String::as_str) != tokenizer.piece(id as u32))
    {
        Some(id) => Err(CheckpointError::Tokenizer {
            path: path.to_path_buf(),
            id,
        }),
        None => Ok(()),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    std::fs::write(path, bytes).map_err(|error| CheckpointError::Io {
        path: path.to_path_buf(),
        error,
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let text = serde_json::to_string_pretty(value).map_err(|error| CheckpointError::Json {
        path: path.to_path_buf(),
        error,
    })?;
    write(path, text.as_bytes())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(|error| CheckpointError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    serde_json::from_str(&text).map_err(|error| CheckpointError::Json {
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TinyConfig, TinyTransformer};

    fn spec() -> ModelSpec {
        ModelSpec::Tiny { config: config() }
    }

    fn config() -> TinyConfig {
        TinyConfig {
            vocab: ZorplexTokenizer::new().vocab_size(),
            dim: 16,
            layers: 1,
            heads: 2,
            ffn: 32,
            max_len: 64,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("monarch-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn load_error(dir: &Path) -> String {
        match load_checkpoint(dir, &Device::Cpu) {
            Ok(_) => panic!("a damaged checkpoint loaded"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_saved_model_loads_back_exactly() {
        let dir = scratch("round-trip");
        let (vars, model) = TinyTransformer::seeded(config(), 7, &Device::Cpu).unwrap();
        let info = save_checkpoint(&dir, &spec(), &vars, 12).unwrap();
        let (loaded, read) = load_checkpoint(&dir, &Device::Cpu).unwrap();
        assert_eq!(info, read);
        assert_eq!(read.version, 12);
        assert!(matches!(&loaded.model, AnyModel::Tiny(m) if m.config() == model.config()));
        let before = FlatWeights::export(&vars.data().lock().unwrap()).unwrap();
        let after = FlatWeights::export(&loaded.vars.data().lock().unwrap()).unwrap();
        assert_eq!(before, after);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_checkpoints_are_refused_with_the_file_named() {
        let dir = scratch("damaged");
        let (vars, _) = TinyTransformer::seeded(config(), 7, &Device::Cpu).unwrap();
        save_checkpoint(&dir, &spec(), &vars, 1).unwrap();

        let weights = dir.join("weights.bin");
        let bytes = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
        let error = load_error(&dir);
        assert!(error.contains("weights.bin"), "{error}");
        std::fs::write(&weights, &bytes).unwrap();

        std::fs::write(dir.join("tokenizer.json"), r#"["x"]"#).unwrap();
        let error = load_error(&dir);
        assert!(
            error.contains("tokenizer differs") && error.contains("id 0"),
            "{error}"
        );

        std::fs::remove_file(dir.join("model.json")).unwrap();
        let error = load_error(&dir);
        assert!(error.contains("model.json"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
