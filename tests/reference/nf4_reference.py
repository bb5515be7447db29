#!/usr/bin/env python3
"""Reference bytes for sllm's NF4/FP4 quantizer, produced by REAL bitsandbytes on the CPU.

This script calls `bitsandbytes.functional.quantize_4bit` / `dequantize_4bit` (CPU backend,
bitsandbytes 0.50.2 was used for the fixtures committed in tests/unit/test_nf4.cpp). It is
NOT a re-implementation. bitsandbytes 0.50.2 is pinned in requirements.txt:

    .venv/bin/python tests/reference/nf4_reference.py \
        --input formula --n 301 --blocksize 64 --quant-type nf4 --double-quant --out /tmp/nf4.json

Inputs:
  --input formula  x[i] = ((i*37 + 11) % 101 - 50) / 50 * (1 + i // blocksize % 4), all in float32
                   (exactly reproducible in C++, see formula_input() in test_nf4.cpp)
  --input random   torch.randn with --seed

Output JSON (all float32 values are also given as 8-hex-digit IEEE bit patterns, "*_bits"):
  input_bits, packed_hex (the uint8 weight bytes), absmax_hex (uint8 codes, double quant) or
  absmax_bits (fp32), nested_absmax_bits, nested_quant_map_bits, offset_bits,
  quant_state_json (the exact bytes of the `.quant_state.bitsandbytes__<type>` tensor),
  dequant_bits (bnb's dequantize_4bit output), fnv1a64_packed (hash of the packed bytes).
"""

import argparse
import json
import struct
import sys

import numpy as np
import torch


def bits(t: torch.Tensor) -> list[str]:
    a = t.detach().to(torch.float32).reshape(-1).numpy()
    return [f"{v:08x}" for v in a.view(np.uint32).tolist()]


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def formula_input(n: int, blocksize: int) -> torch.Tensor:
    i = np.arange(n, dtype=np.int64)
    v = ((i * 37 + 11) % 101 - 50).astype(np.float32) / np.float32(50.0)
    scale = (1 + (i // blocksize) % 4).astype(np.float32)
    return torch.from_numpy((v * scale).astype(np.float32))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=301)
    p.add_argument("--blocksize", type=int, default=64)
    p.add_argument("--quant-type", choices=["nf4", "fp4"], default="nf4")
    p.add_argument("--double-quant", action="store_true")
    p.add_argument("--input", choices=["formula", "random"], default="formula")
    p.add_argument("--out", default="-")
    a = p.parse_args()

    import bitsandbytes
    import bitsandbytes.functional as F

    if a.input == "formula":
        x = formula_input(a.n, a.blocksize)
    else:
        torch.manual_seed(a.seed)
        x = torch.randn(a.n, dtype=torch.float32)

    q, st = F.quantize_4bit(x, blocksize=a.blocksize, compress_statistics=a.double_quant, quant_type=a.quant_type)
    deq = F.dequantize_4bit(q, st)
    packed = bytes(q.reshape(-1).tolist())
    d = st.as_dict(packed=True)
    qs_key = f"quant_state.bitsandbytes__{a.quant_type}"
    out = {
        "bitsandbytes_version": bitsandbytes.__version__,
        "torch_version": torch.__version__,
        "args": vars(a),
        "input_bits": bits(x),
        "packed_hex": packed.hex(),
        "fnv1a64_packed": fnv1a64(packed),
        "quant_map_bits": bits(d["quant_map"]),
        "quant_state_json": bytes(d[qs_key].tolist()).decode("utf-8"),
        "dequant_bits": bits(deq),
    }
    if a.double_quant:
        out["absmax_hex"] = bytes(d["absmax"].tolist()).hex()
        out["nested_absmax_bits"] = bits(d["nested_absmax"])
        out["nested_quant_map_bits"] = bits(d["nested_quant_map"])
        out["offset_bits"] = f"{struct.unpack('<I', struct.pack('<f', float(st.offset)))[0]:08x}"
        # The fp32 absmax before double quantization, for closeness checks.
        _, st_plain = F.quantize_4bit(x, blocksize=a.blocksize, compress_statistics=False, quant_type=a.quant_type)
        out["absmax_fp32_bits"] = bits(st_plain.absmax)
    else:
        out["absmax_bits"] = bits(d["absmax"])

    text = json.dumps(out, indent=1)
    if a.out == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
