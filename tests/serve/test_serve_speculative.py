#!/usr/bin/env python3
"""`sllm serve` with speculative decoding: greedy answers over HTTP equal those of the same server
without a draft, and /metrics counts the drafts.

    test_serve_speculative.py --sllm build/sllm [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

Servers: the target alone, --draft ngram (prompt lookup), and --draft-model with the target as
its own draft (greedy: every draft is accepted). Only the standard library is needed.
Exit code 0: all passed; 1: a check failed; 77: the default model is absent (ctest: skipped).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from serve_harness import Server, default_model, wait_idle  # noqa: E402

CTX = 1024
N = 48
PROPOSED, ACCEPTED = "sllm_spec_draft_tokens_total", "sllm_spec_accepted_tokens_total"


def office_prompts(n: int) -> list[str]:
    """Extraction prompts whose answers copy from the prompt: prompt lookup finds its drafts."""
    with open(os.path.join(REPO, "data", "office", "test.jsonl")) as f:
        return [json.loads(line)["prompt"] for line in f if line.strip()][:n]


PROMPTS = office_prompts(3) + ["The capital of France is", "def fibonacci(n):"]


def answers(srv: Server) -> list[tuple[str, str]]:
    """Greedy completion and chat answer of every prompt, sent together (a batch of drafts)."""
    name = srv.request("GET", "/v1/models")[1]["data"][0]["id"]

    def one(p: str) -> tuple[str, str]:
        s, r = srv.request("POST", "/v1/completions",
                           {"model": name, "prompt": p, "max_tokens": N, "temperature": 0})
        assert s == 200, (s, r)
        s, c = srv.request("POST", "/v1/chat/completions",
                           {"model": name, "messages": [{"role": "user", "content": p}],
                            "max_tokens": N, "temperature": 0})
        assert s == 200, (s, c)
        return r["choices"][0]["text"], c["choices"][0]["message"]["content"]

    with cf.ThreadPoolExecutor(len(PROMPTS)) as ex:
        return list(ex.map(one, PROMPTS))


def check_server(sllm: str, model: str, want: list[tuple[str, str]], name: str, *args: str) -> dict:
    with Server(sllm, model, "--ctx", str(CTX), "--max-seqs", "8", *args) as srv:
        try:
            got = answers(srv)
            diff = [(p, w, g) for p, w, g in zip(PROMPTS, want, got) if w != g]
            assert not diff, f"{name}: greedy answers differ from the target alone: {diff}"
            m = wait_idle(srv)
            assert m.get(PROPOSED, 0) > 0, f"{name}: no draft tokens counted: {m}"
            assert 0 <= m.get(ACCEPTED, -1) <= m[PROPOSED], f"{name}: {m}"
            print(f"PASS {name}: {len(PROMPTS)} prompts x 2 routes equal the target's; "
                  f"{m[ACCEPTED]:.0f} of {m[PROPOSED]:.0f} drafts accepted", flush=True)
            return m
        except Exception:
            print("server log (tail):\n" + "\n".join(srv.lines[-30:]))
            raise


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sllm", required=True)
    ap.add_argument("--model")
    a = ap.parse_args()
    model = a.model or default_model(REPO)
    if not model or not os.path.exists(model):
        print("SKIP: the default model is absent (run scripts/setup.sh)")
        return 77
    try:
        with Server(a.sllm, model, "--ctx", str(CTX), "--max-seqs", "8") as srv:
            want = answers(srv)
            m = wait_idle(srv)
            assert m.get(PROPOSED, 0) == 0 and m.get(ACCEPTED, 0) == 0, m
        check_server(a.sllm, model, want, "ngram", "--draft", "ngram",
                     "--num-speculative-tokens", "4")
        m = check_server(a.sllm, model, want, "self-draft", "--draft-model", model,
                         "--num-speculative-tokens", "3")
        assert m[ACCEPTED] == m[PROPOSED], f"a greedy self-draft must be accepted throughout: {m}"
    except Exception:
        print(f"FAIL\n{traceback.format_exc()}", flush=True)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
