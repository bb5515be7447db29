"""sllm's GPTQ against an independent GPTQ (gptq_reference.py) and against RTN, on the first
decoder layers of a real model with real calibration data.

sllm_gptq_layers runs sllm's quantize driver (true-sequential, as `sllm quantize --method gptq`)
on the first --layers layers and writes each Linear's weight W, the Hessian H it was given, its
codes / scales / zeros, and sllm's RTN of W. For every Linear this script requires:

  1. sllm's RTN codes, scales and zeros equal the reference RTN's exactly;
  2. the reference GPTQ on the same (W, H) reaches the same layer loss ||WX - QX||^2 as sllm's
     within LOSS_RTOL (both sweep in fp32, so an occasional code differs after a rounding tie
     and the error feedback then follows a slightly different path; the codes' agreement is
     printed);
  3. sllm's GPTQ loss is not above RTN's (same bits, group, symmetry) on the calibration data:
     GPTQ minimises exactly this loss, so a Linear where it loses to RTN is a defect;
  4. the Hessian sllm collected for the first Linear (layer 0 q,k,v) equals 2/N X X^T with X
     computed here from the GGUF file itself (gguf's dequantized token embeddings of the dumped
     calibration ids, RMS-normalised with the file's epsilon and attn_norm weight), within
     HESSIAN_RTOL (relative Frobenius norm). The later Linears' Hessians (after attention, after
     quantized stages) are sllm's own and are taken as given.

Each configuration (asymmetric / symmetric, with / without act-order) is one dump. Exit 1 on any
violation (listing all), never a skip: a missing package or input is a failure.

With --heldout TEXT the same losses are also reported (not required) on a different text: the
Hessians of a second dump calibrated on TEXT, so that fitting the calibration text can be told
apart from reconstructing the layer in general.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gptq_reference as ref  # noqa: E402

LOSS_RTOL = 1e-2
HESSIAN_RTOL = 1e-4
STAGES = ("qkv", "o", "gate_up", "down")
CONFIGS = {  # name: (bits, group, sym, act_order)
    "int4-g128-asym": (4, 128, False, False),
    "int4-g128-sym": (4, 128, True, False),
    "int4-g128-asym-act": (4, 128, False, True),
}


def dump(args, cfg, text: str, samples: int, out: Path) -> str | None:
    bits, group, sym, act = cfg
    cmd = [args.dump, args.model, text, str(args.layers), str(bits), str(group), str(int(sym)),
           str(int(act)), str(out), str(args.threads), str(samples)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return None if r.returncode == 0 else f"sllm_gptq_layers failed: {r.stderr.strip()[-500:]}"


def first_hessian(model: str, ids: torch.Tensor) -> torch.Tensor:
    """2/N X X^T of layer 0's q,k,v inputs, from the GGUF file (fp64)."""
    import gguf
    r = gguf.GGUFReader(model)
    field = lambda k: r.fields[k].parts[r.fields[k].data[0]]  # noqa: E731
    arch = bytes(field("general.architecture")).decode()
    eps = float(field(f"{arch}.attention.layer_norm_rms_epsilon")[0])
    t = {x.name: x for x in r.tensors}

    def tensor(name):
        x = t[name]
        return torch.from_numpy(np.array(gguf.quants.dequantize(x.data, x.tensor_type)))

    x = tensor("token_embd.weight")[ids.long().flatten()].double()
    x = x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)
    x = x * tensor("blk.0.attn_norm.weight").double()
    return 2.0 / x.shape[0] * x.T @ x


def heldout_hessians(args, name: str, cfg, tmp: Path) -> tuple[dict, int]:
    out = tmp / f"{name}.heldout.safetensors"
    err = dump(args, cfg, args.heldout, args.heldout_samples, out)
    if err:
        raise RuntimeError(f"{name} (held-out): {err}")
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
        return ({k[:-2]: f.get_tensor(k) for k in f.keys() if k.endswith(".h")},
                int(meta["calib_samples"]) * int(meta["calib_seqlen"]))


