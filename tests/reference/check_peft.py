#!/usr/bin/env python3
"""LoRA adapters round trip between sllm and Hugging Face PEFT, on a tiny random llama model.

    check_peft.py --sllm build/sllm [--sllm-logits build/tests/reference/sllm_logits]
                  [--out-dir DIR] [--threads N] [--steps 2]

1. PEFT -> sllm. PEFT (fp32, CPU) makes LoRA adapters over a tiny model from make_tiny_hf.py
   (llama, tied embeddings, 2 KV heads) with non-zero B (init_lora_weights=False) and saves
   them with save_pretrained:
     "all7"       r=4, alpha=8, q,k,v,o,gate,up,down_proj  (scale alpha/r = 2)
     "rslora-qv"  r=8, alpha=16, use_rslora, q_proj,v_proj  (scale alpha/sqrt(r) = 5.66)
   For each: `sllm eval --model TINY --adapter DIR --ppl tests/data/ppl_en.txt --ctx 64 --json`
   against PEFT's perplexity with the same protocol (hf_reference.perplexity): relative
   difference < 1e-5 and the same token counts. For "all7" also `sllm merge --model TINY
   --adapter DIR --out MERGED`: transformers loads MERGED with no missing or unexpected
   weights, its logits match PEFT's on four sequences (max |diff| < 1e-4), and sllm's
   perplexity on MERGED matches the adapter's (1e-5 relative).
2. sllm -> PEFT. `sllm sft` trains a LoRA adapter (r=4, alpha=8, all-linear) on the tiny model
   for --steps optimizer steps over a small generated JSONL. PeftModel.from_pretrained loads
   runs/<name>/adapter over the tiny model: the file holds exactly the tensors PEFT expects,
   some lora_B is non-zero (training moved it), PEFT's perplexity matches `sllm eval
   --adapter` (1e-5 relative), and the "trainable params: N || all params: M || trainable%: P"
   line sllm printed matches PEFT's print_trainable_parameters for the same LoRA config.
3. Logits. sllm's logits with an adapter applied (the `sllm_logits` test binary: the model and
   adapter loaded as `sllm eval --adapter` loads them, full-sequence forward on four token
   sequences) against PEFT's on the same base and adapter, fp32: max |diff| <= 1e-4 for both
   PEFT adapters of 1. and the `sllm sft` adapter of 2.; each adapter must move PEFT's logits by
   more than 10x that tolerance from the base model's.
4. QLoRA. `sllm quantize --method nf4 --double-quant true` of the tiny model is the base. The
   reference is transformers + PEFT over that checkpoint's weights dequantized by bitsandbytes
   (check_bnb_layout.reference_dense_model: bitsandbytes' dequantize_blockwise for the nested
   absmax and its generic 4-bit dequantization, code[q] * absmax per block). Checked the same
   way, max |logits diff| <= 1e-4: the NF4 base alone, a PEFT-made adapter with non-zero B
   (r 4, all 7 projections) applied by sllm, and an adapter trained by `sllm qlora-train`
   (--steps steps) loaded into PEFT.

Prints a table and exits 1 if any check fails (2 on bad usage), as check_parity.py does.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import check_parity as cp  # noqa: E402  (Report, attempt, check_ppl, Sllm, parse_json_output)
import logits_io  # noqa: E402

PPL_TEXT = REPO / "tests" / "data" / "ppl_en.txt"
CTX = 64
PPL_REL_TOL = 1e-5      # same weights and adapter in fp32; only kernels and summation order differ
LOGITS_ABS_TOL = 1e-4   # merged weights (W + s*B@A) vs PEFT's unmerged x@W + s*(x@A)@B
ALL7 = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TINY = {"arch": "llama", "tied": True, "kv_heads": 2, "rope_scaling": "none", "seed": 21}
ADAPTERS = [
    {"name": "all7", "r": 4, "alpha": 8, "targets": ALL7, "rslora": False, "seed": 31, "merge": True},
    {"name": "rslora-qv", "r": 8, "alpha": 16, "targets": ["q_proj", "v_proj"], "rslora": True,
     "seed": 32, "merge": False},
]
# The list form: sllm's config schema has a list default for lora.target_modules, so the list
# ["all-linear"] is what passes its type check (PEFT takes the bare string).
SFT_LORA = {"r": 4, "alpha": 8, "target_modules": ["all-linear"]}
TRAINABLE_RE = re.compile(r"trainable params:\s*([\d,]+)\s*\|\|\s*all params:\s*([\d,]+)\s*\|\|"
                          r"\s*trainable%:\s*([0-9.eE+-]+)")
LOGIT_SEQS = 4
# sllm's logits with an adapter vs PEFT's (fp32, unmerged on both sides; the NF4 base is
# dequantized to the same fp32 weights on both sides, so only summation order differs)
ADAPTER_LOGITS_ABS_TOL = 1e-4
QLORA_ADAPTER = {"name": "qlora-all7", "r": 4, "alpha": 8, "targets": ALL7, "rslora": False,
                 "seed": 33}


# ----------------------------------------------------------------------------- sllm driver

class Sllm(cp.Sllm):
    def run_all(self, args: list[str], timeout: float, env: dict | None = None) -> tuple[str, str]:
        """(stdout, stderr) of a successful run; SllmError otherwise."""
        cmd = [self.bin, *args]
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=REPO, env=env)
        except subprocess.TimeoutExpired:
            raise cp.SllmError(f"timed out after {timeout:.0f} s: {' '.join(map(str, cmd))[:300]}")
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        if p.returncode != 0:
            raise cp.SllmError(f"exit {p.returncode}: {' '.join(map(str, cmd))[:300]}\n    "
                               + (err.strip() or out.strip())[-1500:].replace("\n", "\n    "))
        return out, err

    def eval_ppl_adapter(self, model: str, adapter: str | None, text: Path, ctx: int) -> dict:
        args = ["eval", *self.model_args(model)]
        if adapter:
            args += ["--adapter", adapter]
        out = self.run(args + ["--ppl", str(text), "--ctx", str(ctx), "--json"], timeout=300)
        j = cp.parse_json_output(out)
        j = j[-1] if isinstance(j, list) else j
        if "perplexity" not in j and "ppl" in j:  # either key name is accepted
            j = {**j, "perplexity": j["ppl"]}
        return j

    def merge(self, model: str, adapter: str, out: Path) -> Path:
        if out.exists():
            shutil.rmtree(out)
        self.run(["merge", *self.model_args(model), "--adapter", adapter, "--out", str(out)],
                 timeout=300)
        return out

    def sft(self, config: Path, command: str = "sft") -> str:
        env = dict(os.environ)
        if self.threads > 0:  # the config's "threads" sets it too; OpenMP reads this at start
            env["OMP_NUM_THREADS"] = str(self.threads)
        # info level: the "trainable params" line is an info log line
        out, err = self.run_all([command, "--config", str(config), "--log-level", "info"],
                                timeout=400, env=env)
        return out + "\n" + err


# ----------------------------------------------------------------------------- PEFT side

def make_peft_adapter(base_dir: Path, spec: dict, out: Path, base=None):
    """A PEFT LoRA adapter with random A and B over the tiny model (or over `base`, a model of
    the same architecture), saved to `out`. Returns the PeftModel (eval mode, fp32)."""
    import hf_reference as hf
    import torch
    from peft import LoraConfig, get_peft_model

    base = base if base is not None else hf.load_model(str(base_dir))
    cfg = LoraConfig(r=spec["r"], lora_alpha=spec["alpha"], lora_dropout=0.0,
                     target_modules=list(spec["targets"]), use_rslora=spec["rslora"],
                     init_lora_weights=False, bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(spec["seed"])
    pm = get_peft_model(base, cfg)
    pm.eval()
    if out.exists():
        shutil.rmtree(out)
    pm.save_pretrained(str(out))
    if not (out / "adapter_model.safetensors").is_file():
        raise RuntimeError(f"{out}: save_pretrained wrote no adapter_model.safetensors")
    return pm


def load_peft_adapter(base_dir: Path, adapter_dir: Path, base=None):
    """PeftModel.from_pretrained over a fresh copy of the tiny model (or over `base`), plus a
    check of the adapter file's tensor names against the ones PEFT expects:
    (model, missing, unexpected)."""
    import hf_reference as hf
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors import safe_open

    base = base if base is not None else hf.load_model(str(base_dir))
    pm = PeftModel.from_pretrained(base, str(adapter_dir))
    pm.eval()
    expected = set(get_peft_model_state_dict(pm).keys())
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        present = set(f.keys())
    return pm, sorted(expected - present), sorted(present - expected)


def lora_b_max(adapter_dir: Path) -> float:
    from safetensors.torch import load_file
    sd = load_file(str(adapter_dir / "adapter_model.safetensors"))
    bs = [float(v.abs().max()) for k, v in sd.items() if ".lora_B." in k]
    return max(bs) if bs else float("nan")


def peft_trainable(base_dir: Path, lora: dict) -> tuple[int, int]:
    """PEFT's (trainable, all) parameter counts for this LoRA config over the tiny model
    (what print_trainable_parameters prints)."""
    import hf_reference as hf
    from peft import LoraConfig, get_peft_model

    base = hf.load_model(str(base_dir))
    targets = lora["target_modules"]
    if targets == ["all-linear"]:
        targets = "all-linear"  # PEFT wants the bare string
    cfg = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=0.0,
                     target_modules=targets, bias="none", task_type="CAUSAL_LM")
    pm = get_peft_model(base, cfg)
    return tuple(int(x) for x in pm.get_nb_trainable_parameters())


def merged_logits_diff(pm, merged_dir: Path, seqs: list[list[int]]) -> tuple[float, str]:
    """max |logits(PEFT) - logits(transformers on the merged dir)| over `seqs`, and a note
    about missing/unexpected weights when the merged directory is not a clean HF model."""
    import hf_reference as hf
    import torch
    from transformers import AutoModelForCausalLM

    hf._quiet_transformers()
    merged, info = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32,
                                                        output_loading_info=True)
    merged.eval()
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys")}
    note = "; ".join(f"{k}: {sorted(v)[:4]}" for k, v in bad.items())
    d = 0.0
    with torch.no_grad():
        for ids in seqs:
            a = hf.logits_of(pm, ids)
            b = hf.logits_of(merged, ids)
            if a.shape != b.shape:
                return float("inf"), f"shapes {tuple(a.shape)} vs {tuple(b.shape)}"
            d = max(d, float((a - b).abs().max()))
    return d, note


def logit_sequences(tok) -> list[list[int]]:
    import hf_reference as hf
    ids = hf.with_bos(tok, hf.encode_plain(tok, PPL_TEXT.read_text(encoding="utf-8")))
    step = max(1, (len(ids) - CTX) // LOGIT_SEQS)
    seqs = [ids[i * step:i * step + CTX] for i in range(LOGIT_SEQS - 1)]
    seqs.append(hf.with_bos(tok, hf.encode_plain(tok, "The meeting is moved to Tuesday at 2pm.")))
    return seqs


# ----------------------------------------------------------------------------- sft inputs

def write_sft_data(path: Path, n: int = 24) -> None:
    """A small deterministic prompt/completion set (plain text the tiny tokenizer covers)."""
    words = ["bread", "river", "market", "window", "garden", "letter", "winter", "paper",
             "station", "kitchen", "morning", "harbor"]
    rows = []
    for i in range(n):
        a, b = words[i % len(words)], words[(i * 5 + 3) % len(words)]
        if i % 3 == 0:
            rows.append({"prompt": f"Repeat the word: {a}", "completion": a})
        elif i % 3 == 1:
            rows.append({"prompt": f"Which word comes first, {a} or {b}?",
                         "completion": min(a, b)})
        else:
            rows.append({"prompt": f"Join {a} and {b} with a dash.", "completion": f"{a}-{b}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_sft_config(path: Path, tiny: Path, data: Path, out_dir: Path, name: str, steps: int,
                     threads: int, quant: dict | None = None):
    cfg = {
        "model": str(tiny),
        "threads": threads,
        "run_name": name,
        "output_dir": str(out_dir),
        "seed": 0,
        "data": {"train": str(data), "format": "prompt_completion", "max_seq_length": 128},
        "lora": {"r": SFT_LORA["r"], "alpha": SFT_LORA["alpha"], "dropout": 0.0,
                 "target_modules": SFT_LORA["target_modules"]},
        # lr is high so that two steps move lora_B well away from its zero init (Adam moves
        # each weight by about lr per step), enough for the adapter to change perplexity.
        "train": {"max_steps": steps, "batch_size": 2, "grad_accum": 1, "lr": 0.05,
                  "warmup_ratio": 0.0, "log_every": 1},
    }
    if quant is not None:
        cfg["quant"] = quant
    path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- suites

def non_trivial(rep: cp.Report, suite: str, ppl: dict | None, base: dict | None):
    """The adapter must change perplexity by far more than the tolerance, or a loader that
    ignores it would pass. (Measured on "all7": zeroing lora_B of any one module of one layer
    moves perplexity by >= 7e-4 relative.)"""
    if ppl is None or base is None:
        return
    rel = abs(ppl["perplexity"] - base["perplexity"]) / base["perplexity"]
    rep.add(suite, "adapter changes ppl (non-trivial test)", rel > 10 * PPL_REL_TOL,
            f"peft {ppl['perplexity']:.4f} vs base {base['perplexity']:.4f} (rel {rel:.2e})",
            f"rel > {10 * PPL_REL_TOL:g}")


def check_adapter_logits(rep: cp.Report, S: str, logits: logits_io.SllmLogits, model: str,
                         adapter: str, pm, seqs: list[list[int]], base_ref: list | None):
    """sllm's logits of model + adapter vs the PeftModel pm's; base_ref: the reference logits
    of the base alone, to show the adapter matters."""
    vocab = pm.get_base_model().config.vocab_size
    ref = cp.attempt(rep, f"{S}: peft logits", logits_io.hf_logits, pm, seqs)
    got = cp.attempt(rep, f"{S}: sllm_logits", logits, model, adapter, seqs, vocab)
    if ref is None or got is None:
        rep.add(S, "sllm logits (adapter applied) = PEFT logits", False,
                "no result (see the error above)", f"abs {ADAPTER_LOGITS_ABS_TOL:g}")
        return
    d = logits_io.max_diff(got, ref)
    rep.add(S, "sllm logits (adapter applied) = PEFT logits", d <= ADAPTER_LOGITS_ABS_TOL,
            f"max |diff| {d:.2e} over {len(seqs)} sequences", f"abs {ADAPTER_LOGITS_ABS_TOL:g}")
    if base_ref is None:
        rep.add(S, "adapter moves the logits (non-trivial test)", False, "no base logits")
        return
    moved = logits_io.max_diff(ref, base_ref)
    rep.add(S, "adapter moves the logits (non-trivial test)", moved > 10 * ADAPTER_LOGITS_ABS_TOL,
            f"max |peft - base| {moved:.2e}", f"> {10 * ADAPTER_LOGITS_ABS_TOL:g}")


def check_base_logits(rep: cp.Report, S: str, logits: logits_io.SllmLogits, model: str, ref_model,
                      seqs: list[list[int]]) -> list | None:
    """sllm's logits of the base alone vs ref_model's (the reference the adapters build on);
    returns the reference logits."""
    ref = cp.attempt(rep, f"{S}: hf logits base", logits_io.hf_logits, ref_model, seqs)
    got = cp.attempt(rep, f"{S}: sllm_logits base", logits, model, None, seqs,
                     ref_model.config.vocab_size)
    ok = ref is not None and got is not None
    d = logits_io.max_diff(got, ref) if ok else float("nan")
    rep.add(S, "base alone: sllm logits = reference logits", ok and d <= ADAPTER_LOGITS_ABS_TOL,
            f"max |diff| {d:.2e}" if ok else "no result (see the error above)",
            f"abs {ADAPTER_LOGITS_ABS_TOL:g}")
    return ref


def peft_to_sllm(rep: cp.Report, sllm: Sllm, work: Path, tiny: Path, tok, text: str,
                 logits: logits_io.SllmLogits, seqs: list[list[int]], base_logits: list | None):
    """Returns the base model's HF perplexity (or None)."""
    import hf_reference as hf

    base_ppl = None
    m = cp.attempt(rep, "hf load tiny", hf.load_model, str(tiny))
    if m is not None:
        base_ppl = cp.attempt(rep, "hf ppl base", hf.perplexity, m, tok, text, CTX)
    del m
    for spec in ADAPTERS:
        S = f"peft->sllm/{spec['name']}"
        adir = work / f"peft_{spec['name']}"
        pm = cp.attempt(rep, f"peft make {spec['name']}", make_peft_adapter, tiny, spec, adir)
        if pm is None:
            rep.add(S, "PEFT adapter created", False, "see the error above")
            continue
        check_adapter_logits(rep, S, logits, str(tiny), str(adir), pm, seqs, base_logits)
        p_ppl = cp.attempt(rep, f"peft ppl {spec['name']}", hf.perplexity, pm, tok, text, CTX)
        non_trivial(rep, S, p_ppl, base_ppl)
        s_ppl = cp.attempt(rep, f"sllm eval --adapter {spec['name']}", sllm.eval_ppl_adapter,
                           str(tiny), str(adir), PPL_TEXT, CTX)
        cp.check_ppl(rep, S, f"sllm eval --adapter ppl ctx {CTX}", s_ppl, p_ppl, PPL_REL_TOL, "peft")
        if not spec["merge"]:
            continue
        mdir = work / f"merged_{spec['name']}"
        merged = cp.attempt(rep, f"sllm merge {spec['name']}", sllm.merge, str(tiny), str(adir), mdir)
        if merged is None:
            rep.add(S, "sllm merge", False, "sllm merge failed (see above)")
            continue
        res = cp.attempt(rep, f"hf logits merged {spec['name']}", merged_logits_diff, pm, mdir,
                         logit_sequences(tok))
        if res is None:
            rep.add(S, "merged: HF logits = PEFT logits", False, "no result (see the error above)")
        else:
            d, note = res
            rep.add(S, "merged: loads with no missing/unexpected weights", not note, note or "clean")
            rep.add(S, "merged: HF logits = PEFT logits", d < LOGITS_ABS_TOL,
                    f"max |diff| {d:.2e} over {LOGIT_SEQS} sequences", f"abs {LOGITS_ABS_TOL:g}")
        s_ppl_m = cp.attempt(rep, f"sllm eval merged {spec['name']}", sllm.eval_ppl_adapter,
                             str(mdir), None, PPL_TEXT, CTX)
        cp.check_ppl(rep, S, "merged: sllm ppl = adapter ppl", s_ppl_m, s_ppl, PPL_REL_TOL,
                     "adapter")
        del pm
    return base_ppl


