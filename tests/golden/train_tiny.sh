#!/usr/bin/env bash
# Training end to end through the real binary on tiny random models (built by
# tests/reference/make_tiny_hf.py): per-step losses against transformers + PEFT replaying the same
# run in this test run, exact resume from a mid-run checkpoint, Ctrl-C (checkpoint, exit 130,
# resume), a full disk while checkpointing (error, earlier checkpoint intact), and the PEFT
# adapter written at the end.
#   train_tiny.sh SLLM PYTHON
BIN=$1 PY=$2
source "$(dirname "$0")/lib.sh"
REF_SCRIPT=$ROOT/tests/reference/check_train_peft.py
DATA=$ROOT/tests/data/train_tiny.jsonl

"$PY" "$ROOT/tests/reference/make_tiny_hf.py" "$T/tiny" --arch llama --tied --seed 3 >/dev/null ||
  { echo "FAIL cannot build the tiny model"; exit 1; }
COMMON=(--model "$T/tiny" --data "$DATA" --out "$T/runs" --batch-size 2 --grad-accum 2
        --threads 1 lora.r=4 lora.alpha=8 lora.target_modules=[all-linear] train.log_every=1
        train.warmup_steps=1 train.lr=0.01 train.save_total_limit=0 --log-level warn)
losses() { "$PY" -c 'import json,sys
print(json.dumps([json.loads(l)["loss"] for l in open(sys.argv[1]) if "event" not in l]))' "$1"; }

# 1. Losses against the reference, computed here: the run check_train_peft.py defines (LoRA on
# all linears, text data, 6 steps of 2 x 2 micro-batches) through `sllm sft`, then replayed in
# transformers + PEFT + torch AdamW from sllm's initial adapter (its step-1 checkpoint, lr 0).
mkdir -p "$T/ref"
CFG=$("$PY" "$REF_SCRIPT" --sllm "$BIN" --prepare "$T/ref" 2>"$T/ref.err" | tail -1) && [ -f "$CFG" ] ||
  { cat "$T/ref.err"; echo "FAIL check_train_peft.py --prepare"; exit 1; }
"$BIN" sft --config "$CFG" --log-level warn >"$T/ref.out" 2>&1 ||
  { cat "$T/ref.out"; echo "FAIL training run ref"; exit 1; }
LS=$(losses "$T/ref/runs/train_peft/train_log.jsonl")
LP=$("$PY" "$REF_SCRIPT" --sllm "$BIN" --replay "$T/ref" 2>"$T/ref.err" | tail -1) ||
  { cat "$T/ref.err"; echo "FAIL check_train_peft.py --replay"; exit 1; }
if "$PY" - "$LS" "$LP" <<'PY'
import json, sys
got, want = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ok = len(got) == len(want) == 6 and all(abs(g - w) <= 1e-4 * abs(w) for g, w in zip(got, want))
ok = ok and abs(want[-1] - want[0]) > 1e-2 * want[0]  # training moved the loss
print("sllm losses", got, "\nPEFT losses", want)
sys.exit(0 if ok else 1)
PY
then ok "losses = transformers + PEFT (rel 1e-4)"; else bad "losses differ from the PEFT replay"; fi

# 2. Four steps on prompt/completion data, checkpoints at 2 and 4: the run the next checks
# reproduce.
"$BIN" sft "${COMMON[@]}" --name a --max-steps 4 train.save_every=2 >"$T/a.out" 2>&1 ||
  { cat "$T/a.out"; echo "FAIL training run a"; exit 1; }
LA=$(losses "$T/runs/a/train_log.jsonl")
for f in adapter/adapter_config.json adapter/adapter_model.safetensors report.md loss.svg \
         checkpoints/step-000002/trainer_state.json checkpoints/step-000004/adapter/adapter_config.json; do
  [ -s "$T/runs/a/$f" ] || bad "missing runs/a/$f"
done
grep -q '"event": *"summary"\|"event":"summary"' "$T/runs/a/train_log.jsonl" || bad "no summary line"

# 3. Resume from the step-2 checkpoint of a copy: steps 3-4 identical.
cp -r "$T/runs/a" "$T/runs/b" && rm -rf "$T/runs/b/checkpoints/step-000004"
"$BIN" sft "${COMMON[@]}" --name b --max-steps 4 train.save_every=2 \
  --resume "$T/runs/b/checkpoints/step-000002" >"$T/b.out" 2>&1 || { cat "$T/b.out"; bad "resume run"; }
LB=$(losses "$T/runs/b/train_log.jsonl")
[ "$LA" = "$LB" ] && ok "resume reproduces $LB" || bad "resume: $LB vs $LA"

# 4. Ctrl-C: checkpoint + exit 130, then --resume finishes with the uninterrupted losses.
"$BIN" sft "${COMMON[@]}" --name full --max-steps 300 train.save_every=0 >/dev/null 2>&1
"$BIN" sft "${COMMON[@]}" --name int --max-steps 300 train.save_every=0 >"$T/int.out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -s "$T/runs/int/train_log.jsonl" ] && break
  sleep 0.05
done
kill -INT $pid; wait $pid; rc=$?
if [ $rc -eq 130 ] && ls "$T/runs/int/checkpoints" | grep -q step-; then
  ok "Ctrl-C: exit 130, checkpoint $(ls "$T/runs/int/checkpoints")"
else
  bad "Ctrl-C: exit $rc"; tail -3 "$T/int.out"
fi
"$BIN" sft "${COMMON[@]}" --name int --max-steps 300 train.save_every=0 --resume latest \
  >"$T/int2.out" 2>&1 || { tail -3 "$T/int2.out"; bad "resume after Ctrl-C"; }
[ "$(losses "$T/runs/int/train_log.jsonl")" = "$(losses "$T/runs/full/train_log.jsonl")" ] &&
  ok "resume after Ctrl-C reproduces the uninterrupted run" || bad "Ctrl-C resume losses differ"

# 5. Disk full at the second checkpoint: one error line, exit 1, the first checkpoint intact.
size=$(du -sb "$T/runs/a/checkpoints/step-000002" | cut -f1)
SLLM_TEST_DISK_FULL_AFTER=$((size * 3 / 2)) "$BIN" sft "${COMMON[@]}" --name full_disk \
  --max-steps 4 train.save_every=2 >"$T/fd.out" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "^error: could not write checkpoint.*No space left" "$T/fd.out" &&
   [ -s "$T/runs/full_disk/checkpoints/step-000002/trainable.safetensors" ] &&
   ! ls "$T/runs/full_disk/checkpoints" | grep -q "step-000004"; then
  ok "disk full: $(grep '^error' "$T/fd.out" | cut -c1-120)"
else
  bad "disk full: exit $rc"; tail -3 "$T/fd.out"
fi
"$BIN" sft "${COMMON[@]}" --name full_disk --max-steps 4 train.save_every=2 --resume latest \
  >"$T/fd2.out" 2>&1 && [ "$(losses "$T/runs/full_disk/train_log.jsonl")" = "$LA" ] &&
  ok "resume after the full disk reproduces run a" || { tail -3 "$T/fd2.out"; bad "resume after full disk"; }

echo "$fails failure(s)"
[ $fails -eq 0 ]
