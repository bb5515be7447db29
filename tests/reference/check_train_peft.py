#!/usr/bin/env python3
"""LoRA training: `sllm sft` vs transformers + PEFT + torch.optim.AdamW, step for step.

    check_train_peft.py --sllm build/sllm [--out-dir DIR] [--threads N]
    check_train_peft.py --sllm build/sllm --prepare DIR | --replay DIR   (train_tiny.sh's halves)

A tiny random llama model (make_tiny_hf.py) is fine-tuned for STEPS optimizer steps with LoRA
(r 4, alpha 8, all-linear, dropout 0) on 10 generated "text" lines (every token labelled),
batch 2 x grad_accum 2, AdamW (lr 1e-2, betas (0.9, 0.99), eps 1e-6, weight decay 0.01), cosine
schedule with one warmup step, gradient clipping at norm 1.0.

The same start on both sides: `sllm sft` cannot start from a given adapter (--adapter is for
inference, and --resume needs a checkpoint of its own run), so PEFT starts from sllm's step-1
checkpoint. With one warmup step the learning rate of step 1 is 0 on both sides (sllm's lr_at and
transformers' get_cosine_schedule_with_warmup), so that checkpoint holds sllm's initial adapter
unchanged (checked: lora_B all 0) while step 1 still feeds AdamW's moments. PEFT then replays
every step: the micro-batches of sllm's Trainer (its mt19937_64 Fisher-Yates shuffle per epoch,
seeded seed + epoch, ported here), the loss as the sum of token cross-entropies over the step's
labelled tokens, torch's clip_grad_norm_, AdamW and the scheduler.

Checks: per-step loss (train_log.jsonl) rel 1e-4; per-step gradient norm before clipping rel
1e-3; learning rate rel 1e-9; the final adapter (runs/<name>/adapter) tensor for tensor against
the same replay in fp64: max |diff| / max |value| at most 10x the fp32 replay's own error (and
never above 1e-3), since AdamW's division by sqrt(v) + eps amplifies fp32 rounding on elements
whose gradients nearly cancel; and non-trivial: training moved lora_B away from 0 and the loss
changed by more than 100x the loss tolerance.

Prints a table and exits 1 if any check fails (2 on bad usage), as check_parity.py does.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import check_parity as cp  # noqa: E402
from check_peft import TINY, Sllm  # noqa: E402

STEPS = 6
SEED = 7
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["all-linear"]}
TRAIN = {"max_steps": STEPS, "batch_size": 2, "grad_accum": 2, "lr": 1e-2, "weight_decay": 0.01,
         "beta1": 0.9, "beta2": 0.99, "eps": 1e-6, "scheduler": "cosine", "warmup_steps": 1,
         "max_grad_norm": 1.0, "log_every": 1, "save_every": 1, "save_total_limit": 0}
LOSS_REL_TOL = 1e-4      # fp32 forward/backward in both; only summation order differs
NORM_REL_TOL = 1e-3      # gradient norms: the same, one reduction more each
LR_REL_TOL = 1e-9        # the same formula in double precision
# Final adapter, per tensor: max |diff| / max |value| against PEFT in fp64, at most this many
# times the fp32 PEFT replay's own error (floor for an error of 0), and never above the cap.
WEIGHT_ROUNDING_FACTOR = 10.0
WEIGHT_REL_FLOOR = 1e-6
WEIGHT_REL_CAP = 1e-3
MASK64 = (1 << 64) - 1


# ----------------------------------------------------------------------------- sllm's batches

class MT19937_64:
    """std::mt19937_64 (the C++ standard's parameters), for sllm's shuffle."""

    def __init__(self, seed: int):
        self.mt = [seed & MASK64]
        for i in range(1, 312):
            prev = self.mt[-1]
            self.mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & MASK64)
        self.i = 312

    def __call__(self) -> int:
        if self.i >= 312:
            mt = self.mt
            for k in range(312):
                x = (mt[k] & 0xFFFFFFFF80000000) | (mt[(k + 1) % 312] & 0x7FFFFFFF)
                mt[k] = mt[(k + 156) % 312] ^ (x >> 1) ^ (0xB5026F5AA96619E9 if x & 1 else 0)
            self.i = 0
        x = self.mt[self.i]
        self.i += 1
        x ^= (x >> 29) & 0x5555555555555555
        x ^= (x << 17) & 0x71D67FFFEDA60000
        x ^= (x << 37) & 0xFFF7EEE000000000
        x ^= x >> 43
        return x & MASK64


def permutation(n: int, seed: int) -> list[int]:
    p, rng = list(range(n)), MT19937_64(seed)
    for i in range(n, 1, -1):
        j = rng() % i
        p[i - 1], p[j] = p[j], p[i - 1]
    return p


def micro_batches_of_step(step: int, n: int, bs: int, accum: int, seed: int) -> list[list[int]]:
    micro_per_epoch = -(-n // bs)
    steps_per_epoch = -(-micro_per_epoch // accum)
    epoch, local = divmod(step, steps_per_epoch)
    order = permutation(n, seed + epoch)
    return [order[mb * bs:min(n, (mb + 1) * bs)]
            for mb in range(local * accum, min(micro_per_epoch, (local + 1) * accum))]


# ----------------------------------------------------------------------------- data and runs

def texts() -> list[str]:
    words = ["bread", "river", "market", "window", "garden", "letter", "winter", "paper",
             "station", "kitchen"]
    return [f"The {a} is near the {words[(i * 3 + 1) % len(words)]}, said the {words[(i * 7 + 2) % len(words)]}."
            + " It was late." * (i % 3) for i, a in enumerate(words)]


def write_run(work: Path, tiny: Path, threads: int) -> Path:
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts()), encoding="utf-8")
    cfg = {"model": str(tiny), "threads": threads, "run_name": "train_peft",
           "output_dir": str(work / "runs"), "seed": SEED,
           "data": {"train": str(data), "format": "text", "completion_only": False,
                    "max_seq_length": 64, "packing": False},
           "lora": LORA, "train": TRAIN}
    path = work / "sft.json"
    path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return path


def examples(tok) -> list[list[int]]:
    """sllm's "text" examples: BOS (when the model adds one) + the text's tokens + EOS."""
    import hf_reference as hf
    return [hf.with_bos(tok, hf.encode_plain(tok, t)) + [tok.eos_token_id] for t in texts()]


def peft_train(tiny: Path, start_adapter: Path, exs: list[list[int]], dtype=None):
    """Replays sllm's run in transformers + PEFT: ([(loss, grad_norm, lr)] per step, model).
    dtype: torch.float64 measures the fp32 reference's own rounding."""
    import torch
    from peft import PeftModel
    from transformers import get_cosine_schedule_with_warmup

    import hf_reference as hf

    torch.manual_seed(0)
    pm = PeftModel.from_pretrained(hf.load_model(str(tiny)), str(start_adapter), is_trainable=True)
    if dtype is not None:
        pm = pm.to(dtype)
    pm.train()  # dropout is 0: train mode changes nothing but is what a trainer runs in
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=TRAIN["lr"], betas=(TRAIN["beta1"], TRAIN["beta2"]),
                            eps=TRAIN["eps"], weight_decay=TRAIN["weight_decay"], foreach=False)
    sched = get_cosine_schedule_with_warmup(opt, TRAIN["warmup_steps"], STEPS)
    log = []
    for step in range(STEPS):
        micro = micro_batches_of_step(step, len(exs), TRAIN["batch_size"], TRAIN["grad_accum"],
                                      SEED)
        targets = sum(len(exs[i]) - 1 for mb in micro for i in mb)
        step_loss = 0.0
        for mb in micro:
            loss = 0.0
            for i in mb:
                ids = torch.tensor([exs[i]], dtype=torch.long)
                logits = pm(input_ids=ids, use_cache=False).logits[0, :-1].float()
                loss = loss + torch.nn.functional.cross_entropy(logits, ids[0, 1:],
                                                                reduction="sum")
            loss = loss / targets
            loss.backward()
            step_loss += float(loss)
        norm = float(torch.nn.utils.clip_grad_norm_(params, TRAIN["max_grad_norm"]))
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        log.append((step_loss, norm, lr))
    pm.eval()
    return log, pm


