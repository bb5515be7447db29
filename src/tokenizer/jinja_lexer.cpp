// Jinja lexer: text and tags with the whitespace rules transformers compiles templates with
// (trim_blocks: drop the newline after a block or comment tag; lstrip_blocks: drop the spaces and
// tabs before a block or comment tag that starts its line; '-' strips all whitespace on that side,
// '+' keeps it).
#include <fmt/format.h>

#include <cctype>
#include <string_view>

#include "core/error.h"
#include "tokenizer/jinja.h"
#include "tokenizer/pretokenize.h"

namespace sllm::tok::jinja {

void fail_at(Pos pos, const std::string& message) {
  SLLM_FAIL("chat template line {}, column {}: {}", pos.line, pos.col, message);
}

namespace {

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

class Lexer {
 public:
  explicit Lexer(const std::string& s) : s_(s) {}

  std::vector<Token> run() {
    bool strip_next = false;  // the previous tag ended with '-'
    bool line_start = true;   // the previous tag's match ended a line (lstrip applies)
    while (i_ < s_.size()) {
      size_t open = find_tag(i_);
      std::string text = s_.substr(i_, open - i_);
      Pos text_pos = pos_;
      advance_to(open);
      if (strip_next)
        text.erase(0, text.find_first_not_of(" \t\n\r\f\v") == std::string::npos
                          ? text.size()
                          : text.find_first_not_of(" \t\n\r\f\v"));
      strip_next = false;
      if (open == s_.size()) {
        push_text(text, text_pos);
        break;
      }
      char kind = s_[open + 1];  // '{', '%' or '#'
      char mod = open + 2 < s_.size() ? s_[open + 2] : '\0';
      if (mod == '-') {
        while (!text.empty() && is_ws(text.back())) text.pop_back();
      } else if (kind != '{' && mod != '+') {
        size_t nl = text.rfind('\n');
        size_t from = nl == std::string::npos ? 0 : nl + 1;
        if ((nl != std::string::npos || line_start) &&
            text.find_first_not_of(" \t", from) == std::string::npos)
          text.erase(from);
      }
      push_text(text, text_pos);
      Pos tag_pos = pos_;
      advance_to(open + 2 + ((mod == '-' || mod == '+') ? 1 : 0));
      bool trim_end = false, keep_end = false;
      if (kind == '#') {
        size_t close = s_.find("#}", i_);
        if (close == std::string::npos) fail_at(tag_pos, "unclosed comment: add '#}'");
        trim_end = close > i_ && s_[close - 1] == '-';
        keep_end = close > i_ && s_[close - 1] == '+';
        advance_to(close + 2);
      } else {
        out_.push_back({kind == '{' ? TokKind::var_begin : TokKind::block_begin, "", tag_pos});
        lex_inside(kind == '{' ? '}' : '%', tag_pos, trim_end, keep_end);
      }
      line_start = false;
      if (trim_end) {
        strip_next = true;
      } else if (kind != '{' && !keep_end && i_ < s_.size() && s_[i_] == '\n') {
        advance_to(i_ + 1);  // trim_blocks
        line_start = true;
      }
    }
    out_.push_back({TokKind::eof, "", pos_});
    return std::move(out_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t p = s_.find('{', from); p != std::string::npos; p = s_.find('{', p + 1))
      if (p + 1 < s_.size() && (s_[p + 1] == '{' || s_[p + 1] == '%' || s_[p + 1] == '#')) return p;
    return s_.size();
  }

  void advance_to(size_t to) {
    for (; i_ < to; ++i_) {
      if (s_[i_] == '\n') {
        ++pos_.line;
        pos_.col = 1;
      } else if ((static_cast<unsigned char>(s_[i_]) & 0xC0) != 0x80) {
        ++pos_.col;
      }
    }
  }

  void push_text(const std::string& t, Pos p) {
    if (!t.empty()) out_.push_back({TokKind::text, t, p});
  }

