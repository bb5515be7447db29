// The report rendered for people and spreadsheets: console table, CSV, markdown.
#include <fmt/format.h>

#include "apps/bench/bench.h"
#include "apps/bench_html.h"
#include "core/memory.h"
#include "io/atomic_write.h"

namespace sllm::apps::bench {

using nlohmann::json;

namespace {

const json& at_path(const json& j, const std::string& dotted) {
  static const json null;
  const json* cur = &j;
  size_t start = 0;
  while (start <= dotted.size()) {
    const size_t end = std::min(dotted.find('.', start), dotted.size());
    const std::string k = dotted.substr(start, end - start);
    if (!cur->is_object() || !cur->contains(k)) return null;
    cur = &(*cur)[k];
    start = end + 1;
  }
  return *cur;
}

std::string num(const json& v, int prec = 1) {
  return v.is_number() ? fmt::format("{:.{}f}", v.get<double>(), prec) : "-";
}
std::string pm(const json& ms, int prec = 1) {
  if (!ms.is_object() || !ms["mean"].is_number()) return "-";
  return num(ms["mean"], prec) + " ± " + num(ms["std"], prec);
}
std::string bytes(const json& v) {
  return v.is_number() ? memory::format_bytes(v.get<uint64_t>()) : "-";
}

struct Column {
  std::string title;
  std::string (*cell)(const json& m);
};

const std::vector<Column>& columns() {
  static const std::vector<Column> c = {
      {"model", [](const json& m) { return m["name"].get<std::string>(); }},
      {"load s", [](const json& m) { return num(m["load_s"], 2); }},
      {"weights", [](const json& m) { return bytes(m["weights_bytes"]); }},
      {"lm_head",
       [](const json& m) {
         return m["lm_head"].is_string() ? m["lm_head"].get<std::string>() : "-";
       }},
      {"peak RSS", [](const json& m) { return bytes(m["peak_rss_bytes"]); }},
      {"CUDA alloc", [](const json& m) { return bytes(m["cuda_allocated_bytes"]); }},
      {"CUDA reserved", [](const json& m) { return bytes(m["cuda_reserved_bytes"]); }},
      {"p50 ms", [](const json& m) { return num(at_path(m, "latency_ms.p50")); }},
      {"p95 ms", [](const json& m) { return num(at_path(m, "latency_ms.p95")); }},
      {"p99 ms", [](const json& m) { return num(at_path(m, "latency_ms.p99")); }},
      {"TTFT ms", [](const json& m) { return num(at_path(m, "ttft_ms.p50")); }},
      {"TPOT ms", [](const json& m) { return num(at_path(m, "tpot_ms.p50"), 2); }},
      {"prefill tok/s", [](const json& m) { return pm(m["prefill_tok_s"]); }},
      {"decode tok/s", [](const json& m) { return pm(m["decode_tok_s"]); }},
      {"x first", [](const json& m) { return pm(at_path(m, "ratio_vs_first.decode_tok_s"), 2); }},
      {"EM %", [](const json& m) { return num(at_path(m, "quality.exact_match")); }},
      {"ppl", [](const json& m) { return num(at_path(m, "quality.ppl"), 3); }},
      {"KLD", [](const json& m) { return num(at_path(m, "quality.kld"), 4); }},
  };
  return c;
}

// The columns with a figure for at least one model: the CUDA memory columns of a CPU run are
// left out rather than printed as dashes.
std::vector<Column> shown_columns(const json& report) {
  std::vector<Column> out;
  for (const auto& c : columns()) {
    bool any = c.title.rfind("CUDA", 0) != 0;
    for (const auto& m : report["models"]) any = any || c.cell(m) != "-";
    if (any) out.push_back(c);
  }
  return out;
}

std::string status(const json& m) {
  if (m["error"].is_string()) return "error: " + m["error"].get<std::string>();
  if (!m["outputs_identical_across_reps"].get<bool>())
    return "greedy outputs differ across reps: " + m["output_mismatches"].dump();
  return "";
}

}  // namespace

std::string console_table(const json& report) {
  std::vector<std::vector<std::string>> rows;
  const auto cols = shown_columns(report);
  std::vector<std::string> head;
  for (const auto& c : cols) head.push_back(c.title);
  rows.push_back(head);
  for (const auto& m : report["models"]) {
    std::vector<std::string> r;
    for (const auto& c : cols) r.push_back(c.cell(m));
    rows.push_back(r);
  }
  std::vector<size_t> w(head.size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      // Display width: count UTF-8 lead bytes only ("±" is one column).
      size_t n = 0;
      for (unsigned char ch : r[i]) n += (ch & 0xC0) != 0x80;
      w[i] = std::max(w[i], n);
    }
  std::string out;
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      size_t n = 0;
      for (unsigned char ch : r[i]) n += (ch & 0xC0) != 0x80;
      out += (i ? "  " : "") + r[i] + std::string(w[i] - n, ' ');
    }
    out += "\n";
  }
  for (const auto& m : report["models"])
    if (const auto s = status(m); !s.empty()) out += m["name"].get<std::string>() + ": " + s + "\n";
  return out;
}