def adapter_error(got: dict, ref: dict) -> tuple[float, str, int]:
    """(worst max|got - ref| / max|ref| over ref's tensors, its name, tensors missing in got)."""
    worst, name, missing = 0.0, "", 0
    for k, r in ref.items():
        if k not in got or got[k].shape != r.shape:
            missing += 1
            continue
        r64 = r.detach().double()
        rel = float((got[k].detach().double() - r64).abs().max()) / max(float(r64.abs().max()), 1e-30)
        if rel > worst:
            worst, name = rel, k
    return worst, name, missing


def prepare(work: Path, threads: int) -> Path:
    """The tiny model, the data and the `sllm sft --config` file of the run under work (no old
    run left there); returns the config's path."""
    import make_tiny_hf

    tiny = work / "tiny"
    if tiny.exists():
        shutil.rmtree(tiny)
    make_tiny_hf.build(tiny, TINY["arch"], TINY["tied"], TINY["kv_heads"], TINY["rope_scaling"],
                       TINY["seed"])
    run_dir = work / "runs" / "train_peft"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return write_run(work, tiny, threads)


def replay(work: Path) -> list[tuple[float, float, float]]:
    """PEFT's (loss, grad norm, lr) per step of the run that `sllm sft --config` of prepare(work)
    made, from its step-1 checkpoint (the initial adapter)."""
    import hf_reference as hf
    tok = hf.load_tokenizer(str(work / "tiny"))
    start = work / "runs" / "train_peft" / "checkpoints" / "step-000001" / "adapter"
    return peft_train(work / "tiny", start, examples(tok))[0]


