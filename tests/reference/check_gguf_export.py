#!/usr/bin/env python3
"""`sllm convert --to gguf` against llama.cpp (llama-cpp-python) and the gguf Python package.

    check_gguf_export.py --sllm build/sllm --model models/SmolLM2-135M-Instruct.Q4_1.gguf

Exports the default GGUF to q8_0 and q4_0, its f32 export to q4_k_m, a Hugging Face directory
made from it (sllm convert) to f16 and q8_0, and two tiny random models (make_tiny_hf.py: an
untied GQA llama, a qwen2 with biases and Qwen2's pre-tokenizer) to f32. For every exported file:
  - every tensor's bytes equal the gguf package's: a source tensor already in the written type is
    copied; others are gguf.quants.quantize of the source's weights (GGUF source: dequantized by
    gguf.quants.dequantize; HF source: the safetensors rows, q/k permuted as llama.cpp's
    convert_hf_to_gguf.py does); norms stay F32;
  - q4_k_m (the gguf package cannot write K types): llama.cpp quantizes the same F32 file to its
    Q4_K_M (llama_model_quantize, no importance matrix); every tensor must have llama.cpp's type,
    and its bytes equal llama.cpp's (K types: check_gguf_quant.compare_k's rule, at most 1 % of the
    super-blocks differing by a float rounding and then with no larger error);
  - for exports of the default model, the tokenizer metadata and llama.* hyperparameters equal
    the default GGUF's (tokens, types, merges, pre, special ids, add_bos, chat template);
    general.file_type is the type's;
  - llama.cpp loads it, tokenizes the prompts as sllm does, and its greedy tokens (temperature 0,
    argmax of llama.cpp's logits) equal `sllm generate --temperature 0` on that same file. Both
    sides' logits along sllm's tokens must be close (mean |diff|, share of positions with the same
    top token), and where the tokens part, the step must be a near-tie in sllm's logits; the bounds
    per file type are BOUNDS below (sllm multiplies Q8_0 / Q4_0 / K blocks with fp32
    activations, llama.cpp with int8 ones).
Exit status 1 on any failure; a missing package or model fails, it never skips.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGUFReader, quants
from gguf.constants import GGMLQuantizationType as T
from llama_cpp import Llama
from safetensors.numpy import load_file

from check_gguf_quant import compare_k, llama_quantize

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["Once upon a time, in a small village by the sea,",
           "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
           "Here is a list of three fruits:\n1.",
           "To bake a loaf of sourdough bread, you need"]
NEW_TOKENS = 24
# Where greedy tokens may part, by file type: (TIE, MEAN_DIFF, MIN_AGREE). sllm runs Q8_0 / Q4_0
# blocks with fp32 activations, llama.cpp with int8 activation blocks (about 1 % error per Linear):
# their logits differ by ~0.2 on average, so a token whose two candidates sllm ranks within TIE of
# each other may flip. F16: llama.cpp rounds activations to fp16 (logits ~0.01 apart); F32: both
# sides compute in fp32. Q4_K_M: llama.cpp multiplies K blocks with Q8_K activation blocks, one
# scale per 256 elements instead of Q8_0's 32, which SmolLM2's outlier activation channels make
# coarser (logits ~0.2-0.6 apart on average; the Q4_K_M file's own quantization error moves them
# ~1.5 from the F32 file's). Anything wrong in a file (a tensor, the q/k order, the tokenizer)
# moves the logits far more than these bounds.
BOUNDS = {"q8_0": (0.5, 0.35, 0.8), "q4_0": (0.5, 0.35, 0.8), "q4_k_m": (0.5, 0.8, 0.8),
          "f16": (0.05, 0.03, 0.95), "f32": (1e-3, 1e-3, 1.0)}
FTYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2, "q4_k_m": 15}  # llama.cpp's LLAMA_FTYPE_*
K_TYPES = {T.Q4_K, T.Q5_K, T.Q6_K}
TOKENIZER_KEYS = ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                  "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                  "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.chat_template"]
HF_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
            "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
            "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
            "ffn_norm": "post_attention_layernorm"}


def run(cmd: list[str], timeout: float = 600) -> str:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {' '.join(map(str, cmd))}\n{p.stderr[-1500:]}")
    return p.stdout


def field(r: GGUFReader, key: str):
    f = r.fields.get(key)
    return None if f is None else f.contents()


def raw(t) -> np.ndarray:
    return np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)


def permute(w: np.ndarray, heads: int) -> np.ndarray:  # llama.cpp's q/k row order for its RoPE
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def expected_bytes(name: str, out_type: T, src_gguf: dict | None, hf: dict | None,
                   heads: tuple | None) -> np.ndarray:
    if src_gguf is not None:
        s = src_gguf[name]
        if s.tensor_type == out_type:
            return raw(s)
        w = quants.dequantize(np.asarray(s.data), s.tensor_type).astype(np.float32)
        w = w.reshape(tuple(int(d) for d in reversed(s.shape)))
    else:
        if name == "token_embd.weight":
            w = hf["model.embed_tokens.weight"]
        elif name == "output_norm.weight":
            w = hf["model.norm.weight"]
        elif name == "output.weight":
            w = hf["lm_head.weight"]
        else:
            _, i, kind, suffix = name.split(".")
            w = hf[f"model.layers.{i}.{HF_NAMES[kind]}.{suffix}"]
            if kind in ("attn_q", "attn_k") and heads is not None:
                w = permute(w, heads[0] if kind == "attn_q" else heads[1])
        w = w.astype(np.float32)
    return np.ascontiguousarray(quants.quantize(w, out_type)).view(np.uint8).reshape(-1)


def same_as_llama(t, ref, src) -> tuple[bool, str]:
    """A tensor of sllm's export against llama.cpp's quantization `ref` of the same F32 `src`."""
    if t.tensor_type != ref.tensor_type:
        return False, f"{t.tensor_type.name}, llama.cpp writes {ref.tensor_type.name}"
    if t.tensor_type in K_TYPES:
        x = np.asarray(src.data, dtype=np.float32).reshape(-1, int(t.shape[0]))
        return compare_k(raw(t), raw(ref), t.tensor_type, x)
    return bool(np.array_equal(raw(t), raw(ref))), "bytes differ from llama.cpp's"


def check_file(path: Path, typ: str, src: Path, ref_gguf: Path | None, sllm: str, sllm_logits: str,
               fails: list[str], llama_ref: Path | None = None) -> None:
    """ref_gguf: the GGUF whose metadata the export must carry (the default model), if any.
    llama_ref: llama.cpp's quantization of the F32 file `src`, which the tensors must equal."""
    tag = path.name
    r = GGUFReader(str(path))
    arch = field(r, "general.architecture")
    if ref_gguf is not None:
        ref = GGUFReader(str(ref_gguf))
        hparams = sorted(k for k in {*r.fields, *ref.fields} if k.startswith("llama."))
        for k in TOKENIZER_KEYS + hparams + ["general.architecture"]:
            if field(r, k) != field(ref, k):
                fails.append(f"{tag}: metadata {k} differs from the source's: {field(r, k)} vs {field(ref, k)}"[:300])
    want_ftype = FTYPES[typ]
    if field(r, "general.file_type") != want_ftype or field(r, "general.quantization_version") != 2:
        fails.append(f"{tag}: general.file_type / quantization_version are not {want_ftype} / 2")
    heads = (int(field(r, f"{arch}.attention.head_count")), int(field(r, f"{arch}.attention.head_count_kv")))
    if arch != "llama":  # qwen2 keeps Hugging Face's q/k order
        heads = None
    src_gguf = {t.name: t for t in GGUFReader(str(src)).tensors} if src.suffix == ".gguf" else None
    hf = load_file(str(src / "model.safetensors")) if src_gguf is None else None
    llama = {t.name: t for t in GGUFReader(str(llama_ref)).tensors} if llama_ref else None
    if llama is not None and sorted(llama) != sorted(t.name for t in r.tensors):
        fails.append(f"{tag}: tensor names differ from llama.cpp's quantization of the same file")
    bad = 0
    for t in r.tensors:
        if len(t.shape) == 1 and t.tensor_type != T.F32:
            fails.append(f"{tag}: 1-D tensor {t.name} is {t.tensor_type.name}, not F32")
        if llama is not None:
            ok, msg = same_as_llama(t, llama[t.name], src_gguf[t.name]) if t.name in llama else (False, "")
            if not ok:
                bad += 1
                fails.append(f"{tag}: tensor {t.name}: {msg}")
            continue
        want = expected_bytes(t.name, t.tensor_type, src_gguf, hf, heads)
        if want.size != raw(t).size or not np.array_equal(want, raw(t)):
            bad += 1
            if bad <= 3:
                fails.append(f"{tag}: tensor {t.name} ({t.tensor_type.name}) differs from the gguf package's")
    types = sorted({t.tensor_type.name for t in r.tensors})
    what = "of llama.cpp's type, equal to its bytes" if llama is not None else "byte-equal to gguf-py"
    print(f"{'ok  ' if bad == 0 else 'FAIL'} {tag}: {len(r.tensors)} tensors ({', '.join(types)}) "
          f"{what}: {len(r.tensors) - bad}/{len(r.tensors)}")

    # llama.cpp keeps K/V in fp32 here, as sllm does, so that the comparison is about the weights.
    llm = Llama(model_path=str(path), n_ctx=256, n_batch=256, n_threads=2, logits_all=True,
                type_k=0, type_v=0, verbose=False)
    pfile = path.with_suffix(".prompts.jsonl")
    pfile.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS), encoding="utf-8")
    out = run([sllm, "generate", "--model", path, "--prompt-file", pfile, "--temperature", "0",
               "--max-new-tokens", NEW_TOKENS, "--chat-template", "false", "--ignore-eos", "--json",
               "--threads", "2", "--log-level", "error"])
    gens = [json.loads(l) for l in out.splitlines() if l.strip().startswith("{")]
    seqs = []
    for p, g in zip(PROMPTS, gens, strict=True):
        # add_bos=True is llama.cpp's add_special: BOS only where the file's add_bos_token says so,
        # as sllm generate does.
        ids = llm.tokenize(p.encode(), add_bos=True, special=True)
        if len(ids) != g["prompt_tokens"]:
            fails.append(f"{tag}: llama.cpp tokenizes {p[:30]!r} into {len(ids)} tokens, sllm {g['prompt_tokens']}")
            continue
        llm.reset()
        llm.eval(ids)
        got = []
        for _ in range(NEW_TOKENS):
            got.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval([got[-1]])
        want = [int(x) for x in g["tokens"]]
        # Both sides' logits along the same tokens (prompt + sllm's greedy continuation).
        llm.reset()
        llm.eval(ids + want)
        seqs.append((p, ids, want, got, np.array(llm.scores[:len(ids) + NEW_TOKENS], dtype=np.float32)))
    del llm
    if not seqs:
        return
    ids_file, logits_file = path.with_suffix(".ids.txt"), path.with_suffix(".logits.f32")
    ids_file.write_text("".join(" ".join(map(str, s[1] + s[2])) + "\n" for s in seqs), encoding="utf-8")
    run([sllm_logits, path, "-", ids_file, logits_file, 2])
    flat, at = np.fromfile(logits_file, dtype="<f4"), 0
    tie, mean_diff, min_agree = BOUNDS[typ]
    for p, ids, want, got, ref in seqs:
        n = ref.size
        mine = flat[at:at + n].reshape(ref.shape)
        at += n
        gen = slice(len(ids) - 1, len(ids) - 1 + NEW_TOKENS)  # the positions that chose a token
        diff = float(np.abs(mine[gen] - ref[gen]).mean())
        agree = float(np.mean(np.argmax(mine[gen], 1) == np.argmax(ref[gen], 1)))
        k = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
        stats = f"mean |logit diff| {diff:.3f}, same top token at {agree:.0%} of positions"
        if k is None:
            ok = diff <= mean_diff and agree >= min_agree
            print(f"{'ok  ' if ok else 'FAIL'} {tag}: {p[:30]!r}: {NEW_TOKENS} greedy tokens identical; {stats}")
            if not ok:
                fails.append(f"{tag}: logits along the greedy tokens differ beyond the bounds for {p[:30]!r}")
            continue
        # A flip is accepted only as a near-tie in sllm's own logits, with the logits close overall.
        pos = len(ids) - 1 + k
        gap = float(mine[pos, want[k]] - mine[pos, got[k]])
        ok = gap <= tie and diff <= mean_diff and agree >= min_agree
        print(f"{'ok  ' if ok else 'FAIL'} {tag}: {p[:30]!r}: tokens identical up to {k}, then llama.cpp "
              f"{got[k]} / sllm {want[k]}, {gap:.3f} apart in sllm's logits (near-tie <= {tie}); {stats}")
        if not ok:
            fails.append(f"{tag}: greedy tokens differ from sllm's for {p[:30]!r} beyond a near-tie")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--sllm-logits", required=True)
    args = ap.parse_args()
    model = Path(args.model)
    if not model.exists():
        print(f"FAIL: {model} is missing: run scripts/setup.sh")
        return 1
    fails: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        hf = t / "hf"
        run([args.sllm, "convert", "--model", model, "--out", hf, "--log-level", "error"])
        # Tiny random models (tests/reference/make_tiny_hf.py): an untied GQA llama and a qwen2
        # with q/k/v biases and Qwen2's pre-tokenizer, exported as F32 (both sides compute fp32).
        tiny = {"tiny-llama": ["--arch", "llama", "--kv-heads", "2"],
                "tiny-qwen2": ["--arch", "qwen2", "--kv-heads", "2", "--tied", "--pretok", "qwen2"]}
        for name, opts in tiny.items():
            run([sys.executable, REPO / "tests/reference/make_tiny_hf.py", t / name, *opts])
        # Q4_K_M: sllm and llama.cpp quantize the same F32 file (the default model's f32 export).
        f32, llama_q4km = t / "f32.gguf", t / "llama_q4_k_m.gguf"
        run([args.sllm, "convert", "--model", model, "--to", "gguf", "--type", "f32", "--out", f32,
             "--log-level", "error"])
        llama_quantize(f32, llama_q4km, FTYPES["q4_k_m"])
        jobs = [(model, "q8_0", model, None), (model, "q4_0", model, None), (f32, "q4_k_m", model, llama_q4km),
                (hf, "f16", model, None), (hf, "q8_0", model, None),
                (t / "tiny-llama", "f32", None, None), (t / "tiny-qwen2", "f32", None, None)]
        for src, typ, ref_gguf, llama_ref in jobs:
            out = t / f"{'gguf' if src == model else src.stem}_{typ}.gguf"
            try:
                run([args.sllm, "convert", "--model", src, "--to", "gguf", "--type", typ, "--out", out,
                     "--log-level", "error"])
                check_file(out, typ, src, ref_gguf, args.sllm, args.sllm_logits, fails, llama_ref)
            except Exception as e:  # one failing export must not hide the others
                fails.append(f"{out.name}: {e}")
            finally:
                out.unlink(missing_ok=True)
    for f in fails:
        print("FAIL", f)
    print("all checks passed" if not fails else f"{len(fails)} failures")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
