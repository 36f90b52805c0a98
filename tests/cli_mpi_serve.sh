#!/usr/bin/env bash
# The service over several processes (issue 17): `mpirun -np 2 cogvideox serve` — rank 0 serves (HTTP, store,
# worker) and sends each job to rank 1, and both generate it (CFG halves, the VAE in row bands) — and `mpirun -np 2
# cogvideox worker` behind a `serve --no-worker` API node. A task run through the API (the model page's signed curl
# calls) ends task_postprocess_end with an MP4 byte-identical to the one a one-process server writes for the same
# inputs — for a text-to-video model and for an image-to-video one (tiny-i2v, the image uploaded as a multipart file
# part, which rank 0 hands to the other rank); SIGTERM to mpirun stops both ranks cleanly.
# MPI missing is the only reason to skip (exit 0 with SKIP).
set -u
BIN=${1:?usage: cli_mpi_serve.sh path/to/cogvideox}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
if ! command -v mpirun >/dev/null 2>&1 || ! ldd "$BIN" 2>/dev/null | grep -q libmpi; then
    echo "SKIP: no MPI (mpirun, or a binary built with it)"
    exit 0
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-cli-mpi-serve-XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
cd "$TMP" || exit 1
export ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0
umask 077
"$BIN" make-model --preset tiny -o tiny >/dev/null 2>&1 || bad "make-model"
"$BIN" make-model --preset tiny-i2v -o tiny-i2v >/dev/null 2>&1 || bad "make-model tiny-i2v"
ffmpeg -v error -f lavfi -i testsrc=s=80x48 -frames:v 1 first.png || bad "ffmpeg could not make the test image"

# one server: NAME MODEL, then the launcher's words before the binary (none: one process)
start() {
    local name=$1 model=$2
    shift 2
    mkdir -p "$name"
    "$BIN" keys create --store "$name/s.db" --json >"$name/k.json" 2>"$name/k.err" || bad "$name keys: $(cat "$name/k.err")"
    "$@" "$BIN" serve --model "$model" --store "$name/s.db" --outputs "$name/out" --listen 127.0.0.1:0 --threads 1 \
        --precision fp32 >"$name/serve.out" 2>"$name/serve.err" &
    PIDS+=($!)
    eval "${name}_pid=$!"
    for _ in $(seq 1 200); do
        grep -q '^listening on' "$name/serve.out" 2>/dev/null && break
        sleep 0.1
    done
    eval "${name}_port=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$name/serve.out")"
}
jfield() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p" | head -n 1; }

task() { # NAME PORT [IMAGE]: runs one task (with IMAGE: multipart, IMAGE as the file part inputImage), downloads
          # NAME/video.mp4
    local name=$1 port=$2 image=${3:-} key secret nonce sig token
    key=$(sed -n 's/.*"apikey": *"\([^"]*\)".*/\1/p' "$name/k.json")
    secret=$(sed -n 's/.*"apisecret": *"\([^"]*\)".*/\1/p' "$name/k.json")
    nonce=$(date +%s)
    sig="$(echo -n "${secret}${nonce}" | openssl dgst -sha256 -hmac "${key}")"
    if [ -n "$image" ]; then
        curl -s -X POST "http://127.0.0.1:$port/v1/Run/THUDM/CogVideoX-2b" -H "x-api-key: $key" -H "x-nonce: $nonce" \
            -H "x-signature: $sig" -F "prompt=a paper boat on a river" -F steps=4 -F seed=99 \
            -F "inputImage=@$image;type=image/png" >"$name/run.json"
    else
        curl -s -X POST "http://127.0.0.1:$port/v1/Run/THUDM/CogVideoX-2b" -H "x-api-key: $key" -H "x-nonce: $nonce" \
            -H "x-signature: $sig" -d '{"prompt": "a paper boat on a river", "steps": 4, "seed": "99"}' >"$name/run.json"
    fi
    token=$(jfield socketaccesstoken <"$name/run.json")
    [ -n "$token" ] || { bad "$name Run: $(cat "$name/run.json")"; return; }
    for _ in $(seq 1 600); do
        curl -s -X POST "http://127.0.0.1:$port/v1/Task/Detail" -H "x-api-key: $key" -H "x-nonce: $nonce" \
            -H "x-signature: $sig" -d "{\"tasktoken\": \"$token\"}" >"$name/detail.json"
        grep -q '"status":"task_postprocess_end"\|"status":"task_cancel"' "$name/detail.json" && break
        sleep 0.1
    done
    if grep -q '"status":"task_postprocess_end"' "$name/detail.json" && grep -q '"pexit":"0"' "$name/detail.json"; then
        curl -s -o "$name/video.mp4" "$(jfield url <"$name/detail.json")"
        ok "$name: task done, $(stat -c %s "$name/video.mp4") bytes of MP4"
    else
        bad "$name: task did not end well: $(head -c 600 "$name/detail.json") $(tail -n 5 "$name/serve.err")"
    fi
}

