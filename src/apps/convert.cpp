// sllm convert: GGUF or HF directory -> Hugging Face directory (safetensors + tokenizer).
#include <iostream>

#include "apps/apps.h"
#include "apps/common.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"

namespace sllm::apps {

options::Table convert_options() {
  return options::join(
      {model_group().table(), {{"out", nullptr, "output directory (must not exist)", "-o,--out"}}});
}

int run_convert(const nlohmann::json& cfg) {
  SLLM_CHECK(cfg["out"].is_string(), "give the output directory with --out DIR");
  auto m = load_from_config(cfg);
  const auto dtype = load::parse_dtype(config::get<std::string>(cfg, "dtype"));
  const std::string out = cfg["out"].get<std::string>();
  load::SaveOptions so;
  so.dequantize = config::get<bool>(cfg, "dequantize");  // model_group's key, read here too
  load::save_hf_dir(m, out, dtype, so);
  log::info("wrote Hugging Face directory {} ({})", out, config::get<std::string>(cfg, "dtype"));
  return 0;
}

}  // namespace sllm::apps
