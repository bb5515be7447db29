#!/usr/bin/env python3
"""The office-task acceptance run of docs/finetuning.md, from one command: `sllm qlora-train` with
configs/smollm2-135m/qlora-office.yaml (base task eval, QLoRA, tuned task eval), and the base and
tuned task scores it reports, per task, read from the run's per-item answers
(task_eval_base.jsonl / task_eval_tuned.jsonl: the protocol of `sllm eval --task`, whose settings
line is recorded too).

    .venv/bin/python bench/office_task.py --sllm build/sllm --threads 2 \\
        --json bench/results/office_qlora.json [--skip-speed]

--skip-speed leaves the wall time and training tokens/s out of the result (for a busy machine);
the scores do not depend on it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402


def scores(path: Path) -> dict:
    per = defaultdict(lambda: [0, 0])
    field = 0.0
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for it in items:
        per[it["task"]][0] += int(it["exact"])
        per[it["task"]][1] += 1
        field += it["field_score"]
    n = len(items)
    exact = sum(e for e, _ in per.values())
    return {"n": n, "exact": exact, "exact_match_pct": 100.0 * exact / n,
            "field_match_pct": 100.0 * field / n,
            "per_task": {t: {"exact": e, "n": k, "exact_match_pct": 100.0 * e / k}
                         for t, (e, k) in sorted(per.items())}}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", default="build/sllm")
    ap.add_argument("--config", default="configs/smollm2-135m/qlora-office.yaml")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", help="run directory parent to keep (default: a temporary one)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    out = args.keep or tempfile.mkdtemp(prefix="sllm-office-")
    cmd = [args.sllm, "qlora-train", "--config", args.config, "--out", out, "--name", "office",
           "--threads", str(args.threads), "--log-level", "warn"]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    run = Path(out) / "office"
    summary = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()
               if '"summary"' in line][-1]
    base, tuned = scores(run / "task_eval_base.jsonl"), scores(run / "task_eval_tuned.jsonl")
    res = {**provenance.collect(args.sllm), "config": args.config, "threads": args.threads,
           "task_eval_settings": summary.get("task_eval_settings"), "steps": summary["steps"],
           "base": base, "tuned": tuned, "skip_speed": args.skip_speed}
    if not args.skip_speed:
        res.update({"wall_seconds": wall, "train_seconds": summary["train_seconds"],
                    "train_tokens_per_s": summary["train_tokens_per_s"],
                    "peak_rss_mb": summary["peak_rss_mb"]})
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    print(f"base {base['exact_match_pct']:.1f}% -> tuned {tuned['exact_match_pct']:.1f}%; {args.json}")


if __name__ == "__main__":
    main()
