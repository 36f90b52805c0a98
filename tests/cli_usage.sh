#!/usr/bin/env bash
# One exit-code rule and one message style for every subcommand (issue 14, items 4-6): a usage error (no or missing
# arguments, an unknown command or option, a bad value) exits 1 and says "cogvideox SUBCOMMAND: ..." or prints the
# usage; a model, file or I/O failure exits 2. Also --flag=value (GNU form), "did you mean", help SUBCOMMAND, an
# example in every subcommand's help, the random seed, and model folders that say how to get one.
set -u
BIN=${1:?usage: cli_usage.sh path/to/cogvideox}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-cli-usage-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect RC NEEDLE CMD...: exit code RC and NEEDLE in stderr ("" for any)
expect() {
    local want=$1 needle=$2; shift 2
    "$BIN" "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ $rc -ne "$want" ]; then bad "'$*': exit $rc (want $want): $(head -c 200 "$TMP/err")"; return; fi
    if [ -n "$needle" ] && ! grep -qF -- "$needle" "$TMP/err"; then
        bad "'$*': '$needle' not in: $(head -c 300 "$TMP/err")"; return
    fi
    ok "'$*' -> $rc: $(head -n 1 "$TMP/err" | cut -c1-110)"
}

M=$TMP/tiny
"$BIN" make-model --preset tiny -o "$M" >/dev/null 2>&1 || bad "make-model tiny"
: >"$TMP/file"

# usage errors: 1
expect 1 "usage: cogvideox <command>"
expect 1 "cogvideox: unknown command 'frobnicate'" frobnicate
expect 1 "did you mean 'generate'" gnerate
for c in info tokenize encode keys make-model serve golden download generate bench; do
    expect 1 "" "$c"                                   # no arguments
    expect 1 "cogvideox $c: unknown" "$c" --no-such-flag x
done
expect 1 "cogvideox generate: -m MODEL_DIR is required" generate -p x
expect 1 "cogvideox generate: --steps: 'many'" generate -m "$M" -p x --steps many
expect 1 "did you mean --seed?" generate -m "$M" -p x --seeed 3
# the engine's limits (cvx_engine_info, the ones Tool/Detail publishes), checked before the model is opened: a
# folder that does not exist proves nothing was opened
expect 1 "cogvideox generate: --steps: 1001 is out of range: from 1 to 1000" generate -m "$TMP/none" -p x --steps 1001
expect 1 "cogvideox generate: --frames: 10 is out of range: 4k+1 from 5 to 49 (5, 9, ..., 49)" generate -m "$TMP/none" -p x --frames 10
expect 1 "cogvideox generate: --width: 24 is out of range: a multiple of 16 from 16 to 2048" generate -m "$TMP/none" -p x --width 24
expect 1 "cogvideox generate: --fps: 121 is out of range: from 1 to 120" generate -m "$TMP/none" -p x --fps=121
expect 1 "cogvideox generate: --guidance: '101' is not a number from 0 to 100" generate -m "$TMP/none" -p x --guidance 101
"$BIN" generate --help | grep -q -- "--steps N              denoising steps, 1 to 1000 (default 50)" &&
    ok "generate --help prints the engine's range and default" || bad "generate --help: no engine range for --steps"
expect 1 "cogvideox make-model: unknown preset" make-model --preset huge -o "$TMP/m"
# "did you mean" for a mistyped flag, and a known flag without its value said as such
expect 1 "cogvideox info: unknown option '--jsn' (did you mean --json?)" info --jsn "$M"
expect 1 "cogvideox make-model: unknown option '--prest' (did you mean --preset?)" make-model --prest tiny -o "$TMP/m"
expect 1 "cogvideox make-model: option '-o' needs a value" make-model --preset tiny -o
expect 1 "(did you mean --revision?)" download --revison x THUDM/CogVideoX-2b -o "$TMP/d"
expect 1 "(did you mean --threads?)" golden --thread 2 "$TMP"
expect 1 "(did you mean --builtin?)" tokenize --buildin x
expect 1 "(did you mean --threads?)" encode -m "$M" --treads 2 x
expect 1 "(did you mean --store?)" keys create --stor "$TMP/s.db"
expect 1 "(did you mean --model?)" serve --modle "$M" --store "$TMP/s.db" --outputs "$TMP/o" --listen 127.0.0.1:0
expect 1 "cogvideox serve: --listen wants HOST:PORT" serve --model "$M" --store "$TMP/s.db" --outputs "$TMP/o" --listen nohost
expect 1 "cogvideox golden: --precision" golden --precision fp16 "$TMP"
expect 1 "is not a repository id" download a/b/c -o "$TMP/d"
expect 1 "cogvideox keys: unknown command" keys frob --store "$TMP/s.db"

