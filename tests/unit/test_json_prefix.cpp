// JsonPrefix against nlohmann::json's parser: the same documents accepted, and every prefix it
// accepts is one the parser reads to the end without an error.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <random>
#include <string>

#include "core/error.h"
#include "engine/plan/json_constraint.h"
#include "tokenizer/tokenizer.h"

namespace {

using nlohmann::json;
using sllm::engine::JsonPrefix;

bool ours_complete(const std::string& s) {
  JsonPrefix p;
  return p.feed(s) && p.complete();
}
bool ours_prefix(const std::string& s) {
  JsonPrefix p;
  return p.feed(s);
}
// The parser fails only for want of more input: s is the start of some JSON text.
bool parser_prefix(const std::string& s) {
  try {
    const json j = json::parse(s);
    (void)j;
    return true;
  } catch (const json::parse_error& e) {
    return e.byte == s.size() + 1;
  } catch (const json::out_of_range&) {
    return true;  // a number too large for a double: grammatical all the same
  }
}

// Some JSON object starts with s, found by search: s + the end of its last lexeme + an optional
// ":0" (after a key) + up to four closing brackets. The parser check rules most s out first.
bool completable(const std::string& s) {
  if (!parser_prefix(s)) return false;
  static const char* finish[] = {
      "",        "0",       "\"",     "0\"",        "rue",           "ue",
      "e",       "alse",    "lse",    "se",         "ull",           "ll",
      "l",       "n\"",     "00\"",   "0\"",        "000\"",         "\\uDC00\"",
      "uDC00\"", "C00\"",   "\xA9\"", "\xAC\"",     "\x80\x80\"",    "\x80\x80\x80\"",
      "\x80\"",  "\"k\":0", "0000\"", "\xA0\x80\"", "\x90\x80\x80\""};
  static const char* mid[] = {"", ":0"};
  std::vector<std::string> closers = {""};
  for (int len = 1; len <= 4; ++len)
    for (int bits = 0; bits < (1 << len); ++bits) {
      std::string c;
      for (int i = 0; i < len; ++i) c += (bits >> i & 1) ? ']' : '}';
      closers.push_back(c);
    }
  for (const char* f : finish)
    for (const char* m : mid)
      for (const auto& c : closers)
        if (json::accept(s + f + m + c)) return true;
  return false;
}

// A random JSON object with whitespace runs of at most 3 and nesting below 6.
class Gen {
 public:
  explicit Gen(uint64_t seed) : rng_(seed) {}
  std::string object(int depth = 0) {
    std::string s = "{" + ws();
    const int n = pick(4);
    for (int i = 0; i < n; ++i) {
      if (i) s += "," + ws();
      s += string() + ws() + ":" + ws() + value(depth + 1) + ws();
    }
    return s + "}";
  }

