#!/usr/bin/env bash
# `cogvideox bench`: every mode at tiny sizes with --repeat 1 --json must print exactly one JSON object on stdout
# (one line; progress goes to stderr) holding cpu, isa, threads and the mode's figures; the PyTorch comparison says
# "not installed" without torch and embeds the script's figures with it (a stand-in torch module and script);
# bad arguments exit 1, a missing model folder exits 2 with a message (the rule of every subcommand). `bench
# deviation` on the tiny model: finite
# figures, bf16 latents not identical to fp32 and within the documented bound, no VAE run.
set -euo pipefail
bin=${1:?usage: cli_bench.sh path/to/cogvideox}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
have_python=0
command -v python3 >/dev/null 2>&1 && have_python=1

# check NAME FILE KEY... : FILE is one line, one JSON object, with every KEY at its top level.
check() {
  local name=$1 file=$2
  shift 2
  if [ "$(wc -l <"$file")" -ne 1 ] || ! grep -qx '{.*}' "$file"; then
    echo "FAIL: $name: stdout is not one JSON object on one line: $(head -c 400 "$file")"
    fail=1
    return
  fi
  if [ "$have_python" = 1 ]; then
    python3 - "$file" "$@" <<'PY' || { echo "FAIL: $name: $(head -c 400 "$file")"; fail=1; }
import json, sys
o = json.load(open(sys.argv[1]))
assert isinstance(o, dict), "not an object"
missing = [k for k in sys.argv[2:] if k not in o]
assert not missing, "missing keys %s" % missing
for k in ("seconds", "gflops", "fraction_of_peak"):
    if k in o:
        assert isinstance(o[k], (int, float)) and o[k] > 0, "%s = %r" % (k, o[k])
assert isinstance(o["threads"], int) and o["threads"] >= 1
PY
  else
    for k in "$@"; do
      grep -q "\"$k\":" "$file" || { echo "FAIL: $name: no \"$k\" in $(head -c 400 "$file")"; fail=1; }
    done
  fi
}
common=(cpu isa threads precision repeat)

"$bin" bench peak --repeat 1 --json >"$tmp/peak.json" 2>"$tmp/peak.err"
check peak "$tmp/peak.json" "${common[@]}" peak_gflops peak_gflops_median families_absent
grep -q '"peak_gflops":{' "$tmp/peak.json" || { echo "FAIL: peak: peak_gflops is not an object"; fail=1; }
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  grep -q '"fp32":' "$tmp/peak.json" || { echo "FAIL: peak: no fp32 family on an AVX-512 CPU"; fail=1; }
fi
grep -q '^{' "$tmp/peak.err" && { echo "FAIL: peak: JSON on stderr"; fail=1; }

for p in bf16 fp32; do
  "$bin" bench gemm --m 24 --k 40 --n 56 --precision $p --repeat 1 --threads 2 --json >"$tmp/gemm.json" 2>/dev/null
  check "gemm $p" "$tmp/gemm.json" "${common[@]}" m k n seconds seconds_median gflops gflops_median \
    fraction_of_peak peak_gflops torch
  grep -q "\"precision\":\"$p\"" "$tmp/gemm.json" || { echo "FAIL: gemm: precision $p not reported"; fail=1; }
  grep -q '"threads":2,' "$tmp/gemm.json" || { echo "FAIL: gemm: --threads 2 not reported"; fail=1; }
done

