// JSONL dataset tests: a byte-level BPE vocabulary built in-process (one token per byte, ChatML
// specials), so every expected id sequence can be spelled out.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "core/error.h"
#include "data/jsonl_dataset.h"
#include "tokenizer/bpe.h"
#include "tokenizer/chat_template.h"

using namespace sllm;
using namespace sllm::data;
namespace fs = std::filesystem;

namespace {

constexpr int32_t kEndOfText = 0, kImStart = 1, kImEnd = 2, kBos = 3;

const std::string kChatMl =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' "
    "}}{% endif %}";

// Specials first, then the 256 byte symbols (byte b has id 4 + b); no merges.
std::unique_ptr<tok::Tokenizer> make_tok(int32_t eos = kImEnd, bool add_bos = false,
                                         const std::string& tpl = kChatMl) {
  tok::GgufVocab v;
  v.tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<bos>"};
  v.token_types = {3, 3, 3, 3};
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(tok::bytes_to_unicode(std::string(1, static_cast<char>(b))));
    v.token_types.push_back(1);
  }
  v.pre = "gpt2";
  v.bos_id = kBos;
  v.eos_id = eos;
  v.add_bos = add_bos;
  v.chat_template = tpl;
  return tok::make_bpe_from_gguf(v);
}

struct TempFile {
  fs::path path;
  explicit TempFile(const std::string& content) {
    path = fs::temp_directory_path() /
           ("sllm_data_test_" + std::to_string(::getpid()) + "_" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ".jsonl");
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempFile() { fs::remove(path); }
  std::string str() const { return path.string(); }
};

// Text of the labelled tokens, and of the masked ones.
std::string labelled(const tok::Tokenizer& t, const Example& e, bool want_labelled = true) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < e.ids.size(); ++i)
    if ((e.labels[i] != kIgnore) == want_labelled) ids.push_back(e.ids[i]);
  return t.decode(ids);
}

