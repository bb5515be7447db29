// Tokenizer unit tests: tiny in-test vocabularies, no model files. Expected pre-tokenizer splits
// were produced with Hugging Face `tokenizers` (pre_tokenize_str) and written out here.
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/bpe.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

using namespace sllm::tok;
namespace fs = std::filesystem;

namespace {

// Control tokens first, then every byte symbol, then the merge results in merge order.
GgufVocab tiny_gguf(const std::vector<std::pair<std::string, std::string>>& merges,
                    const std::string& pre = "gpt2") {
  GgufVocab v;
  v.tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>", "<|im"};
  v.token_types = {3, 3, 3, 4, 4};
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(bytes_to_unicode(std::string(1, static_cast<char>(b))));
    v.token_types.push_back(1);
  }
  for (const auto& [a, b] : merges) {
    std::string ua = bytes_to_unicode(a), ub = bytes_to_unicode(b);
    v.merges.push_back(ua + " " + ub);
    if (std::find(v.tokens.begin(), v.tokens.end(), ua + ub) == v.tokens.end()) {
      v.tokens.push_back(ua + ub);
      v.token_types.push_back(1);
    }
  }
  v.pre = pre;
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  return v;
}

std::vector<std::string> as_bytes(const Tokenizer& t, const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) out.push_back(t.token_bytes(id));
  return out;
}

std::vector<std::string> split(const std::vector<PreTokStep>& steps, std::string_view text) {
  return PreTokenizer(steps).split(text);
}

std::vector<PreTokStep> gguf_steps(const std::string& pre) {
  return pretok_steps_for_gguf_pre(pre, nullptr);
}

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    int l = utf8_char_len(s, i);
    if (l == 0) return false;
    i += l;
  }
  return true;
}

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("sllm_tok_test_" + std::to_string(::getpid()) + "_" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

const std::vector<std::string> kTricky = {
    "Hello, world!",
    "  leading and trailing  ",
    "\n\n\nnewlines\n \n",
    "tabs\tand\r\nCRLF\r\n",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇯🇵",
    "中文字符，日本語のテキスト",
    "한국어 텍스트입니다",
    "numbers 123 4567 89.5 ١٢٣",
    "I'm can't WE'LL you'RE",
    "mixed<|im_start|>text<|im_end|>",
    "                    many spaces",
    "\xc2\x85 nel \xe3\x80\x80 ideographic space",
};

}  // namespace

// ---------------------------------------------------------------- pre-tokenizers

TEST(TokenizerPretok, MatchesHfTokenizersSplits) {
  struct Case {
    std::string pre, text;
    std::vector<std::string> want;
  };
  const std::vector<Case> cases = {
      {"gpt2",
       "Hello world's  test\n\n  x",
       {"Hello", " world", "'s", " ", " test", "\n\n ", " x"}},
      {"gpt2",
       "I'M 12345 apples\r\n\tok!!  ",
       {"I", "'", "M", " 12345", " apples", "\r\n", "\t", "ok", "!!", "  "}},
      {"gpt2", "abc 1234 x1y22", {"abc", " 1234", " x", "1", "y", "22"}},
      {"gpt2",
       "Don't  STOP\u3000here\u0085now   ",
       {"Don", "'t", " ", " STOP", "\u3000", "here", "\u0085", "now", "   "}},
      {"gpt2", "日本語 한국어 😀!!", {"日本語", " 한국어", " 😀!!"}},
      {"smollm",
       "I'M 12345 apples\r\n\tok!!  ",
       {"I", "'", "M", " ", "1", "2", "3", "4", "5", " apples", "\r\n", "\t", "ok", "!!", "  "}},
      {"smollm", "abc 1234 x1y22", {"abc", " ", "1", "2", "3", "4", " x", "1", "y", "2", "2"}},
      {"smollm",
       "Hello world's  test\n\n  x",
       {"Hello", " world", "'s", " ", " test", "\n\n ", " x"}},
      {"llama-bpe",
       "Hello world's  test\n\n  x",
       {"Hello", " world", "'s", " ", " test", "\n\n", " ", " x"}},
      {"llama-bpe",
       "I'M 12345 apples\r\n\tok!!  ",
       {"I", "'M", " ", "123", "45", " apples", "\r\n", "\tok", "!!", "  "}},
      {"llama-bpe", "abc 1234 x1y22", {"abc", " ", "123", "4", " x", "1", "y", "22"}},
      {"llama-bpe",
       "Don't  STOP\u3000here\u0085now   ",
       {"Don", "'t", " ", " STOP", "\u3000here", "\u0085now", "   "}},
      {"qwen2",
       "I'M 12345 apples\r\n\tok!!  ",
       {"I", "'M", " ", "1", "2", "3", "4", "5", " apples", "\r\n", "\tok", "!!", "  "}},
      {"qwen2", "abc 1234 x1y22", {"abc", " ", "1", "2", "3", "4", " x", "1", "y", "2", "2"}},
      {"qwen2", "日本語 한국어 😀!!", {"日本語", " 한국어", " 😀!!"}},
  };
  for (const auto& c : cases)
    EXPECT_EQ(split(gguf_steps(c.pre), c.text), c.want) << c.pre << ": " << c.text;
}

