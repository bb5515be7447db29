#!/usr/bin/env python3
"""Speculative decoding at batch 1: decode speed of the target alone vs with a draft model vs
with n-gram drafting (prompt lookup), with acceptance rates.

Prompts: the office extraction task (data/office/test.jsonl, whose answers copy from the prompt)
and a chat prompt. Greedy, so every speculative run must give the target's own text (checked).
Each mode runs in one `sllm generate` process over all prompts with --max-seqs 1 (one sequence
at a time: batch 1); decode speed is the generated tokens after the first over the time after
the first token, summed over the prompts, median over --repeats.

    .venv/bin/python bench/spec_bench.py --sllm build/sllm \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf --draft-model runs/student/model \
        --threads 2 --name spec_cpu_2threads

writes bench/results/<name>.json (with its provenance; --out FILE writes elsewhere). Without
--draft-model the draft-model rows are skipped; --office-task extract_meeting keeps the office
prompts of one task.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402

CHAT_PROMPT = ("Explain to a new colleague how our team's weekly planning meeting works: who "
               "attends, what we review, and how tasks get assigned. Keep it to a few paragraphs.")


def office_prompts(path, n, task=None):
    """The first n prompts of the file (of one task, e.g. extract_meeting, when given)."""
    rows = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            item = json.loads(line)
            if task is None or item.get("task") == task:
                rows.append(item["prompt"])
            if len(rows) == n:
                break
    if not rows:
        sys.exit(f"error: no prompts of task {task!r} in {path}")
    return rows


def run_mode(args, prompts, extra):
    """One process over all prompts: (decode tok/s, texts, proposed, accepted, steps)."""
    with tempfile.TemporaryDirectory() as tmp:
        pf = os.path.join(tmp, "prompts.jsonl")
        with open(pf, "w") as f:
            for p in prompts:
                f.write(json.dumps({"prompt": p}) + "\n")
        cmd = [args.sllm, "generate", "--model", args.model, "--prompt-file", pf, "--json",
               "--temperature", "0", "--chat-template", "true", "--max-seqs", "1",
               "-n", str(args.max_new_tokens), "--threads", str(args.threads),
               "--dtype", args.dtype, "--log-level", "warn", *args.sllm_arg, *extra]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.strip()]
    toks = sum(max(r["completion_tokens"] - 1, 0) for r in rows)
    secs = sum((r["total_ms"] - r["first_token_ms"]) / 1e3 for r in rows)
    return (toks / secs if secs > 0 else float("nan"), [r["text"] for r in rows],
            sum(r.get("draft_proposed", 0) for r in rows),
            sum(r.get("draft_accepted", 0) for r in rows),
            sum(r.get("draft_steps", 0) for r in rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", default="build/sllm")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--draft-model", help="draft model (same tokenizer); omitted: no draft rows")
    ap.add_argument("--num-speculative-tokens", type=int, default=3)
    ap.add_argument("--office", default="data/office/test.jsonl")
    ap.add_argument("--office-task", help="only this task's prompts (e.g. extract_meeting)")
    ap.add_argument("--prompts", type=int, default=20, help="office prompts used")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sllm-arg", action="append", default=[],
                    help="extra option for every sllm run, e.g. --sllm-arg=--dequantize")
    ap.add_argument("--name", help="writes bench/results/<name>.json")
    ap.add_argument("--out", help="writes this file instead (e.g. a trial run outside results/)")
    args = ap.parse_args()
    if not args.name and not args.out:
        ap.error("give --name (bench/results/<name>.json) or --out FILE")

    k = str(args.num_speculative_tokens)
    modes = [("target", [])]
    if args.draft_model:
        modes.append(("draft_model", ["--draft-model", args.draft_model,
                                      "--num-speculative-tokens", k]))
    modes.append(("ngram", ["--draft", "ngram", "--num-speculative-tokens", k]))
    tasks = [("office", office_prompts(args.office, args.prompts, args.office_task)),
             ("chat", [CHAT_PROMPT])]

    res = {**provenance.collect(args.sllm), "model": args.model, "draft_model": args.draft_model,
           "num_speculative_tokens": args.num_speculative_tokens, "threads": args.threads,
           "dtype": args.dtype, "sllm_args": args.sllm_arg, "max_new_tokens": args.max_new_tokens,
           "repeats": args.repeats, "office_task": args.office_task,
           "office_prompts": len(tasks[0][1]), "rows": []}
    print(f"{'task':<7} {'mode':<12} {'decode tok/s':>12} {'speed-up':>9} {'accepted':>9} "
          f"{'per step':>9}  same text")
    for task, prompts in tasks:
        # Modes take turns repeat by repeat, so that the machine's drift hits all of them alike.
        runs = {mode: [] for mode, _ in modes}
        for _ in range(args.repeats):
            for mode, extra in modes:
                runs[mode].append(run_mode(args, prompts, extra))
        base = statistics.median(r[0] for r in runs["target"])
        base_texts = runs["target"][0][1]
        for mode, _ in modes:
            speeds = [r[0] for r in runs[mode]]
            speed = statistics.median(speeds)
            _, texts, prop, acc, steps = runs[mode][0]
            ratios = [r[0] / t[0] for r, t in zip(runs[mode], runs["target"])]
            row = {"task": task, "mode": mode, "prompts": len(prompts), "decode_tok_s": speed,
                   "decode_tok_s_runs": speeds, "speedup": speed / base,
                   "speedup_per_repeat": ratios, "draft_proposed": prop, "draft_accepted": acc,
                   "acceptance_rate": acc / prop if prop else None,
                   "mean_accepted_per_step": acc / steps if steps else None,
                   "same_text_as_target": all(r[1] == base_texts for r in runs[mode])}
            res["rows"].append(row)
            rate = f"{100 * row['acceptance_rate']:.1f}%" if prop else "-"
            per = f"{row['mean_accepted_per_step']:.2f}" if steps else "-"
            print(f"{task:<7} {mode:<12} {speed:12.2f} {row['speedup']:8.2f}x {rate:>9} {per:>9}  "
                  f"{row['same_text_as_target']}", flush=True)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   args.name + ".json")
    with open(out + ".tmp", "w") as f:
        json.dump(res, f, indent=2)
    os.replace(out + ".tmp", out)
    print(f"wrote {out}")
    if not all(r["same_text_as_target"] for r in res["rows"]):
        print("error: a speculative run's greedy text differs from the target's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