def run(rep: cp.Report, sllm: Sllm, work: Path):
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    import hf_reference as hf

    S = "sft-lora"
    tiny = work / "tiny"
    cfg = prepare(work, sllm.threads)
    tok = hf.load_tokenizer(str(tiny))
    run_dir = work / "runs" / "train_peft"
    out = cp.attempt(rep, "sllm sft", sllm.sft, cfg)
    log_path = run_dir / "train_log.jsonl"
    start = run_dir / "checkpoints" / "step-000001" / "adapter"
    if out is None or not log_path.is_file() or not (start / "adapter_model.safetensors").is_file():
        rep.add(S, "sllm sft wrote its log and the step-1 checkpoint", False,
                "see the error above" if out is None else f"no {log_path.name} or {start}")
        return
    # one point per step, then a {"event": "summary"} line
    slog = [p for p in (json.loads(l) for l in log_path.read_text().splitlines() if l.strip())
            if "step" in p]
    rep.add(S, f"sllm logged {STEPS} steps", [p["step"] for p in slog] == list(range(1, STEPS + 1)),
            f"steps {[p['step'] for p in slog]}")
    b0 = max(float(v.abs().max()) for k, v in load_file(str(start / "adapter_model.safetensors")).items()
             if ".lora_B." in k)
    rep.add(S, "step-1 checkpoint = the initial adapter (lr 0 at step 1: lora_B all 0)",
            b0 == 0.0 and slog[0]["lr"] == 0.0, f"max |lora_B| {b0:g}, lr {slog[0]['lr']:g}")

    res = cp.attempt(rep, "peft replay", peft_train, tiny, start, examples(tok))
    if res is None or len(slog) != STEPS:
        rep.add(S, "PEFT replay of the run", False, "see the error above")
        return
    plog, pm = res
    for (s, p) in zip(slog, plog):
        n = s["step"]
        rel = abs(s["loss"] - p[0]) / abs(p[0])
        rep.add(S, f"step {n} loss", rel <= LOSS_REL_TOL,
                f"sllm {s['loss']:.7f} vs peft {p[0]:.7f} (rel {rel:.1e})", f"rel {LOSS_REL_TOL:g}")
        reln = abs(s["grad_norm"] - p[1]) / max(abs(p[1]), 1e-30)
        rep.add(S, f"step {n} grad norm (before clipping)", reln <= NORM_REL_TOL,
                f"sllm {s['grad_norm']:.6f} vs peft {p[1]:.6f} (rel {reln:.1e})",
                f"rel {NORM_REL_TOL:g}")
        rell = abs(s["lr"] - p[2]) / max(abs(p[2]), 1e-30) if p[2] else abs(s["lr"])
        rep.add(S, f"step {n} learning rate", rell <= LR_REL_TOL,
                f"sllm {s['lr']:.6e} vs peft {p[2]:.6e}", f"rel {LR_REL_TOL:g}")
    moved = abs(plog[-1][0] - plog[0][0]) / plog[0][0]
    rep.add(S, "non-trivial: the loss moved", moved > 100 * LOSS_REL_TOL,
            f"peft step 1 {plog[0][0]:.5f} -> step {STEPS} {plog[-1][0]:.5f} (rel {moved:.1e})",
            f"rel > {100 * LOSS_REL_TOL:g}")
    # The final adapter against PEFT replayed in fp64: Adam divides by sqrt(v) + eps, so
    # elements whose gradients nearly cancel amplify fp32 rounding; the fp32 PEFT replay's own
    # distance from fp64 measures that, and sllm (also fp32) must stay within a small multiple.
    final = run_dir / "adapter"
    r64 = cp.attempt(rep, "peft replay fp64", peft_train, tiny, start, examples(tok),
                     torch.float64)
    if r64 is None:
        rep.add(S, "final adapter = PEFT's", False, "see the error above")
        return
    ref64 = get_peft_model_state_dict(r64[1])
    got = load_file(str(final / "adapter_model.safetensors"))
    e_peft, n_peft, _ = adapter_error(get_peft_model_state_dict(pm), ref64)
    e_sllm, n_sllm, missing = adapter_error(got, ref64)
    e_32, n_32, _ = adapter_error(got, get_peft_model_state_dict(pm))
    tol = max(WEIGHT_ROUNDING_FACTOR * e_peft, WEIGHT_REL_FLOOR)
    short = lambda k: k.split("model.model.")[-1].replace(".weight", "")  # noqa: E731
    rep.add(S, "final adapter = PEFT's, every tensor (vs PEFT in fp64)",
            missing == 0 and e_sllm <= min(tol, WEIGHT_REL_CAP),
            f"{len(ref64) - missing}/{len(ref64)} tensors; sllm {e_sllm:.1e} ({short(n_sllm)}), "
            f"peft fp32 {e_peft:.1e} ({short(n_peft)}); sllm vs peft fp32 {e_32:.1e}",
            f"{WEIGHT_ROUNDING_FACTOR:g}x peft fp32, <= {WEIGHT_REL_CAP:g}")
    bmax = max(float(v.abs().max()) for k, v in load_file(str(final / "adapter_model.safetensors")).items()
               if ".lora_B." in k)
    rep.add(S, "non-trivial: training moved lora_B from 0", bmax > 0 and math.isfinite(bmax),
            f"max |lora_B| {bmax:.2e}")


