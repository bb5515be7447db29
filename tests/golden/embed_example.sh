#!/usr/bin/env bash
# Installs sllm into a temporary prefix, builds examples/embed against the installed CMake
# package (find_package(sllm), no libtorch headers), runs it on the default model and checks
# that the library answers exactly what the CLI answers: the same greedy text and perplexity.
#   embed_example.sh BUILD_DIR SOURCE_DIR SLLM_BIN
set -euo pipefail
build=$1 src=$2 sllm=$3
model=$src/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || { echo "default model missing: run scripts/setup.sh"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
if grep -rlE '#include *[<"](torch|ATen|c10)/' "$tmp/prefix/include"; then
  echo "FAIL: installed public headers include libtorch"; exit 1
fi
cmake -S "$src/examples/embed" -B "$tmp/b" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/b" >/dev/null
out=$("$tmp/b/embed" "$model")
echo "$out"

question="What is the capital of France?"
text="The quick brown fox jumps over the lazy dog."
printf '%s' "$text" >"$tmp/ppl.txt"
"$sllm" generate --model "$model" --prompt "$question" --temperature 0 -n 24 --json \
  >"$tmp/gen.json" 2>/dev/null
"$sllm" eval --model "$model" --ppl "$tmp/ppl.txt" --ctx 64 --json >"$tmp/ppl.json" 2>/dev/null
python3 - "$tmp/gen.json" "$tmp/ppl.json" "$out" <<'PY'
import json, sys
gen = json.loads(open(sys.argv[1]).read().splitlines()[0])
ppl = json.load(open(sys.argv[2]))
out = sys.argv[3].split("\n")
streamed = "\n".join(out[1:-2])  # between the model line and the finish/perplexity lines
assert streamed == gen["text"], f"library text {streamed!r} != CLI text {gen['text']!r}"
finish = out[-2]
assert finish.startswith(f"finish: {gen['finish_reason']}, {gen['completion_tokens']} tokens"), finish
lib_ppl = float(out[-1].split()[1])
assert abs(lib_ppl - ppl["perplexity"]) < 1e-4 * ppl["perplexity"], (lib_ppl, ppl["perplexity"])
print(f"embed example == CLI: text {streamed!r}, perplexity {lib_ppl}")
PY
