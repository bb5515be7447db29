#!/usr/bin/env bash
# Bad input through the real binary: every case must print one "error: ..." line and exit
# with status 1 -- never a crash (signal), never a success.
set -u
BIN=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODEL=$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$MODEL" ] || { echo "missing $MODEL: run scripts/setup.sh"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0; passes=0

expect_error() {  # name, expected substring, command...
  local name=$1 want=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  local lines; lines=$(grep -c '^error: ' "$T/err")
  if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && grep -q -- "$want" "$T/err"; then
    passes=$((passes + 1)); echo "ok   $name: $(grep '^error: ' "$T/err" | cut -c1-150)"
  else
    fails=$((fails + 1)); echo "FAIL $name (exit $rc, wanted '$want')"; tail -5 "$T/err"
  fi
}

head -c 1000000 "$MODEL" > "$T/truncated.gguf"
head -c 20 "$MODEL" > "$T/header_only.gguf"
cp "$MODEL" "$T/bad_version.gguf"; printf '\x09' | dd of="$T/bad_version.gguf" bs=1 seek=4 conv=notrunc 2>/dev/null
printf 'GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\x7f\x00\x00\x00\x00\x00\x00\x00\x00' > "$T/huge_count.gguf"
echo "not a model" > "$T/text.gguf"

expect_error "missing model" "does not exist" "$BIN" info --model "$T/nope.gguf"
expect_error "truncated gguf" "truncated" "$BIN" info --model "$T/truncated.gguf"
expect_error "header-only gguf" "GGUF" "$BIN" info --model "$T/header_only.gguf"
expect_error "unsupported gguf version" "version" "$BIN" info --model "$T/bad_version.gguf"
expect_error "absurd tensor count" "GGUF" "$BIN" info --model "$T/huge_count.gguf"
expect_error "not a gguf" "GGUF" "$BIN" info --model "$T/text.gguf"

"$BIN" convert --model "$MODEL" --out "$T/hf" --log-level error || { echo "FAIL convert"; exit 1; }
mkdir -p "$T/hf_trunc" "$T/hf_notok" "$T/hf_badcfg" "$T/hf_hdr"
cp "$T/hf/config.json" "$T/hf/tokenizer.json" "$T/hf/tokenizer_config.json" "$T/hf_trunc/"
head -c 5000000 "$T/hf/model.safetensors" > "$T/hf_trunc/model.safetensors"
cp "$T/hf/config.json" "$T/hf/model.safetensors" "$T/hf_notok/"
cp "$T/hf/"* "$T/hf_badcfg/"; sed -i 's/"hidden_size": 576/"hidden_size": "wide"/' "$T/hf_badcfg/config.json"
cp "$T/hf/"* "$T/hf_hdr/"; printf '\xff\xff\xff\xff\xff\xff\xff\x00' | dd of="$T/hf_hdr/model.safetensors" bs=1 conv=notrunc 2>/dev/null
expect_error "truncated safetensors" "model.safetensors" "$BIN" info --model "$T/hf_trunc"
expect_error "header length past the file" "model.safetensors" "$BIN" info --model "$T/hf_hdr"
expect_error "missing tokenizer" "tokenizer" "$BIN" info --model "$T/hf_notok"
expect_error "wrong config.json type" "hidden_size" "$BIN" info --model "$T/hf_badcfg"

printf 'sampling:\n  temperature: hot\n  top_kk: 3\n' > "$T/bad.yaml"
expect_error "config wrong type + unknown key" "top_kk" "$BIN" generate --model "$MODEL" --prompt hi --config "$T/bad.yaml"
expect_error "bad override" "sampling.temperature" "$BIN" generate --model "$MODEL" --prompt hi sampling.temperature=warm
expect_error "empty prompt" "empty" "$BIN" generate --model "$MODEL" --prompt ""
expect_error "prompt longer than context" "context" "$BIN" generate --model "$MODEL" --ctx 16 --chat-template false \
  --prompt "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen"
