#!/usr/bin/env python3
"""Perplexity of GGUF files in sllm and in llama.cpp, same file, same token ids, same windows.

    flock /tmp/sllm-build.lock .venv/bin/python bench/gguf_ppl.py --sllm build/sllm \
        --models models/SmolLM2-135M-Instruct.Q4_1.gguf runs/gguf/q8_0.gguf ... \
        --threads 2 --json bench/results/gguf_ppl_vs_llamacpp.json

The protocol is `sllm eval --ppl` (docs/eval.md): tests/data/ppl_en.txt tokenized once,
cut into non-overlapping windows of --ctx tokens, every token but a window's first scored from
the tokens before it in that window. sllm runs each file with its blocks as stored, once with
fp32 activations (its default) and once with int8 activation blocks (`--gguf-act q8`, the kind
of arithmetic llama.cpp's CPU kernels use); llama.cpp (llama-cpp-python) evaluates the same
ids window by window with every position's logits kept. The token ids are llama.cpp's own
tokenization of the text; the script stops if sllm's count of tokens differs, so both sides
score the same sequence. Quality only: nothing here is timed.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sllm_ppl(args, model: str, act: str) -> dict:
    out = subprocess.run([args.sllm, "eval", "--model", model, "--gguf-act", act, "--ppl", args.text,
                          "--ctx", str(args.ctx), "--threads", str(args.threads), "--json",
                          "--log-level", "warn"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def llama_ppl(args, model: str) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=args.ctx, n_batch=args.ctx, logits_all=True,
                n_threads=args.threads, verbose=False)
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    add_bos = str(llm.metadata.get("tokenizer.ggml.add_bos_token", "false")).lower() == "true"
    ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False)
    nll, scored, windows = 0.0, 0, 0
    for w0 in range(0, len(ids), args.ctx):
        win = ids[w0:w0 + args.ctx]
        if len(win) < 2:
            continue
        llm.reset()
        llm.eval(win)
        logits = np.asarray(llm.scores[:len(win)], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        logz = (m[:, 0] + np.log(np.exp(logits - m).sum(axis=1)))[:-1]
        nll += float((logz - logits[np.arange(len(win) - 1), win[1:]]).sum())
        scored += len(win) - 1
        windows += 1
    return {"perplexity": math.exp(nll / scored), "scored_tokens": scored, "tokens": len(ids),
            "windows": windows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", default="build/sllm")
    ap.add_argument("--models", nargs="+", default=["models/SmolLM2-135M-Instruct.Q4_1.gguf"])
    ap.add_argument("--text", default=os.path.join(REPO, "tests/data/ppl_en.txt"))
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=0.005,
                    help="relative perplexity difference that counts as agreeing (0.005: 0.5 %%)")
    ap.add_argument("--json", required=True, help="the result file (with its provenance)")
    args = ap.parse_args()
    res = {**provenance.collect(args.sllm), "text": os.path.relpath(args.text, REPO), "ctx": args.ctx,
           "tolerance": args.tolerance, "rows": []}
    worst = 0.0
    for model in args.models:
        ref = llama_ppl(args, model)
        row = {"model": model, "llama_cpp": ref}
        for act in ("f32", "q8"):
            r = sllm_ppl(args, model, act)
            if r["tokens"] != ref["tokens"] or r["scored_tokens"] != ref["scored_tokens"]:
                print(f"error: {model}: sllm scored {r['scored_tokens']} of {r['tokens']} tokens, llama.cpp "
                      f"{ref['scored_tokens']} of {ref['tokens']}: the tokenizations differ, so the "
                      "perplexities are not comparable", file=sys.stderr)
                return 1
            rel = r["perplexity"] / ref["perplexity"] - 1
            row[f"sllm_{act}"] = {"perplexity": r["perplexity"], "rel_diff": rel,
                                  "within_tolerance": abs(rel) <= args.tolerance}
            if act == "q8":
                worst = max(worst, abs(rel))
        res["rows"].append(row)
        print(f"{os.path.basename(model):<40} llama.cpp {ref['perplexity']:.4f}  "
              f"sllm f32 act {row['sllm_f32']['perplexity']:.4f} ({100 * row['sllm_f32']['rel_diff']:+.3f} %)  "
              f"q8 act {row['sllm_q8']['perplexity']:.4f} ({100 * row['sllm_q8']['rel_diff']:+.3f} %)",
              flush=True)
    res["worst_q8_rel_diff"] = worst
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=2)
    os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
