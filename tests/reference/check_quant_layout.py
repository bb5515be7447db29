#!/usr/bin/env python3
"""sllm's GPTQ v1, AWQ GEMM and bitsandbytes int8 checkpoints, read back independently.

    check_quant_layout.py --sllm build/sllm [--sllm-logits build/tests/reference/sllm_logits]
                          [--out-dir DIR] [--threads N] [--only NAME]

For each variant, a tiny model from make_tiny_hf.py is quantized with
`sllm quantize --method rtn|gptq|awq|int8 ...` and the directory is checked against the
published layouts (AutoGPTQ QuantLinear / GPTQModel, AutoAWQ WQLinear_GEMM, bitsandbytes
Linear8bitLt + transformers save_pretrained; docs/quant_formats.md), with an unpacker written
here from those layouts, not from sllm's code:
  - every decoder module has exactly the tensors of its layout (names, dtypes, shapes), no
    dense weight; biases are fp16 (GPTQ/AWQ) or dense (int8); the dense tensors (embeddings,
    norms, lm_head) equal the tiny model's; quantization_config says what the layout needs;
  - the unpacked, dequantized weights ((q - zero) * scale in fp32, the v1 zero - 1 undone on the
    whole int32 word) equal bit for bit the dense weights `sllm convert --dequantize` writes;
  - transformers with those unpacked weights in a dense model gives logits within 1e-3 of the
    same model on sllm's dequantized directory, and perplexity within 1e-5 (relative) of
    `sllm eval --ppl` on the quantized directory (sllm's own integer kernels);
  - `sllm convert` of the directory writes the same tensors and config back (layout round trip);
  - quantization moved perplexity (the check is not vacuous).
int8 variants also compare with transformers + bitsandbytes 0.50.2 (requirements.txt; its CPU
backend): from_pretrained(TINY, BitsAndBytesConfig(load_in_8bit=True), device_map="cpu") +
save_pretrained gives the same tensors and quantization_config as sllm's directory, sllm reads
that directory back byte for byte, and transformers loads sllm's directory (every decoder Linear
a Linear8bitLt) with the logits of its own; sllm on bnb's directory (its default LLM.int8()
arithmetic is bitsandbytes': activations cast to fp16 before quantizing, its scale constants)
matches transformers + bnb in perplexity (rel 5e-5) and logits (the `sllm_logits` test binary,
max |diff| 1e-5). A missing bitsandbytes, or an `sllm convert` without
--dequantize, fails the checks that need it (nothing is skipped).

Prints a table and exits 1 if any check fails (2 on bad usage), as check_parity.py does.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import check_parity as cp  # noqa: E402

from check_bnb_layout import (BNB_VERSION, copy_tokenizer, logits_diff,  # noqa: E402
                              read_safetensors)

PPL_TEXT = REPO / "tests" / "data" / "ppl_en.txt"
CALIB = REPO / "tests" / "data" / "calib_en.txt"
CTX = 64
LOGITS_ABS_TOL = 1e-3    # transformers: unpacked weights vs sllm's dequantized directory
HF_PPL_REL_TOL = 1e-5    # transformers on the unpacked weights vs sllm's integer kernels
# LLM.int8 quantizes activations too: sllm's int8 matmul vs a dense fp32 one, or vs bitsandbytes'
# CPU Linear8bitLt on the same weights (measured 2e-4 to 3e-4 on the tiny models)
INT8_PPL_REL_TOL = 1e-3
# The same int8 directory through sllm (its default, bitsandbytes' arithmetic: activations cast to
# fp16 before quantizing, bnb's scale constants) and through transformers + bitsandbytes'
# Linear8bitLt: what is left is float summation order (measured: ppl rel 2.9e-6 llama, 1.9e-5
# qwen2 with biases; logits max |diff| 1e-6 on both; it was 2e-4 to 3e-4 in ppl before).
BNB_INT8_PPL_REL_TOL = 5e-5
BNB_INT8_LOGITS_ABS_TOL = 1e-5
MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble p of an AWQ word holds output column 8c + order[p]
CALIB_ARGS = ["--calib", str(CALIB), "--calib-samples", "8", "--calib-seqlen", "64"]

LLAMA = {"arch": "llama", "tied": True, "kv_heads": 2, "rope_scaling": "none", "seed": 21}
LLAMA_UNTIED = {"arch": "llama", "tied": False, "kv_heads": 4, "rope_scaling": "llama3", "seed": 5}
QWEN2 = {"arch": "qwen2", "tied": True, "kv_heads": 2, "rope_scaling": "none", "seed": 3}

VARIANTS = [
    {"name": "rtn4-llama", "tiny": LLAMA, "layout": "gptq",
     "args": ["--method", "rtn", "--group-size", "32"]},
    {"name": "rtn8-sym-perchannel-qwen2", "tiny": QWEN2, "layout": "gptq",
     "args": ["--method", "rtn", "--bits", "8", "--sym", "true", "--group-size", "-1"]},
    {"name": "rtn2-llama-untied", "tiny": LLAMA_UNTIED, "layout": "gptq",
     "args": ["--method", "rtn", "--bits", "2", "--group-size", "32"]},
    {"name": "gptq-actorder-qwen2", "tiny": QWEN2, "layout": "gptq",
     "args": ["--method", "gptq", "--group-size", "32", "--desc-act", "true", *CALIB_ARGS]},
    {"name": "gptq-llama-untied", "tiny": LLAMA_UNTIED, "layout": "gptq",
     "args": ["--method", "gptq", "--group-size", "32", "--desc-act", "false", *CALIB_ARGS]},
    {"name": "awq-llama", "tiny": LLAMA, "layout": "awq",
     "args": ["--method", "awq", "--group-size", "32", *CALIB_ARGS]},
    {"name": "awq-qwen2-bias", "tiny": QWEN2, "layout": "awq",
     "args": ["--method", "awq", "--group-size", "32", *CALIB_ARGS]},
    {"name": "int8-llama", "tiny": LLAMA, "layout": "int8", "args": ["--method", "int8"]},
    {"name": "int8-qwen2-bias", "tiny": QWEN2, "layout": "int8", "args": ["--method", "int8"]},
]


# ----------------------------------------------------------------------------- the layouts

def as_array(entry):
    """A numpy array of a (dtype, shape, bytes) safetensors entry."""
    import numpy as np
    dt = {"I32": np.int32, "F16": np.float16, "F32": np.float32, "I8": np.int8, "U8": np.uint8,
          "I64": np.int64, "BF16": None}[entry[0]]
    if dt is None:
        raise ValueError("bf16 tensor where the layout has none")
    return np.frombuffer(entry[2], dtype=dt).reshape(entry[1])


def unpack_gptq(qweight, qzeros, scales, g_idx, bits: int, v1: bool = True):
    """GPTQ v1: qweight int32 [in * bits / 32, out], input row i at bit (i % (32 / bits)) * bits
    of word i / (32 / bits); qzeros int32 [groups, out * bits / 32] packed the same way along the
    output dim, storing zero - 1 (undone here on the whole uint32 word, as GPTQModel's v1 -> v2
    conversion does); scales fp16 [groups, out]; g_idx int32 [in]. Returns (W fp32 [out, in],
    q, zeros [groups, out], zeros as per-field readers see them)."""
    import numpy as np
    per = 32 // bits
    mask = np.uint32((1 << bits) - 1)
    shifts = (np.arange(per, dtype=np.uint32) * bits)
    qw = qweight.view(np.uint32)
    q = (qw[:, None, :] >> shifts[None, :, None]) & mask          # [in / per, per, out]
    q = q.reshape(-1, qw.shape[1])                                  # [in, out]
    ones = np.uint32(sum(1 << (k * bits) for k in range(per)))
    qz = qzeros.view(np.uint32)
    groups = qz.shape[0]
    fields = lambda w: ((w[:, :, None] >> shifts[None, None, :]) & mask).reshape(groups, -1)
    zeros = fields(qz + ones if v1 else qz)                          # uint32 add wraps
    per_field = fields(qz) + (1 if v1 else 0)
    g = g_idx.astype(np.int64)
    s = scales.astype(np.float32)
    W = (q.T.astype(np.float32) - zeros[g].T.astype(np.float32)) * s[g].T
    return W.astype(np.float32), q.T, zeros, per_field


def unpack_awq(qweight, qzeros, scales, group_size: int):
    """AWQ GEMM: qweight int32 [in, out / 8], nibble p of word (i, c) = output column
    8c + AWQ_ORDER[p] of input row i; qzeros int32 [groups, out / 8] the same, no off-by-one;
    scales fp16 [groups, out]."""
    import numpy as np
    shifts = np.arange(8, dtype=np.uint32) * 4

    def cols(w):
        nib = (w.view(np.uint32)[:, :, None] >> shifts[None, None, :]) & np.uint32(0xF)
        out = np.empty((w.shape[0], w.shape[1] * 8), dtype=np.uint32)
        idx = (np.arange(w.shape[1])[:, None] * 8 + np.array(AWQ_ORDER)[None, :]).reshape(-1)
        out[:, idx] = nib.reshape(w.shape[0], -1)
        return out

    q = cols(qweight)                       # [in, out]
    zeros = cols(qzeros)                    # [groups, out]
    g = np.arange(q.shape[0]) // group_size
    s = scales.astype(np.float32)
    W = (q.T.astype(np.float32) - zeros[g].T.astype(np.float32)) * s[g].T
    return W.astype(np.float32), q.T, zeros


def dequant_int8(weight, scb):
    """bitsandbytes' int8_vectorwise_dequant: weight * SCB[:, None] * (1 / 127) in fp32."""
    import numpy as np
    return (weight.astype(np.float32) * scb[:, None]) * np.float32(7.874015718698502e-3)


