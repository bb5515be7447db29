#!/usr/bin/env python3
"""Bit parity of sllm's GGUF dequantizers with the gguf Python package's (gguf.quants.dequantize).

    check_gguf_dequant.py --sllm build/sllm --dequant-bin build/tests/reference/sllm_gguf_dequant

For each block type both sides read: blocks that gguf.quants.quantize makes from random weights
(where it can), and blocks of random bytes (every nibble and scale pattern, NaN and inf scales
included). sllm's load-time dequantizer, and for Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / Q4_K / Q5_K / Q6_K (the
types Linears keep as stored) its kernels' row dequantizer (the prefill tiles') and its tensor-op
reference's dequantization, must give the same float32 bits as gguf-py (NaN compared as NaN). Exit status 1 on any difference.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T

TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K,
         T.IQ4_NL, T.IQ4_XS]
KEPT = {T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K}
ROWS, COLS = 8, 512


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | both_nan))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", help="unused (the reference-test driver passes it)")
    ap.add_argument("--dequant-bin", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        for t in TYPES:
            bs, tb = GGML_QUANT_SIZES[t]
            cases = {"random bytes": rng.integers(0, 256, size=(ROWS, COLS // bs * tb), dtype=np.uint8)}
            try:
                w = (rng.standard_normal((ROWS, COLS)) * 0.05).astype(np.float32)
                cases["quantized"] = quants.quantize(w, t)
            except NotImplementedError:
                pass
            for name, blocks in cases.items():
                want = quants.dequantize(blocks, t).astype(np.float32).reshape(-1)
                src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
                src.write_bytes(np.ascontiguousarray(blocks).tobytes())
                r = subprocess.run([args.dequant_bin, str(int(t)), str(ROWS), str(COLS), str(src), str(dst)],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"FAIL {t.name} {name}: {r.stderr.strip()}")
                    fails += 1
                    continue
                got = np.fromfile(dst, dtype=np.float32)
                paths = ["load"] + (["kernels", "reference"] if t in KEPT else [])
                if got.size != want.size * len(paths):
                    print(f"FAIL {t.name} {name}: {got.size} values, expected {want.size * len(paths)}")
                    fails += 1
                    continue
                for k, p in enumerate(paths):
                    part = got[k * want.size:(k + 1) * want.size]
                    ok = same_bits(part, want)
                    fails += not ok
                    print(f"{'ok  ' if ok else 'FAIL'} {t.name:<7} {name:<13} {p}")
    print(f"{'all equal' if fails == 0 else f'{fails} differences'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
