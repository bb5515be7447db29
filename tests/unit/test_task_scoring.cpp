// Task scoring tests: answer comparison, summaries and the markdown failure report.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "eval/task_scoring.h"

using namespace sllm;
using namespace sllm::eval;
namespace fs = std::filesystem;

namespace {

struct TempFile {
  fs::path path;
  explicit TempFile(const std::string& content) {
    path = fs::temp_directory_path() /
           ("sllm_task_test_" + std::to_string(::getpid()) + "_" +
            std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ".jsonl");
    std::ofstream(path, std::ios::binary) << content;
  }
  ~TempFile() { fs::remove(path); }
  std::string str() const { return path.string(); }
};

TaskResult result(int64_t line, const std::string& task, const std::string& expected,
                  const std::string& got, const std::string& prompt = "prompt") {
  TaskResult r;
  r.item = {prompt, expected, task, line};
  r.got = got;
  r.score = score_answer(expected, got);
  return r;
}

}  // namespace

TEST(TaskScoring, ExactTextIsNormalized) {
  auto s = score_answer("Paris", "  Paris \n");
  EXPECT_TRUE(s.exact);
  EXPECT_FALSE(s.json);
  EXPECT_EQ(s.kind, "");
  EXPECT_EQ(s.field_score, 1.0);
  EXPECT_TRUE(score_answer("New  York\ncity", "New York city").exact);

  auto w = score_answer("Paris", "paris");
  EXPECT_FALSE(w.exact);
  EXPECT_EQ(w.kind, "wrong_answer");
  EXPECT_EQ(w.field_score, 0.0);
  EXPECT_EQ(score_answer("Paris", " \n").kind, "empty");
  EXPECT_TRUE(score_answer("12", "12.0").exact);  // numbers by value
  EXPECT_FALSE(score_answer("12", "13").exact);
}

TEST(TaskScoring, JsonEqualRegardlessOfKeyOrderAndSpacing) {
  auto s = score_answer(R"({"name": "Ada", "age": 36, "tags": ["a", "b"]})",
                        "{\n  \"tags\": [\"a\",\"b\"],\"age\":36,   \"name\":\"Ada\"}");
  EXPECT_TRUE(s.exact);
  EXPECT_TRUE(s.json);
  EXPECT_EQ(s.fields, 3);
  EXPECT_EQ(s.fields_matched, 3);
  EXPECT_EQ(s.field_score, 1.0);
  EXPECT_TRUE(score_answer(R"({"n": 12})", R"({"n": 12.0})").exact);
  EXPECT_TRUE(score_answer(R"({"s": "x"})", R"({"s": " x "})").exact);  // strings trimmed
  EXPECT_FALSE(score_answer(R"({"n": 12})", R"({"n": "12"})").exact);
  EXPECT_TRUE(
      score_answer(R"({"o": {"a": 1, "b": [1, 2.0]}})", R"({"o": {"b": [1.0, 2], "a": 1}})").exact);
}

TEST(TaskScoring, PartialFields) {
  auto m = score_answer(R"({"a": 1, "b": 2, "c": 3})", R"({"a": 1, "b": 5})");
  EXPECT_FALSE(m.exact);
  EXPECT_EQ(m.kind, "missing_fields");
  EXPECT_EQ(m.fields, 3);
  EXPECT_EQ(m.fields_matched, 1);
  EXPECT_NEAR(m.field_score, 1.0 / 3, 1e-12);

  auto w = score_answer(R"({"a": 1, "b": 2})", R"({"b": 3, "a": 1})");
  EXPECT_EQ(w.kind, "wrong_values");
  EXPECT_EQ(w.fields_matched, 1);
  EXPECT_DOUBLE_EQ(w.field_score, 0.5);

  auto x = score_answer(R"({"a": 1})", R"({"a": 1, "z": 0})");
  EXPECT_FALSE(x.exact);
  EXPECT_EQ(x.kind, "extra_fields");
  EXPECT_EQ(x.field_score, 1.0);
}

