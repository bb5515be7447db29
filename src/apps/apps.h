// One recipe per job. Each takes a resolved config (defaults <- file <- command line)
// and returns the process exit code; errors are thrown as sllm::Error.
#pragma once

#include <nlohmann/json.hpp>

namespace sllm::apps {

nlohmann::json generate_defaults();
int run_generate(const nlohmann::json& cfg);

nlohmann::json chat_defaults();
int run_chat(const nlohmann::json& cfg);

nlohmann::json tokenize_defaults();
int run_tokenize(const nlohmann::json& cfg);

nlohmann::json eval_defaults();
int run_eval(const nlohmann::json& cfg);

nlohmann::json info_defaults();
int run_info(const nlohmann::json& cfg);

nlohmann::json convert_defaults();
int run_convert(const nlohmann::json& cfg);

nlohmann::json merge_defaults();
int run_merge(const nlohmann::json& cfg);

nlohmann::json sft_defaults();
int run_sft(const nlohmann::json& cfg);

nlohmann::json qlora_defaults();
int run_qlora(const nlohmann::json& cfg);

nlohmann::json quantize_defaults();
int run_quantize(const nlohmann::json& cfg);

}  // namespace sllm::apps
