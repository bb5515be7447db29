#!/usr/bin/env python3
"""Reference numbers from Hugging Face transformers, in the protocols sllm uses.

    hf_reference.py ppl      --model-dir DIR [--gguf FILE] --text F [--ctx 512]
    hf_reference.py greedy   --model-dir DIR [--gguf FILE] --prompts F.jsonl [--max-new-tokens 32]
    hf_reference.py tokenize --model-dir DIR [--gguf FILE] --cases F.json
    hf_reference.py logits   --model-dir DIR [--gguf FILE] --prompt TEXT [--top 5]

Each subcommand prints one JSON document on stdout. With --gguf the model and tokenizer are
loaded by transformers' own GGUF reader (weights dequantised to fp32); without it DIR is a
Hugging Face directory. Everything runs in fp32 on the CPU, in eval mode, without gradients.

The protocols (the same as sllm's, see tests/reference/README.md):
  ppl       the whole file is tokenized once (no special-token parsing; BOS first only if the
            tokenizer adds one), cut into consecutive non-overlapping windows of ctx tokens
            (a last window of a single token is dropped); every token of a window but its
            first is scored from the tokens before it in that window;
            perplexity = exp(total NLL / scored tokens).
  greedy    prompt = [BOS if the tokenizer adds one] + the raw prompt text (no chat template, no
            special-token parsing); then exactly N argmax steps. End-of-sequence tokens are not
            masked and do not stop the loop (sllm's --ignore-eos keeps sampling past them).
  tokenize  ids of each string with no BOS/EOS added, special tokens written in the text parsed
            as the tokenizer does by default (sllm tokenize --special true).

check_parity.py imports this module so each model is loaded once per run.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

warnings.filterwarnings("ignore")


# ----------------------------------------------------------------------------- loading

def _quiet_transformers():
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


def load_tokenizer(model_dir: str, gguf: str | None = None):
    from transformers import AutoTokenizer
    _quiet_transformers()
    kw = {"gguf_file": gguf} if gguf else {}
    return AutoTokenizer.from_pretrained(model_dir, **kw)


def load_model(model_dir: str, gguf: str | None = None):
    from transformers import AutoModelForCausalLM
    _quiet_transformers()
    kw = {"gguf_file": gguf} if gguf else {}
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **kw)
    model.eval()
    return model


def adds_bos(tok) -> bool:
    """Whether the tokenizer puts BOS in front of a text by default (add_special_tokens=True)."""
    if tok.bos_token_id is None:
        return False
    with_sp = tok("x", add_special_tokens=True)["input_ids"]
    without = tok("x", add_special_tokens=False)["input_ids"]
    return len(with_sp) > len(without) and with_sp[0] == tok.bos_token_id


def encode_plain(tok, text: str) -> list[int]:
    """Token ids of `text` with no special tokens added and none parsed from the text."""
    if not text:
        return []
    return list(tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def encode_default(tok, text: str) -> list[int]:
    """Token ids of `text` with no special tokens added; specials in the text parsed."""
    if not text:
        return []
    return list(tok(text, add_special_tokens=False)["input_ids"])


def with_bos(tok, ids: list[int]) -> list[int]:
    return ([tok.bos_token_id] if adds_bos(tok) else []) + ids


# ----------------------------------------------------------------------------- protocols

@torch.no_grad()
def perplexity(model, tok, text: str, ctx: int = 512) -> dict:
    t0 = time.time()
    ids = with_bos(tok, encode_plain(tok, text))
    n = len(ids)
    if n < 2:
        raise ValueError(f"needs at least 2 tokens of text, has {n}")
    windows = [ids[s:s + ctx] for s in range(0, n, ctx)]
    if len(windows[-1]) == 1:
        windows.pop()
    nll = 0.0
    scored = 0
    for w in windows:
        x = torch.tensor([w], dtype=torch.long)
        logits = model(input_ids=x, use_cache=False).logits[0].float()
        lp = torch.log_softmax(logits[:-1], dim=-1)
        tgt = x[0, 1:]
        nll += float(-lp.gather(1, tgt[:, None]).sum().double())
        scored += len(w) - 1
    return {"perplexity": math.exp(nll / scored), "mean_nll": nll / scored,
            "scored_tokens": scored, "tokens": n, "windows": len(windows), "ctx": ctx,
            "seconds": round(time.time() - t0, 2)}


@torch.no_grad()
def greedy_one(model, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """Plain argmax decoding with a KV cache; no logits processors, no early stop."""
    from transformers import DynamicCache
    cache = DynamicCache()
    x = torch.tensor([prompt_ids], dtype=torch.long)
    out: list[int] = []
    pos = 0
    for _ in range(max_new_tokens):
        positions = torch.arange(pos, pos + x.shape[1], dtype=torch.long)
        logits = model(input_ids=x, past_key_values=cache, use_cache=True,
                       cache_position=positions, position_ids=positions[None]).logits
        pos += x.shape[1]
        nxt = int(torch.argmax(logits[0, -1]))
        out.append(nxt)
        x = torch.tensor([[nxt]], dtype=torch.long)
    return out


def greedy(model, tok, prompts: list[str], max_new_tokens: int = 32) -> list[dict]:
    res = []
    for p in prompts:
        ids = with_bos(tok, encode_plain(tok, p))
        toks = greedy_one(model, ids, max_new_tokens)
        res.append({"prompt": p, "prompt_tokens": len(ids), "tokens": toks,
                    "text": tok.decode(toks, skip_special_tokens=False)})
    return res


def tokenize_cases(tok, cases: list[str]) -> list[dict]:
    return [{"text": s, "ids": encode_default(tok, s)} for s in cases]


@torch.no_grad()
def logits_of(model, ids: list[int]) -> torch.Tensor:
    """[len(ids), vocab] fp32 logits of one sequence."""
    return model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False).logits[0].float()


# ----------------------------------------------------------------------------- I/O helpers

def read_prompts(path: str) -> list[str]:
    """A .jsonl of {"prompt": ...} objects (or bare JSON strings), blank lines skipped."""
    prompts = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        j = json.loads(line)
        if isinstance(j, dict):
            j = j["prompt"]
        if not isinstance(j, str):
            raise ValueError(f"{path}:{i}: expected a string or an object with a \"prompt\" string")
        prompts.append(j)
    return prompts


def read_cases(path: str) -> list[str]:
    cases = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(cases, list) or not all(isinstance(c, str) for c in cases):
        raise ValueError(f"{path}: expected a JSON list of strings")
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Hugging Face reference numbers for sllm parity tests")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def model_args(p):
        p.add_argument("--model-dir", required=True, help="HF directory (or the GGUF's folder)")
        p.add_argument("--gguf", default=None, help="GGUF file name inside --model-dir")
        p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")

    p = sub.add_parser("ppl", help="perplexity over non-overlapping windows")
    model_args(p)
    p.add_argument("--text", required=True)
    p.add_argument("--ctx", type=int, default=512)
    p = sub.add_parser("greedy", help="greedy continuations of a JSONL batch of prompts")
    model_args(p)
    p.add_argument("--prompts", required=True)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p = sub.add_parser("tokenize", help="token ids of each string in a JSON list")
    model_args(p)
    p.add_argument("--cases", required=True)
    p = sub.add_parser("logits", help="top logits at the last position of a prompt")
    model_args(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--top", type=int, default=5)
    a = ap.parse_args(argv)

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    gguf = a.gguf
    if gguf and os.path.sep in gguf and Path(gguf).parent.resolve() == Path(a.model_dir).resolve():
        gguf = Path(gguf).name
    tok = load_tokenizer(a.model_dir, gguf)
    if a.cmd == "tokenize":
        out = tokenize_cases(tok, read_cases(a.cases))
    else:
        model = load_model(a.model_dir, gguf)
        if a.cmd == "ppl":
            out = perplexity(model, tok, Path(a.text).read_text(encoding="utf-8"), a.ctx)
        elif a.cmd == "greedy":
            out = greedy(model, tok, read_prompts(a.prompts), a.max_new_tokens)
        else:
            ids = with_bos(tok, encode_plain(tok, a.prompt))
            last = logits_of(model, ids)[-1]
            v, i = torch.topk(last, a.top)
            out = {"prompt_ids": ids, "top": [{"id": int(t), "piece": tok.convert_ids_to_tokens(int(t)),
                                               "logit": float(x)} for x, t in zip(v, i)]}
    json.dump(out, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
