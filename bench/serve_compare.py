#!/usr/bin/env python3
"""Throughput of `sllm serve` against llama-cpp-python's OpenAI server, one run, same prompts.

Each server is started on a free loopback port, measured by `sllm bench --url` (the same load
client, prompt set, max_tokens and concurrency for both), then stopped. The result file holds both
load reports, the ratio of output tokens/s at each concurrency, and the provenance.

    .venv/bin/python bench/serve_compare.py --sllm build/sllm \
        --sllm-model out/smollm2-rtn4 --llama-model models/SmolLM2-135M-Instruct.Q4_1.gguf \
        --concurrency 16 --num-prompts 48 --max-tokens 64 --endpoint chat --threads 2 \
        --json bench/results/serve_vs_llamacpp.json
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import provenance  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    print("$", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure(args, name: str, server_cmd: list[str], port: int, workdir: Path) -> dict:
    proc = start(server_cmd, workdir / f"{name}.log")
    out = workdir / f"{name}.json"
    try:
        cmd = [args.sllm, "bench", "--url", f"http://127.0.0.1:{port}",
               "--concurrency", args.concurrency, "--num-prompts", str(args.num_prompts),
               "--max-tokens", str(args.max_tokens), "--endpoint", args.endpoint,
               "--ready-timeout", "300",
               "--timeout", str(args.timeout), "--json", str(out)]
        print("$", " ".join(cmd), flush=True)
        r = subprocess.run(cmd)
        if proc.poll() is not None:
            sys.exit(f"error: the {name} server exited (code {proc.returncode}); its log: "
                     f"{workdir / (name + '.log')}")
        if r.returncode != 0 or not out.exists():
            sys.exit(f"error: sllm bench against the {name} server failed (exit {r.returncode})")
        report = json.loads(out.read_text())
    finally:
        stop(proc)
    return {"server_command": server_cmd, "report": report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sllm", default="build/sllm")
    ap.add_argument("--sllm-model", required=True, help="model sllm serve loads")
    ap.add_argument("--llama-model", required=True, help="GGUF file llama-cpp-python loads")
    ap.add_argument("--concurrency", default="16")
    ap.add_argument("--num-prompts", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--endpoint", default="chat", help="completions or chat")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-seqs", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", required=True, help="the result file (with its provenance)")
    args = ap.parse_args()

    res = {**provenance.collect(args.sllm), "settings": vars(args)}
    with tempfile.TemporaryDirectory(prefix="sllm-serve-compare-") as tmp:
        work = Path(tmp)
        port = free_port()
        res["sllm"] = measure(args, "sllm", [
            args.sllm, "serve", "--model", args.sllm_model, "--port", str(port),
            "--threads", str(args.threads), "--max-seqs", str(args.max_seqs),
            "--max-waiting", "1024", "--timeout", str(args.timeout)], port, work)
        port = free_port()
        res["llama_cpp"] = measure(args, "llama_cpp", [
            sys.executable, "-m", "llama_cpp.server", "--model", args.llama_model,
            "--port", str(port), "--host", "127.0.0.1", "--n_threads", str(args.threads),
            "--n_threads_batch", str(args.threads), "--n_ctx", "2048",
            # its default cancels a running stream when the next request arrives
            "--interrupt_requests", "False"], port, work)
    ratios = []
    for a, b in zip(res["sllm"]["report"]["runs"], res["llama_cpp"]["report"]["runs"]):
        ratios.append({"concurrency": a["concurrency"],
                       "sllm_output_tok_s": a["output_tok_s"],
                       "llama_cpp_output_tok_s": b["output_tok_s"],
                       "ratio": a["output_tok_s"] / b["output_tok_s"] if b["output_tok_s"] else None})
    res["ratios"] = ratios
    res["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tmp_out = Path(args.json + ".tmp")
    tmp_out.write_text(json.dumps(res, indent=1) + "\n")
    tmp_out.replace(args.json)
    for r in ratios:
        print(f"concurrency {r['concurrency']}: sllm {r['sllm_output_tok_s']:.1f} tok/s, "
              f"llama.cpp {r['llama_cpp_output_tok_s']:.1f} tok/s, ratio {r['ratio']:.2f}x")


if __name__ == "__main__":
    main()
