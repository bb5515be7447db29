#!/usr/bin/env python3
"""Bit parity of sllm's GGUF quantizers (sllm convert --to gguf) with the gguf Python package's
and, for the K types, with llama.cpp's own quantization.

    check_gguf_quant.py --sllm build/sllm --quant-bin build/tests/reference/sllm_gguf_quant

For F16, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0: random rows, all-zero, constant and spiky blocks,
blocks whose largest magnitude is negative or tied between signs, values that land exactly on
rounding ties, scales in float16's subnormal range and large ones. sllm's bytes must equal
gguf.quants.quantize's (numpy's float16 conversion for F16).

Q4_K, Q5_K and Q6_K (the gguf package cannot quantize them): a tiny random F32 llama GGUF whose
rows are whole 256-element super-blocks, with the cases above planted in its tensors, is quantized
by llama.cpp (llama-cpp-python's llama_model_quantize, Q4_K_M, Q5_K_M and Q6_K mixes, no
importance matrix); every K tensor llama.cpp writes is quantized again by sllm from the same F32
rows. The super-blocks must be byte-equal; llama.cpp may be built with floating-point contraction
(FMA), which can move a least-squares fit by one rounding, so up to 1 % of a tensor's
super-blocks may differ, and then only if sllm's dequantized squared error over those blocks is
not larger than llama.cpp's (gguf.quants.dequantize decodes both). Exit status 1 on any failure.
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFWriter, quants
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T

TYPES = [T.F16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
K_TYPES = {T.Q4_K, T.Q5_K, T.Q6_K}
COLS = 256
# llama.cpp's LLAMA_FTYPE_* mixes that write the K types.
K_MIXES = {"Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}
MAX_DIFFERING = 0.01  # share of a tensor's super-blocks that may differ (see the docstring)


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


def sllm_quant(quant_bin: str, x: np.ndarray, t: T, tmp: Path) -> tuple[np.ndarray | None, str]:
    src, dst = tmp / "in.bin", tmp / "out.bin"
    src.write_bytes(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    r = subprocess.run([quant_bin, str(int(t)), str(x.shape[0]), str(x.shape[1]), str(src), str(dst)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return np.fromfile(dst, dtype=np.uint8), ""


def compare_k(got: np.ndarray, want: np.ndarray, t: T, x: np.ndarray) -> tuple[bool, str]:
    """sllm's blocks `got` against llama.cpp's `want` (bytes of type t) for the float32 rows x:
    byte-equal, or at most MAX_DIFFERING of the blocks differ and sllm's dequantized squared
    error on them is not larger than llama.cpp's."""
    bsize = GGML_QUANT_SIZES[t][1]
    if got.size != want.size:
        return False, f"{got.size} bytes, expected {want.size}"
    g, w = got.reshape(-1, bsize), want.reshape(-1, bsize)
    diff = np.flatnonzero(np.any(g != w, axis=1))
    if diff.size == 0:
        return True, f"{len(g)} blocks byte-equal"
    xs = x.reshape(len(g), -1)[diff]
    e_sllm = float(np.sum((quants.dequantize(g[diff], t).reshape(xs.shape) - xs) ** 2, dtype=np.float64))
    e_ref = float(np.sum((quants.dequantize(w[diff], t).reshape(xs.shape) - xs) ** 2, dtype=np.float64))
    ok = diff.size <= MAX_DIFFERING * len(g) and e_sllm <= e_ref
    return ok, (f"{len(g) - diff.size}/{len(g)} blocks byte-equal; on the others squared error "
                f"sllm {e_sllm:.6g}, llama.cpp {e_ref:.6g}")


