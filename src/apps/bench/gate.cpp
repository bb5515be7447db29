// The regression gate: this run against an earlier --json report of the same prompts.
#include <fmt/format.h>

#include <map>

#include "apps/bench/bench.h"

namespace sllm::apps::bench {

using nlohmann::json;

namespace {

std::string clip(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (o.size() >= 40) return o + "...";
    o += c == '\n' ? ' ' : c;
  }
  return o;
}

// Outputs of the first measured rep, by prompt index.
std::map<int64_t, std::string> first_outputs(const json& m) {
  std::map<int64_t, std::string> out;
  int64_t rep = -1;
  for (const auto& r : m["requests"]) {
    if (rep < 0) rep = r["rep"].get<int64_t>();
    if (r["rep"].get<int64_t>() == rep)
      out[r["prompt_index"].get<int64_t>()] = r["output_text"].get<std::string>();
  }
  return out;
}

double num(const json& m, const char* a, const char* b = nullptr) {
  const json* v = m.contains(a) ? &m[a] : nullptr;
  if (v && b) v = v->is_object() && v->contains(b) ? &(*v)[b] : nullptr;
  return v && v->is_number() ? v->get<double>() : std::nan("");
}

}  // namespace

std::vector<std::string> gate(const json& base, const json& report, bool quality, bool speed,
                              double tol) {
  std::vector<std::string> out;
  if (base.value("kind", "") != "offline" || !base.contains("models"))
    return {"the baseline is not an offline `sllm bench --json` report"};
  const std::string pct = fmt::format("{:g}%", tol * 100);
  if (quality)
    for (const char* k : {"prompt_set", "prompts", "max_new_tokens", "ignore_eos"})
      if (base["settings"].value(k, json()) != report["settings"].value(k, json()))
        out.push_back(
            fmt::format("settings differ from the baseline: {} was {}, now {} (greedy "
                        "outputs cannot be compared)",
                        k, base["settings"].value(k, json()).dump(),
                        report["settings"].value(k, json()).dump()));
  std::map<std::string, const json*> now;
  for (const auto& m : report["models"]) now[m["name"].get<std::string>()] = &m;
  for (const auto& b : base["models"]) {
    const std::string name = b["name"].get<std::string>();
    if (!b["error"].is_null()) continue;  // nothing to compare against
    const auto it = now.find(name);
    if (it == now.end()) {
      out.push_back(name + ": not in this run");
      continue;
    }
    const json& m = *it->second;
    if (!m["error"].is_null()) {
      out.push_back(name + ": failed: " + m["error"].get<std::string>());
      continue;
    }
    if (quality) {
      const auto old_o = first_outputs(b), new_o = first_outputs(m);
      int changed = 0;
      for (const auto& [i, text] : old_o) {
        const auto n = new_o.find(i);
        if (n == new_o.end() || n->second == text) continue;
        if (++changed <= 5)
          out.push_back(fmt::format("{}: greedy output of prompt {} changed: \"{}\" -> \"{}\"",
                                    name, i + 1, clip(text), clip(n->second)));
      }
      if (changed > 5)
        out.push_back(fmt::format("{}: ... {} more changed outputs", name, changed - 5));
      const double op = num(b, "quality", "ppl"), np = num(m, "quality", "ppl");
      if (op > 0 && np > op * (1 + tol))
        out.push_back(fmt::format("{}: perplexity {:.4f} -> {:.4f} (+{:.1f}%, tolerance {})", name,
                                  op, np, 100 * (np / op - 1), pct));
      const double oe = num(b, "quality", "exact_match"), ne = num(m, "quality", "exact_match");
      if (oe > 0 && ne < oe * (1 - tol))
        out.push_back(
            fmt::format("{}: exact match {:.1f}% -> {:.1f}% (tolerance {})", name, oe, ne, pct));
    }
    if (speed) {
      const double od = num(b, "decode_tok_s", "mean"), nd = num(m, "decode_tok_s", "mean");
      if (od > 0 && nd < od * (1 - tol))
        out.push_back(fmt::format("{}: decode {:.1f} -> {:.1f} tok/s (-{:.1f}%, tolerance {})",
                                  name, od, nd, 100 * (1 - nd / od), pct));
      const double ol = num(b, "latency_ms", "p50"), nl = num(m, "latency_ms", "p50");
      if (ol > 0 && nl > ol * (1 + tol))
        out.push_back(fmt::format("{}: p50 latency {:.1f} -> {:.1f} ms (+{:.1f}%, tolerance {})",
                                  name, ol, nl, 100 * (nl / ol - 1), pct));
    }
  }
  return out;
}

}  // namespace sllm::apps::bench
