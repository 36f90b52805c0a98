#!/usr/bin/env bash
# `cogvideox serve` with an image-to-video model (make-model --preset tiny-i2v), through the real binary and engine,
# on 127.0.0.1:
#  - Tool/Detail lists inputImage (fileinput, image/*, the size limit) and the category image-to-video;
#  - Run with inputImage as a multipart file part: the task finishes with an MP4 (ffprobe), Task/Detail echoes the
#    file's name, not its bytes; the stored image is forgotten once the task ended;
#  - bad images get the error contract (result false, code 0): garbage bytes, an empty part, a part over 10 MiB, a
#    missing inputImage, a picture of another size than the video's, a file part under another name, a loopback URL
#    without --allow-private-inputs;
#  - an http URL on a loopback server with --allow-private-inputs, accepted by an API node without a worker
#    (--no-worker): after the node stops, a serve on the same store runs the queued task (its image is in the
#    store);
#  - a t2v model refuses a file part and keeps an inputImage text field as an unknown input.
# Every wait is bounded; only 127.0.0.1 is used.
set -u
BIN=${1:?usage: cli_service_i2v.sh path/to/cogvideox}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-cli-service-i2v-XXXXXX")
SERVER_PID=
HTTP_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null
    [ -n "$HTTP_PID" ] && kill "$HTTP_PID" 2>/dev/null
    [ -n "${STALL_PID:-}" ] && kill "$STALL_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: [${SECONDS}s] $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
jfield() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1; }

cd "$TMP" || exit 1
"$BIN" make-model --preset tiny-i2v -o i2v >/dev/null 2>&1 || { bad "make-model tiny-i2v"; exit 1; }
"$BIN" make-model --preset tiny -o t2v >/dev/null 2>&1 || { bad "make-model tiny"; exit 1; }
# the model's default video is 80x48: the image gives the size
ffmpeg -v error -f lavfi -i testsrc=s=80x48 -frames:v 1 in.png && ffmpeg -v error -f lavfi -i testsrc=s=96x48 \
    -frames:v 1 wide.png || { bad "ffmpeg could not make the test images"; exit 1; }
"$BIN" keys create --store s.db --mode key-only --json >k.json 2>/dev/null || { bad "keys create"; exit 1; }
KEY=$(jfield apikey <k.json)

