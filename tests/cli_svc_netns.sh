#!/usr/bin/env bash
# The service on several hosts (issue 15), on one machine: PostgreSQL, two API nodes (A, B: serve --no-worker) and
# two workers (W1, W2), each in a network namespace of its own on a bridge (addresses this test assigns), the test
# itself (the client) in the root namespace on the same bridge, the tiny model:
#  - the model page's curl recipe against A, its Detail polls against B, the MP4 from B;
#  - 6 tasks sent alternately to A and B: all done, by both workers, every output downloads from both nodes, with Range;
#  - kill -9 of the worker generating a task: the other resumes it from the last checkpointed step once the lease
#    ran out, and the MP4 is byte-identical to an uninterrupted run's;
#  - kill -9 of node A: clients go on through B; PostgreSQL restarted mid-generation: the API answers 503 meanwhile,
#    no task is lost, the running one finishes (the same MP4);
#  - a nonce used on A is refused on B for a state-changing call; a Kill sent to B stops the task a worker runs
#    within about a second; a WebSocket on B sees every step of a task a worker runs;
#  - a network cut between a worker and PostgreSQL longer than the lease: the task moves to the other worker (the
#    same MP4), and the cut-off worker writes no second result when it comes back.
# Skips (exit 0 with SKIP) only where network namespaces are not available (not root, no iproute2) or PostgreSQL's
# server binaries are not installed; CI runs as root with them.
set -u
BIN=${1:?usage: cli_svc_netns.sh path/to/cogvideox}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
WS=$(dirname "$BIN")/tests/ws_follow
P=cvs$$
if ! command -v ip >/dev/null 2>&1 || ! ip netns add "${P}probe" 2>/dev/null; then
    echo "SKIP: network namespaces are not available here (needs root and iproute2)"
    exit 0
fi
ip netns del "${P}probe"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
    echo "SKIP: PostgreSQL's server binaries are not installed (apt-get install postgresql)"
    exit 0
fi
[ -x "$WS" ] || { echo "FAIL: $WS is not built (make ws_follow)"; exit 1; }
PGUSER_OS=postgres
id -u postgres >/dev/null 2>&1 || PGUSER_OS=nobody
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-svc-netns-XXXXXX")
PGH=$(mktemp -d /tmp/cvx-pg-XXXXXX)
NET=10.78.$(($$ % 200 + 20))
declare -A PID
. "$(dirname "${BASH_SOURCE[0]}")/netns.sh"
cleanup() {
    for k in "${!PID[@]}"; do kill -9 "${PID[$k]}" 2>/dev/null; done
    ip netns exec "${P}db" runuser -u "$PGUSER_OS" -- "$PGBIN/pg_ctl" -D "$PGH/data" -m immediate -w stop >/dev/null 2>&1
    netns_down "$P" db a b w1 w2
    rm -rf "$TMP" "$PGH"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: [${SECONDS}s] $*"; }
bad() { echo "FAIL: [${SECONDS}s] $*"; fails=$((fails + 1)); }
jfield() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1; }
ms() { date +%s%3N; }
cd "$TMP" || exit 1

# ---- the network: a bridge in a namespace of its own, each "host" on a veth port of it ----
HOSTS=(db a b w1 w2)
netns_up "$P" "$NET" "${HOSTS[@]}"
declare -A IP
i=1
for h in root "${HOSTS[@]}"; do
    IP[$h]=$NET.$i
    i=$((i + 1))
done
A=${IP[a]}:8080
B=${IP[b]}:8080

# ---- PostgreSQL on its host, over TCP ----
chown "$PGUSER_OS" "$PGH"
runuser -u "$PGUSER_OS" -- "$PGBIN/initdb" -D "$PGH/data" -A trust -U cvx -E UTF8 --no-sync >"$PGH/initdb.log" 2>&1 ||
    { bad "initdb: $(tail -n 5 "$PGH/initdb.log")"; exit 1; }
