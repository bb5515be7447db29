#!/usr/bin/env bash
# The main job on the default model (SmolLM2-135M-Instruct): installs what is missing,
# builds, shows the model (info, a generation, a chat turn, perplexity), then fine-tunes it
# on the office task: base task eval -> QLoRA -> tuned task eval, then quantizes the tuned model
# (AWQ calibrated on the office training data, NF4 and LLM.int8()) and benchmarks base, tuned and
# the three quantized models with `sllm bench`: task exact match, perplexity, latency, tokens/s,
# memory (about 50 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
M=models/SmolLM2-135M-Instruct.Q4_1.gguf
step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}"; }
step "model info" build/sllm info --model "$M" --ctx 2048
step "generate (greedy, chat template)" build/sllm generate --model "$M" \
  --prompt "What is the capital of France?" --temperature 0 --max-new-tokens 30
printf '\n\033[1m== chat (two turns from stdin)\033[0m\n'
printf 'Hi! Name one fruit that is yellow.\nAnd one that is red?\n' |
  build/sllm chat --model "$M" --temperature 0 --max-new-tokens 40
step "perplexity (ctx 512)" build/sllm eval --model "$M" --ppl tests/data/ppl_en.txt --ctx 512

# The tour's own run directory is started afresh each time.
rm -rf runs/tour-office
step "fine-tune: base eval -> QLoRA (NF4 + LoRA) -> tuned eval" build/sllm qlora-train \
  --config configs/smollm2-135m/qlora-office.yaml --name tour-office
printf '\n\033[1m== report\033[0m runs/tour-office/report.md\n'
sed -n '/## Task scores/,/Failures/p' runs/tour-office/report.md

R=runs/tour-office
step "merge the adapter into the base" build/sllm merge --model "$M" --adapter $R/adapter --out $R/merged
step "quantize the tuned model: AWQ 4-bit (calibrated on the office training data)" build/sllm quantize \
  --method awq --group-size 64 --model $R/merged --out $R/merged-awq --calib data/office/train.jsonl \
  --ppl tests/data/ppl_en.txt
step "quantize the tuned model: NF4 (bitsandbytes layout)" build/sllm quantize --method nf4 \
  --model $R/merged --out $R/merged-nf4
step "quantize the tuned model: LLM.int8() (bitsandbytes layout)" build/sllm quantize --method int8 \
  --model $R/merged --out $R/merged-int8
step "bench: base, tuned, tuned+AWQ, tuned+NF4, tuned+int8 (same prompts and max_new_tokens)" \
  build/sllm bench --prompt-set builtin:chat --max-new-tokens 32 --reps 8 --processes 4 --warmup 1 --threads 2 \
  --models "base=$M,tuned=$R/merged,tuned-awq=$R/merged-awq,tuned-nf4=$R/merged-nf4,tuned-int8=$R/merged-int8" \
  --task data/office/test.jsonl --task-limit 40 --ppl tests/data/ppl_en.txt \
  --markdown $R/bench.md --json $R/bench.json --html $R/bench.html
printf '\n\033[1m== done\033[0m the table: %s/bench.md, the charts: %s/bench.html\n' "$R" "$R"
