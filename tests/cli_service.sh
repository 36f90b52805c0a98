#!/usr/bin/env bash
# `cogvideox serve` and `cogvideox keys` through the real binary, the real engine and the tiny model, on 127.0.0.1:
#  - keys create (--json: exactly projectid/apikey/apisecret; key-only: no apisecret), list, revoke, --key-file; the server key
#    file is 0600 and the secret is not stored in clear;
#  - the model page's curl recipe verbatim (openssl's whole output line as the signature; its callbackUrl sentence
#    gets a validation error; the Detail curl with its bare token and trailing comma, re-run to poll with the same
#    nonce), the MP4 checked with ffprobe, Range requests with curl, a key-only project, a revoked key;
#  - kill -9 of the server in the middle of a generation, restart: the task completes with the same frames as an
#    uninterrupted run of the same parameters (and resumes from its last checkpointed step when the engine writes
#    checkpoints);
#  - precision: the server's default (auto) is announced and applied; a real task runs with the other precision
#    (or, where the CPU has no bf16 dot products, asking for bf16 is refused); a bad value gets the error contract;
#    --precision bf16 is refused at start where the kernel path has no bf16 (CVX_FORCE_ISA=avx512), as generate's;
#  - cache: a bad value gets the error contract; a real task with TeaCache runs (stored, echoed, logged);
#  - SIGTERM: a clean stop.
# Every wait is bounded; only 127.0.0.1 is used.
set -u
BIN=${1:?usage: cli_service.sh path/to/cogvideox}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-cli-service-XXXXXX")
SERVER_PID=
PG_SCRIPT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/pg_server.sh
cleanup() {
    [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null
    bash "$PG_SCRIPT" stop "$TMP/pg" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: [${SECONDS}s] $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
# jfield NAME < json: the string value of the first "NAME":"..." (compact or spaced JSON)
jfield() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1; }

cd "$TMP" || exit 1
"$BIN" make-model --preset tiny --seed 3 -o tiny >/dev/null 2>&1 || { bad "make-model tiny"; exit 1; }

# ---- keys ----
"$BIN" keys create --store s.db --name "recipe" --json >k.json 2>k.err || bad "keys create: $(cat k.err)"
KEY=$(jfield apikey <k.json)
SECRET=$(jfield apisecret <k.json)
PROJ=$(jfield projectid <k.json)
if grep -qE '^\{"projectid": "[0-9]+", "apikey": "[A-Za-z0-9]{32}", "apisecret": "[A-Za-z0-9]{32}"\}$' k.json; then
    ok "keys create --json: $(sed 's/"apisecret": "[^"]*"/"apisecret": "…"/' k.json)"
else
    bad "keys create --json output: $(cat k.json)"
fi
"$BIN" keys create --store s.db --mode key-only --json >ko.json 2>/dev/null
KO=$(jfield apikey <ko.json)
grep -q apisecret ko.json && bad "key-only create printed a secret" || ok "keys create --mode key-only: no apisecret"
mode=$(stat -c %a s.db.key)
[ "$mode" = 600 ] && ok "server key s.db.key is mode 600" || bad "server key mode $mode"
grep -qF "$SECRET" s.db s.db-wal 2>/dev/null && bad "the secret is stored in clear" || ok "the secret is not stored in clear"
grep -qF -e "$KEY" -e "$KO" s.db s.db-wal 2>/dev/null && bad "an API key is stored in clear" || ok "the API keys are stored as keyed hashes"
"$BIN" keys list --store s.db >list.txt 2>&1
[ "$(grep -c ' h1:' list.txt)" = 2 ] && ! grep -qF -e "$KEY" -e "$KO" -e "$SECRET" list.txt && ok "keys list (hashes, no keys or secrets)" ||
    bad "keys list: $(cat list.txt)"
"$BIN" keys create --store s.db --mode key-only --json >rv.json 2>/dev/null
RV=$(jfield apikey <rv.json)
"$BIN" keys revoke "$RV" --store s.db >/dev/null 2>&1 && ok "keys revoke" || bad "keys revoke"
"$BIN" keys revoke nosuchkey --store s.db >/dev/null 2>&1 && bad "revoke of an unknown key succeeded" || ok "revoke of an unknown key fails"
"$BIN" keys create --store s.db --mode both >/dev/null 2>&1 && bad "keys create --mode both accepted" || ok "keys create rejects a bad mode"
chmod 644 s.db.key
"$BIN" keys create --store s.db >/dev/null 2>err.txt && bad "a world-readable key file was used" ||
    { grep -q "chmod 600" err.txt && ok "world-readable key file refused" || bad "key file mode message: $(cat err.txt)"; }
chmod 600 s.db.key
# --key-file: the server key elsewhere (issue 15: every node of a deployment is given the same key file)
mkdir -p keydir
"$BIN" keys create --store kf.db --key-file keydir/server.key --json >kf.json 2>err.txt || bad "keys create --key-file: $(cat err.txt)"
[ -f keydir/server.key ] && [ ! -e kf.db.key ] && [ "$(stat -c %a keydir/server.key)" = 600 ] &&
    ok "keys create --key-file: the key is keydir/server.key (0600), no kf.db.key" || bad "keys --key-file: $(ls -la . keydir)"
"$BIN" keys create --store kf.db --mode key-only --key-file keydir/server.key --json >kfko.json 2>/dev/null
"$BIN" keys revoke "$(jfield apikey <kfko.json)" --store kf.db --key-file keydir/server.key >/dev/null 2>&1 &&
    ok "keys revoke --key-file" || bad "keys revoke --key-file"
"$BIN" serve --model tiny --store kf.db --outputs kfout --listen 127.0.0.1:0 >/dev/null 2>err.txt; rc=$?
[ $rc -eq 2 ] && grep -q "server key kf.db.key is missing" err.txt && ok "serve without its --key-file: refused, exit 2" ||
    bad "serve without --key-file: $rc $(cat err.txt)"
"$BIN" serve --model tiny --store kf.db --key-file keydir/server.key --outputs kfout --listen 127.0.0.1:0 --threads 1 \
    >kfserve.out 2>kfserve.err &
KF_PID=$!
for i in $(seq 1 200); do grep -q '^listening on' kfserve.out 2>/dev/null && break; sleep 0.05; done
grep -q '^listening on' kfserve.out && ok "serve --key-file keydir/server.key: listening" || bad "serve --key-file: $(cat kfserve.err)"
kill -TERM "$KF_PID" 2>/dev/null; wait "$KF_PID" 2>/dev/null

# ---- serve ----
start_server() {
    "$BIN" serve --model tiny --store s.db --outputs out --listen "127.0.0.1:${PORT:-0}" --threads 1 \
        --callback-backoff-ms 200 >>serve.out 2>>serve.err &
    SERVER_PID=$!
    local i
    for i in $(seq 1 200); do
        if [ -z "${PORT:-}" ]; then
            PORT=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' serve.out | head -n 1)
        fi
        if [ -n "${PORT:-}" ] && curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    bad "server did not start: $(cat serve.err)"
    exit 1
}
PORT=
start_server
ok "serve listening on port $PORT"
H=127.0.0.1:$PORT
DEFPREC=$(sed -n 's/^listening on .*precision \(bf16\|fp32\)).*/\1/p' serve.out | head -n 1)
AUTO=$("$BIN" serve --help | sed -n 's/.*here: \(bf16\|fp32\)).*/\1/p' | head -n 1)
[ -n "$DEFPREC" ] && [ "$DEFPREC" = "$AUTO" ] && ok "serve's default precision: $DEFPREC (auto)" ||
    bad "serve's default precision '$DEFPREC', auto '$AUTO': $(head -n 1 serve.out)"
[ "$DEFPREC" = bf16 ] && OTHER=fp32 || OTHER=bf16

# The recipe, verbatim but for the host.
export YOUR_API_KEY="$KEY"
export YOUR_API_SECRET="$SECRET"
# unix time or any random integer value
export NONCE=$(date +%s);
# hmac-SHA256 (YOUR_API_SECRET+Nonce) with YOUR_API_KEY
export SIGNATURE="$(echo -n "${YOUR_API_SECRET}${NONCE}" | openssl dgst -sha256 -hmac "${YOUR_API_KEY}")";

curl -s -X POST "http://$H/v1/Run/THUDM/CogVideoX-2b" -H "Content-Type: multipart/form-data" -H "x-api-key: ${YOUR_API_KEY}" -H "x-nonce: ${NONCE}" -H "x-signature: ${SIGNATURE}" -d '{ "prompt": "A sprawling futuristic city illuminated by neon lights, with flying cars zipping through the air. The skyline is filled with towering skyscrapers, and holographic advertisements flicker on every corner. The camera zooms through the streets, capturing the hustle and bustle of a technologically advanced society.", "steps": 50, "scale": "6.0", "seed": "123456", "callbackUrl": "You can provide a callback URL; Wiro will send a POST request to it when the task is completed." }' >recipe_run.json;
grep -q '"message":"Request parameter \[callbackUrl\] must be an http or https URL without credentials"' recipe_run.json &&
    grep -q '"result":false' recipe_run.json && ok "recipe Run: the sentence in callbackUrl gets a validation error" ||
    bad "recipe Run: $(cat recipe_run.json)"

# The same recipe without the sentence (and a fresh nonce: Run consumes it).
export NONCE=$(( $(date +%s) + 1 ));
export SIGNATURE="$(echo -n "${YOUR_API_SECRET}${NONCE}" | openssl dgst -sha256 -hmac "${YOUR_API_KEY}")";
case "$SIGNATURE" in *"= "*) ok "signature header is openssl's whole line: ${SIGNATURE:0:24}…";; *) ok "signature: $SIGNATURE";; esac
curl -s -X POST "http://$H/v1/Run/THUDM/CogVideoX-2b" -H "Content-Type: multipart/form-data" -H "x-api-key: ${YOUR_API_KEY}" -H "x-nonce: ${NONCE}" -H "x-signature: ${SIGNATURE}" -d '{ "prompt": "A sprawling futuristic city illuminated by neon lights, with flying cars zipping through the air. The skyline is filled with towering skyscrapers, and holographic advertisements flicker on every corner. The camera zooms through the streets, capturing the hustle and bustle of a technologically advanced society.", "steps": 50, "scale": "6.0", "seed": "123456" }' >run.json;
TOKEN=$(jfield socketaccesstoken <run.json)
TASKID=$(jfield taskid <run.json)
if grep -q '"errors":\[\]' run.json && grep -q '"result":true' run.json && [ ${#TOKEN} -eq 30 ]; then
    ok "recipe Run: $(cat run.json)"
else
    bad "recipe Run: $(cat run.json)"
fi
# the recipe's Detail call, re-run to poll (same nonce and signature)
detail() {
    curl -s -X POST "http://$H/v1/Task/Detail" -H "Content-Type: multipart/form-data" -H "x-api-key: ${YOUR_API_KEY}" -H "x-nonce: ${NONCE}" -H "x-signature: ${SIGNATURE}" -d '{ "tasktoken": '$1', }';
}
wait_done() { # TOKEN SECONDS -> detail.json; 0 when final
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        detail "$1" >detail.json
        if grep -q '"status":"task_postprocess_end"\|"status":"task_cancel"' detail.json; then return 0; fi
        sleep 0.1
    done
    return 1
}
if wait_done "$TOKEN" 60; then
    grep -q '"pexit":"0"' detail.json && ok "recipe Detail polling: task $TASKID done" || bad "task failed: $(cat detail.json)"
else
    bad "task did not finish: $(cat detail.json)"
fi
grep -q '"total":"1"' detail.json && grep -q "\"projectid\":\"$PROJ\"" detail.json && ok "Detail shape (total, projectid)" ||
    bad "Detail: $(head -c 400 detail.json)"
URL=$(jfield url <detail.json)
SIZE=$(sed -n 's/.*"outputs":\[{[^]]*"size":"\([0-9]*\)".*/\1/p' detail.json)
case "$URL" in "http://$H/files/"*"/0.mp4") ok "output url $URL";; *) bad "output url '$URL'";; esac
curl -s -o video.mp4 -D head.txt "$URL"
grep -qi '^content-type: video/mp4' head.txt && grep -qi "^content-length: $SIZE" head.txt && [ "$(stat -c %s video.mp4)" = "$SIZE" ] &&
    ok "GET output: video/mp4, $SIZE bytes" || bad "GET output: $(cat head.txt)"
