#!/usr/bin/env bash
# The model-folder commands through the real binary: make-model tiny, info (text and --json), info --cpu, and
# the corruption cases (tensor removed, file truncated, header corrupted, wrong shape), each of which must fail
# with a non-zero exit and a message naming the problem, never a crash.
set -u
BIN=${1:?usage: cli_model.sh path/to/cogvideox}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-cli-model-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect_fail DESCRIPTION NEEDLE... -- CMD...: non-zero exit (not a signal) and every NEEDLE in stderr
expect_fail() {
    local what=$1; shift
    local needles=()
    while [ "$1" != "--" ]; do needles+=("$1"); shift; done
    shift
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ $rc -eq 0 ]; then bad "$what: exit 0"; return; fi
    if [ $rc -ge 128 ]; then bad "$what: killed by signal $((rc - 128))"; cat "$TMP/err"; return; fi
    for n in "${needles[@]}"; do
        if ! grep -qF -- "$n" "$TMP/err"; then bad "$what: '$n' not in: $(cat "$TMP/err")"; return; fi
    done
    ok "$what: $(head -c 300 "$TMP/err")"
}

M=$TMP/tiny
"$BIN" make-model --preset tiny --seed 1 -o "$M" >"$TMP/out" 2>"$TMP/err" || { bad "make-model tiny"; cat "$TMP/err"; }
grep -q "wrote $M: preset tiny" "$TMP/out" && ok "make-model tiny" || bad "make-model output: $(cat "$TMP/out")"
for f in model_index.json tokenizer/spiece.model tokenizer/tokenizer_config.json tokenizer/special_tokens_map.json \
         tokenizer/added_tokens.json text_encoder/config.json text_encoder/model.safetensors.index.json \
         text_encoder/model-00001-of-00002.safetensors text_encoder/model-00002-of-00002.safetensors \
         transformer/config.json transformer/diffusion_pytorch_model.safetensors vae/config.json \
         vae/diffusion_pytorch_model.safetensors scheduler/scheduler_config.json; do
    [ -s "$M/$f" ] || bad "make-model: $f missing"
done
size=$(du -sk "$M" | cut -f1)
[ "$size" -lt 10240 ] && ok "tiny folder is ${size} kB" || bad "tiny folder is ${size} kB (> 10 MB)"

"$BIN" info "$M" >"$TMP/info" 2>"$TMP/err" || bad "info: $(cat "$TMP/err")"
for n in "CogVideoXPipeline" "T5EncoderModel" "CogVideoXTransformer3DModel" "AutoencoderKLCogVideoX" \
         "CogVideoXDDIMScheduler" "518,544 params" "45,344 params" "245,383 params" "total         809,271 params" \
         "peak memory" "default video 9 frames of 48x80" "weights       random: random weights from cogvideox make-model"; do
    grep -qF -- "$n" "$TMP/info" || bad "info: '$n' missing"
done
ok "info tiny"
"$BIN" info --json "$M" >"$TMP/info.json" 2>"$TMP/err" && grep -q '"total_parameters": 809271' "$TMP/info.json" &&
    ok "info --json" || bad "info --json: $(head -c 300 "$TMP/info.json") $(cat "$TMP/err")"
"$BIN" info --cpu >"$TMP/cpu" 2>&1 && grep -q "^best path" "$TMP/cpu" && grep -q "^active path" "$TMP/cpu" &&
    ok "info --cpu" || bad "info --cpu: $(cat "$TMP/cpu")"
CVX_FORCE_ISA=ref "$BIN" info --cpu --json >"$TMP/cpu.json" 2>&1 && grep -q '"active_path": "ref"' "$TMP/cpu.json" &&
    grep -q '"force_isa": "ref"' "$TMP/cpu.json" && ok "info --cpu --json with CVX_FORCE_ISA=ref" ||
    bad "info --cpu --json: $(cat "$TMP/cpu.json")"

# Corruption cases on copies of the folder.
fresh() { rm -rf "$TMP/c"; cp -r "$M" "$TMP/c"; }
TR=$TMP/c/transformer/diffusion_pytorch_model.safetensors

