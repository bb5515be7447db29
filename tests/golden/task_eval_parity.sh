#!/usr/bin/env bash
# One task-eval protocol: the before/after scores `sllm qlora-train` reports and `sllm eval --task`
# on the same model (the NF4 base, then the NF4 base + the trained adapter) and the same file give
# the same answer for every item, and both print the same generation settings.
#   task_eval_parity.sh SLLM
BIN=$1
source "$(dirname "$0")/lib.sh"
default_model

head -n 8 "$ROOT/data/office/train.jsonl" >"$T/train.jsonl"
head -n 8 "$ROOT/data/office/test.jsonl" >"$T/test.jsonl"
# Few new tokens and a short run keep this quick; the settings are passed the same way to both.
GEN=(task_eval.max_new_tokens=40 task_eval.max_seqs=4)
"$BIN" qlora-train --model "$M" --data "$T/train.jsonl" --out "$T/runs" --name r --max-steps 2 \
  --batch-size 2 --grad-accum 1 --threads 2 train.lr=0.01 train.save_every=0 \
  --task-eval "$T/test.jsonl" "${GEN[@]}" --log-level warn >"$T/train.out" 2>&1 ||
  { cat "$T/train.out"; echo "FAIL qlora-train"; exit 1; }
R=$T/runs/r
for f in task_eval_base.jsonl task_eval_tuned.jsonl adapter/adapter_config.json; do
  [ -f "$R/$f" ] || { echo "FAIL qlora-train wrote no $f"; exit 1; }
done

EV=(--task "$T/test.jsonl" --max-new-tokens 40 max_seqs=4 quant.type=nf4 --threads 2
    --log-level warn)
"$BIN" eval --model "$M" "${EV[@]}" --predictions "$T/base.jsonl" --report "$T/base.md" \
  >"$T/eval_base.out" 2>&1 || { cat "$T/eval_base.out"; echo "FAIL eval (base)"; exit 1; }
"$BIN" eval --model "$M" --adapter "$R/adapter" "${EV[@]}" --predictions "$T/tuned.jsonl" \
  --report "$T/tuned.md" >"$T/eval_tuned.out" 2>&1 ||
  { cat "$T/eval_tuned.out"; echo "FAIL eval (tuned)"; exit 1; }

for which in base tuned; do
  if cmp -s "$R/task_eval_$which.jsonl" "$T/$which.jsonl"; then
    ok "$which: every answer of qlora-train's task eval equals sllm eval --task's ($(wc -l <"$T/$which.jsonl") items)"
  else
    bad "$which: the answers differ"; diff "$R/task_eval_$which.jsonl" "$T/$which.jsonl" | head -20
  fi
  a=$(grep '^Generation:' "$R/task_eval_$which.md"); b=$(grep '^Generation:' "$T/$which.md")
  if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "$which: same settings line: $a"
  else bad "$which: settings differ: '$a' vs '$b'"; fi
done
grep -q "max_new_tokens 40" "$R/report.md" && ok "report.md prints the settings" ||
  bad "report.md lacks the generation settings"
[ "$fails" -eq 0 ] && echo "all passed" || { echo "$fails failed"; exit 1; }