 private:
  int pick(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
  std::string ws() {
    static const char* k[] = {"", "", " ", "\n", "\t", "\r\n", "  ", " \n "};
    return k[pick(8)];
  }
  std::string digits(int max) {
    std::string s(1, static_cast<char>('1' + pick(9)));
    for (int i = pick(max); i > 0; --i) s += static_cast<char>('0' + pick(10));
    return s;
  }
  std::string number() {
    std::string s = pick(3) == 0 ? "-" : "";
    s += pick(4) == 0 ? "0" : digits(5);
    if (pick(2)) s += "." + digits(3);
    if (pick(3) == 0) s += std::string(pick(2) ? "e" : "E") + (pick(2) ? "-" : "+") + digits(2);
    return s;
  }
  std::string string() {
    static const char* parts[] = {"a",        "Zq",           " ",
                                  "\\n",      "\\\"",         "\\\\",
                                  "\\/",      "\\u00e9",      "\\uD83D\\uDE00",
                                  "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
                                  "\\t",      "{}[],:",       "0"};
    std::string s = "\"";
    for (int i = pick(5); i > 0; --i) s += parts[pick(15)];
    return s + "\"";
  }
  std::string value(int depth) {
    switch (pick(depth < 5 ? 8 : 6)) {
      case 0:
        return string();
      case 1:
        return number();
      case 2:
        return "true";
      case 3:
        return "false";
      case 4:
        return "null";
      case 5:
        return number();
      case 6:
        return object(depth);
      default: {
        std::string s = "[" + ws();
        const int n = pick(4);
        for (int i = 0; i < n; ++i) s += (i ? "," + ws() : "") + value(depth + 1) + ws();
        return s + "]";
      }
    }
  }
  std::mt19937_64 rng_;
};

TEST(JsonPrefix, AcceptsValidObjectsAndEveryPrefixOfThem) {
  Gen g(1);
  for (int i = 0; i < 400; ++i) {
    const std::string doc = g.object() + (i % 3 ? "" : "\n");
    ASSERT_TRUE(json::accept(doc)) << doc;  // the generator itself is right
    ASSERT_TRUE(ours_complete(doc)) << doc;
    for (size_t n = 0; n < doc.size(); ++n) {
      const std::string p = doc.substr(0, n);
      ASSERT_TRUE(ours_prefix(p)) << p;
      // Complete exactly once the closing brace is in: only whitespace may follow.
      EXPECT_EQ(ours_complete(p), doc.find_first_not_of(" \t\r\n", n) == std::string::npos) << p;
    }
  }
}

TEST(JsonPrefix, AgreesWithTheParserOnMutatedDocuments) {
  Gen g(2);
  std::mt19937_64 rng(3);
  const std::string alphabet = "{}[]:,\"\\ \n-+.eE0123456789truefalsnl\x01\xC3\xA9\xED\xA0\xF5uD";
  int accepted = 0, rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string doc = g.object();
    for (int m = 1 + static_cast<int>(rng() % 3); m > 0; --m) {
      const size_t at = rng() % (doc.size() + 1);
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          doc.insert(doc.begin() + static_cast<long>(at), c);
          break;
        case 1:
          if (at < doc.size()) doc.erase(at, 1);
          break;
        default:
          if (at < doc.size()) doc[at] = c;
      }
    }
    const bool object = doc.find_first_not_of(" \t\r\n") != std::string::npos &&
                        doc[doc.find_first_not_of(" \t\r\n")] == '{';
    const bool want = object && json::accept(doc);
    ASSERT_EQ(ours_complete(doc), want) << doc;
    (want ? accepted : rejected)++;
    // Every prefix we accept, the parser reads without an error before its end.
    for (size_t n = 0; n <= doc.size(); ++n) {
      const std::string p = doc.substr(0, n);
      if (!ours_prefix(p)) break;
      ASSERT_TRUE(parser_prefix(p)) << p;
    }
  }
  EXPECT_GT(accepted, 100);  // the mutations leave both kinds
  EXPECT_GT(rejected, 1000);
}

TEST(JsonPrefix, RejectsWhatOnlyAnObjectWouldNot) {
  for (const char* bad :
       {"[1]", "\"a\"", "1", "{\"a\":01}", "{\"a\":1.}", "{\"a\":tru}", "{\"a\" 1}", "{\"a\":1,}",
        "{\"a\":[1,]}", "{\"a\":\"\x01\"}", "{\"a\":\"\xC0\x80\"}", "{\"a\":\"\xED\xA0\x80\"}",
        "{\"a\":\"\\x\"}", "{\"a\":1}}", "{'a':1}"})
    EXPECT_FALSE(ours_complete(bad)) << bad;
  // A lone low surrogate is refused at its second digit: no accepted prefix is a dead end.
  EXPECT_FALSE(ours_prefix("{\"a\":\"\\uDC"));
  EXPECT_FALSE(ours_prefix("{\"a\":\"\\uD800\\u00"));
  EXPECT_TRUE(ours_complete("{\"a\":\"\\uD800\\uDC00\"}"));
}

TEST(JsonPrefix, CapsWhitespaceRunsAndDepth) {
  JsonPrefix p(/*max_whitespace=*/4, /*max_depth=*/2);
  EXPECT_TRUE(p.feed("{    \"a\":[    "));
  EXPECT_FALSE(JsonPrefix(p).feed(" "));      // a fifth blank in a row
  EXPECT_FALSE(JsonPrefix(p).feed("{"));      // a third level
  EXPECT_TRUE(JsonPrefix(p).feed("1, 2]}"));  // everything else still goes
  JsonPrefix q = p;
  ASSERT_TRUE(q.feed("1]}"));
  EXPECT_TRUE(q.complete());
}

}  // namespace

