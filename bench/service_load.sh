#!/usr/bin/env bash
# Load figures of the task service (issue 15), in one run on this machine:
#  1. Task/Detail, GET /healthz and Run: requests/s, p50/p90/p99 and errors (bench_service: C clients with
#     keep-alive, signed calls, a stand-in engine that finishes at once) for SQLite on one API node, PostgreSQL on one
#     API node and PostgreSQL on two API nodes (the clients alternate between them);
#  2. queue throughput: tasks per minute of the real tiny model with one and with two `cogvideox worker` processes
#     behind a `serve --no-worker` API node on PostgreSQL (TASKS tasks of SIZE (WxHxFRAMES), STEPS steps each);
#  3. serving a video of OUTPUT_BYTES (3 MB): GET /files/... from the outputs folder (SQLite) and from the database
#     (PostgreSQL, 1 and 2 nodes), in the same runs as 1.
# PostgreSQL is a throw-away server of tests/pg_server.sh (Unix socket, fsync off: the figures are the service's,
# not a disk's). Not a test: it prints figures. Say what else the machine was running when you quote them.
#   bench/service_load.sh BUILD_DIR [SECONDS] [CLIENTS]     (env TASKS=12 STEPS=20 SIZE=160x96x13 THREADS=1
#                                                             OUTPUT_BYTES=3000000)
set -u
BUILD=$(cd "${1:?usage: service_load.sh BUILD_DIR [SECONDS] [CLIENTS]}" && pwd)
SECONDS_PER=${2:-5}
CLIENTS=${3:-16}
TASKS=${TASKS:-12}
STEPS=${STEPS:-20}
SIZE=${SIZE:-160x96x13}
OUTPUT_BYTES=${OUTPUT_BYTES:-3000000}
IFS=x read -r W H F <<<"$SIZE"
THREADS=${THREADS:-1}
HERE=$(cd "$(dirname "$0")/.." && pwd)
BIN=$BUILD/cogvideox
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-service-load-XXXXXX")
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    bash "$HERE/tests/pg_server.sh" stop "$TMP/pg" >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
PG=$(bash "$HERE/tests/pg_server.sh" start "$TMP/pg") || { echo "service_load: PostgreSQL did not start"; exit 1; }
echo "# $(date -u +%FT%TZ) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## HTTP: $CLIENTS clients, $SECONDS_PER s per phase"
"$BUILD/bench/bench_service" --clients "$CLIENTS" --seconds "$SECONDS_PER" --output-bytes "$OUTPUT_BYTES"
PSQL="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/psql"
psql_db() { "$PSQL" "$PG" -qc "$1" >/dev/null 2>&1; }
psql_db "CREATE DATABASE h1"
psql_db "CREATE DATABASE h2"
"$BUILD/bench/bench_service" --clients "$CLIENTS" --seconds "$SECONDS_PER" --output-bytes "$OUTPUT_BYTES" --store "$PG dbname=h1"
"$BUILD/bench/bench_service" --clients "$CLIENTS" --seconds "$SECONDS_PER" --output-bytes "$OUTPUT_BYTES" --store "$PG dbname=h2" --nodes 2

echo "## queue: $TASKS tiny-model tasks of $STEPS steps at $SIZE, workers with --threads $THREADS, PostgreSQL"
cd "$TMP" || exit 1
"$BIN" make-model --preset tiny -o tiny >/dev/null 2>&1 || { echo "make-model failed"; exit 1; }
for workers in 1 2; do
    db="$PG dbname=q$workers"
    psql_db "CREATE DATABASE q$workers"
    "$BIN" keys create --store "$db" --key-file server.key --mode key-only --json >k.json 2>/dev/null
    KEY=$(sed -n 's/.*"apikey": "\([^"]*\)".*/\1/p' k.json)
    "$BIN" serve --no-worker --model tiny --store "$db" --key-file server.key --listen 127.0.0.1:0 \
        --run-rate 0 >api.out 2>api.err &
    PIDS+=($!)
    for i in $(seq 1 100); do PORT=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' api.out); [ -n "$PORT" ] && break; sleep 0.1; done
    TOKS=()
    for k in $(seq 1 "$TASKS"); do
        TOKS+=("$(curl -s -X POST "http://127.0.0.1:$PORT/v1/Run/THUDM/CogVideoX-2b" -H "x-api-key: $KEY" \
            -H "Content-Type: application/json" -d "{\"prompt\":\"queue $k\",\"steps\":$STEPS,\"seed\":$k,\"width\":$W,\"height\":$H,\"numFrames\":$F}" |
            sed -n 's/.*"socketaccesstoken":"\([^"]*\)".*/\1/p')")
    done
    t0=$(date +%s%3N)
    for w in $(seq 1 $workers); do
        "$BIN" worker --model tiny --store "$db" --name "w$w" --threads "$THREADS" >"w$w.err" 2>&1 &
        PIDS+=($!)
    done
    for t in "${TOKS[@]}"; do
        until curl -s -X POST "http://127.0.0.1:$PORT/v1/Task/Detail" -H "x-api-key: $KEY" -H "Content-Type: application/json" \
            -d "{\"tasktoken\":\"$t\"}" | grep -q '"status":"task_postprocess_end"'; do sleep 0.05; done
    done
    t1=$(date +%s%3N)
    awk -v n="$TASKS" -v ms=$((t1 - t0)) -v w="$workers" \
        'BEGIN { printf "queue: %d worker%s: %d tasks in %.1f s = %.1f tasks/minute\n", w, (w > 1 ? "s" : ""), n, ms / 1000, n * 60000 / ms }'
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    PIDS=()
done
