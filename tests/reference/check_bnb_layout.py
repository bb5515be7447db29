#!/usr/bin/env python3
"""sllm's 4-bit checkpoints vs real bitsandbytes + transformers, file for file.

    check_bnb_layout.py --sllm build/sllm [--out-dir DIR] [--threads N]

bitsandbytes 0.50.2 (requirements.txt; its CPU backend runs here) is the reference: without it,
or with another version, the script fails (exit 1) and says how to install it.

For each variant, a tiny model from make_tiny_hf.py is quantized twice:
  bnb   transformers: from_pretrained(TINY, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=T, bnb_4bit_use_double_quant=DQ,
        bnb_4bit_compute_dtype=float32), device_map="cpu", dtype=float32), then save_pretrained
  sllm  `sllm quantize --method T --double-quant DQ --model TINY --out DIR`
and compared:
  - model.safetensors: the same tensor names, dtypes and shapes; every quantized tensor
    (packed weight, absmax, quant_map, nested_absmax, nested_quant_map, quant_state JSON)
    bit-identical, and the dense ones (embeddings, norms, biases, lm_head) identical too;
  - config.json quantization_config: the same keys and values;
  - sllm loads bnb's directory and writes it back (`sllm convert`) byte for byte: the layout
    alone, independent of sllm's quantizer;
  - transformers loads sllm's directory with no missing/unexpected weights, every decoder
    Linear a bnb Linear4bit, and its logits equal the bnb-made model's;
  - `sllm eval --ppl tests/data/ppl_en.txt --ctx 64 --json` gives the same perplexity on both
    directories, and matches transformers running the weights bnb's generic dequantization
    gives (not bnb's CPU forward: see reference_dense_model);
  - `sllm info` reads sllm's directory (U8 tensors listed).
A blocksize-128 variant (transformers cannot make one: BitsAndBytesConfig has no blocksize)
compares `sllm quantize --blocksize 128` with bitsandbytes.functional.quantize_4bit directly,
then checks that transformers loads it and agrees on perplexity.

Prints a table and exits 1 if any check fails (2 on bad usage), as check_parity.py does.
"""
from __future__ import annotations

import json
import math
import shutil
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import check_parity as cp  # noqa: E402

PPL_TEXT = REPO / "tests" / "data" / "ppl_en.txt"
CTX = 64
SAME_PPL_REL_TOL = 1e-9  # sllm on two directories holding the same bytes: the same computation
HF_PPL_REL_TOL = 1e-5    # bnb-dequantized weights in transformers (fp32) vs sllm's 4-bit kernels
# transformers on two directories holding the same tensor bytes: 0, or ~5e-7 where sllm's
# config.json spells the RoPE scaling in the older keys (rope_theta + rope_scaling)
LOGITS_ABS_TOL = 1e-5
BNB_VERSION = "0.50.2"  # the reference the layouts were checked against (requirements.txt)
QUANT_SUFFIXES = (".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map")

VARIANTS = [
    # name, make_tiny_hf.build arguments, quant type, double quant
    {"name": "nf4-dq-llama", "tiny": {"arch": "llama", "tied": True, "kv_heads": 2,
                                      "rope_scaling": "none", "seed": 21},
     "type": "nf4", "dq": True},
    {"name": "fp4-llama-untied", "tiny": {"arch": "llama", "tied": False, "kv_heads": 4,
                                          "rope_scaling": "llama3", "seed": 5},
     "type": "fp4", "dq": False},
    {"name": "nf4-qwen2-bias", "tiny": {"arch": "qwen2", "tied": True, "kv_heads": 2,
                                        "rope_scaling": "none", "seed": 3},
     "type": "nf4", "dq": False},
    {"name": "fp4-dq-llama", "tiny": {"arch": "llama", "tied": True, "kv_heads": 1,
                                      "rope_scaling": "linear", "seed": 8},
     "type": "fp4", "dq": True},
]
BS128 = {"name": "nf4-dq-bs128", "tiny": VARIANTS[0]["tiny"], "type": "nf4", "dq": True,
         "blocksize": 128}


