#!/usr/bin/env bash
# The README's main job through the binary: make-model tiny, then generate with the defaults; ffprobe must show
# h264, yuv420p, the requested frame count, fps and size (the tiny model's default frames and size come from its
# transformer config, as cvx_engine_info says: sample_frames, sample_height/width × 8). Also a non-default frame
# count, fps and size.
set -euo pipefail
bin=${1:?usage: cli_generate.sh path/to/cogvideox}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" make-model --preset tiny -o "$tmp/model" >/dev/null 2>&1
probe() {
  ffprobe -v error -select_streams v:0 -count_frames \
    -show_entries stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames -of default=noprint_wrappers=1 "$1"
}
fail=0
expect() { # file, expected lines...
  local out
  out=$(probe "$1")
  shift
  for want in "$@"; do
    if ! grep -qx "$want" <<<"$out"; then echo "FAIL: expected $want in: $out"; fail=1; fi
  done
}
"$bin" generate -m "$tmp/model" -p "a red fox in the snow" -o "$tmp/default.mp4" --quiet
h=$(sed -n 's/.*"sample_height": *\([0-9]*\).*/\1/p' "$tmp/model/transformer/config.json")
w=$(sed -n 's/.*"sample_width": *\([0-9]*\).*/\1/p' "$tmp/model/transformer/config.json")
f=$(sed -n 's/.*"sample_frames": *\([0-9]*\).*/\1/p' "$tmp/model/transformer/config.json")
[ "$f" = 9 ] || { echo "FAIL: the tiny model's sample_frames is '$f', not 9"; fail=1; }
expect "$tmp/default.mp4" codec_name=h264 pix_fmt=yuv420p "nb_read_frames=$f" r_frame_rate=8/1 "width=$((w * 8))" "height=$((h * 8))"
"$bin" generate -m "$tmp/model" -p "a red fox in the snow" -o "$tmp/small.mp4" --frames 9 --fps 12 \
  --height 32 --width 64 --steps 3 --preview "$tmp/small.webp" --json >"$tmp/summary.json" 2>/dev/null
head -c 16 "$tmp/small.webp" | grep -q "WEBPVP8X" || { echo "FAIL: --preview did not write an animated WebP"; fail=1; }
expect "$tmp/small.mp4" codec_name=h264 pix_fmt=yuv420p nb_read_frames=9 r_frame_rate=12/1 width=64 height=32
grep -q '"frames": 9' "$tmp/summary.json" || { echo "FAIL: --json summary: $(cat "$tmp/summary.json")"; fail=1; }
# 13 frames = 4 latent frames (even): the reference's VAE returns 16
"$bin" generate -m "$tmp/model" -p "x" -o "$tmp/even.mp4" --frames 13 --steps 2 --quiet
expect "$tmp/even.mp4" nb_read_frames=16
# The same frames give the same MP4 bytes, whatever the heap held before (MALLOC_PERTURB_ fills it): x264's
# AVX-512 code used to read memory it never wrote.
MALLOC_PERTURB_=165 "$bin" generate -m "$tmp/model" -p "x" -o "$tmp/p1.mp4" --frames 9 --steps 2 --quiet
MALLOC_PERTURB_=77 "$bin" generate -m "$tmp/model" -p "x" -o "$tmp/p2.mp4" --frames 9 --steps 2 --quiet
cmp -s "$tmp/p1.mp4" "$tmp/p2.mp4" || { echo "FAIL: the same generation gave two different MP4 files"; fail=1; }
if [ "$fail" -ne 0 ]; then echo "1 passed, 1 failed"; exit 1; fi
echo "cli_generate: 4 passed, 0 failed"
