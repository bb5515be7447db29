#!/usr/bin/env python3
"""`sllm distill` students against transformers, on a tiny random model (make_tiny_hf.py).

    check_distill.py --sllm build/sllm --sllm-logits build/tests/reference/sllm_logits [--threads N]

1. The cut. `sllm distill` writes the student it cuts out of the teacher (layer 1 of 2, MLP
   narrowed to 96 of 160 units by weight-norm importance) to <run>/student-init. An independent
   cut made here in PyTorch on transformers' teacher (layers dropped, the units with the largest
   ||gate_j|| * ||up_j|| * ||down[:, j]|| kept in order) must give the same logits as transformers
   on that directory (max |diff| < 1e-4).
2. The trained student. After two KD steps (full training), transformers and sllm load
   <run>/model and their logits agree (max |diff| < 1e-4, as the convert check).
Exit 1 when a check fails.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

LOGITS_ABS_TOL = 1e-4
KEEP_LAYERS = [1]
WIDTH = 96


def python_cut(teacher, keep_layers, width):
    """The student cut by hand from transformers' teacher (a different code from sllm's)."""
    import copy

    import torch
    student = copy.deepcopy(teacher)
    layers = [student.model.layers[i] for i in keep_layers]
    for layer in layers:
        mlp = layer.mlp
        g, u, d = mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight
        score = g.norm(dim=1) * u.norm(dim=1) * d.norm(dim=0)
        keep = torch.sort(torch.topk(score, width).indices).values
        for name, w in (("gate_proj", g[keep]), ("up_proj", u[keep])):
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            lin.weight = torch.nn.Parameter(w.clone())
            setattr(mlp, name, lin)
        down = torch.nn.Linear(width, d.shape[0], bias=False)
        down.weight = torch.nn.Parameter(d[:, keep].clone())
        mlp.down_proj = down
    student.model.layers = torch.nn.ModuleList(layers)
    for i, layer in enumerate(layers):
        layer.self_attn.layer_idx = i
    student.config.num_hidden_layers = len(layers)
    return student


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sllm", required=True)
    ap.add_argument("--sllm-logits", required=True)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import torch

    import check_parity as cp
    import hf_reference as hf
    import logits_io
    import make_tiny_hf
    from check_peft import logit_sequences, write_sft_data
    torch.set_num_threads(max(a.threads, 1))
    fails = 0

    def check(name, ok, detail):
        nonlocal fails
        fails += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = make_tiny_hf.build(work / "tiny", "llama", True, 2, "none", 0)
        data = work / "data.jsonl"
        write_sft_data(data)
        cfg = {"model": str(tiny), "threads": a.threads, "run_name": "kd", "output_dir": str(work),
               "seed": 0, "lora": None,
               "data": {"train": str(data), "format": "prompt_completion", "max_seq_length": 128},
               "student": {"init": {"layers": KEEP_LAYERS, "intermediate_size": WIDTH}},
               "loss": {"kd_ratio": 0.5, "temperature": 2.0, "top_k": 16},
               "train": {"max_steps": 2, "batch_size": 2, "grad_accum": 1, "lr": 1e-3,
                         "log_every": 1}}
        (work / "distill.json").write_text(json.dumps(cfg), encoding="utf-8")
        p = subprocess.run([a.sllm, "distill", "--config", str(work / "distill.json"),
                            "--log-level", "warn"], capture_output=True, text=True, timeout=600)
        check("sllm distill", p.returncode == 0, p.stderr.strip()[-600:] or "2 steps")
        if p.returncode != 0:
            return 1
        run = work / "kd"
        log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
        parts = [x for x in log if "kd_loss" in x]
        check("CE and KD parts logged", len(parts) == 2 and all(
            abs(x["loss"] - 0.5 * x["ce_loss"] - 0.5 * x["kd_loss"]) < 1e-5 for x in parts),
            json.dumps(parts[-1]) if parts else "none")

        tok = hf.load_tokenizer(str(tiny))
        seqs = logit_sequences(tok)
        teacher = hf.load_model(str(tiny))
        with torch.no_grad():
            want = logits_io.hf_logits(python_cut(teacher, KEEP_LAYERS, WIDTH), seqs)
        init = hf.load_model(str(run / "student-init"))
        got = logits_io.hf_logits(init, seqs)
        d = logits_io.max_diff(want, got)
        check("student-init = the cut made in PyTorch", d < LOGITS_ABS_TOL, f"max |diff| {d:.2e}")

        trained = hf.load_model(str(run / "model"))
        hf_l = logits_io.hf_logits(trained, seqs)
        sl = logits_io.SllmLogits(a.sllm_logits, work, a.threads)(
            str(run / "model"), None, seqs, trained.config.vocab_size)
        d = logits_io.max_diff(hf_l, sl)
        check("trained student: transformers = sllm", d < LOGITS_ABS_TOL, f"max |diff| {d:.2e}")
        moved = logits_io.max_diff(hf_l, got)
        check("training changed the student", moved > 1e-6, f"max |diff| {moved:.2e}")
    print(f"{'FAILED' if fails else 'passed'}: {fails} failing check(s)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
