// The inverse of make_bpe_from_gguf: a tokenizer as the tokenizer.ggml.* arrays of a GGUF file.
#pragma once

#include "tokenizer/tokenizer.h"

namespace sllm::tok {

// Tokens (holes in the id range become "[PAD<id>]", type unused), token types, merges, special
// ids, add_bos and the chat template of a byte-level BPE tokenizer, with tokenizer.ggml.pre set to
// the llama.cpp pre-tokenizer name whose splitting is this tokenizer's ("smollm", "llama-bpe",
// "qwen2", "gpt-2"). Throws sllm::Error for what GGUF's gpt2 model cannot hold: SentencePiece
// tokenizers, pre-tokenizers llama.cpp has no name for, an NFC normalizer outside qwen2.
GgufVocab gguf_vocab_of(const Tokenizer& t);

}  // namespace sllm::tok