namespace {

// A vocabulary of JSON fragments (several bytes, split UTF-8, escapes) and two special tokens.
class FragmentTokenizer : public sllm::tok::Tokenizer {
 public:
  FragmentTokenizer() {
    for (int b = 0; b < 256; ++b) bytes_.emplace_back(1, static_cast<char>(b));
    for (const char* f : {"{\"",      "\":",
                          "\": ",     "\",",
                          "\"}",      "}\n",
                          "},{",      "true",
                          "tr",       "ue}",
                          "null",     "false",
                          "-0.5e+",   "12",
                          "0",        "01",
                          ".5",       "\\u00",
                          "\\uD83D",  "\\n",
                          "\\",       "\xC3",
                          "\xA9",     "\xC3\xA9",
                          "\xE2\x82", "\xF0\x9F\x98\x80",
                          "\n\n\n",   "  ",
                          "[]",       "[{",
                          "]}",       "\"name\"",
                          "a\"b"})
      bytes_.emplace_back(f);
    bytes_.emplace_back("<|eos|>");
    bytes_.emplace_back("<|x|>");
    eos_id = vocab_size() - 2;
    stop_ids = {eos_id};
  }
  std::vector<int32_t> encode(std::string_view, bool) const override { return {}; }
  std::string decode(const std::vector<int32_t>& ids, bool) const override {
    std::string s;
    for (int32_t i : ids) s += bytes_[static_cast<size_t>(i)];
    return s;
  }
  std::string piece(int32_t id) const override { return bytes_[static_cast<size_t>(id)]; }
  std::string token_bytes(int32_t id) const override { return bytes_[static_cast<size_t>(id)]; }
  std::optional<int32_t> token_to_id(std::string_view) const override { return std::nullopt; }
  int32_t vocab_size() const override { return static_cast<int32_t>(bytes_.size()); }
  bool is_special(int32_t id) const override { return id >= vocab_size() - 2; }

 private:
  std::vector<std::string> bytes_;
};

using sllm::engine::JsonObjectConstraint;
using sllm::engine::JsonVocab;

TEST(JsonObjectConstraint, AllowsExactlyTheTokensThatKeepAJsonPrefix) {
  FragmentTokenizer t;
  auto vocab = std::make_shared<const JsonVocab>(t);
  const int64_t n =
      t.vocab_size() + 5;  // the model's vocabulary may be padded past the tokenizer's
  for (const std::string text :
       {"", "{", "{\"a\"", "{\"a\":", "{\"a\": 1", "{\"a\":-", "{\"a\":0", "{\"a\":1.5e",
        "{\"a\":\"x", "{\"a\":\"\\", "{\"a\":\"\xC3", "{\"a\":[", "{\"a\":[1,", "{\"a\":tr",
        "{\"a\":{}", "{\"a\":[{\"b\":null}]"}) {
    JsonObjectConstraint c(vocab);
    for (char ch : text) c.advance(static_cast<uint8_t>(ch));  // ids 0..255 are the bytes
    std::vector<float> logits(static_cast<size_t>(n), 0.5f);
    ASSERT_TRUE(c.mask(logits.data(), n)) << text;
    for (int32_t id = 0; id < n; ++id) {
      const bool allowed = logits[static_cast<size_t>(id)] == 0.5f;
      const std::string next = id < t.vocab_size() ? text + t.token_bytes(id) : "";
      const size_t first = next.find_first_not_of(" \t\r\n");
      const bool want = id < t.vocab_size() && !t.is_special(id) && completable(next) &&
                        (first == std::string::npos || next[first] == '{');  // objects only
      EXPECT_EQ(allowed, want) << "after '" << text << "' token " << id << " '" << t.token_bytes(id)
                               << "'";
    }
  }
}

TEST(JsonObjectConstraint, CompleteWhenTheObjectCloses) {
  FragmentTokenizer t;
  auto vocab = std::make_shared<const JsonVocab>(t);
  JsonObjectConstraint c(vocab);
  for (char ch : std::string("{\"a\":[1")) c.advance(static_cast<uint8_t>(ch));
  EXPECT_FALSE(c.complete());
  c.advance(static_cast<uint8_t>(']'));
  c.advance(static_cast<uint8_t>('}'));
  EXPECT_TRUE(c.complete());
  EXPECT_THROW(c.advance(static_cast<uint8_t>('x')), sllm::Error);
}

}  // namespace