# the bf16 path that ran, and on the AMX path its fraction of the tdpbf16ps peak; the AVX512-BF16 path of an AMX
# machine, forced, reports its own name and no AMX fraction
"$bin" bench gemm --m 40 --k 64 --n 64 --repeat 1 --json >"$tmp/gemm.json" 2>/dev/null
check "gemm bf16_path" "$tmp/gemm.json" "${common[@]}" bf16_path
if "$bin" info --cpu 2>/dev/null | grep -q '^best path *amx'; then
  check "gemm amx" "$tmp/gemm.json" bf16_path fraction_of_amx_peak peak_gflops_amx
  grep -q '"bf16_path":"amx"' "$tmp/gemm.json" || { echo "FAIL: gemm: bf16_path is not amx on an AMX machine"; fail=1; }
  CVX_FORCE_ISA=avx512bf16 "$bin" bench gemm --m 40 --k 64 --n 64 --repeat 1 --json >"$tmp/gemm2.json" 2>/dev/null
  grep -q '"bf16_path":"avx512bf16"' "$tmp/gemm2.json" && ! grep -q fraction_of_amx_peak "$tmp/gemm2.json" ||
    { echo "FAIL: gemm forced avx512bf16: $(head -c 400 "$tmp/gemm2.json")"; fail=1; }
fi

"$bin" bench attention --tokens 20 --heads 2 --head-dim 16 --repeat 1 --json >"$tmp/att.json" 2>/dev/null
check attention "$tmp/att.json" "${common[@]}" tokens heads head_dim seconds seconds_median gflops fraction_of_peak

"$bin" bench block --tokens 2 --repeat 1 --json >"$tmp/block.json" 2>/dev/null
check block "$tmp/block.json" "${common[@]}" tokens joint_tokens seconds seconds_median gflops fraction_of_peak \
  parts_seconds torch
grep -q '"joint_tokens":228,' "$tmp/block.json" || { echo "FAIL: block: 2 + 226 joint tokens expected"; fail=1; }

"$bin" make-model --preset tiny -o "$tmp/model" >/dev/null 2>&1
"$bin" bench generate -m "$tmp/model" --steps 1 --frames 5 --repeat 1 --json >"$tmp/gen.json" 2>/dev/null
check generate "$tmp/gen.json" "${common[@]}" stage_seconds stage_seconds_median seconds seconds_median peak_rss_gb
grep -q '"stage_seconds":{"encode":[^,]*,"denoise":[^,]*,"decode":[^,]*,"write":' "$tmp/gen.json" ||
  { echo "FAIL: generate: stage_seconds: $(cat "$tmp/gen.json")"; fail=1; }
# --no-decode: stopped after the denoising, its stage times reported (denoise > 0), no decode timed
"$bin" bench generate -m "$tmp/model" --steps 2 --frames 5 --repeat 1 --no-decode --json >"$tmp/gennd.json" 2>/dev/null
[ "$have_python" = 0 ] || python3 - "$tmp/gennd.json" <<'PY' || { echo "FAIL: generate --no-decode: $(head -c 600 "$tmp/gennd.json")"; fail=1; }
import json, sys
j = json.load(open(sys.argv[1]))
s = j["stage_seconds"]
assert j["decoded"] is False and s["encode"] > 0 and s["denoise"] > 0 and s["decode"] == 0, s
assert abs(j["seconds_per_step"] - s["denoise"] / 2) <= 1e-4 * s["denoise"], j["seconds_per_step"]
PY
# --cache: the computed steps are reported (the first and the last always run); a bad spec is a usage error
"$bin" bench generate -m "$tmp/model" --steps 4 --frames 5 --repeat 1 --cache teacache:0.1 --json >"$tmp/genc.json" 2>/dev/null
check "generate --cache" "$tmp/genc.json" computed_steps computed_step_count cache
grep -q '"cache":"teacache:0.1' "$tmp/genc.json" && grep -q '"computed_steps":\[0,.*3\]' "$tmp/genc.json" ||
  { echo "FAIL: generate --cache: $(head -c 400 "$tmp/genc.json")"; fail=1; }
set +e
"$bin" bench generate -m "$tmp/model" --cache teacache:x --json >/dev/null 2>"$tmp/genc.err"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "cache" "$tmp/genc.err" || { echo "FAIL: generate --cache teacache:x: exit $rc (want 1, a usage error)"; fail=1; }

