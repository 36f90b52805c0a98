#!/usr/bin/env bash
# Image-to-video and video-to-video through the binary on make-model folders (no shared data needed; the golden
# comparison through the CLI is tests/test_conditioned_cli.c): make-model --preset tiny-i2v; info names the kind;
# generate --image (a PNG the t2v model wrote) and --video (an MP4, a folder of PNG frames, --frames N, --strength);
# encode --out writes prompt_embeds + negative_prompt_embeds and generate --embeddings with that file gives the same
# frames as the prompts themselves; error paths exit 1 or 2 with a message and write nothing.
set -uo pipefail
bin=${1:?usage: cli_i2v.sh path/to/cogvideox}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
"$bin" make-model --preset tiny -o "$tmp/t2v" >/dev/null 2>&1 || { echo "FAIL: make-model tiny"; exit 1; }
"$bin" make-model --preset tiny-i2v -o "$tmp/i2v" >/dev/null 2>&1 || { echo "FAIL: make-model tiny-i2v"; exit 1; }
"$bin" info "$tmp/i2v" >"$tmp/info_i2v" && "$bin" info "$tmp/t2v" >"$tmp/info_t2v" && "$bin" info --json "$tmp/i2v" >"$tmp/info.json" ||
  { echo "FAIL: info"; fail=1; }
grep -q '^kind  *i2v' "$tmp/info_i2v" || { echo "FAIL: info does not name i2v"; fail=1; }
grep -q '^kind  *t2v' "$tmp/info_t2v" || { echo "FAIL: info does not name t2v"; fail=1; }
grep -q '"kind": "i2v"' "$tmp/info.json" || { echo "FAIL: info --json kind"; fail=1; }

frames() { ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=nb_read_frames -of csv=p=0 "$1"; }
common=(--precision fp32 --quiet --steps 4)
# a t2v video as the input: MP4 + PNG frames (17 frames)
"$bin" generate -m "$tmp/t2v" -p "a red fox" --frames 17 -o "$tmp/in.mp4" --frames-dir "$tmp/in" "${common[@]}" ||
  { echo "FAIL: t2v run"; exit 1; }

# image-to-video: the first frame, 9 and 17 frames (17 recomputes the sincos table: sample_frames is 9)
for n in 9 17; do
  "$bin" generate -m "$tmp/i2v" -p "the fox runs" --image "$tmp/in/00000.png" --frames $n -o "$tmp/i2v_$n.mp4" \
    "${common[@]}" || { echo "FAIL: generate --image --frames $n"; fail=1; }
  [ "$(frames "$tmp/i2v_$n.mp4")" = $n ] || { echo "FAIL: i2v $n frames: $(frames "$tmp/i2v_$n.mp4")"; fail=1; }
done
# video-to-video: from the MP4, from the PNG folder, the first 9 frames, two strengths
"$bin" generate -m "$tmp/t2v" -p "a blue fox" --video "$tmp/in.mp4" --strength 0.5 -o "$tmp/v1.mp4" --json \
  "${common[@]}" >"$tmp/v1.json" ||
  { echo "FAIL: generate --video MP4"; fail=1; }
[ "$(frames "$tmp/v1.mp4")" = 17 ] || { echo "FAIL: v2v frames: $(frames "$tmp/v1.mp4")"; fail=1; }
"$bin" generate -m "$tmp/t2v" -p "a blue fox" --video "$tmp/in" --frames 9 --strength 1 -o "$tmp/v2.mp4" \
  --json "${common[@]}" >"$tmp/v2.json" || { echo "FAIL: generate --video DIR --frames 9"; fail=1; }
[ "$(frames "$tmp/v2.mp4")" = 9 ] || { echo "FAIL: v2v --frames 9: $(frames "$tmp/v2.mp4")"; fail=1; }
grep -q '"strength": 1' "$tmp/v2.json" || { echo "FAIL: --json has no strength"; cat "$tmp/v2.json"; fail=1; }
# the steps run: int(4 x 0.5) = 2 of the cut schedule, all 4 with strength 1
tr -d ' \n' <"$tmp/v1.json" | grep -q '"computed_steps":\[0,1\]' || { echo "FAIL: strength 0.5: $(cat "$tmp/v1.json")"; fail=1; }
tr -d ' \n' <"$tmp/v2.json" | grep -q '"computed_steps":\[0,1,2,3\]' || { echo "FAIL: strength 1: $(cat "$tmp/v2.json")"; fail=1; }

