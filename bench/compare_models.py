#!/usr/bin/env python3
"""Side-by-side comparison of model variants on one task file and one text, same protocol for
every row: task exact match (`sllm eval --task`), perplexity (`sllm eval --ppl`), size on disk
and greedy batch-1 decode tokens/s (the prompt and max_new_tokens of bench/decode_bench.py).

    .venv/bin/python bench/compare_models.py --task data/office/test.jsonl \\
        --ppl tests/data/ppl_en.txt --out runs/tour-office/comparison.md \\
        --json bench/results/office_variants.json [--skip-speed] \\
        base=models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        tuned=models/SmolLM2-135M-Instruct.Q4_1.gguf+runs/tour-office/adapter \\
        tuned+AWQ=runs/tour-office/merged-awq

A variant is NAME=MODEL or NAME=MODEL+ADAPTER_DIR. --json writes the rows with their provenance
(bench/provenance.py); --skip-speed leaves the decode runs out (quality only, for a busy machine).
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402
from decode_bench import run_sllm  # noqa: E402


def size_of(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if os.path.isfile(os.path.join(path, f)) and f.endswith((".safetensors", ".gguf")))


def sllm_json(args, *cmd):
    r = subprocess.run([args.sllm, *cmd, "--json", "--threads", str(args.threads),
                        "--log-level", "warn"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"sllm {' '.join(cmd)} failed:\n{r.stderr}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", default="build/sllm")
    ap.add_argument("--task", required=True)
    ap.add_argument("--ppl", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", help="also write the table (markdown) here")
    ap.add_argument("--json", help="the result file (rows + provenance)")
    ap.add_argument("--skip-speed", action="store_true", help="no decode runs")
    ap.add_argument("variants", nargs="+")
    args = ap.parse_args()

    if args.out and os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    rows = []
    for v in args.variants:
        name, _, spec = v.partition("=")
        model, _, adapter = spec.partition("+")
        extra = ["--adapter", adapter] if adapter else []
        report = os.path.join(os.path.dirname(args.out or "."), f"task_eval_{name}.md")
        task = sllm_json(args, "eval", "--model", model, *extra, "--task", args.task,
                         "--report", report)
        ppl = sllm_json(args, "eval", "--model", model, *extra, "--ppl", args.ppl)
        decode = None
        if not adapter and not args.skip_speed:  # generate has no adapter cost model worth comparing; merged dirs do
            decode = run_sllm(argparse.Namespace(sllm=args.sllm, model=model, threads=args.threads,
                                                 repeats=1, max_new_tokens=64), "fp32", 1)[1]
        rows.append((name, task["exact_match"], ppl["perplexity"], size_of(model), decode))
        print(f"{name}: exact match {task['exact_match']:.1f}%, ppl {ppl['perplexity']:.3f}",
              flush=True)
    lines = ["| model | task exact match % | perplexity | weights on disk (MB) | decode tok/s (b=1) |",
             "|---|---|---|---|---|"]
    for name, em, ppl, size, dec in rows:
        lines.append(f"| {name} | {em:.1f} | {ppl:.3f} | {size / 1e6:.0f} | "
                     f"{'-' if dec is None else f'{dec:.1f}'} |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    if args.json:
        keys = ("name", "task_exact_match_pct", "perplexity", "size_bytes", "decode_tok_s")
        res = {**provenance.collect(args.sllm), "task": args.task, "ppl_text": args.ppl,
               "threads": args.threads, "variants": args.variants,
               "rows": [dict(zip(keys, r)) for r in rows]}
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
