#!/usr/bin/env bash
# `sllm tokenize` reads the tokenizer alone, never the weights: the default GGUF cut off where
# its tensor data begins, and a Hugging Face directory holding only tokenizer files, give the
# same ids as the whole model (whose ids check_parity.py compares with transformers), while a
# command that needs the weights (info) still fails on them.
#   tokenize_only.sh SLLM PYTHON
BIN=$1 PY=$2
source "$(dirname "$0")/lib.sh"
default_model
MODEL=$M

# The file up to the start of its tensor data (offset from the gguf package's reader).
off=$("$PY" -c 'import sys, gguf; print(gguf.GGUFReader(sys.argv[1]).data_offset)' "$MODEL") ||
  { echo "FAIL cannot read the data offset of $MODEL (gguf package)"; exit 1; }
head -c "$off" "$MODEL" >"$T/meta_only.gguf"
echo "metadata-only GGUF: $off of $(stat -c %s "$MODEL") bytes"

"$BIN" convert --model "$MODEL" --out "$T/hf" --log-level error || { echo "FAIL convert"; exit 1; }
mkdir -p "$T/tok_only"
cp "$T/hf/tokenizer.json" "$T/hf/tokenizer_config.json" "$T/tok_only/"
[ -e "$T/hf/generation_config.json" ] && cp "$T/hf/generation_config.json" "$T/tok_only/"

# Every text of the tokenizer parity cases, plus special tokens written in the text.
"$PY" - "$ROOT/tests/data/tokenizer_cases.json" "$T/texts" <<'PY'
import json, sys, os
cases = json.load(open(sys.argv[1])) + ["<|im_start|>user\nhi<|im_end|>\n"]
os.makedirs(sys.argv[2])
for i, t in enumerate(cases):
    open(os.path.join(sys.argv[2], f"{i:03d}"), "w", encoding="utf-8", newline="").write(t)
PY
n=0 same=0
for f in "$T"/texts/*; do
  text=$(cat "$f"; printf x); text=${text%x}
  [ -z "$text" ] && continue  # --text "" is refused as no text
  want=$("$BIN" tokenize --model "$MODEL" --json --log-level error --text "$text") ||
    { bad "tokenize on the whole model ($f)"; continue; }
  n=$((n + 1)) k=0
  for m in "$T/meta_only.gguf" "$T/tok_only"; do
    got=$("$BIN" tokenize --model "$m" --json --log-level error --text "$text") || { bad "$m: exit $?"; continue; }
    [ "$got" = "$want" ] && k=$((k + 1)) || bad "$(basename "$m") ids differ on $(basename "$f"): $got vs $want"
  done
  [ $k -eq 2 ] && same=$((same + 1))
done
[ $n -gt 20 ] && [ $same -eq $n ] && ok "$same texts: the same ids from the metadata-only GGUF and the tokenizer-only directory" ||
  bad "$same of $n texts identical"

# The weights are really absent: loading the model from either fails.
"$BIN" info --model "$T/meta_only.gguf" >/dev/null 2>"$T/err" && bad "info loaded a GGUF without tensor data" ||
  { grep -q truncated "$T/err" && ok "info on the metadata-only GGUF: $(grep '^error' "$T/err" | cut -c1-100)" || bad "info error: $(cat "$T/err")"; }
"$BIN" info --model "$T/tok_only" >/dev/null 2>&1 && bad "info loaded a directory without weights" ||
  ok "info on the tokenizer-only directory fails"

echo "$fails failure(s)"
[ $fails -eq 0 ]
