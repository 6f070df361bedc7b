#!/usr/bin/env bash
# The GPU checks, for a machine with an NVIDIA GPU and its driver: the RDMA
# crate's tests with the `cuda` feature (GPU memory registered, read and
# written in one process, through CUDA IPC from another process of the host,
# and through pinned staging over bulk streams), then the GPU bandwidth
# bench. Under five minutes on one GPU. Without a GPU every GPU test says so
# and passes.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
nvidia-smi -L || echo "nvidia-smi is missing: the tests will report whether the driver loads"
timeout 240 cargo test --release -p monarch-rs-rdma --features cuda --test gpu -- --nocapture