  // Tokens of one {{ }} or {% %} tag up to its closing delimiter.
  void lex_inside(char close, Pos tag_pos, bool& trim_end, bool& keep_end) {
    int depth = 0;
    const TokKind end_kind = close == '}' ? TokKind::var_end : TokKind::block_end;
    while (true) {
      while (i_ < s_.size() && is_ws(s_[i_])) advance_to(i_ + 1);
      if (i_ >= s_.size())
        fail_at(tag_pos, fmt::format("unclosed tag: add '{}}}'", close == '}' ? "}" : "%"));
      const char c = s_[i_];
      const char n = i_ + 1 < s_.size() ? s_[i_ + 1] : '\0';
      const char n2 = i_ + 2 < s_.size() ? s_[i_ + 2] : '\0';
      if (depth == 0 && (c == '-' || c == '+') && n == close && n2 == '}') {
        (c == '-' ? trim_end : keep_end) = true;
        out_.push_back({end_kind, "", pos_});
        advance_to(i_ + 3);
        return;
      }
      if (depth == 0 && c == close && n == '}') {
        out_.push_back({end_kind, "", pos_});
        advance_to(i_ + 2);
        return;
      }
      Pos p = pos_;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = i_;
        while (e < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[e])) || s_[e] == '_'))
          ++e;
        out_.push_back({TokKind::name, s_.substr(i_, e - i_), p});
        advance_to(e);
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        size_t e = i_;
        while (e < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e]))) ++e;
        if (e + 1 < s_.size() && s_[e] == '.' &&
            std::isdigit(static_cast<unsigned char>(s_[e + 1]))) {
          ++e;
          while (e < s_.size() && std::isdigit(static_cast<unsigned char>(s_[e]))) ++e;
        }
        out_.push_back({TokKind::num, s_.substr(i_, e - i_), p});
        advance_to(e);
      } else if (c == '\'' || c == '"') {
        lex_string(c, p);
      } else {
        static const char* two[] = {"==", "!=", "<=", ">=", "//", "**"};
        std::string op(1, c);
        for (const char* t : two)
          if (c == t[0] && n == t[1]) op = t;
        if (op.size() == 1 && std::string_view("+-*/%~<>=()[]{}.,:|").find(c) == std::string::npos)
          fail_at(p, fmt::format("unexpected character '{}'", c));
        if (c == '(' || c == '[' || c == '{') ++depth;
        if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
        out_.push_back({TokKind::op, op, p});
        advance_to(i_ + op.size());
      }
    }
  }

  // Python string-literal escapes, as jinja2 decodes them ("unicode-escape").
  void lex_string(char quote, Pos p) {
    std::string v;
    size_t e = i_ + 1;
    for (;; ++e) {
      if (e >= s_.size()) fail_at(p, "unterminated string literal");
      char c = s_[e];
      if (c == quote) break;
      if (c != '\\' || e + 1 >= s_.size()) {
        v += c;
        continue;
      }
      char x = s_[++e];
      switch (x) {
        case 'n':
          v += '\n';
          break;
        case 't':
          v += '\t';
          break;
        case 'r':
          v += '\r';
          break;
        case '0':
          v += '\0';
          break;
        case 'a':
          v += '\a';
          break;
        case 'b':
          v += '\b';
          break;
        case 'f':
          v += '\f';
          break;
        case 'v':
          v += '\v';
          break;
        case '\\':
        case '\'':
        case '"':
          v += x;
          break;
        case '\n':
          break;
        case 'x':
        case 'u':
        case 'U': {
          size_t len = x == 'x' ? 2 : x == 'u' ? 4 : 8;
          bool ok = e + len < s_.size();
          for (size_t k = 1; ok && k <= len; ++k)
            ok = std::isxdigit(static_cast<unsigned char>(s_[e + k])) != 0;
          if (!ok) fail_at(p, fmt::format("bad \\{} escape in a string literal", x));
          uint32_t cp = static_cast<uint32_t>(std::stoul(s_.substr(e + 1, len), nullptr, 16));
          utf8_append(v, cp);
          e += len;
          break;
        }
        default:
          v += '\\';
          v += x;
      }
    }
    out_.push_back({TokKind::str, v, p});
    advance_to(e + 1);
  }

  const std::string& s_;
  size_t i_ = 0;
  Pos pos_;
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> lex(const std::string& src) { return Lexer(src).run(); }

}  // namespace sllm::tok::jinja
