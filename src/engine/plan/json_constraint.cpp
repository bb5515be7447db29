#include "engine/plan/json_constraint.h"

#include <limits>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace sllm::engine {

namespace {

bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool JsonPrefix::feed(std::string_view bytes) {
  for (char c : bytes)
    if (!feed(static_cast<uint8_t>(c))) return false;
  return true;
}

bool JsonPrefix::feed(uint8_t c) {
  switch (mode_) {
    case Mode::string:
      return string_byte(c);
    case Mode::escape:
      if (c == 'u') {
        mode_ = Mode::hex;
        hex_left_ = 4;
        hex_value_ = 0;
        return true;
      }
      if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' && c != 'r' &&
          c != 't')
        return false;
      mode_ = Mode::string;
      return true;
    case Mode::hex:
      return hex_digit(c);
    case Mode::low_bs:
      if (c != '\\') return false;
      mode_ = Mode::low_u;
      return true;
    case Mode::low_u:
      if (c != 'u') return false;
      mode_ = Mode::hex;
      hex_left_ = 4;
      hex_value_ = 0;
      return true;
    case Mode::number:
      return number_byte(c);
    case Mode::literal:
      if (c != static_cast<uint8_t>(*literal_)) return false;
      if (*++literal_ == '\0') close_value();
      return true;
    default:
      break;
  }
  // Between tokens: whitespace, capped per run.
  if (is_ws(c)) return ++ws_run_ <= max_ws_;
  ws_run_ = 0;
  switch (mode_) {
    case Mode::start:
      if (c != '{') return false;
      stack_.push_back('{');
      mode_ = Mode::obj_first;
      return true;
    case Mode::obj_first:
      if (c == '}') {
        stack_.pop_back();
        close_value();
        return true;
      }
      [[fallthrough]];
    case Mode::obj_key:
      if (c != '"') return false;
      mode_ = Mode::string;
      key_ = true;
      return true;
    case Mode::colon:
      if (c != ':') return false;
      mode_ = Mode::value;
      return true;
    case Mode::arr_first:
      if (c == ']') {
        stack_.pop_back();
        close_value();
        return true;
      }
      return begin_value(c);
    case Mode::value:
      return begin_value(c);
    case Mode::after_value: {
      const char top = stack_.back();
      if (c == ',') {
        mode_ = top == '{' ? Mode::obj_key : Mode::value;
        return true;
      }
      if ((c == '}' && top == '{') || (c == ']' && top == '[')) {
        stack_.pop_back();
        close_value();
        return true;
      }
      return false;
    }
    default:  // done: only whitespace, handled above
      return false;
  }
}

bool JsonPrefix::begin_value(uint8_t c) {
  switch (c) {
    case '{':
    case '[':
      if (static_cast<int>(stack_.size()) >= max_depth_) return false;
      stack_.push_back(static_cast<char>(c));
      mode_ = c == '{' ? Mode::obj_first : Mode::arr_first;
      return true;
    case '"':
      mode_ = Mode::string;
      key_ = false;
      return true;
    case 't':
      literal_ = "rue";
      break;
    case 'f':
      literal_ = "alse";
      break;
    case 'n':
      literal_ = "ull";
      break;
    case '-':
      mode_ = Mode::number;
      num_ = Num::minus;
      return true;
    default:
      if (!is_digit(c)) return false;
      mode_ = Mode::number;
      num_ = c == '0' ? Num::zero : Num::integer;
      return true;
  }
  mode_ = Mode::literal;
  return true;
}

bool JsonPrefix::string_byte(uint8_t c) {
  if (utf8_left_ > 0) {
    if (c < utf8_lo_ || c > utf8_hi_) return false;
    --utf8_left_;
    utf8_lo_ = 0x80;
    utf8_hi_ = 0xBF;
    return true;
  }
  if (c == '"') {
    if (key_) {
      mode_ = Mode::colon;
    } else {
      close_value();
    }
    return true;
  }
  if (c == '\\') {
    mode_ = Mode::escape;
    return true;
  }
  if (c < 0x20) return false;  // control characters must be escaped
  if (c < 0x80) return true;
  // Well-formed UTF-8 only (no overlong forms, surrogates or code points past U+10FFFF).
  if (c >= 0xC2 && c <= 0xDF) {
    utf8_left_ = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    utf8_left_ = 2;
    if (c == 0xE0) utf8_lo_ = 0xA0;
    if (c == 0xED) utf8_hi_ = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    utf8_left_ = 3;
    if (c == 0xF0) utf8_lo_ = 0x90;
    if (c == 0xF4) utf8_hi_ = 0x8F;
  } else {
    return false;
  }
  return true;
}

