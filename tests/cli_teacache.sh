#!/usr/bin/env bash
# `cogvideox generate --cache` through the real binary on the tiny model:
#  - --help documents it; bad specs (unknown mode, bad threshold, not 5 coefficients, non-finite numbers, empty,
#    missing value) exit 1 with the parser's message and write nothing;
#  - --json reports computed_steps at its top level: every step without a cache (and with "off"/"none"), the first
#    and the last always, fewer steps with an identity polynomial at a high threshold, every step at threshold 0;
#    and "cache", the canonical setting;
#  - threshold 0 with 0,0,0,1,0 writes frames identical to no cache.
set -u
BIN=${1:?usage: cli_teacache.sh path/to/cogvideox}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
MODEL=$(pwd)/tests/data/golden/e2e/t2v_2b_tiny_f32_negprompt/model
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cvx-cli-teacache-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
cd "$TMP" || exit 1
GEN=(generate -m "$MODEL" -p "a fox in the snow" --steps 8 --frames 9 --height 32 --width 48 --seed 5 --precision fp32
     --threads 2 --quiet)

"$BIN" generate --help >help.txt 2>&1
grep -q -- "--cache SPEC" help.txt && grep -q "teacache\[:THRESHOLD\[:C4,C3,C2,C1,C0\]\]" help.txt &&
    grep -q "computed_steps" help.txt && ok "--help documents --cache and computed_steps" || bad "help: $(cat help.txt)"

check_bad() { # SPEC MESSAGE
    rm -f bad.mp4
    "$BIN" "${GEN[@]}" -o bad.mp4 --cache "$1" >out.txt 2>err.txt
    local rc=$?
    if [ $rc -eq 1 ] && grep -qF -- "$2" err.txt && [ ! -e bad.mp4 ] && [ ! -s out.txt ]; then
        ok "--cache '$1': exit 1, $(head -n 1 err.txt)"
    else
        bad "--cache '$1': exit $rc, $(cat err.txt)"
    fi
}
check_bad "fast" "cogvideox generate: --cache: unknown cache mode 'fast' (expected off, none or teacache)"
check_bad "" "empty cache setting"
check_bad "teacache:" "teacache threshold '' is not a number"
check_bad "teacache:0,1" "teacache threshold '0,1' is not a number"
check_bad "teacache:-0.1" "teacache threshold -0.1 must not be negative"
check_bad "teacache:nan" "teacache threshold 'nan' is not finite"
check_bad "teacache:0.1:1,2,3,4" "teacache needs 5 coefficients C4,C3,C2,C1,C0 (highest power first), got 4"
check_bad "teacache:0.1:1,2,3,4,5,6" "got 6"
check_bad "teacache:0.1:1,2,3,inf,5" "teacache coefficient 4 'inf' is not finite"
check_bad "teacache:0.1:1,2,3,4,5:7" "at most THRESHOLD:C4,C3,C2,C1,C0"
"$BIN" "${GEN[@]}" -o bad.mp4 --cache >/dev/null 2>err.txt; rc=$?
[ $rc -eq 1 ] && grep -q -- "--cache needs a value" err.txt && ok "--cache without a value: exit 1" ||
    bad "--cache without a value: $rc $(cat err.txt)"

# steps [0, 1, ...] as one line: "0,1,2"
steps_of() { tr -d ' \n' <"$1" | sed -n 's/.*"computed_steps":\[\([0-9,]*\)\].*/\1/p'; }
cache_of() { tr -d ' \n' <"$1" | sed -n 's/.*"cache":"\([^"]*\)".*/\1/p'; }
run() { # NAME [--cache SPEC]
    local name=$1
    shift
    "$BIN" "${GEN[@]}" -o "$name.mp4" --frames-dir "$name" --json "$@" >"$name.json" 2>"$name.err" ||
        bad "$name: $(cat "$name.err")"
}
run plain
run off --cache off
run none --cache none
run zero --cache teacache:0:0,0,0,1,0
run high --cache teacache:5:0,0,0,1,0
run published --cache teacache
ALL=0,1,2,3,4,5,6,7
for n in plain off none zero; do
    [ "$(steps_of $n.json)" = "$ALL" ] && ok "$n: computed_steps [$ALL] (cache $(cache_of $n.json))" ||
        bad "$n: computed_steps [$(steps_of $n.json)]: $(cat $n.json)"
done
[ "$(cache_of plain.json)" = off ] && [ "$(cache_of none.json)" = off ] && [ "$(cache_of zero.json)" = "teacache:0:0,0,0,1,0" ] &&
    [ "$(cache_of published.json)" = "teacache:0.1" ] && ok "\"cache\" is the canonical setting" ||
    bad "cache fields: $(cache_of plain.json) $(cache_of none.json) $(cache_of zero.json) $(cache_of published.json)"
H=$(steps_of high.json)
case ",$H," in
    ,0,*7,) n=$(echo "$H" | tr ',' '\n' | wc -l)
             [ "$n" -lt 8 ] && ok "teacache:5:0,0,0,1,0: computed [$H] (first and last, $n of 8)" || bad "high: nothing skipped [$H]";;
    *) bad "high: computed_steps [$H] lacks the first or the last step";;
esac
P=$(steps_of published.json)
case ",$P," in ,0,*7,) ok "teacache (published 2b set, random weights): computed [$P]";; *) bad "published: [$P]";; esac
if cmp -s plain/00000.png zero/00000.png && diff -r plain zero >/dev/null; then
    ok "threshold 0 with 0,0,0,1,0: the same frames as no cache"
else
    bad "threshold 0 with 0,0,0,1,0 changed the frames"
fi
diff -r plain high >/dev/null && bad "skipping steps left every frame unchanged" || ok "skipping steps changes the frames"

[ $fails -eq 0 ] && echo "cli_teacache: all passed" || echo "cli_teacache: $fails failed"
exit $((fails > 0))