def read_safetensors(path: Path) -> tuple[dict, dict]:
    """(metadata, {name: (dtype, shape, raw bytes)}) exactly as stored."""
    b = path.read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    return meta, {k: (v["dtype"], list(v["shape"]),
                      b[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
                  for k, v in header.items()}


def is_quantized(name: str, dtype: str) -> bool:
    return (name.endswith(QUANT_SUFFIXES) or ".quant_state.bitsandbytes__" in name
            or (name.endswith(".weight") and dtype == "U8"))


def compare_files(rep, S: str, ref: dict, got: dict, ref_name: str = "bnb"):
    names_r, names_g = set(ref), set(got)
    missing, extra = sorted(names_r - names_g), sorted(names_g - names_r)
    rep.add(S, "same tensor names", not missing and not extra,
            f"{len(names_g)} tensors" + (f"; missing {missing[:3]}" if missing else "")
            + (f"; extra {extra[:3]}" if extra else ""))
    common = sorted(names_r & names_g)
    bad_meta = [n for n in common if ref[n][:2] != got[n][:2]]
    rep.add(S, "same dtypes and shapes", not bad_meta,
            "all equal" if not bad_meta else
            f"{len(bad_meta)} differ, e.g. {bad_meta[0]}: sllm {got[bad_meta[0]][:2]} vs "
            f"{ref_name} {ref[bad_meta[0]][:2]}")
    q = [n for n in common if is_quantized(n, ref[n][0])]
    d = [n for n in common if n not in q]
    bad_q = [n for n in q if ref[n][2] != got[n][2]]
    bad_d = [n for n in d if ref[n][2] != got[n][2]]
    kinds = sorted({n.rsplit(".weight", 1)[-1] or ".weight" for n in q})
    rep.add(S, "quantized tensors bit-identical", bool(q) and not bad_q,
            f"{len(q) - len(bad_q)}/{len(q)} ({', '.join(kinds)})"
            + (f"; first differing: {bad_q[0]}" if bad_q else ""))
    if bad_q:  # say which part of the quant state differs, for whoever debugs it
        by_kind: dict[str, int] = {}
        for n in bad_q:
            k = n.rsplit(".weight", 1)[-1] or ".weight (packed 4-bit codes)"
            by_kind[k] = by_kind.get(k, 0) + 1
        offsets = sum(1 for n in bad_q if ".quant_state." in n and
                      json.loads(ref[n][2]).get("nested_offset") != json.loads(got[n][2]).get("nested_offset"))
        rep.note(f"  {S}: differing tensors by kind: {by_kind}; nested_offset differs in {offsets}")
    if d:
        rep.add(S, "dense tensors identical", not bad_d,
                f"{len(d) - len(bad_d)}/{len(d)}" + (f"; first differing: {bad_d[0]}" if bad_d else ""))


def compare_qconfig(rep, S: str, ref: dict | None, got: dict | None):
    if ref is None or got is None:
        rep.add(S, "quantization_config equal", False, f"bnb {ref is not None}, sllm {got is not None}")
        return
    diff = sorted(k for k in set(ref) | set(got) if ref.get(k, "<absent>") != got.get(k, "<absent>"))
    rep.add(S, "quantization_config equal", not diff,
            f"{len(ref)} keys equal" if not diff else
            "; ".join(f"{k}: sllm {got.get(k, '<absent>')!r} vs bnb {ref.get(k, '<absent>')!r}"
                      for k in diff)[:300])


def copy_tokenizer(src: Path, dst: Path):
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
              "special_tokens_map.json"):
        if (src / f).exists():
            shutil.copy2(src / f, dst / f)


def bnb_quantize_with_transformers(tiny: Path, out: Path, qtype: str, dq: bool):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    cfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=qtype,
                             bnb_4bit_use_double_quant=dq, bnb_4bit_compute_dtype=torch.float32)
    m = AutoModelForCausalLM.from_pretrained(str(tiny), quantization_config=cfg, device_map="cpu",
                                             dtype=torch.float32)
    if out.exists():
        shutil.rmtree(out)
    m.save_pretrained(str(out))
    copy_tokenizer(tiny, out)
    return out


