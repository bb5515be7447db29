#!/usr/bin/env python3
"""LoRA fine-tuning speed on the CPU: sllm vs Hugging Face transformers + PEFT.

    .venv/bin/python bench/train_bench.py --sllm build/sllm \
        --model models/SmolLM2-135M-Instruct.Q4_1.gguf --data data/office/train.jsonl \
        --steps 4 --batch-size 2 --grad-accum 4 --threads 2 --out bench/results/train_cpu.json \
        [--qlora]

Both sides train the same LoRA (r 16, alpha 32, dropout 0.05 on q/k/v/o_proj) over the same
fp32 weights (transformers loads the dense directory `sllm convert` writes from the GGUF,
cached in build/hf_cache/<gguf name>/ and reused while the GGUF is unchanged) with the same
hyper-parameters (AdamW lr 2e-4, weight decay 0, constant schedule, no warm-up, gradient
clipping at 1.0) on the same examples: the first (steps + 1) x batch x grad_accum lines of
--data, written to one file that both read, for the same number of optimizer steps, steps + 1
(one epoch of that file). Examples are not packed; each micro-batch is padded to its longest
example.

Tokens are counted the same way on both sides: non-pad input tokens (prompt + completion +
EOS) of the examples processed, per second of training steps (forward, backward, clipping and
optimizer step; model loading, tokenization and the final save not included).
  - transformers: the first optimizer step is a warm-up and is not timed; tokens/s =
    tokens of steps 2..steps+1 / their time. The all-steps figure is recorded too (the first
    step pays for the lazily mapped safetensors weights: 6-20 s here).
  - sllm: `train_tokens_per_s` from the summary line of runs/<name>/train_log.jsonl:
    train_tokens (non-pad input tokens, all steps) / train_seconds (sum of its step times,
    batch collation included, its first step included). With log_every 1 its steps 2..N
    rate is also estimated from the per-step log points.
  Ratios: sllm summary / transformers after warm-up (the headline; conservative for sllm),
  and like for like: all steps on both sides, steps 2..N on both sides. Both sides run one
  epoch of the same examples, so their all-steps token counts must agree (printed); sllm
  shuffles its batches (seeded), so per-step counts and losses differ.
Peak RSS: each side's own report (getrusage in the transformers worker process; sllm's
summary) and, measured the same way for both, the ru_maxrss of the process as its parent saw
it (os.wait4). The transformers side runs in a subprocess of this script, so neither side's
number includes the other's.

Tokenization (transformers side, as sllm's trainer does it): the prompt is one user turn
rendered with tokenizer.apply_chat_template(add_generation_prompt=True) (for SmolLM2 this
includes the template's default system turn), then the completion ids (no special tokens
added) and the EOS id; labels are -100 on the prompt and on padding. The loss of an optimizer
step is the mean over all its target tokens.

--qlora also runs `sllm qlora-train` with the same config (NF4 base weights) and records its
tokens/s and peak RSS next to the LoRA run's. --skip-hf / --skip-sllm run one side only.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LORA = {"r": 16, "alpha": 32, "dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


# ----------------------------------------------------------------------------- helpers

def run_measured(cmd: list[str], log_prefix: Path, timeout: float, env: dict | None = None,
                 cwd: Path = REPO) -> dict:
    """Runs cmd to completion; returns exit code, wall seconds and the child's peak RSS
    (ru_maxrss from os.wait4, MB). stdout/stderr go to <log_prefix>.out / .err."""
    out_p, err_p = log_prefix.with_suffix(".out"), log_prefix.with_suffix(".err")
    t0 = time.perf_counter()
    killed = False
    with open(out_p, "wb") as fo, open(err_p, "wb") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env, cwd=cwd)
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                break
            if time.perf_counter() - t0 > timeout:
                p.kill()
                killed = True
                _, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.1)
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    return {"rc": p.returncode, "wall_s": round(time.perf_counter() - t0, 2),
            "peak_rss_mb_wait4": round(ru.ru_maxrss / 1024, 1), "timed_out": killed,
            "stdout": str(out_p), "stderr": str(err_p)}


def tail(path: str, n: int = 2000) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")[-n:]
    except OSError:
        return ""


def converted_dir(sllm: str | None, gguf: Path, cache_root: Path, work: Path) -> Path:
    """The dense HF directory of `gguf` written by `sllm convert`, cached under cache_root
    and reused while the GGUF's size and mtime are unchanged."""
    d = cache_root / gguf.stem
    stamp = d / "sllm_convert_source.json"
    st = gguf.stat()
    want = {"gguf": str(gguf.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if stamp.is_file() and (d / "config.json").is_file():
        try:
            if json.loads(stamp.read_text()) == want:
                return d
        except ValueError:
            pass
    if not sllm or not Path(sllm).is_file():
        raise SystemExit(f"error: no converted model in {d} and no sllm binary to write it "
                         f"(build sllm, or run `sllm convert --model {gguf} --out {d}`)")
    if d.exists():
        shutil.rmtree(d)
    d.parent.mkdir(parents=True, exist_ok=True)
    r = run_measured([sllm, "convert", "--model", str(gguf), "--out", str(d)], work / "convert",
                     timeout=900)
    if r["rc"] != 0:
        raise SystemExit(f"error: sllm convert failed (exit {r['rc']}):\n{tail(r['stderr'])}")
    stamp.write_text(json.dumps(want) + "\n")
    return d


# ----------------------------------------------------------------------------- transformers side

def encode_example(tok, row: dict, max_len: int) -> tuple[list[int], list[int]]:
    p = tok.apply_chat_template([{"role": "user", "content": row["prompt"]}],
                                add_generation_prompt=True, tokenize=True)
    if not isinstance(p, list):  # transformers 5 returns a BatchEncoding
        p = p["input_ids"]
    # The completion is plain text (special-token strings in it are not parsed), as in sllm.
    c = list(tok(row["completion"], add_special_tokens=False,
                 split_special_tokens=True)["input_ids"]) + [tok.eos_token_id]
    ids = (list(p) + c)[:max_len]
    labels = ([-100] * len(p) + c)[:max_len]
    return ids, labels


def hf_worker(spec_path: str) -> int:
    """Runs in its own process: trains and writes the result JSON to spec['result']."""
    spec = json.loads(Path(spec_path).read_text())
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    t_load = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(spec["hf_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype=torch.float32)
    lora = spec["lora"]
    model = get_peft_model(model, LoraConfig(r=lora["r"], lora_alpha=lora["alpha"],
                                             lora_dropout=lora["dropout"],
                                             target_modules=lora["target_modules"], bias="none",
                                             task_type="CAUSAL_LM"))
    trainable, total = (int(x) for x in model.get_nb_trainable_parameters())
    model.train()
    load_s = time.perf_counter() - t_load

    rows = [json.loads(l) for l in Path(spec["data"]).read_text(encoding="utf-8").splitlines()
            if l.strip()]
    examples = [encode_example(tok, r, spec["max_seq_length"]) for r in rows]
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    B, GA = spec["batch_size"], spec["grad_accum"]
    micro = []
    for i in range(0, len(examples), B):
        mb = examples[i:i + B]
        L = max(len(ids) for ids, _ in mb)
        ids = torch.full((len(mb), L), pad, dtype=torch.long)
        lab = torch.full((len(mb), L), -100, dtype=torch.long)
        am = torch.zeros((len(mb), L), dtype=torch.long)
        for j, (x, y) in enumerate(mb):
            ids[j, :len(x)] = torch.tensor(x)
            lab[j, :len(y)] = torch.tensor(y)
            am[j, :len(x)] = 1
        micro.append((ids, am, lab))
    total_steps = spec["steps"] + 1
    if len(micro) < total_steps * GA:
        raise SystemExit(f"need {total_steps * GA} micro-batches, have {len(micro)}")

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=spec["weight_decay"])
    steps = []
    for s in range(total_steps):
        batch = micro[s * GA:(s + 1) * GA]
        n_target = sum(int((lab[:, 1:] != -100).sum()) for _, _, lab in batch)
        tokens = sum(int(am.sum()) for _, am, _ in batch)
        t0 = time.perf_counter()
        loss_sum = 0.0
        for ids, am, lab in batch:
            logits = model(input_ids=ids, attention_mask=am, use_cache=False).logits
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                   lab[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
            (loss / n_target).backward()
            loss_sum += float(loss.detach())
        gn = float(torch.nn.utils.clip_grad_norm_(params, spec["max_grad_norm"]))
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        steps.append({"step": s + 1, "seconds": round(dt, 4), "tokens": tokens,
                      "target_tokens": n_target, "loss": loss_sum / n_target, "grad_norm": gn})
        print(f"hf step {s + 1}/{total_steps}: {dt:.2f} s, {tokens} tokens, "
              f"loss {loss_sum / n_target:.4f}", flush=True)
    timed = steps[1:]
    t_timed = sum(x["seconds"] for x in timed)
    tok_timed = sum(x["tokens"] for x in timed)
    t_all = sum(x["seconds"] for x in steps)
    tok_all = sum(x["tokens"] for x in steps)
    res = {
        "tokens_per_s": tok_timed / t_timed if t_timed > 0 else None,
        "tokens_per_s_all_steps": tok_all / t_all if t_all > 0 else None,
        "train_seconds": round(t_timed, 3), "train_tokens": tok_timed,
        "train_seconds_all_steps": round(t_all, 3), "train_tokens_all_steps": tok_all,
        "timed_steps": len(timed), "warmup_steps": 1, "load_seconds": round(load_s, 2),
        "examples": len(rows), "trainable_params": trainable, "all_params": total,
        "peak_rss_mb_self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(), "steps": steps,
    }
    Path(spec["result"]).write_text(json.dumps(res, indent=2) + "\n")
    return 0


def run_hf(args, hf_dir: Path, data: Path, work: Path) -> dict:
    spec = {"hf_dir": str(hf_dir), "data": str(data), "steps": args.steps,
            "batch_size": args.batch_size, "grad_accum": args.grad_accum, "lr": args.lr,
            "weight_decay": 0.0, "max_grad_norm": 1.0, "max_seq_length": args.max_seq_length,
            "threads": args.threads, "seed": args.seed, "lora": LORA,
            "result": str(work / "hf_result.json")}
    sp = work / "hf_spec.json"
    sp.write_text(json.dumps(spec, indent=2))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false")
    r = run_measured([sys.executable, str(Path(__file__).resolve()), "--_hf-worker", str(sp)],
                     work / "hf", timeout=args.timeout, env=env)
    if r["rc"] != 0 or not Path(spec["result"]).is_file():
        return {"error": f"transformers worker failed (exit {r['rc']}):\n{tail(r['stderr'])}",
                **r}
    res = json.loads(Path(spec["result"]).read_text())
    res["peak_rss_mb_wait4"] = r["peak_rss_mb_wait4"]
    res["process_wall_s"] = r["wall_s"]
    return res


# ----------------------------------------------------------------------------- sllm side

def sllm_config(args, gguf: Path, data: Path, runs: Path, name: str) -> dict:
    return {
        "model": str(gguf),
        "threads": args.threads,
        "dtype": "fp32",
        "device": "cpu",
        "run_name": name,
        "output_dir": str(runs),
        "seed": args.seed,
        "data": {"train": str(data), "format": "prompt_completion",
                 "max_seq_length": args.max_seq_length, "completion_only": True,
                 "packing": False, "eval_fraction": 0.0},
        "lora": {"r": LORA["r"], "alpha": LORA["alpha"], "dropout": LORA["dropout"],
                 "target_modules": LORA["target_modules"], "rslora": False},
        "train": {"epochs": 1, "max_steps": args.steps + 1, "batch_size": args.batch_size,
                  "grad_accum": args.grad_accum, "lr": args.lr, "weight_decay": 0.0,
                  "scheduler": "constant", "warmup_ratio": 0.0, "max_grad_norm": 1.0,
                  "log_every": 1, "save_every": 0, "eval_every": 0},
    }


def run_sllm(args, command: str, gguf: Path, data: Path, work: Path) -> dict:
    name = f"bench_{command.replace('-', '_')}"
    runs = work / "runs"
    cfg = sllm_config(args, gguf, data, runs, name)
    if (runs / name).exists():  # a kept --work-dir: sllm refuses a run dir with checkpoints
        shutil.rmtree(runs / name)
    cp = work / f"{name}_config.json"
    cp.write_text(json.dumps(cfg, indent=2) + "\n")
    cmd = [args.sllm, command, "--config", str(cp), *args.sllm_arg]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    r = run_measured(cmd, work / name, timeout=args.timeout, env=env)
    res = {"command": " ".join(cmd), "config": cfg, "peak_rss_mb_wait4": r["peak_rss_mb_wait4"],
           "process_wall_s": r["wall_s"]}
    if r["rc"] != 0:
        res["error"] = f"sllm {command} failed (exit {r['rc']}):\n{tail(r['stderr']) or tail(r['stdout'])}"
        return res
    log = runs / name / "train_log.jsonl"
    if not log.is_file():
        res["error"] = f"sllm {command} wrote no {log}"
        return res
    lines = [json.loads(l) for l in log.read_text(encoding="utf-8").splitlines() if l.strip()]
    summary = next((l for l in reversed(lines) if l.get("event") == "summary"), None)
    res["log"] = [l for l in lines if l.get("event") != "summary"]
    if summary is None:
        res["error"] = f"no summary line in {log}"
        return res
    res["summary"] = summary
    res["tokens_per_s"] = summary.get("train_tokens_per_s")
    res["train_seconds"] = summary.get("train_seconds")
    res["train_tokens"] = summary.get("train_tokens")
    res["peak_rss_mb_self"] = summary.get("peak_rss_mb")
    res["steps_run"] = summary.get("steps")
    res["tokens_per_s_after_first_step"] = steady_rate(res["log"])
    return res


def steady_rate(log: list[dict]) -> float | None:
    """sllm's tokens/s over steps 2..N, estimated from a log_every=1 train_log: each point's
    tokens_per_s covers that one step, and the step's time is the elapsed_s difference to the
    previous point (which adds only the logging between steps)."""
    pts = [p for p in log if "tokens_per_s" in p and "elapsed_s" in p]
    if len(pts) < 2 or any(b["step"] != a["step"] + 1 for a, b in zip(pts, pts[1:])):
        return None
    toks = secs = 0.0
    for a, b in zip(pts, pts[1:]):
        dt = b["elapsed_s"] - a["elapsed_s"]
        toks += b["tokens_per_s"] * dt
        secs += dt
    return toks / secs if secs > 0 else None


# ----------------------------------------------------------------------------- main

def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sllm", default="build/sllm")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--data", default="data/office/train.jsonl")
    ap.add_argument("--steps", type=int, default=4, help="timed optimizer steps (one more is run first as warm-up)")
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--max-seq-length", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--qlora", action="store_true", help="also run `sllm qlora-train` (NF4 base)")
    ap.add_argument("--skip-hf", action="store_true", help="do not run the transformers side")
    ap.add_argument("--skip-sllm", action="store_true", help="do not run sllm (transformers only)")
    ap.add_argument("--sllm-arg", action="append", default=[],
                    help="extra argument for sllm sft / qlora-train (repeatable), e.g. a dotted "
                         "config override key=value")
    ap.add_argument("--hf-cache", default=str(REPO / "build" / "hf_cache"),
                    help="where the `sllm convert` directory is cached")
    ap.add_argument("--work-dir", default=None, help="keep logs, configs and sllm runs here "
                    "(default: a temporary directory, removed at the end)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per training process")
    ap.add_argument("--out", default="bench/results/train_cpu.json")
    ap.add_argument("--_hf-worker", dest="hf_worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.hf_worker:
        return hf_worker(args.hf_worker)
    for k in ("steps", "batch_size", "grad_accum", "threads", "max_seq_length"):
        if getattr(args, k) < 1:
            ap.error(f"--{k.replace('_', '-')} must be >= 1")
    if args.skip_hf and args.skip_sllm:
        ap.error("--skip-hf and --skip-sllm leave nothing to run")

    gguf = Path(args.model).resolve()
    data_src = Path(args.data)
    if not gguf.is_file():
        print(f"error: model {gguf} not found (scripts/setup.sh fetches the default one)")
        return 2
    if not data_src.is_file():
        print(f"error: data {data_src} not found (python3 scripts/make_office_dataset.py writes it)")
        return 2
    sllm = str(Path(args.sllm).resolve()) if Path(args.sllm).is_file() else None
    if not args.skip_sllm and sllm is None:
        print(f"error: sllm binary {args.sllm} not found (build it, or pass --skip-sllm)")
        return 2
    args.sllm = sllm

    tmp = None
    if args.work_dir:
        work = Path(args.work_dir).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="sllm_train_bench_")
        work = Path(tmp.name)
    try:
        # The examples both sides train on: exactly (steps + 1) optimizer steps' worth.
        n_ex = (args.steps + 1) * args.batch_size * args.grad_accum
        rows = [l for l in data_src.read_text(encoding="utf-8").splitlines() if l.strip()]
        if len(rows) < n_ex:
            print(f"error: {data_src} has {len(rows)} examples, the run needs {n_ex}")
            return 2
        data = work / "bench_train.jsonl"
        data.write_text("\n".join(rows[:n_ex]) + "\n", encoding="utf-8")

        res = {
            "benchmark": "LoRA fine-tuning speed, CPU, fp32: sllm vs transformers + PEFT",
            **provenance.collect(sllm),  # command, date, git, machine, versions
            "settings": {
                "model": str(Path(args.model)), "data": str(data_src), "examples": n_ex,
                "optimizer_steps": args.steps + 1, "timed_steps_hf": args.steps,
                "warmup_steps_hf": 1, "batch_size": args.batch_size,
                "grad_accum": args.grad_accum, "lr": args.lr, "weight_decay": 0.0,
                "scheduler": "constant", "warmup_ratio": 0.0, "max_grad_norm": 1.0,
                "max_seq_length": args.max_seq_length, "packing": False, "lora": LORA,
                "threads": args.threads, "dtype": "fp32", "device": "cpu", "seed": args.seed,
            },
            "token_count": "non-pad input tokens (prompt incl. chat template + completion + EOS) "
                           "of the examples in the measured optimizer steps, per second of those "
                           "steps (forward + backward + clip + optimizer step)",
        }
        print(f"{n_ex} examples, {args.steps + 1} optimizer steps (batch {args.batch_size} x "
              f"grad_accum {args.grad_accum}), {args.threads} threads; work dir {work}", flush=True)
        if not args.skip_hf:
            hf_dir = converted_dir(sllm, gguf, Path(args.hf_cache), work)
            res["settings"]["hf_dir"] = str(hf_dir)
            print(f"transformers + PEFT on {hf_dir} ...", flush=True)
            res["hf"] = run_hf(args, hf_dir, data, work)
        if not args.skip_sllm:
            print("sllm sft ...", flush=True)
            res["sllm"] = run_sllm(args, "sft", gguf, data, work)
            if args.qlora:
                print("sllm qlora-train ...", flush=True)
                res["sllm_qlora"] = run_sllm(args, "qlora-train", gguf, data, work)

        try:
            res["machine"]["loadavg_at_end"] = [float(x) for x in
                                                Path("/proc/loadavg").read_text().split()[:3]]
        except OSError:
            pass
        hf, sl = res.get("hf", {}), res.get("sllm", {})
        checks = {}
        if hf.get("train_tokens_all_steps") is not None and sl.get("train_tokens") is not None:
            # One epoch of the same examples on both sides: the non-pad tokens of all steps do
            # not depend on the batch order, so the two counts must be equal.
            checks["train_tokens_all_steps"] = {"sllm": sl["train_tokens"],
                                                "hf": hf["train_tokens_all_steps"],
                                                "equal": sl["train_tokens"] == hf["train_tokens_all_steps"]}
        if sl.get("steps_run") is not None:
            checks["sllm_steps"] = {"ran": sl["steps_run"], "expected": args.steps + 1}
        if checks:
            res["checks"] = checks
        if hf.get("tokens_per_s") and sl.get("tokens_per_s"):
            # sllm's summary covers all its steps (its first included); transformers' figure
            # leaves out its warm-up step, so this ratio is conservative for sllm.
            res["ratio_sllm_over_hf"] = sl["tokens_per_s"] / hf["tokens_per_s"]
            # like for like: both over all steps, and both after the first step
            res["ratio_all_steps"] = sl["tokens_per_s"] / hf["tokens_per_s_all_steps"]
            if sl.get("tokens_per_s_after_first_step"):
                res["ratio_after_first_step"] = sl["tokens_per_s_after_first_step"] / hf["tokens_per_s"]
        q = res.get("sllm_qlora", {})
        if q.get("peak_rss_mb_wait4") and sl.get("peak_rss_mb_wait4") and not q.get("error"):
            res["qlora_over_lora_peak_rss"] = q["peak_rss_mb_wait4"] / sl["peak_rss_mb_wait4"]

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")

        print(f"\n{'engine':<30} {'tokens/s':>9} {'train s':>8} {'tokens':>7} "
              f"{'peak RSS MB (self / wait4)':>27}")
        print("(transformers: steps 2..N, after its warm-up step; sllm: all steps, as its summary)")
        for key, label in (("hf", "transformers + PEFT (LoRA)"), ("sllm", "sllm sft (LoRA)"),
                           ("sllm_qlora", "sllm qlora-train (QLoRA)")):
            r = res.get(key)
            if r is None:
                continue
            if r.get("error"):
                print(f"{label:<30} ERROR: {r['error'].strip()[:1500]}")
                continue
            rss = f"{fmt(r.get('peak_rss_mb_self'), '.0f')} / {fmt(r.get('peak_rss_mb_wait4'), '.0f')}"
            print(f"{label:<30} {fmt(r.get('tokens_per_s'), '9.1f')} "
                  f"{fmt(r.get('train_seconds'), '8.2f')} {fmt(r.get('train_tokens'), '7d')} {rss:>27}")
        if hf and not hf.get("error"):
            print(f"(transformers over all steps, warm-up included: "
                  f"{hf['tokens_per_s_all_steps']:.1f} tokens/s)")
        if sl.get("tokens_per_s_after_first_step"):
            print(f"(sllm after its first step, from train_log: "
                  f"{sl['tokens_per_s_after_first_step']:.1f} tokens/s)")
        if "ratio_sllm_over_hf" in res:
            extra = f"; after the first step on both sides {res['ratio_after_first_step']:.2f}x" \
                if "ratio_after_first_step" in res else ""
            print(f"sllm / transformers tokens/s: {res['ratio_sllm_over_hf']:.2f}x (sllm all steps vs "
                  f"transformers after warm-up); all steps on both sides "
                  f"{res['ratio_all_steps']:.2f}x{extra}")
        if "qlora_over_lora_peak_rss" in res:
            print(f"QLoRA / LoRA peak RSS (wait4): {res['qlora_over_lora_peak_rss']:.2f}x")
        c = res.get("checks", {})
        if "train_tokens_all_steps" in c:
            t = c["train_tokens_all_steps"]
            print(f"tokens over all steps: sllm {t['sllm']}, transformers {t['hf']}"
                  + ("" if t["equal"] else "  <- MISMATCH: the two sides do not count the same tokens"))
        if "sllm_steps" in c and c["sllm_steps"]["ran"] != c["sllm_steps"]["expected"]:
            print(f"warning: sllm ran {c['sllm_steps']['ran']} steps, expected {c['sllm_steps']['expected']}")
        la = res["machine"].get("loadavg_at_start")
        if la and la[0] > 0.5:
            print(f"warning: load average {la[0]:.2f} at the start: other processes share the CPU, "
                  f"timings are unreliable")
        print(f"wrote {out}")
        failed = any(res.get(k, {}).get("error") for k in ("hf", "sllm", "sllm_qlora"))
        return 1 if failed else 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
