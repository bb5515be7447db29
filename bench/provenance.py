"""Where a benchmark result came from: command, commit, date, machine and package versions.

Every bench script that writes bench/results/*.json puts `collect(sllm_binary)` into it, so that
a number can be traced to the code, the CPU (model, cores, the instruction sets sllm's kernels
dispatch on) and the reference packages it was measured with."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The CPU features sllm's kernels choose between (and a few neighbours worth knowing).
ISA_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "safetensors", "numpy",
            "gguf", "bitsandbytes", "llama-cpp-python")


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=cwd)
        return (r.stdout.strip() or r.stderr.strip()) if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_info() -> dict:
    commit = _run(["git", "rev-parse", "HEAD"], REPO)
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no"], REPO)
    # which tracked files differ from the commit (a result file or a doc is not the code measured)
    paths = [line.split(None, 1)[1] for line in dirty.splitlines()] if dirty else []
    return {"commit": commit, "dirty": bool(dirty) if commit else None, "dirty_paths": paths,
            "branch": _run(["git", "rev-parse", "--abbrev-ref", "HEAD"], REPO)}


def machine_info() -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        cpuinfo = []
    flags: set[str] = set()
    physical = set()
    phys_id = "0"
    for line in cpuinfo:
        key, _, val = (s.strip() for s in line.partition(":"))
        if key == "model name" and "cpu_model" not in info:
            info["cpu_model"] = val
        elif key == "flags" and not flags:
            flags = set(val.split())
        elif key == "physical id":
            phys_id = val
        elif key == "core id":
            physical.add((phys_id, val))
    if physical:
        info["physical_cores"] = len(physical)
    info["isa"] = {f: f in flags for f in ISA_FLAGS} if flags else None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_total_gb"] = round(int(line.split()[1]) / 1024 ** 2, 1)
                break
        info["loadavg_at_start"] = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        pass
    gpu = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if gpu:
        info["gpus"] = gpu.splitlines()
    return info


def versions(sllm: str | None = None) -> dict:
    v: dict = {"python": platform.python_version()}
    for dist in PACKAGES:  # installed distributions, read without importing them
        try:
            v[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            v[dist] = None
    if sllm and Path(sllm).is_file():
        v["sllm"] = _run([sllm, "--version"])
    return v


def collect(sllm: str | None = None) -> dict:
    """{"command", "cwd", "date", "git", "machine", "versions"} for a result file."""
    return {"command": shlex.join([sys.executable, *sys.argv]), "cwd": os.getcwd(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "git": git_info(), "machine": machine_info(), "versions": versions(sllm)}