bool JsonPrefix::hex_digit(uint8_t c) {
  const int v = hex_value(c);
  if (v < 0) return false;
  hex_value_ = static_cast<uint16_t>(hex_value_ << 4 | v);
  --hex_left_;
  // Decide surrogates as early as the digits allow, so no accepted prefix is a dead end: a
  // high surrogate (D800-DBFF) must be followed by a low one (DC00-DFFF), which may not stand
  // alone.
  if (hex_left_ == 3 && want_low_ && hex_value_ != 0xD) return false;
  if (hex_left_ == 2) {
    const bool low = hex_value_ >= 0xDC && hex_value_ <= 0xDF;
    if (low != want_low_) return false;
  }
  if (hex_left_ > 0) return true;
  if (want_low_) {
    want_low_ = false;
    mode_ = Mode::string;
  } else if (hex_value_ >= 0xD800 && hex_value_ <= 0xDBFF) {
    want_low_ = true;
    mode_ = Mode::low_bs;
  } else {
    mode_ = Mode::string;
  }
  return true;
}

bool JsonPrefix::number_byte(uint8_t c) {
  const bool digit = is_digit(c);
  switch (num_) {
    case Num::minus:
      if (!digit) return false;
      num_ = c == '0' ? Num::zero : Num::integer;
      return true;
    case Num::zero:
    case Num::integer:
      if (digit && num_ == Num::integer) return true;
      if (digit) return false;  // no leading zeros
      if (c == '.') {
        num_ = Num::dot;
        return true;
      }
      if (c == 'e' || c == 'E') {
        num_ = Num::exp;
        return true;
      }
      break;
    case Num::dot:
      if (!digit) return false;
      num_ = Num::fraction;
      return true;
    case Num::fraction:
      if (digit) return true;
      if (c == 'e' || c == 'E') {
        num_ = Num::exp;
        return true;
      }
      break;
    case Num::exp:
      if (c == '+' || c == '-') {
        num_ = Num::exp_sign;
        return true;
      }
      [[fallthrough]];
    case Num::exp_sign:
      if (!digit) return false;
      num_ = Num::exp_digits;
      return true;
    case Num::exp_digits:
      if (digit) return true;
      break;
  }
  // The number ended before c (numbers are never the top-level value): c follows it.
  close_value();
  return feed(c);
}

void JsonPrefix::close_value() {
  mode_ = stack_.empty() ? Mode::done : Mode::after_value;
  ws_run_ = 0;
}

JsonVocab::JsonVocab(const tok::Tokenizer& t) {
  const int32_t n = t.vocab_size();
  bytes.resize(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id) {
    if (t.is_special(id)) continue;
    std::string b = t.token_bytes(id);
    if (b.empty()) continue;
    by_first[static_cast<uint8_t>(b[0])].push_back(id);
    bytes[static_cast<size_t>(id)] = std::move(b);
  }
}

bool JsonObjectConstraint::mask(float* logits, int64_t vocab) const {
  const float ninf = -std::numeric_limits<float>::infinity();
  std::vector<uint8_t> ok(static_cast<size_t>(vocab), 0);
  bool any = false;
  for (int b = 0; b < 256; ++b) {
    const auto& ids = vocab_->by_first[static_cast<size_t>(b)];
    if (ids.empty()) continue;
    JsonPrefix first = state_;
    if (!first.feed(static_cast<uint8_t>(b))) continue;  // the whole group is out
    for (int32_t id : ids) {
      if (id >= vocab) continue;
      const std::string& bytes = vocab_->bytes[static_cast<size_t>(id)];
      bool good = true;
      if (bytes.size() > 1) {
        JsonPrefix s = first;
        good = s.feed(std::string_view(bytes).substr(1));
      }
      if (good) ok[static_cast<size_t>(id)] = 1, any = true;
    }
  }
  for (int64_t i = 0; i < vocab; ++i)
    if (!ok[static_cast<size_t>(i)]) logits[i] = ninf;
  return any;
}

void JsonObjectConstraint::advance(int32_t token) {
  SLLM_CHECK(token >= 0 && static_cast<size_t>(token) < vocab_->bytes.size() &&
                 !vocab_->bytes[static_cast<size_t>(token)].empty() &&
                 state_.feed(vocab_->bytes[static_cast<size_t>(token)]),
             "token {} breaks the JSON output it was allowed into", token);
}

}  // namespace sllm::engine
