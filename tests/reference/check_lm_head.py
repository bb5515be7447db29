#!/usr/bin/env python3
"""sllm's int8 output head (`sllm quantize --lm-head int8`) against bitsandbytes.

    check_lm_head.py --sllm build/sllm [--sllm-logits build/tests/reference/sllm_logits]
                     [--out-dir DIR] [--threads N]

On a tiny model with tied embeddings (make_tiny_hf.py), for `--method int8` and `--method rtn`
with `--lm-head int8`:
  - lm_head.weight (I8) and lm_head.SCB (F32) are bit for bit what bitsandbytes'
    int8_vectorwise_quant makes of the fp16 head (the tied embedding); lm_head.weight_format is
    0; the embedding is still the dense one; config.json unties the head;
  - int8: llm_int8_skip_modules does not name lm_head, and transformers + bitsandbytes load the
    directory with every Linear, the head included, a Linear8bitLt and no missing or unexpected
    weights; sllm's logits of the directory equal theirs within 1e-5 (the tolerance
    check_quant_layout.py uses for the decoder's int8 Linears);
  - rtn: quantization_config records "sllm": {"lm_head": "int8"}.
bitsandbytes must be importable (requirements.txt): without it the checks fail, never skip.
Prints a table and exits 1 if any check fails (2 on bad usage), as check_parity.py does.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import check_parity as cp  # noqa: E402

from check_bnb_layout import read_safetensors  # noqa: E402
from check_quant_layout import (BNB_INT8_LOGITS_ABS_TOL, LLAMA, as_array,  # noqa: E402
                                load_int8_dir)


def bnb_quant(embed):
    """bitsandbytes' row-wise int8 of the fp16 weight: (CB int8, SCB fp32)."""
    import bitsandbytes.functional as F
    import torch

    w = torch.from_numpy(embed.astype("float32")).to(torch.float16)
    cb, scb, _ = F.int8_vectorwise_quant(w)
    return cb.numpy(), scb.float().numpy()


def check_method(rep, sllm, logits, work: Path, tiny: Path, method: str):
    import make_tiny_hf  # noqa: F401 - the tiny model's layer count for the Linear8bitLt count
    import numpy as np
    import torch

    import logits_io

    S = f"{method} + int8 head"
    qdir = work / f"{method}_head"
    out = cp.attempt(rep, f"{S}: sllm quantize", sllm.run,
                     ["quantize", *sllm.model_args(str(tiny)), "--method", method,
                      "--lm-head", "int8", "--out", str(qdir)], 600)
    rep.add(S, "sllm quantize --lm-head int8 runs", out is not None,
            next((l.strip() for l in (out or "").splitlines() if l.startswith("lm_head")),
                 "see the error above")[:70])
    if out is None:
        return
    _, T = read_safetensors(qdir / "model.safetensors")
    _, D = read_safetensors(tiny / "model.safetensors")
    meta = {n: T[n][:2] for n in ("lm_head.weight", "lm_head.SCB", "lm_head.weight_format")
            if n in T}
    vocab, hidden = D["model.embed_tokens.weight"][1]
    want = {"lm_head.weight": ("I8", [vocab, hidden]), "lm_head.SCB": ("F32", [vocab]),
            "lm_head.weight_format": ("U8", [])}
    rep.add(S, "head tensors: dtypes and shapes", meta == want, str(meta)[:70])
    if meta != want:
        return
    rep.add(S, "weight_format 0", int(as_array(T["lm_head.weight_format"]).reshape(-1)[0]) == 0, "")
    embed = as_array(D["model.embed_tokens.weight"])
    q = cp.attempt(rep, f"{S}: bitsandbytes int8_vectorwise_quant", bnb_quant, embed)
    if q is None:
        rep.add(S, "bitsandbytes reference made", False, "see the error above")
        return
    cb, scb = q
    same_q = np.array_equal(as_array(T["lm_head.weight"]), cb)
    same_s = np.array_equal(as_array(T["lm_head.SCB"]).view(np.uint32), scb.view(np.uint32))
    rep.add(S, "int8 values = bitsandbytes int8_vectorwise_quant", same_q,
            f"{int((as_array(T['lm_head.weight']) != cb).sum())} of {cb.size} differ")
    rep.add(S, "SCB = bitsandbytes (bit for bit)", same_s, f"{scb.size} rows")
    rep.add(S, "embedding still dense, unchanged",
            T["model.embed_tokens.weight"] == D["model.embed_tokens.weight"], "")
    cfg = json.loads((qdir / "config.json").read_text())
    qc = cfg.get("quantization_config") or {}
    rep.add(S, "config: tie_word_embeddings false", cfg.get("tie_word_embeddings") is False,
            str(cfg.get("tie_word_embeddings")))
    if method != "int8":
        rep.add(S, "config: sllm.lm_head = int8", qc.get("sllm") == {"lm_head": "int8"},
                str(qc.get("sllm")))
        return
    skip = qc.get("llm_int8_skip_modules")
    rep.add(S, "config: lm_head not skipped", isinstance(skip, list) and "lm_head" not in skip,
            str(skip))
    loaded = cp.attempt(rep, f"{S}: transformers loads the dir", load_int8_dir, qdir)
    if loaded is None:
        rep.add(S, "transformers + bitsandbytes load the dir", False, "see the error above")
        return
    m, problems, n8 = loaded
    n_lin = 7 * make_tiny_hf.LAYERS + 1
    import bitsandbytes as bnb
    head_ok = isinstance(m.lm_head, bnb.nn.Linear8bitLt)
    rep.add(S, "transformers: every Linear and lm_head a Linear8bitLt",
            not problems and n8 == n_lin and head_ok,
            f"{n8}/{n_lin} Linear8bitLt" + (f"; {'; '.join(problems)}" if problems else ""))
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (1, 3, 17, 64)]
    ref = cp.attempt(rep, f"{S}: transformers logits", logits_io.hf_logits, m, seqs)
    got = cp.attempt(rep, f"{S}: sllm_logits", logits, str(qdir), None, seqs, vocab)
    d = logits_io.max_diff(got, ref) if ref is not None and got is not None else None
    rep.add(S, "sllm logits = transformers + bnb (int8 head)",
            d is not None and d <= BNB_INT8_LOGITS_ABS_TOL,
            f"max |diff| {d:.2e}" if d is not None else "failed", f"abs {BNB_INT8_LOGITS_ABS_TOL:g}")


def main(argv=None) -> int:
    ap = cp.common_parser("sllm's int8 lm_head vs bitsandbytes")
    import logits_io
    parsed = logits_io.parse_args(ap, argv)
    if parsed is None:
        return 2
    a, binary, logits_bin = parsed
    cp.torch_setup(a.threads)
    rep = cp.Report()

    def body(work: Path):
        import make_tiny_hf

        import logits_io
        sllm = cp.Sllm(str(binary), work, a.threads)
        logits = logits_io.SllmLogits(str(logits_bin), work, a.threads)
        t = LLAMA
        tiny = cp.attempt(rep, "build tiny", make_tiny_hf.build, work / "tiny", t["arch"],
                          t["tied"], t["kv_heads"], t["rope_scaling"], t["seed"])
        if tiny is None:
            rep.add("setup", "tiny model", False, "make_tiny_hf.build failed (see above)")
            return
        for method in ("int8", "rtn"):
            cp.attempt(rep, method, check_method, rep, sllm, logits, work, tiny, method)

    return cp.run_in_work_dir(rep, a.out_dir, "sllm_lm_head_", body)


if __name__ == "__main__":
    sys.exit(main())