# --embeddings: encode --out writes both tensors; the same prompts through the file give the same frames
"$bin" encode -m "$tmp/t2v" --out "$tmp/e.safetensors" "a red fox" "blurry" >/dev/null ||
  { echo "FAIL: encode --out"; fail=1; }
grep -aq 'negative_prompt_embeds' "$tmp/e.safetensors" || { echo "FAIL: no negative_prompt_embeds"; fail=1; }
"$bin" generate -m "$tmp/i2v" -p "a red fox" -n "blurry" --image "$tmp/in/00000.png" --frames 9 -o "$tmp/p.mp4" \
  --frames-dir "$tmp/p" "${common[@]}" || { echo "FAIL: i2v with prompts"; fail=1; }
"$bin" generate -m "$tmp/i2v" --embeddings "$tmp/e.safetensors" --image "$tmp/in/00000.png" --frames 9 \
  -o "$tmp/e.mp4" --frames-dir "$tmp/e" "${common[@]}" || { echo "FAIL: i2v with --embeddings"; fail=1; }
for f in "$tmp"/p/*.png; do
  cmp -s "$f" "$tmp/e/$(basename "$f")" || { echo "FAIL: --embeddings frame $(basename "$f") differs"; fail=1; break; }
done

# errors: exit code, a message, nothing written
expect() { # rc message-piece args...
  local want=$1 msg=$2
  shift 2
  rm -f "$tmp/bad.mp4"
  "$bin" generate "$@" -o "$tmp/bad.mp4" --quiet --precision fp32 >/dev/null 2>"$tmp/err"
  local rc=$?
  if [ $rc != "$want" ] || ! grep -q -- "$msg" "$tmp/err" || [ -e "$tmp/bad.mp4" ]; then
    echo "FAIL: generate $*: exit $rc (wanted $want), stderr: $(cat "$tmp/err")"; fail=1
  fi
}
printf 'not an image' >"$tmp/bad.png"
# a valid safetensors file without prompt_embeds: {"x": F32 [1]}
h='{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
printf "$(printf '\\x%02x\\x00\\x00\\x00\\x00\\x00\\x00\\x00' ${#h})%s\x00\x00\x80\x3f" "$h" >"$tmp/x.safetensors"
mkdir -p "$tmp/empty"
expect 1 "pass an image" -m "$tmp/i2v" -p x
expect 1 "takes no image" -m "$tmp/t2v" -p x --image "$tmp/in/00000.png"
expect 2 "bad.png" -m "$tmp/i2v" -p x --image "$tmp/bad.png"
expect 2 "no .png frames" -m "$tmp/t2v" -p x --video "$tmp/empty"
expect 2 "/nonexistent" -m "$tmp/t2v" -p x --video /nonexistent.mp4
expect 1 "asks for more" -m "$tmp/t2v" -p x --video "$tmp/in" --frames 21
expect 1 "at least 9" -m "$tmp/t2v" -p x --video "$tmp/in/00000.png"
expect 1 "160x96" -m "$tmp/i2v" -p x --image "$tmp/in/00000.png" --width 160 --height 96
expect 1 "image is 80x48" -m "$tmp/i2v" -p x --image "$tmp/in/00000.png" --width 96 --height 48
expect 1 "strength" -m "$tmp/t2v" -p x --video "$tmp/in" --strength 0.1 --steps 4
expect 1 "from 0 to 1" -m "$tmp/t2v" -p x --video "$tmp/in" --strength 1.5
expect 1 "pick one" -m "$tmp/t2v" -p x --video "$tmp/in" --image "$tmp/in/00000.png"
expect 2 "--embeddings" -m "$tmp/t2v" --embeddings "$tmp/in.mp4"
expect 2 "no \"prompt_embeds\"" -m "$tmp/t2v" --embeddings "$tmp/x.safetensors"
expect 1 "-p PROMPT" -m "$tmp/t2v"
exit $fail
