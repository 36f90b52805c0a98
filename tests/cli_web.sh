#!/usr/bin/env bash
# The web page at / of `cogvideox serve` in a real browser: Debian's headless Chromium (/usr/bin/chromium, from
# scripts/install-deps.sh) driven by playwright-core (npm, pinned in tests/web/package-lock.json, installed into
# tests/web/node_modules on first use), against the real binary, engine and tiny model on 127.0.0.1.
# tests/web/web_test.mjs does the browsing: signature and key-only projects, a prompt submitted on the page, the
# progress bar advancing over the WebSocket, the finished <video> loading (readyState >= 2) with the output URL.
# tests/web/web_i2v_test.mjs, against a second server with the tiny-i2v model: the page shows an image picker, the
# test picks a PNG there and the task runs to a playing video (a file that is not a picture gets the server's error).
# Besides, with curl: the page's three files are served from the binary with their content types, and other GET
# paths still get the API's 404.
# Chromium missing is the only reason to skip (exit 0 with SKIP); anything else missing is a failure.
# Every wait is bounded; only 127.0.0.1 is used.
set -u
BIN=${1:?usage: cli_web.sh path/to/cogvideox}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
HERE=$(cd "$(dirname "$0")" && pwd)
WEB="$HERE/web"
CHROMIUM=${CVX_CHROMIUM:-/usr/bin/chromium}
# The screenshots are test artifacts, kept in the build folder beside the binary (test-artifacts/web.png, -1280.png
# at 1280 px and -390.png at a phone's 390 px), overwritten by each run.
SHOT=${CVX_WEB_SHOT:-$(dirname "$BIN")/test-artifacts/web.png}
mkdir -p "$(dirname "$SHOT")" || { echo "FAIL: cannot create $(dirname "$SHOT")"; exit 1; }

if [ ! -x "$CHROMIUM" ]; then
    echo "SKIP: $CHROMIUM is not installed (apt-get install chromium, as scripts/install-deps.sh does): the web page was not tested in a browser"
    exit 0
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-cli-web-XXXXXX")
SERVER_PID=
cleanup() {
    [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
fails=0
ok() { echo "ok: [${SECONDS}s] $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
jfield() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1; }

command -v node >/dev/null 2>&1 || { echo "FAIL: node is not installed (needed to drive the browser)"; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "FAIL: npm is not installed (needed for playwright-core)"; exit 1; }

# playwright-core, as locked, once (several builds of the tree may run this test at the same time: one installs).
want=$(sed -n '/"node_modules\/playwright-core"/,/}/s/.*"version": *"\([^"]*\)".*/\1/p' "$WEB/package-lock.json" | head -n 1)
have=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$WEB/node_modules/playwright-core/package.json" 2>/dev/null | head -n 1)
if [ "$have" != "$want" ]; then
    (
        flock -w 300 9 || exit 1
        have=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$WEB/node_modules/playwright-core/package.json" 2>/dev/null | head -n 1)
        [ "$have" = "$want" ] && exit 0
        timeout 300 npm ci --prefix "$WEB" --no-audit --no-fund --loglevel=error >"$TMP/npm.log" 2>&1
    ) 9>"$WEB/.npm-install.lock"
    st=$?
    have=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$WEB/node_modules/playwright-core/package.json" 2>/dev/null | head -n 1)
    if [ $st -ne 0 ] || [ "$have" != "$want" ]; then
        echo "FAIL: npm ci --prefix tests/web (playwright-core $want) failed: $(tail -n 5 "$TMP/npm.log" 2>/dev/null)"
        exit 1
    fi
    ok "installed playwright-core $want into tests/web/node_modules"
fi

cd "$TMP" || exit 1
"$BIN" make-model --preset tiny --seed 3 -o tiny >/dev/null 2>&1 || { bad "make-model tiny"; exit 1; }
"$BIN" keys create --store s.db --name web --json >k.json 2>/dev/null || { bad "keys create"; exit 1; }
"$BIN" keys create --store s.db --name web-key-only --mode key-only --json >ko.json 2>/dev/null || { bad "keys create key-only"; exit 1; }
KEY=$(jfield apikey <k.json)
SECRET=$(jfield apisecret <k.json)
KO=$(jfield apikey <ko.json)

# start_server MODEL LOG: serve MODEL on a free loopback port (LOG.out, LOG.err); PORT and SERVER_PID set, 0 once
# /healthz answers. stop_server WHAT LOG: SIGTERM, then the exit status must be 0 (a sanitizer build reports memory
# errors and leaks through it).
start_server() {
    "$BIN" serve --model "$1" --store s.db --outputs out --listen 127.0.0.1:0 --threads 2 >"$2.out" 2>"$2.err" &
    SERVER_PID=$!
    PORT=
    for _ in $(seq 1 200); do
        [ -z "$PORT" ] && PORT=$(sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$2.out" | head -n 1)
        if [ -n "$PORT" ] && curl -sf --max-time 2 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    curl -sf --max-time 2 "http://127.0.0.1:${PORT:-0}/healthz" >/dev/null 2>&1
}
stop_server() {
    local st
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        bad "$1 did not stop on SIGTERM"
        return
    fi
    wait "$SERVER_PID" 2>/dev/null
    st=$?
    SERVER_PID=
    [ $st -eq 0 ] && ok "$1 stopped on SIGTERM (exit 0)" || bad "$1 exit status $st after SIGTERM: $(tail -n 20 "$2.err")"
}

start_server tiny serve || { bad "server did not start: $(cat serve.err)"; exit 1; }
ok "serve listening on port $PORT"
H=http://127.0.0.1:$PORT

# ---- the files, from the binary ----
served() { # URL FILE TYPE
    local got
    got=$(curl -s --max-time 5 -D headers.txt -o body.bin -w '%{http_code} %{content_type}' "$H$1")
    if [ "$got" = "200 $3" ] && cmp -s body.bin "$2" && grep -qi '^Cache-Control: no-cache' headers.txt; then
        ok "GET $1: 200 $3, $(wc -c <body.bin) bytes = $(basename "$2")"
    else
        bad "GET $1: $got ($(head -c 200 body.bin))"
    fi
}
ROOT=$(cd "$HERE/.." && pwd)
served / "$ROOT/web/index.html" "text/html; charset=utf-8"
served /index.html "$ROOT/web/index.html" "text/html; charset=utf-8"
served /app.js "$ROOT/web/app.js" "text/javascript; charset=utf-8"
served /style.css "$ROOT/web/style.css" "text/css; charset=utf-8"
for p in /app.js/ /nope.js /../web/app.js /files/ "/index.html?x=1"; do
    code=$(curl -s --max-time 5 --path-as-is -o body.bin -w '%{http_code}' "$H$p")
    case "$p" in
        *\?*) [ "$code" = 200 ] && ok "GET $p: 200 (the query string is not part of the path)" || bad "GET $p: $code" ;;
        *) [ "$code" = 404 ] && ok "GET $p: 404" || bad "GET $p: $code $(head -c 200 body.bin)" ;;
    esac
done
code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -X POST "$H/")
[ "$code" = 404 ] && ok "POST /: 404" || bad "POST /: $code"

