#include "apps/bench_html.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/svg_chart.h"

#ifndef SLLM_CHARTJS_PATH
#define SLLM_CHARTJS_PATH "/usr/share/javascript/chart.js/chart.min.js"
#endif

namespace sllm::apps {

extern const char* const kBenchHtmlScript;  // bench_html_script.cpp
extern const char* const kBenchHtmlStyle;

using nlohmann::json;

namespace {

bool has(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && !j[key].is_null();
}

const json& models_of(const json& r) {
  static const json empty = json::array();
  return has(r, "models") && r["models"].is_array() ? r["models"] : empty;
}

bool any_model(const json& r, bool (*pred)(const json& m)) {
  for (const auto& m : models_of(r))
    if (m.is_object() && pred(m)) return true;
  return false;
}

// A value as table text: numbers rounded, strings as they are, anything else as compact JSON.
std::string text(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  if (v.is_number()) {
    const double d = v.get<double>();
    if (std::abs(d) >= 100) return fmt::format("{:.1f}", d);
    return std::abs(d) >= 1 ? fmt::format("{:.2f}", d) : fmt::format("{:.4g}", d);
  }
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string cell(const json& v) { return "<td>" + xml_escape(text(v)) + "</td>"; }

const json& at(const json& j, std::initializer_list<const char*> path) {
  static const json null;
  const json* p = &j;
  for (const char* k : path) {
    if (!has(*p, k)) return null;
    p = &(*p)[k];
  }
  return *p;
}

std::string mean_std(const json& v) {
  if (!has(v, "mean")) return "";
  return text(v["mean"]) + (has(v, "std") ? " ± " + text(v["std"]) : "");
}

std::string mib(const json& v) {
  return v.is_number() ? fmt::format("{:.1f}", v.get<double>() / (1024.0 * 1024.0)) : "";
}

// Key/value rows of an object (provenance, settings), nested objects as JSON text.
std::string kv_table(const json& obj) {
  std::string out = "<table class=\"kv\">";
  for (const auto& [k, v] : obj.items())
    out += "<tr><th>" + xml_escape(k) + "</th>" + cell(v) + "</tr>";
  return out + "</table>\n";
}

std::string table(const std::vector<std::string>& head, const std::vector<std::string>& rows) {
  std::string out = "<table><tr>";
  for (const auto& h : head) out += "<th>" + xml_escape(h) + "</th>";
  out += "</tr>";
  for (const auto& r : rows) out += "<tr>" + r + "</tr>";
  return out + "</table>\n";
}

std::string offline_tables(const json& r) {
  std::vector<std::string> rows;
  for (const auto& m : models_of(r)) {
    if (!m.is_object()) continue;
    std::string row = cell(at(m, {"name"})) + cell(at(m, {"spec"})) + cell(at(m, {"load_s"}));
    for (const char* k :
         {"weights_bytes", "peak_rss_bytes", "cuda_allocated_bytes", "cuda_reserved_bytes"})
      row += "<td>" + mib(at(m, {k})) + "</td>";
    for (const char* p : {"p50", "p95", "p99"}) row += cell(at(m, {"latency_ms", p}));
    row += cell(at(m, {"ttft_ms", "p50"})) + cell(at(m, {"tpot_ms", "p50"}));
    row += "<td>" + xml_escape(mean_std(at(m, {"prefill_tok_s"}))) + "</td>";
    row += "<td>" + xml_escape(mean_std(at(m, {"decode_tok_s"}))) + "</td>";
    for (const char* q : {"exact_match", "ppl", "kld"}) row += cell(at(m, {"quality", q}));
    row += cell(at(m, {"ratio_vs_first"})) + cell(at(m, {"error"}));
    rows.push_back(row);
  }
  std::string out = "<h2>Models</h2>\n" +
                    table({"model", "spec", "load s", "weights MiB", "peak RSS MiB",
                           "CUDA alloc MiB", "CUDA reserved MiB", "e2e p50 ms", "e2e p95 ms",
                           "e2e p99 ms", "TTFT p50 ms", "TPOT p50 ms", "prefill tok/s",
                           "decode tok/s", "exact match", "ppl", "KLD", "vs first", "error"},
                          rows);
  for (const auto& m : models_of(r)) {
    if (!m.is_object()) continue;
    const std::string name = xml_escape(text(at(m, {"name"})));
    if (has(m, "pp_tg") && m["pp_tg"].is_object())
      out += "<h3>" + name + ": prompt processing / generation</h3>\n" + kv_table(m["pp_tg"]);
    if (has(m, "sweep") && m["sweep"].is_array() && !m["sweep"].empty()) {
      std::vector<std::string> sr;
      for (const auto& s : m["sweep"])
        sr.push_back(cell(at(s, {"batch"})) + cell(at(s, {"tok_s"})) + cell(at(s, {"step_ms"})) +
                     "<td>" + mib(at(s, {"kv_bytes_measured"})) + "</td><td>" +
                     mib(at(s, {"kv_bytes_formula"})) + "</td>");
      out += "<h3>" + name + ": batch sweep</h3>\n" +
             table({"batch", "tok/s", "step ms", "KV MiB measured", "KV MiB formula"}, sr);
      if (has(m, "sweep_summary") && m["sweep_summary"].is_object())
        out += kv_table(m["sweep_summary"]);
    }
    if (has(m, "requests") && m["requests"].is_array() && !m["requests"].empty()) {
      std::vector<std::string> rr;
      for (const auto& q : m["requests"])
        rr.push_back(cell(at(q, {"prompt"})) + cell(at(q, {"rep"})) + cell(at(q, {"e2e_ms"})) +
                     cell(at(q, {"ttft_ms"})) + cell(at(q, {"tpot_ms"})) +
                     cell(at(q, {"output_tokens"})) + cell(at(q, {"output_text"})));
      out += "<details><summary>" + name + ": " + std::to_string(rr.size()) +
             " requests</summary>\n" +
             table({"prompt", "rep", "e2e ms", "TTFT ms", "TPOT ms", "tokens", "output"}, rr) +
             "</details>\n";
    }
  }
  return out;
}

std::string load_tables(const json& r) {
  std::vector<std::string> rows;
  const json runs = has(r, "runs") && r["runs"].is_array() ? r["runs"] : json::array();
  for (const auto& run : runs) {
    std::string row = cell(at(run, {"concurrency"})) + cell(at(run, {"request_rate"})) +
                      cell(at(run, {"num_requests"})) + cell(at(run, {"completed"})) +
                      cell(at(run, {"requests_per_s"})) + cell(at(run, {"output_tok_s"})) +
                      cell(at(run, {"goodput_req_s"}));
    for (const char* m : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"})
      for (const char* s : {"median", "p90", "p99"}) row += cell(at(run, {m, s}));
    row += cell(at(run, {"tokens_from"})) + cell(at(run, {"errors"}));
    rows.push_back(row);
  }
  return "<h2>Runs</h2>\n" +
         table({"concurrency",   "rate req/s",  "requests", "completed", "req/s",    "out tok/s",
                "goodput req/s", "TTFT p50",    "TTFT p90", "TTFT p99",  "TPOT p50", "TPOT p90",
                "TPOT p99",      "ITL p50",     "ITL p90",  "ITL p99",   "E2E p50",  "E2E p90",
                "E2E p99",       "tokens from", "errors"},
               rows);
}

std::string read_chartjs(const std::string& explicit_path) {
  std::string path = explicit_path;
  if (path.empty())
    if (const char* env = std::getenv("SLLM_CHARTJS"); env && *env) path = env;
  if (path.empty()) path = SLLM_CHARTJS_PATH;
  std::ifstream f(path, std::ios::binary);
  SLLM_CHECK(f.good(),
             "Chart.js not found at '{}' (needed for the HTML report): install the Debian package "
             "libjs-chart.js or set SLLM_CHARTJS to a chart.umd.js / chart.min.js file",
             path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string js = ss.str();
  SLLM_CHECK(js.find("Chart") != std::string::npos, "'{}' does not look like Chart.js", path);
  // Inside <script> only "</script" could end the element early; in JS text "<\/" reads as "</".
  std::string lower = js;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (size_t p = lower.rfind("</script"); p != std::string::npos;
       p = p ? lower.rfind("</script", p - 1) : std::string::npos)
    js.replace(p, 2, "<\\/");
  return js;
}

// JSON inside <script type="application/json">: no '<', '>' or '&' can end or confuse it.
std::string script_json(const json& j) {
  const std::string s = j.dump(-1, ' ', true, json::error_handler_t::replace);
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '<')
      out += "\\u003c";
    else if (c == '>')
      out += "\\u003e";
    else if (c == '&')
      out += "\\u0026";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::vector<std::string> bench_html_charts(const json& r) {
  std::vector<std::string> ids;
  const std::string kind =
      has(r, "kind") && r["kind"].is_string() ? r["kind"].get<std::string>() : "";
  if (kind == "load") {
    if (has(r, "runs") && r["runs"].is_array() && !r["runs"].empty()) {
      ids.push_back("load-latency");
      ids.push_back("load-throughput");
    }
    return ids;
  }
  if (any_model(r, [](const json& m) { return has(m, "requests") || has(m, "latency_ms"); }))
    ids.push_back("latency");
  if (any_model(r, [](const json& m) { return has(m, "prefill_tok_s") || has(m, "decode_tok_s"); }))
    ids.push_back("tok-s");
  if (any_model(r, [](const json& m) { return has(m, "sweep") && !m["sweep"].empty(); })) {
    ids.push_back("sweep-throughput");
    ids.push_back("sweep-latency");
  }
  if (any_model(r, [](const json& m) { return has(m, "quality") && has(m, "decode_tok_s"); }))
    ids.push_back("quality-speed");
  return ids;
}

std::string render_bench_html(const json& result, const std::string& chartjs_path) {
  SLLM_CHECK(result.is_object() && has(result, "kind"),
             "bench result: expected a JSON object with \"kind\" (offline or load)");
  const std::string kind = text(result["kind"]);
  SLLM_CHECK(kind == "offline" || kind == "load",
             "bench result: unknown kind '{}' (expected offline or load)", kind);
  const std::string chartjs = read_chartjs(chartjs_path);
  const auto charts = bench_html_charts(result);

  std::string title = kind == "load" ? "sllm bench: server load" : "sllm bench: model comparison";
  if (kind == "load" && has(result, "url")) title += " — " + text(result["url"]);
  std::string h = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" +
                  xml_escape(title) + "</title>\n<style>" + kBenchHtmlStyle + "</style></head>\n";
  h += fmt::format("<body data-kind=\"{}\" data-charts-expected=\"{}\">\n<h1>{}</h1>\n", kind,
                   charts.size(), xml_escape(title));
  h += "<div class=\"charts\">\n";
  for (const auto& id : charts)
    h += "<div class=\"chart\"><canvas id=\"chart-" + id + "\" data-chart=\"" + id +
         "\" width=\"640\" height=\"360\"></canvas></div>\n";
  h += "</div>\n";
  h += kind == "load" ? load_tables(result) : offline_tables(result);
  if (has(result, "settings") && result["settings"].is_object())
    h += "<h2>Settings</h2>\n" + kv_table(result["settings"]);
  if (has(result, "provenance") && result["provenance"].is_object())
    h += "<h2>Provenance</h2>\n" + kv_table(result["provenance"]);
  h += "<script type=\"application/json\" id=\"bench-data\">" + script_json(result) +
       "</script>\n<script>" + chartjs + "</script>\n<script>" + kBenchHtmlScript +
       "</script>\n</body></html>\n";
  return h;
}

}  // namespace sllm::apps