def main(argv=None) -> int:
    ap = cp.common_parser("LoRA training: sllm sft vs transformers + PEFT")
    ap.add_argument("--prepare", metavar="DIR", default=None,
                    help="only write the tiny model, data and sft config into DIR and print the "
                         "config's path (for tests/golden/train_tiny.sh)")
    ap.add_argument("--replay", metavar="DIR", default=None,
                    help="only print PEFT's per-step losses (JSON) for the run `sllm sft --config` "
                         "made from --prepare DIR")
    a = ap.parse_args(argv)
    binary = cp.executable(a.sllm)
    if binary is None:
        return 2
    import peft
    import torch
    import transformers

    cp.torch_setup(a.threads)
    if a.prepare:
        print(prepare(Path(a.prepare), a.threads))
        return 0
    if a.replay:
        print(json.dumps([step[0] for step in replay(Path(a.replay))]))
        return 0
    rep = cp.Report()

    def body(work: Path):
        rep.note(f"peft {peft.__version__}, transformers {transformers.__version__}, torch "
                 f"{torch.__version__}; work files in {work}")
        cp.attempt(rep, "run", run, rep, Sllm(str(binary), work, a.threads), work)

    return cp.run_in_work_dir(rep, a.out_dir, "sllm_train_peft_", body)


if __name__ == "__main__":
    sys.exit(main())