start one tiny
start two tiny mpirun --allow-run-as-root --oversubscribe -np 2 --mca btl self,vader,tcp -x ASAN_OPTIONS
# an API node without a worker, and `cogvideox worker` over 2 processes on its store
mkdir -p three
"$BIN" keys create --store three/s.db --json >three/k.json 2>three/k.err || bad "three keys: $(cat three/k.err)"
"$BIN" serve --no-worker --model tiny --store three/s.db --outputs three/out --listen 127.0.0.1:0 --threads 1 \
    --precision fp32 >three/serve.out 2>three/serve.err &
PIDS+=($!)
mpirun --allow-run-as-root --oversubscribe -np 2 --mca btl self,vader,tcp -x ASAN_OPTIONS "$BIN" worker --model tiny \
    --store three/s.db --outputs three/out --threads 1 --precision fp32 >three/worker.out 2>three/worker.err &
PIDS+=($!)
three_worker=$!
for _ in $(seq 1 200); do grep -q '^listening on' three/serve.out 2>/dev/null && break; sleep 0.1; done
three_port=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' three/serve.out)
[ -n "$one_port" ] && [ -n "$two_port" ] && ok "servers listening: one process on $one_port, two on $two_port" ||
    bad "servers: $(cat one/serve.err two/serve.err | tail -n 8)"
task one "$one_port"
task two "$two_port"
task three "$three_port"
cmp -s one/video.mp4 two/video.mp4 && ok "the two-process server's MP4 is byte-identical to the one-process server's" ||
    bad "the MP4s differ ($(stat -c %s one/video.mp4 two/video.mp4 2>&1 | tr '\n' ' '))"
cmp -s one/video.mp4 three/video.mp4 && ok "a task run by a 2-process worker behind an API node: the same MP4" ||
    bad "the 2-process worker's MP4 differs ($(tail -n 3 three/worker.err))"

# image-to-video: the uploaded image reaches every rank
start i2v_one tiny-i2v
start i2v_two tiny-i2v mpirun --allow-run-as-root --oversubscribe -np 2 --mca btl self,vader,tcp -x ASAN_OPTIONS
task i2v_one "$i2v_one_port" first.png
task i2v_two "$i2v_two_port" first.png
cmp -s i2v_one/video.mp4 i2v_two/video.mp4 &&
    ok "image-to-video from a multipart upload: the two-process server's MP4 is byte-identical to the one-process one's" ||
    bad "the i2v MP4s differ ($(stat -c %s i2v_one/video.mp4 i2v_two/video.mp4 2>&1 | tr '\n' ' '); $(tail -n 5 i2v_two/serve.err))"
kill -TERM "$i2v_two_pid" "$i2v_one_pid" 2>/dev/null
wait "$i2v_two_pid" "$i2v_one_pid" 2>/dev/null
kill -TERM "$three_worker" 2>/dev/null
ranks=$(pgrep -f "serve --model tiny --store two/s.db" | wc -l)
[ "$ranks" -ge 2 ] && ok "both ranks of the two-process server are running ($ranks processes)" ||
    bad "two-process server: $ranks processes"
kill -TERM "$two_pid"
rc=0
for _ in $(seq 1 100); do kill -0 "$two_pid" 2>/dev/null || break; sleep 0.1; done
wait "$two_pid"
rc=$?
left=1
for _ in $(seq 1 100); do # a loaded machine (ASan, other tests) may take a moment to reap the ranks
    left=$(pgrep -f "serve --model tiny --store two/s.db" | wc -l)
    [ "$left" = 0 ] && break
    sleep 0.1
done
# mpirun forwards the signal to every rank; rank 0 alone acts on it (the others wait for its word), stops the
# service and tells the others to go. (mpirun itself exits 1 when it was signalled, whatever the ranks returned.)
if [ "$left" = 0 ] && grep -q "SIGTERM: stopping" two/serve.err && ! grep -qi "error\|rank 1)" two/serve.err; then
    ok "SIGTERM to mpirun: every rank stopped cleanly (mpirun exit $rc)"
else
    bad "SIGTERM: mpirun exit $rc, $left processes left: $(tail -n 20 two/serve.err)"
fi
[ $fails -eq 0 ] && echo "cli_mpi_serve: all checks passed" || echo "cli_mpi_serve: $fails check(s) failed"
exit $((fails > 0))
