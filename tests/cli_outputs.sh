#!/usr/bin/env bash
# Outputs checked before any work (issue 14, item 1): a missing folder of -o / --preview is created, a path that
# cannot be written (a file in the way, a read-only place, a wrong extension) fails at once — before the model is
# opened (the error names the output even when -m does not exist) and in well under a second with the real tiny
# model — and serve checks --outputs at start. An existing output is refused before any work unless --overwrite
# (then replaced with a word about it); the MP4 carries the generation's parameters as container tags that ffprobe
# reads, with nothing that varies between runs (two identical runs give identical bytes); --json lists the
# generation's parameters and the preview (issue 14, item 7).
set -u
BIN=${1:?usage: cli_outputs.sh path/to/cogvideox}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-cli-outputs-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect RC DESCRIPTION NEEDLE -- CMD...: exit code RC and NEEDLE in stderr
expect() {
    local want=$1 what=$2 needle=$3; shift 4
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ $rc -ne "$want" ]; then bad "$what: exit $rc (want $want): $(head -c 300 "$TMP/err")"; return; fi
    if ! grep -qF -- "$needle" "$TMP/err"; then bad "$what: '$needle' not in: $(head -c 300 "$TMP/err")"; return; fi
    ok "$what: $(head -n 1 "$TMP/err")"
}
now_ms() { date +%s%3N; }

M=$TMP/tiny
"$BIN" make-model --preset tiny -o "$M" >/dev/null 2>&1 || bad "make-model tiny"
: >"$TMP/afile"

# Before the model: the output is named even though the model folder does not exist.
expect 2 "file in the way, no model" "-o $TMP/afile/out.mp4" -- \
    "$BIN" generate -m "$TMP/nonexistent" -p x -o "$TMP/afile/out.mp4"
expect 1 "-o out.avi" "name it *.mp4 (not .avi)" -- "$BIN" generate -m "$TMP/nonexistent" -p x -o "$TMP/out.avi"
expect 1 "--preview out.gif" "*.webp" -- "$BIN" generate -m "$M" -p x -o "$TMP/a.mp4" --preview "$TMP/p.gif"
expect 2 "--frames-dir under a file" "--frames-dir $TMP/afile/frames" -- \
    "$BIN" generate -m "$TMP/nonexistent" -p x -o "$TMP/a.mp4" --frames-dir "$TMP/afile/frames"
mkdir -p "$TMP/dir.mp4"
expect 2 "-o an existing folder" "is a folder" -- "$BIN" generate -m "$M" -p x -o "$TMP/dir.mp4"
expect 2 "-o in /proc" "cannot create its folder /proc/cvx-no" -- "$BIN" generate -m "$M" -p x -o /proc/cvx-no/out.mp4
# Timed: the full default run of the tiny model (50 steps, 49 frames) must fail before any of it starts.
t0=$(now_ms)
expect 2 "timed: -o under a file with the real model" "$TMP/afile/x/out.mp4" -- \
    "$BIN" generate -m "$M" -p "a red fox" -o "$TMP/afile/x/out.mp4"
t1=$(now_ms)
[ $((t1 - t0)) -lt 1000 ] && ok "failed after $((t1 - t0)) ms" || bad "the output check took $((t1 - t0)) ms"

# A missing folder is created, as --frames-dir always did.
"$BIN" generate -m "$M" -p x -o "$TMP/new/deeper/out.mp4" --preview "$TMP/prev/p.webp" --frames 5 --steps 1 \
    --height 16 --width 16 --quiet 2>"$TMP/err" && [ -s "$TMP/new/deeper/out.mp4" ] && [ -s "$TMP/prev/p.webp" ] &&
    ok "-o and --preview in new folders" || bad "-o in a new folder: $(cat "$TMP/err")"
ls -a "$TMP/new/deeper" | grep -q cogvideox-write-test && bad "the probe file stayed" || true

