#include "tokenizer/gguf_vocab.h"

#include "core/error.h"
#include "tokenizer/bpe.h"

namespace sllm::tok {
namespace {

// Whether two pre-tokenizer pipelines split text the same way (fields a step's kind ignores are
// not compared).
bool same_steps(const std::vector<PreTokStep>& a, const std::vector<PreTokStep>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto &x = a[i], &y = b[i];
    if (x.kind != y.kind) return false;
    switch (x.kind) {
      case PreTokStep::Kind::split:
        if (x.pattern != y.pattern || x.is_regex != y.is_regex || x.behavior != y.behavior ||
            x.invert != y.invert)
          return false;
        break;
      case PreTokStep::Kind::digits:
        if (x.individual_digits != y.individual_digits) return false;
        break;
      case PreTokStep::Kind::byte_level:
        if (x.add_prefix_space != y.add_prefix_space || x.use_regex != y.use_regex) return false;
        break;
    }
  }
  return true;
}

int32_t token_type(TokenKind k) {
  switch (k) {
    case TokenKind::normal:
      return 1;
    case TokenKind::unknown:
      return 2;
    case TokenKind::control:
      return 3;
    case TokenKind::user_defined:
      return 4;
    case TokenKind::unused:
      return 5;
    case TokenKind::byte:
      return 6;
  }
  return 1;
}

}  // namespace

GgufVocab gguf_vocab_of(const Tokenizer& t) {
  const auto* bpe = dynamic_cast<const BpeTokenizer*>(&t);
  SLLM_CHECK(bpe != nullptr,
             "GGUF export writes byte-level BPE tokenizers (tokenizer.ggml.model 'gpt2'); this "
             "model's SentencePiece tokenizer is not supported yet: export to a Hugging Face "
             "directory and use llama.cpp's convert_hf_to_gguf.py");
  const BpeData& d = bpe->data();
  GgufVocab v;
  // llama.cpp's pre-tokenizer names, each checked against the steps sllm itself runs for it.
  for (const char* name : {"smollm", "llama-bpe", "qwen2", "gpt-2"}) {
    bool ignore = false;
    const auto steps = pretok_steps_for_gguf_pre(name, &ignore);
    if (ignore == d.ignore_merges && same_steps(steps, d.pretok)) {
      v.pre = name;
      break;
    }
  }
  SLLM_CHECK(!v.pre.empty(),
             "GGUF export: this tokenizer's pre-tokenizer matches none llama.cpp names (smollm, "
             "llama-bpe, qwen2, gpt-2), so llama.cpp would split text differently");
  SLLM_CHECK(!d.nfc || v.pre == "qwen2",
             "GGUF export: the tokenizer NFC-normalizes text, which llama.cpp's '{}' pre-tokenizer "
             "does not",
             v.pre);
  const size_t n = d.pieces.size();
  v.tokens.resize(n);
  v.token_types.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const bool hole = d.pieces[i].empty();
    v.tokens[i] = hole ? "[PAD" + std::to_string(i) + "]" : d.pieces[i];
    v.token_types[i] = hole ? 5 : token_type(d.kinds[i]);
  }
  v.merges.reserve(d.merges.size());
  for (const auto& [a, b] : d.merges) v.merges.push_back(a + " " + b);
  // The special ids, BOS rule and template sllm runs with (the tokenizer's, not its build data).
  v.bos_id = t.bos_id;
  v.eos_id = t.eos_id;
  v.pad_id = t.pad_id;
  v.unk_id = t.unk_id;
  v.add_bos = t.add_bos;
  v.chat_template = t.chat_template;
  return v;
}

}  // namespace sllm::tok
