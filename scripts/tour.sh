#!/usr/bin/env bash
# The main job on the default model (SmolLM2-135M-Instruct): installs what is missing,
# builds, shows the model (info, a generation, a chat turn, perplexity), then fine-tunes it
# on the office task: base task eval -> QLoRA -> tuned task eval (about 20 minutes on 2 cores).
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