# ---- the browser ----
CVX_WEB_URL=$H CVX_WEB_KEY=$KEY CVX_WEB_SECRET=$SECRET CVX_WEB_KO_KEY=$KO CVX_WEB_SHOT=$SHOT CVX_CHROMIUM=$CHROMIUM \
    timeout -k 5 170 node "$WEB/web_test.mjs"
st=$?
[ $st -eq 0 ] && ok "browser test passed (screenshot: $SHOT)" || bad "browser test (exit $st); server log: $(tail -n 5 serve.err)"

stop_server server serve

# ---- an image-to-video model: the page's image picker (tests/web/web_i2v_test.mjs) ----
"$BIN" make-model --preset tiny-i2v -o tiny-i2v >/dev/null 2>&1 || bad "make-model tiny-i2v"
ffmpeg -v error -f lavfi -i testsrc=s=80x48 -frames:v 1 first.png || bad "ffmpeg could not make the test image"
printf 'this is not a picture' >not-a-picture.png
if start_server tiny-i2v serve-i2v; then
    ok "serve (tiny-i2v) listening on port $PORT"
    CVX_WEB_URL=http://127.0.0.1:$PORT CVX_WEB_KO_KEY=$KO CVX_WEB_IMAGE=$TMP/first.png \
        CVX_WEB_BAD_IMAGE=$TMP/not-a-picture.png CVX_WEB_SHOT="${SHOT%.png}-i2v.png" CVX_CHROMIUM=$CHROMIUM \
        timeout -k 5 100 node "$WEB/web_i2v_test.mjs"
    st=$?
    [ $st -eq 0 ] && ok "i2v browser test passed" || bad "i2v browser test (exit $st); server log: $(tail -n 5 serve-i2v.err)"
    stop_server "the i2v server" serve-i2v
else
    bad "the i2v server did not start: $(cat serve-i2v.err)"
fi

if [ $fails -ne 0 ]; then
    echo "cli_web: $fails check(s) FAILED"
    exit 1
fi
echo "cli_web: all checks passed"