TEST(TaskScoring, InvalidJsonAndExtraText) {
  for (const std::string got : {"sure, here it is", "{a: 1}", "{\"a\": 1", "[1, 2]"}) {
    auto s = score_answer(R"({"a": 1})", got);
    EXPECT_FALSE(s.exact) << got;
    EXPECT_EQ(s.kind, "invalid_json") << got;
    EXPECT_EQ(s.fields_matched, 0) << got;
    EXPECT_EQ(s.field_score, 0.0) << got;
  }
  EXPECT_EQ(score_answer(R"({"a": 1})", "").kind, "empty");

  auto e = score_answer(R"({"a": "}{", "b": 2})",
                        "Here you go: ```json\n{\"b\": 2, \"a\": \"}{\"}\n``` hope it helps {");
  EXPECT_FALSE(e.exact);
  EXPECT_EQ(e.kind, "extra_text");
  EXPECT_EQ(e.fields_matched, 2);
  EXPECT_EQ(e.field_score, 1.0);
  // Text around a wrong object: the wrong values are the failure that matters.
  EXPECT_EQ(score_answer(R"({"a": 1})", "x {\"a\": 2} y").kind, "wrong_values");
  // The first object that parses is used.
  EXPECT_EQ(score_answer(R"({"a": 1})", "{oops} {\"a\": 1}").kind, "extra_text");
}

TEST(TaskScoring, SummaryNumbers) {
  std::vector<TaskResult> rs = {
      result(1, "cap", "Paris", "Paris"),
      result(2, "cap", "Rome", "Milan"),
      result(3, "json", R"({"a": 1, "b": 2})", R"({"a": 1, "b": 2})"),
      result(4, "json", R"({"a": 1, "b": 2})", R"({"a": 1})"),
  };
  auto s = summarize(rs);
  EXPECT_EQ(s.n, 4);
  EXPECT_EQ(s.exact, 2);
  EXPECT_DOUBLE_EQ(s.exact_match, 50.0);
  EXPECT_DOUBLE_EQ(s.field_match, 100.0 * (1 + 0 + 1 + 0.5) / 4);
  EXPECT_EQ(s.per_task.at("cap"), std::make_pair(int64_t{1}, int64_t{2}));
  EXPECT_EQ(s.per_task.at("json"), std::make_pair(int64_t{1}, int64_t{2}));
  EXPECT_EQ(s.failure_kinds.size(), 2u);
  EXPECT_EQ(s.failure_kinds.at("wrong_answer"), 1);
  EXPECT_EQ(s.failure_kinds.at("missing_fields"), 1);

  auto empty = summarize({});
  EXPECT_EQ(empty.n, 0);
  EXPECT_EQ(empty.exact_match, 0.0);
}