echo "host all all $NET.0/24 trust" >>"$PGH/data/pg_hba.conf"
pg() { # start | stop
    local how=start
    [ "$1" = stop ] && how="-m fast stop"
    ip netns exec "${P}db" runuser -u "$PGUSER_OS" -- "$PGBIN/pg_ctl" -D "$PGH/data" -l "$PGH/server.log" -w -t 60 \
        -o "-k $PGH -c listen_addresses=${IP[db]} -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        $how >/dev/null 2>&1
}
pg_sessions() { # the server's sessions of the test database: pid, state, wait, how long in that state, statement
    (cd / && ip netns exec "${P}db" runuser -u "$PGUSER_OS" -- "$PGBIN/psql" -h "$PGH" -U cvx -d postgres -Atc \
        "SELECT pid, state, wait_event_type, wait_event, now() - state_change, left(query, 80) FROM pg_stat_activity
         WHERE datname = 'postgres' AND pid != pg_backend_pid()" 2>&1 | tr '\n' ';')
}
pg start || { bad "PostgreSQL did not start: $(tail -n 5 "$PGH/server.log")"; exit 1; }
STORE="host=${IP[db]} port=5432 user=cvx dbname=postgres"
ok "PostgreSQL on ${IP[db]}:5432 (namespace ${P}db)"

"$BIN" make-model --preset tiny --seed 3 -o tiny >/dev/null 2>&1 || { bad "make-model tiny"; exit 1; }
"$BIN" keys create --store "$STORE" --key-file server.key --name netns --json >k.json 2>k.err || { bad "keys: $(cat k.err)"; exit 1; }
KEY=$(jfield apikey <k.json)
SECRET=$(jfield apisecret <k.json)

LEASE=6
export CVX_LOG_LEVEL=info # the workers log their claims (who ran what)
start_api() { # a|b
    TMPDIR=$TMP ip netns exec "${P}$1" "$BIN" serve --no-worker --model tiny --store "$STORE" --key-file server.key \
        --listen "${IP[$1]}:8080" --http-threads 2 --run-rate 0 >>"api_$1.out" 2>>"api_$1.err" &
    PID[api_$1]=$!
}
start_worker() { # w1|w2
    TMPDIR=$TMP ip netns exec "${P}$1" "$BIN" worker --model tiny --store "$STORE" --name "$1" --threads 1 \
        --lease-seconds $LEASE >>"$1.out" 2>>"$1.err" &
    PID[$1]=$!
}
healthy() { # HOST:PORT SECONDS
    local i
    for i in $(seq 1 $(($2 * 10))); do curl -sf -m 2 "http://$1/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}
killed=0 # nodes killed with -9: each leaves its scratch folder (the others remove theirs when they stop)
start_api a
start_api b
start_worker w1
start_worker w2
healthy "$A" 30 && healthy "$B" 30 && ok "API nodes A ($A) and B ($B) answer /healthz" ||
    { bad "API nodes: $(cat api_a.err api_b.err | tail -n 5)"; exit 1; }
for i in $(seq 1 100); do
    curl -s "http://$B/healthz" >h.json
    grep -q '"name": *"w1"' h.json && grep -q '"name": *"w2"' h.json && break
    sleep 0.1
done
grep -q '"role": *"api"' h.json && grep -q '"backend": *"postgresql"' h.json && grep -q '"name": *"w1"' h.json &&
    grep -q '"name": *"w2"' h.json && ok "/healthz of B: role api, backend postgresql, workers w1 and w2 with heartbeats" ||
    bad "/healthz of B: $(cat h.json)"

# ---- calls, signed as the model page's recipe signs them ----
NONCE_BASE=$(date +%s)
N=0
sign() { SIG="$(echo -n "${SECRET}$1" | openssl dgst -sha256 -hmac "${KEY}")"; }
post() { # HOST PATH BODY [NONCE]: a signed call (a fresh nonce unless given); the HTTP status in CODE, the body in
          # post.json (not to be called in a subshell: the nonce counter would not move on)
    local nonce=${4:-}
    if [ -z "$nonce" ]; then N=$((N + 1)); nonce=$((NONCE_BASE + N)); fi
    sign "$nonce"
    CODE=$(curl -s -m 15 -o post.json -w '%{http_code}' -X POST "http://$1$2" -H "Content-Type: application/json" \
        -H "x-api-key: $KEY" -H "x-nonce: $nonce" -H "x-signature: $SIG" -d "$3")
}
DNONCE=$((NONCE_BASE - 5)) # Detail polls reuse one nonce (read-only calls may)
detail() { post "$1" /v1/Task/Detail "{\"tasktoken\":\"$2\"}" "$DNONCE"; cp post.json detail.json; }
run() { # HOST BODY -> TOKEN (and TASKID)
    post "$1" /v1/Run/THUDM/CogVideoX-2b "$2"
    TOKEN=$(jfield socketaccesstoken <post.json)
    TASKID=$(jfield taskid <post.json)
    [ -n "$TOKEN" ] || bad "Run on $1: $(cat post.json)"
}
wait_final() { # HOST TOKEN SECONDS -> detail.json; 0 when final
    local i
    for i in $(seq 1 $(($3 * 10))); do
        detail "$1" "$2"
        grep -q '"status":"task_postprocess_end"\|"status":"task_cancel"' detail.json && return 0
        sleep 0.1
    done
    return 1
}
wait_step() { # HOST TOKEN STEP SECONDS: 0 once the task reached STEP
    local i s
    for i in $(seq 1 $(($4 * 20))); do
        detail "$1" "$2"
        s=$(grep -o 'Generate: step [0-9]*' detail.json | tail -n 1 | grep -o '[0-9]*$')
        [ -n "$s" ] && [ "$s" -ge "$3" ] && return 0
        grep -q '"status":"task_postprocess_end"\|"status":"task_cancel"' detail.json && return 1
        sleep 0.05
    done
    return 1
}
who() { # the worker of task $1's last claim (the highest claim token the workers logged)
    grep -H "task $1: claimed" w1.err w2.err 2>/dev/null | sed -n 's/^\(w[12]\)\.err:.*claim \([0-9]*\)).*/\2 \1/p' |
        sort -n | tail -n 1 | cut -d' ' -f2
}
claimers() { grep -l "task $1: claimed" w1.err w2.err 2>/dev/null | sed 's/\.err$//' | tr '\n' ' '; }

# ---- the recipe against A, Detail polls against B ----
export YOUR_API_KEY="$KEY"
export YOUR_API_SECRET="$SECRET"
export NONCE=$((NONCE_BASE - 10))
export SIGNATURE="$(echo -n "${YOUR_API_SECRET}${NONCE}" | openssl dgst -sha256 -hmac "${YOUR_API_KEY}")"
curl -s -X POST "http://$A/v1/Run/THUDM/CogVideoX-2b" -H "Content-Type: multipart/form-data" -H "x-api-key: ${YOUR_API_KEY}" -H "x-nonce: ${NONCE}" -H "x-signature: ${SIGNATURE}" -d '{ "prompt": "A sprawling futuristic city illuminated by neon lights, with flying cars zipping through the air. The skyline is filled with towering skyscrapers, and holographic advertisements flicker on every corner. The camera zooms through the streets, capturing the hustle and bustle of a technologically advanced society.", "steps": 50, "scale": "6.0", "seed": "123456" }' >run.json
RTOKEN=$(jfield socketaccesstoken <run.json)
rdone=0
for i in $(seq 1 600); do
    curl -s -X POST "http://$B/v1/Task/Detail" -H "Content-Type: multipart/form-data" -H "x-api-key: ${YOUR_API_KEY}" -H "x-nonce: ${NONCE}" -H "x-signature: ${SIGNATURE}" -d '{ "tasktoken": '$RTOKEN', }' >detail.json
    grep -q '"status":"task_postprocess_end"' detail.json && { rdone=1; break; }
    sleep 0.1
done
URL=$(jfield url <detail.json)
if [ $rdone = 1 ] && grep -q '"pexit":"0"' detail.json && case "$URL" in "http://$B/files/"*"/0.mp4") true;; *) false;; esac &&
    curl -sf -o recipe.mp4 "$URL" && [ "$(stat -c %s recipe.mp4)" = "$(sed -n 's/.*"outputs":\[{[^]]*"size":"\([0-9]*\)".*/\1/p' detail.json)" ]; then
    ok "recipe: Run on A, Detail polled on B (same nonce), done by $(who "$(jfield id <detail.json)"); MP4 from B ($(stat -c %s recipe.mp4) bytes)"
