#!/usr/bin/env python3
"""`sllm serve` log-probabilities against transformers: the log_softmax of the model's raw logits.

    test_serve_logprobs.py --sllm build/sllm [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

Greedy requests with log-probabilities through TGI (/generate with details and top_n_tokens, and
/generate_stream), OpenAI completions (legacy logprobs) and chat (logprobs + top_logprobs), plain
and streamed. The reference: transformers (fp32, the GGUF dequantized) runs the prompt + the
generated tokens once; each token's log-probability and the top-N alternatives must match its
log_softmax within 1e-4. A speculative server (--draft ngram) must report the same values.
Exit code 0: all passed; 1: a check failed; 77: the default model is absent (ctest: skipped).
"""
from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
from serve_harness import Checks, Server, script_args  # noqa: E402

TOL = 1e-4
TOP = 5
N = 12
PROMPTS = ["The capital of France is", "def fibonacci(n):\n"]


def sse_events(srv: Server, path: str, body: dict) -> list[dict]:
    """The JSON events of one streamed request (data lines; [DONE] dropped)."""
    import urllib.request
    req = urllib.request.Request(srv.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers=srv.headers())
    out = []
    with urllib.request.urlopen(req, timeout=120) as r:
        for raw in r:
            line = raw.decode().strip()
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                out.append(json.loads(line[5:]))
    return out


def post(srv: Server, path: str, body: dict) -> dict:
    status, r = srv.request("POST", path, body)
    assert status == 200, (path, status, r)
    return r


def tgi_generate(srv: Server, prompt: str) -> tuple[list[int], list[float], list[list[dict]]]:
    r = post(srv, "/generate", {"inputs": prompt, "parameters": {
        "max_new_tokens": N, "details": True, "top_n_tokens": TOP}})
    d = r["details"]
    ids = [t["id"] for t in d["tokens"]]
    assert ids and len(d["top_tokens"]) == len(ids), d
    return ids, [t["logprob"] for t in d["tokens"]], d["top_tokens"]


def check_reference(model, srv: Server, prompt: str) -> tuple[list[int], list[float]]:
    import torch
    from hf_reference import logits_of
    ids, lps, tops = tgi_generate(srv, prompt)
    prompt_ids = [t["id"] for t in post(srv, "/tokenize", {"inputs": prompt})]
    ref = torch.log_softmax(logits_of(model, prompt_ids + ids).double(), dim=-1)
    worst = 0.0
    for i, (tok, lp, top) in enumerate(zip(ids, lps, tops)):
        row = ref[len(prompt_ids) - 1 + i]
        worst = max(worst, abs(lp - row[tok].item()))
        assert abs(lp - row[tok].item()) <= TOL, (prompt, i, tok, lp, row[tok].item())
        assert len(top) == TOP and top[0]["id"] == tok, (prompt, i, top)  # greedy: the argmax
        want = row.topk(TOP).values.tolist()
        for j, t in enumerate(top):
            assert abs(t["logprob"] - row[t["id"]].item()) <= TOL, (prompt, i, j, t)
            assert abs(t["logprob"] - want[j]) <= TOL, (prompt, i, j, t, want)
    print(f"  reference: {prompt!r}: {len(ids)} tokens, top {TOP}, max |diff| {worst:.2e}")
    return ids, lps


