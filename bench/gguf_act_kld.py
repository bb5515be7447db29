#!/usr/bin/env python3
"""Quality of sllm's GGUF blocks as stored: perplexity and KL divergence of each activation path.

    flock /tmp/sllm-build.lock .venv/bin/python bench/gguf_act_kld.py --sllm build/sllm \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf --threads 2 \
        --json bench/results/gguf_act_kld.json

The reference is the fp32 path: the dense Hugging Face directory `sllm convert` writes from the
GGUF (its dequantized weights, fp32 activations). Against it, `sllm eval --ppl --kld-ref` scores
tests/data/ppl_en.txt (ctx 512 windows) with the GGUF's blocks kept as stored and activations
quantized to int8 per 32-element block (`--gguf-act q8`) or fp32 (`--gguf-act f32`, the default):
perplexity, mean / max KL(P_fp32 || P_path) per token and the % of positions whose top token
agrees. Quality only: the seconds sllm reports are not a benchmark here.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", default="build/sllm")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--text", default=os.path.join(REPO, "tests/data/ppl_en.txt"))
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", required=True, help="the result file (with its provenance)")
    args = ap.parse_args()
    res = {**provenance.collect(args.sllm), "model": args.model, "text": os.path.relpath(args.text, REPO),
           "ctx": args.ctx, "reference": "sllm convert of the GGUF (dequantized fp32 weights, fp32 activations)",
           "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "fp32")
        subprocess.run([args.sllm, "convert", "--model", args.model, "--out", ref, "--log-level", "warn"],
                       check=True)
        for act in ("q8", "f32"):
            out = subprocess.run([args.sllm, "eval", "--model", args.model, "--gguf-act", act,
                                  "--ppl", args.text, "--ctx", str(args.ctx), "--kld-ref", ref,
                                  "--threads", str(args.threads), "--json", "--log-level", "warn"],
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out)
            row = {"path": f"gguf as stored, {act} activations", "gguf_act": act,
                   "perplexity": r["perplexity"], "ref_perplexity": r["ref_perplexity"],
                   "ppl_rel_diff": r["perplexity"] / r["ref_perplexity"] - 1,
                   "mean_kld": r["mean_kld"], "max_kld": r["max_kld"],
                   "same_top_token_pct": r["same_top_token_pct"], "scored_tokens": r["scored_tokens"]}
            res["rows"].append(row)
            print(f"{row['path']:<36} ppl {row['perplexity']:.4f} (fp32 {row['ref_perplexity']:.4f}, "
                  f"{100 * row['ppl_rel_diff']:+.3f} %)  mean KLD {row['mean_kld']:.2e}  "
                  f"max {row['max_kld']:.2e}  same top {row['same_top_token_pct']:.2f} %", flush=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
