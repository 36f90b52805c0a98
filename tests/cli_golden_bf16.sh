#!/bin/bash
# cogvideox golden --precision bf16: the t5, transformer, pipeline, e2e, vae, i2v and v2v golden cases (the project's copies,
# then ../shared/golden's when present) run the bf16 path and pass within the bf16 bound of the built-in table
# (tests/data/bf16_tolerances.json, derived in docs/bf16-tolerances.md); the other components still run in fp32
# with their own tolerances; a table tighter than the measured deviations makes them FAIL (the bound bites);
# bad flags are usage errors (exit 1), a missing or bad table a file error (exit 2).
set -u
BIN="$1"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0

run_bf16() { # label path...
  local label="$1"
  shift
  "$BIN" golden --precision bf16 "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" != 0 ]; then echo "FAIL $label: exit $rc"; cat "$T/out" "$T/err"; fail=1; return; fi
  # every case of a component with a bf16 path ran in bf16
  if grep -E '^(PASS|FAIL|SKIP) (t5|transformer|pipeline|e2e|vae|i2v|v2v)/' "$T/out" | grep -v '\[bf16\]' | grep -q .; then
    echo "FAIL $label: a case ran without bf16"; cat "$T/out"; fail=1
  fi
  grep -q '^PASS .*\[bf16\]' "$T/out" || { echo "FAIL $label: no bf16 case ran"; cat "$T/out"; fail=1; }
  cat "$T/out"
}

D=tests/data/golden
S=../shared/golden
# every native bf16 path of this machine (AMX tiles and AVX512-BF16 on an AMX machine), each chosen as users
# choose it (CVX_FORCE_ISA); the best path first, without the variable
paths=("")
"$BIN" info --cpu 2>/dev/null | grep -q '^best path *amx' && paths+=(avx512bf16)
for isa in "${paths[@]}"; do
  if [ -n "$isa" ]; then export CVX_FORCE_ISA=$isa; else unset CVX_FORCE_ISA; fi
  tag=${isa:-best path}
  run_bf16 "project cases ($tag)" "$D/t5" "$D/transformer" "$D/pipeline" "$D/e2e" "$D/vae" "$D/i2v" "$D/v2v" "$D/rope"
  grep -q '^PASS rope ' "$T/out" || { echo "FAIL: rope (no bf16 path) did not run in fp32"; fail=1; }
  if [ -d "$S" ]; then
    dirs=()
    for c in t5 transformer pipeline e2e vae i2v v2v; do [ -d "$S/$c" ] && dirs+=("$S/$c"); done
    [ ${#dirs[@]} -gt 0 ] && run_bf16 "shared cases ($tag)" "${dirs[@]}"
  fi
done
unset CVX_FORCE_ISA

# the bound bites: a table 100x tighter than the measured deviations fails the same cases
sed -E 's/"atol_rms": ([0-9.]+)/"atol_rms": 0.0001/g' tests/data/bf16_tolerances.json >"$T/tight.json"
"$BIN" golden --precision bf16 --bf16-tolerances "$T/tight.json" "$D/transformer" >"$T/out" 2>&1
rc=$?
[ "$rc" = 3 ] && grep -q '^FAIL transformer/.*\[bf16\]' "$T/out" || { echo "FAIL tight table: exit $rc"; cat "$T/out"; fail=1; }
"$BIN" golden --precision bf16 --bf16-tolerances "$T/tight.json" "$D/vae/decode_fp16w_t3" >"$T/out" 2>&1
rc=$?
[ "$rc" = 3 ] && grep -q '^FAIL vae/.*\[bf16\]' "$T/out" || { echo "FAIL tight table (vae): exit $rc"; cat "$T/out"; fail=1; }

# the i2v bound bites too
"$BIN" golden --precision bf16 --bf16-tolerances "$T/tight.json" "$D/i2v" >"$T/out" 2>&1
rc=$?
[ "$rc" = 3 ] && grep -q '^FAIL i2v/.*\[bf16\]' "$T/out" || { echo "FAIL tight table (i2v): exit $rc"; cat "$T/out"; fail=1; }

expect_rc() { # label rc command...
  local label="$1" want="$2"
  shift 2
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" != "$want" ] || [ ! -s "$T/err" ]; then echo "FAIL $label: exit $rc (wanted $want), stderr: $(cat "$T/err")"; fail=1; fi
}
expect_rc "--precision fp16" 1 "$BIN" golden --precision fp16 "$D/transformer"
expect_rc "missing table" 2 "$BIN" golden --precision bf16 --bf16-tolerances "$T/none.json" "$D/transformer"
echo '{"format": "cogvideox-bf16-tolerances/1", "components": {"t5": {"default": {"rtol": 0}}}}' >"$T/bad.json"
expect_rc "bad table" 2 "$BIN" golden --precision bf16 --bf16-tolerances "$T/bad.json" "$D/transformer"
grep -q 'atol_rms' "$T/err" || { echo "FAIL bad table: message does not name the field: $(cat "$T/err")"; fail=1; }

exit $fail