TEST(TokenizerPretok, SplitBehavioursMatchHf) {
  auto run = [](SplitBehavior b, bool invert) {
    PreTokStep s;
    s.kind = PreTokStep::Kind::split;
    s.pattern = "-";
    s.behavior = b;
    s.invert = invert;
    return split({s}, "-a-b--c-");
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(run(SplitBehavior::removed, false), (V{"a", "b", "c"}));
  EXPECT_EQ(run(SplitBehavior::removed, true), (V{"-", "-", "-", "-", "-"}));
  EXPECT_EQ(run(SplitBehavior::isolated, false), (V{"-", "a", "-", "b", "-", "-", "c", "-"}));
  EXPECT_EQ(run(SplitBehavior::merged_with_previous, false), (V{"-", "a-", "b-", "-", "c-"}));
  EXPECT_EQ(run(SplitBehavior::merged_with_previous, true), (V{"-a", "-b", "-", "-c", "-"}));
  EXPECT_EQ(run(SplitBehavior::merged_with_next, false), (V{"-a", "-b", "-", "-c", "-"}));
  EXPECT_EQ(run(SplitBehavior::contiguous, false), (V{"-", "a", "-", "b", "--", "c", "-"}));
}

TEST(TokenizerPretok, ByteLevelPrefixSpaceAppliesPerPiece) {
  PreTokStep digits;
  digits.kind = PreTokStep::Kind::digits;
  digits.individual_digits = false;
  PreTokStep bl;
  bl.add_prefix_space = true;
  // HF: Sequence[Digits(False), ByteLevel(add_prefix_space=True)] on "ab12 34".
  EXPECT_EQ(split({digits, bl}, "ab12 34"), (std::vector<std::string>{" ab", " 12", " ", " 34"}));
}

TEST(TokenizerPretok, UnknownGgufPreIsAnError) {
  EXPECT_THROW(gguf_steps("no-such-pre"), sllm::Error);
}

TEST(TokenizerPretok, InvalidUtf8DoesNotThrow) {
  auto pieces = split(gguf_steps("gpt2"), "ab\xff\xfe cd \xc3");
  std::string joined;
  for (auto& p : pieces) joined += p;
  EXPECT_EQ(joined, "ab\xff\xfe cd \xc3");
}

// ---------------------------------------------------------------- BPE merges

TEST(TokenizerBpe, MergesApplyByRank) {
  auto t1 = make_bpe_from_gguf(tiny_gguf({{"a", "b"}, {"b", "c"}}));
  EXPECT_EQ(as_bytes(*t1, t1->encode("abc")), (std::vector<std::string>{"ab", "c"}));
  auto t2 = make_bpe_from_gguf(tiny_gguf({{"b", "c"}, {"a", "b"}}));
  EXPECT_EQ(as_bytes(*t2, t2->encode("abc")), (std::vector<std::string>{"a", "bc"}));
  // Rank beats position: "c d" first, then "a b"; "b cd" is no merge.
  auto t3 = make_bpe_from_gguf(tiny_gguf({{"c", "d"}, {"b", "c"}, {"a", "b"}}));
  EXPECT_EQ(as_bytes(*t3, t3->encode("abcd")), (std::vector<std::string>{"ab", "cd"}));
}

TEST(TokenizerBpe, EqualRanksMergeLeftmostFirst) {
  auto t = make_bpe_from_gguf(tiny_gguf({{"a", "a"}}));
  EXPECT_EQ(as_bytes(*t, t->encode("aaa")), (std::vector<std::string>{"aa", "a"}));
  EXPECT_EQ(as_bytes(*t, t->encode("aaaaa")), (std::vector<std::string>{"aa", "aa", "a"}));
  auto t2 = make_bpe_from_gguf(tiny_gguf({{"a", "a"}, {"aa", "aa"}}));
  EXPECT_EQ(as_bytes(*t2, t2->encode("aaaaaa")), (std::vector<std::string>{"aaaa", "aa"}));
}

TEST(TokenizerBpe, WordsWithSpacePrefix) {
  auto t = make_bpe_from_gguf(tiny_gguf({{"h", "e"},
                                         {"l", "l"},
                                         {"he", "ll"},
                                         {"hell", "o"},
                                         {" ", "w"},
                                         {"o", "r"},
                                         {" w", "or"},
                                         {" wor", "l"},
                                         {" worl", "d"}}));
  EXPECT_EQ(as_bytes(*t, t->encode("hello world")), (std::vector<std::string>{"hello", " world"}));
  EXPECT_EQ(t->piece(t->encode(" world")[0]), "\xc4\xa0world");  // "Ġworld"
  EXPECT_EQ(t->token_to_id("\xc4\xa0world"), t->encode(" world")[0]);
}

// A 100k-character word must finish (the merge loop is not quadratic); speed itself is
// measured in bench/, not asserted here.
TEST(TokenizerBpe, LongWordEncodes) {
  std::vector<std::pair<std::string, std::string>> merges;
  std::string s = "a";
  for (int k = 0; k < 10; ++k, s += s) merges.push_back({s, s});
  auto t = make_bpe_from_gguf(tiny_gguf(merges));
  std::string word(100000, 'a');
  auto ids = t->encode(word);
  EXPECT_EQ(t->decode(ids), word);
  // 100000 = 97*1024 + 512 + 128 + 32
  ASSERT_EQ(ids.size(), 100u);
  EXPECT_EQ(t->token_bytes(ids[97]).size(), 512u);
  EXPECT_EQ(t->token_bytes(ids[99]).size(), 32u);
}

TEST(TokenizerBpe, IgnoreMergesUsesWholeWordForLlama3) {
  // "abc" is in the vocab but no merge sequence reaches it.
  auto v = tiny_gguf({{"a", "b"}}, "llama-bpe");
  v.tokens.push_back("abc");
  v.token_types.push_back(1);
  auto t = make_bpe_from_gguf(v);
  EXPECT_EQ(t->encode("abc").size(), 1u);
  v.pre = "qwen2";
  auto t2 = make_bpe_from_gguf(v);
  EXPECT_EQ(as_bytes(*t2, t2->encode("abc")), (std::vector<std::string>{"ab", "c"}));
}

TEST(TokenizerBpe, DigitsSplitForSmolLM) {
  auto t = make_bpe_from_gguf(tiny_gguf({{"1", "2"}, {" ", "1"}}, "smollm"));
  EXPECT_EQ(as_bytes(*t, t->encode("x 123")), (std::vector<std::string>{"x", " ", "1", "2", "3"}));
  auto g = make_bpe_from_gguf(tiny_gguf({{"1", "2"}, {" ", "1"}}, "gpt2"));
  EXPECT_EQ(as_bytes(*g, g->encode("x 123")), (std::vector<std::string>{"x", " ", "12", "3"}));
}

TEST(TokenizerBpe, EmptyTextGivesNoIds) {
  auto t = make_bpe_from_gguf(tiny_gguf({}));
  EXPECT_TRUE(t->encode("").empty());
  EXPECT_EQ(t->decode({}), "");
}

TEST(TokenizerBpe, RoundTripTrickyStrings) {
  for (const char* pre : {"gpt2", "smollm", "llama-bpe", "qwen2"}) {
    auto t =
        make_bpe_from_gguf(tiny_gguf({{" ", " "}, {"  ", "  "}, {"\n", "\n"}, {"t", "h"}}, pre));
    for (const auto& s : kTricky) {
      EXPECT_EQ(t->decode(t->encode(s)), s) << pre << ": " << s;
      EXPECT_EQ(t->decode(t->encode(s, false)), s) << pre << ": " << s;
    }
    std::string bad = "invalid \xff\xfe bytes \xc3";
    EXPECT_EQ(t->decode(t->encode(bad)), bad);
  }
}

// ---------------------------------------------------------------- special tokens

TEST(TokenizerSpecial, SplitsOnSpecialTokens) {
  auto t = make_bpe_from_gguf(tiny_gguf({}));
  auto ids = t->encode("<|im_start|>user\nHi<|im_end|>\n");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 1);
  EXPECT_EQ(t->decode(ids), "<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(t->decode(ids, true), "user\nHi\n");
  EXPECT_TRUE(t->is_special(1));
  EXPECT_FALSE(t->is_special(3));  // user-defined
  EXPECT_FALSE(t->is_special(10));
}

TEST(TokenizerSpecial, ParseSpecialFalseTokenizesAsText) {
  auto t = make_bpe_from_gguf(tiny_gguf({}));
  auto ids = t->encode("a<|im_end|>b", false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 0);
  EXPECT_EQ(t->decode(ids), "a<|im_end|>b");
  // User-defined tokens are still matched (as HF and llama.cpp do).
  auto u = t->encode("x<tool>y", false);
  EXPECT_EQ(std::count(u.begin(), u.end(), 3), 1);
}

TEST(TokenizerSpecial, LongestMatchWins) {
  auto t = make_bpe_from_gguf(tiny_gguf({}));
  // "<|im" (user-defined) is a prefix of "<|im_start|>"; the longer special wins when parsed.
  EXPECT_EQ(t->encode("<|im_start|>")[0], 1);
  EXPECT_EQ(t->encode("<|im_start|>", false)[0], 4);
  EXPECT_EQ(t->encode("<|imx")[0], 4);
}

TEST(TokenizerSpecial, StopIds) {
  auto t = make_bpe_from_gguf(tiny_gguf({}));
  EXPECT_EQ(t->eos_id, 2);
  EXPECT_NE(std::find(t->stop_ids.begin(), t->stop_ids.end(), 2), t->stop_ids.end());
  EXPECT_NE(std::find(t->stop_ids.begin(), t->stop_ids.end(), 0), t->stop_ids.end());  // endoftext
  EXPECT_EQ(std::find(t->stop_ids.begin(), t->stop_ids.end(), 1), t->stop_ids.end());
}

TEST(TokenizerSpecial, TypesMissingFallsBackToMarkedPieces) {
  auto v = tiny_gguf({});
  v.token_types.clear();
  auto t = make_bpe_from_gguf(v);
  EXPECT_TRUE(t->is_special(1));
  EXPECT_EQ(t->encode("<|im_start|>")[0], 1);
}

// ---------------------------------------------------------------- streaming

TEST(TokenizerStream, NeverEmitsPartialUtf8) {
  auto t = make_bpe_from_gguf(tiny_gguf({}));  // bytes only: multi-byte chars span tokens
  const std::string text = "é😀한 中";
  auto ids = t->encode(text);
  ASSERT_EQ(ids.size(), text.size());
  StreamDecoder sd(*t);
  std::string all;
  std::vector<std::string> outs;
  for (int32_t id : ids) {
    auto s = sd.push(id);
    EXPECT_TRUE(valid_utf8(s)) << s;
    outs.push_back(s);
    all += s;
  }
  all += sd.flush();
  EXPECT_EQ(all, text);
  EXPECT_EQ(outs[0], "");  // first byte of é held back
  EXPECT_EQ(outs[1], "é");
  EXPECT_EQ(outs[2], "");
  EXPECT_EQ(outs[5], "😀");
}

TEST(TokenizerStream, InvalidBytesBecomeReplacement) {
  auto t = make_bpe_from_gguf(tiny_gguf({}));
  StreamDecoder sd(*t);
  auto id = [&](unsigned char b) { return t->encode(std::string(1, static_cast<char>(b)))[0]; };
  EXPECT_EQ(sd.push(id('a')), "a");
  EXPECT_EQ(sd.push(id(0xFF)), "\xEF\xBF\xBD");  // can never start a character
  EXPECT_EQ(sd.push(id(0xE2)), "");
  EXPECT_EQ(sd.push(id(0x82)), "");
  EXPECT_EQ(sd.push(id('b')),
            "\xEF\xBF\xBD"
            "b");  // truncated sequence then 'b'
  EXPECT_EQ(sd.push(id(0xF0)), "");
  EXPECT_EQ(sd.flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(sd.flush(), "");
}

TEST(TokenizerStream, SkipsSpecialTokens) {
  auto t = make_bpe_from_gguf(tiny_gguf({}));
  StreamDecoder sd(*t);
  EXPECT_EQ(sd.push(2), "");
  StreamDecoder keep(*t, false);
  EXPECT_EQ(keep.push(2), "<|im_end|>");
}

// ---------------------------------------------------------------- chat templates

namespace {
struct ChatTok {
  std::unique_ptr<Tokenizer> t;
  explicit ChatTok(const std::string& tpl, bool llama_specials = false) {
    auto v = tiny_gguf({});
    if (llama_specials) {
      v.tokens[1] = "<s>";
      v.tokens[2] = "</s>";
    }
    v.chat_template = tpl;
    t = make_bpe_from_gguf(v);
  }
};
const std::string kSmolTpl =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";
}  // namespace

// The model's Jinja template and the ChatML family format render SmolLM2's conversations alike.
TEST(TokenizerChat, ChatMLSmolLM2DefaultSystem) {
  ChatTok ct(kSmolTpl);
  const auto jinja = detect_chat_template(*ct.t);
  const auto family = family_chat_template(*ct.t);
  ASSERT_TRUE(jinja.jinja);
  ASSERT_FALSE(family.jinja);
  for (const auto& tpl : {jinja, family}) {
    EXPECT_EQ(tpl.format, ChatFormat::chatml);
    EXPECT_EQ(tpl.default_system,
              "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    EXPECT_EQ(render_chat(tpl, {{"user", "Hi"}}, true),
              "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
              "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_EQ(
        render_chat(tpl, {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello"}}, false),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello<|im_end|>\n");
    EXPECT_EQ(render_chat(tpl, {}, true), "<|im_start|>assistant\n");
    EXPECT_EQ(to_string(tpl.format), "chatml");
  }
  EXPECT_TRUE(jinja.bos_text.empty());  // the template writes no BOS: encode_chat adds it
}

TEST(TokenizerChat, ChatMLQwenEscapedDefault) {
  // As stored in tokenizer_config.json: jinja string literals with backslash-n escapes.
  ChatTok ct(
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
      "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif "
      "%}{{'<|im_start|>' "
      "+ message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}");
  auto tpl = detect_chat_template(*ct.t);
  EXPECT_EQ(tpl.default_system, "You are a helpful assistant.");
}

TEST(TokenizerChat, NoTemplateFallsBack) {
  ChatTok ct("");
  EXPECT_EQ(detect_chat_template(*ct.t).format, ChatFormat::chatml);  // vocab has <|im_start|>
  auto v = tiny_gguf({});
  v.tokens[1] = "<s>";
  auto plain = make_bpe_from_gguf(v);
  auto tpl = detect_chat_template(*plain);
  EXPECT_EQ(tpl.format, ChatFormat::plain);
  EXPECT_EQ(render_chat(tpl, {{"user", "a"}, {"assistant", "b"}}, true), "a\nb");
}

// The family formats below are the fallback for templates the interpreter cannot parse; these
// fragments are not whole templates, so the family renderer is asked for directly.
TEST(TokenizerChat, Llama3) {
  ChatTok ct(
      "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
      "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
      "trim "
      "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif "
      "%}{{ content }}{% endfor %}");
  auto tpl = family_chat_template(*ct.t);
  tpl.bos_text = "<|begin_of_text|>";
  EXPECT_EQ(tpl.format, ChatFormat::llama3);
  EXPECT_EQ(render_chat(tpl, {{"system", "Be brief."}, {"user", " Hi \n"}}, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(TokenizerChat, Llama31SystemPrefix) {
  ChatTok ct(
      "{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" "
      "%}{%- endif %}{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{{- \"Cutting "
      "Knowledge Date: December 2023\\n\" }}");
  auto tpl = family_chat_template(*ct.t);
  tpl.bos_text = "<|begin_of_text|>";
  EXPECT_EQ(render_chat(tpl, {{"user", "Hi"}}, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge "
            "Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(TokenizerChat, Llama2) {
  ChatTok ct(
      "{% if messages[0]['role'] == 'system' %}...'<<SYS>>\\n' + system_message ...'[INST] '",
      true);
  EXPECT_FALSE(detect_chat_template(*ct.t).jinja);  // not Jinja: the family format renders
  auto tpl = family_chat_template(*ct.t);
  EXPECT_EQ(tpl.format, ChatFormat::llama2);
  EXPECT_EQ(tpl.bos_text, "<s>");
  EXPECT_EQ(render_chat(
                tpl, {{"system", "S"}, {"user", "Hi "}, {"assistant", " Hello"}, {"user", "Again"}},
                true),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Again [/INST]");
  EXPECT_THROW(render_chat(tpl, {{"assistant", "x"}}, true), sllm::Error);
}

TEST(TokenizerChat, Mistral) {
  ChatTok ct(
      "{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' "
      "}}",
      true);
  auto tpl = family_chat_template(*ct.t);
  EXPECT_EQ(tpl.format, ChatFormat::mistral);
  EXPECT_EQ(render_chat(tpl, {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Again"}}, true),
            "<s>[INST] Hi [/INST]Hello</s>[INST] Again [/INST]");
  EXPECT_EQ(render_chat(tpl, {{"system", "S"}, {"user", "Hi"}}, true), "<s>[INST] S\n\nHi [/INST]");
  EXPECT_THROW(render_chat(tpl, {{"user", "a"}, {"user", "b"}}, true), sllm::Error);
}

// ---------------------------------------------------------------- tokenizer.json

namespace {
// A tokenizer.json in the shape SmolLM2 ships (Digits + ByteLevel, special added tokens).
nlohmann::json tiny_tokenizer_json() {
  auto v = tiny_gguf({{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"1", "2"}});
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) vocab[v.tokens[i]] = i;
  nlohmann::json added = nlohmann::json::array();
  for (int i = 0; i < 3; ++i)
    added.push_back({{"id", i},
                     {"content", v.tokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             {{{"type", "Digits"}, {"individual_digits", true}},
              {{"type", "ByteLevel"},
               {"add_prefix_space", false},
               {"trim_offsets", true},
               {"use_regex", true}}}}}},
          {"post_processor", nullptr},
          {"decoder",
           {{"type", "ByteLevel"},
            {"add_prefix_space", true},
            {"trim_offsets", true},
            {"use_regex", true}}},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", "<|endoftext|>"},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"vocab", vocab},
            {"merges", v.merges}}}};
}

void write(const fs::path& p, const std::string& s) { std::ofstream(p) << s; }
}  // namespace

TEST(TokenizerJson, LoadAndSaveRoundTrip) {
  TempDir dir;
  write(dir.path / "tokenizer.json", tiny_tokenizer_json().dump());
  write(dir.path / "tokenizer_config.json",
        nlohmann::json{{"bos_token", "<|im_start|>"},
                       {"eos_token", {{"content", "<|im_end|>"}, {"special", true}}},
                       {"add_bos_token", false},
                       {"chat_template", kSmolTpl}}
            .dump());
  auto t = load_tokenizer_dir(dir.path.string());
  EXPECT_EQ(t->bos_id, 1);
  EXPECT_EQ(t->eos_id, 2);
  EXPECT_EQ(t->unk_id, 0);
  EXPECT_FALSE(t->add_bos);
  EXPECT_EQ(t->chat_template, kSmolTpl);
  EXPECT_EQ(as_bytes(*t, t->encode("hello world 123")),
            (std::vector<std::string>{"hello", " w", "o", "r", "l", "d", " ", "1", "2", "3"}));

  TempDir out;
  save_hf_tokenizer(*t, out.path.string());
  ASSERT_TRUE(fs::exists(out.path / "tokenizer.json"));
  ASSERT_TRUE(fs::exists(out.path / "tokenizer_config.json"));
  auto t2 = load_tokenizer_dir(out.path.string());
  EXPECT_EQ(t2->vocab_size(), t->vocab_size());
  EXPECT_EQ(t2->bos_id, t->bos_id);
  EXPECT_EQ(t2->eos_id, t->eos_id);
  EXPECT_EQ(t2->chat_template, t->chat_template);
  for (const auto& s : kTricky) {
    EXPECT_EQ(t2->encode(s), t->encode(s)) << s;
    EXPECT_EQ(t2->decode(t2->encode(s)), s);
  }
}

TEST(TokenizerJson, GgufToHfRoundTrip) {
  for (const char* pre : {"gpt2", "smollm", "llama-bpe", "qwen2"}) {
    auto v = tiny_gguf({{"h", "e"}, {" ", "w"}, {"1", "2"}, {"1", "1"}, {"11", "1"}}, pre);
    v.add_bos = true;
    auto t = make_bpe_from_gguf(v);
    TempDir out;
    save_hf_tokenizer(*t, out.path.string());
    auto t2 = load_tokenizer_dir(out.path.string());
    EXPECT_TRUE(t2->add_bos);
    EXPECT_EQ(t2->bos_id, 1);
    for (const auto& s : kTricky) EXPECT_EQ(t2->encode(s), t->encode(s)) << pre << ": " << s;
    EXPECT_EQ(t2->encode("111 1111"), t->encode("111 1111"));
  }
}

TEST(TokenizerJson, PostProcessorBosAndTupleMerges) {
  auto j = tiny_tokenizer_json();
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& m : j["model"]["merges"]) {
    auto s = m.get<std::string>();
    auto p = s.find(' ');
    merges.push_back({s.substr(0, p), s.substr(p + 1)});
  }
  j["model"]["merges"] = merges;
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single",
                          {{{"SpecialToken", {{"id", "<|im_start|>"}, {"type_id", 0}}}},
                           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
  TempDir dir;
  write(dir.path / "tokenizer.json", j.dump());
  auto t = load_tokenizer_json((dir.path / "tokenizer.json").string(), "");
  EXPECT_TRUE(t->add_bos);
  EXPECT_EQ(t->bos_id, 1);
  EXPECT_EQ(t->eos_id, 0);  // no config: <|endoftext|>
  EXPECT_EQ(as_bytes(*t, t->encode("hello")), (std::vector<std::string>{"hello"}));
}

TEST(TokenizerJson, LstripRstripAddedTokens) {
  auto j = tiny_tokenizer_json();
  j["added_tokens"][2]["lstrip"] = true;
  j["added_tokens"][2]["rstrip"] = true;
  TempDir dir;
  write(dir.path / "tokenizer.json", j.dump());
  auto t = load_tokenizer_json((dir.path / "tokenizer.json").string(), "");
  EXPECT_EQ(t->encode("he  <|im_end|> \nhe"), t->encode("he<|im_end|>he"));
}

TEST(TokenizerJson, ErrorsNameTheFile) {
  TempDir dir;
  auto j = tiny_tokenizer_json();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  const auto path = (dir.path / "tokenizer.json").string();
  write(path, j.dump());
  try {
    load_tokenizer_json(path, "");
    FAIL() << "expected an error";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Whitespace"), std::string::npos) << e.what();
  }
  write(path, "{ not json");
  EXPECT_THROW(load_tokenizer_json(path, ""), sllm::Error);
  TempDir empty;
  EXPECT_THROW(load_tokenizer_dir(empty.path.string()), sllm::Error);
}

TEST(TokenizerJson, GenerationConfigAddsStopIds) {
  TempDir dir;
  write(dir.path / "tokenizer.json", tiny_tokenizer_json().dump());
  write(dir.path / "generation_config.json", R"({"eos_token_id": [2, 4]})");
  auto t = load_tokenizer_dir(dir.path.string());
  EXPECT_NE(std::find(t->stop_ids.begin(), t->stop_ids.end(), 4), t->stop_ids.end());
  EXPECT_NE(std::find(t->stop_ids.begin(), t->stop_ids.end(), 2), t->stop_ids.end());
}

// ---------------------------------------------------------------- SentencePiece

TEST(TokenizerSentencePiece, MatchesLibraryAndSplitsSpecials) {
  TempDir dir;
  std::string corpus;
  for (int i = 0; i < 50; ++i)
    corpus += "hello world this is a tiny corpus for a tiny sentencepiece model number " +
              std::to_string(i) + "\n";
  write(dir.path / "corpus.txt", corpus);
  const auto prefix = (dir.path / "m").string();
  auto st = sentencepiece::SentencePieceTrainer::Train(
      "--input=" + (dir.path / "corpus.txt").string() + " --model_prefix=" + prefix +
      " --vocab_size=320 --hard_vocab_limit=false --model_type=bpe --byte_fallback=true "
      "--character_coverage=1.0"
      " --minloglevel=2");
  ASSERT_TRUE(st.ok()) << st.ToString();
  fs::create_directories(dir.path / "model");
  fs::copy_file(prefix + ".model", dir.path / "model" / "tokenizer.model");
  auto t = load_tokenizer_dir((dir.path / "model").string());
  EXPECT_TRUE(t->add_bos);
  EXPECT_EQ(t->bos_id, 1);
  EXPECT_EQ(t->eos_id, 2);
  EXPECT_TRUE(t->is_special(1));

  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(prefix + ".model").ok());
  std::vector<int> want;
  ASSERT_TRUE(sp.Encode("hello world tiny", &want).ok());
  auto ids = t->encode("hello world tiny");
  EXPECT_EQ(std::vector<int>(ids.begin(), ids.end()), want);
  EXPECT_EQ(t->decode(ids), "hello world tiny");

  auto with_bos = t->encode("<s>hello");
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos[0], 1);
  EXPECT_EQ(t->encode("<s>hello", false)[0] == 1, false);
  // Unseen characters go through byte fallback and still round-trip.
  EXPECT_EQ(t->decode(t->encode("zq 😀")), "zq 😀");
  std::vector<int32_t> bos_ids = {1};
  bos_ids.insert(bos_ids.end(), ids.begin(), ids.end());
  EXPECT_EQ(t->decode(bos_ids, true), "hello world tiny");
  EXPECT_EQ(t->decode(bos_ids, false), "<s> hello world tiny");

  // A tokenizer.json that is not byte-level BPE (Llama-2 style Metaspace) falls back to
  // tokenizer.model; the config's add_bos_token is honoured.
  write(dir.path / "model" / "tokenizer.json",
        R"({"model": {"type": "BPE", "byte_fallback": true, "vocab": {}, "merges": []},
            "pre_tokenizer": {"type": "Metaspace"}})");
  write(dir.path / "model" / "tokenizer_config.json", R"({"add_bos_token": false})");
  auto t2 = load_tokenizer_dir((dir.path / "model").string());
  EXPECT_FALSE(t2->add_bos);
  EXPECT_EQ(t2->encode("hello world tiny"), ids);
}
