// sllm merge: base model + LoRA adapter -> one dense Hugging Face directory (W += scale * B A).
#include <iostream>

#include "apps/apps.h"
#include "apps/common.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "lora/lora.h"

namespace sllm::apps {

options::Table merge_options() {
  return options::join(
      {model_group().table(), {{"out", nullptr, "output directory (must not exist)", "-o,--out"}}});
}

int run_merge(const nlohmann::json& cfg) {
  SLLM_CHECK(cfg["adapter"].is_string(), "give the adapter directory with --adapter DIR");
  SLLM_CHECK(cfg["out"].is_string(), "give the output directory with --out DIR");
  auto m = load_from_config(cfg);
  m.model = lora::merge(*m.model);
  const auto dtype = load::parse_dtype(config::get<std::string>(cfg, "dtype"));
  const std::string out = cfg["out"].get<std::string>();
  load::save_hf_dir(m, out, dtype);
  std::cout << "merged " << cfg["adapter"].get<std::string>() << " into " << out << " ("
            << config::get<std::string>(cfg, "dtype") << ")\n";
  return 0;
}

}  // namespace sllm::apps
