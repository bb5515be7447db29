#!/usr/bin/env python3
"""Prefill and decode speed at batch 1: sllm vs Hugging Face transformers vs llama.cpp.

One run, same machine, same prompt, same max_new_tokens, greedy, same thread count.
Reports medians over --repeats runs and ratios against the references measured here.
Also sllm's batched decode throughput at several batch sizes.

    .venv/bin/python bench/decode_bench.py --sllm build/sllm \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf --max-new-tokens 64 --threads 2

transformers runs the dense Hugging Face directory that `sllm convert` writes from the GGUF
(same weights). llama.cpp is measured through llama-cpp-python when it is installed
(pip install llama-cpp-python); it runs the GGUF file as stored (Q4_1). sllm runs it both ways:
as stored (its default: Q4_1 blocks, the tied Q8_0 head; fp32 activations, and int8 activation
blocks with --gguf-act q8) next to llama.cpp, and dequantized (--dequantize) to the named dtype next to
transformers.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402

PROMPT = ("The history of bread goes back thousands of years. Early farmers learned to grind "
          "grain between stones, mix the flour with water and bake the dough on hot rocks. Over time")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def run_sllm(args, dtype, batch, flags=()):
    """Returns (prefill tok/s, decode tok/s) medians at batch 1, or throughput for batch > 1."""
    prefill, decode = [], []
    with tempfile.TemporaryDirectory() as tmp:
        pf = os.path.join(tmp, "prompts.jsonl")
        with open(pf, "w") as f:
            for i in range(batch):
                f.write(json.dumps({"prompt": PROMPT + ("" if i == 0 else f" (variant {i})")}) + "\n")
        cmd = [args.sllm, "generate", "--model", args.model, "--prompt-file", pf, "--json",
               "--temperature", "0", "--ignore-eos", "--chat-template", "false",
               "-n", str(args.max_new_tokens), "--threads", str(args.threads), "--dtype", dtype,
               "--ctx", "1024", "--log-level", "warn", *flags]
        for _ in range(args.repeats):
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900).stdout
            rows = [json.loads(l) for l in out.splitlines() if l.strip()]
            if batch == 1:
                r = rows[0]
                prefill.append(r["prompt_tokens"] / (r["first_token_ms"] / 1e3))
                decode.append((r["completion_tokens"] - 1) / ((r["total_ms"] - r["first_token_ms"]) / 1e3))
            else:
                toks = sum(r["completion_tokens"] for r in rows)
                decode.append(toks / (max(r["total_ms"] for r in rows) / 1e3))
    return median(prefill), median(decode)


def run_transformers(args, dtype, hf_dir):
    """transformers on the dense Hugging Face directory `sllm convert` wrote from the GGUF:
    the same weights as sllm computes with, through transformers' standard dense path."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    tdt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=tdt).eval()
    ids = tok(PROMPT, return_tensors="pt")["input_ids"]
    n = args.max_new_tokens
    kw = dict(do_sample=False, pad_token_id=tok.eos_token_id)
    prefill, decode = [], []
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kw)  # warm-up
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
            ttft = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
            total = time.perf_counter() - t0
            prefill.append(ids.shape[1] / ttft)
            decode.append((n - 1) / (total - ttft))
    return median(prefill), median(decode)


def run_llama_cpp(args):
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=args.model, n_ctx=1024, n_threads=args.threads, n_batch=512,
                verbose=False, seed=0)
    eos = llm.token_eos()
    n = args.max_new_tokens
    prefill, decode = [], []
    ntok = len(llm.tokenize(PROMPT.encode(), add_bos=False))
    for _ in range(args.repeats + 1):
        llm.reset()
        t0 = time.perf_counter()
        first, count = None, 0
        for _chunk in llm.create_completion(PROMPT, max_tokens=n, temperature=0.0, stream=True,
                                            logit_bias={eos: -1e9}):
            count += 1
            if first is None:
                first = time.perf_counter() - t0
        total = time.perf_counter() - t0
        prefill.append(ntok / first)
        decode.append((count - 1) / (total - first))
    return median(prefill[1:]), median(decode[1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", default="build/sllm")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--json", required=True, help="the result file (with its provenance)")
    args = ap.parse_args()

    res = {**provenance.collect(args.sllm), "model": args.model, "threads": args.threads,
           "max_new_tokens": args.max_new_tokens, "repeats": args.repeats, "rows": []}
    def row(engine, dtype, p, d):
        res["rows"].append({"engine": engine, "dtype": dtype, "prefill_tok_s": p, "decode_tok_s": d})
        print(f"{engine:<28} {dtype:<5} prefill {p:8.1f} tok/s   decode {d:7.2f} tok/s", flush=True)

    hf_tmp = tempfile.TemporaryDirectory()
    hf_dir = os.path.join(hf_tmp.name, "hf")
    subprocess.run([args.sllm, "convert", "--model", args.model, "--out", hf_dir, "--log-level", "warn"],
                   check=True)
    for dtype in ("fp32", "bf16"):
        row("sllm", dtype, *run_sllm(args, dtype, 1, ["--dequantize"]))
        row("transformers", dtype, *run_transformers(args, dtype, hf_dir))
    row("sllm (GGUF as stored, fp32 act)", "fp32", *run_sllm(args, "fp32", 1, ["--gguf-act", "f32"]))
    row("sllm (GGUF as stored, int8 act)", "fp32", *run_sllm(args, "fp32", 1, ["--gguf-act", "q8"]))
    lc = run_llama_cpp(args)
    if lc:
        row("llama.cpp (Q4_1 as stored)", "q4_1", *lc)
    else:
        print("llama.cpp: llama-cpp-python not installed, skipped")
    by = {(r["engine"], r["dtype"]): r for r in res["rows"]}
    print("\nratios (decode tok/s):")
    for dtype in ("fp32", "bf16"):
        s, t = by[("sllm", dtype)], by[("transformers", dtype)]
        print(f"  sllm / transformers {dtype}: {s['decode_tok_s'] / t['decode_tok_s']:.2f}x "
              f"(prefill {s['prefill_tok_s'] / t['prefill_tok_s']:.2f}x)")
    if lc:
        for eng in ("sllm", "sllm (GGUF as stored, int8 act)", "sllm (GGUF as stored, fp32 act)"):
            s = by[(eng, "fp32")]
            print(f"  {eng} fp32 / llama.cpp q4_1: {s['decode_tok_s'] / lc[1]:.2f}x "
                  f"(prefill {s['prefill_tok_s'] / lc[0]:.2f}x)")
    print("\nsllm batched decode throughput (GGUF as stored, fp32 act):")
    res["batched"] = []
    stored = by[("sllm (GGUF as stored, fp32 act)", "fp32")]
    for b in [int(x) for x in args.batches.split(",")]:
        _, thr = run_sllm(args, "fp32", b) if b > 1 else (None, stored["decode_tok_s"])
        res["batched"].append({"batch": b, "tok_s": thr})
        print(f"  batch {b:>3}: {thr:8.1f} tok/s")
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
