// sllm bench, server load mode: options, the text renderings and the recipe. The runner is in
// bench_load_run.cpp, one request in bench_load_client.cpp.
#include "apps/bench_load.h"

#include <fmt/format.h>

#include <iostream>
#include <memory>
#include <sstream>

#include "apps/bench_html.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "io/atomic_write.h"

namespace sllm::apps {

using nlohmann::json;

options::Table bench_load_options() {
  return {
      {"load.url", nullptr,
       "base URL of the server under load, e.g. http://127.0.0.1:8080 (switches to the load mode)",
       "--url"},
      {"load.api", "openai", "server API: openai (OpenAI-compatible) or tgi", "--api"},
      {"load.endpoint", "completions", "openai endpoint: completions or chat", "--endpoint"},
      {"load.concurrency", "1,4,16,64", "concurrency levels, one run each (comma-separated)",
       "--concurrency"},
      {"load.request_rate", 0.0, "requests/s with Poisson arrivals; 0 = as fast as possible",
       "--request-rate"},
      {"load.num_prompts", 64, "requests per concurrency level; 0 = until load.duration",
       "--num-prompts"},
      {"load.duration", 120.0, "seconds per level after which no new request starts", "--duration"},
      {"load.max_tokens", 64, "tokens to generate per request", "--max-tokens"},
      {"load.stream", true, "stream the answers (TTFT and inter-token latencies need it)",
       "--stream,!--no-stream"},
      {"load.include_usage", true,
       "openai streams: ask for the usage chunk (stream_options.include_usage)"},
      {"load.slo", nullptr, "goodput limits, e.g. ttft=500,tpot=50 (milliseconds)", "--slo"},
      {"load.timeout", 60.0, "seconds one request may take before it counts as timed out",
       "--timeout"},
      {"load.ready_timeout", 30.0, "seconds to wait for the server to answer GET /health",
       "--ready-timeout"},
      {"load.model", nullptr, "model name sent to the server; default: first of /v1/models",
       "--server-model"},
      {"load.prompt_set", "builtin",
       "prompts: builtin, a .txt file (a prompt a line) or .jsonl ({\"prompt\": ...}); "
       "sllm bench's --prompt-set sets it in the load mode"},
      {"load.seed", 0, "seed of the Poisson arrivals"},
  };
}

options::Table bench_output_options() {
  return {{"json", false, "print the result as JSON", "--json"},
          {"csv", false, "print the result as CSV", "--csv"},
          {"markdown", false, "print the result as a Markdown table", "--markdown"},
          {"out", nullptr, "write the result JSON to this file", "-o,--out"},
          {"html", nullptr, "write a self-contained HTML report to this file", "--html"}};
}

std::vector<int> parse_int_list(const json& v, const std::string& key) {
  std::vector<int> out;
  auto add = [&](const std::string& text) {
    std::stringstream ss(text);
    for (std::string part; std::getline(ss, part, ',');) {
      if (part.find_first_not_of(' ') == std::string::npos) continue;
      size_t used = 0;
      int n = 0;
      try {
        n = std::stoi(part, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      SLLM_CHECK(used > 0 && part.find_first_not_of(' ', used) == std::string::npos,
                 "{}: '{}' is not an integer (give e.g. 1,4,16,64)", key, part);
      out.push_back(n);
    }
  };
  if (v.is_string()) {
    add(v.get<std::string>());
  } else if (v.is_number_integer()) {
    out.push_back(v.get<int>());
  } else if (v.is_array()) {
    for (const auto& e : v) {
      if (e.is_number_integer())
        out.push_back(e.get<int>());
      else if (e.is_string())
        add(e.get<std::string>());
      else
        SLLM_FAIL("{}: {} is not an integer (give e.g. 1,4,16,64)", key, e.dump());
    }
  } else {
    SLLM_FAIL("{}: expected a list of integers such as 1,4,16,64, got {}", key, v.dump());
  }
  return out;
}

void parse_slo(const std::string& text, LoadSettings& s) {
  std::stringstream ss(text);
  for (std::string part; std::getline(ss, part, ',');) {
    if (part.empty()) continue;
    const auto eq = part.find('=');
    const std::string name = part.substr(0, eq);
    double ms = -1;
    if (eq != std::string::npos) {
      try {
        size_t used = 0;
        ms = std::stod(part.substr(eq + 1), &used);
        if (used != part.size() - eq - 1) ms = -1;
      } catch (const std::exception&) {
        ms = -1;
      }
    }
    SLLM_CHECK(ms > 0 && (name == "ttft" || name == "tpot"),
               "load.slo: '{}' is not ttft=MS or tpot=MS (give e.g. --slo ttft=500,tpot=50)", part);
    (name == "ttft" ? s.slo_ttft_ms : s.slo_tpot_ms) = ms;
  }
}

LoadSettings load_settings_from_config(const json& cfg) {
  LoadSettings s;
  const auto url = config::get<json>(cfg, "load.url");
  SLLM_CHECK(url.is_string() && !url.get<std::string>().empty(),
             "load.url: give the server's base URL with --url, e.g. http://127.0.0.1:8080");
  s.url = url.get<std::string>();
  s.api = config::get<std::string>(cfg, "load.api");
  s.endpoint = config::get<std::string>(cfg, "load.endpoint");
  s.concurrency = parse_int_list(config::get<json>(cfg, "load.concurrency"), "load.concurrency");
  s.request_rate = config::get<double>(cfg, "load.request_rate");
  s.num_prompts = config::get<int>(cfg, "load.num_prompts");
  s.duration_s = config::get<double>(cfg, "load.duration");
  s.max_tokens = config::get<int>(cfg, "load.max_tokens");
  s.stream = config::get<bool>(cfg, "load.stream");
  s.include_usage = config::get<bool>(cfg, "load.include_usage");
  if (const auto slo = config::get<json>(cfg, "load.slo"); slo.is_string())
    parse_slo(slo.get<std::string>(), s);
  s.timeout_s = config::get<double>(cfg, "load.timeout");
  s.ready_timeout_s = config::get<double>(cfg, "load.ready_timeout");
  if (const auto m = config::get<json>(cfg, "load.model"); m.is_string()) s.model = m;
  s.prompt_set = config::get<std::string>(cfg, "load.prompt_set");
  s.seed = config::get<uint64_t>(cfg, "load.seed");
  return s;
}

// ---- renderings ----

namespace {

std::string num(const json& v, int digits = 1) {
  return v.is_number() ? fmt::format("{:.{}f}", v.get<double>(), digits) : "-";
}

std::string errors_text(const json& run) {
  std::string out;
  for (const auto& [reason, n] : run["errors"].items())
    out += (out.empty() ? "" : " ") + reason + ":" + std::to_string(n.get<int>());
  return out.empty() ? "-" : out;
}

struct Column {
  const char* name;
  std::string (*cell)(const json& run);
};

const std::vector<Column>& columns() {
  static const std::vector<Column> c = {
      {"conc", [](const json& r) { return std::to_string(r["concurrency"].get<int>()); }},
      {"rate",
       [](const json& r) {
         return r["request_rate"].get<double>() > 0 ? num(r["request_rate"]) : std::string("inf");
       }},
      {"done",
       [](const json& r) {
         return fmt::format("{}/{}", r["completed"].get<int>(), r["num_requests"].get<int>());
       }},
      {"req/s", [](const json& r) { return num(r["requests_per_s"], 2); }},
      {"out tok/s", [](const json& r) { return num(r["output_tok_s"]); }},
      {"goodput", [](const json& r) { return num(r["goodput_req_s"], 2); }},
      {"TTFT p50", [](const json& r) { return num(r["ttft_ms"]["median"]); }},
      {"TTFT p99", [](const json& r) { return num(r["ttft_ms"]["p99"]); }},
      {"TPOT p50", [](const json& r) { return num(r["tpot_ms"]["median"]); }},
      {"ITL p50", [](const json& r) { return num(r["itl_ms"]["median"]); }},
      {"E2E p50", [](const json& r) { return num(r["e2e_ms"]["median"]); }},
      {"E2E p99", [](const json& r) { return num(r["e2e_ms"]["p99"]); }},
      {"tokens", [](const json& r) { return r["tokens_from"].get<std::string>(); }},
      {"errors", errors_text}};
  return c;
}

}  // namespace

std::string load_table(const json& result) {
  std::vector<std::vector<std::string>> rows;
  std::vector<size_t> width;
  for (const auto& c : columns()) width.push_back(std::string(c.name).size());
  for (const auto& run : result["runs"]) {
    rows.emplace_back();
    for (size_t i = 0; i < columns().size(); ++i) {
      rows.back().push_back(columns()[i].cell(run));
      width[i] = std::max(width[i], rows.back().back().size());
    }
  }
  std::string out = fmt::format("{} ({}, {})  times in ms\n", result.value("url", ""),
                                result.value("api", ""), result.value("model", ""));
  auto line = [&](auto cell) {
    for (size_t i = 0; i < width.size(); ++i)
      out += fmt::format("{}{:>{}}", i ? "  " : "", cell(i), width[i]);
    out += '\n';
  };
  line([&](size_t i) { return std::string(columns()[i].name); });
  for (const auto& r : rows) line([&](size_t i) { return r[i]; });
  return out;
}

std::string load_markdown(const json& result) {
  std::string out = "| ";
  for (const auto& c : columns()) out += std::string(c.name) + " | ";
  out.pop_back();
  out += "\n|";
  for (size_t i = 0; i < columns().size(); ++i) out += "---|";
  out += '\n';
  for (const auto& run : result["runs"]) {
    out += "| ";
    for (const auto& c : columns()) out += c.cell(run) + " | ";
    out.pop_back();
    out += '\n';
  }
  return out;
}

std::string load_csv(const json& result) {
  std::string out =
      "concurrency,request_rate,num_requests,completed,failed,requests_per_s,output_tok_s,"
      "goodput_req_s,tokens_from";
  const char* metrics[] = {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"};
  const char* stats[] = {"mean", "median", "p90", "p99"};
  for (auto m : metrics)
    for (auto st : stats) out += fmt::format(",{}_{}", m, st);
  out += ",errors\n";
  auto v = [](const json& x) { return x.is_number() ? fmt::format("{}", x.get<double>()) : ""; };
  for (const auto& r : result["runs"]) {
    out +=
        fmt::format("{},{},{},{},{},{},{},{},{}", r["concurrency"].get<int>(), v(r["request_rate"]),
                    r["num_requests"].get<int>(), r["completed"].get<int>(), r["failed"].get<int>(),
                    v(r["requests_per_s"]), v(r["output_tok_s"]), v(r["goodput_req_s"]),
                    r["tokens_from"].get<std::string>());
    for (auto m : metrics)
      for (auto st : stats) out += "," + v(r[m][st]);
    const std::string e = errors_text(r);
    out += "," + (e == "-" ? std::string() : e) + "\n";
  }
  return out;
}

// ---- the recipe ----

int run_bench_load(const json& cfg) {
  const auto s = load_settings_from_config(cfg);
  auto flag = [&](const char* key) {
    return cfg.contains(key) && cfg[key].is_boolean() && cfg[key].get<bool>();
  };
  auto path = [&](const char* key) {
    return cfg.contains(key) && cfg[key].is_string() ? cfg[key].get<std::string>() : std::string();
  };
  std::unique_ptr<ProgressBar> bar;
  int bar_level = -1;
  const json result = bench_load(s, [&](int conc, int done, int total) {
    if (conc != bar_level) {
      if (bar) bar->finish();
      bar = std::make_unique<ProgressBar>(fmt::format("load c={}", conc), total);
      bar_level = conc;
    }
    bar->update(done);
  });
  if (bar) bar->finish();

  // json/csv/markdown: true prints that form instead of the table; a path (as `sllm bench`
  // gives them) writes it there.
  const std::string dumped = result.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  if (flag("json"))
    std::cout << dumped;
  else if (flag("csv"))
    std::cout << load_csv(result);
  else if (flag("markdown"))
    std::cout << load_markdown(result);
  else
    std::cout << load_table(result);
  if (const auto f = path("json"); !f.empty()) io::write_file_atomic(f, dumped);
  if (const auto f = path("csv"); !f.empty()) io::write_file_atomic(f, load_csv(result));
  if (const auto f = path("markdown"); !f.empty()) io::write_file_atomic(f, load_markdown(result));
  if (const auto out = path("out"); !out.empty()) io::write_file_atomic(out, dumped);
  if (const auto html = path("html"); !html.empty())
    io::write_file_atomic(html, render_bench_html(result));

  int failed = 0;
  for (const auto& run : result["runs"]) {
    failed += run["failed"].get<int>();
    for (const auto& [reason, n] : run["errors"].items())
      log::error("{}: {} of {} requests failed at concurrency {} ({}: {})", s.url, n.get<int>(),
                 run["num_requests"].get<int>(), run["concurrency"].get<int>(), reason,
                 run["error_details"].value(reason, std::string()));
  }
  if (failed > 0) {
    log::error("{}: {} requests failed; the results above are partial", s.url, failed);
    return 1;
  }
  return 0;
}

}  // namespace sllm::apps
