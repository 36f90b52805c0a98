#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install the packages, build, make the tiny random-weight model
# (diffusers layout, real T5 tokenizer) and describe it. Run from anywhere, as root.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"
model=${CVX_DEMO_MODEL:-models/tiny}
./build/cogvideox make-model --preset tiny -o "$model"
./build/cogvideox info "$model"
./build/cogvideox info --cpu