TEST(TaskScoring, ReportListsTenWorstAndGroupsByKind) {
  std::vector<TaskResult> rs;
  rs.push_back(result(1, "t", "ok", "ok"));
  // Lines 2..13: JSON with 4 fields, k of them right -> field score k/4.
  for (int i = 0; i < 12; ++i) {
    const int k = i % 4;
    std::string got = "{";
    for (int f = 0; f < 4; ++f)
      got += fmt::format("{}\"f{}\": {}", f ? ", " : "", f, f < k ? f : 100 + f);
    rs.push_back(result(2 + i, "json", R"({"f0": 0, "f1": 1, "f2": 2, "f3": 3})", got + "}"));
  }
  rs.push_back(result(14, "t", "ok", "not ok", std::string(1000, 'P') + "TAIL"));
  rs.push_back(result(15, "t", "```fenced```", "x ``` y ```` z"));
  auto s = summarize(rs);
  auto md = render_report("My <task> report", s, rs);

  EXPECT_NE(md.find("# My <task> report"), std::string::npos);
  EXPECT_NE(md.find("| 15 | 1 | 6.7% |"), std::string::npos) << md.substr(0, 400);
  EXPECT_NE(md.find("| json | 0 | 12 | 0.0% |"), std::string::npos);
  EXPECT_NE(md.find("| wrong_values | 12 |"), std::string::npos);
  EXPECT_NE(md.find("| wrong_answer | 2 |"), std::string::npos);

  // Ten worst: score 0 first (lines 14, 15 and 2, 6, 10 in file order), then 1/4 (3, 7, 11),
  // then 2/4 (4, 8); line 12 (2/4) and the 3/4 ones are not among them.
  const size_t worst = md.find("## 10 worst failures");
  const size_t by_kind = md.find("## Failures by kind");
  ASSERT_NE(worst, std::string::npos);
  ASSERT_NE(by_kind, std::string::npos);
  ASSERT_LT(worst, by_kind);
  const std::string top = md.substr(worst, by_kind - worst);
  size_t prev = 0;
  for (int line : {2, 6, 10, 14, 15, 3, 7, 11, 4, 8}) {
    size_t p = top.find(fmt::format("#### line {} ", line));
    ASSERT_NE(p, std::string::npos) << line;
    EXPECT_GT(p, prev) << line;
    prev = p;
  }
  EXPECT_EQ(top.find("#### line 12 "), std::string::npos);
  EXPECT_EQ(top.find("#### line 5 "), std::string::npos);
  EXPECT_EQ(top.find("#### line 1 "), std::string::npos);

  // Grouped by kind, most frequent first; 12 wrong_values show 10 and list the rest.
  const size_t g1 = md.find("### wrong_values (12)"), g2 = md.find("### wrong_answer (2)");
  ASSERT_NE(g1, std::string::npos);
  ASSERT_NE(g2, std::string::npos);
  EXPECT_LT(g1, g2);
  EXPECT_NE(md.find("2 more, lines: 9 13"), std::string::npos);

  // The prompt is cut; a fence inside the content gets a longer fence.
  EXPECT_EQ(md.find("TAIL"), std::string::npos);
  EXPECT_NE(md.find(std::string(300, 'P')), std::string::npos);
  EXPECT_NE(md.find("`````\nx ``` y ```` z\n`````"), std::string::npos);
  EXPECT_NE(md.find("````\n```fenced```\n````"), std::string::npos);
}

TEST(TaskScoring, ReportWithoutFailures) {
  std::vector<TaskResult> rs = {result(1, "t", "a", "a")};
  auto md = render_report("r", summarize(rs), rs);
  EXPECT_NE(md.find("No failures."), std::string::npos);
  EXPECT_EQ(md.find("worst"), std::string::npos);
}

TEST(TaskScoring, LoadTaskFile) {
  TempFile f(
      "{\"prompt\": \"2+2?\", \"completion\": \"4\", \"task\": \"math\"}\n"
      "\n"
      "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", "
      "\"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello\"}]}\n"
      "{\"prompt\": \"x\", \"completion\": \"y\"}\n");
  auto items = load_task_file(f.str());
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].prompt, "2+2?");
  EXPECT_EQ(items[0].expected, "4");
  EXPECT_EQ(items[0].task, "math");
  EXPECT_EQ(items[0].line, 1);
  EXPECT_EQ(items[1].prompt, "Hi");
  EXPECT_EQ(items[1].expected, "Hello");
  EXPECT_EQ(items[1].task, "default");
  EXPECT_EQ(items[1].line, 3);
  EXPECT_EQ(load_task_file(f.str(), 2).size(), 2u);
}

TEST(TaskScoring, LoadTaskFileErrorsNameLine) {
  for (const std::string bad :
       {"{oops", R"({"prompt": "x"})", R"({"prompt": "x", "completion": 3})",
        R"({"messages": [{"role": "user", "content": "u"}]})",
        R"({"task": 1, "prompt": "p", "completion": "c"})"}) {
    TempFile f("{\"prompt\": \"a\", \"completion\": \"b\"}\n" + bad + "\n");
    try {
      load_task_file(f.str());
      ADD_FAILURE() << "no error for " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(f.str() + ":2: ", 0), 0u) << e.what();
    }
  }
  TempFile empty("");
  EXPECT_THROW(load_task_file(empty.str()), Error);
}