def load_bnb_dir(d: Path):
    """transformers model of a 4-bit dir, and a note on anything unclean about the load."""
    import bitsandbytes as bnb
    import torch
    from transformers import AutoModelForCausalLM

    m, info = AutoModelForCausalLM.from_pretrained(str(d), device_map="cpu", dtype=torch.float32,
                                                   output_loading_info=True)
    m.eval()
    problems = [f"{k}: {v[:3]}" for k, v in info.items() if v]
    n4 = 0
    for mod in m.modules():
        if isinstance(mod, bnb.nn.Linear4bit):
            n4 += 1
            # On CPUs with AVX512-BF16, bnb 0.50.2 repacks a Linear4bit on its first forward into
            # a CPU GEMM layout with bf16 absmax (lossy, and it needs in % blocksize == 0 and
            # out % 32 == 0, which the tiny shapes break). Keep bnb's plain path: exact
            # dequantize_4bit + fp32 matmul, the reference the comparisons below want.
            mod.support_avx512bf16_for_cpu = False
    return m, problems, n4


def reference_dense_model(qdir: Path, tiny: Path):
    """The reference for perplexity: the tiny model's architecture with every 4-bit Linear of
    qdir dequantized by bitsandbytes' generic code (code[q] * absmax[i // blocksize], the
    semantics of its CUDA and scalar CPU kernels), run as a dense fp32 transformers model.

    Not bnb's Linear4bit forward itself: on CPUs with AVX-512, bitsandbytes 0.50.2's
    dequantize_4bit reads absmax per row (absmax[row * (in // blocksize) + col // blocksize]),
    which is wrong when in_features % blocksize != 0 (the tiny models' down_proj has in 160).
    Returns (model, number of modules where bnb's own CPU dequantize_4bit disagrees)."""
    import bitsandbytes.functional as F
    import torch
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.functional import QuantState
    from safetensors.torch import load_file

    import hf_reference as hf

    tensors = load_file(str(qdir / "model.safetensors"))
    dense = hf.load_model(str(tiny))
    sd, disagree = {}, 0
    for name in sorted(tensors):
        for t in ("nf4", "fp4"):
            suffix = f".weight.quant_state.bitsandbytes__{t}"
            if not name.endswith(suffix):
                continue
            w = name[: -len(suffix)] + ".weight"
            qs = QuantState.from_dict({k[len(w) + 1:]: v for k, v in tensors.items()
                                       if k.startswith(w + ".")}, device=torch.device("cpu"))
            absmax = qs.absmax
            if qs.nested:
                absmax = F.dequantize_blockwise(qs.absmax, qs.state2) + qs.offset
            W = _dequantize_4bit_compute(tensors[w].reshape(-1), absmax.float(), qs.code,
                                         qs.blocksize, qs.shape, torch.float32)
            disagree += not torch.equal(W, F.dequantize_4bit(tensors[w], qs))
            sd[w] = W
    missing = [k for k in sd if k not in dense.state_dict()]
    if missing:
        raise RuntimeError(f"4-bit modules the dense model does not have: {missing[:3]}")
    dense.load_state_dict(sd, strict=False)
    return dense, disagree


def logits_diff(a, b, vocab: int) -> float:
    import torch
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    with torch.no_grad():
        for n in (1, 7, 33, 64):
            ids = torch.randint(0, vocab, (1, n), generator=g)
            la = a(input_ids=ids, use_cache=False).logits.float()
            lb = b(input_ids=ids, use_cache=False).logits.float()
            worst = max(worst, float((la - lb).abs().max()))
    return worst


def reference_tensors_bs(tiny: Path, qtype: str, dq: bool, blocksize: int) -> dict:
    """What bitsandbytes stores for each decoder Linear of tiny at this blocksize, computed with
    bitsandbytes.functional.quantize_4bit (as Params4bit does), plus the dense tensors as they are."""
    import bitsandbytes.functional as F
    from safetensors.torch import load_file

    out = {}
    _, raw = read_safetensors(tiny / "model.safetensors")
    for name, w in load_file(str(tiny / "model.safetensors")).items():
        if name.startswith("model.layers.") and name.endswith("_proj.weight"):
            packed, qs = F.quantize_4bit(w.contiguous(), blocksize=blocksize,
                                         compress_statistics=dq, quant_type=qtype)
            out[name] = ("U8", list(packed.shape), packed.contiguous().numpy().tobytes())
            for k, v in qs.as_dict(packed=True).items():
                dt = {"torch.uint8": "U8", "torch.float32": "F32"}[str(v.dtype)]
                out[f"{name}.{k}"] = (dt, list(v.shape), v.contiguous().numpy().tobytes())
        else:
            out[name] = raw[name]
    return out


