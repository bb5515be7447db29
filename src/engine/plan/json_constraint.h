// Constrained decoding to a JSON object (OpenAI's response_format {"type": "json_object"}).
// JsonPrefix is a byte-level recognizer of JSON (RFC 8259, UTF-8 checked in strings) whose
// accepted prefixes can always be completed; JsonObjectConstraint masks, at each step, every token
// whose bytes would leave that language, and reports when the object is complete so the engine
// ends the sequence there. No libtorch: the mask works on a plain row of logits.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/plan/token_constraint.h"

namespace sllm::tok {
class Tokenizer;
}

namespace sllm::engine {

// Accepts byte by byte the prefixes of one JSON object followed by whitespace. Every prefix it
// accepts extends to a complete object; complete() says when one is. Whitespace runs are capped
// (max_whitespace) so a model cannot pad forever, and nesting is capped at max_depth.
class JsonPrefix {
 public:
  explicit JsonPrefix(int max_whitespace = 16, int max_depth = 32)
      : max_ws_(max_whitespace), max_depth_(max_depth) {}

  // Consumes c; false (state then unspecified) when no JSON object starts with the bytes so far.
  bool feed(uint8_t c);
  bool feed(std::string_view bytes);
  bool complete() const { return mode_ == Mode::done; }

 private:
  enum class Mode : uint8_t {
    start,        // before the top-level '{'
    obj_first,    // after '{': a key or '}'
    obj_key,      // after ',' in an object: a key
    colon,        // after a key
    value,        // after ':' or ',' in an array
    arr_first,    // after '[': a value or ']'
    after_value,  // in a container: ',' or its closing bracket
    string,
    escape,   // after '\'
    hex,      // in \uXXXX
    low_bs,   // after a high surrogate's \uXXXX: the '\' of the low one
    low_u,    // ... its 'u'
    number,   // see Num
    literal,  // true / false / null
    done,     // the top-level object is closed
  };
  enum class Num : uint8_t { minus, zero, integer, dot, fraction, exp, exp_sign, exp_digits };

  bool begin_value(uint8_t c);
  bool string_byte(uint8_t c);
  bool hex_digit(uint8_t c);
  bool number_byte(uint8_t c);
  void close_value();  // a value ended: back to its container, or done

  int max_ws_, max_depth_;
  Mode mode_ = Mode::start;
  Num num_ = Num::minus;
  bool key_ = false;                         // the string being read is an object key
  bool want_low_ = false;                    // the \u escape being read must be a low surrogate
  uint8_t hex_left_ = 0;                     // \u digits still to come
  uint16_t hex_value_ = 0;                   // \u digits so far
  uint8_t utf8_left_ = 0;                    // continuation bytes still to come
  uint8_t utf8_lo_ = 0x80, utf8_hi_ = 0xBF;  // the range of the next continuation byte
  const char* literal_ = nullptr;            // the rest of true/false/null to match
  int ws_run_ = 0;
  std::string stack_;  // '{' / '[' of the open containers
};

// Each token's bytes, grouped by first byte, for one tokenizer; built once and shared by the
// requests that constrain their output. Special tokens (eos, chat markers) are never allowed.
struct JsonVocab {
  explicit JsonVocab(const tok::Tokenizer& t);
  std::vector<std::string> bytes;  // per token id; empty: never allowed
  std::array<std::vector<int32_t>, 256> by_first;
};

class JsonObjectConstraint : public TokenConstraint {
 public:
  explicit JsonObjectConstraint(std::shared_ptr<const JsonVocab> vocab)
      : vocab_(std::move(vocab)) {}
  bool mask(float* logits, int64_t vocab) const override;
  void advance(int32_t token) override;
  bool complete() const override { return state_.complete(); }

 private:
  std::shared_ptr<const JsonVocab> vocab_;
  JsonPrefix state_;
};

}  // namespace sllm::engine
