// sllm chat: interactive multi-turn conversation with the model's chat template.
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "apps/apps.h"
#include "apps/common.h"
#include "core/error.h"
#include "tokenizer/chat_template.h"

namespace sllm::apps {

options::Table chat_options() {
  return options::join({model_group().table(),
                        engine_group().table(),
                        sampling_group().table(),
                        {{"system", nullptr, "system prompt", "--system"}}});
}

int run_chat(const nlohmann::json& cfg) {
  auto m = load_from_config(cfg);
  const auto tpl = tok::detect_chat_template(*m.tokenizer);
  const auto sp = sampling_params(cfg);
  engine::Engine eng(m.model, m.tokenizer, engine_options(cfg));
  std::vector<tok::ChatMessage> history;
  if (cfg["system"].is_string()) history.push_back({"system", cfg["system"].get<std::string>()});
  const bool tty = ::isatty(STDIN_FILENO);
  if (tty)
    std::fprintf(stderr, "chat with %s (%s template). /reset clears, /exit quits.\n",
                 m.display_name.c_str(), tok::to_string(tpl.format).c_str());
  std::string line;
  while (true) {
    if (tty) std::fprintf(stderr, "\n> ");
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      history.erase(std::remove_if(history.begin(), history.end(),
                                   [](const auto& h) { return h.role != "system"; }),
                    history.end());
      continue;
    }
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    history.push_back({"user", line});
    engine::Request r;
    r.prompt = encode_chat(*m.tokenizer, tpl, history);
    r.params = sp;
    r.on_text = [](const std::string& s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    };
    auto res = eng.generate({std::move(r)});
    std::fputs("\n", stdout);
    std::fflush(stdout);
    history.push_back({"assistant", res[0].text});
  }
  return 0;
}

}  // namespace sllm::apps
