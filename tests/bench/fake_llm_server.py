#!/usr/bin/env python3
"""A fake LLM server for the `sllm bench` load tests: OpenAI-compatible (/v1/completions,
/v1/chat/completions, /v1/models) and TGI (/generate, /generate_stream, /health) endpoints that
answer with fixed tokens at configured delays, or fail in a chosen way.

Prints "PORT <n>" on the first line of stdout once it listens (--port 0 picks a free port).
Modes: ok, garbage (unparsable bodies and events), http500, hang (never answers), slow (a
large per-token delay), truncate (streams end without their end marker), fail_every (every
--fail-every'th request is an HTTP 500)."""
import argparse
import itertools
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
COUNTER = itertools.count(1)
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # streams end when the connection closes

    def log_message(self, *args):
        pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self.send_json(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self.send_json(200, {"object": "list",
                                 "data": [{"id": ARGS.model, "object": "model"}]})
        else:
            self.send_json(404, {"error": "not found: " + self.path})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self.send_json(400, {"error": "request body is not JSON"})
        with LOCK:
            n = next(COUNTER)
        mode = ARGS.mode
        if mode == "fail_every" and n % ARGS.fail_every == 0:
            mode = "http500"
        if mode == "http500":
            return self.send_json(500, {"error": {"message": "internal failure", "code": 500}})
        if mode == "hang":
            time.sleep(3600)
            return
        tgi = self.path.startswith("/generate")
        if tgi:
            ntok = int(req.get("parameters", {}).get("max_new_tokens", 16))
            stream = self.path == "/generate_stream"
        elif self.path in ("/v1/completions", "/v1/chat/completions"):
            ntok = int(req.get("max_tokens", 16))
            stream = bool(req.get("stream", False))
        else:
            return self.send_json(404, {"error": "not found: " + self.path})
        chat = self.path == "/v1/chat/completions"
        # OpenAI streams report usage only when asked; TGI's last event always has details.
        usage = ARGS.usage and (tgi or not stream or
                                req.get("stream_options", {}).get("include_usage", False))
        token_s = (ARGS.slow_token_ms if mode == "slow" else ARGS.token_ms) / 1000.0
        if mode == "garbage":
            body = b"data: {this is not json\n\n" if stream else b"<html>not json</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if stream else "text/html")
            self.end_headers()
            self.wfile.write(body)
            return
        if not stream:
            time.sleep(ARGS.ttft_ms / 1000.0 + token_s * (ntok - 1))
            text = "tok " * ntok
            if tgi:
                obj = {"generated_text": text}
                if usage:
                    obj["details"] = {"finish_reason": "length", "generated_tokens": ntok}
            else:
                choice = ({"message": {"role": "assistant", "content": text}} if chat
                          else {"text": text})
                choice.update({"index": 0, "finish_reason": "length"})
                obj = {"id": "x", "object": "text_completion", "choices": [choice]}
                if usage:
                    obj["usage"] = {"prompt_tokens": 5, "completion_tokens": ntok,
                                    "total_tokens": ntok + 5}
            return self.send_json(200, obj)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

        def event(obj):
            self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
            self.wfile.flush()

        try:
            if chat:  # a role-only first chunk, as OpenAI sends
                event({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
            time.sleep(ARGS.ttft_ms / 1000.0)
            per = max(1, ARGS.tokens_per_chunk)
            sent = 0
            while sent < ntok:
                if sent:
                    time.sleep(token_s * per)
                k = min(per, ntok - sent)
                sent += k
                text = "tok " * k
                if tgi:
                    last = sent >= ntok
                    ev = {"token": {"id": sent, "text": text, "logprob": 0.0, "special": False},
                          "generated_text": ("tok " * ntok) if last else None, "details": None}
                    if last and usage:
                        ev["details"] = {"finish_reason": "length", "generated_tokens": ntok}
                    if last and mode == "truncate":
                        return
                    event(ev)
                else:
                    delta = {"delta": {"content": text}} if chat else {"text": text}
                    delta["index"] = 0
                    event({"choices": [delta]})
            if tgi:
                return
            if mode == "truncate":
                return
            if usage:
                event({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": ntok,
                                                "total_tokens": ntok + 5}})
            self.wfile.write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", default="ok",
                   choices=["ok", "garbage", "http500", "hang", "slow", "truncate", "fail_every"])
    p.add_argument("--ttft-ms", type=float, default=50.0, help="delay before the first token")
    p.add_argument("--token-ms", type=float, default=20.0, help="delay between tokens")
    p.add_argument("--slow-token-ms", type=float, default=500.0, help="token delay in slow mode")
    p.add_argument("--tokens-per-chunk", type=int, default=1)
    p.add_argument("--no-usage", dest="usage", action="store_false",
                   help="never report usage / generated_tokens")
    p.add_argument("--fail-every", type=int, default=2)
    p.add_argument("--model", default="fake-model")
    ARGS = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    print("PORT", server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