# model, file or I/O failures: 2
expect 2 "cogvideox info: $TMP/file is not a folder" info "$TMP/file"
expect 2 "cogvideox make-model: " make-model --preset tiny -o "$TMP/file"
expect 2 "cogvideox generate: $TMP/file is not a folder" generate -m "$TMP/file" -p x -o "$TMP/x.mp4"
expect 2 "cogvideox tokenize: " tokenize -m "$TMP/nope" x
expect 2 "cogvideox encode: " encode -m "$TMP/nope" x
echo "not sqlite" >"$TMP/bad.db"
expect 2 "cogvideox keys: " keys list --store "$TMP/bad.db"
expect 2 "cogvideox serve: model folder $TMP/nope does not exist" \
    serve --model "$TMP/nope" --store "$TMP/s.db" --outputs "$TMP/o" --listen 127.0.0.1:0
# a PostgreSQL worker without --outputs makes a private scratch folder in TMPDIR; a start that fails after that
# (here: no model folder; no database is reached) leaves none behind
mkdir -p "$TMP/scratch"
TMPDIR="$TMP/scratch" expect 2 "cogvideox worker: model folder $TMP/nope does not exist" \
    worker --model "$TMP/nope" --store "postgresql://nobody@127.0.0.1:1/none"
TMPDIR="$TMP/scratch" expect 1 "cogvideox serve: --listen wants HOST:PORT" \
    serve --no-worker --model "$M" --store "postgresql://nobody@127.0.0.1:1/none" --listen nohost
expect 1 "cogvideox worker: unknown option '--bogus'" worker --bogus x
left=$(find "$TMP/scratch" -mindepth 1 | head -n 3)
[ -z "$left" ] && ok "failed PostgreSQL starts left no scratch folder" || bad "scratch folders left: $left"
# model folders say how to get one
expect 2 "model folder $TMP/nope does not exist" generate -m "$TMP/nope" -p x -o "$TMP/x.mp4"
expect 2 "cogvideox download" generate -m "$TMP/nope" -p x -o "$TMP/x.mp4"
mkdir -p "$TMP/empty"
expect 2 "not a CogVideoX pipeline folder (model_index.json missing)" generate -m "$TMP/empty" -p x -o "$TMP/x.mp4"
expect 2 "make-model --preset tiny" info "$TMP/empty"

# help: SUBCOMMAND --help = help SUBCOMMAND, an example each, -q and bench deviation listed
for c in info tokenize encode keys make-model serve golden download generate bench; do
    a=$("$BIN" "$c" --help 2>&1); b=$("$BIN" help "$c" 2>&1)
    [ "$a" = "$b" ] && grep -q "example: cogvideox $c\|example: cogvideox keys\|example: cogvideox info" <<<"$a" &&
        ok "help $c = $c --help, with an example" || bad "help $c: $(head -c 200 <<<"$b")"
done
"$BIN" generate --help | grep -q -- "-q, --quiet" && ok "generate --help lists -q" || bad "-q not in generate --help"
"$BIN" --help | grep -q "deviation" && ok "the top-level help lists bench deviation" || bad "bench deviation not listed"
"$BIN" keys --help | grep -q "key-only" && "$BIN" keys --help | grep -q "web page" &&
    ok "keys --help explains the modes and the page" || bad "keys --help"

