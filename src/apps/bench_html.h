// Self-contained HTML report of a `sllm bench` result (offline model comparison or server load):
// provenance, tables and Chart.js charts, with Chart.js inlined so the file needs no network.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace sllm::apps {

// The report of a result whose "kind" is "offline" or "load". Any key may be absent: only what
// is there is drawn. Chart.js is read from chartjs_path, else $SLLM_CHARTJS, else the file
// found when the project was configured; sllm::Error when it cannot be read.
std::string render_bench_html(const nlohmann::json& result, const std::string& chartjs_path = "");

// The ids of the charts the report of `result` holds (one <canvas> each). When all of them are
// drawn, the report's script sets data-charts-rendered="<count>" on <body>.
std::vector<std::string> bench_html_charts(const nlohmann::json& result);

}  // namespace sllm::apps