probe=$(ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=codec_name,width,height,nb_read_frames -of csv=p=0 video.mp4 2>&1)
[ "$probe" = "h264,80,48,9" ] && ok "ffprobe: $probe" || bad "ffprobe: $probe"
code=$(curl -s -o part.bin -w '%{http_code}' -r 10-109 "$URL")
[ "$code" = 206 ] && [ "$(stat -c %s part.bin)" = 100 ] && cmp -s part.bin <(tail -c +11 video.mp4 | head -c 100) &&
    ok "Range 10-109: 206, the right 100 bytes" || bad "Range: HTTP $code, $(stat -c %s part.bin) bytes"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Range: bytes=$SIZE-" "$URL")
[ "$code" = 416 ] && ok "Range past the end: 416" || bad "Range past the end: $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --path-as-is "http://$H/files/../s.db")
[ "$code" = 404 ] && ok "no path traversal" || bad "path traversal: $code"

# replay and permissions through curl
code=$(curl -s -o replay.json -w '%{http_code}' -X POST "http://$H/v1/Run/THUDM/CogVideoX-2b" -H "x-api-key: ${YOUR_API_KEY}" -H "x-nonce: ${NONCE}" -H "x-signature: ${SIGNATURE}" -d '{"prompt":"again"}')
[ "$code" = 401 ] && grep -q "Nonce has already been used" replay.json && ok "replayed nonce on Run: 401" || bad "replay: $code $(cat replay.json)"
code=$(curl -s -o ko.json -w '%{http_code}' -X POST "http://$H/v1/Task/Detail" -H "Content-Type: application/json" -H "x-api-key: $KO" -d "{\"taskid\": $TASKID}")
grep -q '"code":1,"message":"There is no task yet."' ko.json && ok "another project's task: answered as an unknown one" || bad "another project's task: $(cat ko.json)"
code=$(curl -s -o rv.json -w '%{http_code}' -X POST "http://$H/v1/Tool/List" -H "x-api-key: $RV" -d '{}')
[ "$code" = 401 ] && ok "revoked key: 401" || bad "revoked key: $code"
curl -s -X POST "http://$H/v1/Run/THUDM/CogVideoX-2b" -H "Content-Type: application/json" -H "x-api-key: $KO" \
    -d '{"prompt":"a key-only project","steps":3,"seed":7,"precision":"fp16"}' >kobad.json
