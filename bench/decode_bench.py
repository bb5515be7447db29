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
transformers. The engines take turns repeat by repeat (round robin), medians of --repeats.
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


def sllm_runner(args, dtype, batch, flags=()):
    """One sllm run per call: (prefill tok/s, decode tok/s) at batch 1, (None, throughput) above."""
    tmp = tempfile.mkdtemp(prefix="sllm-decode-bench-")
    pf = os.path.join(tmp, "prompts.jsonl")
    with open(pf, "w") as f:
        for i in range(batch):
            f.write(json.dumps({"prompt": PROMPT + ("" if i == 0 else f" (variant {i})")}) + "\n")
    cmd = [args.sllm, "generate", "--model", args.model, "--prompt-file", pf, "--json",
           "--temperature", "0", "--ignore-eos", "--chat-template", "false",
           "-n", str(args.max_new_tokens), "--threads", str(args.threads), "--dtype", dtype,
           "--ctx", "1024", "--log-level", "warn", *flags]

    def once():
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900).stdout
        rows = [json.loads(l) for l in out.splitlines() if l.strip()]
        if batch == 1:
            r = rows[0]
            return (r["prompt_tokens"] / (r["first_token_ms"] / 1e3),
                    (r["completion_tokens"] - 1) / ((r["total_ms"] - r["first_token_ms"]) / 1e3))
        return None, sum(r["completion_tokens"] for r in rows) / (max(r["total_ms"] for r in rows) / 1e3)
    return once


def run_sllm(args, dtype, batch, flags=()):
    """--repeats runs of sllm_runner in a row: (median prefill tok/s or None, median decode tok/s)."""
    once = sllm_runner(args, dtype, batch, flags)
    runs = [once() for _ in range(args.repeats)]
    return (median([r[0] for r in runs]) if batch == 1 else None), median([r[1] for r in runs])


def transformers_runner(args, dtype, hf_dir):
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
    with torch.no_grad():
        model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kw)  # warm-up

    def once():
        with torch.no_grad():
            t0 = time.perf_counter()
            model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
            ttft = time.perf_counter() - t0
            t0 = time.perf_counter()
            model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
            total = time.perf_counter() - t0
        return ids.shape[1] / ttft, (n - 1) / (total - ttft)
    return once


def llama_cpp_runner(args):
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=args.model, n_ctx=1024, n_threads=args.threads, n_batch=512,
                verbose=False, seed=0)
    eos = llm.token_eos()
    n = args.max_new_tokens
    ntok = len(llm.tokenize(PROMPT.encode(), add_bos=False))

    def once():
        llm.reset()
        t0 = time.perf_counter()
        first, count = None, 0
        for _chunk in llm.create_completion(PROMPT, max_tokens=n, temperature=0.0, stream=True,
                                            logit_bias={eos: -1e9}):
            count += 1
            if first is None:
                first = time.perf_counter() - t0
        total = time.perf_counter() - t0
        return ntok / first, (count - 1) / (total - first)
    once()  # warm-up
    return once


