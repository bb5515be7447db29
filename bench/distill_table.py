#!/usr/bin/env python3
"""The distillation table of docs/distillation.md, from one command.

Trains the half-depth student twice with the same cut, data, steps and seed — with KD
(configs/smollm2-135m/distill-office.yaml) and with CE only (distill-office-ce.yaml) — then
scores the teacher and both students with one protocol: `sllm eval --ppl` (perplexity at
ctx 512) and `sllm eval --task` (greedy exact / field match, the first --limit items).

    .venv/bin/python bench/distill_table.py --sllm build/sllm --limit 30 \\
        --json bench/results/distill_office.json

--reuse skips a training run whose student (runs/<name>/model) already exists; the result file
says which runs were reused. Extra `key=value` overrides after -- go to both training runs.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"kd": "configs/smollm2-135m/distill-office.yaml",
           "ce": "configs/smollm2-135m/distill-office-ce.yaml"}


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=6 * 3600)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return r.stdout


def config_value(path, key):
    out = run([ARGS.sllm, "distill", "--config", path, "--print-config"])
    section = None
    for line in out.splitlines():
        if line and not line.startswith((" ", "#")):
            section = line.split(":")[0]
            if section == key:
                return line.split(":", 1)[1].split("#")[0].strip()
    raise SystemExit(f"{path}: no key {key}")


def train(name, overrides):
    cfg = CONFIGS[name]
    run_dir = os.path.join(REPO, config_value(cfg, "output_dir"), config_value(cfg, "run_name"))
    student = os.path.join(run_dir, "model")
    reused = ARGS.reuse and os.path.isdir(student)
    if not reused:
        if os.path.isdir(run_dir):
            shutil.rmtree(run_dir)
        run([ARGS.sllm, "distill", "--config", cfg, "--threads", str(ARGS.threads),
             "--log-level", "warn", *overrides])
    log = [json.loads(x) for x in open(os.path.join(run_dir, "train_log.jsonl"))]
    points = [p for p in log if "step" in p]
    last = points[-1]
    return {"config": cfg, "overrides": overrides, "reused": bool(reused),
            "student": os.path.relpath(student, REPO), "steps": last["step"],
            "final_loss": last["loss"], "final_ce_loss": last.get("ce_loss"),
            "final_kd_loss": last.get("kd_loss")}


def score(model, name):
    common = ["--model", model, "--threads", str(ARGS.threads), "--log-level", "warn", "--json"]
    ppl = json.loads(run([ARGS.sllm, "eval", *common, "--ppl", ARGS.ppl]))
    task = json.loads(run([ARGS.sllm, "eval", *common, "--task", ARGS.task, "--limit",
                           str(ARGS.limit), "-n", str(ARGS.max_new_tokens), "--report",
                           os.path.join(ARGS.work, f"task_eval_{name}.md")]))
    return {"model": model, "perplexity": ppl["perplexity"], "ppl_tokens": ppl["scored_tokens"],
            "exact_match_pct": task["exact_match"], "field_match_pct": task["field_match"],
            "task_n": task["n"], "per_task": task.get("per_task", {})}


def markdown(res):
    rows = ["| model | layers | perplexity (ppl_en.txt) | office exact match | field match |",
            "|---|---|---|---|---|"]
    for key, label in (("teacher", "teacher"), ("kd", "student, KD"), ("ce", "student, CE only")):
        r = res["rows"][key]
        rows.append(f"| {label} | {r['layers']} | {r['perplexity']:.2f} | "
                    f"{r['exact_match_pct']:.1f}% | {r['field_match_pct']:.1f}% |")
    return "\n".join(rows)


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sllm", default="build/sllm")
    ap.add_argument("--teacher", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--ppl", default="tests/data/ppl_en.txt")
    ap.add_argument("--task", default="data/office/test.jsonl")
    ap.add_argument("--limit", type=int, default=0, help="score the first N task items (0: all)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--json", default="bench/results/distill_office.json")
    ap.add_argument("overrides", nargs="*", help="key=value for both training runs")
    ARGS = ap.parse_args()
    ARGS.sllm = os.path.abspath(ARGS.sllm)
    res = {**provenance.collect(ARGS.sllm),
           "protocol": {"ppl": ARGS.ppl, "ctx": 512, "task": ARGS.task, "limit": ARGS.limit,
                        "max_new_tokens": ARGS.max_new_tokens, "greedy": True},
           "training": {}, "rows": {}}
    for name in ("kd", "ce"):
        res["training"][name] = train(name, ARGS.overrides)
    ARGS.work = tempfile.mkdtemp(prefix="sllm-distill-table-")
    res["rows"]["teacher"] = score(ARGS.teacher, "teacher")
    res["rows"]["teacher"]["layers"] = 30
    for name in ("kd", "ce"):
        student = res["training"][name]["student"]
        res["rows"][name] = score(student, name)
        cfg = json.load(open(os.path.join(REPO, student, "config.json")))
        res["rows"][name]["layers"] = cfg["num_hidden_layers"]
    kd, ce = res["rows"]["kd"], res["rows"]["ce"]
    res["kd_beats_ce"] = {"perplexity": kd["perplexity"] < ce["perplexity"],
                          "exact_match": kd["exact_match_pct"] > ce["exact_match_pct"]}
    res["markdown"] = markdown(res)
    os.makedirs(os.path.dirname(os.path.join(REPO, ARGS.json)), exist_ok=True)
    with open(os.path.join(REPO, ARGS.json), "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    print(res["markdown"])
    print(f"KD beats CE only: {res['kd_beats_ce']}  ->  {ARGS.json}")


if __name__ == "__main__":
    main()
