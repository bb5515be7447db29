#!/usr/bin/env python3
"""Compare sllm with Hugging Face transformers: perplexity, greedy tokens, tokenizer ids, convert.

    check_parity.py --sllm build/sllm --suite default|tiny|all [--out-dir DIR] [--model GGUF]
                    [--threads N]

Suites
  default  the default model (models/SmolLM2-135M-Instruct.Q4_1.gguf, loaded by transformers'
           GGUF reader): perplexity of tests/data/ppl_en.txt at ctx 512 (0.1 % relative),
           greedy 32-token continuations of tests/data/parity_prompts.jsonl (identical),
           tokenizer ids of tests/data/tokenizer_cases.json (identical; vs transformers' GGUF
           tokenizer and vs the `tokenizers` library on the tokenizer.json `sllm convert` wrote),
           and `sllm convert`: transformers loads the directory and its logits match the
           GGUF-loaded model's (max |diff| < 1e-4), sllm on the directory gives the GGUF's
           perplexity (1e-6 relative) and the GGUF's greedy tokens.
  tiny     tiny random models built by make_tiny_hf.py (llama tied GQA; llama untied MHA with
           llama3 rope scaling; qwen2 with q/k/v biases; llama MQA with linear rope scaling in
           the older config keys): perplexity (0.1 %), greedy 16-token continuations of 4
           prompts (identical), tokenizer ids (identical).

Prints a table and exits 1 if any check fails (2 on bad usage). The Hugging Face side runs
in this process (hf_reference.py is imported), so each model is loaded once.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DATA = REPO / "tests" / "data"
DEFAULT_GGUF = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PPL_TEXT = DATA / "ppl_en.txt"
PROMPTS = DATA / "parity_prompts.jsonl"
CASES = DATA / "tokenizer_cases.json"

PPL_REL_TOL = 1e-3        # sllm vs transformers: different kernels, fp32 accumulation order
CONVERT_PPL_REL_TOL = 1e-6  # sllm on its own converted directory vs on the GGUF: same weights
LOGITS_ABS_TOL = 1e-4     # transformers on the converted directory vs on the GGUF
CTX = 512
DEFAULT_NEW_TOKENS = 32
TINY_NEW_TOKENS = 16
TINY_PROMPTS = 4
LOGITS_PROMPT = "The bakery opened at 7:00 on Monday, and by noon the shelves were empty."

TINY_VARIANTS = [
    {"name": "llama-tied-gqa", "arch": "llama", "tied": True, "kv_heads": 2,
     "rope_scaling": "none", "seed": 1, "tokenizer": True},
    {"name": "llama-mha-llama3rope", "arch": "llama", "tied": False, "kv_heads": 4,
     "rope_scaling": "llama3", "seed": 2, "tokenizer": False},
    {"name": "qwen2-bias", "arch": "qwen2", "tied": True, "kv_heads": 2,
     "rope_scaling": "none", "seed": 3, "tokenizer": True},
    {"name": "llama-mqa-linearrope-legacy", "arch": "llama", "tied": False, "kv_heads": 1,
     "rope_scaling": "linear", "seed": 4, "tokenizer": False, "config_style": "legacy"},
]


# ----------------------------------------------------------------------------- reporting

class Report:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.notes: list[str] = []
        self.timings: list[tuple[str, float]] = []

    def add(self, suite: str, check: str, ok: bool, measured: str = "", tol: str = ""):
        # No SKIP: a check that could not run (ok None) fails, so a broken step cannot pass.
        status = "PASS" if ok else "FAIL"
        self.rows.append((suite, check, status, measured, tol))
        print(f"[{status}] {suite}: {check}  {measured}", flush=True)

    def note(self, text: str):
        self.notes.append(text)
        print(text, flush=True)

    def timed(self, label: str, t0: float):
        self.timings.append((label, time.time() - t0))

    @property
    def failed(self) -> int:
        return sum(r[2] == "FAIL" for r in self.rows)

    def print_table(self):
        heads = ("suite", "check", "result", "measured", "tolerance")
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
                  for i, h in enumerate(heads)]
        widths = [min(w, 60) for w in widths]
        line = "  ".join(h.ljust(w) for h, w in zip(heads, widths))
        print("\n" + line + "\n" + "-" * len(line))
        for r in self.rows:
            print("  ".join(str(c)[:60].ljust(w) for c, w in zip(r, widths)))
        if self.timings:
            print("\ntimings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings))
        n = len(self.rows)
        print(f"\n{n - self.failed}/{n} checks passed" + (f", {self.failed} FAILED" if self.failed else ""))


def short(v, limit: int = 70) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def first_diff(a: list, b: list) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b)) if len(a) != len(b) else -1


# ----------------------------------------------------------------------------- sllm driver

class SllmError(RuntimeError):
    pass


def parse_json_output(text: str):
    """The JSON document(s) a command printed: one document, or one per line (JSONL)."""
    text = text.strip()
    if not text:
        raise ValueError("no output")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    docs = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            docs.append(json.loads(line))
    if docs:
        return docs if len(docs) > 1 else docs[0]
    start = text.find("{")
    obj, _ = json.JSONDecoder().raw_decode(text[start:])
    return obj


class Sllm:
    def __init__(self, binary: str, work: Path, threads: int = 1):
        self.bin = binary
        self.work = work
        self.threads = threads

    def model_args(self, model: str) -> list[str]:
        # A GGUF file runs dequantized to fp32, the weights transformers computes with (its blocks
        # as stored are compared with this path in tests/model/test_gguf_stored.cpp).
        deq = ["--dequantize"] if model.endswith(".gguf") else []
        return ["--model", model, *deq] + (["--threads", str(self.threads)] if self.threads > 0 else [])

    def run(self, args: list[str], timeout: float) -> str:
        cmd = [self.bin, *args]
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=REPO)
        except subprocess.TimeoutExpired:
            raise SllmError(f"timed out after {timeout:.0f} s: {' '.join(map(str, cmd))[:300]}")
        if p.returncode != 0:
            err = p.stderr.decode("utf-8", "replace").strip()
            raise SllmError(f"exit {p.returncode}: {' '.join(map(str, cmd))[:300]}\n    "
                            + err[-1500:].replace("\n", "\n    "))
        return p.stdout.decode("utf-8", "replace")

    def eval_ppl(self, model: str, text: Path, ctx: int) -> dict:
        out = self.run(["eval", *self.model_args(model), "--ppl", str(text), "--ctx", str(ctx),
                        "--json"], timeout=420)
        j = parse_json_output(out)
        return j[-1] if isinstance(j, list) else j

    def generate(self, model: str, prompts: Path, n: int) -> list[dict]:
        out = self.run(["generate", *self.model_args(model), "--prompt-file", str(prompts),
                        "--temperature", "0", "--max-new-tokens", str(n),
                        "--chat-template", "false", "--ignore-eos", "--json"], timeout=420)
        res = [json.loads(l) for l in out.splitlines() if l.strip().startswith("{")]
        return res

    def _tokenize_one(self, model: str, text: str, cfg: Path) -> list[int]:
        # The text goes in a JSON config file, not on the command line, so that a text
        # starting with "-" is never taken for a flag and every string arrives byte for byte.
        cfg.write_text(json.dumps({"text": text, "special": True, "json": True}), encoding="utf-8")
        j = parse_json_output(self.run(["tokenize", *self.model_args(model), "-c", str(cfg)],
                                       timeout=180))
        return [int(x) for x in j["ids"]]

    def tokenize(self, model: str, cases: list[str], tag: str, ref: list[list[int]] | None = None,
                 sep: tuple[str, int] | None = None, specials: list[str] = ()) -> list:
        """sllm's ids for each case (or an error string).

        One process per string costs a model load each, so strings that contain no special
        token are joined with the special token `sep` = (text, id) between them and tokenized
        in one call (special tokens split the text first, and the pieces between them are
        tokenized independently, in sllm as in HF). Any joined string whose ids differ from
        `ref` is tokenized again on its own, and that result is the one reported."""
        d = self.work / f"tok_{tag}"
        d.mkdir(parents=True, exist_ok=True)
        n = len(cases)
        res: list = [None] * n
        alone = [i for i, c in enumerate(cases) if sep is None or any(t and t in c for t in specials)]
        joined = [i for i in range(n) if i not in alone]
        if joined:
            try:
                ids = self._tokenize_one(model, sep[0].join(cases[i] for i in joined), d / "joined.json")
                segs: list[list[int]] = [[]]
                for t in ids:
                    if t == sep[1]:
                        segs.append([])
                    else:
                        segs[-1].append(t)
                if len(segs) == len(joined):
                    for i, seg in zip(joined, segs):
                        res[i] = seg
                else:
                    alone = list(range(n))
            except (SllmError, ValueError, KeyError):
                alone = list(range(n))
        if ref is not None:
            alone = sorted(set(alone) | {i for i in joined if res[i] is not None and res[i] != ref[i]})

        def one(i: int):
            try:
                return self._tokenize_one(model, cases[i], d / f"case_{i:03d}.json")
            except (SllmError, ValueError, KeyError) as e:
                return f"error: {e}"

        with ThreadPoolExecutor(max_workers=2) as ex:
            for i, r in zip(alone, ex.map(one, alone)):
                res[i] = r
        return res

    def convert(self, model: str, out: Path):
        if out.exists():
            shutil.rmtree(out)
        self.run(["convert", *self.model_args(model), "--out", str(out)], timeout=420)
        return out


# ----------------------------------------------------------------------------- comparisons

def check_ppl(rep: Report, suite: str, name: str, got: dict | None, ref: dict | None, rel_tol: float,
              ref_name: str = "hf"):
    if got is None or ref is None:
        rep.add(suite, name, False, "no result (see the error above)", f"rel {rel_tol:g}")
        return
    a, b = float(got["perplexity"]), float(ref["perplexity"])
    rel = abs(a - b) / abs(b)
    counts_ok = all(int(got.get(k, -1)) == int(ref.get(k, -2)) for k in ("tokens", "scored_tokens"))
    ok = rel <= rel_tol and counts_ok and math.isfinite(a)
    meas = f"sllm {a:.5f} vs {ref_name} {b:.5f} (rel {rel:.2e})"
    if not counts_ok:
        meas += f"; tokens {got.get('tokens')}/{ref.get('tokens')}"
        rep.note(f"  {suite} {name}: token counts differ: sllm tokens={got.get('tokens')} "
                 f"scored={got.get('scored_tokens')} windows={got.get('windows')}; {ref_name} "
                 f"tokens={ref.get('tokens')} scored={ref.get('scored_tokens')} windows={ref.get('windows')}")
    rep.add(suite, name, ok, meas, f"rel {rel_tol:g}")


def check_tokens(rep: Report, suite: str, name: str, got: list[dict] | None, ref: list[dict] | None,
                 prompts: list[str], ref_name: str = "hf"):
    if got is None or ref is None:
        rep.add(suite, name, False, "no result (see the error above)", "identical")
        return
    if len(got) != len(ref):
        rep.add(suite, name, False, f"{len(got)} results vs {len(ref)}", "identical")
        return
    same = 0
    for i, (g, r) in enumerate(zip(got, ref)):
        gt, rt = [int(x) for x in g["tokens"]], [int(x) for x in r["tokens"]]
        gp, rp = g.get("prompt_tokens"), r.get("prompt_tokens")
        if gt == rt and (gp is None or rp is None or gp == rp):
            same += 1
            continue
        k = first_diff(gt, rt)
        rep.note(f"  {suite} {name}: prompt {i} {short(prompts[i], 50)}: first difference at "
                 f"generated token {k} (prompt tokens sllm {gp}, {ref_name} {rp})\n"
                 f"    sllm {gt}\n    {ref_name:<4} {rt}")
    rep.add(suite, name, same == len(ref), f"{same}/{len(ref)} prompts identical", "identical")


def check_ids(rep: Report, suite: str, name: str, got: list | None, ref: list | None, cases: list[str],
              ref_name: str):
    if got is None or ref is None:
        rep.add(suite, name, False, "no result (see the error above)", "identical")
        return
    bad = 0
    for c, g, r in zip(cases, got, ref):
        if g == r:
            continue
        bad += 1
        if isinstance(g, str):
            rep.note(f"  {suite} {name}: {short(c)}: sllm {g[:400]}")
            continue
        k = first_diff(g, r)
        lo = max(0, k - 3)
        rep.note(f"  {suite} {name}: {short(c)}: first difference at id {k} "
                 f"(sllm {len(g)} ids, {ref_name} {len(r)})\n"
                 f"    sllm {g[lo:lo + 16]}{' ...' if len(g) > lo + 16 else ''}\n"
                 f"    {ref_name:<4} {r[lo:lo + 16]}{' ...' if len(r) > lo + 16 else ''}")
    rep.add(suite, name, bad == 0, f"{len(cases) - bad}/{len(cases)} strings identical", "identical")


def tokenizer_separator(hf, tok) -> tuple[tuple[str, int] | None, list[str]]:
    """A special token to join strings with for one batched `sllm tokenize` call, and the
    text of every added token (strings containing one are tokenized on their own)."""
    added = {t.content for t in tok.added_tokens_decoder.values()} | set(tok.all_special_tokens)
    specials = sorted(a for a in added if a)
    for cand in ["<|endoftext|>", *tok.all_special_tokens]:
        tid = tok.convert_tokens_to_ids(cand)
        if isinstance(tid, int) and tid >= 0 and hf.encode_default(tok, f"a{cand}b")[1:-1] == [tid]:
            return (cand, tid), specials
    return None, specials


def attempt(rep: Report, label: str, fn, *args, **kw):
    """fn(*args) or None. An exception is a FAIL row of its own (the run exits 1), and the other
    steps still run: one failing step must not hide the rest."""
    t0 = time.time()
    try:
        return fn(*args, **kw)
    except SllmError as e:
        rep.note(f"  error in {label}: {e}")
        rep.add("error", label, False, short(str(e), 200))
    except Exception as e:  # noqa: BLE001 - report and go on
        rep.note(f"  error in {label}: {type(e).__name__}: {e}\n"
                 + "".join(traceback.format_exc(limit=4)).rstrip())
        rep.add("error", label, False, short(f"{type(e).__name__}: {e}", 200))
    finally:
        rep.timed(label, t0)
    return None


# ----------------------------------------------------------------------------- suites

def suite_default(rep: Report, sllm: Sllm, work: Path, gguf: Path):
    import hf_reference as hf

    S = "default"
    if not gguf.is_file():
        rep.note(f"the default model {gguf} is missing: run scripts/setup.sh to fetch it")
        rep.add(S, "default model present", False, f"{gguf.name} missing: run scripts/setup.sh")
        return
    model = str(gguf)
    conv = work / "converted"
    prompts = hf.read_prompts(str(PROMPTS))
    cases = hf.read_cases(str(CASES))
    text = PPL_TEXT.read_text(encoding="utf-8")

    # The HF tokenizer first (its ids let sllm's tokenization be batched), then sllm (one
    # process per command), then the HF model in this process.
    tok = attempt(rep, "hf load gguf tokenizer", hf.load_tokenizer, str(gguf.parent), gguf.name)
    h_ids = None
    sep, specials = None, []
    if tok is not None:
        h_ids = attempt(rep, "hf tokenize", lambda: [c["ids"] for c in hf.tokenize_cases(tok, cases)])
        sep, specials = tokenizer_separator(hf, tok)
    converted = attempt(rep, "sllm convert", sllm.convert, model, conv) is not None
    s_ppl = attempt(rep, "sllm eval gguf", sllm.eval_ppl, model, PPL_TEXT, CTX)
    s_gen = attempt(rep, "sllm generate gguf", sllm.generate, model, PROMPTS, DEFAULT_NEW_TOKENS)
    s_ids = attempt(rep, "sllm tokenize gguf", sllm.tokenize, model, cases, "gguf", h_ids, sep,
                    specials)
    s_ppl_c = s_gen_c = None
    if converted:
        s_ppl_c = attempt(rep, "sllm eval converted", sllm.eval_ppl, str(conv), PPL_TEXT, CTX)
        s_gen_c = attempt(rep, "sllm generate converted", sllm.generate, str(conv), PROMPTS,
                          DEFAULT_NEW_TOKENS)

    m = attempt(rep, "hf load gguf model", hf.load_model, str(gguf.parent), gguf.name)
    h_ppl = h_gen = ref_logits = logit_ids = None
    if tok is not None and m is not None:
        h_ppl = attempt(rep, "hf ppl", hf.perplexity, m, tok, text, CTX)
        h_gen = attempt(rep, "hf greedy", hf.greedy, m, tok, prompts, DEFAULT_NEW_TOKENS)
        logit_ids = hf.with_bos(tok, hf.encode_plain(tok, LOGITS_PROMPT))
        ref_logits = attempt(rep, "hf logits gguf", hf.logits_of, m, logit_ids)
    del m

    check_ppl(rep, S, f"ppl ppl_en.txt ctx {CTX}", s_ppl, h_ppl, PPL_REL_TOL)
    check_tokens(rep, S, f"greedy {DEFAULT_NEW_TOKENS} tokens", s_gen, h_gen, prompts)
    check_ids(rep, S, "tokenize vs transformers GGUF", s_ids, h_ids, cases, "hf")

    if not converted:
        rep.add(S, "convert", False, "sllm convert failed (see above)")
        return
    # The converted directory, read by transformers and by the tokenizers library.
    t0 = time.time()
    try:
        from tokenizers import Tokenizer
        tk = Tokenizer.from_file(str(conv / "tokenizer.json"))
        lib_ids = [tk.encode(c, add_special_tokens=False).ids if c else [] for c in cases]
    except Exception as e:  # noqa: BLE001
        rep.note(f"  error: tokenizers cannot load {conv / 'tokenizer.json'}: {e}")
        lib_ids = None
    rep.timed("tokenizers lib", t0)
    check_ids(rep, S, "tokenize vs tokenizers(converted)", s_ids, lib_ids, cases, "lib")
    tok_c = attempt(rep, "hf load converted tokenizer", hf.load_tokenizer, str(conv))
    if tok_c is not None and h_ids is not None:
        conv_ids = [c["ids"] for c in hf.tokenize_cases(tok_c, cases)]
        check_ids(rep, S, "convert: AutoTokenizer ids = GGUF's", conv_ids, h_ids, cases, "gguf")
        rep.add(S, "convert: tokenizer BOS rule kept", hf.adds_bos(tok_c) == hf.adds_bos(tok),
                f"adds BOS: converted {hf.adds_bos(tok_c)}, gguf {hf.adds_bos(tok)}")
    else:
        rep.add(S, "convert: AutoTokenizer loads", False, "see the error above")
    mc = attempt(rep, "hf load converted model", hf.load_model, str(conv))
    if mc is None or ref_logits is None:
        rep.add(S, "convert: logits = GGUF logits", False, "no result (see the error above)")
    else:
        got = attempt(rep, "hf logits converted", hf.logits_of, mc, logit_ids)
        if got is None or got.shape != ref_logits.shape:
            rep.add(S, "convert: logits = GGUF logits", False,
                    f"shape {None if got is None else tuple(got.shape)} vs {tuple(ref_logits.shape)}")
        else:
            d = float((got - ref_logits).abs().max())
            rep.add(S, "convert: logits = GGUF logits", d < LOGITS_ABS_TOL,
                    f"max |diff| {d:.2e} over {got.shape[0]} positions", f"abs {LOGITS_ABS_TOL:g}")
    del mc
    check_ppl(rep, S, "convert: sllm ppl dir = gguf", s_ppl_c, s_ppl, CONVERT_PPL_REL_TOL, "gguf")
    check_tokens(rep, S, "convert: sllm greedy dir = gguf", s_gen_c, s_gen, prompts, "gguf")


def suite_tiny(rep: Report, sllm: Sllm, work: Path):
    import hf_reference as hf
    import make_tiny_hf

    prompts = hf.read_prompts(str(PROMPTS))[:TINY_PROMPTS]
    pfile = work / "tiny_prompts.jsonl"
    pfile.write_text("".join(json.dumps({"prompt": p}, ensure_ascii=False) + "\n" for p in prompts),
                     encoding="utf-8")
    cases = hf.read_cases(str(CASES))
    text = PPL_TEXT.read_text(encoding="utf-8")
    for v in TINY_VARIANTS:
        S = f"tiny/{v['name']}"
        d = work / v["name"]
        if d.exists():
            shutil.rmtree(d)
        built = attempt(rep, f"build {v['name']}", make_tiny_hf.build, d, v["arch"], v["tied"],
                        v["kv_heads"], v["rope_scaling"], v["seed"],
                        config_style=v.get("config_style", "v5"))
        if built is None:
            rep.add(S, "make_tiny_hf", False, "build failed (see above)")
            continue
        tok = attempt(rep, f"hf load tokenizer {v['name']}", hf.load_tokenizer, str(d))
        m = attempt(rep, f"hf load model {v['name']}", hf.load_model, str(d))
        h_ppl = h_gen = h_ids = s_ids = None
        if tok is not None and m is not None:
            h_ppl = attempt(rep, f"hf ppl {v['name']}", hf.perplexity, m, tok, text, CTX)
            h_gen = attempt(rep, f"hf greedy {v['name']}", hf.greedy, m, tok, prompts, TINY_NEW_TOKENS)
        s_ppl = attempt(rep, f"sllm eval {v['name']}", sllm.eval_ppl, str(d), PPL_TEXT, CTX)
        s_gen = attempt(rep, f"sllm generate {v['name']}", sllm.generate, str(d), pfile,
                        TINY_NEW_TOKENS)
        if v["tokenizer"]:
            sep, specials = None, []
            if tok is not None:
                h_ids = [c["ids"] for c in hf.tokenize_cases(tok, cases)]
                sep, specials = tokenizer_separator(hf, tok)
            s_ids = attempt(rep, f"sllm tokenize {v['name']}", sllm.tokenize, str(d), cases,
                            v["name"], h_ids, sep, specials)
        check_ppl(rep, S, f"ppl ctx {CTX}", s_ppl, h_ppl, PPL_REL_TOL)
        check_tokens(rep, S, f"greedy {TINY_NEW_TOKENS} tokens", s_gen, h_gen, prompts)
        if v["tokenizer"]:
            check_ids(rep, S, "tokenize", s_ids, h_ids, cases, "hf")


def common_parser(description: str) -> argparse.ArgumentParser:
    """--sllm, --out-dir and --threads, as every script here takes them."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--sllm", required=True, help="path to the sllm binary")
    ap.add_argument("--out-dir", default=None,
                    help="keep the work files here; default: a temporary directory, removed")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads for torch here and for each sllm process (0: their default)")
    return ap


