#!/usr/bin/env bash
# sllm bench end to end on tiny random models (tests/reference/make_tiny_hf.py): the report's
# schema and counts, greedy outputs identical across reps, KLD of a model against itself 0, the
# quality gate against a baseline written earlier in this test (passes for the same models,
# fails for a changed one), a crashing worker, Ctrl-C. Timings are never asserted. Bad input:
# tests/golden/cli_bad_input.sh.
#   bench.sh SLLM PYTHON
set -u
BIN=$1 PY=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
fails=0; passes=0
ok() { passes=$((passes + 1)); echo "ok   $*"; }
bad() { fails=$((fails + 1)); echo "FAIL $*"; }

"$PY" "$ROOT/tests/reference/make_tiny_hf.py" "$T/a" --arch llama --tied --seed 3 >/dev/null &&
  "$PY" "$ROOT/tests/reference/make_tiny_hf.py" "$T/b" --arch llama --tied --seed 4 >/dev/null ||
  { echo "FAIL cannot build the tiny models"; exit 1; }
printf '{"prompt": "The bakery opened"}\n{"prompt": "Bread is", "max_new_tokens": 4}\n' >"$T/p.jsonl"
head -c 3000 "$ROOT/tests/data/ppl_en.txt" >"$T/ppl.txt"
printf '{"prompt": "The bakery", "completion": "opened"}\n{"prompt": "Bread", "completion": "is"}\n' >"$T/task.jsonl"
RUN=("$BIN" bench --prompt-set "$T/p.jsonl" -n 6 --warmup 1 --threads 1 --ignore-eos
     --chat-template false --log-level warn)

# 1. Two models, every extra on: the report is complete and consistent.
"${RUN[@]}" kld_tokens=128 task_max_new_tokens=4 sweep_prompt_tokens=8 sweep_gen_tokens=4 \
  --models "a=$T/a,b=$T/b" --reps 2 --ppl "$T/ppl.txt" --ppl-ctx 64 --task "$T/task.jsonl" \
  --pp 16 --tg 4 --sweep-batch 1,2 --json "$T/base.json" --csv "$T/base.csv" --markdown "$T/base.md" \
  >"$T/1.out" 2>"$T/1.err" && ok "two models with quality, pp/tg and sweep" ||
  { bad "two models run"; tail -5 "$T/1.err"; }
"$PY" - "$T/base.json" <<'PYEOF' && ok "report schema, counts, identical greedy reps, KLD" || bad "report content"
import json, math, sys
r = json.load(open(sys.argv[1]))
assert r["kind"] == "offline" and r["complete"] is True
for k in ("command", "commit", "date", "machine", "versions"): assert k in r["provenance"], k
for k in ("cpu", "cores", "isa"): assert k in r["provenance"]["machine"], k
a, b = r["models"]
for m in (a, b):
    for k in ("name", "spec", "load_s", "weights_bytes", "peak_rss_bytes", "error", "latency_ms",
              "ttft_ms", "tpot_ms", "prefill_tok_s", "decode_tok_s", "ratio_vs_first", "requests",
              "quality", "pp_tg", "sweep", "sweep_summary"):
        assert k in m, (m["name"], k)
    assert m["error"] is None, m["error"]
    for k in ("p50", "p95", "p99", "mean", "std"): assert k in m["latency_ms"]
    assert len(m["requests"]) == 4, len(m["requests"])  # 2 prompts x 2 measured reps
    assert sorted({q["rep"] for q in m["requests"]}) == [0, 1]
    assert m["outputs_identical_across_reps"] is True, m["output_mismatches"]
    assert [q["output_tokens"] for q in m["requests"]] == [6, 4, 6, 4]  # --ignore-eos, per-prompt budget
    assert m["weights_bytes"] > 0 and m["peak_rss_bytes"] > 0
    assert m["lm_head"].startswith("dense float (tied to the embedding)"), m["lm_head"]
    assert math.isfinite(m["quality"]["ppl"]) and m["quality"]["exact_match"] is not None
    assert [s["batch"] for s in m["sweep"]] == [1, 2]
    for s in m["sweep"]: assert s["kv_bytes_formula"] <= s["kv_bytes_measured"]  # whole blocks
    for k in ("bandwidth_gbs", "compute_gflops", "crossover_batch", "b_star_estimated", "b_star_measured"):
        assert k in m["sweep_summary"], k
    assert "mean" in m["pp_tg"]["pp_tok_s"] and "mean" in m["pp_tg"]["tg_tok_s"]