# i2v: the VAE encode of one image and one denoising step of an image-to-video model (make-model tiny-i2v), with
# the step's FLOPs and fraction of the peak; a text-to-video folder is refused as a usage error.
"$bin" make-model --preset tiny-i2v -o "$tmp/i2v" >/dev/null 2>&1
"$bin" bench i2v -m "$tmp/i2v" --repeat 1 --json >"$tmp/i2v.json" 2>"$tmp/i2v.err" ||
  { echo "FAIL: bench i2v: $(tail -3 "$tmp/i2v.err")"; fail=1; }
check i2v "$tmp/i2v.json" cpu isa threads seconds flops gflops fraction_of_peak vae_encode_seconds in_channels
grep -q '"in_channels":32' "$tmp/i2v.json" || { echo "FAIL: bench i2v: $(head -c 400 "$tmp/i2v.json")"; fail=1; }
set +e
"$bin" bench i2v -m "$tmp/model" --repeat 1 --json >/dev/null 2>"$tmp/i2v2.err"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "image-to-video" "$tmp/i2v2.err" || { echo "FAIL: bench i2v on a t2v model: exit $rc"; fail=1; }

# deviation without --frames: the model's default frames (sample_frames, 9 for the tiny model), as the engine resolves
# them (cvx_engine_info), in the latent shape too.
"$bin" bench deviation -m "$tmp/model" --steps 1 --json >"$tmp/dev0.json" 2>"$tmp/dev0.err" &&
  grep -q '"frames":9' "$tmp/dev0.json" && grep -q '"latent_shape":\[1,3,' "$tmp/dev0.json" ||
  { echo "FAIL: deviation with the default frames: $(head -c 300 "$tmp/dev0.json") $(tail -2 "$tmp/dev0.err")"; fail=1; }

# deviation: fp32 then bf16 of one generation, stopped before the VAE. The relative rms is held to the documented
# bound of the e2e latents class (tests/data/bf16_tolerances.json: max|bf16 − fp32| / rms(fp32); rms of the
# difference <= its max, so the same number bounds it); identical latents would mean bf16 was not used.
"$bin" bench deviation -m "$tmp/model" --frames 5 --height 48 --width 80 --seed 5 --json >"$tmp/dev.json" \
  2>"$tmp/dev.err" || { echo "FAIL: deviation: exit $?: $(tail -3 "$tmp/dev.err")"; fail=1; }
check deviation "$tmp/dev.json" cpu isa threads bf16_path steps latent_shape fp32 bf16 deviation deviation_step1
if [ "$have_python" = 1 ]; then
  if ! python3 - "$tmp/dev.json" "$(dirname "$0")/data/bf16_tolerances.json" <<'PY'
import json, math, sys
o = json.load(open(sys.argv[1]))
bound = json.load(open(sys.argv[2]))["components"]["e2e"]["default"]["atol_rms"]
assert o["steps"] == 2, "default steps %r" % o["steps"]
assert o["latent_shape"] == [1, 2, 16, 6, 10], o["latent_shape"]
for run in ("fp32", "bf16"):
    r = o[run]
    for k in ("setup_seconds", "denoise_seconds", "seconds_per_step"):
        assert isinstance(r[k], (int, float)) and math.isfinite(r[k]) and r[k] >= 0, (run, k, r[k])
    assert r["stopped_before_decode"] is True, "%s ran the VAE" % run
for key in ("deviation", "deviation_step1"):
    d = o[key]
    for k in ("max_abs", "rms_diff", "rms_fp32", "relative_rms", "max_abs_over_rms_fp32", "cosine"):
        assert isinstance(d[k], (int, float)) and math.isfinite(d[k]), (key, k, d[k])
    assert d["nonfinite"] == 0, (key, d)
    assert d["identical"] is False and d["differing_fraction"] > 0 and d["rms_diff"] > 0, \
        "%s: bf16 latents identical to fp32: bf16 was not used" % key
    assert d["rms_fp32"] > 0.5, (key, d)
    assert d["relative_rms"] <= bound, "%s: relative rms %g above the e2e bound %g" % (key, d["relative_rms"], bound)
    assert abs(d["relative_rms"] - d["rms_diff"] / d["rms_fp32"]) <= 1e-4 * d["relative_rms"], d
    assert d["max_abs"] >= d["rms_diff"], d
    assert d["cosine"] >= 1 - bound * bound and d["cosine"] <= 1 + 1e-9, (key, d["cosine"])