def sllm_to_peft(rep: cp.Report, sllm: Sllm, work: Path, tiny: Path, tok, text: str, steps: int,
                 base_ppl: dict | None, logits: logits_io.SllmLogits, seqs: list[list[int]],
                 base_logits: list | None):
    import hf_reference as hf

    S = "sllm->peft/sft"
    data = work / "sft_data.jsonl"
    cfg = work / "sft_config.json"
    runs = work / "runs"
    name = "peft_roundtrip"
    write_sft_data(data)
    write_sft_config(cfg, tiny, data, runs, name, steps, sllm.threads)
    if (runs / name).exists():  # a kept --out-dir: sllm refuses a run dir with checkpoints
        shutil.rmtree(runs / name)
    out = cp.attempt(rep, "sllm sft", sllm.sft, cfg)
    adir = runs / name / "adapter"
    if out is None or not (adir / "adapter_model.safetensors").is_file():
        rep.add(S, "sllm sft wrote adapter/", False,
                "sllm sft failed (see above)" if out is None else f"no {adir}/adapter_model.safetensors")
        return
    rep.add(S, "sllm sft wrote adapter/", (adir / "adapter_config.json").is_file(),
            str(adir.relative_to(work)))

    # trainable-parameter line vs PEFT's for the same LoRA config
    counts = cp.attempt(rep, "peft trainable params", peft_trainable, tiny, SFT_LORA)
    m = TRAINABLE_RE.search(out)
    if counts is None or m is None:
        rep.add(S, "trainable params line = PEFT's", False,
                "no 'trainable params: N || all params: M || trainable%: P' line in sllm's output"
                if m is None else "PEFT count failed (see above)")
    else:
        n, tot, pct = int(m[1].replace(",", "")), int(m[2].replace(",", "")), float(m[3])
        want_pct = 100 * counts[0] / counts[1]
        ok = n == counts[0] and tot == counts[1] and abs(pct - want_pct) < 5e-4 + 1e-9
        rep.add(S, "trainable params line = PEFT's", ok,
                f"sllm {n:,}/{tot:,} ({pct:.4f}%) vs peft {counts[0]:,}/{counts[1]:,} "
                f"({want_pct:.4f}%)", "identical")

    bmax = cp.attempt(rep, "read lora_B", lora_b_max, adir)
    rep.add(S, "trained lora_B is non-zero", bmax is not None and math.isfinite(bmax) and bmax > 0,
            f"max |lora_B| {bmax:.3e}" if bmax is not None else "unreadable", "> 0")

    res = cp.attempt(rep, "peft load sllm adapter", load_peft_adapter, tiny, adir)
    if res is None:
        rep.add(S, "PeftModel.from_pretrained loads it", False, "see the error above")
        return
    pm, missing, unexpected = res
    note = "; ".join(s for s in (f"missing {missing[:3]} ({len(missing)})" if missing else "",
                                 f"unexpected {unexpected[:3]} ({len(unexpected)})" if unexpected else "")
                     if s)
    rep.add(S, "adapter tensors = the ones PEFT expects", not missing and not unexpected,
            note or "all present, none extra")
    check_adapter_logits(rep, S, logits, str(tiny), str(adir), pm, seqs, base_logits)
    p_ppl = cp.attempt(rep, "peft ppl sllm adapter", hf.perplexity, pm, tok, text, CTX)
    non_trivial(rep, S, p_ppl, base_ppl)
    s_ppl = cp.attempt(rep, "sllm eval --adapter sft", sllm.eval_ppl_adapter, str(tiny), str(adir),
                       PPL_TEXT, CTX)
    cp.check_ppl(rep, S, f"PEFT ppl = sllm eval --adapter ppl ctx {CTX}", s_ppl, p_ppl,
                 PPL_REL_TOL, "peft")


