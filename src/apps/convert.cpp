// sllm convert: GGUF or HF directory -> Hugging Face directory (safetensors + tokenizer), or ->
// a GGUF file that llama.cpp loads (--to gguf --type f32|f16|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k|q5_k|
// q6_k|q4_k_m).
#include <iostream>

#include "apps/apps.h"
#include "apps/common.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "load/gguf_export.h"

namespace sllm::apps {

options::Table convert_options() {
  return options::join(
      {model_group().table(),
       {{"out", nullptr, "output directory (--to hf) or .gguf file (--to gguf); must not exist",
         "-o,--out"},
        {"to", "hf", "output format: hf (Hugging Face directory) or gguf (llama.cpp)", "--to"},
        {"type", "f16",
         "--to gguf: tensor type: f32, f16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k or "
         "q4_k_m (llama.cpp's mix)",
         "--type"}}});
}

int run_convert(const nlohmann::json& cfg) {
  SLLM_CHECK(cfg["out"].is_string(), "give the output with --out DIR (or --out FILE.gguf)");
  const std::string out = cfg["out"].get<std::string>();
  const auto to = config::get<std::string>(cfg, "to");
  SLLM_CHECK(to == "hf" || to == "gguf", "unknown --to '{}': use hf or gguf", to);
  if (to == "gguf") {
    const auto type = config::get<std::string>(cfg, "type");
    load::check_gguf_export(out, type);  // before the model is loaded
    auto m = load_from_config(cfg);
    load::save_gguf(m, out, type);
    log::info("wrote GGUF file {} ({})", out, type);
    return 0;
  }
  SLLM_CHECK(config::get<std::string>(cfg, "type") == "f16",
             "--type applies to --to gguf; a Hugging Face directory takes --dtype (fp32, bf16, "
             "fp16) and --dequantize");
  auto m = load_from_config(cfg);
  const auto dtype = load::parse_dtype(config::get<std::string>(cfg, "dtype"));
  load::SaveOptions so;
  so.dequantize = config::get<bool>(cfg, "dequantize");  // model_group's key, read here too
  load::save_hf_dir(m, out, dtype, so);
  log::info("wrote Hugging Face directory {} ({})", out, config::get<std::string>(cfg, "dtype"));
  return 0;
}

}  // namespace sllm::apps
