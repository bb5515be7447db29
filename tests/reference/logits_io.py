"""sllm's logits next to a Hugging Face model's, for the PEFT checks.

sllm's side comes from the `sllm_logits` test binary (tests/reference/sllm_logits.cpp): the model
and adapter loaded as `sllm eval --adapter` loads them, run through the full-sequence forward on
given token ids."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import check_parity as cp


def parse_args(ap, argv):
    """ap's arguments plus --sllm-logits: (args, sllm binary, sllm_logits binary), or None after
    an error line when either binary is missing (sllm_logits defaults to the one next to sllm)."""
    ap.add_argument("--sllm-logits", default=None,
                    help="path to the sllm_logits test binary (default: tests/reference/"
                         "sllm_logits next to the sllm binary)")
    a = ap.parse_args(argv)
    binary = cp.executable(a.sllm)
    if binary is None:
        return None
    path = Path(a.sllm_logits) if a.sllm_logits else \
        binary.parent / "tests" / "reference" / "sllm_logits"
    if not (path.is_file() and os.access(path, os.X_OK)):
        print(f"error: {path} not found or not executable (build the sllm_logits target)")
        return None
    return a, binary, path


class SllmLogits:
    def __init__(self, binary: str, work: Path, threads: int = 1):
        self.bin = binary
        self.work = work
        self.threads = threads
        self.calls = 0

    def __call__(self, model: str, adapter: str | None, seqs: list[list[int]], vocab: int):
        """[T, vocab] fp32 logits (torch) of each sequence."""
        import numpy as np
        import torch

        self.calls += 1
        ids = self.work / f"logits_ids_{self.calls}.txt"
        out = self.work / f"logits_{self.calls}.f32"
        ids.write_text("".join(" ".join(map(str, s)) + "\n" for s in seqs), encoding="utf-8")
        cmd = [self.bin, model, adapter or "-", str(ids), str(out), str(max(self.threads, 0))]
        p = subprocess.run(cmd, capture_output=True, timeout=300)
        if p.returncode != 0:
            raise cp.SllmError(f"exit {p.returncode}: {' '.join(cmd)[:300]}\n    "
                               + p.stderr.decode("utf-8", "replace").strip()[-1500:])
        flat = np.fromfile(out, dtype="<f4")
        want = sum(len(s) for s in seqs) * vocab
        if flat.size != want:
            raise cp.SllmError(f"{out}: {flat.size} floats, expected {want} (vocab {vocab})")
        res, at = [], 0
        for s in seqs:
            n = len(s) * vocab
            res.append(torch.from_numpy(flat[at:at + n].copy()).reshape(len(s), vocab))
            at += n
        return res


def hf_logits(model, seqs: list[list[int]]):
    import torch

    import hf_reference as hf
    with torch.no_grad():
        return [hf.logits_of(model, s) for s in seqs]


def max_diff(a: list, b: list) -> float:
    """max |a - b| over all sequences (inf on a shape mismatch)."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if x.shape != y.shape:
            return float("inf")
        worst = max(worst, float((x - y).abs().max()))
    return worst