# An existing output is refused (exit 1, before the model is opened: -m does not exist here) unless --overwrite; each
# kind of output: the MP4, the preview, a frames folder holding frames.
before=$(cksum <"$TMP/new/deeper/out.mp4")
expect 1 "an existing -o without --overwrite" "-o $TMP/new/deeper/out.mp4: the file exists; add --overwrite to replace it" -- \
    "$BIN" generate -m "$TMP/nonexistent" -p x -o "$TMP/new/deeper/out.mp4"
[ "$(cksum <"$TMP/new/deeper/out.mp4")" = "$before" ] && ok "the existing MP4 is untouched" || bad "the existing MP4 changed"
expect 1 "an existing --preview without --overwrite" "--preview $TMP/prev/p.webp: the file exists; add --overwrite" -- \
    "$BIN" generate -m "$TMP/nonexistent" -p x -o "$TMP/fresh.mp4" --preview "$TMP/prev/p.webp"
mkdir -p "$TMP/frames" && : >"$TMP/frames/00000.png"
expect 1 "--frames-dir with frames without --overwrite" "--frames-dir $TMP/frames: a frame (00000.png) exists; add --overwrite" -- \
    "$BIN" generate -m "$TMP/nonexistent" -p x -o "$TMP/fresh.mp4" --frames-dir "$TMP/frames"
# With --overwrite it is replaced, and the run says so; --json names what made the video and the preview.
"$BIN" generate -m "$M" -p "a red fox" -n "blur" -o "$TMP/new/deeper/out.mp4" --preview "$TMP/prev/p.webp" --frames 5 \
    --steps 2 --height 16 --width 16 --seed 9 --overwrite --json >"$TMP/sum.json" 2>"$TMP/err" ||
    bad "second run: $(cat "$TMP/err")"
grep -q "out.mp4 exists; it is replaced when the generation succeeds" "$TMP/err" && ok "--overwrite: replacing is said" ||
    bad "no word about replacing: $(cat "$TMP/err")"
for want in '"prompt": "a red fox"' '"negative_prompt": "blur"' '"steps": 2' '"seed": 9' '"guidance_scale": 6' \
            '"scheduler": "ddim"' "\"preview\": \"$TMP/prev/p.webp\"" "\"model\": \"$M\""; do
    grep -qF -- "$want" "$TMP/sum.json" || bad "--json lacks $want: $(cat "$TMP/sum.json")"
done
ok "--json lists the parameters, the model and the preview"

# The MP4's container tags: what made it, readable with ffprobe, and no run-varying field (the same run twice gives
# the same bytes).
tags=$(ffprobe -v error -show_entries format_tags -of default=noprint_wrappers=1 "$TMP/new/deeper/out.mp4" 2>&1)
for want in "TAG:prompt=a red fox" "TAG:negative_prompt=blur" "TAG:seed=9" "TAG:steps=2" "TAG:guidance_scale=6" \
            "TAG:scheduler=ddim" "TAG:dynamic_cfg=false" "TAG:frames=5" "TAG:size=16x16" "TAG:cache=off" \
            "TAG:model=tiny (custom, random weights)" "TAG:generator=cogvideox "; do
    grep -qF -- "$want" <<<"$tags" || bad "ffprobe: no '$want' in: $tags"
done
grep -qi "creation_time\|date" <<<"$tags" && bad "a run-varying tag: $tags" || ok "ffprobe reads the parameters as tags: $(grep -c TAG: <<<"$tags") tags"
"$BIN" generate -m "$M" -p "a red fox" -n "blur" -o "$TMP/again.mp4" --frames 5 --steps 2 --height 16 --width 16 \
    --seed 9 --quiet 2>"$TMP/err" && cmp -s "$TMP/again.mp4" "$TMP/new/deeper/out.mp4" &&
    ok "the same generation again: the same MP4 bytes, tags included" || bad "a second identical run differs: $(cat "$TMP/err")"

# serve: --outputs checked at start, before the model is opened
expect 2 "serve --outputs under a file" "--outputs $TMP/afile/out" -- \
    "$BIN" serve --model "$TMP/nonexistent" --store "$TMP/s.db" --outputs "$TMP/afile/out" --listen 127.0.0.1:0

if [ $fails -ne 0 ]; then echo "cli_outputs: $fails failed"; exit 1; fi
echo "cli_outputs: all passed"
