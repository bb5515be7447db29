#include "eval/task_scoring.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"

namespace sllm::eval {

namespace {

using nlohmann::json;

constexpr size_t kPromptChars = 300;   // prompt shown per failure in the report
constexpr size_t kAnswerChars = 2000;  // expected / got shown per failure
constexpr size_t kWorst = 10;          // failures shown first, and per kind

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// Trim, and every internal whitespace run becomes one space.
std::string normalize(const std::string& s) {
  std::string out;
  bool space = false;
  for (char c : trim(s)) {
    if (is_space(c)) {
      space = true;
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::optional<json> parse(const std::string& s) {
  try {
    return json::parse(s);
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

// Equality with numbers compared by value (12 == 12.0) and strings compared trimmed.
bool same(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
  if (a.is_string() && b.is_string())
    return trim(a.get<std::string>()) == trim(b.get<std::string>());
  if (a.is_object() && b.is_object()) {
    if (a.size() != b.size()) return false;
    for (const auto& [k, v] : a.items())
      if (!b.contains(k) || !same(v, b[k])) return false;
    return true;
  }
  if (a.is_array() && b.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!same(a[i], b[i])) return false;
    return true;
  }
  return a == b;
}

// The first balanced {...} in `s` that parses as a JSON object (braces inside strings skipped).
std::optional<json> first_object(const std::string& s) {
  for (size_t start = s.find('{'); start != std::string::npos; start = s.find('{', start + 1)) {
    int depth = 0;
    bool in_str = false, esc = false;
    for (size_t i = start; i < s.size(); ++i) {
      char c = s[i];
      if (in_str) {
        if (esc)
          esc = false;
        else if (c == '\\')
          esc = true;
        else if (c == '"')
          in_str = false;
      } else if (c == '"') {
        in_str = true;
      } else if (c == '{') {
        ++depth;
      } else if (c == '}' && --depth == 0) {
        if (auto j = parse(s.substr(start, i - start + 1)); j && j->is_object()) return j;
        break;
      }
    }
  }
  return std::nullopt;
}

// Cuts to at most n bytes without splitting a UTF-8 character.
std::string clip(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n) + "…";
}

// A fence longer than any backtick run in the content, so the content cannot close it.
std::string fenced(const std::string& s) {
  size_t longest = 0, run = 0;
  for (char c : s) {
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  std::string fence(std::max<size_t>(3, longest + 1), '`');
  return fence + "\n" + s + (s.empty() || s.back() != '\n' ? "\n" : "") + fence + "\n";
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r' || c == '|') c = ' ';
  return s;
}

double pct(int64_t a, int64_t n) { return n ? 100.0 * static_cast<double>(a) / n : 0.0; }

std::string failure_details(const TaskResult& r) {
  return fmt::format(
      "#### line {} · {} · {} · field score {:.2f}\n\nPrompt:\n\n{}\nExpected:\n\n{}\nGot:\n\n{}\n",
      r.item.line, one_line(r.item.task), r.score.kind, r.score.field_score,
      fenced(clip(r.item.prompt, kPromptChars)), fenced(clip(r.item.expected, kAnswerChars)),
      trim(r.got).empty() ? "*(nothing generated)*\n" : fenced(clip(r.got, kAnswerChars)));
}

}  // namespace

std::vector<TaskItem> load_task_file(const std::string& path, int64_t limit) {
  std::ifstream in(path, std::ios::binary);
  SLLM_CHECK(in, "cannot open task file {}", path);
  std::vector<TaskItem> items;
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (limit > 0 && static_cast<int64_t>(items.size()) >= limit) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (trim(line).empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      SLLM_FAIL("{}:{}: invalid JSON: {}", path, lineno, e.what());
    }
    SLLM_CHECK(j.is_object(), "{}:{}: expected a JSON object, got {}", path, lineno, j.type_name());
    TaskItem it;
    it.line = lineno;
    it.task = "default";
    if (j.contains("task")) {
      SLLM_CHECK(j["task"].is_string(), "{}:{}: \"task\" must be a string", path, lineno);
      it.task = j["task"].get<std::string>();
    }
    if (j.contains("messages")) {
      const json& msgs = j["messages"];
      SLLM_CHECK(msgs.is_array(), "{}:{}: \"messages\" must be an array", path, lineno);
      int64_t last_assistant = -1, last_user = -1;
      for (size_t i = 0; i < msgs.size(); ++i) {
        const json& m = msgs[i];
        SLLM_CHECK(m.is_object() && m.contains("role") && m["role"].is_string() &&
                       m.contains("content") && m["content"].is_string(),
                   "{}:{}: messages[{}] must be an object with string \"role\" and \"content\"",
                   path, lineno, i);
        if (m["role"] == "assistant") last_assistant = static_cast<int64_t>(i);
      }
      SLLM_CHECK(last_assistant >= 0, "{}:{}: \"messages\" has no assistant message to compare",
                 path, lineno);
      for (int64_t i = 0; i < last_assistant; ++i)
        if (msgs[i]["role"] == "user") last_user = i;
      SLLM_CHECK(last_user >= 0, "{}:{}: no user message before the last assistant message", path,
                 lineno);
      it.prompt = msgs[last_user]["content"].get<std::string>();
      it.expected = msgs[last_assistant]["content"].get<std::string>();
    } else {
      for (const char* k : {"prompt", "completion"}) {
        SLLM_CHECK(j.contains(k),
                   "{}:{}: missing field \"{}\" (expected \"prompt\"/\"completion\" "
                   "or \"messages\")",
                   path, lineno, k);
        SLLM_CHECK(j[k].is_string(), "{}:{}: field \"{}\" must be a string", path, lineno, k);
      }
      it.prompt = j["prompt"].get<std::string>();
      it.expected = j["completion"].get<std::string>();
    }
    items.push_back(std::move(it));
  }
  SLLM_CHECK(!items.empty(), "no tasks in {}", path);
  return items;
}

Score score_answer(const std::string& expected, const std::string& got) {
  Score s;
  const std::string want = trim(expected), have = trim(got);
  auto want_json = parse(want);
  s.json = want_json && want_json->is_object();

  if (!s.json) {
    s.exact = normalize(want) == normalize(have);
    // Non-object JSON values (numbers, lists) compare by value: "12" matches "12.0".
    if (!s.exact && want_json && !have.empty())
      if (auto g = parse(have)) s.exact = same(*want_json, *g);
    s.field_score = s.exact ? 1.0 : 0.0;
    if (!s.exact) s.kind = have.empty() ? "empty" : "wrong_answer";
    return s;
  }

  s.fields = static_cast<int64_t>(want_json->size());
  if (have.empty()) {
    s.kind = "empty";
    return s;
  }
  bool extra_text = false;
  auto g = parse(have);
  if (!g || !g->is_object()) {
    g = first_object(have);
    extra_text = true;
  }
  if (!g) {
    s.kind = "invalid_json";
    return s;
  }
  bool missing = false;
  for (const auto& [k, v] : want_json->items()) {
    if (!g->contains(k))
      missing = true;
    else if (same(v, (*g)[k]))
      ++s.fields_matched;
  }
  const bool equal = same(*want_json, *g);
  s.field_score = s.fields ? static_cast<double>(s.fields_matched) / s.fields : (equal ? 1.0 : 0.0);
  s.exact = equal && !extra_text;
  if (s.exact) return s;
  if (missing)
    s.kind = "missing_fields";
  else if (s.fields_matched < s.fields)
    s.kind = "wrong_values";
  else if (!equal)
    s.kind = "extra_fields";  // every expected field right, plus keys that should not be there
  else
    s.kind = "extra_text";
  return s;
}

TaskSummary summarize(const std::vector<TaskResult>& results) {
  TaskSummary s;
  double field_sum = 0.0;
  for (const auto& r : results) {
    ++s.n;
    auto& [task_exact, task_n] = s.per_task[r.item.task];
    ++task_n;
    field_sum += r.score.field_score;
    if (r.score.exact) {
      ++s.exact;
      ++task_exact;
    } else {
      ++s.failure_kinds[r.score.kind.empty() ? "wrong_answer" : r.score.kind];
    }
  }
  s.exact_match = pct(s.exact, s.n);
  s.field_match = s.n ? 100.0 * field_sum / static_cast<double>(s.n) : 0.0;
  return s;
}

std::string render_report(const std::string& title, const TaskSummary& s,
                          const std::vector<TaskResult>& results) {
  std::string out = fmt::format("# {}\n\n## Summary\n\n", one_line(title));
  out += "| items | exact | exact match | field match |\n|---:|---:|---:|---:|\n";
  out += fmt::format("| {} | {} | {:.1f}% | {:.1f}% |\n\n", s.n, s.exact, s.exact_match,
                     s.field_match);

  out += "## Per task\n\n| task | exact | n | exact match |\n|---|---:|---:|---:|\n";
  for (const auto& [task, en] : s.per_task)
    out += fmt::format("| {} | {} | {} | {:.1f}% |\n", one_line(task), en.first, en.second,
                       pct(en.first, en.second));

  // Failures, worst first: lowest field score, then file order.
  std::vector<const TaskResult*> failed;
  for (const auto& r : results)
    if (!r.score.exact) failed.push_back(&r);
  std::stable_sort(failed.begin(), failed.end(), [](const TaskResult* a, const TaskResult* b) {
    if (a->score.field_score != b->score.field_score)
      return a->score.field_score < b->score.field_score;
    return a->item.line < b->item.line;
  });
  if (failed.empty()) return out + "\nNo failures.\n";

  // Kinds by count (most frequent first), then name.
  std::vector<std::pair<std::string, int64_t>> kinds(s.failure_kinds.begin(),
                                                     s.failure_kinds.end());
  std::stable_sort(kinds.begin(), kinds.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  out += "\n## Failure kinds\n\n| kind | count |\n|---|---:|\n";
  for (const auto& [k, c] : kinds) out += fmt::format("| {} | {} |\n", k, c);

  out += fmt::format("\n## {} worst failures\n\n", std::min(kWorst, failed.size()));
  for (size_t i = 0; i < failed.size() && i < kWorst; ++i) out += failure_details(*failed[i]);

  out += "\n## Failures by kind\n";
  for (const auto& [k, c] : kinds) {
    out += fmt::format("\n### {} ({})\n\n", k, c);
    std::vector<int64_t> rest;
    size_t shown = 0;
    for (const TaskResult* r : failed) {
      if ((r->score.kind.empty() ? "wrong_answer" : r->score.kind) != k) continue;
      if (shown++ < kWorst)
        out += failure_details(*r);
      else
        rest.push_back(r->item.line);
    }
    if (!rest.empty()) {
      out += fmt::format("\n{} more, lines:", rest.size());
      for (int64_t l : rest) out += fmt::format(" {}", l);
      out += "\n";
    }
  }
  return out;
}

}  // namespace sllm::eval