def check_openai(srv: Server, name: str, prompt: str, ids: list[int], lps: list[float]):
    base = {"model": name, "max_tokens": N, "temperature": 0}
    # Completions (legacy): the same tokens as TGI's, the same values.
    c = post(srv, "/v1/completions", {**base, "prompt": prompt, "logprobs": TOP})["choices"][0]
    lp = c["logprobs"]
    assert len(lp["tokens"]) == len(ids), (lp, ids)
    for i, v in enumerate(lp["token_logprobs"]):
        assert abs(v - lps[i]) <= 1e-6, (i, v, lps[i])
        top = lp["top_logprobs"][i]
        assert 1 <= len(top) <= TOP and abs(max(top.values()) - v) <= 1e-6, (i, top, v)
    if not any("\ufffd" in t for t in lp["tokens"]):
        assert "".join(lp["tokens"]) == c["text"], (lp["tokens"], c["text"])
    assert lp["text_offset"] == [sum(len(t) for t in lp["tokens"][:i])
                                 for i in range(len(ids))], lp["text_offset"]
    events = sse_events(srv, "/v1/completions",
                        {**base, "prompt": prompt, "logprobs": TOP, "stream": True})
    streamed = [x for e in events for ch in e["choices"] if ch["logprobs"]
                for x in ch["logprobs"]["token_logprobs"]]
    assert streamed == lp["token_logprobs"], (streamed, lp["token_logprobs"])

    # Chat: content entries with bytes and top_logprobs; the stream's entries are the same.
    body = {**base, "messages": [{"role": "user", "content": prompt}], "logprobs": True,
            "top_logprobs": 3}
    c = post(srv, "/v1/chat/completions", body)["choices"][0]
    content = c["logprobs"]["content"]
    assert content, c
    for e in content:
        assert set(e) == {"token", "logprob", "bytes", "top_logprobs"}, e
        assert len(e["top_logprobs"]) == 3 and e["top_logprobs"][0]["logprob"] == e["logprob"], e
        assert e["logprob"] <= 0 and all(t["logprob"] <= e["logprob"] for t in e["top_logprobs"])
    text = b"".join(bytes(e["bytes"]) for e in content).decode("utf-8", "replace")
    assert text.startswith(c["message"]["content"]), (text, c["message"]["content"])
    events = sse_events(srv, "/v1/chat/completions", {**body, "stream": True})
    streamed = [x for e in events for ch in e["choices"] if ch["logprobs"]
                for x in ch["logprobs"]["content"]]
    assert streamed == content, (streamed, content)
    # Without logprobs: null, as before.
    c = post(srv, "/v1/chat/completions", {**base, "messages": body["messages"]})["choices"][0]
    assert c["logprobs"] is None, c


def check_tgi_stream(srv: Server, prompt: str, ids: list[int], lps: list[float]):
    events = sse_events(srv, "/generate_stream",
                        {"inputs": prompt, "parameters": {"max_new_tokens": N, "top_n_tokens": 2}})
    assert [e["token"]["id"] for e in events] == ids, (events, ids)
    assert [e["token"]["logprob"] for e in events] == lps, (events, lps)
    assert all(len(e["top_tokens"]) == 2 for e in events), events


def check_errors(srv: Server, name: str):
    chat = {"model": name, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    for body, param in [({**chat, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
                        ({**chat, "top_logprobs": 2}, "top_logprobs"),
                        ({**chat, "logprobs": "yes"}, "logprobs")]:
        status, r = srv.request("POST", "/v1/chat/completions", body)
        assert status == 400 and r["error"]["param"] == param, (body, status, r)
    status, r = srv.request("POST", "/v1/completions",
                            {"model": name, "prompt": "x", "logprobs": -1})
    assert status == 400 and r["error"]["param"] == "logprobs", (status, r)
    status, r = srv.request("POST", "/generate",
                            {"inputs": "x", "parameters": {"top_n_tokens": 21}})
    assert status == 422 and r["error_type"] == "validation", (status, r)


def main() -> int:
    args = script_args(__doc__, REPO)
    from hf_reference import load_model
    model = load_model(os.path.dirname(os.path.abspath(args.model)),
                       os.path.basename(args.model))
    checks = Checks()
    plain = {}
    # Prefix caching off: these checks send each prompt several times and compare the values
    # exactly, and a request that reuses an earlier one's cached K/V computes its last prompt
    # tokens in a smaller matmul, equal only up to float rounding (test_serve_preemption.py
    # covers the cache).
    with Server(args.sllm, args.model, "--ctx", "512", "--no-prefix-caching") as srv:
        name = srv.request("GET", "/v1/models")[1]["data"][0]["id"]
        for p in PROMPTS:
            got = checks.run(f"transformers reference {p!r}", check_reference, model, srv, p)
            if got:
                plain[p] = got
                checks.run(f"openai {p!r}", check_openai, srv, name, p, *got)
                checks.run(f"tgi stream {p!r}", check_tgi_stream, srv, p, *got)
        checks.run("bad values", check_errors, srv, name)
    with Server(args.sllm, args.model, "--ctx", "512", "--draft", "ngram") as srv:
        for p, (ids, lps) in plain.items():
            def same(p=p, ids=ids, lps=lps):
                sids, slps, _ = tgi_generate(srv, p)
                assert sids == ids, (sids, ids)
                assert max(abs(a - b) for a, b in zip(slps, lps)) <= TOL, (slps, lps)
            checks.run(f"speculative {p!r}", same)
    return checks.exit_code()


if __name__ == "__main__":
    sys.exit(main())
