#!/usr/bin/env python3
"""`sllm serve --lora-modules NAME=DIR`: several LoRA adapters served by one server, chosen per
request, sharing batches.

    test_serve_lora.py --sllm build/sllm [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

Two PEFT adapters with random weights are made with the `peft` package on the default model
(transformers reads the GGUF). Each served answer (OpenAI with model=NAME, TGI with adapter_id)
must equal `sllm generate --adapter DIR` on the same prompt (greedy), also when requests on the
base model and both adapters run concurrently; /v1/models lists the adapters; an unknown name is
a 404 (OpenAI) or 422 (TGI). With --allow-adapter-loading, POST /v1/load_lora_adapter adds one
while the server runs (its answers equal generate --adapter) and /v1/unload_lora_adapter
removes its name; bad loads are 400s.
Exit code 0: all passed; 1: a check failed; 77: the default model is absent (ctest: skipped).
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
from serve_harness import Checks, Server, script_args  # noqa: E402

import hf_reference  # noqa: E402
import openai  # noqa: E402
import torch  # noqa: E402

NAME = "base"
CTX = 512
N = 12
PROMPTS = ["The capital of France is", "Once upon a time", "def add(a, b):"]
ADAPTERS = {"qv": ["q_proj", "v_proj"], "mlp": ["gate_proj", "up_proj", "down_proj", "o_proj"]}


def make_adapters(model_path: str, root: str) -> dict[str, str]:
    from peft import LoraConfig, get_peft_model
    out = {}
    for i, (name, targets) in enumerate(ADAPTERS.items()):
        torch.manual_seed(100 + i)
        base = hf_reference.load_model(os.path.dirname(os.path.abspath(model_path)),
                                       os.path.basename(model_path))
        cfg = LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False)
        m = get_peft_model(base, cfg)
        with torch.no_grad():  # large enough to change greedy answers
            for n, p in m.named_parameters():
                if "lora_" in n:
                    p.mul_(4.0)
        out[name] = os.path.join(root, name)
        m.save_pretrained(out[name])
    return out


def sllm_generate(sllm: str, model: str, prompt: str, adapter: str | None) -> str:
    cmd = [sllm, "generate", "--model", model, "--prompt", prompt, "--temperature", "0", "-n",
           str(N), "--json", "--chat-template", "false", "--ctx", str(CTX)]
    if adapter:
        cmd += ["--adapter", adapter]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["text"]


def complete(oai, model: str, prompt: str) -> str:
    return oai.completions.create(model=model, prompt=prompt, max_tokens=N,
                                  temperature=0).choices[0].text


def main() -> int:
    args = script_args(__doc__, REPO)
    checks = Checks()
    with tempfile.TemporaryDirectory() as root:
        dirs = make_adapters(args.model, root)
        want = {(p, a): sllm_generate(args.sllm, args.model, p, dirs.get(a))
                for p in PROMPTS for a in (None, *dirs)}
        differ = sum(want[(p, a)] != want[(p, None)] for p in PROMPTS for a in dirs)
        mods = [f"{n}={d}" for n, d in dirs.items()]
        with Server(args.sllm, args.model, "--ctx", str(CTX), "--served-model-name", NAME,
                    "--allow-adapter-loading",
                    *[x for m in mods for x in ("--lora-modules", m)]) as srv:
            oai = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0,
                                timeout=300)

            def models_lists_the_adapters():
                ids = [(m.id, getattr(m, "parent", None)) for m in oai.models.list().data]
                assert ids == [(NAME, None), ("qv", NAME), ("mlp", NAME)], ids

            def answers_equal_generate_with_the_adapter():
                assert differ >= 2, want  # the adapters do change the answers
                for p in PROMPTS:
                    for a in (None, *dirs):
                        got = complete(oai, a or NAME, p)
                        assert got == want[(p, a)], (p, a, got, want[(p, a)])

            def mixed_concurrent_requests_equal_alone():
                jobs = [(p, a) for p in PROMPTS for a in (None, *dirs)] * 2
                with cf.ThreadPoolExecutor(len(jobs)) as ex:
                    got = list(ex.map(lambda j: complete(oai, j[1] or NAME, j[0]), jobs))
                bad = [(j, g) for j, g in zip(jobs, got) if g != want[j]]
                assert not bad, bad

            def tgi_adapter_id_and_unknown_names():
                for a in dirs:
                    s, r = srv.request("POST", "/generate", {"inputs": PROMPTS[0], "parameters": {
                        "max_new_tokens": N, "adapter_id": a}})
                    assert s == 200 and r["generated_text"] == want[(PROMPTS[0], a)], (s, r)
                s, e = srv.request("POST", "/generate", {"inputs": "x", "parameters": {
                    "adapter_id": "nope"}})
                assert s == 422 and "adapter_id" in e["error"], (s, e)
                s, e = srv.request("POST", "/v1/completions", {"model": "nope", "prompt": "x"})
                assert s == 404 and "qv" in e["error"]["message"], (s, e)

            def adapters_load_and_unload_at_run_time():
                s, r = srv.request("POST", "/v1/load_lora_adapter",
                                   {"lora_name": "qv2", "lora_path": dirs["qv"]})
                assert s == 200, (s, r)
                assert "qv2" in [m.id for m in oai.models.list().data]
                for p in PROMPTS:
                    assert complete(oai, "qv2", p) == want[(p, "qv")], p
                assert complete(oai, "mlp", PROMPTS[0]) == want[(PROMPTS[0], "mlp")]
                for body, status, says in [
                        ({"lora_name": "qv2", "lora_path": dirs["qv"]}, 400, "already loaded"),
                        ({"lora_name": NAME, "lora_path": dirs["qv"]}, 400, "base model"),
                        ({"lora_name": "x", "lora_path": "/nonexistent/adapter"}, 400,
                         "cannot load adapter 'x'"),
                        ({"lora_name": "x"}, 400, "lora_path")]:
                    s, e = srv.request("POST", "/v1/load_lora_adapter", body)
                    assert s == status and says in e["error"]["message"], (body, s, e)
                s, r = srv.request("POST", "/v1/unload_lora_adapter", {"lora_name": "qv2"})
                assert s == 200, (s, r)
                s, e = srv.request("POST", "/v1/completions", {"model": "qv2", "prompt": "x"})
                assert s == 404, (s, e)
                s, e = srv.request("POST", "/v1/unload_lora_adapter", {"lora_name": "qv2"})
                assert s == 404, (s, e)
                assert complete(oai, "qv", PROMPTS[1]) == want[(PROMPTS[1], "qv")]

            checks.run("models lists the adapters", models_lists_the_adapters)
            checks.run("answers equal generate --adapter", answers_equal_generate_with_the_adapter)
            checks.run("mixed concurrent requests equal alone", mixed_concurrent_requests_equal_alone)
            checks.run("TGI adapter_id, unknown names", tgi_adapter_id_and_unknown_names)
            checks.run("adapters load and unload at run time",
                       adapters_load_and_unload_at_run_time)
    return checks.exit_code()


if __name__ == "__main__":
    sys.exit(main())