def file_type(path):
    """The GGUF's weight type as llama.cpp names it (general.file_type), e.g. Q4_1, Q4_K_M."""
    try:
        import gguf
        ft = gguf.GGUFReader(path).fields.get("general.file_type")
        if ft is not None:
            return gguf.LlamaFileType(int(ft.parts[ft.data[0]][0])).name.replace("MOSTLY_", "")
    except Exception as e:  # the label only; the measurements do not depend on it
        print(f"note: GGUF file type of {path} not read ({e})", file=sys.stderr)
    return "gguf"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", default="build/sllm")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,4,16")
    ap.add_argument("--gguf-only", action="store_true",
                    help="only the GGUF rows (sllm as stored, llama.cpp), not the dense ones")
    ap.add_argument("--json", required=True, help="the result file (with its provenance)")
    args = ap.parse_args()

    ftype = file_type(args.model)
    res = {**provenance.collect(args.sllm), "model": args.model, "file_type": ftype,
           "threads": args.threads, "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
           "order": "round robin: every engine runs once per repeat, in the listed order", "rows": []}

    # (engine, dtype, runner); every runner is called once per repeat, all in turn, so that a
    # machine slowing down over the run slows every row alike.
    runners = []
    hf_tmp = tempfile.TemporaryDirectory()
    if not args.gguf_only:
        hf_dir = os.path.join(hf_tmp.name, "hf")
        subprocess.run([args.sllm, "convert", "--model", args.model, "--out", hf_dir,
                        "--log-level", "warn"], check=True)
        for dtype in ("fp32", "bf16"):
            runners.append(("sllm", dtype, sllm_runner(args, dtype, 1, ["--dequantize"])))
            runners.append(("transformers", dtype, transformers_runner(args, dtype, hf_dir)))
    runners.append(("sllm (GGUF as stored, fp32 act)", "fp32",
                    sllm_runner(args, "fp32", 1, ["--gguf-act", "f32"])))
    runners.append(("sllm (GGUF as stored, int8 act)", "fp32",
                    sllm_runner(args, "fp32", 1, ["--gguf-act", "q8"])))
    lc_name = f"llama.cpp ({ftype} as stored)"
    lc = llama_cpp_runner(args)
    if lc:
        runners.append((lc_name, ftype.lower(), lc))
    else:
        print("llama.cpp: llama-cpp-python not installed, skipped")
    batches = [int(x) for x in args.batches.split(",") if int(x) > 1]
    for b in batches:
        for act in ("f32", "q8"):
            runners.append((f"sllm batch {b} ({act} act)", "fp32",
                            sllm_runner(args, "fp32", b, ["--gguf-act", act])))

    samples = {(e, d): [] for e, d, _ in runners}
    for rep in range(args.repeats):
        for e, d, fn in runners:
            samples[(e, d)].append(fn())
        print(f"repeat {rep + 1}/{args.repeats} done", flush=True)

    for e, d, _ in runners:
        if e.startswith("sllm batch"):
            continue
        p = median([s[0] for s in samples[(e, d)]])
        dec = median([s[1] for s in samples[(e, d)]])
        res["rows"].append({"engine": e, "dtype": d, "prefill_tok_s": p, "decode_tok_s": dec,
                            "decode_samples": [s[1] for s in samples[(e, d)]]})
        print(f"{e:<34} {d:<6} prefill {p:8.1f} tok/s   decode {dec:7.2f} tok/s", flush=True)
    by = {(r["engine"], r["dtype"]): r for r in res["rows"]}
    print("\nratios (decode tok/s):")
    if not args.gguf_only:
        for dtype in ("fp32", "bf16"):
            s, t = by[("sllm", dtype)], by[("transformers", dtype)]
            print(f"  sllm / transformers {dtype}: {s['decode_tok_s'] / t['decode_tok_s']:.2f}x "
                  f"(prefill {s['prefill_tok_s'] / t['prefill_tok_s']:.2f}x)")
    if lc:
        ref = by[(lc_name, ftype.lower())]
        for eng in ("sllm", "sllm (GGUF as stored, int8 act)", "sllm (GGUF as stored, fp32 act)"):
            if (eng, "fp32") not in by:
                continue
            s = by[(eng, "fp32")]
            print(f"  {eng} fp32 / {lc_name}: {s['decode_tok_s'] / ref['decode_tok_s']:.2f}x "
                  f"(prefill {s['prefill_tok_s'] / ref['prefill_tok_s']:.2f}x)")
    print("\nsllm batched decode throughput (GGUF as stored):")
    res["batched"] = []
    for b in [1] + batches:
        for act in ("f32", "q8"):
            if b == 1:
                eng = "sllm (GGUF as stored, fp32 act)" if act == "f32" else "sllm (GGUF as stored, int8 act)"
                thr = by[(eng, "fp32")]["decode_tok_s"]
            else:
                thr = median([s[1] for s in samples[(f"sllm batch {b} ({act} act)", "fp32")]])
            res["batched"].append({"batch": b, "gguf_act": act, "tok_s": thr})
            print(f"  batch {b:>3} ({act} act): {thr:8.1f} tok/s")
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=2)
    os.replace(tmp, args.json)


if __name__ == "__main__":
    sys.exit(main())