else
    bad "recipe across nodes: run $(cat run.json) detail $(head -c 600 detail.json)"
fi

# ---- 6 tasks alternately to A and B ----
TOKS=()
for k in 1 2 3 4 5 6; do
    [ $((k % 2)) = 1 ] && H=$A || H=$B
    run "$H" "{\"prompt\":\"task $k\",\"steps\":30,\"seed\":$k}"
    TOKS+=("$TOKEN")
done
all=1
declare -A BYW
for t in "${TOKS[@]}"; do
    wait_final "$B" "$t" 90 && grep -q '"pexit":"0"' detail.json || { all=0; bad "task $t: $(head -c 400 detail.json)"; continue; }
    id=$(jfield id <detail.json)
    w=$(who "$id")
    BYW[$w]=$((${BYW[$w]:-0} + 1))
    url=$(jfield url <detail.json)
    path=${url#http://*/}
    size=$(sed -n 's/.*"outputs":\[{[^]]*"size":"\([0-9]*\)".*/\1/p' detail.json)
    curl -sf -o fa.mp4 "http://$A/$path" && curl -sf -o fb.mp4 "http://$B/$path" && cmp -s fa.mp4 fb.mp4 &&
        [ "$(stat -c %s fa.mp4)" = "$size" ] || { all=0; bad "task $id: the output from A and B differ or fail"; }
    code=$(curl -s -o part.bin -w '%{http_code}' -r 10-109 "http://$A/$path")
    [ "$code" = 206 ] && cmp -s part.bin <(tail -c +11 fb.mp4 | head -c 100) || { all=0; bad "task $id: Range on A: $code"; }
    code=$(curl -s -o part.bin -w '%{http_code}' -H "Range: bytes=-50" "http://$B/$path")
    [ "$code" = 206 ] && cmp -s part.bin <(tail -c 50 fa.mp4) || { all=0; bad "task $id: Range on B: $code"; }
done
[ $all = 1 ] && [ "${BYW[w1]:-0}" -ge 1 ] && [ "${BYW[w2]:-0}" -ge 1 ] &&
    ok "6 tasks sent alternately to A and B: all done (w1 ${BYW[w1]:-0}, w2 ${BYW[w2]:-0}); every output from A and B alike, Ranges 206" ||
    bad "6 tasks: done by w1 ${BYW[w1]:-0}, w2 ${BYW[w2]:-0}"

# ---- a longer task: the reference, uninterrupted ----
LONG='{"prompt":"a long one","steps":40,"seed":77,"width":320,"height":192,"numFrames":25}'
run "$A" "$LONG"
wait_final "$A" "$TOKEN" 120 && grep -q '"pexit":"0"' detail.json && curl -sf -o ref.mp4 "$(jfield url <detail.json)" &&
    ok "reference task (40 steps, 320x192, 25 frames): $(stat -c %s ref.mp4) bytes in $(jfield elapsedseconds <detail.json) s" ||
    bad "reference task: $(head -c 400 detail.json)"

# ---- kill -9 of the generating worker ----
run "$B" "$LONG"
KTOK=$TOKEN KID=$TASKID
if wait_step "$B" "$KTOK" 8 60; then
    victim=$(who "$KID")
    kill -9 "${PID[$victim]}"
    killed=$((killed + 1))
    wait "${PID[$victim]}" 2>/dev/null
    step=$(grep -o 'Generate: step [0-9]*' detail.json | tail -n 1 | grep -o '[0-9]*$')
    ok "kill -9 of $victim at step $step of task $KID"
    if wait_final "$A" "$KTOK" 120 && grep -q '"pexit":"0"' detail.json; then
        resumed=$(grep -o 'Resuming from the checkpoint of step [0-9]*/40' detail.json | tail -n 1)
        curl -sf -o killed.mp4 "$(jfield url <detail.json)"
        now=$(who "$KID")
        [ -n "$resumed" ] && [ "$now" != "$victim" ] && cmp -s killed.mp4 ref.mp4 &&
            ok "the other worker ($now) took it after the lease: '$resumed'; the MP4 is byte-identical to the uninterrupted run" ||
            bad "after kill -9: resumed '$resumed' by $now (victim $victim), cmp $(cmp killed.mp4 ref.mp4 2>&1)"
    else
        bad "the killed worker's task did not finish: $(head -c 500 detail.json)"
    fi
    start_worker "$victim"
else
    bad "task $KID did not reach step 8: $(head -c 300 detail.json)"
fi

# ---- a nonce used on A is refused on B (a state-changing call); read-only calls may repeat theirs ----
N=$((N + 1))
USED=$((NONCE_BASE + N))
post "$A" /v1/Run/THUDM/CogVideoX-2b '{"prompt":"nonce on A","steps":2}' "$USED"
codeA=$CODE
ntok=$(jfield socketaccesstoken <post.json)
post "$B" /v1/Run/THUDM/CogVideoX-2b '{"prompt":"nonce again on B","steps":2}' "$USED"
codeB=$CODE
[ "$codeA" = 200 ] && [ "$codeB" = 401 ] && grep -q "Nonce has already been used" post.json &&
    ok "a nonce used for Run on A is refused on B: 401 $(cat post.json)" || bad "nonce across nodes: A $codeA, B $codeB $(cat post.json)"
wait_final "$B" "$ntok" 60 >/dev/null

# ---- a WebSocket on B sees every step of a task a worker runs ----
run "$A" '{"prompt":"followed on B","steps":40,"seed":5,"width":160,"height":96,"numFrames":13}'
timeout 120 "$WS" "${IP[b]}" 8080 "$TOKEN" >ws.txt 2>ws.err
steps=$(grep '"type":"task_output"' ws.txt | grep -o '"stepCurrent":"[0-9]*"' | grep -o '[0-9]*' | tr '\n' ' ')
first=$(echo $steps | cut -d' ' -f1)
want=$(seq -s ' ' "${first:-1}" 40)
if [ -n "$first" ] && [ "$(echo $steps | tr -s ' ' | sed 's/ *$//' | awk '{for(i=1;i<=NF;i++) if(i==1||$i!=$(i-1)) printf "%s%s", (i>1?" ":""), $i}')" = "$want" ] &&
    tail -n 1 ws.txt | grep -q '"type":"task_postprocess_end"'; then
    ok "WebSocket on B: every step from $first to 40 in order, then task_postprocess_end (task run by $(who "$TASKID"))"
else
    bad "WebSocket on B: steps '$steps', last $(tail -n 1 ws.txt | head -c 200) $(cat ws.err)"
fi

# ---- a Kill sent to B stops the task a worker runs ----
run "$A" "$LONG"
if wait_step "$B" "$TOKEN" 3 60; then
    w=$(who "$TASKID")
    t0=$(ms)
    post "$B" /v1/Task/Kill "{\"tasktoken\":\"$TOKEN\"}"
    code=$CODE
    stopped=
    for i in $(seq 1 100); do grep -q "task $TASKID: killed" "$w.err" && { stopped=$(($(ms) - t0)); break; }; sleep 0.02; done
    wait_final "$A" "$TOKEN" 10
    last=$(grep -o 'Generate: step [0-9]*' detail.json | tail -n 1)
    [ "$code" = 200 ] && [ -n "$stopped" ] && [ "$stopped" -le 2500 ] && grep -q '"status":"task_cancel"' detail.json &&
        ok "Kill sent to B: $w stopped generating after $stopped ms (the store is read at most once a second; the engine checks every transformer block); task_cancel at '$last'" ||
        bad "Kill via B: HTTP $code, stopped after '${stopped}' ms, $(head -c 300 detail.json)"
else
    bad "Kill test: the task did not start"
fi

# ---- kill -9 of node A: clients go on through B ----
run "$A" '{"prompt":"accepted by A","steps":30,"seed":11}'
ATOK=$TOKEN
kill -9 "${PID[api_a]}"
killed=$((killed + 1))
wait "${PID[api_a]}" 2>/dev/null
unset 'PID[api_a]'
curl -s -m 2 "http://$A/healthz" >/dev/null 2>&1 && bad "A still answers after kill -9"
run "$B" '{"prompt":"accepted by B while A is down","steps":30,"seed":12}'
BTOK=$TOKEN
wait_final "$B" "$ATOK" 60 && grep -q '"pexit":"0"' detail.json && curl -sf -o /dev/null "$(jfield url <detail.json)" &&
    wait_final "$B" "$BTOK" 60 && grep -q '"pexit":"0"' detail.json &&
    ok "kill -9 of A: its accepted task finished and downloads through B; B takes new Runs" ||
    bad "after kill -9 of A: $(head -c 300 detail.json)"
start_api a
healthy "$A" 30 && ok "A restarted" || bad "A did not restart"

# ---- PostgreSQL restarted mid-generation ----
post "$B" /v1/Task/List '{}'
before=$(jfield total <post.json)
run "$A" "$LONG"
PTOK=$TOKEN
if wait_step "$B" "$PTOK" 5 60; then
    pg stop
    post "$A" /v1/Task/Detail "{\"tasktoken\":\"$PTOK\"}" "$DNONCE"
    code=$CODE
    grep -q '"result":false' post.json && [ "$code" = 503 ] && ok "PostgreSQL down: A answers 503 in the error contract: $(cat post.json)" ||
        bad "PostgreSQL down: A answered $code $(cat post.json)"
    sleep 3
    pg start || bad "PostgreSQL did not start again"
    if wait_final "$B" "$PTOK" 120 && grep -q '"pexit":"0"' detail.json; then
        curl -sf -o pg.mp4 "$(jfield url <detail.json)"
        post "$A" /v1/Task/List '{}'
        after=$(jfield total <post.json)
        cmp -s pg.mp4 ref.mp4 && [ "$after" = $((before + 1)) ] &&
            ok "PostgreSQL restarted mid-generation: the task finished ($(claimers "$TASKID")), the same MP4; tasks $before -> $after, none lost" ||
            bad "after the PostgreSQL restart: tasks $before -> $after, cmp $(cmp pg.mp4 ref.mp4 2>&1)"
    else
        bad "after the PostgreSQL restart the task did not finish: $(head -c 400 detail.json)"
    fi
else
    bad "PostgreSQL restart: the task did not start"
fi

# ---- a network cut between a worker and PostgreSQL longer than the lease ----
run "$B" "$LONG"
CTOK=$TOKEN CID=$TASKID
if wait_step "$A" "$CTOK" 5 60; then
    cut=$(who "$CID")
    ip netns exec "${P}$cut" ip link set "${P}$cut" down
    # moved: the other worker claimed it (its log) or says it resumed (the task's log). Bounded by the lease, the
    # store's 10 s limit on a cut-off session's open transaction, the 2 s claim scan and a loaded machine's slack.
    moved=0
    deadline=$((SECONDS + LEASE + 60))
    while [ $SECONDS -lt $deadline ]; do
        detail "$A" "$CTOK"
        if grep -q 'Resuming from the checkpoint' detail.json || { [ -n "$(who "$CID")" ] && [ "$(who "$CID")" != "$cut" ]; }; then
            moved=1
            break
        fi
        sleep 0.1
    done
    sleep 1
    ip netns exec "${P}$cut" ip link set "${P}$cut" up
    if [ $moved = 1 ] && wait_final "$A" "$CTOK" 120 && grep -q '"pexit":"0"' detail.json; then
        curl -sf -o cut.mp4 "$(jfield url <detail.json)"
        other=$(who "$CID")
        end1=$(jfield postprocessendtime <detail.json)
        out1=$(md5sum <detail.json | cut -c1-8)
        # the cut-off worker comes back: it finds its claim taken and writes nothing
        lost=0
        LOST="task $CID: \(the lease is lost\|another worker holds it\|lease lost\)"
        for i in $(seq 1 300); do grep -q "$LOST" "$cut.err" && { lost=1; break; }; sleep 0.1; done
        sleep 2
        detail "$A" "$CTOK"
        end2=$(jfield postprocessendtime <detail.json)
        [ "$other" != "$cut" ] && cmp -s cut.mp4 ref.mp4 && [ $lost = 1 ] && [ "$end1" = "$end2" ] &&
            ! grep -q "task $CID: done" "$cut.err" &&
            ok "network cut of $cut for longer than the lease: $other resumed the task (the same MP4); $cut came back, found its lease lost and wrote nothing: $(grep "$LOST" "$cut.err" | head -n 1 | sed 's/^cogvideox [a-z]*: [a-z]*: //')" ||
            bad "network cut: moved to '$other' (cut $cut), lost $lost, end $end1 -> $end2, cmp $(cmp cut.mp4 ref.mp4 2>&1); $(grep "task $CID" "$cut.err" | tail -n 3)"
    else
        bad "network cut of $cut: the task did not move or finish (moved $moved): $(grep -o '"status":"[a-z_]*"' detail.json) $(grep -o '"debugoutput":"[^"]*' detail.json | tail -c 400); w1: $(grep "task $CID" w1.err | tail -n 4); w2: $(grep "task $CID" w2.err | tail -n 4); w2 last: $(tail -n 4 w2.err); sessions: $(pg_sessions)"
    fi
else
    bad "network cut: the task did not start"
fi

# SIGTERM: every node stops cleanly (exit 0; under ASan, no leak report)
for k in "${!PID[@]}"; do kill -TERM "${PID[$k]}" 2>/dev/null; done
clean=1
for k in "${!PID[@]}"; do
    wait "${PID[$k]}"
    rc=$?
    [ $rc = 0 ] || { clean=0; bad "$k exited $rc after SIGTERM: $(grep -h -A5 'Sanitizer' api_*.err w*.err | head -n 20)"; }
done
PID=()
[ $clean = 1 ] && ok "SIGTERM: both API nodes and both workers stopped cleanly (exit 0)"
left=$(find . -maxdepth 1 -name 'cogvideox-*' -type d | wc -l)
[ "$left" = "$killed" ] && ok "scratch folders: the $killed of the nodes killed with -9 remain, the stopped nodes removed theirs" ||
    bad "scratch folders: $left left, $killed node(s) killed with -9: $(ls -d cogvideox-* 2>/dev/null | head -n 6)"
[ $fails -eq 0 ] && echo "cli_svc_netns: all checks passed in ${SECONDS}s" || echo "cli_svc_netns: $fails check(s) failed"
exit $((fails > 0))
