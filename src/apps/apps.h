// One recipe per job. Each declares its options (core/options.h: keys, defaults, help, flags),
// takes a resolved config (defaults <- file <- command line) and returns the process exit code;
// errors are thrown as sllm::Error.
#pragma once

#include <nlohmann/json.hpp>

#include "core/options.h"

namespace sllm::apps {

options::Table generate_options();
int run_generate(const nlohmann::json& cfg);

options::Table chat_options();
int run_chat(const nlohmann::json& cfg);

options::Table tokenize_options();
int run_tokenize(const nlohmann::json& cfg);

options::Table eval_options();
int run_eval(const nlohmann::json& cfg);

options::Table info_options();
int run_info(const nlohmann::json& cfg);

options::Table convert_options();
int run_convert(const nlohmann::json& cfg);

options::Table merge_options();
int run_merge(const nlohmann::json& cfg);

options::Table sft_options();
int run_sft(const nlohmann::json& cfg);

options::Table qlora_options();
int run_qlora(const nlohmann::json& cfg);

options::Table distill_options();
int run_distill(const nlohmann::json& cfg);

options::Table quantize_options();
int run_quantize(const nlohmann::json& cfg);

options::Table bench_options();
int run_bench(const nlohmann::json& cfg);

options::Table serve_options();
int run_serve(const nlohmann::json& cfg);

}  // namespace sllm::apps