start_server() { # MODEL EXTRA-ARGS...
    local model=$1
    shift
    : >serve.out
    "$BIN" serve --model "$model" --store s.db --outputs out --listen 127.0.0.1:0 --threads 1 "$@" >serve.out \
        2>>serve.err &
    SERVER_PID=$!
    PORT=
    local i
    for i in $(seq 1 200); do
        [ -z "$PORT" ] && PORT=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' serve.out | head -n 1)
        if [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then return 0; fi
        # an API node without a worker answers 503 until a worker beats: listening is enough then
        if [ -n "$PORT" ] && [ "$*" != "${*/--no-worker/}" ]; then return 0; fi
        sleep 0.05
    done
    bad "server did not start: $(cat serve.err)"
    exit 1
}
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}
api() { # PATH CURL-ARGS... -> stdout
    local path=$1
    shift
    curl -s -m 30 -H "x-api-key: $KEY" "$@" "http://127.0.0.1:$PORT/v1/$path"
}
run() { api Run/THUDM/CogVideoX-2b "$@"; }
wait_done() { # TOKEN -> detail.json; 0 when task_postprocess_end within 60 s
    local i
    for i in $(seq 1 300); do
        api Task/Detail -d "tasktoken=$1" >detail.json
        grep -q '"status":"task_postprocess_end"' detail.json && return 0
        grep -q '"status":"task_cancel"' detail.json && return 1
        sleep 0.2
    done
    return 1
}
# expect_error NAME MESSAGE-PIECE CURL-ARGS...: the error contract (HTTP 200, result false, code 0, the message)
expect_error() {
    local name=$1 msg=$2
    shift 2
    local code
    code=$(run -o err.json -w '%{http_code}' "$@")
    if [ "$code" = 200 ] && grep -q '"result":false' err.json && grep -q '"code":0' err.json &&
        grep -qF -- "$msg" err.json; then
        ok "$name: $(sed 's/.*"message":"\([^"]*\)".*/\1/' err.json)"
    else
        bad "$name: HTTP $code $(cat err.json)"
    fi
}

# ---- an i2v model, private inputs refused ----
start_server i2v
ok "serve i2v listening on $PORT"
api Tool/Detail -d '' >tool.json
tr -d ' \n' <tool.json | grep -q '"id":"inputImage","type":"fileinput"' && grep -q '"accept":"image/\*"' tool.json &&
    grep -q '"image-to-video"' tool.json && grep -q "\"max\":$((10 << 20))" tool.json &&
    ok "Tool/Detail lists inputImage (fileinput, image/*, 10 MiB)" || bad "Tool/Detail: $(cat tool.json)"

run -F prompt="the fox runs" -F steps=2 -F "inputImage=@in.png;type=image/png" >run.json
TOKEN=$(jfield socketaccesstoken <run.json)
if grep -q '"result":true' run.json && [ ${#TOKEN} -eq 30 ]; then ok "Run with a multipart image: $(cat run.json)"
else bad "Run with a multipart image: $(cat run.json)"; fi
if wait_done "$TOKEN"; then
    URL=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' detail.json | head -n 1)
    curl -s -o v.mp4 "$URL"
    frames=$(ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=nb_read_frames,width,height \
        -of csv=p=0 v.mp4)
    [ "$frames" = "80,48,9" ] && ok "the i2v task finished: an 80x48 MP4 of 9 frames" || bad "the MP4: '$frames'"
    grep -q '"inputImage":"in.png"' detail.json && ok "Task/Detail echoes the file's name" ||
        bad "Task/Detail parameters: $(cat detail.json)"
else
    bad "the i2v task did not finish: $(cat detail.json) $(tail -n 5 serve.err)"
fi
# the stored image goes once the task ended (the worker's sweep, every 2 s)
for i in $(seq 1 50); do [ "$(sqlite3 s.db 'SELECT count(*) FROM inputs' 2>/dev/null)" = 0 ] && break; sleep 0.1; done
[ "$(sqlite3 s.db 'SELECT count(*) FROM inputs')" = 0 ] && ok "the stored image is forgotten once the task ended" ||
    bad "inputs left: $(sqlite3 s.db 'SELECT task, length(data) FROM inputs')"

printf 'not an image at all' >garbage.png
: >empty.png
head -c $(((10 << 20) + 1)) /dev/zero >big.png
expect_error "garbage bytes" "Request parameter [inputImage] is not an image that can be decoded" -F prompt=x \
    -F inputImage=@garbage.png
expect_error "an empty file part" "Request parameter [inputImage] is empty" -F prompt=x -F inputImage=@empty.png
expect_error "a file over 10 MiB" "Request parameter [inputImage] must be at most 10485760 bytes" -F prompt=x \
    -F inputImage=@big.png
expect_error "no inputImage" "Request parameter [inputImage] required" -F prompt=x
expect_error "another size" "Request parameter [inputImage] must be a 80x48 image" -F prompt=x -F width=80 \
    -F inputImage=@wide.png
expect_error "a file under another name" "Request parameter [image] is a file" -F prompt=x -F image=@in.png
expect_error "two files" "takes at most 1 file input" -F prompt=x -F inputImage=@in.png -F other=@in.png
expect_error "a loopback URL" "Request parameter [inputImage] must not point to a loopback" -H \
    'Content-Type: application/json' -d '{"prompt":"x","inputImage":"http://127.0.0.1:9/in.png"}'
expect_error "not a URL" "must be a file part or an http or https URL" -F prompt=x -F inputImage=in.png
# a body over the body limit + 10 MiB: 413 in the error contract
head -c $(((12 << 20))) /dev/zero >huge.png
code=$(run -o err.json -w '%{http_code}' -F prompt=x -F inputImage=@huge.png)
[ "$code" = 413 ] && grep -q '"result":false' err.json && ok "a 12 MiB body: 413 $(cat err.json)" ||
    bad "a 12 MiB body: $code $(cat err.json)"
[ "$(sqlite3 s.db 'SELECT count(*) FROM tasks')" = 1 ] && ok "no refused Run stored a task" ||
    bad "tasks: $(sqlite3 s.db 'SELECT id, status FROM tasks')"
stop_server

# ---- a URL on a loopback server (--allow-private-inputs), queued by an API node without a worker ----
mkdir -p www && cp in.png www/
python3 -m http.server 0 --bind 127.0.0.1 --directory www >http.out 2>&1 &
HTTP_PID=$!
HPORT=
for i in $(seq 1 100); do
    HPORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' http.out | head -n 1)
    [ -n "$HPORT" ] && curl -sf "http://127.0.0.1:$HPORT/in.png" -o /dev/null && break
    sleep 0.05
done
[ -n "$HPORT" ] || { bad "the loopback HTTP server did not start: $(cat http.out)"; exit 1; }
start_server i2v --no-worker --allow-private-inputs
run -H 'Content-Type: application/json' \
    -d "{\"prompt\":\"the fox\",\"steps\":2,\"inputImage\":\"http://127.0.0.1:$HPORT/in.png\"}" >run.json
TOKEN=$(jfield socketaccesstoken <run.json)
grep -q '"result":true' run.json && ok "Run with a loopback URL (--allow-private-inputs): queued" ||
    bad "Run with a URL: $(cat run.json)"
expect_error "a URL that answers 404" "could not be fetched: HTTP 404" -F prompt=x \
    -F "inputImage=http://127.0.0.1:$HPORT/nothing.png"
[ "$(sqlite3 s.db 'SELECT count(*) FROM inputs')" = 1 ] && ok "the fetched image is in the store" ||
    bad "inputs: $(sqlite3 s.db 'SELECT task, length(data) FROM inputs')"
stop_server
kill "$HTTP_PID" 2>/dev/null
wait "$HTTP_PID" 2>/dev/null
HTTP_PID=
# a restart with a worker runs it from the store (the URL's server is gone)
start_server i2v
if wait_done "$TOKEN"; then
    grep -q "\"inputImage\":\"http://127.0.0.1:$HPORT/in.png\"" detail.json && ok "after a restart the queued URL task ran; Detail echoes the URL" ||
        bad "Detail after restart: $(cat detail.json)"
else
    bad "the queued i2v task did not run after a restart: $(cat detail.json) $(tail -n 5 serve.err)"
fi
stop_server

# ---- URLs that never answer: at most http_threads - 1 fetches run at once and one per project (429, code 96);
# /healthz, Detail and uploads are served meanwhile (the fetches run off the HTTP threads: requests that an HTTP
# thread accepted together with a fetching one are not held up) ----
stall_server_start() { # a server that accepts connections and never answers: port in SPORT, pid in STALL_PID
    python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
held = []
while True:
    held.append(s.accept()[0])
    print("accepted", flush=True)
' >stall.out 2>&1 &
    STALL_PID=$!
    SPORT=
    local i
    for i in $(seq 1 100); do SPORT=$(head -n 1 stall.out); [ -n "$SPORT" ] && break; sleep 0.05; done
}
stall_server_start
KEYS=()
for p in 1 2 3; do
    "$BIN" keys create --store s.db --mode key-only --json >kp$p.json 2>/dev/null && KEYS+=("$(jfield apikey <kp$p.json)")
done
start_server i2v --allow-private-inputs --http-threads 4
stall_run() { # KEY OUT: a Run whose image URL never answers, in the background
    curl -s -m 30 -H "x-api-key: $1" -o "$2" -w '%{http_code}' -F prompt=x -F "inputImage=http://127.0.0.1:$SPORT/x.png" \
        "http://127.0.0.1:$PORT/v1/Run/THUDM/CogVideoX-2b" >"$2.code" &
    STALL_CURLS+=($!)
}
STALL_CURLS=()
stalled() { # N: waits (10 s at most) until the never-answering server has accepted N fetches
    local i
    for i in $(seq 1 200); do [ "$(grep -c '^accepted' stall.out)" -ge "$1" ] && return 0; sleep 0.05; done
    return 1
}
stall_run "$KEY" s0.json
stalled 1 || bad "the first fetch never reached the stalling server"
code=$(run -o err.json -w '%{http_code}' -F prompt=x -F "inputImage=http://127.0.0.1:$SPORT/y.png")
[ "$code" = 429 ] && grep -q '"code":96' err.json && grep -q "already being fetched" err.json &&
    ok "a project's second URL while its first is fetched: 429 $(cat err.json)" || bad "second URL of a project: $code $(cat err.json)"
stall_run "${KEYS[0]}" s1.json
stall_run "${KEYS[1]}" s2.json
stalled 3 || bad "three fetches did not all reach the stalling server"
code=$(curl -s -m 10 -H "x-api-key: ${KEYS[2]}" -o err.json -w '%{http_code}' -F prompt=x \
    -F "inputImage=http://127.0.0.1:$SPORT/z.png" "http://127.0.0.1:$PORT/v1/Run/THUDM/CogVideoX-2b")
[ "$code" = 429 ] && grep -q "Too many image URLs" err.json &&
    ok "three fetches at once (--http-threads 4 allows 3): a fourth project's URL gets 429 $(cat err.json)" ||
    bad "a fetch beyond the slots: $code $(cat err.json)"
t0=$(date +%s%N)
curl -sf -m 5 "http://127.0.0.1:$PORT/healthz" >/dev/null && api Task/Detail -d "tasktoken=$TOKEN" | grep -q '"result":true' &&
    run -F prompt=x -F inputImage=@in.png | grep -q '"result":true' &&
    ok "meanwhile /healthz, Detail and an upload are served ($((($(date +%s%N) - t0) / 1000000)) ms)" ||
    bad "the service stalled behind the fetches"
kill "$STALL_PID" 2>/dev/null
wait "$STALL_PID" 2>/dev/null
wait "${STALL_CURLS[@]}"
grep -q "could not be fetched" s0.json && [ "$(cat s0.json.code)" = 200 ] &&
    ok "the stalled fetches end in the error contract once the server goes: $(head -c 160 s0.json)" ||
    bad "the stalled fetch: $(cat s0.json.code) $(cat s0.json)"
code=$(run -o err.json -w '%{http_code}' -F prompt=x -F "inputImage=http://127.0.0.1:$SPORT/y.png")
[ "$code" = 200 ] && grep -q "could not be fetched" err.json && ok "the slots are free again" ||
    bad "after the fetches: $code $(cat err.json)"
stop_server

# ---- one HTTP thread: a fetch runs off it, so the thread serves other requests meanwhile, and a stop does not
# wait for the fetch's 20 s ----
stall_server_start
start_server i2v --allow-private-inputs --http-threads 1
STALL_CURLS=()
stall_run "$KEY" s3.json
stalled 1 || bad "the fetch never reached the stalling server (one HTTP thread)"
t0=$(date +%s%N)
curl -sf -m 5 "http://127.0.0.1:$PORT/healthz" >/dev/null && api Task/Detail -d "tasktoken=$TOKEN" | grep -q '"result":true' &&
    ok "one HTTP thread: /healthz and Detail are served while a fetch waits ($((($(date +%s%N) - t0) / 1000000)) ms)" ||
    bad "one HTTP thread: the service waited for the fetch"
t0=$(date +%s)
stop_server
wait "${STALL_CURLS[@]}"
[ $(($(date +%s) - t0)) -lt 10 ] && grep -q "the service is stopping" s3.json &&
    ok "a stop ends the waiting fetch at once, in the error contract: $(head -c 160 s3.json)" ||
    bad "stop during a fetch: $(($(date +%s) - t0)) s, $(cat s3.json.code) $(cat s3.json)"
kill "$STALL_PID" 2>/dev/null
wait "$STALL_PID" 2>/dev/null

# ---- a t2v model: file parts refused, an inputImage field kept as an unknown input ----
start_server t2v
expect_error "t2v: a file part" "Request parameters are invalid. field [inputImage] is a file; this model takes no file inputs" \
    -F prompt=x -F inputImage=@in.png
run -F prompt="a fox" -F steps=1 -F inputImage=http://example.com/x.png >run.json
grep -q '"result":true' run.json && ok "t2v: an inputImage text field is accepted (ignored)" || bad "t2v Run: $(cat run.json)"
TOKEN=$(jfield socketaccesstoken <run.json)
wait_done "$TOKEN" && grep -q '"inputImage":"http://example.com/x.png"' detail.json &&
    ok "t2v: the task ran; parameters keep inputImage as an unknown input" || bad "t2v task: $(cat detail.json)"
stop_server

[ "$fails" -eq 0 ] && echo "cli_service_i2v: all passed" || echo "cli_service_i2v: $fails FAILED"
[ "$fails" -eq 0 ]
