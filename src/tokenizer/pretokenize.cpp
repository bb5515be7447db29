#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace sllm::tok {

// ---------------------------------------------------------------- UTF-8 helpers

int utf8_char_len(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (int k = 2; k < len; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  return len;
}

uint32_t utf8_decode(std::string_view s, size_t i, int len) {
  const auto b = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[k])); };
  switch (len) {
    case 1:
      return b(i);
    case 2:
      return ((b(i) & 0x1F) << 6) | (b(i + 1) & 0x3F);
    case 3:
      return ((b(i) & 0x0F) << 12) | ((b(i + 1) & 0x3F) << 6) | (b(i + 2) & 0x3F);
    default:
      return ((b(i) & 0x07) << 18) | ((b(i + 1) & 0x3F) << 12) | ((b(i + 2) & 0x3F) << 6) |
             (b(i + 3) & 0x3F);
  }
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_unicode_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

namespace {

// Code point at i (or the raw byte for invalid UTF-8) and its length.
uint32_t cp_at(std::string_view s, size_t i, int* len) {
  int l = utf8_char_len(s, i);
  if (l == 0) {
    *len = 1;
    return 0xFFFFFFFFu;  // never whitespace, never a word char
  }
  *len = l;
  return utf8_decode(s, i, l);
}

size_t prev_char_start(std::string_view s, size_t i) {
  size_t j = i - 1;
  while (j > 0 && i - j < 4 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;
  return utf8_char_len(s, j) == static_cast<int>(i - j) ? j : i - 1;
}

bool is_word_cp(uint32_t cp) {
  if (cp == 0xFFFFFFFFu) return false;
  if (cp < 0x80) return std::isalnum(static_cast<int>(cp)) || cp == '_';
  return !is_unicode_space(cp);  // approximation: non-ASCII non-space counts as a word char
}

}  // namespace

// ---------------------------------------------------------------- added tokens

AddedTokenSplitter::AddedTokenSplitter(std::vector<AddedToken> tokens)
    : tokens_(std::move(tokens)) {
  for (int i = 0; i < static_cast<int>(tokens_.size()); ++i) {
    const auto& t = tokens_[i];
    if (t.content.empty()) continue;
    by_first_[t.normalized ? 1 : 0][static_cast<unsigned char>(t.content[0])].push_back(i);
  }
  for (auto& pass : by_first_)
    for (auto& v : pass)
      std::stable_sort(v.begin(), v.end(), [&](int a, int b) {
        return tokens_[a].content.size() > tokens_[b].content.size();
      });
}

void AddedTokenSplitter::split_pass(std::string_view text, int pass, bool parse_special,
                                    std::vector<Segment>& out) const {
  size_t last = 0, i = 0;
  const size_t n = text.size();
  while (i < n) {
    const AddedToken* hit = nullptr;
    for (int idx : by_first_[pass][static_cast<unsigned char>(text[i])]) {
      const auto& t = tokens_[idx];
      if (t.special && !parse_special) continue;
      if (text.compare(i, t.content.size(), t.content) == 0) {
        hit = &t;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t b = i, e = i + hit->content.size();
    if (hit->single_word) {
      int l;
      bool before_ok = b == 0 || !is_word_cp(cp_at(text, prev_char_start(text, b), &l));
      bool after_ok = e == n || !is_word_cp(cp_at(text, e, &l));
      if (!before_ok || !after_ok) {
        i = e;  // matches do not overlap, so scanning resumes after the rejected one
        continue;
      }
    }
    if (hit->lstrip) {
      while (b > last) {
        size_t p = prev_char_start(text, b);
        int l;
        if (!is_unicode_space(cp_at(text, p, &l))) break;
        b = p;
      }
    }
    if (hit->rstrip) {
      while (e < n) {
        int l;
        if (!is_unicode_space(cp_at(text, e, &l))) break;
        e += l;
      }
    }
    if (b > last) out.push_back({text.substr(last, b - last), -1});
    out.push_back({{}, hit->id});
    last = i = e;
  }
  if (last < n) out.push_back({text.substr(last), -1});
}

std::vector<Segment> AddedTokenSplitter::split(std::string_view text, bool parse_special) const {
  std::vector<Segment> first, out;
  if (text.empty()) return out;
  split_pass(text, 0, parse_special, first);
  for (const auto& s : first) {
    if (s.id >= 0)
      out.push_back(s);
    else
      split_pass(s.text, 1, parse_special, out);
  }
  return out;
}

// ---------------------------------------------------------------- regex

const char* const kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

// HF's regexes run on Oniguruma, whose \s is Unicode White_Space; PCRE2's UCP \s omits U+0085,
// so spell the class out.
constexpr const char* kWsBody =
    R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

std::string rewrite_whitespace(std::string_view p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char d = p[i + 1];
      if (d == 's') {
        out += in_class ? std::string(kWsBody) : "[" + std::string(kWsBody) + "]";
      } else if (d == 'S' && !in_class) {
        out += "[^" + std::string(kWsBody) + "]";
      } else if (d == 'Q') {  // literal run: copy up to \E untouched
        size_t e = p.find("\\E", i + 2);
        size_t stop = e == std::string_view::npos ? p.size() : e + 2;
        out.append(p.substr(i, stop - i));
        i = stop - 1;
        continue;
      } else {
        out += c;
        out += d;
      }
      ++i;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // leading ']' is literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // [:alpha:]
      size_t e = p.find(":]", i + 2);
      size_t stop = e == std::string_view::npos ? p.size() : e + 2;
      out.append(p.substr(i, stop - i));
      i = stop - 1;
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

Regex::Regex(std::string_view pattern, bool literal) {
  std::string pat = literal ? std::string(pattern) : rewrite_whitespace(pattern);
  uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
  if (literal)
    opts |= PCRE2_LITERAL;
  else
    opts |= PCRE2_UCP;
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(), opts, &err,
                                   &err_off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    SLLM_FAIL("tokenizer: cannot compile pre-tokenizer regex '{}' at offset {}: {}", pattern,
              err_off, reinterpret_cast<const char*>(msg));
  }
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view s) const {
  std::vector<std::pair<size_t, size_t>> out;
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t start = 0;
  uint32_t flags = 0;
  while (start <= s.size()) {
    int rc = pcre2_match(code, subject, s.size(), start, flags, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !(flags & PCRE2_NO_JIT)) {
      flags |= PCRE2_NO_JIT;  // interpreter keeps its backtracking frames on the heap
      continue;
    }
    if (rc < 0) {
      pcre2_match_data_free(md);
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof(msg));
      SLLM_FAIL("tokenizer: regex match failed: {}", reinterpret_cast<const char*>(msg));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t b = ov[0], e = ov[1];
    if (e > b) {
      out.emplace_back(b, e);
      start = e;
    } else {  // empty match: step over one character
      if (start >= s.size()) break;
      int l = utf8_char_len(s, start);
      start += l > 0 ? l : 1;
    }
  }
  pcre2_match_data_free(md);
  return out;
}

// ---------------------------------------------------------------- pre-tokenizer

std::vector<PreTokStep> pretok_steps_for_gguf_pre(std::string_view pre, bool* ignore_merges) {
  auto is = [&](std::initializer_list<std::string_view> names) {
    return std::find(names.begin(), names.end(), pre) != names.end();
  };
  PreTokStep byte_level;  // GPT-2 regex inside ByteLevel
  if (ignore_merges) *ignore_merges = false;
  if (is({"gpt2", "gpt-2", "default", "", "mpt", "olmo", "jais", "phi-2", "exaone4"}))
    return {byte_level};
  if (is({"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"})) {
    PreTokStep digits;
    digits.kind = PreTokStep::Kind::digits;
    digits.individual_digits = true;
    return {digits, byte_level};
  }
  PreTokStep split;
  split.kind = PreTokStep::Kind::split;
  byte_level.use_regex = false;
  if (is({"llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe", "falcon3"})) {
    split.pattern = kLlama3Regex;
    // llama.cpp sets ignore_merges only for the llama3 family names, as HF's tokenizer.json does.
    if (ignore_merges) *ignore_merges = is({"llama-bpe", "llama3", "llama-v3", "falcon3"});
    return {split, byte_level};
  }
  if (is({"qwen2", "qwen2.5", "qwen-2.5", "deepseek-r1-qwen", "stablelm2", "megrez"})) {
    split.pattern = kQwen2Regex;
    return {split, byte_level};
  }
  SLLM_FAIL(
      "tokenizer: unsupported GGUF pre-tokenizer '{}' (supported: gpt2/default, smollm/starcoder/"
      "refact, llama-bpe/llama3, qwen2)",
      pre);
}

PreTokenizer::PreTokenizer(std::vector<PreTokStep> steps) : steps_(std::move(steps)) {
  for (const auto& s : steps_) {
    switch (s.kind) {
      case PreTokStep::Kind::split:
        regex_.push_back(std::make_unique<Regex>(s.pattern, !s.is_regex));
        break;
      case PreTokStep::Kind::digits:
        regex_.push_back(std::make_unique<Regex>(R"(\p{N})"));
        break;
      case PreTokStep::Kind::byte_level:
        regex_.push_back(s.use_regex ? std::make_unique<Regex>(kGpt2Regex) : nullptr);
        break;
    }
  }
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

namespace {

// Splits one piece the way HF's NormalizedString::split does for each delimiter behaviour.
void split_with(const Regex& re, SplitBehavior behavior, bool invert, const std::string& s,
                std::vector<std::string>& out) {
  struct Part {
    size_t b, e;
    bool m;
  };
  std::vector<Part> parts;
  size_t prev = 0;
  for (auto [b, e] : re.find_all(s)) {
    if (b > prev) parts.push_back({prev, b, false});
    parts.push_back({b, e, true});
    prev = e;
  }
  if (prev < s.size()) parts.push_back({prev, s.size(), false});
  if (invert)
    for (auto& p : parts) p.m = !p.m;

  std::vector<Part> res;
  bool prev_match = false;
  switch (behavior) {
    case SplitBehavior::removed:
      for (auto& p : parts)
        if (!p.m) res.push_back(p);
      break;
    case SplitBehavior::isolated:
      res = parts;
      break;
    case SplitBehavior::merged_with_previous:
      for (auto& p : parts) {
        if (p.m && !prev_match && !res.empty())
          res.back().e = p.e;
        else
          res.push_back(p);
        prev_match = p.m;
      }
      break;
    case SplitBehavior::merged_with_next:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->m && !prev_match && !res.empty())
          res.back().b = it->b;
        else
          res.push_back(*it);
        prev_match = it->m;
      }
      std::reverse(res.begin(), res.end());
      break;
    case SplitBehavior::contiguous:
      for (auto& p : parts) {
        if (p.m == prev_match && !res.empty())
          res.back().e = p.e;
        else
          res.push_back(p);
        prev_match = p.m;
      }
      break;
  }
  for (auto& p : res)
    if (p.e > p.b) out.push_back(s.substr(p.b, p.e - p.b));
}

}  // namespace

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string> cur{std::string(text)}, next;
  if (text.empty()) return {};
  for (size_t k = 0; k < steps_.size(); ++k) {
    const auto& st = steps_[k];
    next.clear();
    for (auto& piece : cur) {
      switch (st.kind) {
        case PreTokStep::Kind::split:
          split_with(*regex_[k], st.behavior, st.invert, piece, next);
          break;
        case PreTokStep::Kind::digits:
          split_with(*regex_[k],
                     st.individual_digits ? SplitBehavior::isolated : SplitBehavior::contiguous,
                     false, piece, next);
          break;
        case PreTokStep::Kind::byte_level: {
          if (st.add_prefix_space && piece[0] != ' ') piece.insert(piece.begin(), ' ');
          if (regex_[k])
            split_with(*regex_[k], SplitBehavior::isolated, false, piece, next);
          else
            next.push_back(std::move(piece));
          break;
        }
      }
    }
    cur.swap(next);
  }
  return cur;
}

}  // namespace sllm::tok
