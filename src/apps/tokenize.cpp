// sllm tokenize: ids and pieces of a text, as the model's tokenizer sees it.
#include <iostream>

#include "apps/apps.h"
#include "apps/common.h"
#include "core/config.h"
#include "core/error.h"

namespace sllm::apps {

options::Table tokenize_options() {
  return options::join(
      {model_group().table(),
       {{"text", nullptr, "text to tokenize", "-t,--text"},
        {"json", false, "JSON output", "--json"},
        {"special", true, "parse special tokens written in the text", "--special"}}});
}

int run_tokenize(const nlohmann::json& cfg) {
  SLLM_CHECK(cfg["text"].is_string(), "give the text to tokenize with --text");
  // The tokenizer alone: no weight is read, so a model of any size tokenizes at once.
  const auto tokenizer = load_tokenizer_from_config(cfg);
  const auto& t = *tokenizer;
  const auto ids = t.encode(cfg["text"].get<std::string>(), config::get<bool>(cfg, "special"));
  if (config::get<bool>(cfg, "json")) {
    nlohmann::json pieces = nlohmann::json::array();
    for (auto id : ids) pieces.push_back(t.piece(id));
    nlohmann::json j = {{"ids", ids}, {"pieces", pieces}, {"count", ids.size()}};
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    return 0;
  }
  for (auto id : ids) std::cout << id << "\t" << t.piece(id) << "\n";
  std::cout << ids.size() << " tokens\n";
  return 0;
}

}  // namespace sllm::apps
