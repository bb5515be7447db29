#!/usr/bin/env python3
"""Bit parity of sllm's GGUF quantizers (sllm convert --to gguf) with the gguf Python package's.

    check_gguf_quant.py --sllm build/sllm --quant-bin build/tests/reference/sllm_gguf_quant

For F16, Q4_0, Q4_1 and Q8_0: random rows, all-zero, constant and spiky blocks, blocks whose
largest magnitude is negative or tied between signs, values that land exactly on rounding ties,
scales in float16's subnormal range and large ones. sllm's bytes must equal gguf.quants.quantize's
(numpy's float16 conversion for F16). Exit status 1 on any difference.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import quants
from gguf.constants import GGMLQuantizationType as T

TYPES = [T.F16, T.Q4_0, T.Q4_1, T.Q8_0]
COLS = 256


def cases(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = lambda rows, s=1.0: (rng.standard_normal((rows, COLS)) * s).astype(np.float32)
    spiky = n(4, 0.02)
    spiky[:, 5::32] = 40.0
    spiky[1, 7::32] = -40.0
    neg = n(4, 0.05)
    neg[:, 3::32] = -1.0  # the block's largest magnitude is negative
    tied = n(4, 0.05)
    tied[:, 0::32], tied[:, 9::32] = 1.0, -1.0  # +1 and -1 tie: the first one wins
    steps = np.tile(np.arange(COLS, dtype=np.float32) * 0.5 - 64.0, (4, 1))  # exact .5 ties
    const = np.full((4, COLS), 0.3, dtype=np.float32)
    const[1], const[2], const[3] = -2.5, 1e-3, 7.0
    return {
        "random": n(16, 0.05),
        "wide": n(4, 300.0),
        "zero": np.zeros((4, COLS), dtype=np.float32),
        "constant": const,
        "spiky": spiky,
        "negative max": neg,
        "tied max": tied,
        "half steps": steps,
        "subnormal scales": n(4, 1e-6),
        "large": n(4, 2e4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", help="unused (the reference-test driver passes it)")
    ap.add_argument("--quant-bin", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    fails = checks = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, x in cases(rng).items():
            src = Path(tmp) / "in.bin"
            src.write_bytes(np.ascontiguousarray(x, dtype=np.float32).tobytes())
            for t in TYPES:
                dst = Path(tmp) / "out.bin"
                r = subprocess.run([args.quant_bin, str(int(t)), str(x.shape[0]), str(COLS), str(src), str(dst)],
                                   capture_output=True, text=True)
                checks += 1
                if r.returncode != 0:
                    print(f"FAIL {t.name:<5} {name}: {r.stderr.strip()}")
                    fails += 1
                    continue
                want = np.ascontiguousarray(quants.quantize(x, t)).view(np.uint8).reshape(-1)
                got = np.fromfile(dst, dtype=np.uint8)
                ok = got.size == want.size and bool(np.all(got == want))
                if not ok and got.size == want.size:
                    first = int(np.argmax(got != want))
                    print(f"FAIL {t.name:<5} {name}: {int(np.sum(got != want))} bytes differ, first at {first}")
                elif not ok:
                    print(f"FAIL {t.name:<5} {name}: {got.size} bytes, expected {want.size}")
                else:
                    print(f"ok   {t.name:<5} {name}")
                fails += not ok
    print(f"{checks - fails}/{checks} equal")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