printf '{"prompt": "ok"}\n{"prompt": \n' > "$T/bad.jsonl"
expect_error "malformed jsonl line" "bad.jsonl:2" "$BIN" generate --model "$MODEL" --prompt-file "$T/bad.jsonl"
expect_error "bad dtype" "dtype" "$BIN" info --model "$MODEL" --dtype fp8
expect_error "convert onto existing dir" "not empty" "$BIN" convert --model "$MODEL" --out "$T/hf"
expect_error "convert to an unknown format" "unknown --to" "$BIN" convert --model "$MODEL" --to onnx --out "$T/x"
expect_error "convert: --type without --to gguf" "applies to --to gguf" "$BIN" convert --model "$MODEL" --type q8_0 --out "$T/x"
expect_error "gguf: unknown --type" "unknown GGUF type" "$BIN" convert --model "$MODEL" --to gguf --type q3_k --out "$T/x.gguf"
: > "$T/exists.gguf"
expect_error "gguf: output exists" "already exists" "$BIN" convert --model "$MODEL" --to gguf --out "$T/exists.gguf"
expect_error "gguf: no such directory" "does not exist" "$BIN" convert --model "$MODEL" --to gguf --out "$T/nodir/x.gguf"
expect_error "gguf: unwritable directory" "cannot write" "$BIN" convert --model "$MODEL" --to gguf --out /proc/sllm-x.gguf
mkdir -p "$T/hf_llama3"; cp "$T/hf/"* "$T/hf_llama3/"
sed -i 's/"rope_scaling": null/"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}/' "$T/hf_llama3/config.json"
expect_error "gguf: a model it cannot write for llama.cpp" "rope scaling 'llama3'" "$BIN" convert --model "$T/hf_llama3" --to gguf --out "$T/q.gguf"
[ ! -e "$T/x.gguf" ] && [ ! -e "$T/q.gguf" ] || { fails=$((fails + 1)); echo "FAIL a refused GGUF export left a file"; }
expect_error "ppl file too short" "at least 2 tokens" "$BIN" eval --model "$MODEL" --ppl /dev/null

# Speculative decoding: k out of range, an unknown drafter, a draft with another vocabulary.
GEN=("$BIN" generate --model "$MODEL" --prompt hi -n 2)
expect_error "speculative: k 0" "num_speculative_tokens must be in" "${GEN[@]}" --draft ngram \
  --num-speculative-tokens 0
expect_error "speculative: k 33" "num_speculative_tokens must be in" "${GEN[@]}" --draft ngram \
  --num-speculative-tokens 33
expect_error "speculative: k -1" "num_speculative_tokens must be in" "${GEN[@]}" --draft ngram \
  --num-speculative-tokens -1
expect_error "speculative: k 0 with a draft model" "num_speculative_tokens must be in" "${GEN[@]}" \
  --draft-model "$MODEL" --num-speculative-tokens 0
expect_error "speculative serve: k 0" "num_speculative_tokens must be in" "$BIN" serve --model "$MODEL" \
  --port 0 --draft ngram --num-speculative-tokens 0
expect_error "speculative: unknown drafter" "--draft must be 'ngram'" "${GEN[@]}" --draft eagle
expect_error "speculative: two drafters" "not both" "${GEN[@]}" --draft ngram --draft-model "$MODEL"
mkdir -p "$T/hf_vocab"
cp "$T/hf/"* "$T/hf_vocab/"
sed -i 's/"added_tokens": \[/"added_tokens": [{"id": 49152, "content": "<extra>", "special": true}, /' \
  "$T/hf_vocab/tokenizer.json"
expect_error "speculative: draft with another vocabulary" "draft model's tokenizer has 49153 tokens" \
  "${GEN[@]}" --draft-model "$T/hf_vocab"
