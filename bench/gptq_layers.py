#!/usr/bin/env python3
"""Per-Linear GPTQ vs RTN reconstruction losses on the first decoder layers of the default model
(the figures of docs/quantization.md's GPTQ section), with provenance: runs
tests/reference/check_gptq.py (sllm's GPTQ, an independent GPTQ from the paper and RTN on the
same weights and Hessians) and records every Linear's losses on the calibration text and on a
held-out text. Quality only: nothing is timed.

    .venv/bin/python bench/gptq_layers.py --dump build/tests/reference/sllm_gptq_layers \\
        --layers 3 --json bench/results/gptq_layers.json
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dump", default="build/tests/reference/sllm_gptq_layers")
    ap.add_argument("--sllm", default="build/sllm", help="for the version in the provenance")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--calib", default="tests/data/calib_en.txt")
    ap.add_argument("--heldout", default="tests/data/ppl_en.txt")
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / "rows.json"
        cmd = [sys.executable, str(REPO / "tests/reference/check_gptq.py"), "--dump", args.dump,
               "--model", args.model, "--calib", args.calib, "--heldout", args.heldout,
               "--layers", str(args.layers), "--threads", str(args.threads), "--json", str(tmp)]
        r = subprocess.run(cmd, text=True)
        if not tmp.is_file():
            sys.exit(f"check_gptq.py wrote no result (exit {r.returncode})")
        rows = json.loads(tmp.read_text())
    res = {**provenance.collect(args.sllm), "model": args.model, "calib": args.calib,
           "heldout": args.heldout, "check_exit_code": r.returncode, **rows}
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.json} (check_gptq.py exit {r.returncode})")


if __name__ == "__main__":
    main()
