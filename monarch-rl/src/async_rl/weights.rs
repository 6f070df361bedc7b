//! Versioned weight sync: a generator pulls the newest published version of
//! the trainer's weights out of its [`SnapshotRing`](monarch_rdma::SnapshotRing)
//! with one-sided reads, only when it is newer than the one it holds.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use candle_core::Var;
use monarch_rdma::{RdmaError, RingHandle};
use serde::{Deserialize, Serialize};

use crate::train::{FlatError, FlatWeights, TensorLayout};

/// What a generator needs to follow a trainer's weights: the ring's handle
/// and the layout of every snapshot in it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WeightSource {
    /// The ring the trainer publishes into.
    pub ring: RingHandle,
    /// Where each parameter lies in a snapshot.
    pub layout: Vec<TensorLayout>,
}

/// One completed sync, for the logs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncRecord {
    /// The version loaded.
    pub version: u64,
    /// The version held before (0: none).
    pub previous: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Time of the read and the load, in seconds.
    pub seconds: f64,
}

impl SyncRecord {
    /// How many versions the generator was behind.
    pub fn gap(&self) -> u64 {
        self.version - self.previous
    }
}

/// A sync that did not complete; the weights held before are kept.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The trainer has not published a version yet.
    #[error("the trainer has published no weights yet")]
    NothingPublished,
    /// The read did not finish in time.
    #[error("weight sync did not finish within {0:?}: the trainer's process may be gone or the machine overloaded")]
    Deadline(Duration),
    /// The read failed.
    #[error("weight sync read failed: {0}")]
    Read(#[from] RdmaError),
    /// The snapshot does not fit the model.
    #[error("the published weights do not fit this model: {0}")]
    Layout(#[from] FlatError),
}

/// A generator's side of the weight sync.
pub struct WeightSync {
    source: WeightSource,
    buffer: FlatWeights,
    version: u64,
    deadline: Duration,
}

impl WeightSync {
    /// Follows `source`; every sync must finish within `deadline`.
    pub fn new(source: WeightSource, deadline: Duration) -> Self {
        let capacity = source.ring.capacity() as usize;
        WeightSync {
            buffer: FlatWeights {
                layout: source.layout.clone(),
                bytes: vec![0; capacity],
            },
            source,
            version: 0,
            deadline,
        }
    }

    /// The version of the weights last loaded (0: none).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Forgets which version the weights are (they were overwritten by
    /// other means), so that the next pull loads the newest whatever it is.
    pub fn forget(&mut self) {
        self.version = 0;
    }

    /// Loads the newest published version into `vars` if it is newer than
    /// the one held; `None` when it is not. A version overwritten while it
    /// was read is retried by the ring, which then reads the newest.
    pub async fn pull_if_newer(
        &mut self,
        vars: &HashMap<String, Var>,
    ) -> Result<Option<SyncRecord>, SyncError> {
        let started = Instant::now();
        let pull = async {
            let newest = self.source.ring.newest().await?;
            match newest {
                None => Err(SyncError::NothingPublished),
                Some(v) if v <= self.version => Ok(None),
                Some(_) => {
                    let capacity = self.source.ring.capacity() as usize;
                    self.buffer.bytes.resize(capacity, 0);
                    let (version, len) =
                        self.source.ring.read_newest(&mut self.buffer.bytes).await?;
                    self.buffer.bytes.truncate(len);
                    Ok(Some((version, len)))
                }
            }
        };
        let pulled = tokio::time::timeout(self.deadline, pull)
            .await
            .map_err(|_| SyncError::Deadline(self.deadline))??;
        let Some((version, len)) = pulled else {
            return Ok(None);
        };
        self.buffer.import(vars)?;
        let record = SyncRecord {
            version,
            previous: self.version,
            bytes: len as u64,
            seconds: started.elapsed().as_secs_f64(),
        };
        self.version = version;
        tracing::debug!(
            version,
            gap = record.gap(),
            bytes = len,
            seconds = record.seconds,
            "weights synced"
        );
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TinyConfig, TinyTransformer};
    use candle_core::Device;
    use monarch_rdma::SnapshotRing;

    fn small() -> TinyConfig {
        TinyConfig {
            vocab: 40,
            dim: 16,
            layers: 1,
            heads: 2,
            ffn: 32,
            max_len: 32,
        }
    }

    #[tokio::test]
    async fn a_generator_loads_only_newer_versions_exactly() {
        let (trainer_vars, _) = TinyTransformer::seeded(small(), 1, &Device::Cpu).unwrap();
        let (generator_vars, _) = TinyTransformer::seeded(small(), 2, &Device::Cpu).unwrap();
        let exported = FlatWeights::export(&trainer_vars.data().lock().unwrap()).unwrap();
        let mut ring = SnapshotRing::new(2, exported.bytes.len()).unwrap();
        let source = WeightSource {
            ring: ring.handle(),
            layout: exported.layout.clone(),
        };
        let mut sync = WeightSync::new(source, Duration::from_secs(10));
        let vars = generator_vars.data().lock().unwrap().clone();
        assert!(matches!(
            sync.pull_if_newer(&vars).await,
            Err(SyncError::NothingPublished)
        ));
        ring.publish(&exported.bytes).unwrap();
        let record = sync.pull_if_newer(&vars).await.unwrap().unwrap();
        assert_eq!((record.version, record.gap()), (1, 1));
        assert_eq!(record.bytes, exported.bytes.len() as u64);
        assert_eq!(FlatWeights::export(&vars).unwrap(), exported);
        assert!(sync.pull_if_newer(&vars).await.unwrap().is_none());
        ring.publish(&exported.bytes).unwrap();
        ring.publish(&exported.bytes).unwrap();
        let record = sync.pull_if_newer(&vars).await.unwrap().unwrap();
        assert_eq!((record.version, record.gap()), (3, 2));
    }
}
