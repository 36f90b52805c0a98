#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install the packages, build, make the tiny random-weight model
# (diffusers layout, real T5 tokenizer) and generate a video with it: prompt → tokenizer → T5 → 50 DDIM steps of
# the transformer with classifier-free guidance → VAE → H.264 MP4. Run from anywhere, as root.
#   CVX_DEMO_MODEL   where to write the tiny model (default models/tiny)
#   CVX_DEMO_OUTPUT  the MP4 to write (default out/tiny.mp4)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"
model=${CVX_DEMO_MODEL:-models/tiny}
output=${CVX_DEMO_OUTPUT:-out/tiny.mp4}
mkdir -p "$(dirname "$output")"
./build/cogvideox make-model --preset tiny -o "$model"
./build/cogvideox info "$model"
./build/cogvideox generate -m "$model" -o "$output" --overwrite \
  -p "A sprawling futuristic city illuminated by neon lights, with flying cars zipping through the air."
ffprobe -v error -select_streams v:0 -count_frames \
  -show_entries stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames -of default=noprint_wrappers=1 \
  "$output"
echo "demo: wrote $output (random weights, so the frames are noise-like; the numbers match diffusers)"
