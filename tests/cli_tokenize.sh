#!/bin/bash
# cogvideox tokenize: the pipeline's ids for known prompts (ids published for t5-base, same vocabulary) through
# -m DIR, --spm FILE and --builtin; the plain sentencepiece path on a small golden model; exit codes 2 (a
# missing or broken model) and 1 (bad arguments) with a message, as every subcommand.
set -u
BIN="$1"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
mkdir "$T/tokenizer"
cp data/t5/spiece.model "$T/tokenizer/"

expect() { # label expected-substring command...
  local label="$1" want="$2"
  shift 2
  local out
  out=$("$@" 2>&1)
  case "$out" in *"$want"*) ;; *) echo "FAIL $label: wanted '$want' in: $out"; fail=1 ;; esac
}
expect_rc() { # label rc command...
  local label="$1" want="$2"
  shift 2
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ "$rc" != "$want" ] || [ ! -s "$T/err" ]; then echo "FAIL $label: exit $rc (wanted $want), stderr: $(cat "$T/err")"; fail=1; fi
}

expect "-m DIR" '"ids":[8774,296,1,0,0' "$BIN" tokenize -m "$T" --json "Hello world"
expect "--spm" '"ids":[0,1960,19,2,1245,239,1]' "$BIN" tokenize --spm "$T/tokenizer/spiece.model" --max-length 0 --json "<pad> Today is <unk> nice day </s>"
expect "--builtin, extra id" '"pieces":["\u2581","a","<extra_id_0>","\u2581","b","</s>"]' "$BIN" tokenize --builtin --max-length 8 --json "a<extra_id_0>b"
expect "--builtin, extra id ids" '"ids":[3,9,32099,3,115,1,0,0]' "$BIN" tokenize --builtin --max-length 8 --json "a<extra_id_0>b"
expect "truncation" '"truncated":true' "$BIN" tokenize --builtin --max-length 4 --json "one two three four five"
expect "text table" '  8774  ▁Hello' "$BIN" tokenize --builtin "Hello world"
expect "empty prompt" 'ids: 1 0 0' "$BIN" tokenize --builtin --max-length 3 ""
expect "stdin" '"ids":[8774,296,1]' sh -c "printf 'Hello world' | '$BIN' tokenize --builtin --max-length 0 --json -"
expect "--raw byte fallback" '"pieces":["\u2581","z","er","o","<0xE2>","<0x80>","<0x8B>","width"]' \
  "$BIN" tokenize --spm tests/data/golden/tokenizer/spm_small/unigram_nfkc_bytefallback_v700.model --raw --json "$(printf 'zero\xe2\x80\x8bwidth')"
expect "--raw normalized" '"normalized":"\u2581Hello\u2581world"' \
  "$BIN" tokenize --spm tests/data/golden/tokenizer/spm_small/unigram_nmt_nfkc_v800.model --raw --json "  Hello   world "

expect_rc "missing model dir" 2 "$BIN" tokenize -m "$T/nope" "x"
printf 'not a sentencepiece model' > "$T/bad.model"
expect_rc "broken model" 2 "$BIN" tokenize --spm "$T/bad.model" "x"
expect_rc "no model" 1 "$BIN" tokenize "x"
expect_rc "two models" 1 "$BIN" tokenize --builtin --spm "$T/bad.model" "x"
expect_rc "no text" 1 "$BIN" tokenize --builtin
expect_rc "bad max-length" 1 "$BIN" tokenize --builtin --max-length -3 "x"
expect_rc "unknown option" 1 "$BIN" tokenize --builtin --frobnicate "x"

[ $fail = 0 ] && echo "cli_tokenize: all passed"
exit $fail
