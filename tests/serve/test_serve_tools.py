#!/usr/bin/env python3
"""`sllm serve` with tools: chats that offer tools and carry tool turns are rendered by the chat
template as transformers renders them, and answers come back in OpenAI's tool-call shape.

    test_serve_tools.py --sllm build/sllm [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

The server runs with --chat-template-file set to Qwen2.5's template (tests/data/chat_templates),
which offers tools with <tool_call> tags. The prompt token count of each request must equal the
length of transformers' rendering of the same conversation (render_jinja_template, the renderer
of apply_chat_template) tokenized by transformers' tokenizer of the same GGUF file. A server on
the model's own template (SmolLM2: no tools) refuses tools with a 400.
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

import hf_reference  # noqa: E402
import openai  # noqa: E402
from transformers.utils.chat_template_utils import render_jinja_template  # noqa: E402

NAME = "served"
TEMPLATE = os.path.join(REPO, "tests", "data", "chat_templates", "Qwen-Qwen2.5-7B-Instruct.jinja")
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
ASK = [{"role": "system", "content": "You can call tools."},
       {"role": "user", "content": "What is the weather in Paris? Use the get_weather tool."}]
ROUND = ASK + [
    {"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "22 degrees and sunny"}]


def expected_prompt_tokens(tok, template: str, messages: list, tools: list | None) -> int:
    # Templates read tool-call arguments as objects, as the server passes them.
    msgs = json.loads(json.dumps(messages))
    for m in msgs:
        for call in m.get("tool_calls") or []:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    rendered, _ = render_jinja_template(conversations=[msgs], tools=tools, chat_template=template,
                                        add_generation_prompt=True, bos_token=tok.bos_token,
                                        eos_token=tok.eos_token)
    ids = hf_reference.encode_default(tok, rendered[0])
    return len(ids)  # the template writes no BOS and SmolLM2 adds none


def prompts_render_as_transformers(oai, name, tok, template):
    for messages, tools, choice in ((ASK, [WEATHER], "auto"), (ROUND, [WEATHER], "auto"),
                                    (ROUND, [WEATHER], "none"), (ROUND, None, None)):
        kw = {"tools": tools} if tools else {}
        if choice:
            kw["tool_choice"] = choice
        r = oai.chat.completions.create(model=name, messages=messages, max_tokens=1, **kw)
        shown = tools if choice != "none" else None
        want = expected_prompt_tokens(tok, template, messages, shown)
        assert r.usage.prompt_tokens == want, (len(messages), choice, r.usage.prompt_tokens, want)


def answers_have_the_tool_call_shape(oai, name):
    names = {WEATHER["function"]["name"]}
    r = oai.chat.completions.create(model=name, messages=ASK, tools=[WEATHER], max_tokens=48,
                                    temperature=0)
    ch = r.choices[0]
    calls = ch.message.tool_calls or []
    if calls:
        assert ch.finish_reason == "tool_calls", ch
        for c in calls:
            assert c.type == "function" and c.function.name in names and c.id.startswith("call_")
            assert isinstance(json.loads(c.function.arguments), dict), c
    else:
        assert ch.finish_reason in ("stop", "length") and isinstance(ch.message.content, str), ch
        assert "<tool_call>" not in ch.message.content or ch.finish_reason == "length", ch
    print(f"  answer: tool_calls={[c.function.name for c in calls]} "
          f"content={ch.message.content!r}")
    # Streamed: the same answer, assembled from the deltas.
    content, streamed_calls, finish = "", {}, None
    for p in oai.chat.completions.create(model=name, messages=ASK, tools=[WEATHER], max_tokens=48,
                                         temperature=0, stream=True):
        if not p.choices:
            continue
        d = p.choices[0].delta
        content += d.content or ""
        for tc in d.tool_calls or []:
            streamed_calls[tc.index] = (tc.function.name, tc.function.arguments)
        finish = p.choices[0].finish_reason or finish
    assert finish == ch.finish_reason, (finish, ch.finish_reason)
    assert content == (ch.message.content or ""), (content, ch.message.content)
    assert [streamed_calls[k] for k in sorted(streamed_calls)] == \
        [(c.function.name, c.function.arguments) for c in calls], streamed_calls


def tools_refused_without_a_tool_template(sllm, model):
    with Server(sllm, model, "--ctx", "1024", "--served-model-name", NAME) as srv:
        s, e = srv.request("POST", "/v1/chat/completions",
                           {"model": NAME, "messages": ASK, "tools": [WEATHER]})
        assert s == 400 and "does not offer tools" in e["error"]["message"], (s, e)
        assert e["error"]["param"] == "tools", e
        # tool_choice none needs no tool-capable template: tools are not shown.
        s, r = srv.request("POST", "/v1/chat/completions",
                           {"model": NAME, "messages": ASK, "tools": [WEATHER],
                            "tool_choice": "none", "max_tokens": 2})
        assert s == 200, (s, r)


def main() -> int:
    args = script_args(__doc__, REPO)
    template = open(TEMPLATE, encoding="utf-8").read()
    tok = hf_reference.load_tokenizer(os.path.dirname(os.path.abspath(args.model)),
                                      os.path.basename(args.model))
    checks = Checks()
    with Server(args.sllm, args.model, "--ctx", "1024", "--served-model-name", NAME,
                "--chat-template-file", TEMPLATE) as srv:
        oai = openai.OpenAI(base_url=f"http://127.0.0.1:{srv.port}/v1", api_key="none",
                            max_retries=0, timeout=300)
        checks.run("prompts render as transformers renders them", prompts_render_as_transformers,
                   oai, NAME, tok, template)
        checks.run("answers have the tool-call shape", answers_have_the_tool_call_shape, oai,
                   NAME)
    checks.run("tools refused without a tool template", tools_refused_without_a_tool_template,
               args.sllm, args.model)
    return checks.exit_code()


if __name__ == "__main__":
    sys.exit(main())