def tiny_f32_gguf(path: Path, rng: np.random.Generator) -> None:
    """A random llama (8 layers, hidden 256, ffn 512, GQA 4/2, untied head) in F32, with the block
    cases of cases() planted in its first rows; enough metadata for llama.cpp's quantize."""
    hid, ffn, layers, vocab, heads, kv = 256, 512, 8, 320, 4, 2
    w = GGUFWriter(str(path), "llama")
    w.add_context_length(256)
    w.add_embedding_length(hid)
    w.add_block_count(layers)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hid // heads)
    w.add_vocab_size(vocab)
    w.add_file_type(0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(vocab)])
    w.add_token_types([1] * vocab)
    planted = np.concatenate(list(cases(rng).values()))  # 52 rows of 256
    def mat(rows: int, cols: int, scale: float) -> np.ndarray:
        m = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
        flat = m.reshape(-1, COLS)
        n = min(len(flat), len(planted))
        flat[:n] = planted[:n]
        return m
    w.add_tensor("token_embd.weight", mat(vocab, hid, 0.5))
    for i in range(layers):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(hid, dtype=np.float32))
        w.add_tensor(p + "ffn_norm.weight", np.ones(hid, dtype=np.float32))
        for name, rows, cols in [("attn_q", hid, hid), ("attn_k", hid * kv // heads, hid),
                                 ("attn_v", hid * kv // heads, hid), ("attn_output", hid, hid),
                                 ("ffn_gate", ffn, hid), ("ffn_up", ffn, hid), ("ffn_down", hid, ffn)]:
            w.add_tensor(p + name + ".weight", mat(rows, cols, 0.05))
    w.add_tensor("output_norm.weight", np.ones(hid, dtype=np.float32))
    w.add_tensor("output.weight", mat(vocab, hid, 0.05))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


_quiet = None  # the log callback handed to llama.cpp, kept alive


def llama_quantize(src: Path, dst: Path, ftype: int) -> None:
    """llama.cpp's quantize (llama-cpp-python), mix `ftype` (LLAMA_FTYPE_*), no importance matrix."""
    import llama_cpp  # noqa: PLC0415 (only the K checks need llama.cpp)

    global _quiet
    if _quiet is None:  # llama.cpp logs every tensor it quantizes: keep the test's output readable
        _quiet = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_quiet, None)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 1
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {src.name} to file type {ftype}")


def check_k(quant_bin: str, tmp: Path, rng: np.random.Generator) -> tuple[int, int]:
    """sllm's Q4_K / Q5_K / Q6_K against llama.cpp's quantize of one F32 file; (checks, fails)."""
    f32 = tmp / "tiny-f32.gguf"
    tiny_f32_gguf(f32, rng)
    src = {t.name: t for t in GGUFReader(str(f32)).tensors}
    checks = fails = 0
    seen: set[T] = set()
    for mix, ftype in K_MIXES.items():
        out = tmp / f"tiny-{mix}.gguf"
        try:
            llama_quantize(f32, out, ftype)
        except RuntimeError as e:
            print(f"FAIL {e}")
            fails += 1
            continue
        for t in GGUFReader(str(out)).tensors:
            if t.tensor_type not in K_TYPES:
                continue
            seen.add(t.tensor_type)
            checks += 1
            x = np.asarray(src[t.name].data, dtype=np.float32).reshape(-1, int(t.shape[0]))
            got, err = sllm_quant(quant_bin, x, t.tensor_type, tmp)
            want = np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)
            tag = f"{t.tensor_type.name:<5} {mix} {t.name}"
            if got is None or got.size != want.size:
                print(f"FAIL {tag}: {err or f'{got.size} bytes, expected {want.size}'}")
                fails += 1
                continue
            ok, msg = compare_k(got, want, t.tensor_type, x)
            print(f"{'ok  ' if ok else 'FAIL'} {tag}: {msg}")
            fails += not ok
    missing = K_TYPES - seen
    if missing:
        print(f"FAIL llama.cpp's mixes wrote no {', '.join(sorted(t.name for t in missing))} tensor")
        fails += 1
    return checks, fails


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", help="unused (the reference-test driver passes it)")
    ap.add_argument("--quant-bin", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    fails = checks = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, x in cases(rng).items():
            for t in TYPES:
                got, err = sllm_quant(args.quant_bin, x, t, Path(tmp))
                checks += 1
                if got is None:
                    print(f"FAIL {t.name:<5} {name}: {err}")
                    fails += 1
                    continue
                want = np.ascontiguousarray(quants.quantize(x, t)).view(np.uint8).reshape(-1)
                ok = got.size == want.size and bool(np.all(got == want))
                if not ok and got.size == want.size:
                    first = int(np.argmax(got != want))
                    print(f"FAIL {t.name:<5} {name}: {int(np.sum(got != want))} bytes differ, first at {first}")
                elif not ok:
                    print(f"FAIL {t.name:<5} {name}: {got.size} bytes, expected {want.size}")
                else:
                    print(f"ok   {t.name:<5} {name}")
                fails += not ok
        k_checks, k_fails = check_k(args.quant_bin, Path(tmp), rng)
        checks, fails = checks + k_checks, fails + k_fails
    print(f"{checks - fails}/{checks} passed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