PY
  then
    echo "FAIL: deviation: $(head -c 900 "$tmp/dev.json")"
    fail=1
  fi
else
  grep -q '"identical":false' "$tmp/dev.json" || { echo "FAIL: deviation: not identical=false"; fail=1; }
fi
grep -q '^{' "$tmp/dev.err" && { echo "FAIL: deviation: JSON on stderr"; fail=1; }

# PyTorch: absent here unless a module named torch imports; a stand-in module and script exercise the other branch.
# (the bench also tries Debian's /usr/bin/python3, where apt's python3-torch lives)
if ! python3 -c 'import torch' >/dev/null 2>&1 && ! /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
  grep -q '"torch":"not installed"' "$tmp/block.json" || { echo "FAIL: block: torch absence not said"; fail=1; }
fi
if [ "$have_python" = 1 ]; then
  mkdir -p "$tmp/fake"
  echo "__version__ = 'stand-in'" >"$tmp/fake/torch.py"
  printf '%s\n' 'import json, sys' 'json.dump({"seconds": 5.0, "args": sys.argv[1:]}, sys.stdout)' >"$tmp/script.py"
  PYTHONPATH="$tmp/fake" "$bin" bench gemm --m 8 --k 8 --n 8 --repeat 1 --json --torch-script "$tmp/script.py" \
    >"$tmp/torch.json" 2>/dev/null
  check "gemm with torch" "$tmp/torch.json" "${common[@]}" torch speedup_vs_torch
  grep -q '"args":\["gemm","--m","8","--k","8","--n","8"' "$tmp/torch.json" ||
    { echo "FAIL: torch script arguments: $(cat "$tmp/torch.json")"; fail=1; }
fi

# Errors.
expect_rc() { # rc, args...
  local want=$1 rc=0
  shift
  "$bin" bench "$@" >"$tmp/err.out" 2>"$tmp/err.txt" || rc=$?
  if [ "$rc" -ne "$want" ]; then echo "FAIL: bench $*: exit $rc, expected $want"; fail=1; fi
  if [ -s "$tmp/err.out" ]; then echo "FAIL: bench $*: printed on stdout after an error"; fail=1; fi
  if [ ! -s "$tmp/err.txt" ]; then echo "FAIL: bench $*: no message"; fail=1; fi
}
# The exit-code rule of every subcommand (README): a usage error (no mode, an unknown one, a bad or missing value,
# an unknown flag) exits 1; a model, file or I/O failure exits 2; messages start with "cogvideox bench".
expect_rc 1
expect_rc 1 nosuchmode
expect_rc 1 gemm --precision fp16
expect_rc 1 gemm --m 0
expect_rc 1 gemm --m x12
expect_rc 1 peak --repeat 0
expect_rc 1 attention --tokens
expect_rc 1 block --bogus
expect_rc 1 generate --steps 1
expect_rc 1 generate -m "$tmp/model" --guidance nan
expect_rc 1 generate -m "$tmp/model" --frames 6 --repeat 1
expect_rc 2 generate -m "$tmp/no-such-folder" --repeat 1
expect_rc 1 deviation --steps 1
expect_rc 1 deviation -m "$tmp/model" --steps 0
expect_rc 2 deviation -m "$tmp/no-such-folder"
"$bin" bench gemm --m 0 2>"$tmp/err.txt" >/dev/null || true
grep -q "^cogvideox bench: --m needs an integer" "$tmp/err.txt" || { echo "FAIL: bench message prefix: $(cat "$tmp/err.txt")"; fail=1; }

if [ "$fail" -ne 0 ]; then echo "cli_bench: FAILED"; exit 1; fi
echo "cli_bench: all checks passed"
