#!/usr/bin/env bash
# `sllm distill` with the default GGUF model as teacher (its blocks run as stored): a student cut
# from it (every 10th layer, trained fully) and the GGUF file itself as the student (LoRA) both
# train for two steps and write what they trained.
#   distill_gguf.sh SLLM
BIN=$1
source "$(dirname "$0")/lib.sh"
default_model
head -n 4 "$ROOT/data/office/train.jsonl" >"$T/train.jsonl"
COMMON=(--model "$M" --data "$T/train.jsonl" --out "$T/runs" --max-steps 2 --batch-size 2
        --grad-accum 1 --threads 2 data.max_seq_length=384 train.save_every=0 --log-level warn)

layers() { sed -n 's/.*"num_hidden_layers": *\([0-9]*\).*/\1/p' "$1/config.json"; }
check_file() {  # what, file
  if [ -s "$2" ]; then ok "$1"; else bad "$1: $2 is missing"; fi
}

"$BIN" distill "${COMMON[@]}" --name cut student.init.every_k=10 lora=null >"$T/cut.out" 2>&1 ||
  { cat "$T/cut.out"; echo "FAIL distill with a student cut from the GGUF teacher"; exit 1; }
check_file "cut: the trained student" "$T/runs/cut/model/model.safetensors"
n=$(layers "$T/runs/cut/model" 2>/dev/null)
if [ "$n" = 3 ]; then ok "cut: layers 0, 10, 20 of 30"; else
  bad "cut: the student has ${n:-no} layers, expected 3"; fi
"$BIN" distill "${COMMON[@]}" --name given student.model="$M" loss.kd_ratio=1.0 \
  >"$T/given.out" 2>&1 ||
  { cat "$T/given.out"; echo "FAIL distill with a GGUF file as the student"; exit 1; }
check_file "given: the student's LoRA adapter" "$T/runs/given/adapter/adapter_model.safetensors"
[ "$fails" = 0 ] && echo "PASS" || { echo "FAIL $fails check(s)"; exit 1; }
