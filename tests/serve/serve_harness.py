"""Starts `sllm serve` on a free loopback port for the end-to-end tests and stops it at the end."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request


class Server:
    """A live `sllm serve` (port 0: the kernel picks a free port, read back from the log)."""

    def __init__(self, sllm: str, model: str, *args: str, api_key: str | None = None):
        self.api_key = api_key
        cmd = [sllm, "serve", "--model", model, "--port", "0", *args]
        if api_key:
            cmd += ["--api-key", api_key]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace")
        self.lines: list[str] = []
        self.port = None
        got_port = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                m = re.search(r"listening on http://[\d.]+:(\d+)", line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    got_port.set()
            got_port.set()

        self.reader = threading.Thread(target=pump, daemon=True)
        self.reader.start()
        if not got_port.wait(120) or self.port is None:
            self.kill()
            raise RuntimeError("sllm serve did not start:\n" + "\n".join(self.lines[-30:]))
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sllm serve exited:\n" + "\n".join(self.lines[-30:]))
            status, _ = self.request("GET", "/health")
            if status == 200:
                return
            assert status == 503, status  # loading
            time.sleep(0.2)
        raise RuntimeError("sllm serve did not become healthy")

    def headers(self) -> dict:
        h = {"Content-Type": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def request(self, method: str, path: str, body=None, raw: bytes | None = None,
                headers: dict | None = None, timeout: float = 120):
        """(status, parsed JSON or text) of one request."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=headers if headers is not None else self.headers())
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def metrics(self) -> dict[str, float]:
        status, text = self.request("GET", "/metrics")
        assert status == 200, status
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def access_log(self) -> list[dict]:
        out = []
        for line in list(self.lines):
            i = line.find('{"')
            if i >= 0 and '"route"' in line:
                try:
                    out.append(json.loads(line[i:]))
                except ValueError:
                    pass
        return out

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


def wait_idle(srv: Server) -> dict:
    """The metrics once nothing runs or waits and the KV cache is empty (or after 60 s)."""
    deadline = time.time() + 60
    while True:
        m = srv.metrics()
        idle = (m["sllm_requests_running"], m["sllm_requests_waiting"],
                m["sllm_kv_cache_usage_percent"]) == (0, 0, 0)
        if idle or time.time() > deadline:
            return m
        time.sleep(0.1)


def default_model(repo: str) -> str | None:
    path = os.path.join(repo, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    return path if os.path.exists(path) else None


def script_args(doc: str, repo: str):
    """--sllm and --model (default: the default model) of a test script; exits 77 (ctest:
    skipped) when the model is absent."""
    import argparse
    import sys
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--sllm", required=True)
    ap.add_argument("--model", default=default_model(repo))
    args = ap.parse_args()
    if not args.model or not os.path.exists(args.model):
        print("SKIP: the default model is absent (scripts/setup.sh downloads it)")
        sys.exit(77)
    return args


class Checks:
    """Runs labelled checks, reporting each; a failure is printed and the next one runs."""

    def __init__(self):
        self.failures = 0

    def run(self, label: str, fn, *args):
        import traceback
        try:
            out = fn(*args)
            print(f"PASS {label}")
            return out
        except Exception:  # noqa: BLE001 - report and go on
            self.failures += 1
            print(f"FAIL {label}\n{traceback.format_exc()}")
            return None

    def exit_code(self) -> int:
        print("ALL PASSED" if self.failures == 0 else f"{self.failures} FAILED")
        return 1 if self.failures else 0