mkdir -p "$T/hf_othertok"  # the same size, one special token spelled differently
cp "$T/hf/"* "$T/hf_othertok/"
sed -i 's/<|im_start|>/<|im_begin|>/g' "$T/hf_othertok/tokenizer.json" "$T/hf_othertok/tokenizer_config.json"
expect_error "speculative: draft with another token spelling" "vocabulary differs from the target's at token" \
  "${GEN[@]}" --draft-model "$T/hf_othertok"
expect_error "speculative serve: draft with another vocabulary" "draft model's tokenizer has 49153 tokens" \
  "$BIN" serve --model "$MODEL" --port 0 --draft-model "$T/hf_vocab"

# Fine-tuning and task evaluation.
TRAIN=("$BIN" sft --model "$MODEL" --out "$T/runs" --max-steps 1)
printf '{"prompt": "a", "completion": "b"}\n{"prompt": "a", "completion": \n' > "$T/train_bad.jsonl"
expect_error "train: malformed jsonl line" "train_bad.jsonl:2" "${TRAIN[@]}" --data "$T/train_bad.jsonl"
printf '{"prompt": "a", "answer": "b"}\n' > "$T/train_fields.jsonl"
expect_error "train: missing fields" "train_fields.jsonl:1" "${TRAIN[@]}" --data "$T/train_fields.jsonl"
: > "$T/train_empty.jsonl"
expect_error "train: empty dataset" "no examples" "${TRAIN[@]}" --data "$T/train_empty.jsonl"
printf '{"prompt": "a", "completion": "b"}\n' > "$T/train_ok.jsonl"
expect_error "train: unknown target module" "q_proj, k_proj, v_proj, o_proj" "${TRAIN[@]}" \
  --data "$T/train_ok.jsonl" 'lora.target_modules=[query]'
expect_error "train: lr 0" "train.lr must be positive" "${TRAIN[@]}" --data "$T/train_ok.jsonl" --lr 0
expect_error "train: batch 0" "batch_size must be at least 1" "${TRAIN[@]}" --data "$T/train_ok.jsonl" \
  --batch-size 0
expect_error "train: missing data file" "train_missing.jsonl" "${TRAIN[@]}" --data "$T/train_missing.jsonl"
expect_error "task eval: malformed line" "train_bad.jsonl:2" "$BIN" eval --model "$MODEL" --task "$T/train_bad.jsonl"
expect_error "adapter dir missing" "adapter" "$BIN" eval --model "$MODEL" --adapter "$T/nope" --ppl /dev/null

# Distillation: one tokenizer for student and teacher, layers that exist, a known loss.
DISTILL=("$BIN" distill --model "$MODEL" --out "$T/runs" --max-steps 1 --data "$T/train_ok.jsonl")
expect_error "distill: student with another tokenizer" "same tokenizer" "${DISTILL[@]}" \
  --name othertok "student.model=$T/hf_othertok"
expect_error "distill: layer out of range" "layer 30 is out of range" "${DISTILL[@]}" --name layers \
  'student.init.layers=[0, 30]'
expect_error "distill: unknown loss" "forward_kl, reverse_kl or jsd" "${DISTILL[@]}" loss.kind=kl
expect_error "distill: --generate without prompts" "--prompts" "$BIN" distill --model "$MODEL" --generate \
  --out "$T/answers.jsonl"

# Quantization.
printf 'Only a few words of calibration text.\n' > "$T/calib_small.txt"
expect_error "quantize: unknown method" "unknown --method" "$BIN" quantize --model "$MODEL" --out "$T/q" \
  --method q3
expect_error "quantize: too little calibration text" "needs 8192 tokens" "$BIN" quantize --model "$MODEL" \
  --out "$T/q" --method gptq --calib "$T/calib_small.txt"
expect_error "quantize: unknown head format" "unknown --lm-head 'q3': use keep or int8" "$BIN" quantize \
  --model "$MODEL" --out "$T/q" --method rtn --lm-head q3
