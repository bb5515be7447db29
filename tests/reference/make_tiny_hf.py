#!/usr/bin/env python3
"""Build a tiny random Hugging Face causal LM directory for sllm's parity tests.

    make_tiny_hf.py OUT_DIR --arch llama|qwen2 [--tied] [--kv-heads N]
                    [--rope-scaling none|linear|llama3] [--seed S] [--pretok bytelevel|qwen2]
                    [--config-style v5|legacy]

The directory holds what `sllm --model DIR` reads: config.json, model.safetensors (fp32),
generation_config.json, tokenizer.json and tokenizer_config.json. The model has hidden size 64,
2 layers, 4 attention heads and a vocabulary taken from a small byte-level BPE tokenizer
(~400 tokens) trained on tests/data/ppl_en.txt. Everything is deterministic for a given seed.

Weights are random but not "default-initialised": norm weights and attention biases are drawn
at random too, so that a loader that skips or mislabels them shows up as a mismatch.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS = REPO / "tests" / "data" / "ppl_en.txt"

HIDDEN = 64
LAYERS = 2
HEADS = 4
INTERMEDIATE = 160
MAX_POSITIONS = 1024
VOCAB_TARGET = 400
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# The pre-tokenizer regex of Qwen2's tokenizer.json (for the "qwen2" pre-tokenizer: NFC, then
# a Split step, then a ByteLevel step without its own regex).
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(corpus: Path, vocab_size: int = VOCAB_TARGET, pretok: str = "bytelevel",
                    add_bos: bool = False):
    """A deterministic byte-level BPE (tokenizers library) trained on `corpus`."""
    from tokenizers import (Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers,
                            processors, trainers)

    tk = Tokenizer(models.BPE())
    if pretok == "bytelevel":
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif pretok == "qwen2":
        # As Qwen2's tokenizer.json: NFC normalizer, regex Split, ByteLevel without a regex.
        # (transformers' Qwen2Tokenizer adds the NFC step itself, whatever tokenizer.json says.)
        tk.normalizer = normalizers.NFC()
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        raise ValueError(f"unknown pre-tokenizer {pretok!r}")
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Train from an in-memory line list (no file-reading threads, same order every run).
    lines = corpus.read_text(encoding="utf-8").splitlines(keepends=True)
    tk.train_from_iterator(lines, trainer=trainer, length=len(lines))
    if add_bos:
        bos = SPECIAL_TOKENS[0]
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1",
            special_tokens=[(bos, tk.token_to_id(bos))])
    else:
        tk.post_processor = processors.ByteLevel(trim_offsets=False)
    return tk


def _rope_parameters(kind: str, theta: float) -> dict:
    if kind == "none":
        return {"rope_type": "default", "rope_theta": theta}
    if kind == "linear":
        return {"rope_type": "linear", "rope_theta": theta, "factor": 2.0}
    if kind == "llama3":
        # original_max_position_embeddings is small so that, with head_dim 16, some rotary
        # frequencies fall in each of llama3's three bands (kept, smoothed, divided by factor).
        return {"rope_type": "llama3", "rope_theta": theta, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 256}
    raise ValueError(f"unknown rope scaling {kind!r}")


def _write_legacy_rope_keys(config_path: Path) -> None:
    """Rewrites transformers-5 `rope_parameters` as the older `rope_theta` + `rope_scaling` keys
    that most checkpoints on the Hub still carry (transformers 5 reads both)."""
    c = json.loads(config_path.read_text(encoding="utf-8"))
    rp = dict(c.pop("rope_parameters"))
    c["rope_theta"] = rp.pop("rope_theta")
    kind = rp.pop("rope_type", "default")
    c["rope_scaling"] = None if kind == "default" else {"type": kind, **rp}
    config_path.write_text(json.dumps(c, indent=2) + "\n", encoding="utf-8")


def build(out_dir, arch: str = "llama", tied: bool = False, kv_heads: int = HEADS,
          rope_scaling: str = "none", seed: int = 0, pretok: str | None = None,
          corpus: Path = DEFAULT_CORPUS, config_style: str = "v5") -> Path:
    """Writes the tiny model directory and returns its path."""
    import torch
    from transformers import (AutoModelForCausalLM, GenerationConfig, LlamaConfig,
                              PreTrainedTokenizerFast, Qwen2Config)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if HEADS % kv_heads:
        raise ValueError(f"--kv-heads {kv_heads} must divide the {HEADS} attention heads")
    if pretok is None:
        pretok = "qwen2" if arch == "qwen2" else "bytelevel"

    # Llama-style tokenizers prepend BOS; Qwen2's do not. Both paths of sllm get exercised.
    add_bos = arch == "llama"
    tk = train_tokenizer(Path(corpus), pretok=pretok, add_bos=add_bos)
    vocab = tk.get_vocab_size(with_added_tokens=True)
    ids = {t: tk.token_to_id(t) for t in SPECIAL_TOKENS}
    if arch == "llama":
        bos_tok, eos_tok, pad_tok = "<|endoftext|>", "<|endoftext|>", None
    else:
        bos_tok, eos_tok, pad_tok = None, "<|im_end|>", "<|endoftext|>"

    theta = 10000.0 if rope_scaling != "llama3" else 50000.0
    common = dict(
        vocab_size=vocab, hidden_size=HIDDEN, intermediate_size=INTERMEDIATE,
        num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=kv_heads,
        max_position_embeddings=MAX_POSITIONS, rms_norm_eps=1e-6, initializer_range=0.1,
        tie_word_embeddings=tied, rope_parameters=_rope_parameters(rope_scaling, theta),
        bos_token_id=ids[bos_tok] if bos_tok else None, eos_token_id=ids[eos_tok],
        pad_token_id=ids[pad_tok] if pad_tok else None,
    )
    if arch == "llama":
        cfg = LlamaConfig(attention_bias=False, mlp_bias=False, **common)
    elif arch == "qwen2":
        cfg = Qwen2Config(use_sliding_window=False, **common)
    else:
        raise ValueError(f"unknown arch {arch!r}")

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)  # U(0.5, 1.5), not all ones
            elif name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)  # qwen2 q/k/v biases
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id)
    save_kwargs = {}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        save_kwargs["safe_serialization"] = True  # transformers 4; v5 always writes safetensors
    model.save_pretrained(out, **save_kwargs)

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token=bos_tok, eos_token=eos_tok, pad_token=pad_tok,
        model_max_length=MAX_POSITIONS,
    )
    hf_tok.chat_template = CHATML_TEMPLATE
    hf_tok.save_pretrained(out)
    # State add_bos_token explicitly (and keep tokenizer.json's post-processor as trained).
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text(encoding="utf-8"))
    tc["add_bos_token"] = add_bos
    tc["add_eos_token"] = False
    tc["chat_template"] = CHATML_TEMPLATE  # older readers look here, not in chat_template.jinja
    tc_path.write_text(json.dumps(tc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tk.save(str(out / "tokenizer.json"))
    if config_style == "legacy":
        _write_legacy_rope_keys(out / "config.json")
    if not (out / "model.safetensors").exists():
        raise RuntimeError(f"{out}: save_pretrained wrote no model.safetensors")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
    ap.add_argument("--tied", action="store_true", help="tie lm_head to the embeddings")
    ap.add_argument("--kv-heads", type=int, default=HEADS, help=f"1..{HEADS} (GQA/MQA below {HEADS})")
    ap.add_argument("--rope-scaling", choices=["none", "linear", "llama3"], default="none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pretok", choices=["bytelevel", "qwen2"], default=None,
                    help="pre-tokenizer (default: qwen2 for --arch qwen2, else ByteLevel)")
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="tokenizer training text")
    ap.add_argument("--config-style", choices=["v5", "legacy"], default="v5",
                    help="rope keys in config.json: rope_parameters (as transformers 5 saves) or "
                         "the older rope_theta + rope_scaling")
    a = ap.parse_args(argv)
    out = build(a.out_dir, a.arch, a.tied, a.kv_heads, a.rope_scaling, a.seed, a.pretok,
                Path(a.corpus), a.config_style)
    files = sorted(p.name for p in out.iterdir())
    print(json.dumps({"out_dir": str(out), "files": files}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