void expect_labels_are_ids_or_ignore(const Example& e) {
  ASSERT_EQ(e.ids.size(), e.labels.size());
  for (size_t i = 0; i < e.ids.size(); ++i)
    if (e.labels[i] != kIgnore) {
      EXPECT_EQ(e.labels[i], e.ids[i]) << "position " << i;
    }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(JsonlDataset, PromptCompletionMasksPromptAndLabelsEos) {
  auto t = make_tok();
  auto tpl = tok::detect_chat_template(*t);
  TempFile f(R"({"prompt": "Capital of France?", "completion": "Paris"})"
             "\n");
  DatasetOptions o;
  auto d = load_jsonl(f.str(), *t, tpl, o);
  ASSERT_EQ(d.examples.size(), 1u);
  const auto& e = d.examples[0];
  expect_labels_are_ids_or_ignore(e);

  auto prompt = encode_task_prompt(*t, tpl, "Capital of France?", o);
  EXPECT_EQ(t->decode(prompt),
            "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(prompt[0], kImStart);  // markup encoded as special tokens
  ASSERT_GT(e.ids.size(), prompt.size());
  EXPECT_TRUE(std::equal(prompt.begin(), prompt.end(), e.ids.begin()));
  for (size_t i = 0; i < prompt.size(); ++i) EXPECT_EQ(e.labels[i], kIgnore);
  EXPECT_EQ(labelled(*t, e), "Paris<|im_end|>");
  EXPECT_EQ(e.ids.back(), kImEnd);
  EXPECT_EQ(e.labels.back(), kImEnd);  // EOS labelled
  EXPECT_EQ(d.stats.examples, 1);
  EXPECT_EQ(d.stats.tokens, static_cast<int64_t>(e.ids.size()));
  EXPECT_EQ(d.stats.target_tokens, 6);  // P a r i s <|im_end|>
}

TEST(JsonlDataset, SystemPromptAndEosDistinctFromTurnEnd) {
  auto t = make_tok(/*eos=*/kEndOfText);
  auto tpl = tok::detect_chat_template(*t);
  TempFile f(R"({"prompt": "Hi", "completion": "Yo"})");  // no trailing newline
  DatasetOptions o;
  o.system = "Be brief.";
  auto d = load_jsonl(f.str(), *t, tpl, o);
  const auto& e = d.examples.at(0);
  EXPECT_EQ(labelled(*t, e, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  // The turn end the template writes, then EOS.
  EXPECT_EQ(labelled(*t, e), "Yo<|im_end|><|endoftext|>");
  EXPECT_EQ(e.ids.back(), kEndOfText);
}

TEST(JsonlDataset, PromptCompletionWithoutChatTemplate) {
  auto t = make_tok(kImEnd, /*add_bos=*/true);
  auto tpl = tok::detect_chat_template(*t);
  TempFile f(R"({"prompt": "Q: 1+1=", "completion": " 2"})");
  DatasetOptions o;
  o.chat_template = false;
  auto d = load_jsonl(f.str(), *t, tpl, o);
  const auto& e = d.examples.at(0);
  EXPECT_EQ(e.ids.front(), kBos);
  EXPECT_EQ(labelled(*t, e, false), "<bos>Q: 1+1=");
  EXPECT_EQ(labelled(*t, e), " 2<|im_end|>");

  o.completion_only = false;
  auto all = load_jsonl(f.str(), *t, tpl, o);
  EXPECT_EQ(labelled(*t, all.examples.at(0), false), "");
  EXPECT_EQ(all.stats.target_tokens, all.stats.tokens);
}

TEST(JsonlDataset, ChatPromptBosFollowsEncodeChat) {
  auto t = make_tok(kImEnd, /*add_bos=*/true);
  auto tpl = tok::detect_chat_template(*t);  // ChatML writes no BOS itself
  auto ids = encode_task_prompt(*t, tpl, "x", DatasetOptions{});
  EXPECT_EQ(ids.front(), kBos);
  EXPECT_EQ(ids[1], kImStart);
}

TEST(JsonlDataset, TextLabelsAfterResponseTemplate) {
  auto t = make_tok();
  auto tpl = tok::detect_chat_template(*t);
  TempFile f(R"({"text": "### Instruction:\nhi\n### Response:\nhello"})"
             "\n");
  DatasetOptions o;
  auto d = load_jsonl(f.str(), *t, tpl, o);
  const auto& e = d.examples.at(0);
  expect_labels_are_ids_or_ignore(e);
  EXPECT_EQ(labelled(*t, e, false), "### Instruction:\nhi\n### Response:");
  EXPECT_EQ(labelled(*t, e), "\nhello<|im_end|>");
  EXPECT_EQ(e.labels.back(), kImEnd);
  // Whole-text tokenization is kept.
  auto whole = t->encode("### Instruction:\nhi\n### Response:\nhello");
  whole.push_back(kImEnd);
  EXPECT_EQ(e.ids, whole);
}

TEST(JsonlDataset, TextWithoutResponseTemplateIsAnErrorUnlessFullLoss) {
  auto t = make_tok();
  auto tpl = tok::detect_chat_template(*t);
  TempFile f("\n{\"text\": \"just text\"}\n");
  DatasetOptions o;
  auto msg = error_of([&] { load_jsonl(f.str(), *t, tpl, o); });
  EXPECT_NE(msg.find(f.str() + ":2:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("### Response:"), std::string::npos) << msg;

  o.completion_only = false;
  auto d = load_jsonl(f.str(), *t, tpl, o);
  EXPECT_EQ(labelled(*t, d.examples.at(0)), "just text<|im_end|>");
}

TEST(JsonlDataset, MessagesLabelAssistantTurnsWithTurnEnd) {
  auto t = make_tok();
  auto tpl = tok::detect_chat_template(*t);
  TempFile f(
      R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"}, )"
      R"({"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}, )"
      R"({"role": "assistant", "content": "A2"}]})");
  auto d = load_jsonl(f.str(), *t, tpl, DatasetOptions{});
  const auto& e = d.examples.at(0);
  expect_labels_are_ids_or_ignore(e);
  EXPECT_EQ(labelled(*t, e), "A1<|im_end|>A2<|im_end|>");
  // The ids are the tokenization of the whole render.
  std::vector<tok::ChatMessage> msgs = {
      {"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}, {"assistant", "A2"}};
  EXPECT_EQ(e.ids, t->encode(tok::render_chat(tpl, msgs, false)));
  EXPECT_EQ(e.ids.back(), 4 + '\n');  // ChatML's newline after the turn: present, not labelled
  EXPECT_EQ(e.labels.back(), kIgnore);
}

TEST(JsonlDataset, MessagesAppendEosWhenTurnEndDiffers) {
  auto t = make_tok(/*eos=*/kEndOfText);
  auto tpl = tok::detect_chat_template(*t);
  TempFile f(
      R"({"messages": [{"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]})");
  auto d = load_jsonl(f.str(), *t, tpl, DatasetOptions{});
  const auto& e = d.examples.at(0);
  EXPECT_EQ(labelled(*t, e), "A<|im_end|><|endoftext|>");
  EXPECT_EQ(e.ids.back(), kEndOfText);
  EXPECT_EQ(e.labels.back(), kEndOfText);
}

TEST(JsonlDataset, MessagesWithTemplateWithoutGenerationPrompt) {
  // Mistral: BOS written by the template, assistant turns end with EOS, no generation prompt.
  // The template text is a fragment naming Mistral's markers: the Mistral family format renders.
  auto t = make_tok(/*eos=*/kEndOfText, /*add_bos=*/true, "{{ bos_token }}[INST] ... [/INST]");
  auto tpl = tok::family_chat_template(*t);
  ASSERT_EQ(tpl.format, tok::ChatFormat::mistral);
  TempFile f(
      R"({"messages": [{"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"}, )"
      R"({"role": "user", "content": "U2"}, {"role": "assistant", "content": "A2"}]})");
  auto d = load_jsonl(f.str(), *t, tpl, DatasetOptions{});
  const auto& e = d.examples.at(0);
  EXPECT_EQ(t->decode(e.ids),
            "<bos>[INST] U1 [/INST]A1<|endoftext|>[INST] U2 [/INST]A2<|endoftext|>");
  EXPECT_EQ(std::count(e.ids.begin(), e.ids.end(), kBos), 1);  // not added twice
  EXPECT_EQ(labelled(*t, e), "A1<|endoftext|>A2<|endoftext|>");
  EXPECT_EQ(e.labels.back(), kEndOfText);

  // A conversation the template rejects is a line error.
  TempFile bad(
      R"({"messages": [{"role": "assistant", "content": "A"}, {"role": "user", "content": "U"}]})");
  auto msg = error_of([&] { load_jsonl(bad.str(), *t, tpl, DatasetOptions{}); });
  EXPECT_EQ(msg.rfind(bad.str() + ":1: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("alternate"), std::string::npos) << msg;
}

TEST(JsonlDataset, AutoDetectsEachLineAndCountsNoTarget) {
  auto t = make_tok();
  auto tpl = tok::detect_chat_template(*t);
  TempFile f(
      "{\"text\": \"a ### Response: b\"}\n"
      "\n"
      "{\"prompt\": \"p\", \"completion\": \"c\"}\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, "
      "{\"role\": \"assistant\", \"content\": \"a\"}]}\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"no answer\"}]}\n");
  auto d = load_jsonl(f.str(), *t, tpl, DatasetOptions{});
  EXPECT_EQ(d.stats.lines, 4);
  EXPECT_EQ(d.stats.examples, 3);
  EXPECT_EQ(d.stats.dropped_no_target, 1);
  ASSERT_EQ(d.examples.size(), 3u);
  EXPECT_EQ(labelled(*t, d.examples[0]), " b<|im_end|>");
  EXPECT_EQ(labelled(*t, d.examples[1]), "c<|im_end|>");
  EXPECT_EQ(labelled(*t, d.examples[2]), "a<|im_end|>");

  DatasetOptions o;
  o.format = "text";  // forced: the prompt/completion line has no "text"
  auto msg = error_of([&] { load_jsonl(f.str(), *t, tpl, o); });
  EXPECT_NE(msg.find(f.str() + ":3: missing field \"text\""), std::string::npos) << msg;
}

TEST(JsonlDataset, TruncationIsCountedAndEmptyTargetsDropped) {
  auto t = make_tok();
  auto tpl = tok::detect_chat_template(*t);
  TempFile f(
      "{\"prompt\": \"p\", \"completion\": \"abcdef\"}\n"
      "{\"prompt\": \"a much longer prompt than the limit\", \"completion\": \"x\"}\n");
  DatasetOptions o;
  const auto plen = static_cast<int64_t>(encode_task_prompt(*t, tpl, "p", o).size());
  o.max_seq_length = plen + 3;
  auto d = load_jsonl(f.str(), *t, tpl, o);
  EXPECT_EQ(d.stats.truncated, 2);
  EXPECT_EQ(d.stats.dropped_no_target, 1);
  ASSERT_EQ(d.examples.size(), 1u);
  EXPECT_EQ(static_cast<int64_t>(d.examples[0].ids.size()), plen + 3);
  EXPECT_EQ(labelled(*t, d.examples[0]), "abc");
  EXPECT_EQ(d.stats.target_tokens, 3);
}

TEST(JsonlDataset, MalformedLinesNameFileAndLine) {
  auto t = make_tok();
  auto tpl = tok::detect_chat_template(*t);
  struct Case {
    std::string line, want;
  };
  const std::vector<Case> cases = {
      {"{not json", "invalid JSON"},
      {"[1, 2]", "expected a JSON object"},
      {R"({"prompt": "x"})", "missing field \"completion\""},
      {R"({"prompt": 5, "completion": "x"})", "field \"prompt\" must be a string"},
      {R"({"messages": "hi"})", "field \"messages\" must be an array"},
      {R"({"messages": [{"role": "user"}]})", "messages[0] has no \"content\""},
      {R"({"other": 1})", "expected a \"text\""},
      {"{\"text\": \"\xff\xfe ### Response: x\"}", "invalid JSON"},
  };
  for (const auto& c : cases) {
    TempFile f("{\"prompt\": \"ok\", \"completion\": \"ok\"}\n" + c.line + "\n");
    auto msg = error_of([&] { load_jsonl(f.str(), *t, tpl, DatasetOptions{}); });
    EXPECT_EQ(msg.rfind(f.str() + ":2: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(c.want), std::string::npos) << msg;
  }
}

TEST(JsonlDataset, SkipBadLinesCounts) {
  auto t = make_tok();
  auto tpl = tok::detect_chat_template(*t);
  TempFile f(
      "{\"prompt\": \"a\", \"completion\": \"b\"}\n"
      "{broken\n"
      "{\"prompt\": 1, \"completion\": \"b\"}\n"
      "{\"prompt\": \"c\", \"completion\": \"d\"}\n"
      "42\n");
  DatasetOptions o;
  o.skip_bad_lines = true;
  auto d = load_jsonl(f.str(), *t, tpl, o);
  EXPECT_EQ(d.stats.lines, 5);
  EXPECT_EQ(d.stats.skipped_bad, 3);
  EXPECT_EQ(d.stats.examples, 2);
  EXPECT_EQ(labelled(*t, d.examples.at(1)), "d<|im_end|>");
}

TEST(JsonlDataset, EmptyFileIsAnError) {
  auto t = make_tok();
  auto tpl = tok::detect_chat_template(*t);
  for (const std::string content : {"", "\n  \n\n"}) {
    TempFile f(content);
    auto msg = error_of([&] { load_jsonl(f.str(), *t, tpl, DatasetOptions{}); });
    EXPECT_EQ(msg.rfind("no examples in " + f.str(), 0), 0u) << msg;
  }
  auto msg = error_of([&] { load_jsonl("/nonexistent/x.jsonl", *t, tpl, DatasetOptions{}); });
  EXPECT_NE(msg.find("/nonexistent/x.jsonl"), std::string::npos) << msg;
}

TEST(JsonlDataset, SplitIsDeterministicAndRecountsStats) {
  auto t = make_tok();
  auto tpl = tok::detect_chat_template(*t);
  std::string content;
  for (int i = 0; i < 20; ++i)
    content += fmt::format("{{\"prompt\": \"p{:02d}\", \"completion\": \"{}\"}}\n", i,
                           std::string(static_cast<size_t>(i + 1), 'x'));
  TempFile f(content);
  auto d = load_jsonl(f.str(), *t, tpl, DatasetOptions{});
  ASSERT_EQ(d.examples.size(), 20u);

  auto [train, eval] = split(d, 0.25, 7);
  auto [train2, eval2] = split(d, 0.25, 7);
  ASSERT_EQ(train.examples.size(), 15u);
  ASSERT_EQ(eval.examples.size(), 5u);
  std::multiset<size_t> sizes;  // completion i has i + 1 x's, so sizes identify examples
  for (const auto* part : {&train, &eval})
    for (const auto& e : part->examples) sizes.insert(e.ids.size());
  EXPECT_EQ(sizes.size(), 20u);
  EXPECT_EQ(std::set<size_t>(sizes.begin(), sizes.end()).size(), 20u);
  for (size_t i = 0; i < eval.examples.size(); ++i)
    EXPECT_EQ(eval.examples[i].ids, eval2.examples[i].ids);
  EXPECT_EQ(train.stats.examples, 15);
  EXPECT_EQ(eval.stats.examples, 5);
  EXPECT_EQ(train.stats.tokens + eval.stats.tokens, d.stats.tokens);
  EXPECT_EQ(train.stats.target_tokens + eval.stats.target_tokens, d.stats.target_tokens);

  // Pinned (checked against an independent mt19937_64 + Fisher-Yates in Python): the same seed
  // gives the same split on every standard library.
  std::vector<size_t> eval_x;
  for (const auto& e : eval.examples) eval_x.push_back(e.ids.size() - d.examples[0].ids.size());
  EXPECT_EQ(eval_x, (std::vector<size_t>{2, 4, 12, 14, 18}));

  auto [train3, eval3] = split(d, 0.25, 8);
  bool differs = false;
  for (size_t i = 0; i < eval.examples.size(); ++i)
    differs |= eval.examples[i].ids != eval3.examples[i].ids;
  EXPECT_TRUE(differs);
  EXPECT_EQ(split(d, 0.01, 1).second.examples.size(), 1u);  // at least one eval example
  EXPECT_THROW(split(d, 0.0, 1), Error);
}

TEST(JsonlDataset, PackConcatenatesIntoFullRows) {
  std::vector<Example> ex = {{{1, 2, 3}, {kIgnore, 2, 3}},
                             {{4, 5, 6, 7}, {kIgnore, kIgnore, 6, 7}},
                             {{8, 9, 10, 11, 12}, {8, 9, 10, 11, 12}}};
  auto rows = pack(ex, 5);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].ids, (std::vector<int32_t>{1, 2, 3, 4, 5}));
  EXPECT_EQ(rows[0].labels, (std::vector<int32_t>{kIgnore, 2, 3, kIgnore, kIgnore}));
  EXPECT_EQ(rows[1].ids, (std::vector<int32_t>{6, 7, 8, 9, 10}));
  EXPECT_EQ(rows[1].labels, (std::vector<int32_t>{6, 7, 8, 9, 10}));
  EXPECT_EQ(rows[2].ids, (std::vector<int32_t>{11, 12}));
  EXPECT_EQ(rows[2].labels, (std::vector<int32_t>{11, 12}));
  EXPECT_TRUE(pack({}, 5).empty());
  EXPECT_THROW(pack(ex, 0), Error);
}