def run_config(args, name: str, cfg, tmp: Path) -> tuple[list[dict], list[str]]:
    bits, group, sym, act = cfg
    out = tmp / f"{name}.safetensors"
    err = dump(args, cfg, args.calib, 32, out)
    if err:
        return [], [f"{name}: {err}"]
    held, held_tokens = heldout_hessians(args, name, cfg, tmp) if args.heldout else ({}, 0)
    rows, errors = [], []
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
        tokens = int(meta["calib_samples"]) * int(meta["calib_seqlen"])
        damp = float(meta["damp"])
        keys = set(f.keys())
        if "calib" not in keys or "L0.s0.h" not in keys:
            errors.append(f"{name}: the dump lacks the calibration ids or layer 0's Hessian")
        else:
            h_ref = first_hessian(args.model, f.get_tensor("calib"))
            h_rel = float((f.get_tensor("L0.s0.h").double() - h_ref).norm() / h_ref.norm())
            print(f"{name} layer 0 qkv: Hessian vs one computed from the GGUF file: "
                  f"{h_rel:.1e} relative", flush=True)
            if not h_rel <= HESSIAN_RTOL:
                errors.append(f"{name}: layer 0 qkv Hessian differs from 2/N X X^T computed from "
                              f"the GGUF file by {h_rel:.2e} relative (> {HESSIAN_RTOL})")
        for layer in range(args.layers):
            for s, stage in enumerate(STAGES):
                p = f"L{layer}.s{s}."
                if p + "w" not in keys:
                    errors.append(f"{name}: {p}w missing from the dump")
                    continue
                t = {k[len(p):]: f.get_tensor(k) for k in keys if k.startswith(p)}
                w, h = t["w"], t["h"]
                where = f"{name} layer {layer} {stage} [{w.shape[0]}x{w.shape[1]}]"

                rq, rs, rz = ref.rtn(w, bits, group, sym)
                if not (torch.equal(rq, t["rtn_q"].float()) and torch.equal(rs, t["rtn_scales"])
                        and torch.equal(rz, t["rtn_zeros"])):
                    errors.append(f"{where}: sllm's RTN differs from the reference RTN "
                                  f"({(rq != t['rtn_q'].float()).sum().item()} codes)")
                w_rtn = ref.dequantize(rq, rs, rz, group)

                g_idx = t.get("g_idx")
                w_sllm = ref.dequantize(t["q"].float(), t["scales"], t["zeros"], group, g_idx)
                gq, gs_, gz, gg = ref.gptq(w, h, bits, group, sym, act_order=act, damp=damp)
                w_ref = ref.dequantize(gq, gs_, gz, group, gg)
                if (gg is None) != (g_idx is None) or (gg is not None
                                                       and not torch.equal(gg, g_idx)):
                    errors.append(f"{where}: g_idx differs from the reference's")

                loss = {k: ref.layer_loss(w, v, h, tokens)
                        for k, v in (("rtn", w_rtn), ("gptq_sllm", w_sllm), ("gptq_ref", w_ref))}
                same = (gq == t["q"].float()).float().mean().item()
                rel = abs(loss["gptq_sllm"] - loss["gptq_ref"]) / loss["gptq_ref"]
                row = {"config": name, "layer": layer, "linear": stage, "shape": list(w.shape),
                       **loss, "gptq_over_rtn": loss["gptq_sllm"] / loss["rtn"],
                       "same_codes": same, "loss_rel_diff_vs_ref": rel}
                line = (f"{where}: loss rtn {loss['rtn']:.4g}  gptq {loss['gptq_sllm']:.4g} "
                        f"(ref {loss['gptq_ref']:.4g}, {rel:.1e} rel, {100 * same:.2f}% same "
                        f"codes)  gptq/rtn {loss['gptq_sllm'] / loss['rtn']:.3f}")
                if p[:-1] in held:
                    hh = held[p[:-1]]
                    row["heldout_rtn"] = ref.layer_loss(w, w_rtn, hh, held_tokens)
                    row["heldout_gptq"] = ref.layer_loss(w, w_sllm, hh, held_tokens)
                    row["heldout_gptq_over_rtn"] = row["heldout_gptq"] / row["heldout_rtn"]
                    line += f"  held-out gptq/rtn {row['heldout_gptq_over_rtn']:.3f}"
                rows.append(row)
                print(line, flush=True)
                if rel > LOSS_RTOL:
                    errors.append(f"{where}: sllm's GPTQ loss {loss['gptq_sllm']:.6g} vs the "
                                  f"reference's {loss['gptq_ref']:.6g} ({rel:.2e} > {LOSS_RTOL})")
                if loss["gptq_sllm"] > loss["rtn"]:
                    errors.append(f"{where}: GPTQ's layer loss {loss['gptq_sllm']:.6g} exceeds "
                                  f"RTN's {loss['rtn']:.6g}")
    return rows, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sllm", help="the sllm binary (unused; the ctest helper passes it)")
    ap.add_argument("--dump", required=True, help="the sllm_gptq_layers binary")
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib", required=True)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    ap.add_argument("--heldout", help="also report the losses on this text (not required)")
    ap.add_argument("--heldout-samples", type=int, default=13, help="windows of 256 tokens")
    ap.add_argument("--json", help="write every Linear's losses here")
    args = ap.parse_args()
    for p in (args.dump, args.model, args.calib):
        if not Path(p).is_file():
            print(f"FAIL: {p} does not exist (models/: run scripts/setup.sh)")
            return 1
    rows, errors = [], []
    with tempfile.TemporaryDirectory() as d:
        for name in args.configs.split(","):
            if name not in CONFIGS:
                print(f"FAIL: unknown configuration {name}; known: {', '.join(CONFIGS)}")
                return 1
            r, e = run_config(args, name, CONFIGS[name], Path(d))
            rows += r
            errors += e
    if args.json:
        Path(args.json).write_text(json.dumps({"layers": args.layers, "rows": rows}, indent=1))
    if errors:
        print(f"FAIL: {len(errors)} problem(s):\n  " + "\n  ".join(errors))
        return 1
    print(f"OK: {len(rows)} Linears; GPTQ's layer loss <= RTN's on every one, and equal to the "
          f"reference's within {LOSS_RTOL}; layer 0's first Hessian equals the GGUF-computed one")
    return 0


if __name__ == "__main__":
    sys.exit(main())
