#!/usr/bin/env bash
# Builds cogvideox and runs the whole test suite twice — an optimized build and an AddressSanitizer +
# UndefinedBehaviorSanitizer build — then runs every libFuzzer target briefly over its seed corpus.
# Installs the Debian packages it needs first (scripts/install-deps.sh). Run from anywhere, as root.
#   CVX_TEST_JOBS     parallel build/test jobs (default: number of cores)
#   CVX_FUZZ_SECONDS  seconds per fuzz target (default 20; 0 skips the fuzz smoke run)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
jobs=${CVX_TEST_JOBS:-$(nproc)}
fuzz_seconds=${CVX_FUZZ_SECONDS:-20}

run_suite() { # name build-dir cmake-args...
  local name=$1 dir=$2
  shift 2
  echo "=== $name: configure + build ($dir)"
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  echo "=== $name: tests"
  (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 1800)
}

run_suite "optimized" build -DCMAKE_BUILD_TYPE=Release
# ASan/UBSan: abort on the first report; leaks count as failures.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
run_suite "asan+ubsan" build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCVX_SANITIZE=ON

if [ "$fuzz_seconds" != "0" ]; then
  echo "=== fuzz smoke: ${fuzz_seconds}s per target (clang, libFuzzer + ASan/UBSan)"
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCVX_FUZZ=ON -DCVX_SANITIZE=ON \
    -DCVX_BUILD_TESTS=OFF >/dev/null
  cmake --build build-fuzz -j "$jobs"
  for bin in build-fuzz/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    corpus="fuzz/corpus/${name#fuzz_}"
    work=$(mktemp -d)
    [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
    echo "--- $name"
    log="$work.log"
    if ! "$bin" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$work" >"$log" 2>&1; then
      tail -n 60 "$log"
      echo "fuzz target $name failed"
      exit 1
    fi
    grep -E "stat::number_of_executed_units" "$log" || true
    rm -rf "$work" "$log"
  done
fi
echo "=== all tests passed"