grep -q '"message":"Request parameter \[precision\] must be bf16 or fp32"' kobad.json && grep -q '"result":false' kobad.json &&
    ok "precision fp16: validation error" || bad "precision fp16: $(cat kobad.json)"
# the recipe's task ran with the default; this one asks for the other precision
grep -q "precision $DEFPREC" detail.json && ok "the recipe's task ran with $DEFPREC" ||
    bad "the recipe's task's precision: $(grep -o 'precision [a-z0-9]*' detail.json | head -n 1)"
curl -s -X POST "http://$H/v1/Run/THUDM/CogVideoX-2b" -H "Content-Type: application/json" -H "x-api-key: $KO" \
    -d '{"prompt":"a key-only project","steps":3,"seed":7,"precision":"'$OTHER'"}' >korun.json
if [ "$OTHER" = bf16 ]; then # no bf16 dot products here: refused
    grep -q '"message":"Request parameter \[precision\] must be fp32 on this server' korun.json &&
        ok "precision bf16 refused by a server without bf16" || bad "bf16 on an fp32 server: $(cat korun.json)"
    curl -s -X POST "http://$H/v1/Run/THUDM/CogVideoX-2b" -H "Content-Type: application/json" -H "x-api-key: $KO" \
        -d '{"prompt":"a key-only project","steps":3,"seed":7,"precision":"fp32"}' >korun.json