def module_shapes(cfg: dict) -> dict:
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // heads
    return {"self_attn.q_proj": (heads * hd, h), "self_attn.k_proj": (kv * hd, h),
            "self_attn.v_proj": (kv * hd, h), "self_attn.o_proj": (h, heads * hd),
            "mlp.gate_proj": (i, h), "mlp.up_proj": (i, h), "mlp.down_proj": (h, i)}


def check_structure(rep, S: str, layout: str, qdir: Path, tiny: Path):
    """Tensors and config of qdir against the layout; returns (tensors, qc, {module: W})."""
    import numpy as np
    _, T = read_safetensors(qdir / "model.safetensors")
    _, dense = read_safetensors(tiny / "model.safetensors")
    cfg = json.loads((qdir / "config.json").read_text())
    qc = cfg.get("quantization_config") or {}
    shapes = module_shapes(cfg)
    layers = cfg["num_hidden_layers"]
    bits = int(qc.get("bits", 8))
    gs_cfg = int(qc.get("group_size", -1))
    problems, weights, zero0, nontrivial_gidx = [], {}, 0, 0
    expected = set()
    for L in range(layers):
        for m in MODULES:
            M = f"model.layers.{L}.{m}"
            out, inn = shapes[m]
            has_bias = f"{M}.bias" in dense
            gs = inn if gs_cfg == -1 else gs_cfg
            groups = -(-inn // gs)
            if layout == "gptq":
                want = {"qweight": ("I32", [inn * bits // 32, out]),
                        "qzeros": ("I32", [groups, out * bits // 32]),
                        "scales": ("F16", [groups, out]), "g_idx": ("I32", [inn])}
                if has_bias:
                    want["bias"] = ("F16", [out])
            elif layout == "awq":
                want = {"qweight": ("I32", [inn, out // 8]), "qzeros": ("I32", [groups, out // 8]),
                        "scales": ("F16", [groups, out])}
                if has_bias:
                    want["bias"] = ("F16", [out])
            else:
                want = {"weight": ("I8", [out, inn]), "SCB": ("F32", [out]),
                        "weight_format": ("U8", [])}
                if has_bias:
                    want["bias"] = (dense[f"{M}.bias"][0], [out])
            for k, (dt, shp) in want.items():
                name = f"{M}.{k}"
                expected.add(name)
                if name not in T:
                    problems.append(f"{name} missing")
                elif T[name][:2] != (dt, shp):
                    problems.append(f"{name} is {T[name][:2]}, layout says {(dt, shp)}")
            if any(p.startswith(M + ".") for p in problems):
                continue
            if layout == "gptq":
                g_idx = as_array(T[f"{M}.g_idx"])
                if g_idx.min() < 0 or g_idx.max() >= groups:
                    problems.append(f"{M}.g_idx out of range")
                    continue
                nontrivial_gidx += bool((g_idx != np.arange(inn) // gs).any())
                W, _, zeros, per_field = unpack_gptq(as_array(T[f"{M}.qweight"]),
                                                     as_array(T[f"{M}.qzeros"]),
                                                     as_array(T[f"{M}.scales"]), g_idx, bits)
                zero0 += int((zeros == 0).sum())
                if qc.get("sym") and (zeros != 1 << (bits - 1)).any():
                    problems.append(f"{M}: sym config but zeros other than {1 << (bits - 1)}")
                if not (zeros == 0).any() and not (per_field == zeros).all():
                    problems.append(f"{M}: per-field and whole-word v1 zeros disagree")
            elif layout == "awq":
                W, _, _ = unpack_awq(as_array(T[f"{M}.qweight"]), as_array(T[f"{M}.qzeros"]),
                                     as_array(T[f"{M}.scales"]), gs)
            else:
                if as_array(T[f"{M}.weight_format"]).item() != 0:
                    problems.append(f"{M}.weight_format is not 0")
                W = dequant_int8(as_array(T[f"{M}.weight"]), as_array(T[f"{M}.SCB"]))
            if not np.isfinite(W).all():
                problems.append(f"{M}: non-finite dequantized weight")
            weights[M] = W
    others = sorted(n for n in dense if not any(n.startswith(f"model.layers.{L}.{m}.")
                                                for L in range(layers) for m in MODULES))
    # AWQ folds its activation scales into the preceding RMSNorm weights: those change (same
    # dtype and shape), everything else stays as it was.
    scaled = [n for n in others if layout == "awq" and n.endswith("layernorm.weight")]
    bad_dense = [n for n in others if n not in scaled and T.get(n) != dense[n]]
    bad_dense += [n for n in scaled if T.get(n, ("",))[:2] != dense[n][:2]]
    extra = sorted(set(T) - expected - set(others))
    rep.add(S, "tensors as the layout says", not problems and not extra,
            f"{len(expected)} module tensors" + (f"; {problems[0]}" if problems else "")
            + (f"; extra {extra[:3]}" if extra else ""))
    rep.add(S, "dense tensors = the tiny model's", not bad_dense,
            f"{len(others) - len(bad_dense)}/{len(others)}"
            + (f" ({sum(T.get(n) != dense[n] for n in scaled)} layer norms rescaled by AWQ)"
               if scaled else "") + (f"; first differing {bad_dense[0]}" if bad_dense else ""))
    # Not vacuous: the stored weights are not the dense ones.
    moved = max(float(np.abs(W - as_array(dense[f"{M}.weight"])).max()) for M, W in weights.items()) \
        if weights else 0.0
    rep.add(S, "non-trivial: dequantized weights differ from the dense ones", moved > 0,
            f"max |diff| {moved:.1e}")
    if layout == "gptq":
        ok = (qc.get("quant_method") == "gptq" and qc.get("checkpoint_format") == "gptq"
              and isinstance(qc.get("sym"), bool) and isinstance(qc.get("desc_act"), bool)
              and 0 < qc.get("damp_percent", 0) < 1 and qc.get("bits") in (2, 4, 8))
        rep.add(S, "quantization_config (gptq v1)", ok, json.dumps(
            {k: qc.get(k) for k in ("bits", "group_size", "sym", "desc_act")}))
        if zero0:
            rep.note(f"  {S}: {zero0} zero points are 0; their v1 field borrows from the next "
                     "(GPTQModel reads that back; per-field v1 readers such as old AutoGPTQ "
                     "kernels would not)")
    elif layout == "awq":
        ok = qc == {"quant_method": "awq", "zero_point": True, "group_size": gs_cfg, "bits": 4,
                    "version": "gemm", "modules_to_not_convert": None}
        rep.add(S, "quantization_config (awq gemm)", ok, json.dumps(qc)[:70])
    return T, qc, weights, nontrivial_gidx


def dense_model_from(qdir: Path, tiny: Path, weights: dict):
    """The tiny model's architecture with the unpacked weights, qdir's biases (fp16 -> fp32) and
    dense tensors: a plain fp32 transformers model."""
    import torch
    from safetensors.torch import load_file

    import hf_reference as hf

    model = hf.load_model(str(tiny))
    sd = {}
    for name, t in load_file(str(qdir / "model.safetensors")).items():
        if t.dtype.is_floating_point and not name.endswith((".scales", ".SCB")):
            sd[name] = t.float()
    for M, W in weights.items():
        sd[f"{M}.weight"] = torch.from_numpy(W.copy())
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not model.config.tie_word_embeddings]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.eval()
    return model


def run_variant(rep, cp, hf, sllm, logits, work: Path, spec: dict, text: str, have_bnb: bool):
    import make_tiny_hf

    S = spec["name"]
    vdir = work / S
    if vdir.exists():
        shutil.rmtree(vdir)
    vdir.mkdir(parents=True)
    t = spec["tiny"]
    tiny = cp.attempt(rep, f"{S}: build tiny", make_tiny_hf.build, vdir / "tiny", t["arch"],
                      t["tied"], t["kv_heads"], t["rope_scaling"], t["seed"])
    if tiny is None:
        rep.add(S, "tiny model", False, "make_tiny_hf.build failed (see above)")
        return
    tok = hf.load_tokenizer(str(tiny))
    qdir = vdir / "sllm"
    summary = cp.attempt(rep, f"{S}: sllm quantize", sllm.run,
                         ["quantize", *sllm.model_args(str(tiny)), *spec["args"], "--out",
                          str(qdir)], 600)
    rep.add(S, "sllm quantize runs", summary is not None,
            next((l.split(None, 1)[1] for l in (summary or "").splitlines()
                  if l.startswith("method")), "see the error above")[:60])
    if summary is None:
        return
    layout = spec["layout"]
    st = cp.attempt(rep, f"{S}: structure", check_structure, rep, S, layout, qdir, tiny)
    if st is None:
        rep.add(S, "structure checked", False, "check_structure raised (see the error above)")
        return
    T, qc, weights, nontrivial = st
    args = spec["args"]
    if "--desc-act" in args and args[args.index("--desc-act") + 1] == "true":
        rep.add(S, "act-order: g_idx permuted", nontrivial > 0 and qc.get("desc_act") is True,
                f"{nontrivial}/{len(weights)} modules")

    # sllm's own dequantization, as a dense directory.
    ddir = vdir / "sllm_dequantized"
    ok = cp.attempt(rep, f"{S}: sllm convert --dequantize", sllm.run,
                    ["convert", *sllm.model_args(str(qdir)), "--out", str(ddir), "--dtype",
                     "fp32", "--dequantize"], 300)
    if ok is None:
        ddir = None
        rep.add(S, "unpacked weights = sllm's dequantized", False,
                "sllm convert --dequantize failed (see the error above)")
    else:
        import numpy as np
        _, D = read_safetensors(ddir / "model.safetensors")
        same = [M for M, W in weights.items()
                if D.get(f"{M}.weight", ("",))[0] == "F32"
                and np.asarray(W, dtype=np.float32).tobytes() == D[f"{M}.weight"][2]]
        worst = 0.0
        for M, W in weights.items():
            if f"{M}.weight" in D and M not in same:
                worst = max(worst, float(np.abs(as_array(D[f"{M}.weight"]) - W).max()))
        exact = layout != "int8"  # bitsandbytes' dequant order is (q * SCB) / 127: see the notes
        rep.add(S, "unpacked weights = sllm's dequantized" + (" (bit for bit)" if exact else ""),
                len(same) == len(weights) if exact else worst <= 1e-6,
                f"{len(same)}/{len(weights)} identical" + (f", max |diff| {worst:.1e}" if worst else ""))

    # transformers on the unpacked weights.
    ref = cp.attempt(rep, f"{S}: dense model from unpacked weights", dense_model_from, qdir, tiny,
                     weights)
    if ref is None or ddir is None:
        rep.add(S, "transformers logits: unpacked = sllm's dequantized dir", False,
                "no reference model or no dequantized dir (see the errors above)")
    else:
        sm = hf.load_model(str(ddir))
        d = cp.attempt(rep, f"{S}: logits", logits_diff, ref, sm, sm.config.vocab_size)
        rep.add(S, "transformers logits: unpacked = sllm's dequantized dir",
                d is not None and d <= LOGITS_ABS_TOL, f"max |diff| {d:.1e}" if d is not None else
                "failed", f"abs {LOGITS_ABS_TOL:g}")
        del sm
    ppl_ref = cp.attempt(rep, f"{S}: hf ppl", hf.perplexity, ref, tok, text, CTX) if ref else None
    s_ppl = cp.attempt(rep, f"{S}: sllm eval", sllm.eval_ppl, str(qdir), PPL_TEXT, CTX)
    tol = INT8_PPL_REL_TOL if layout == "int8" else HF_PPL_REL_TOL
    cp.check_ppl(rep, S, f"sllm ppl ctx {CTX} = transformers on the unpacked weights", s_ppl,
                 ppl_ref, tol, "hf")
    dense = None
    # 8-bit barely moves perplexity: the weight checks above suffice there.
    bits8 = "--bits" in args and args[args.index("--bits") + 1] == "8"
    if layout != "int8" and not bits8:
        dense = cp.attempt(rep, f"{S}: sllm eval dense", sllm.eval_ppl, str(tiny), PPL_TEXT, CTX)
    if dense is not None and s_ppl is not None:
        moved = abs(s_ppl["perplexity"] - dense["perplexity"]) / dense["perplexity"]
        rep.add(S, "non-trivial: quantization moves ppl by > 10x the tolerance", moved > 10 * tol,
                f"dense {dense['perplexity']:.4f}, rel {moved:.1e}")

    # The layout alone: sllm reads its directory and writes it back unchanged.
    back = vdir / "sllm_back"
    if cp.attempt(rep, f"{S}: sllm convert", sllm.convert, str(qdir), back) is not None:
        _, B = read_safetensors(back / "model.safetensors")
        bad = [n for n in sorted(T) if B.get(n) != T[n]] + sorted(set(B) - set(T))
        bqc = json.loads((back / "config.json").read_text()).get("quantization_config")
        rep.add(S, "sllm convert writes the same tensors and config", not bad and bqc == qc,
                f"{len(T) - len(bad)}/{len(T)}" + (f"; first differing {bad[0]}" if bad else "")
                + ("" if bqc == qc else "; quantization_config differs"))
    if layout == "int8":
        if have_bnb:
            compare_with_bnb(rep, cp, hf, sllm, logits, S, vdir, tiny, qdir, T, qc)
        else:
            rep.add(S, "transformers + bitsandbytes int8", False,
                    "bitsandbytes not importable: .venv/bin/pip install -r requirements.txt")


# ----------------------------------------------------------------------------- bnb int8

def bnb_int8_with_transformers(tiny: Path, out: Path):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    m = AutoModelForCausalLM.from_pretrained(
        str(tiny), quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map="cpu",
        dtype=torch.float32)
    if out.exists():
        shutil.rmtree(out)
    m.save_pretrained(str(out))
    copy_tokenizer(tiny, out)
    return out


def load_int8_dir(d: Path):
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM

    m, info = AutoModelForCausalLM.from_pretrained(str(d), device_map="cpu", dtype=torch.float32,
                                                   output_loading_info=True)
    m.eval()
    problems = [f"{k}: {v[:3]}" for k, v in info.items() if v]
    n8 = sum(isinstance(mod, bnb.nn.Linear8bitLt) for mod in m.modules())
    return m, problems, n8


def compare_with_bnb(rep, cp, hf, sllm, logits, S, vdir, tiny, qdir, T, qc):
    import make_tiny_hf
    import torch

    import logits_io

    bdir = cp.attempt(rep, f"{S}: transformers + bnb load_in_8bit", bnb_int8_with_transformers,
                      tiny, vdir / "bnb")
    if bdir is None:
        rep.add(S, "bnb int8 reference made", False, "see the error above")
        return
    _, R = read_safetensors(bdir / "model.safetensors")
    missing, extra = sorted(set(R) - set(T)), sorted(set(T) - set(R))
    meta_bad = [n for n in set(R) & set(T) if R[n][:2] != T[n][:2]]
    rep.add(S, "bnb: same tensor names, dtypes and shapes", not missing and not extra and not meta_bad,
            f"{len(T)} tensors" + (f"; missing {missing[:2]}" if missing else "")
            + (f"; extra {extra[:2]}" if extra else "") + (f"; differ {meta_bad[:2]}" if meta_bad else ""))
    quant = [n for n in R if n.endswith((".SCB", ".weight_format")) or R[n][0] == "I8"]
    bad_q = [n for n in quant if T.get(n) != R[n]]
    bad_d = [n for n in R if n not in quant and T.get(n) != R[n]]
    rep.add(S, "bnb: int8 weights, SCB, weight_format bit-identical", not bad_q,
            f"{len(quant) - len(bad_q)}/{len(quant)}" + (f"; first differing {bad_q[0]}" if bad_q else ""))
    rep.add(S, "bnb: dense tensors identical", not bad_d, f"{len(R) - len(quant) - len(bad_d)}/"
            f"{len(R) - len(quant)}" + (f"; first differing {bad_d[0]}" if bad_d else ""))
    rqc = json.loads((bdir / "config.json").read_text()).get("quantization_config") or {}
    diff = sorted(k for k in set(rqc) | set(qc) if rqc.get(k, "<absent>") != qc.get(k, "<absent>"))
    rep.add(S, "bnb: quantization_config equal", not diff,
            f"{len(rqc)} keys equal" if not diff else "; ".join(
                f"{k}: sllm {qc.get(k, '<absent>')!r} vs bnb {rqc.get(k, '<absent>')!r}" for k in diff)[:200])
    cdir = vdir / "bnb_via_sllm"
    if cp.attempt(rep, f"{S}: sllm convert bnb dir", sllm.convert, str(bdir), cdir) is not None:
        _, C = read_safetensors(cdir / "model.safetensors")
        bad = [n for n in sorted(R) if C.get(n) != R[n]] + sorted(set(C) - set(R))
        rep.add(S, "bnb dir -> sllm load -> sllm save: byte-identical tensors", not bad,
                f"{len(R) - len(bad)}/{len(R)}" + (f"; first differing {bad[0]}" if bad else ""))
    loaded = cp.attempt(rep, f"{S}: transformers loads sllm dir", load_int8_dir, qdir)
    n_lin = 7 * make_tiny_hf.LAYERS
    if loaded is None:
        rep.add(S, "transformers loads sllm's dir", False, "see the error above")
        return
    sm, problems, n8 = loaded
    rep.add(S, "transformers loads sllm's dir cleanly", not problems and n8 == n_lin,
            f"{n8}/{n_lin} Linear8bitLt" + (f"; {'; '.join(problems)}" if problems else ""))
    bm, bproblems, bn8 = load_int8_dir(bdir)
    rep.add(S, "transformers loads bnb's dir cleanly", not bproblems and bn8 == n_lin,
            f"{bn8}/{n_lin} Linear8bitLt" + (f"; {'; '.join(bproblems)}" if bproblems else ""))
    d = cp.attempt(rep, f"{S}: logits", logits_diff, sm, bm, sm.config.vocab_size)
    rep.add(S, "transformers logits: sllm dir = bnb dir", d is not None and d == 0.0,
            f"max |diff| {d:.1e}" if d is not None else "failed", "exact")
    # The same int8 weights (bnb's directory) through bnb's CPU Linear8bitLt and sllm's kernels.
    tok = hf.load_tokenizer(str(tiny))
    b_ppl = cp.attempt(rep, f"{S}: bnb ppl", hf.perplexity, bm, tok, PPL_TEXT.read_text(), CTX)
    s_ppl = cp.attempt(rep, f"{S}: sllm eval bnb dir", sllm.eval_ppl, str(bdir), PPL_TEXT, CTX)
    cp.check_ppl(rep, S, "sllm ppl of bnb's dir = transformers + bnb Linear8bitLt (CPU)", s_ppl,
                 b_ppl, BNB_INT8_PPL_REL_TOL, "bnb")
    # The model's outputs on token sequences (1 to 64 tokens: rows on sllm's int8 kernel and its
    # int8 GEMM path), sllm_logits vs transformers + bnb.
    g = torch.Generator().manual_seed(1)
    vocab = bm.config.vocab_size
    seqs = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (1, 3, 17, 64)]
    ref = cp.attempt(rep, f"{S}: bnb logits", logits_io.hf_logits, bm, seqs)
    got = cp.attempt(rep, f"{S}: sllm_logits bnb dir", logits, str(bdir), None, seqs, vocab)
    d = logits_io.max_diff(got, ref) if ref is not None and got is not None else None
    rep.add(S, "sllm logits of bnb's dir = transformers + bnb Linear8bitLt", d is not None and
            d <= BNB_INT8_LOGITS_ABS_TOL, f"max |diff| {d:.2e}" if d is not None else "failed",
            f"abs {BNB_INT8_LOGITS_ABS_TOL:g}")


def main(argv=None) -> int:
    ap = cp.common_parser("sllm GPTQ/AWQ/int8 checkpoints vs the layouts")
    ap.add_argument("--only", default=None, help="run the variants whose name contains this")
    import logits_io
    parsed = logits_io.parse_args(ap, argv)
    if parsed is None:
        return 2
    a, binary, logits_bin = parsed

    import hf_reference as hf
    import torch
    import transformers

    try:
        import bitsandbytes
        have_bnb, bnb_version = True, bitsandbytes.__version__
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
        have_bnb, bnb_version = False, f"not importable ({type(e).__name__})"
    cp.torch_setup(a.threads)
    rep = cp.Report()

    def body(work: Path):
        sllm = cp.Sllm(str(binary), work, a.threads)
        import logits_io
        logits = logits_io.SllmLogits(str(logits_bin), work, a.threads)
        rep.note(f"transformers {transformers.__version__}, torch {torch.__version__}, "
                 f"bitsandbytes {bnb_version}; work files in {work}")
        rep.add("setup", f"bitsandbytes is {BNB_VERSION} (requirements.txt)",
                bnb_version == BNB_VERSION, bnb_version)
        text = PPL_TEXT.read_text(encoding="utf-8")
        for spec in VARIANTS:
            if a.only and a.only not in spec["name"]:
                continue
            cp.attempt(rep, spec["name"], run_variant, rep, cp, hf, sllm, logits, work, spec, text,
                       have_bnb)

    return cp.run_in_work_dir(rep, a.out_dir, "sllm_quant_", body)

if __name__ == "__main__":
    sys.exit(main())
