#!/usr/bin/env python3
"""End-to-end tests of `sllm serve` with the official clients (openai, text-generation).

    test_serve.py --sllm build/sllm [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

Starts the server on a free loopback port, runs every check, kills the server at the end.
Exit code 0: all passed; 1: a check failed; 77: the default model is absent (ctest: skipped).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from serve_harness import Server, default_model, wait_idle  # noqa: E402

import openai  # noqa: E402
import text_generation  # noqa: E402

PROMPT = "The capital of France is"
QUESTION = "What is the capital of France?"
CTX = 512
CHECKS: list = []


def check(fn):
    CHECKS.append(fn)
    return fn


class Ctx:
    sllm: str
    model: str
    srv: Server
    oai: openai.OpenAI
    tgi: text_generation.Client
    name: str


def sllm_generate(c: Ctx, prompt: str, n: int, chat: bool) -> dict:
    out = subprocess.run([c.sllm, "generate", "--model", c.model, "--prompt", prompt, "--temperature",
                          "0", "-n", str(n), "--json", "--chat-template", "true" if chat else "false",
                          "--ctx", str(CTX)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def complete(c: Ctx, prompt: str, n: int = 24, **kw):
    return c.oai.completions.create(model=c.name, prompt=prompt, max_tokens=n, temperature=0, **kw)


@check
def models_lists_the_served_model(c: Ctx):
    ids = [m.id for m in c.oai.models.list().data]
    assert ids == [c.name], ids


@check
def completion_equals_sllm_generate(c: Ctx):
    ref = sllm_generate(c, PROMPT, 24, chat=False)
    r = complete(c, PROMPT)
    assert r.choices[0].text == ref["text"], (r.choices[0].text, ref["text"])
    assert r.usage.prompt_tokens == ref["prompt_tokens"], (r.usage, ref)
    assert r.usage.completion_tokens == ref["completion_tokens"], (r.usage, ref)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.choices[0].finish_reason == ("length" if ref["finish_reason"] == "length" else "stop")


@check
def chat_equals_sllm_generate_with_template(c: Ctx):
    ref = sllm_generate(c, QUESTION, 32, chat=True)
    r = c.oai.chat.completions.create(model=c.name, max_tokens=32, temperature=0,
                                      messages=[{"role": "user", "content": QUESTION}])
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == ref["text"], (r.choices[0].message.content, ref["text"])
    assert r.usage.prompt_tokens == ref["prompt_tokens"]
    assert r.usage.completion_tokens == ref["completion_tokens"]
    # max_completion_tokens is the same limit under its newer name.
    r2 = c.oai.chat.completions.create(model=c.name, max_completion_tokens=32, temperature=0,
                                       messages=[{"role": "user", "content": QUESTION}])
    assert r2.choices[0].message.content == ref["text"]


@check
def streaming_equals_plain_with_usage(c: Ctx):
    plain = complete(c, PROMPT).choices[0].text
    chunks = list(complete(c, PROMPT, stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == plain, (text, plain)
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finals == ["length"], finals
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 24, chunks[-1]
    msgs = [{"role": "user", "content": QUESTION}]
    plain = c.oai.chat.completions.create(model=c.name, max_tokens=20, temperature=0, messages=msgs)
    stream = c.oai.chat.completions.create(model=c.name, max_tokens=20, temperature=0, messages=msgs,
                                           stream=True)
    parts = list(stream)
    assert parts[0].choices[0].delta.role == "assistant"
    text = "".join(p.choices[0].delta.content or "" for p in parts)
    assert text == plain.choices[0].message.content, (text, plain.choices[0].message.content)
    assert parts[-1].choices[0].finish_reason == plain.choices[0].finish_reason


@check
def stop_sequences_cut_the_text(c: Ctx):
    full = complete(c, PROMPT, 24).choices[0].text
    words = full.split()
    assert len(words) >= 3, full
    stop = " " + words[2]
    r = complete(c, PROMPT, 24, stop=[stop])
    assert r.choices[0].text == full[:full.index(stop)], (r.choices[0].text, full, stop)
    assert r.choices[0].finish_reason == "stop"
    streamed = "".join(ch.choices[0].text for ch in complete(c, PROMPT, 24, stop=stop, stream=True))
    assert streamed == r.choices[0].text, (streamed, r.choices[0].text)


@check
def n_and_seed(c: Ctx):
    kw = dict(model=c.name, prompt=PROMPT, max_tokens=12, temperature=1.0, seed=5)
    a = c.oai.completions.create(n=2, **kw)
    b = c.oai.completions.create(n=2, **kw)
    assert [x.index for x in a.choices] == [0, 1]
    assert [x.text for x in a.choices] == [x.text for x in b.choices]  # same seed, same texts
    assert 0 < a.usage.completion_tokens <= 24, a.usage


@check
def tgi_client_generate_and_stream(c: Ctx):
    oai = complete(c, PROMPT, 20)
    ref, why = oai.choices[0].text, oai.choices[0].finish_reason
    r = c.tgi.generate(PROMPT, max_new_tokens=20)
    assert r.generated_text == ref, (r.generated_text, ref)
    d = r.details
    assert d.finish_reason == ("length" if why == "length" else "eos_token"), (d, why)
    assert d.generated_tokens == oai.usage.completion_tokens, (d, oai.usage)
    assert "".join(t.text for t in d.tokens) == ref
    assert all(isinstance(t.id, int) and t.id >= 0 for t in d.tokens)
    events = list(c.tgi.generate_stream(PROMPT, max_new_tokens=20))
    assert "".join(e.token.text for e in events) == ref
    assert [e.token.id for e in events] == [t.id for t in d.tokens]
    assert events[-1].generated_text == ref
    assert events[-1].details.generated_tokens == d.generated_tokens
    assert all(e.generated_text is None for e in events[:-1])
    full = c.tgi.generate(PROMPT, max_new_tokens=20, return_full_text=True)
    assert full.generated_text == PROMPT + ref
    stop = ref.split()[1]  # a word of the greedy answer
    r = c.tgi.generate(PROMPT, max_new_tokens=20, stop_sequences=[stop])
    assert r.details.finish_reason == "stop_sequence", r.details
    assert r.generated_text == ref[:ref.index(stop)]
    # Sampling with a seed reports and honours it.
    a = c.tgi.generate(PROMPT, max_new_tokens=8, do_sample=True, seed=11)
    b = c.tgi.generate(PROMPT, max_new_tokens=8, do_sample=True, seed=11)
    assert a.generated_text == b.generated_text and a.details.seed == 11


@check
def logprobs_through_the_official_clients(c: Ctx):
    # The values themselves are checked against transformers in test_serve_logprobs.py; here the
    # clients parse the shapes and the greedy token is its own best alternative.
    msgs = [{"role": "user", "content": QUESTION}]
    r = c.oai.chat.completions.create(model=c.name, max_tokens=8, temperature=0, messages=msgs,
                                      logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens, (content, r.usage)
    for e in content:
        assert len(e.top_logprobs) == 3 and e.top_logprobs[0].token == e.token, e
        assert e.top_logprobs[0].logprob == e.logprob <= 0, e
    parts = list(c.oai.chat.completions.create(model=c.name, max_tokens=8, temperature=0,
                                               messages=msgs, logprobs=True, top_logprobs=3,
                                               stream=True))
    streamed = [e for p in parts if p.choices and p.choices[0].logprobs
                for e in p.choices[0].logprobs.content]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in content]
    lp = complete(c, PROMPT, 8, logprobs=2).choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 8, lp
    assert all(max(t.values()) == v for t, v in zip(lp.top_logprobs, lp.token_logprobs)), lp
    r = c.tgi.generate(PROMPT, max_new_tokens=8, top_n_tokens=2)
    assert all(t.logprob is not None and t.logprob <= 0 for t in r.details.tokens), r.details
    events = list(c.tgi.generate_stream(PROMPT, max_new_tokens=8, top_n_tokens=2))
    assert [e.token.logprob for e in events] == [t.logprob for t in r.details.tokens]
    assert all(len(e.top_tokens) == 2 and e.top_tokens[0].id == e.token.id for e in events)


@check
def json_object_mode_answers_one_json_object(c: Ctx):
    msgs = [{"role": "user", "content": "Reply in JSON with the keys name and age. "
                                        "Maria is 34 years old."}]
    fmt = {"type": "json_object"}
    for temperature in (0, 1.0):
        r = c.oai.chat.completions.create(model=c.name, max_tokens=96, temperature=temperature,
                                          seed=7, messages=msgs, response_format=fmt)
        ch = r.choices[0]
        # Ends where the object closes, with nothing after it but whitespace.
        assert ch.finish_reason == "stop", (ch.finish_reason, ch.message.content)
        assert isinstance(json.loads(ch.message.content), dict), ch.message.content
    parts = list(c.oai.chat.completions.create(model=c.name, max_tokens=96, temperature=0,
                                               messages=msgs, response_format=fmt, stream=True))
    streamed = "".join(p.choices[0].delta.content or "" for p in parts if p.choices)
    plain = c.oai.chat.completions.create(model=c.name, max_tokens=96, temperature=0,
                                          messages=msgs, response_format=fmt)
    assert streamed == plain.choices[0].message.content, (streamed, plain)
    ok = {"model": c.name, "messages": msgs, "max_tokens": 4}
    expect_error(c, "/v1/chat/completions", 400, "json_schema is not supported",
                 {**ok, "response_format": {"type": "json_schema", "json_schema": {}}})
    expect_error(c, "/v1/chat/completions", 400, "must be text or json_object",
                 {**ok, "response_format": {"type": "xml"}})


@check
def tgi_routes_info_tokenize_generate(c: Ctx):
    s, info = c.srv.request("GET", "/info")
    assert s == 200 and info["model_id"] == c.name and info["max_total_tokens"] == CTX, info
    s, toks = c.srv.request("POST", "/tokenize", {"inputs": PROMPT})
    assert s == 200 and "".join(t["text"] for t in toks).endswith(PROMPT), toks
    assert all(t["stop"] - t["start"] == len(t["text"].encode()) for t in toks), toks
    s, g = c.srv.request("POST", "/generate", {"inputs": PROMPT, "parameters": {"max_new_tokens": 5}})
    assert s == 200 and set(g) == {"generated_text"}, g
    s, e = c.srv.request("POST", "/generate", {"inputs": PROMPT, "parameters": {"top_p": 1.5}})
    assert s == 422 and e["error_type"] == "validation" and "top_p" in e["error"], (s, e)
    try:
        c.tgi.generate(PROMPT, max_new_tokens=5, watermark=True)
        raise AssertionError("watermark accepted")
    except text_generation.errors.ValidationError as err:
        assert "watermark" in str(err)


@check
def concurrent_answers_equal_alone(c: Ctx):
    prompts = [f"{PROMPT}", "Once upon a time", "def fibonacci(n):", "The three primary colors are",
               "In 1492,", "Water boils at", "My favourite food is", "The quick brown fox"]
    alone = [complete(c, p, 16).choices[0].text for p in prompts]
    with cf.ThreadPoolExecutor(len(prompts)) as ex:
        together = list(ex.map(lambda p: complete(c, p, 16).choices[0].text, prompts))
    assert together == alone, [(a, b) for a, b in zip(alone, together) if a != b]


def expect_error(c: Ctx, path: str, status: int, says: str, body=None, raw: bytes | None = None):
    s, e = c.srv.request("POST", path, body, raw=raw)
    assert s == status, (path, body, raw, s, e)
    msg = e["error"]["message"] if path.startswith("/v1/") else e["error"]
    assert says in msg, (says, msg)
    if path.startswith("/v1/"):
        assert set(e["error"]) == {"message", "type", "param", "code"}, e


@check
def bad_requests_get_clear_errors_and_the_server_keeps_serving(c: Ctx):
    v1 = "/v1/completions"
    ok = {"model": c.name, "prompt": PROMPT, "max_tokens": 4}
    expect_error(c, v1, 400, "not valid JSON", raw=b'{"model": "x", "prompt": ')
    expect_error(c, v1, 400, "UTF-8", raw=b'{"model": "m", "prompt": "\xff\xfe"}')
    expect_error(c, v1, 400, "must be an integer", {**ok, "max_tokens": "4"})
    expect_error(c, v1, 400, "must be a number", {**ok, "temperature": "hot"})
    expect_error(c, v1, 400, "max_tokens", {**ok, "max_tokens": -5})
    expect_error(c, v1, 400, "max_tokens", {**ok, "max_tokens": 10**12})
    expect_error(c, v1, 400, "exceeds max_total_tokens", {**ok, "max_tokens": CTX - 2})
    expect_error(c, v1, 400, "tokens but at most", {**ok, "prompt": "hello " * 2000})
    expect_error(c, v1, 404, "does not exist", {**ok, "model": "gpt-9"})
    expect_error(c, v1, 400, "not supported", {**ok, "echo": True})
    expect_error(c, v1, 400, "[0, 20]", {**ok, "logprobs": 21})
    expect_error(c, "/v1/chat/completions", 400, "needs 'logprobs' to be true",
                 {"model": c.name, "messages": [{"role": "user", "content": "x"}],
                  "top_logprobs": 2})
    expect_error(c, v1, 400, "not a recognized", {**ok, "frobnicate": True})
    expect_error(c, "/v1/chat/completions", 400, "messages",
                 {"model": c.name, "messages": "hi"})
    expect_error(c, "/generate", 422, "max_new_tokens",
                 {"inputs": "x", "parameters": {"max_new_tokens": 0}})
    s, e = c.srv.request("POST", "/nope", {})
    assert s == 404, s
    expect_error(c, "/v1/load_lora_adapter", 404, "--allow-adapter-loading",
                 {"lora_name": "a", "lora_path": "/tmp"})
    # A body over --max-body-bytes (1 MiB by default) is read, discarded and refused.
    with socket.create_connection(("127.0.0.1", c.srv.port), timeout=60) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 2000000\r\n\r\n" + b" " * 2000000)
        head = sock.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head
    # The official client maps them onto its exceptions.
    try:
        c.oai.completions.create(model="gpt-9", prompt="x", max_tokens=2)
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as err:
        body = err.body.get("error", err.body)
        assert body["code"] == "model_not_found", err.body
    try:
        complete(c, PROMPT, -1)
        raise AssertionError("negative max_tokens accepted")
    except openai.BadRequestError:
        pass
    assert complete(c, PROMPT, 4).choices[0].text  # still serving
    m = c.srv.metrics()
    assert m.get('sllm_rejections_total{reason="prompt_too_long"}', 0) >= 1, m


def stream_and_maybe_drop(url: str, name: str, i: int, drop: bool) -> str:
    body = json.dumps({"model": name, "prompt": f"Story number {i}:", "max_tokens": 24,
                       "temperature": 0.8, "seed": i, "stream": True}).encode()
    req = urllib.request.Request(url + "/v1/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        assert r.status == 200
        got = []
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                return "done"
            j = json.loads(line[6:])
            assert "error" not in j, j
            got.append(j)
            if drop and len(got) >= 2:
                return "dropped"  # leaving the with-block closes the connection
    raise AssertionError(f"stream {i} ended without [DONE]")


@check
def load_64_streams_a_third_disconnect(c: Ctx):
    total = 96
    with cf.ThreadPoolExecutor(64) as ex:
        outcomes = list(ex.map(lambda i: stream_and_maybe_drop(c.srv.url, c.name, i, i % 3 == 0),
                               range(total)))
    assert outcomes.count("done") == total - total // 3 and outcomes.count("dropped") == total // 3
    m = wait_idle(c.srv)
    assert m["sllm_requests_running"] == 0 and m["sllm_requests_waiting"] == 0, m
    assert m["sllm_kv_cache_usage_percent"] == 0, m
    assert m["sllm_time_to_first_token_seconds_count"] > 0
    assert m["sllm_inter_token_latency_seconds_count"] > 0
    assert m["sllm_batch_size_count"] > 0 and m["sllm_generation_tokens_total"] > 0
    assert any(k.startswith("sllm_request_queue_seconds_bucket") for k in m)
    # Every request left one access-log line with its id, route, status and latency.
    log = [x for x in c.srv.access_log() if x["route"] == "/v1/completions"]
    assert len(log) >= total and all({"id", "status", "latency_ms"} <= set(x) for x in log)


@check
def overload_gets_429_auth_and_sigterm(c: Ctx):
    """A second server: two sequences, two waiting at most, an API key."""
    with Server(c.sllm, c.model, "--ctx", str(CTX), "--max-seqs", "2", "--max-waiting", "2",
                api_key="sekret") as srv:
        s, e = srv.request("POST", "/v1/completions", {"model": c.name, "prompt": "x"},
                           headers={"Content-Type": "application/json"})
        assert s == 401 and "API key" in e["error"]["message"], (s, e)
        s, _ = srv.request("GET", "/health", headers={})
        assert s == 200
        body = {"model": c.name, "prompt": PROMPT, "max_tokens": 8, "temperature": 0}
        with cf.ThreadPoolExecutor(24) as ex:
            codes = list(ex.map(lambda _: srv.request("POST", "/v1/completions", body, timeout=120)[0],
                                range(24)))
        assert set(codes) <= {200, 429} and codes.count(429) > 0 and codes.count(200) > 0, codes
        m = srv.metrics()
        assert m['sllm_rejections_total{reason="queue_full"}'] == codes.count(429), m
        # SIGTERM: a running stream still finishes, then the process exits 0.
        req = urllib.request.Request(
            srv.url + "/v1/completions", method="POST", headers=srv.headers(),
            data=json.dumps({**body, "max_tokens": 40, "stream": True}).encode())
        resp = urllib.request.urlopen(req, timeout=120)
        first = resp.readline()
        assert first.startswith(b"data: "), first
        rc_box = {}
        t = threading.Thread(target=lambda: rc_box.setdefault("rc", srv.terminate(60)))
        t.start()
        rest = resp.read().decode()
        t.join()
        assert rest.rstrip().endswith("data: [DONE]"), rest[-200:]
        assert rc_box["rc"] == 0, rc_box
        assert any("SIGTERM" in line for line in srv.lines)


@check
def timeout_cancels_with_504(c: Ctx):
    with Server(c.sllm, c.model, "--ctx", str(CTX), "--timeout", "0.5") as srv:
        body = {"model": c.name, "prompt": PROMPT, "max_tokens": 480, "temperature": 0,
                "ignore_eos": True}
        s, e = srv.request("POST", "/v1/completions", body)
        assert s == 504 and "did not finish" in e["error"]["message"], (s, e)
        m = wait_idle(srv)
        assert m["sllm_requests_running"] == 0 and m["sllm_kv_cache_usage_percent"] == 0, m


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sllm", required=True)
    ap.add_argument("--model")
    ap.add_argument("-k", help="run only checks whose name contains this")
    a = ap.parse_args()
    model = a.model or default_model(REPO)
    if not model or not os.path.exists(model):
        print("SKIP: the default model is absent (run scripts/setup.sh)")
        return 77
    c = Ctx()
    c.sllm, c.model = a.sllm, model
    c.srv = Server(a.sllm, model, "--ctx", str(CTX), "--max-seqs", "8", "--max-waiting", "256")
    failed = 0
    ran = 0
    try:
        c.name = c.srv.request("GET", "/v1/models")[1]["data"][0]["id"]
        c.oai = openai.OpenAI(base_url=c.srv.url + "/v1", api_key="none", max_retries=0, timeout=300)
        c.tgi = text_generation.Client(c.srv.url, timeout=300)
        for fn in CHECKS:
            if a.k and a.k not in fn.__name__:
                continue
            ran += 1
            t0 = time.time()
            try:
                fn(c)
                print(f"PASS {fn.__name__} ({time.time() - t0:.1f} s)", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {fn.__name__}\n{traceback.format_exc()}", flush=True)
    finally:
        c.srv.kill()
        if failed:
            print("server log (tail):\n" + "\n".join(c.srv.lines[-40:]))
    print(f"{ran - failed}/{ran} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