fi
grep -q '"result":true' korun.json && ok "key-only project: Run with x-api-key alone" || bad "key-only Run: $(cat korun.json)"
KOTOK=$(jfield socketaccesstoken <korun.json)
KOPREC=$OTHER
[ "$OTHER" = bf16 ] && KOPREC=fp32
for i in $(seq 1 300); do
    curl -s -X POST "http://$H/v1/Task/Detail" -H "Content-Type: application/json" -H "x-api-key: $KO" \
        -d "{\"tasktoken\":\"$KOTOK\"}" >kodetail.json
    grep -q '"status":"task_postprocess_end"' kodetail.json && break
    sleep 0.1
done
grep -q '"pexit":"0"' kodetail.json && grep -q "precision $KOPREC" kodetail.json &&
    grep -q "\"precision\":\"$KOPREC\"" kodetail.json && ok "a real task with precision $KOPREC (stored, echoed, logged)" ||
    bad "the $KOPREC task: $(head -c 600 kodetail.json)"
# the cache input: a bad value gets the error contract; a real task with TeaCache runs, stored and logged
curl -s -X POST "http://$H/v1/Run/THUDM/CogVideoX-2b" -H "Content-Type: application/json" -H "x-api-key: $KO" \
    -d '{"prompt":"a cached fox","steps":3,"cache":"teacache:0.1:1,2"}' >cbad.json
