#!/usr/bin/env python3
"""An F32 GGUF quantized to Q4_K_M by llama.cpp (llama-cpp-python's llama_model_quantize), for
test_gguf_stored.cpp's K-quant checks:

    make_kquant_gguf.py IN_F32_GGUF OUT_GGUF

Rows that are not whole 256-element super-blocks fall back to llama.cpp's other types; the rest
become Q4_K / Q6_K. Exit status 1 with one line on stderr when llama.cpp fails or is missing.
"""
import ctypes
import sys


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: make_kquant_gguf.py IN_F32_GGUF OUT_GGUF", file=sys.stderr)
        return 1
    try:
        import llama_cpp
    except ImportError as e:
        print(f"make_kquant_gguf.py: llama-cpp-python is missing ({e}): pip install -r requirements.txt",
              file=sys.stderr)
        return 1
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    p.nthread = 2
    rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p))
    if rc != 0:
        print(f"make_kquant_gguf.py: llama_model_quantize returned {rc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