fresh  # a tensor removed from the file (renamed in the header: the real name is then missing)
perl -0777 -pi -e 's/"transformer_blocks\.1\.attn1\.to_k\.weight"/"transformer_blocks.1.attn1.to_k.weighX"/' "$TR"
expect_fail "tensor removed" "transformer" "transformer_blocks.1.attn1.to_k.weight" "missing" -- "$BIN" info "$TMP/c"

fresh  # a truncated file
truncate -s -1000 "$TMP/c/vae/diffusion_pytorch_model.safetensors"
expect_fail "truncated file" "vae" "diffusion_pytorch_model.safetensors" -- "$BIN" info "$TMP/c"

fresh  # a corrupted header
printf '#!' | dd of="$TMP/c/text_encoder/model-00002-of-00002.safetensors" bs=1 seek=8 conv=notrunc 2>/dev/null
expect_fail "corrupted header" "text_encoder" "model-00002-of-00002.safetensors" "JSON" -- "$BIN" info "$TMP/c"

fresh  # a wrong shape (same byte count: [128,32] -> [32,128])
perl -0777 -pi -e 's/("transformer_blocks\.0\.ff\.net\.2\.weight":\{"dtype":"F16","shape":)\[32,128\]/$1\[128,32\]/' "$TR"
expect_fail "wrong shape" "transformer_blocks.0.ff.net.2.weight" "shape" "[128, 32]" "[32, 128]" -- "$BIN" info "$TMP/c"

fresh  # an unknown class in model_index.json
perl -0777 -pi -e 's/CogVideoXDDIMScheduler/EulerDiscreteScheduler/' "$TMP/c/model_index.json"
expect_fail "unknown class" "EulerDiscreteScheduler" "not supported" -- "$BIN" info "$TMP/c"

fresh  # a config value of the wrong type
perl -0777 -pi -e 's/"num_layers": 2/"num_layers": "2"/' "$TMP/c/transformer/config.json"
expect_fail "bad config" "num_layers" "config.json" -- "$BIN" info "$TMP/c"

fresh  # a missing component folder
rm -rf "$TMP/c/vae"
expect_fail "missing component" "vae" -- "$BIN" info "$TMP/c"

expect_fail "no such folder" "does not exist" -- "$BIN" info "$TMP/nonexistent"
# What the weights are (cvx_engine_info, shown by info, generate --json, serve's /healthz and Tool/Detail, the page):
# make-model's marker says random; without it, make-model's seed-0 draws are still recognised (folders written before
# the marker); other marker-less folders of no published shape are "unknown", never called a checkpoint.
grep -q '"weights": "random"' "$M/cogvideox_random_weights.json" && grep -q '"seed": 1' "$M/cogvideox_random_weights.json" &&
    ok "make-model writes its random-weights marker" || bad "marker: $(cat "$M/cogvideox_random_weights.json" 2>&1)"
"$BIN" info --json "$M" 2>/dev/null | grep -q '"weights": "random"' && ok "info --json: weights random" ||
    bad "info --json has no weights: random"
"$BIN" make-model --preset tiny -o "$TMP/seed0" >/dev/null 2>&1 && rm "$TMP/seed0/cogvideox_random_weights.json"
"$BIN" info "$TMP/seed0" 2>/dev/null | grep -q "^weights       random: cogvideox make-model's random weights (seed 0" &&
    ok "an unmarked seed-0 make-model folder is still reported random" || bad "unmarked seed 0: $("$BIN" info "$TMP/seed0" 2>&1 | sed -n 2p)"
rm "$M/cogvideox_random_weights.json"
"$BIN" info "$M" 2>/dev/null | grep -q "^weights       unknown: no make-model marker and not its seed-0 weights; not the shapes of a published" &&
    ok "an unmarked folder of other weights and no published shape is unknown" || bad "unmarked seed 1: $("$BIN" info "$M" 2>&1 | sed -n 2p)"

expect_fail "bad preset" "unknown preset" -- "$BIN" make-model --preset huge -o "$TMP/x"
expect_fail "bad dtype" "unknown dtype" -- "$BIN" make-model --dtype f8 -o "$TMP/x"
expect_fail "no output" "-o DIR" -- "$BIN" make-model

if [ $fails -ne 0 ]; then echo "cli_model: $fails failure(s)"; exit 1; fi
echo "cli_model: all passed"
