#!/usr/bin/env python3
"""Chat templates rendered by transformers, the expected strings of sllm's Jinja renderer.

Renders every template of tests/data/chat_templates/ over a set of conversations with
transformers' own renderer (transformers.utils.chat_template_utils.render_jinja_template, the
jinja2 environment apply_chat_template compiles templates with) and compares the result with
tests/data/chat_templates/expected.json, which the C++ unit test TokenizerJinja.MatchesTransformers
renders with sllm's interpreter. Together they check sllm against transformers string for string.

    chat_templates.py            check expected.json against transformers (exit 1 on a difference)
    chat_templates.py --write    regenerate expected.json
"""

import argparse
import json
import pathlib
import sys

from transformers.utils.chat_template_utils import render_jinja_template

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "chat_templates"

# Special-token strings of each model (tokenizer_config.json), passed as apply_chat_template does.
TOKENS = {
    "HuggingFaceTB-SmolLM2-135M-Instruct": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    "meta-llama-Llama-3.1-8B-Instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "Qwen-Qwen2.5-7B-Instruct": {"bos_token": None, "eos_token": "<|im_end|>"},
    "mistralai-Mistral-Nemo-Instruct-2407": {"bos_token": "<s>", "eos_token": "</s>"},
    "google-gemma-2-2b-it": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "microsoft-Phi-3.5-mini-instruct": {"bos_token": "<s>", "eos_token": "<|endoftext|>"},
}
TOOL_TEMPLATES = {
    "meta-llama-Llama-3.1-8B-Instruct",
    "Qwen-Qwen2.5-7B-Instruct",
    "mistralai-Mistral-Nemo-Instruct-2407",
}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city, \"quoted\" & <tagged>.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
        "return": {"type": "string"},
    },
}
CLOCK = {
    "type": "function",
    "function": {"name": "now", "description": "The time.", "parameters": {"type": "object", "properties": {}}},
}

U = lambda c: {"role": "user", "content": c}  # noqa: E731
A = lambda c: {"role": "assistant", "content": c}  # noqa: E731
S = lambda c: {"role": "system", "content": c}  # noqa: E731

CONVERSATIONS = {
    "user": [U("What is the capital of France?")],
    "system_user": [S("Be brief."), U("Hi")],
    "multi_turn": [U("Hi"), A("Hello! How can I help?"), U("Tell me a joke.")],
    "system_multi_turn": [S("  You are terse.\n"), U(" Hi \n"), A("Hello"), U("Bye")],
    "unicode": [U("  Grüße, 世界! 👋\tñ\n"), A("Ça va — très bien ✓"), U("日本語で答えて")],
    "empty_system": [S(""), U("Hi")],
    "quotes_and_braces": [U("say {{ not a tag }} and {% raw %} 'single' \"double\" \\ back")],
    "assistant_last": [U("Hi"), A("Hello")],
    "system_only": [S("Only a system prompt.")],
    "not_alternating": [U("a"), U("b")],
}
TOOL_CONVERSATIONS = {
    "tools_user": ([U("Weather in Zürich?")], [WEATHER]),
    "tools_system": ([S("Use tools."), U("Weather in Paris?")], [WEATHER, CLOCK]),
    "tool_call_round": (
        [
            U("Weather in Paris?"),
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call12345",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "22 degrees"},
        ],
        [WEATHER],
    ),
}


def cases():
    for path in sorted(DATA.glob("*.jinja")):
        name = path.stem
        template = path.read_text()
        for conv, messages in CONVERSATIONS.items():
            for agp in (True, False):
                yield name, template, f"{conv}/agp={agp}", messages, None, agp, {}
        if name == "meta-llama-Llama-3.1-8B-Instruct":
            yield name, template, "date_string", CONVERSATIONS["user"], None, True, {"date_string": "02 Dec 2026"}
        if name in TOOL_TEMPLATES:
            for conv, (messages, tools) in TOOL_CONVERSATIONS.items():
                yield name, template, conv, messages, tools, True, {}
            if name == "meta-llama-Llama-3.1-8B-Instruct":
                messages, tools = TOOL_CONVERSATIONS["tools_user"]
                yield name, template, "tools_in_system", messages, tools, True, {"tools_in_user_message": False}


def render_all():
    out = []
    for name, template, case, messages, tools, agp, kwargs in cases():
        kwargs = {**TOKENS[name], **kwargs}
        # The variables the template sees, as render_jinja_template passes them.
        context = {"messages": messages, "tools": tools, "documents": None, "add_generation_prompt": agp, **kwargs}
        entry = {"template": name, "case": case, "context": context}
        try:
            rendered, _ = render_jinja_template(
                conversations=[messages], tools=tools, chat_template=template, add_generation_prompt=agp, **kwargs
            )
            entry["output"] = rendered[0]
        except Exception as e:  # raise_exception() in the template: sllm must fail too
            entry["error"] = str(e)
        out.append(entry)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="regenerate expected.json")
    args = ap.parse_args()
    got = render_all()
    path = DATA / "expected.json"
    if args.write:
        path.write_text(json.dumps(got, ensure_ascii=False, indent=1) + "\n")
        print(f"wrote {len(got)} cases to {path}")
        return 0
    want = json.loads(path.read_text())
    bad = 0
    keyed = {(e["template"], e["case"]): e for e in want}
    for e in got:
        w = keyed.get((e["template"], e["case"]))
        if w != e:
            bad += 1
            print(f"DIFF {e['template']} {e['case']}:\n  transformers: {e.get('output', e.get('error'))!r}")
            print(f"  expected.json: {None if w is None else w.get('output', w.get('error'))!r}")
    if len(want) != len(got):
        bad += 1
        print(f"expected.json has {len(want)} cases, transformers rendered {len(got)}")
    print(f"{len(got) - bad}/{len(got)} cases identical to transformers' rendering")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