def qlora(rep: cp.Report, sllm: Sllm, work: Path, tiny: Path, steps: int,
          logits: logits_io.SllmLogits, seqs: list[list[int]]):
    """Adapters over an NF4 base, both ways; the reference runs bitsandbytes' dequantization of
    sllm's NF4 checkpoint densely in transformers + PEFT."""
    import copy

    from check_bnb_layout import reference_dense_model

    S = "qlora"
    qdir = work / "nf4"
    if qdir.exists():
        shutil.rmtree(qdir)
    made = cp.attempt(rep, "sllm quantize nf4", sllm.run,
                      ["quantize", *sllm.model_args(str(tiny)), "--method", "nf4",
                       "--double-quant", "true", "--blocksize", "64", "--out", str(qdir)], 300)
    ref = cp.attempt(rep, "bitsandbytes dequantization of the NF4 base", reference_dense_model,
                     qdir, tiny) if made is not None else None
    if ref is None:
        rep.add(S, "NF4 base and its bitsandbytes dequantization", False, "see the error above")
        return
    dense, disagree = ref
    dense.eval()
    if disagree:
        rep.note(f"  {S}: bitsandbytes' CPU dequantize_4bit differs from its generic "
                 f"dequantization on {disagree} modules (AVX-512 per-row absmax with "
                 "in_features % blocksize != 0); the generic one is the reference")
    base_ref = check_base_logits(rep, S + "/nf4-base", logits, str(qdir), dense, seqs)

    S = "peft->sllm/" + QLORA_ADAPTER["name"]
    adir = work / "peft_qlora"
    pm = cp.attempt(rep, "peft make qlora adapter", make_peft_adapter, tiny, QLORA_ADAPTER, adir,
                    copy.deepcopy(dense))
    if pm is None:
        rep.add(S, "PEFT adapter over the NF4 base", False, "see the error above")
    else:
        check_adapter_logits(rep, S, logits, str(qdir), str(adir), pm, seqs, base_ref)
        del pm

    S = "sllm->peft/qlora-train"
    data, cfg, runs, name = work / "sft_data.jsonl", work / "qlora_config.json", work / "runs", "qlora"
    write_sft_data(data)
    write_sft_config(cfg, tiny, data, runs, name, steps, sllm.threads,
                     {"type": "nf4", "double_quant": True, "blocksize": 64})
    if (runs / name).exists():
        shutil.rmtree(runs / name)
    out = cp.attempt(rep, "sllm qlora-train", sllm.sft, cfg, "qlora-train")
    tdir = runs / name / "adapter"
    res = cp.attempt(rep, "peft load qlora-train adapter", load_peft_adapter, tiny, tdir,
                     copy.deepcopy(dense)) if out is not None else None
    if res is None:
        rep.add(S, "PeftModel.from_pretrained loads it over the NF4 base", False,
                "see the error above")
        return
    pm, missing, unexpected = res
    rep.add(S, "adapter tensors = the ones PEFT expects", not missing and not unexpected,
            f"missing {missing[:3]}, unexpected {unexpected[:3]}" if missing or unexpected
            else "all present, none extra")
    check_adapter_logits(rep, S, logits, str(qdir), str(tdir), pm, seqs, base_ref)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="LoRA adapter round trip: sllm <-> Hugging Face PEFT")
    ap.add_argument("--sllm", required=True, help="path to the sllm binary")
    ap.add_argument("--sllm-logits", default=None,
                    help="path to the sllm_logits test binary (default: tests/reference/"
                         "sllm_logits next to the sllm binary)")
    ap.add_argument("--out-dir", default=None,
                    help="keep the work files here (tiny model, adapters, merged model, sft run); "
                         "default: a temporary directory, removed at the end")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads for torch here and for each sllm process (0: their default)")
    ap.add_argument("--steps", type=int, default=2, help="sllm sft optimizer steps")
    a = ap.parse_args(argv)

    binary = Path(a.sllm)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        print(f"error: sllm binary {a.sllm} not found or not executable (build it first)")
        return 2
    logits_bin = Path(a.sllm_logits) if a.sllm_logits else \
        binary.parent / "tests" / "reference" / "sllm_logits"
    if not (logits_bin.is_file() and os.access(logits_bin, os.X_OK)):
        print(f"error: {logits_bin} not found or not executable (build the sllm_logits target)")
        return 2
    if a.steps < 1:
        print("error: --steps must be >= 1")
        return 2
    rep = cp.Report()
    try:
        import peft  # noqa: F401
        import torch
    except ImportError as e:
        rep.add("setup", "import peft, torch", False, f"{e}: .venv/bin/pip install -r requirements.txt")
        rep.print_table()
        return 1
    if a.threads > 0:
        torch.set_num_threads(a.threads)

    def body(work: Path):
        import hf_reference as hf
        import make_tiny_hf

        sllm = Sllm(str(binary.resolve()), work, a.threads)
        logits = logits_io.SllmLogits(str(logits_bin.resolve()), work, a.threads)
        hf._quiet_transformers()  # no "Writing model shards" bars from save_pretrained
        rep.note(f"peft {peft.__version__}, torch {torch.__version__}; work files in {work}")
        tiny = work / "tiny"
        if tiny.exists():
            shutil.rmtree(tiny)
        built = cp.attempt(rep, "build tiny", make_tiny_hf.build, tiny, TINY["arch"], TINY["tied"],
                           TINY["kv_heads"], TINY["rope_scaling"], TINY["seed"])
        tok = cp.attempt(rep, "hf load tokenizer", hf.load_tokenizer, str(tiny)) if built else None
        if built is None or tok is None:
            rep.add("setup", "tiny model", False, "make_tiny_hf.build failed (see above)")
            return
        text = PPL_TEXT.read_text(encoding="utf-8")
        seqs = logit_sequences(tok)
        m = hf.load_model(str(tiny))
        base_logits = check_base_logits(rep, "base", logits, str(tiny), m, seqs)
        del m
        base_ppl = peft_to_sllm(rep, sllm, work, tiny, tok, text, logits, seqs, base_logits)
        sllm_to_peft(rep, sllm, work, tiny, tok, text, a.steps, base_ppl, logits, seqs,
                     base_logits)
        qlora(rep, sllm, work, tiny, a.steps, logits, seqs)

    return cp.run_in_work_dir(rep, a.out_dir, "sllm_peft_", body)

if __name__ == "__main__":
    sys.exit(main())
