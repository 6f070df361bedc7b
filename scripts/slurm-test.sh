#!/usr/bin/env bash
# The SLURM launcher's test against a real single-node cluster, started for
# it and stopped after (root; installs Debian's slurm-wlm and munge if
# missing):
#
#   scripts/slurm-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
state=$(mktemp -d /tmp/monarch-slurm-cluster.XXXXXX)
trap 'scripts/slurm-single-node.sh stop "$state"' EXIT
scripts/slurm-single-node.sh start "$state"
cargo test -p monarch-rs-cli --test slurm -- --ignored --nocapture
