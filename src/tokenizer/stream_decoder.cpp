#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace sllm::tok {

namespace {

constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Number of leading bytes at s[i] that form a valid prefix of some UTF-8 character (the
// "maximal subpart" of Unicode's replacement rules); 0 if s[i] cannot start a character.
int valid_prefix_len(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  int len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  int k = 1;
  if (i + k < s.size()) {
    if (b(i + k) < lo || b(i + k) > hi) return 1;
    ++k;
    while (k < len && i + k < s.size() && (b(i + k) & 0xC0) == 0x80) ++k;
  }
  return k;
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& t, bool skip_special)
    : tok_(&t), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_->is_special(id)) return {};
  pending_ += tok_->token_bytes(id);
  return drain(false);
}

std::string StreamDecoder::flush() { return drain(true); }

// Emits complete characters; bytes that can never complete become U+FFFD right away. An
// incomplete but still valid tail is kept unless final.
std::string StreamDecoder::drain(bool final) {
  std::string out;
  size_t i = 0;
  const size_t n = pending_.size();
  while (i < n) {
    int l = utf8_char_len(pending_, i);
    if (l > 0) {
      out.append(pending_, i, l);
      i += l;
      continue;
    }
    int p = valid_prefix_len(pending_, i);
    if (p > 0 && i + p == n && !final) break;  // may still be completed by the next token
    out += kReplacement;
    i += p > 0 ? p : 1;
  }
  pending_.erase(0, i);
  return out;
}

}  // namespace sllm::tok
