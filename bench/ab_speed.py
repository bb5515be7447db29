#!/usr/bin/env python3
"""Speed of two sllm binaries side by side (e.g. before and after a refactoring).

Runs A and B in turns, repetition by repetition (A, B, B, A, ...), so that the drift of a shared
machine hits both alike, and reports medians and the B/A ratio with its spread over repetitions:
  - decode: `sllm generate` greedy, batch 1, --ignore-eos, N new tokens; tokens/s after the
    first token (from the JSON result's total_ms - first_token_ms);
  - prefill: prompt tokens / first_token_ms of the same runs;
  - training: `sllm qlora-train` (or sft) for a few optimizer steps on the office data;
    steady-state tokens/s from train_log.jsonl (the last logged window).

    .venv/bin/python bench/ab_speed.py --a /path/to/old/sllm --b build/sllm --reps 5 \\
        --json bench/results/ab_speed.json
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PROMPT = ("The history of bread goes back thousands of years. Early farmers learned to grind "
          "grain between stones, mix the flour with water and bake the dough on hot rocks. Over time")


def decode_once(sllm, args):
    cmd = [sllm, "generate", "--model", args.model, "--prompt", PROMPT, "--chat-template", "false",
           "--temperature", "0", "-n", str(args.max_new_tokens), "--ignore-eos", "--json",
           "--threads", str(args.threads), *args.gen_arg]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        sys.exit(f"{sllm} generate failed: {r.stderr.strip()[-500:]}")
    j = json.loads(r.stdout.splitlines()[0])
    n = j["completion_tokens"]
    decode_s = (j["total_ms"] - j["first_token_ms"]) / 1000
    return {"decode_tok_s": (n - 1) / decode_s, "prefill_tok_s": j["prompt_tokens"] / (j["first_token_ms"] / 1000),
            "tokens": j["tokens"]}


def train_once(sllm, args, work):
    run = Path(tempfile.mkdtemp(dir=work))
    cmd = [sllm, "qlora-train", "--model", args.model, "--data", args.data, "--out", str(run),
           "--name", "r", "--max-steps", str(args.train_steps), "--batch-size", "2", "--grad-accum", "2",
           "--threads", str(args.threads), "data.max_seq_length=256", "train.log_every=1",
           "train.save_every=0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        sys.exit(f"{sllm} qlora-train failed: {r.stderr.strip()[-800:]}")
    log = [json.loads(l) for l in (run / "r" / "train_log.jsonl").read_text().splitlines() if l.strip()]
    steps = [p for p in log if "tokens_per_s" in p]
    return {"train_tok_s": steps[-1]["tokens_per_s"], "losses": [p.get("loss") for p in steps]}


def summary(a, b):
    ratios = [y / x for x, y in zip(a, b)]
    return {"a_median": statistics.median(a), "b_median": statistics.median(b),
            "ratio_b_over_a": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "a": a, "b": b}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="the reference binary (before)")
    ap.add_argument("--b", default=str(REPO / "build" / "sllm"), help="the binary under test (after)")
    ap.add_argument("--model", default=str(REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--data", default=str(REPO / "data" / "office" / "train.jsonl"))
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--gen-arg", action="append", default=[],
                    help="extra `sllm generate` flag for the decode runs, e.g. --gen-arg=--gguf-act=q8")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    prov = provenance.collect(args.b)  # the tree and machine as the run starts
    res = {"a": {"decode_tok_s": [], "prefill_tok_s": [], "train_tok_s": []},
           "b": {"decode_tok_s": [], "prefill_tok_s": [], "train_tok_s": []}}
    outputs, losses = {"a": None, "b": None}, {"a": None, "b": None}
    with tempfile.TemporaryDirectory() as work:
        for rep in range(args.reps):
            order = ("a", "b") if rep % 2 == 0 else ("b", "a")
            for side in order:
                binary = getattr(args, side)
                d = decode_once(binary, args)
                res[side]["decode_tok_s"].append(d["decode_tok_s"])
                res[side]["prefill_tok_s"].append(d["prefill_tok_s"])
                if outputs[side] is None:
                    outputs[side] = d["tokens"]
                if not args.no_train:
                    t = train_once(binary, args, work)
                    res[side]["train_tok_s"].append(t["train_tok_s"])
                    losses[side] = t["losses"]
            print(f"rep {rep + 1}/{args.reps}: decode a {res['a']['decode_tok_s'][-1]:.1f} "
                  f"b {res['b']['decode_tok_s'][-1]:.1f} tok/s", file=sys.stderr)
    out = {
        **prov,
        "binaries": {"a": subprocess.run([args.a, "--version"], capture_output=True, text=True).stdout.strip(),
                     "b": subprocess.run([args.b, "--version"], capture_output=True, text=True).stdout.strip(),
                     "python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "same_greedy_tokens": outputs["a"] == outputs["b"],
        "same_train_losses": losses["a"] == losses["b"],
    }
    for k in ("decode_tok_s", "prefill_tok_s", "train_tok_s"):
        if res["a"][k]:
            out[k] = summary(res["a"][k], res["b"][k])
    text = json.dumps(out, indent=1)
    if args.json:
        tmp = args.json + ".tmp"
        Path(tmp).write_text(text + "\n")
        os.replace(tmp, args.json)
    for k in ("decode_tok_s", "prefill_tok_s", "train_tok_s"):
        if k in out:
            s = out[k]
            print(f"{k:14} a {s['a_median']:8.1f}  b {s['b_median']:8.1f}  b/a {s['ratio_b_over_a']:.3f} "
                  f"[{s['ratio_min']:.3f}, {s['ratio_max']:.3f}]")
    print(f"same greedy tokens: {out['same_greedy_tokens']}, same training losses: {out['same_train_losses']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