grep -q '"message":"Request parameter \[cache\] must be off or teacache\[:THRESHOLD\[:C4,C3,C2,C1,C0\]\]: teacache needs 5 coefficients' cbad.json &&
    grep -q '"result":false' cbad.json && ok "cache with 2 coefficients: validation error" || bad "bad cache: $(cat cbad.json)"
curl -s -X POST "http://$H/v1/Run/THUDM/CogVideoX-2b" -H "Content-Type: application/json" -H "x-api-key: $KO" \
    -d '{"prompt":"a cached fox","steps":6,"seed":7,"precision":"fp32","cache":"teacache:1:0,0,0,1,0"}' >crun.json
CTOK=$(jfield socketaccesstoken <crun.json)
for i in $(seq 1 300); do
    curl -s -X POST "http://$H/v1/Task/Detail" -H "Content-Type: application/json" -H "x-api-key: $KO" \
        -d "{\"tasktoken\":\"$CTOK\"}" >cdetail.json
    grep -q '"status":"task_postprocess_end"' cdetail.json && break
    sleep 0.1
done
grep -q '"pexit":"0"' cdetail.json && grep -q "cache teacache:1:0,0,0,1,0" cdetail.json &&
    grep -q '"cache":"teacache:1:0,0,0,1,0"' cdetail.json && ok "a real task with cache teacache:1:0,0,0,1,0 (stored, echoed, logged)" ||
    bad "the cache task: $(head -c 600 cdetail.json)"

# ---- kill -9 in the middle of a generation, then restart ----
# Parameters that make the denoising loop last a few seconds on the tiny model.
SLOW='"prompt":"a slow fox","steps":150,"seed":"77","width":160,"height":160,"numFrames":9'
run_json() { # BODY -> $TOK (not in a subshell: the nonce must advance)
    NONCE=$((NONCE + 1))
    SIGNATURE="$(echo -n "${YOUR_API_SECRET}${NONCE}" | openssl dgst -sha256 -hmac "${YOUR_API_KEY}")"
    curl -s -X POST "http://$H/v1/Run/THUDM/CogVideoX-2b" -H "Content-Type: application/json" -H "x-api-key: ${YOUR_API_KEY}" \
        -H "x-nonce: ${NONCE}" -H "x-signature: ${SIGNATURE}" -d "$1" >runslow.json
    TOK=$(jfield socketaccesstoken <runslow.json)
}
run_json "{$SLOW}"
T1=$TOK
step=0
for i in $(seq 1 600); do
    detail "$T1" >d1.json
    step=$(grep -o 'Generate: step [0-9]*' d1.json | tail -n 1 | grep -o '[0-9]*$')
    [ "${step:-0}" -ge 5 ] && break
    sleep 0.05