assert a["quality"]["kld"] == 0 and b["quality"]["kld"] > 0
assert a["ratio_vs_first"]["decode_tok_s"]["mean"] == 1.0
assert a["requests"][0]["output_text"] != b["requests"][0]["output_text"] or \
       a["requests"][0]["output_ids"] != b["requests"][0]["output_ids"]
PYEOF
grep -q '^name,spec,error' "$T/base.csv" && [ "$(wc -l <"$T/base.csv")" -eq 3 ] && ok "csv: header + 2 rows" || bad "csv"
grep -q '| model |' "$T/base.md" && grep -q 'Batch sweep' "$T/base.md" && ok "markdown table and sweep" || bad "markdown"
grep -q 'decode tok/s' "$T/1.out" && ok "console table" || bad "console table"

# 2. The quality gate: the same models pass; a changed model under the same name fails.
"${RUN[@]}" --models "a=$T/a,b=$T/b" --reps 2 --baseline "$T/base.json" --fail-on quality --tolerance 10% \
  >"$T/2.out" 2>"$T/2.err" && ok "gate passes for unchanged models" || { bad "gate on unchanged models"; tail -5 "$T/2.err"; }
"${RUN[@]}" --models "a=$T/b,b=$T/b" --reps 2 --baseline "$T/base.json" --fail-on quality >"$T/3.out" 2>"$T/3.err"
rc=$?
if [ $rc -eq 1 ] && grep -q '^regression: a: greedy output of prompt 1 changed' "$T/3.err" &&
  [ "$(grep -c '^error: ' "$T/3.err")" -eq 1 ]; then ok "gate fails for a changed model"; else
  bad "gate on a changed model (exit $rc)"; tail -5 "$T/3.err"; fi

# 3. A worker that crashes: an error row, the other model's results kept, exit 1.
SLLM_TEST_BENCH_CRASH=b "${RUN[@]}" --models "a=$T/a,b=$T/b" --reps 2 --json "$T/crash.json" >"$T/4.out" 2>"$T/4.err"
rc=$?
if [ $rc -eq 1 ] && grep -q "^error: .*model 'b'.*crashed" "$T/4.err" &&
  "$PY" -c 'import json,sys; m=json.load(open(sys.argv[1]))["models"]
assert m[0]["error"] is None and len(m[0]["requests"]) == 4 and "crashed" in m[1]["error"]' "$T/crash.json"; then
  ok "crashing worker: error row, others kept"; else bad "crashing worker (exit $rc)"; tail -5 "$T/4.err"; fi

# 4. Ctrl-C: the workers end, the report holds the reps done so far (complete: false), exit 1.
BENCH_TEST_MARK=$T "${RUN[@]}" --models "a=$T/a,b=$T/b" --reps 100000 --json "$T/int.json" >"$T/5.out" 2>"$T/5.err" &
pid=$!
for _ in $(seq 600); do [ -s "$T/int.json" ] && break; sleep 0.1; done
kill -INT $pid; wait $pid; rc=$?
sleep 0.5
left=$(grep -l "BENCH_TEST_MARK=$T" /proc/[0-9]*/environ 2>/dev/null | wc -l)
if [ $rc -eq 1 ] && grep -q '^error: interrupted' "$T/5.err" && [ "$left" -eq 0 ] &&
  "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1]))
assert r["complete"] is False and r["models"][0]["reps_done"] >= 1' "$T/int.json"; then
  ok "Ctrl-C: workers gone, partial report written"; else bad "Ctrl-C (exit $rc, $left processes left)"; tail -5 "$T/5.err"; fi

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