def run_variant(rep, cp, hf, sllm, work: Path, spec: dict, text: str):
    import make_tiny_hf

    S = spec["name"]
    bs = spec.get("blocksize", 64)
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

    sdir = vdir / "sllm"
    args = ["quantize", *sllm.model_args(str(tiny)), "--method", spec["type"], "--double-quant",
            "true" if spec["dq"] else "false", "--blocksize", str(bs), "--out", str(sdir)]
    summary = cp.attempt(rep, f"{S}: sllm quantize", sllm.run, args, 300)
    size_line = next((l for l in (summary or "").splitlines() if l.startswith("size on disk")),
                     "no summary (see above)")
    rep.add(S, "sllm quantize runs and prints its summary",
            summary is not None and "size on disk" in summary and f"blocksize {bs}" in summary,
            " ".join(size_line.split()[3:]))
    if summary is None:
        return
    _, got = read_safetensors(sdir / "model.safetensors")
    got_qc = json.loads((sdir / "config.json").read_text())["quantization_config"]

    if bs == 64:
        bdir = cp.attempt(rep, f"{S}: transformers + bnb quantize", bnb_quantize_with_transformers,
                          tiny, vdir / "bnb", spec["type"], spec["dq"])
        if bdir is None:
            rep.add(S, "bnb reference made", False, "see the error above")
            return
        _, ref = read_safetensors(bdir / "model.safetensors")
        compare_files(rep, S, ref, got)
        ref_qc = json.loads((bdir / "config.json").read_text()).get("quantization_config")
        compare_qconfig(rep, S, ref_qc, got_qc)
        # The layout alone, whatever sllm's quantizer computes: sllm loads bnb's directory and
        # writes it back (sllm convert); every tensor must come out as bnb wrote it.
        cdir = vdir / "bnb_via_sllm"
        conv = cp.attempt(rep, f"{S}: sllm convert bnb dir", sllm.convert, str(bdir), cdir)
        if conv is None:
            rep.add(S, "sllm convert of the bnb dir", False, "see the error above")
        else:
            _, back = read_safetensors(cdir / "model.safetensors")
            same = sorted(ref) == sorted(back) and all(ref[n] == back[n] for n in ref)
            bad = [n for n in sorted(ref) if n not in back or ref[n] != back[n]]
            rep.add(S, "bnb dir -> sllm load -> sllm save: byte-identical tensors", same,
                    f"{len(ref) - len(bad)}/{len(ref)}" + (f"; first differing {bad[0]}" if bad else ""))
    else:
        bdir = None
        ref = cp.attempt(rep, f"{S}: bnb.functional.quantize_4bit", reference_tensors_bs, tiny,
                         spec["type"], spec["dq"], bs)
        if ref is not None:
            compare_files(rep, S, ref, got, "bnb.functional")
        rep.add(S, "quantization_config says the type and double quant",
                got_qc.get("bnb_4bit_quant_type") == spec["type"]
                and got_qc.get("bnb_4bit_use_double_quant") == spec["dq"]
                and got_qc.get("quant_method") == "bitsandbytes", json.dumps(got_qc)[:60])

    # transformers reads sllm's directory as a bitsandbytes model.
    loaded = cp.attempt(rep, f"{S}: transformers loads sllm dir", load_bnb_dir, sdir)
    n_lin = 7 * make_tiny_hf.LAYERS
    if loaded is None:
        rep.add(S, "transformers loads sllm's dir", False, "see the error above")
        return
    sm, problems, n4 = loaded
    rep.add(S, "transformers loads sllm's dir cleanly", not problems and n4 == n_lin,
            f"{n4}/{n_lin} Linear4bit" + (f"; {'; '.join(problems)}" if problems else ""))
    if bdir is not None:
        bm, bproblems, bn4 = load_bnb_dir(bdir)
        rep.add(S, "transformers loads bnb's dir cleanly", not bproblems and bn4 == n_lin,
                f"{bn4}/{n_lin} Linear4bit" + (f"; {'; '.join(bproblems)}" if bproblems else ""))
        d = cp.attempt(rep, f"{S}: logits", logits_diff, sm, bm, sm.config.vocab_size)
        rep.add(S, "transformers logits: sllm dir = bnb dir", d is not None and d <= LOGITS_ABS_TOL,
                f"max |diff| {d:.1e}" if d is not None else "failed", f"abs {LOGITS_ABS_TOL:g}")
        del bm
    del sm
    # Perplexity reference: bnb's dequantization of the bnb directory (of sllm's own at other
    # blocksizes), run densely by transformers.
    ref = cp.attempt(rep, f"{S}: reference model", reference_dense_model, bdir or sdir, tiny)
    ppl_ref = None
    if ref is not None:
        rm, disagree = ref
        if disagree:
            rep.note(f"  {S}: bitsandbytes' CPU dequantize_4bit differs from its generic "
                     f"dequantization on {disagree} modules (AVX-512 per-row absmax with "
                     f"in_features % blocksize != 0); the generic one is the reference")
        ppl_ref = cp.attempt(rep, f"{S}: hf ppl reference", hf.perplexity, rm, tok, text, CTX)
        del rm

    s_ppl = cp.attempt(rep, f"{S}: sllm eval sllm dir", sllm.eval_ppl, str(sdir), PPL_TEXT, CTX)
    b_ppl = None
    if bdir is not None:
        b_ppl = cp.attempt(rep, f"{S}: sllm eval bnb dir", sllm.eval_ppl, str(bdir), PPL_TEXT, CTX)
        cp.check_ppl(rep, S, f"sllm ppl ctx {CTX}: sllm dir = bnb dir", s_ppl, b_ppl,
                     SAME_PPL_REL_TOL, "bnb dir")
    # The reference is made from the same directory sllm reads here (bnb's when there is one).
    cp.check_ppl(rep, S, f"sllm ppl of {'bnb' if bdir else 'sllm'} dir = transformers on bnb's "
                 "dequantization", b_ppl if bdir else s_ppl, ppl_ref, HF_PPL_REL_TOL, "hf")
    dense = cp.attempt(rep, f"{S}: sllm eval dense", sllm.eval_ppl, str(tiny), PPL_TEXT, CTX)
    if dense is not None and s_ppl is not None:
        moved = abs(s_ppl["perplexity"] - dense["perplexity"]) / dense["perplexity"]
        rep.add(S, "non-trivial: 4 bits move ppl by > 10x the hf tolerance",
                moved > 10 * HF_PPL_REL_TOL, f"dense {dense['perplexity']:.4f}, rel {moved:.1e}")
    info = cp.attempt(rep, f"{S}: sllm info", sllm.run,
                      ["info", *sllm.model_args(str(sdir)), "--json"], 120)
    types = cp.parse_json_output(info).get("file_tensor_types", {}) if info else {}
    rep.add(S, "sllm info reads the 4-bit dir", "U8" in types, json.dumps(types))