done
ckpts=$(ls out/.checkpoints 2>/dev/null | grep -c '\.ckpt$')
kill -9 "$SERVER_PID"
wait "$SERVER_PID" 2>/dev/null
SERVER_PID=
if [ "${step:-0}" -ge 5 ] && [ "${step:-0}" -lt 150 ]; then ok "killed -9 at step $step of 150"; else bad "kill point: step ${step:-none}"; fi
start_server
if wait_done "$T1" 120; then
    grep -q '"pexit":"0"' detail.json && ok "the interrupted task completed after the restart" || bad "after restart: $(head -c 600 detail.json)"
else
    bad "the interrupted task did not finish: $(head -c 600 detail.json)"
fi
resumed=$(grep -o 'Resuming from the checkpoint of step [0-9]*' detail.json | grep -o '[0-9]*$')
if [ -n "$resumed" ]; then
    [ "$resumed" -ge $((step - 1)) ] && ok "resumed from the checkpoint of step $resumed (killed after step $step)" ||
        bad "resumed from step $resumed, killed after $step"
elif [ "$ckpts" -eq 0 ]; then
    echo "SKIP: the engine wrote no checkpoint (cvx_generate's checkpoint callback not implemented yet): the task restarted from step 0"
else
    bad "checkpoints existed but the task did not resume: $(grep -o 'Resum[^\"]*\|checkpoint[^\"]*' detail.json | head -3)"
fi
U1=$(jfield url <detail.json)
grep -q "precision $DEFPREC" detail.json && ok "the resumed task kept its precision ($DEFPREC)" ||
    bad "the resumed task's precision: $(grep -o 'precision [a-z0-9]*' detail.json | sort -u | tr '\n' ' ')"
run_json "{$SLOW}"
T2=$TOK
wait_done "$T2" 120 || bad "the reference run did not finish"
U2=$(jfield url <detail.json)
curl -s -o a.mp4 "$U1"
curl -s -o b.mp4 "$U2"
fa=$(ffmpeg -v error -i a.mp4 -f framemd5 - 2>&1 | grep -v '^#')
fb=$(ffmpeg -v error -i b.mp4 -f framemd5 - 2>&1 | grep -v '^#')
if [ -n "$fa" ] && [ "$fa" = "$fb" ] && cmp -s a.mp4 b.mp4; then
    ok "same frames as an uninterrupted run ($(echo "$fa" | wc -l) frames, identical decoded pictures, identical MP4 bytes)"
else
    bad "the resumed task's video differs from an uninterrupted run"
fi

# ---- SIGTERM: clean stop ----
kill -TERM "$SERVER_PID"
for i in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SERVER_PID" 2>/dev/null; then bad "SIGTERM: still running after 10 s"; else
    wait "$SERVER_PID"; rc=$?; SERVER_PID=
    [ $rc -eq 0 ] && ok "SIGTERM: exit 0" || bad "SIGTERM: exit $rc"
fi
grep -qF "$SECRET" serve.out serve.err && bad "the secret appears in the server's output" || ok "no secret in the server's output"

