#!/bin/bash
# cogvideox encode on a tiny text encoder (tests/data/golden/t5/tiny_a_fp16) with the real T5 tokenizer:
# the pipeline's demo prompt and "" must give the reference's embeddings (row statistics of last_hidden_state
# from expected.safetensors), and bad input must fail cleanly.
set -u
BIN="$1"
CASE=tests/data/golden/t5/tiny_a_fp16
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
mkdir "$T/tokenizer"
ln -s "$PWD/$CASE/text_encoder" "$T/text_encoder"
cp data/t5/spiece.model "$T/tokenizer/"
PROMPT=$(sed -n 's/.*"prompt": "\(A sprawling[^"]*\)".*/\1/p' "$CASE/case.json" | head -1)
[ -n "$PROMPT" ] || { echo "no prompt in case.json"; exit 1; }

out=$("$BIN" encode -m "$T" --threads 2 "$PROMPT" "") || { echo "encode failed"; fail=1; }
echo "$out"
# Reference row statistics (mean std min max) of last_hidden_state, within 1e-3.
check_row() { # label mean std min max
  echo "$out" | awk -v l="$1" -v m="$2" -v s="$3" -v lo="$4" -v hi="$5" '
    function ok(a, b) { d = a - b; return d < 1e-3 && d > -1e-3 }
    $1 == l && $2 == "[1," && $3 == "226," && $4 == "32]" {
      found = 1; if (!(ok($6, m) && ok($8, s) && ok($10, lo) && ok($12, hi))) bad = 1 }
    END { exit !(found && !bad) }' || { echo "$1 embedding differs from the reference"; fail=1; }
}
check_row prompt -0.0508 1.0250 -4.4100 3.5748
check_row negative 0.0965 1.0960 -2.9388 3.0277
echo "$out" | grep -q '^prompt 1: 69 tokens' || { echo "token count differs"; fail=1; }

# --ids and --out.
printf '0 1 2 3\n32127, 5, 6, 7\n' > "$T/ids.txt"
"$BIN" encode -m "$T" --ids "$T/ids.txt" --out "$T/e.safetensors" | grep -q '^ids 2 .*\[1, 4, 32\]' \
  || { echo "--ids failed"; fail=1; }
[ -s "$T/e.safetensors" ] || { echo "--out wrote nothing"; fail=1; }

expect_fail() { # message-substring args...
  local want="$1"; shift
  local err
  err=$("$BIN" encode "$@" 2>&1 >/dev/null); local rc=$?
  if [ $rc -eq 0 ] || ! grep -q -- "$want" <<<"$err"; then echo "expected failure with '$want' for: $*; got rc=$rc: $err"; fail=1; fi
}
printf '1 2 3\n4 5\n' > "$T/ragged.txt"
printf '1 2 x\n' > "$T/word.txt"
printf '1 2 32128\n' > "$T/oov.txt"
expect_fail "line 2 has 2 ids" -m "$T" --ids "$T/ragged.txt"
expect_fail "not an integer" -m "$T" --ids "$T/word.txt"
expect_fail "outside the vocabulary" -m "$T" --ids "$T/oov.txt"
expect_fail "spiece.model" -m "$T/nonexistent" "a prompt"
expect_fail "usage" -m "$T"
expect_fail "unknown option" -m "$T" --frobnicate "x"
exit $fail
