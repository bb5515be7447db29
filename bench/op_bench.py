#!/usr/bin/env python3
"""The op lab (build/bench/sllm_op_bench) with its provenance: runs it and writes its table, the
section and thread count, and provenance.collect() to a result file.

    .venv/bin/python bench/op_bench.py --bin build/bench/sllm_op_bench --threads 2 \\
        --section intq --json bench/results/op_bench_intq.json
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/bench/sllm_op_bench")
    ap.add_argument("--sllm", default="build/sllm", help="for the version in the provenance")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--section", default="all", help="all | intq | gguf")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    r = subprocess.run([args.bin, str(args.threads), args.section], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{args.bin} failed ({r.returncode}):\n{r.stderr}")
    print(r.stdout)
    res = {**provenance.collect(args.sllm), "threads": args.threads, "section": args.section,
           "output": r.stdout.splitlines()}
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