# --flag=value
"$BIN" generate -m "$M" -p x -o "$TMP/eq.mp4" --steps=2 --frames=5 --height=16 --width=16 --seed=7 --json \
    >"$TMP/eq.json" 2>"$TMP/err" && grep -q '"seed": 7' "$TMP/eq.json" && ok "generate --steps=2 --seed=7 ..." ||
    bad "--flag=value: $(cat "$TMP/err")"
"$BIN" tokenize --builtin --max-length=4 "a red fox" >"$TMP/tok" 2>&1 && ok "tokenize --max-length=4" ||
    bad "tokenize --max-length=4: $(cat "$TMP/tok")"
expect 1 "cogvideox generate: --steps: 'x'" generate -m "$M" -p x --steps=x
# random seed: printed, in --json, different runs differ
for k in 1 2; do
    "$BIN" generate -m "$M" -p x -o "$TMP/r$k.mp4" --steps 1 --frames 5 --height 16 --width 16 --seed random --json \
        >"$TMP/r$k.json" 2>"$TMP/r$k.err" || bad "--seed random: $(cat "$TMP/r$k.err")"
done
s1=$(sed -n 's/.*"seed": \([0-9]*\).*/\1/p' "$TMP/r1.json"); s2=$(sed -n 's/.*"seed": \([0-9]*\).*/\1/p' "$TMP/r2.json")
[ -n "$s1" ] && [ "$s1" != "$s2" ] && grep -q "^seed $s1$" "$TMP/r1.err" && ok "--seed random: $s1, then $s2 (printed)" ||
    bad "--seed random: '$s1' '$s2' $(cat "$TMP/r1.err")"
"$BIN" generate -m "$M" -p x -o "$TMP/r3.mp4" --steps 1 --frames 5 --height 16 --width 16 --seed "$s1" --quiet &&
    cmp -s "$TMP/r1.mp4" "$TMP/r3.mp4" && ok "the printed seed gives the same video again" || bad "reusing seed $s1"

# download: a host that does not resolve or refuses the connection fails at once with a hint (it retried for 31 s)
for ep in http://127.0.0.1:1 http://cvx-no-such-host.invalid; do
    t0=$(date +%s%3N)
    expect 2 "cogvideox download: cannot reach $ep" download THUDM/CogVideoX-2b -o "$TMP/dl" --endpoint "$ep"
    t1=$(date +%s%3N)
    grep -q "HF_ENDPOINT" "$TMP/err" && [ $((t1 - t0)) -lt 5000 ] && ok "download from $ep: failed after $((t1 - t0)) ms, with a hint" ||
        bad "download from $ep: $((t1 - t0)) ms: $(cat "$TMP/err")"
done

# make-model on a terminal redraws its progress at most ~10 times a second (was hundreds of redraws in 0.0 s)
if command -v script >/dev/null 2>&1; then
    script -qec "'$BIN' make-model --preset tiny -o '$TMP/tty-model'" /dev/null >"$TMP/tty.out" 2>&1
    n=$(tr -cd '\r' <"$TMP/tty.out" | wc -c)
    [ "$n" -le 30 ] && ok "make-model on a terminal: $n carriage returns, $(wc -c <"$TMP/tty.out") bytes" ||
        bad "make-model on a terminal redrew $n times"
fi
# info --cpu names the kernels of each precision
"$BIN" info --cpu >"$TMP/cpu" 2>&1 && grep -q "^kernels      fp32 (--precision fp32, norms, softmax) on [a-z0-9]*; bf16 (--precision bf16) on" "$TMP/cpu" &&
    ! grep -q "kernels in use" "$TMP/cpu" && ok "info --cpu: $(grep '^kernels' "$TMP/cpu")" || bad "info --cpu: $(cat "$TMP/cpu")"
"$BIN" info --cpu --json | grep -q '"bf16_kernels"' && ok "info --cpu --json has fp32_kernels and bf16_kernels" ||
    bad "info --cpu --json"

if [ $fails -ne 0 ]; then echo "cli_usage: $fails failed"; exit 1; fi
echo "cli_usage: all passed"