def main(argv=None) -> int:
    ap = cp.common_parser("sllm 4-bit checkpoints vs bitsandbytes/transformers")
    a = ap.parse_args(argv)
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
        print(f"FAIL: bitsandbytes, the reference of this test, cannot be imported "
              f"({type(e).__name__}: {e}). Install the pinned requirements: "
              "`.venv/bin/pip install -r requirements.txt` (or run scripts/setup.sh)")
        return 1
    binary = cp.executable(a.sllm)
    if binary is None:
        return 2

    import hf_reference as hf
    import torch
    import transformers

    cp.torch_setup(a.threads)
    rep = cp.Report()

    def body(work: Path):
        sllm = cp.Sllm(str(binary), work, a.threads)
        rep.note(f"bitsandbytes {bitsandbytes.__version__}, transformers "
                 f"{transformers.__version__}, torch {torch.__version__}; work files in {work}")
        rep.add("setup", f"bitsandbytes is {BNB_VERSION} (requirements.txt)",
                bitsandbytes.__version__ == BNB_VERSION, bitsandbytes.__version__)
        text = PPL_TEXT.read_text(encoding="utf-8")
        for spec in [*VARIANTS, BS128]:
            cp.attempt(rep, spec["name"], run_variant, rep, cp, hf, sllm, work, spec, text)

    return cp.run_in_work_dir(rep, a.out_dir, "sllm_bnb_", body)

if __name__ == "__main__":
    sys.exit(main())