std::string csv_table(const json& report) {
  static const std::vector<std::string> keys = {"name",
                                                "spec",
                                                "error",
                                                "load_s",
                                                "weights_bytes",
                                                "peak_rss_bytes",
                                                "cuda_allocated_bytes",
                                                "cuda_reserved_bytes",
                                                "reps_done",
                                                "latency_ms.p50",
                                                "latency_ms.p95",
                                                "latency_ms.p99",
                                                "latency_ms.mean",
                                                "latency_ms.std",
                                                "ttft_ms.p50",
                                                "ttft_ms.p95",
                                                "ttft_ms.p99",
                                                "ttft_ms.mean",
                                                "ttft_ms.std",
                                                "tpot_ms.p50",
                                                "tpot_ms.p95",
                                                "tpot_ms.p99",
                                                "tpot_ms.mean",
                                                "tpot_ms.std",
                                                "prefill_tok_s.mean",
                                                "prefill_tok_s.std",
                                                "decode_tok_s.mean",
                                                "decode_tok_s.std",
                                                "ratio_vs_first.decode_tok_s.mean",
                                                "ratio_vs_first.decode_tok_s.std",
                                                "ratio_vs_first.latency_p50.mean",
                                                "ratio_vs_first.latency_p50.std",
                                                "outputs_identical_across_reps",
                                                "quality.exact_match",
                                                "quality.ppl",
                                                "quality.kld",
                                                "pp_tg.pp_tok_s.mean",
                                                "pp_tg.pp_tok_s.std",
                                                "pp_tg.tg_tok_s.mean",
                                                "pp_tg.tg_tok_s.std",
                                                "sweep_summary.b_star_estimated",
                                                "sweep_summary.b_star_measured"};
  std::string out;
  for (size_t i = 0; i < keys.size(); ++i) out += (i ? "," : "") + keys[i];
  out += "\n";
  for (const auto& m : report["models"]) {
    for (size_t i = 0; i < keys.size(); ++i) {
      const json& v = at_path(m, keys[i]);
      std::string cell = v.is_null() ? "" : v.is_string() ? v.get<std::string>() : v.dump();
      if (cell.find_first_of(",\"\n") != std::string::npos) {
        std::string q = "\"";
        for (char c : cell) q += c == '"' ? std::string("\"\"") : std::string(1, c);
        cell = q + "\"";
      }
      out += (i ? "," : "") + cell;
    }
    out += "\n";
  }
  return out;
}

std::string markdown_report(const json& report) {
  const auto& p = report["provenance"];
  const auto& s = report["settings"];
  std::string out = "# sllm bench (offline)\n\n";
  out += fmt::format("- command: `{}`\n- commit: {}\n- date: {}\n- machine: {} ({} cores)\n",
                     p["command"].get<std::string>(),
                     p["commit"].is_string() ? p["commit"].get<std::string>() : "-",
                     p["date"].get<std::string>(), p["machine"]["cpu"].get<std::string>(),
                     p["machine"]["cores"].dump());
  out += fmt::format(
      "- prompts: {} ({}), max_new_tokens {}, reps {} (+{} warm-up{}), batch {}{}\n\n",
      s["prompt_set"].get<std::string>(), s["prompts"].dump(), s["max_new_tokens"].dump(),
      s["reps"].dump(), s["warmup"].dump(),
      s.value("processes", 1) > 1 ? fmt::format(" in each of {} processes", s["processes"].dump())
                                  : "",
      s["batch"].dump(), report["complete"].get<bool>() ? "" : " — **incomplete run**");
  const auto cols = shown_columns(report);
  std::string line = "|", rule = "|";
  for (const auto& c : cols) {
    line += " " + c.title + " |";
    rule += "---|";
  }
  out += line + "\n" + rule + "\n";
  for (const auto& m : report["models"]) {
    out += "|";
    for (const auto& c : cols) out += " " + c.cell(m) + " |";
    out += "\n";
  }
  for (const auto& m : report["models"])
    if (const auto st = status(m); !st.empty())
      out += "\n- **" + m["name"].get<std::string>() + "**: " + st + "\n";
  for (const auto& m : report["models"]) {
    if (!m["pp_tg"].is_null())
      out += fmt::format("\n`{}` pp{}: {} tok/s, tg{}: {} tok/s\n", m["name"].get<std::string>(),
                         m["pp_tg"]["pp"].dump(), pm(m["pp_tg"]["pp_tok_s"]),
                         m["pp_tg"]["tg"].dump(), pm(m["pp_tg"]["tg_tok_s"]));
    if (m["sweep"].empty()) continue;
    out += fmt::format(
        "\n### Batch sweep: {}\n\n| batch | tok/s | step ms | KV measured | KV "
        "formula |\n|---|---|---|---|---|\n",
        m["name"].get<std::string>());
    for (const auto& r : m["sweep"])
      out += fmt::format("| {} | {} | {} | {} | {} |\n", r["batch"].dump(), num(r["tok_s"]),
                         num(r["step_ms"], 2), bytes(r["kv_bytes_measured"]),
                         bytes(r["kv_bytes_formula"]));
    const auto& ss = m["sweep_summary"];
    if (ss.is_object())
      out += fmt::format(
          "\nbandwidth {} GB/s, compute {} GFLOP/s, crossover batch {}, B* "
          "estimated {}, measured {}\n",
          num(ss["bandwidth_gbs"]), num(ss["compute_gflops"]), num(ss["crossover_batch"]),
          ss["b_star_estimated"].dump(), ss["b_star_measured"].dump());
  }
  return out;
}

void write_outputs(const Settings& s, const json& report) {
  if (!s.json.empty())
    io::write_file_atomic(s.json,
                          report.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
  if (!s.csv.empty()) io::write_file_atomic(s.csv, csv_table(report));
  if (!s.markdown.empty()) io::write_file_atomic(s.markdown, markdown_report(report));
  if (!s.html.empty()) io::write_file_atomic(s.html, render_bench_html(report));
}

}  // namespace sllm::apps::bench