# ---- command-line errors ----
"$BIN" serve --model tiny --store s.db --outputs out >/dev/null 2>err.txt; rc=$?
[ $rc -eq 1 ] && grep -q "required" err.txt && ok "serve without --listen: usage error" || bad "serve without --listen: $rc $(cat err.txt)"
"$BIN" serve --model tiny --store s.db --outputs out --listen nohost >/dev/null 2>err.txt; rc=$?
[ $rc -eq 1 ] && ok "serve --listen nohost: usage error" || bad "serve --listen nohost: $rc"
"$BIN" serve --model nowhere --store s.db --outputs out --listen 127.0.0.1:0 >/dev/null 2>err.txt; rc=$?
[ $rc -eq 2 ] && grep -q "nowhere" err.txt && ok "serve --model nowhere: $(head -c 120 err.txt)" || bad "serve bad model: $rc $(cat err.txt)"
"$BIN" serve --model tiny --store s.db --outputs out --listen 127.0.0.1:0 --precision fp16 >/dev/null 2>err.txt; rc=$?
[ $rc -eq 1 ] && grep -q "precision" err.txt && ok "serve --precision fp16: usage error" || bad "serve --precision fp16: $rc $(cat err.txt)"
# a kernel path without bf16 dot products: bf16 is refused at start, as by generate; auto there is fp32
CVX_FORCE_ISA=avx512 "$BIN" serve --model tiny --store s.db --outputs out --listen 127.0.0.1:0 --precision bf16 >/dev/null 2>err.txt; rc=$?
[ $rc -eq 1 ] && grep -q "needs bf16 dot products" err.txt && ok "serve --precision bf16 without bf16: $(head -c 100 err.txt)…" ||
    bad "serve --precision bf16 without bf16: $rc $(cat err.txt)"
CVX_FORCE_ISA=avx512 "$BIN" generate -m tiny -p x -o g.mp4 --precision bf16 >/dev/null 2>err.txt; rc=$?
[ $rc -eq 1 ] && grep -q "needs bf16 dot products" err.txt && ok "generate --precision bf16 without bf16: refused the same way" ||
    bad "generate --precision bf16 without bf16: $rc $(cat err.txt)"
CVX_FORCE_ISA=avx512 "$BIN" serve --help | grep -q "here: fp32)" && ok "auto is fp32 with CVX_FORCE_ISA=avx512" ||
    bad "auto with CVX_FORCE_ISA=avx512: $(CVX_FORCE_ISA=avx512 "$BIN" serve --help | grep here)"
# ---- roles: serve --no-worker and cogvideox worker on one store (issue 15) ----
"$BIN" keys create --store roles.db --mode key-only --json >roles.json 2>/dev/null
RK=$(jfield apikey <roles.json)
"$BIN" serve --no-worker --model tiny --store roles.db --outputs rolesout --listen 127.0.0.1:0 --threads 1 \
    >roles-api.out 2>roles-api.err &
ROLES_API=$!
"$BIN" worker --model tiny --store roles.db --outputs rolesout --threads 1 --name cli-worker >roles-w.out 2>roles-w.err &
ROLES_W=$!
for i in $(seq 1 200); do grep -q '^listening on' roles-api.out 2>/dev/null && break; sleep 0.05; done
RP=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' roles-api.out | head -n 1)
grep -q 'no worker' roles-api.out && ok "serve --no-worker: $(head -n 1 roles-api.out)" || bad "serve --no-worker: $(cat roles-api.err)"
curl -s -X POST "http://127.0.0.1:$RP/v1/Run/THUDM/CogVideoX-2b" -H "x-api-key: $RK" \
    -d '{"prompt":"two processes","steps":2,"width":64,"height":64,"numFrames":5}' >roles-run.json
RT=$(jfield socketaccesstoken <roles-run.json)
st=
for i in $(seq 1 300); do
    st=$(curl -s -X POST "http://127.0.0.1:$RP/v1/Task/Detail" -H "x-api-key: $RK" -d "{\"tasktoken\":\"$RT\"}" |
        sed -n 's/.*"status": *"\([a-z_]*\)".*/\1/p' | head -n 1)
    [ "$st" = task_postprocess_end ] && break
    sleep 0.1
done
[ "$st" = task_postprocess_end ] && ok "a Run through serve --no-worker is done by cogvideox worker" ||
    bad "roles: status '$st' $(cat roles-run.json) $(tail -n 3 roles-w.err)"
curl -s "http://127.0.0.1:$RP/healthz" | grep -q '"role": *"api".*cli-worker\|cli-worker.*"role": *"api"' &&
    ok "healthz: role api, the worker cli-worker listed" || bad "healthz of the API node: $(curl -s "http://127.0.0.1:$RP/healthz")"
kill -TERM "$ROLES_API" "$ROLES_W" 2>/dev/null; wait "$ROLES_API" "$ROLES_W" 2>/dev/null

