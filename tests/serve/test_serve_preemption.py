#!/usr/bin/env python3
"""`sllm serve` with a KV pool far smaller than the batch needs: concurrent chat requests that
share a system prompt are admitted by what they need now, preempted and recomputed when the pool
runs out, and share the cached system prompt; every answer (greedy, and sampled with a seed)
equals the one the server gives the request alone with prefix caching off, and /metrics counts
the preemptions and the prefix-cache hits.

    test_serve_preemption.py --sllm build/sllm [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

Only the standard library is needed. Exit code 0: all passed; 1: a check failed; 77: the default
model is absent (ctest: skipped).
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from serve_harness import Checks, Server, script_args, wait_idle  # noqa: E402

CTX = 256  # the pool is one context: 8 sequences of ~150 tokens need far more
N = 64
SYSTEM = ("You are a careful assistant for an office team. Answer in one short paragraph, "
          "plainly, without lists, and say so when you do not know.")
QUESTIONS = ["What is the capital of France?", "Name three uses of a spreadsheet.",
             "How do I write a polite reminder email?", "What is a quarterly report?",
             "Explain what a KPI is.", "How long should a meeting agenda be?",
             "What does 'out of office' mean?", "Give a tip for naming files."]


def ask(srv: Server, name: str, i: int) -> str:
    body = {"model": name, "max_tokens": N, "ignore_eos": True,
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": QUESTIONS[i]}]}
    # Even requests greedy, odd ones sampled with their own seed.
    body.update({"temperature": 0} if i % 2 == 0 else {"temperature": 0.8, "seed": 100 + i})
    s, r = srv.request("POST", "/v1/chat/completions", body)
    assert s == 200, (s, r)
    return r["choices"][0]["message"]["content"]


def server(sllm: str, model: str, *args: str) -> Server:
    return Server(sllm, model, "--ctx", str(CTX), "--max-seqs", "8",
                  f"engine.kv_tokens={CTX}", *args)


def alone(a) -> tuple[str, list[str]]:
    """The model id and each answer alone (one request at a time, prefix caching off)."""
    with server(a.sllm, a.model, "--no-prefix-caching") as srv:
        name = srv.request("GET", "/v1/models")[1]["data"][0]["id"]
        want = [ask(srv, name, i) for i in range(len(QUESTIONS))]
        m = wait_idle(srv)
        assert m["sllm_preemptions_total"] == 0, m
        assert m["sllm_prefix_cache_hits_total"] == 0, m
        return name, want


def together(a, name: str, want: list[str]):
    with server(a.sllm, a.model) as srv:
        try:
            ask(srv, name, 0)  # caches the system prompt
            with cf.ThreadPoolExecutor(len(QUESTIONS)) as ex:
                got = list(ex.map(lambda i: ask(srv, name, i), range(len(QUESTIONS))))
            diff = [(q, w, g) for q, w, g in zip(QUESTIONS, want, got) if w != g]
            assert not diff, f"answers differ from the requests alone: {diff}"
            m = wait_idle(srv)
            assert m["sllm_preemptions_total"] > 0, m
            assert m["sllm_prefix_cache_hits_total"] > 0, m
            rate = m["sllm_prefix_cache_hit_rate"]
            assert abs(rate - m["sllm_prefix_cache_hits_total"] /
                       m["sllm_prefix_cache_queries_total"]) < 1e-9, m
            print(f"{m['sllm_preemptions_total']:.0f} preemptions, prefix-cache hit rate "
                  f"{rate:.2f}", flush=True)
        except Exception:
            print("server log (tail):\n" + "\n".join(srv.lines[-30:]))
            raise


def main() -> int:
    a = script_args(__doc__, REPO)
    checks = Checks()
    got = checks.run("answers alone", alone, a)
    if got:
        checks.run(f"{len(QUESTIONS)} concurrent answers equal those alone", together, a, *got)
    return checks.exit_code()


if __name__ == "__main__":
    sys.exit(main())
