#!/usr/bin/env python3
"""The quantization table of docs/quantization.md, from one command.

For each method: `sllm quantize` on the model (calibrating GPTQ/AWQ on --calib), then one
protocol for all rows: `sllm eval --ppl --kld-ref <the model>` on a different text --ppl
(perplexity, mean KL divergence and same-top-token % against the unquantized model), size on
disk, quantize time (from the quantize summary) and batch-1 greedy decode tokens/s (median of
--repeats runs of `sllm generate`, same prompt and max_new_tokens for every row).

    .venv/bin/python bench/quant_table.py --sllm build/sllm \\
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --calib tests/data/calib_en.txt --ppl tests/data/ppl_en.txt --threads 2 \\
        --json bench/results/quant_cpu.json --markdown bench/results/quant_cpu.md

--skip-speed measures quality only (perplexity, KLD, top-token agreement, size): no decode runs,
and the quantize times are left out, so it can run on a busy machine; its table has no speed
columns.
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
from decode_bench import run_sllm  # noqa: E402  (same decode protocol as the decode bench)

METHODS = {  # name -> quantize flags (gptq: act-order on, its default)
    "int8": ["--method", "int8"],
    "int8-threshold-1.5": ["--method", "int8", "--threshold", "1.5"],
    "rtn-int8-g128": ["--method", "rtn", "--bits", "8", "--group-size", "128"],
    "rtn-int4-g128-sym": ["--method", "rtn", "--group-size", "128", "--sym", "true"],
    "gptq-int4-g128-sym": ["--method", "gptq", "--group-size", "128"],
    "rtn-int4-g128-asym": ["--method", "rtn", "--group-size", "128"],
    "gptq-int4-g128-asym": ["--method", "gptq", "--group-size", "128", "--sym", "false"],
    "gptq-int4-g128-asym-noact": ["--method", "gptq", "--group-size", "128", "--sym", "false",
                                  "--desc-act", "false"],
    "rtn-int4-g64-asym": ["--method", "rtn", "--group-size", "64"],
    "awq-int4-g64": ["--method", "awq", "--group-size", "64"],
    "gptq-int4-g64-asym": ["--method", "gptq", "--group-size", "64", "--sym", "false"],
    "nf4": ["--method", "nf4"],
    # the output head as row-wise int8 too (--lm-head int8; the rows above keep it dense)
    "rtn-int8-g128-head-int8": ["--method", "rtn", "--bits", "8", "--group-size", "128",
                                "--lm-head", "int8"],
    "gptq-int4-g128-sym-head-int8": ["--method", "gptq", "--group-size", "128", "--lm-head", "int8"],
    "awq-int4-g64-head-int8": ["--method", "awq", "--group-size", "64", "--lm-head", "int8"],
    "nf4-head-int8": ["--method", "nf4", "--lm-head", "int8"],
}


def sllm(args, *cmd):
    full = [args.sllm, *cmd, "--threads", str(args.threads), "--log-level", "warn"]
    r = subprocess.run(full, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(full)}\n{r.stderr}")
    return r.stdout


def dir_size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if os.path.isfile(os.path.join(path, f)))


def measure(args, name, model, summary):
    ev = json.loads(sllm(args, "eval", "--model", model, "--ppl", args.ppl, "--ctx", str(args.ctx),
                         "--kld-ref", args.model, "--json"))
    dec = None if args.skip_speed else run_sllm(
        argparse.Namespace(sllm=args.sllm, model=model, threads=args.threads,
                           repeats=args.repeats, max_new_tokens=args.max_new_tokens), "fp32", 1)[1]
    return {"method": name, "scheme": summary.get("scheme", "fp32 (unquantized)"),
            "bits": summary.get("bits", 32), "group_size": summary.get("group_size"),
            "ppl": ev["perplexity"], "ref_ppl": ev["ref_perplexity"], "mean_kld": ev["mean_kld"],
            "same_top_token_pct": ev["same_top_token_pct"], "size_bytes": dir_size(model),
            "quantize_seconds": None if args.skip_speed else summary.get("quantize_seconds"),
            "decode_tok_s": dec}


def markdown(rows, base_ppl, speed=True):
    out = ["| method | bits | group | ppl | Δppl % | mean KLD | same top token % | size (MB) |" +
           (" quantize (s) | decode tok/s (b=1) |" if speed else ""),
           "|---|---|---|---|---|---|---|---|" + ("---|---|" if speed else "")]
    for r in rows:
        d = 100.0 * (r["ppl"] / base_ppl - 1.0)
        line = (f"| {r['method']} | {r['bits']} | {r['group_size'] or '-'} | {r['ppl']:.3f} | "
                f"{d:+.2f} | {r['mean_kld']:.4f} | {r['same_top_token_pct']:.1f} | "
                f"{r['size_bytes'] / 1e6:.0f} |")
        if speed:
            q = "-" if r["quantize_seconds"] is None else f"{r['quantize_seconds']:.0f}"
            line += f" {q} | {r['decode_tok_s']:.1f} |"
        out.append(line)
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", default="build/sllm")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--calib", default="tests/data/calib_en.txt")
    ap.add_argument("--ppl", default="tests/data/ppl_en.txt")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    ap.add_argument("--extra", action="append", default=[],
                    help="extra quantize flags for calibrated methods, e.g. --extra=--calib-samples=32")
    ap.add_argument("--keep", help="keep the quantized directories here")
    ap.add_argument("--skip-speed", action="store_true",
                    help="quality only: no decode runs, no quantize times")
    ap.add_argument("--json", required=True, help="the result file (with its provenance)")
    ap.add_argument("--markdown")
    args = ap.parse_args()

    prov = provenance.collect(args.sllm)  # the tree as the run starts: what was built and run
    work = args.keep or tempfile.mkdtemp(prefix="sllm-quant-table-")
    os.makedirs(work, exist_ok=True)
    rows = [measure(args, "fp32", args.model, {})]
    base_ppl = rows[0]["ppl"]
    print(f"fp32: ppl {base_ppl:.4f}", flush=True)
    for name in args.methods.split(","):
        out = os.path.join(work, name)
        shutil.rmtree(out, ignore_errors=True)
        flags = list(METHODS[name])
        if name.startswith(("gptq", "awq")):
            flags += ["--calib", args.calib, *args.extra]
        sllm(args, "quantize", "--model", args.model, "--out", out, *flags)
        with open(os.path.join(out, "sllm_quantize_summary.json")) as f:
            summary = json.load(f)
        rows.append(measure(args, name, out, summary))
        r = rows[-1]
        print(f"{name}: ppl {r['ppl']:.4f} ({100 * (r['ppl'] / base_ppl - 1):+.2f}%), "
              f"KLD {r['mean_kld']:.4f}, top {r['same_top_token_pct']:.1f}%", flush=True)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    table = markdown(rows, base_ppl, speed=not args.skip_speed)
    print(table)
    meta = {**prov, "model": args.model, "calib": args.calib,
            "ppl_text": args.ppl, "ctx": args.ctx,
            "threads": args.threads, "max_new_tokens": args.max_new_tokens,
            "skip_speed": args.skip_speed, "rows": rows}
    with open(args.json, "w") as f:
        json.dump(meta, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