# ---- PostgreSQL (--store URL or libpq keyword string) ----
PG=$(bash "$PG_SCRIPT" start "$TMP/pg" 2>pg.err); rc=$?
if [ $rc -eq 77 ]; then
    echo "skip: PostgreSQL checks: $(cat pg.err)"
elif [ $rc -ne 0 ]; then
    bad "PostgreSQL did not start: $(cat pg.err)"
else
    "$BIN" keys create --store "$PG" --json >/dev/null 2>err.txt; rc=$?
    [ $rc -eq 1 ] && grep -q "needs --key-file" err.txt && ok "keys create on PostgreSQL without --key-file: usage error" ||
        bad "keys on PostgreSQL without --key-file: $rc $(cat err.txt)"
    "$BIN" keys create --store "$PG" --key-file pg.key --json >pgk.json 2>err.txt && [ -n "$(jfield apikey <pgk.json)" ] &&
        ok "keys create --store '$PG' --key-file pg.key" || bad "keys create on PostgreSQL: $(cat err.txt)"
    "$BIN" keys list --store "$PG" | grep -q ' h1:' && ok "keys list on PostgreSQL" || bad "keys list on PostgreSQL"
    "$BIN" serve --model tiny --store "$PG" --outputs pgout --listen 127.0.0.1:0 >/dev/null 2>err.txt; rc=$?
    [ $rc -eq 2 ] && grep -q "needs the server key's file" err.txt && ok "serve on PostgreSQL without --key-file: refused" ||
        bad "serve on PostgreSQL without --key-file: $rc $(cat err.txt)"
    "$BIN" serve --model tiny --store "$PG" --key-file pg.key --outputs pgout --listen 127.0.0.1:0 --threads 1 \
        >pgserve.out 2>pgserve.err &
    PG_PID=$!
    for i in $(seq 1 200); do grep -q '^listening on' pgserve.out 2>/dev/null && break; sleep 0.05; done
    PGPORT_=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' pgserve.out | head -n 1)
    [ -n "$PGPORT_" ] && curl -sf "http://127.0.0.1:$PGPORT_/healthz" >/dev/null && ok "serve --store (PostgreSQL): healthz" ||
        bad "serve on PostgreSQL: $(cat pgserve.err)"
    kill -TERM "$PG_PID" 2>/dev/null; wait "$PG_PID" 2>/dev/null
    # store copy: this script's SQLite store (projects and tasks of the runs above) into an empty database
    psql "$PG" -qc 'CREATE DATABASE copied' >/dev/null 2>err.txt || bad "CREATE DATABASE: $(cat err.txt)"
    "$BIN" store copy --from s.db --to "$PG dbname=copied" >copy.out 2>err.txt &&
        grep -q "^copied [1-9][0-9]* projects, [1-9][0-9]* tasks" copy.out && ok "store copy: $(cat copy.out)" ||
        bad "store copy: $(cat err.txt)"
    "$BIN" keys list --store s.db --json >list-a.txt
    "$BIN" keys list --store "$PG dbname=copied" --json >list-b.txt
    cmp -s list-a.txt list-b.txt && ok "the copy lists the same projects (ids, hashes, modes, revocations, times)" ||
        bad "keys list after store copy: $(diff list-a.txt list-b.txt | head -5)"
    "$BIN" store copy --from s.db --to "$PG dbname=copied" >/dev/null 2>err.txt; rc=$?
    [ $rc -eq 2 ] && grep -q "holds .* already" err.txt && ok "store copy into a store that is not empty: refused" ||
        bad "store copy twice: $rc $(cat err.txt)"
    bash "$PG_SCRIPT" stop "$TMP/pg"
fi

echo "not sqlite" >bad.db
"$BIN" keys list --store bad.db >/dev/null 2>err.txt; rc=$?
[ $rc -eq 2 ] && ok "keys on a file that is not a store: $(head -c 120 err.txt)" || bad "keys on a bad store: $rc"

if [ $fails -ne 0 ]; then
    echo "cli_service: $fails failed"
    echo "--- server log"; tail -n 30 serve.err
    exit 1
fi
echo "cli_service: all passed"