expect_error "quantize: no calibration file" "--calib" "$BIN" quantize --model "$MODEL" --out "$T/q" --method awq
expect_error "quantize: bits the method lacks" "awq supports --bits 4" "$BIN" quantize --model "$MODEL" \
  --out "$T/q" --method awq --bits 8 --calib "$T/calib_small.txt"
expect_error "quantize: group size not dividing" "does not divide the input width 576" "$BIN" quantize \
  --model "$MODEL" --out "$T/q" --method awq --group-size 128 --calib "$T/calib_small.txt"
"$BIN" quantize --model "$MODEL" --out "$T/q_rtn" --method rtn --log-level error >/dev/null ||
  { echo "FAIL quantize rtn"; exit 1; }
expect_error "quantize: already quantized" "already quantized" "$BIN" quantize --model "$T/q_rtn" \
  --out "$T/q" --method int8
SLLM_TEST_DISK_FULL_AFTER=50000000 expect_error "quantize: disk full" "No space left" "$BIN" quantize \
  --model "$MODEL" --out "$T/q_full" --method rtn
if [ -e "$T/q_full" ] || ls "$T" | grep -q 'q_full.tmp'; then
  fails=$((fails + 1)); echo "FAIL quantize: disk full left a directory behind"; ls "$T"
fi

# Model comparison (sllm bench): one error line naming the model or the prompt line; the models
# that did run keep their results.
printf '{"prompt": "Hi", "max_new_tokens": 2}\n' > "$T/bench.jsonl"
BENCH=("$BIN" bench --prompt-set "$T/bench.jsonl" --reps 1 --warmup 0 --threads 1)
expect_error "bench: unknown model path" "model 'q' ($T/nope.gguf)" "${BENCH[@]}" \
  --models "a=$MODEL,q=$T/nope.gguf" --json "$T/bench_partial.json"
if ! grep -q '"output_text"' "$T/bench_partial.json" || ! grep -q 'nope.gguf does not exist' "$T/bench_partial.json"; then
  fails=$((fails + 1)); echo "FAIL bench: the report of the model that ran is missing"
fi
expect_error "bench: missing adapter" "adapter directory" "${BENCH[@]}" --models "a=$MODEL+$T/noadapter"
expect_error "bench: --models without NAME=" "entry 'plain'" "${BENCH[@]}" --models plain
expect_error "bench: --models with two '+'" "one '+'" "${BENCH[@]}" --models "a=x+y+z"
expect_error "bench: duplicate model name" "given twice" "${BENCH[@]}" --models "a=$MODEL,a=$MODEL"
expect_error "bench: no models" "no models" "${BENCH[@]}"
printf '{"prompt": "ok"}\n{"prompt": \n' > "$T/bench_bad.jsonl"
expect_error "bench: malformed prompt line" "bench_bad.jsonl:2" "$BIN" bench --prompt-set "$T/bench_bad.jsonl" \
  --models "a=$MODEL"
printf '{"prompt": "ok"}\n{"text": "no prompt field"}\n' > "$T/bench_nofield.jsonl"
expect_error "bench: prompt line without prompt" "bench_nofield.jsonl:2" "$BIN" bench \
  --prompt-set "$T/bench_nofield.jsonl" --models "a=$MODEL"
: > "$T/bench_empty.jsonl"
expect_error "bench: empty prompt set" "no prompts" "$BIN" bench --prompt-set "$T/bench_empty.jsonl" --models "a=$MODEL"
expect_error "bench: unknown built-in set" "builtin:nope" "$BIN" bench --prompt-set builtin:nope --models "a=$MODEL"
expect_error "bench: gate without baseline" "--baseline" "${BENCH[@]}" --models "a=$MODEL" --fail-on quality
expect_error "bench: more processes than reps" "--processes must be between 1 and --reps" \
  "${BENCH[@]}" --models "a=$MODEL" --processes 2
expect_error "bench: bad tolerance" "--tolerance" "${BENCH[@]}" --models "a=$MODEL" --tolerance lots

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
