// Text splitting that happens before the BPE/SentencePiece model sees the text: added/special
// token extraction, then the pre-tokenizer pipeline (regex splits, digit splits, ByteLevel).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sllm::tok {

// ---- UTF-8 helpers ----
// Length of the valid UTF-8 character at s[i]; 0 if the bytes there are invalid or truncated.
int utf8_char_len(std::string_view s, size_t i);
// Decodes the valid character at s[i] (call only when utf8_char_len > 0).
uint32_t utf8_decode(std::string_view s, size_t i, int len);
void utf8_append(std::string& out, uint32_t cp);
// Unicode White_Space (what \s means in Oniguruma / Rust char::is_whitespace).
bool is_unicode_space(uint32_t cp);

// ---- added / special tokens ----
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = true;       // only matched when parse_special
  bool lstrip = false;       // swallow whitespace on the left
  bool rstrip = false;       // swallow whitespace on the right
  bool single_word = false;  // only match outside words
  bool normalized = false;   // HF: matched in a second pass over normalized text
};

struct Segment {
  std::string_view text;  // valid when id < 0
  int32_t id = -1;        // added token id
};

// Leftmost-longest matching of added tokens, as HF's AddedVocabulary does (non-normalized tokens
// first, then normalized ones on the remaining text).
class AddedTokenSplitter {
 public:
  AddedTokenSplitter() = default;
  explicit AddedTokenSplitter(std::vector<AddedToken> tokens);
  std::vector<Segment> split(std::string_view text, bool parse_special) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }

 private:
  void split_pass(std::string_view text, int pass, bool parse_special,
                  std::vector<Segment>& out) const;
  std::vector<AddedToken> tokens_;
  // Per pass, per first byte: token indices, longest first.
  std::array<std::array<std::vector<int>, 256>, 2> by_first_{};
};

// ---- pre-tokenizer pipeline (mirrors HF pre_tokenizers) ----
enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

struct PreTokStep {
  enum class Kind { split, digits, byte_level };
  Kind kind = Kind::byte_level;
  std::string pattern;  // split: the regex (or literal string when !is_regex)
  bool is_regex = true;
  SplitBehavior behavior = SplitBehavior::isolated;
  bool invert = false;
  bool individual_digits = false;  // digits
  bool add_prefix_space = false;   // byte_level
  bool use_regex = true;           // byte_level: apply the GPT-2 regex
};

extern const char* const kGpt2Regex;
extern const char* const kLlama3Regex;
extern const char* const kQwen2Regex;

// Steps equivalent to llama.cpp's handling of a GGUF tokenizer.ggml.pre name. Throws for names it
// does not know. Also says whether that vocab ignores merges for whole-word vocab hits (Llama-3).
std::vector<PreTokStep> pretok_steps_for_gguf_pre(std::string_view pre, bool* ignore_merges);

// Compiled PCRE2 regex (UTF + UCP; \s rewritten to Unicode White_Space; invalid UTF-8 input never
// matches but never fails either).
class Regex {
 public:
  explicit Regex(std::string_view pattern, bool literal = false);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // Non-empty, non-overlapping matches as [begin, end) byte offsets.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

class PreTokenizer {
 public:
  PreTokenizer() = default;
  explicit PreTokenizer(std::vector<PreTokStep> steps);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;
  // Splits text into pieces for the model (raw bytes; the byte->unicode mapping is the model's).
  std::vector<std::string> split(std::string_view text) const;
  const std::vector<PreTokStep>& steps() const { return steps_; }

 private:
  std::vector<PreTokStep> steps_;
  std::vector<std::unique_ptr<Regex>> regex_;  // per step, null when unused
};

}  // namespace sllm::tok