def executable(path: str, what: str = "sllm binary") -> Path | None:
    """The resolved path, or None after saying what is missing."""
    p = Path(path)
    if p.is_file() and os.access(p, os.X_OK):
        return p.resolve()
    print(f"error: {what} {path} not found or not executable (build it first)")
    return None


def torch_setup(threads: int):
    """Torch's thread count (threads > 0) and quiet transformers, before any model loads."""
    import torch

    import hf_reference as hf
    if threads > 0:
        torch.set_num_threads(threads)
    hf._quiet_transformers()


def run_in_work_dir(rep: Report, out_dir: str | None, prefix: str, body) -> int:
    """body(work) in out_dir (kept) or in a temporary directory (removed), then the table.
    Returns the exit code: 1 when a check failed or none ran, else 0."""
    tmp = None
    if out_dir:
        work = Path(out_dir).resolve()
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix=prefix)
        work = Path(tmp.name)
    t0 = time.time()
    try:
        body(work)
    finally:
        rep.print_table()
        print(f"total {time.time() - t0:.1f} s; work files in {work}" + (" (removed)" if tmp else ""))
        if tmp is not None:
            tmp.cleanup()
    return 1 if rep.failed or not rep.rows else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="sllm vs Hugging Face parity checks")
    ap.add_argument("--sllm", required=True, help="path to the sllm binary")
    ap.add_argument("--suite", choices=["default", "tiny", "all"], default="all")
    ap.add_argument("--out-dir", default=None,
                    help="keep the work files here (converted model, tiny models, sllm inputs); "
                         "default: a temporary directory, removed at the end")
    ap.add_argument("--model", default=str(DEFAULT_GGUF), help="GGUF for the default suite")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads for torch here and for each sllm process (0: their default). "
                         "1 is the default: on a shared 2-core machine more threads are slower")
    a = ap.parse_args(argv)

    sys.path.insert(0, str(HERE))
    rep = Report()
    binary = Path(a.sllm)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        print(f"error: sllm binary {a.sllm} not found or not executable (build it first)")
        return 2
    if a.threads > 0:
        import torch
        torch.set_num_threads(a.threads)

    def body(work: Path):
        sllm = Sllm(str(binary.resolve()), work, a.threads)
        if a.suite in ("default", "all"):
            gguf = Path(a.model)
            if not gguf.is_absolute():
                gguf = (Path.cwd() / gguf).resolve()
            suite_default(rep, sllm, work, gguf)
        if a.suite in ("tiny", "all"):
            suite_tiny(rep, sllm, work)

    return run_in_work_dir(rep, a.out_dir, "sllm_parity_", body)


if __name__ == "__main__":
    sys.exit(main())
