// sllm generate: one prompt (streamed) or a JSONL batch of prompts (continuous batching).
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "apps/apps.h"
#include "apps/common.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "io/atomic_write.h"

namespace sllm::apps {

options::Table generate_options() {
  return options::join(
      {model_group().table(),
       engine_group().table(),
       sampling_group().table(),
       speculative_table(),
       {{"prompt", nullptr, "prompt text", "-p,--prompt"},
        {"prompt_file", nullptr, "text file (one prompt) or .jsonl (a batch)", "-f,--prompt-file"},
        {"system", nullptr, "system prompt (with the chat template)", "--system"},
        {"chat_template", "auto",
         "auto | true | false: wrap the prompt in the model's chat template", "--chat-template"},
        {"output", nullptr, "write JSONL results here", "-o,--output"},
        {"json", false, "print results as JSON", "--json"}}});
}

namespace {
std::vector<std::string> read_prompts(const std::string& path) {
  const std::string body = io::read_file(path);
  const bool jsonl = path.size() >= 6 && path.substr(path.size() - 6) == ".jsonl";
  if (!jsonl) return {body};
  std::vector<std::string> prompts;
  size_t start = 0, line = 0;
  while (start < body.size()) {
    size_t end = body.find('\n', start);
    if (end == std::string::npos) end = body.size();
    ++line;
    std::string_view s(body.data() + start, end - start);
    start = end + 1;
    if (s.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(s);
    } catch (const nlohmann::json::exception& e) {
      SLLM_FAIL("{}:{}: invalid JSON ({})", path, line, e.what());
    }
    if (j.is_string()) {
      prompts.push_back(j.get<std::string>());
    } else {
      SLLM_CHECK(j.is_object() && j.contains("prompt") && j["prompt"].is_string(),
                 "{}:{}: expected a string or an object with a \"prompt\" string", path, line);
      prompts.push_back(j["prompt"].get<std::string>());
    }
  }
  SLLM_CHECK(!prompts.empty(), "{}: no prompts in the file", path);
  return prompts;
}
}  // namespace

int run_generate(const nlohmann::json& cfg) {
  const bool has_prompt = cfg["prompt"].is_string(), has_file = cfg["prompt_file"].is_string();
  SLLM_CHECK(has_prompt != has_file, "give exactly one of --prompt or --prompt-file");
  auto m = load_from_config(cfg);
  const auto prompts = has_prompt ? std::vector<std::string>{cfg["prompt"].get<std::string>()}
                                  : read_prompts(cfg["prompt_file"].get<std::string>());
  const bool chat = use_chat_template(*m.tokenizer, cfg["chat_template"]);
  const std::string system = cfg["system"].is_string() ? cfg["system"].get<std::string>() : "";
  const bool json_out = config::get<bool>(cfg, "json") || prompts.size() > 1;
  const auto sp = sampling_params(cfg);

  engine::Engine eng(m.model, m.tokenizer, engine_options(cfg));
  const auto spec = speculative_options(cfg);
  if (spec) {
    try {
      eng.enable_speculation(*spec);
    } catch (const Error& e) {
      const auto& sp = cfg["speculative"];
      SLLM_FAIL("{} ({})", e.what(),
                sp["draft_model"].is_string()
                    ? "--draft-model " + sp["draft_model"].get<std::string>()
                    : std::string("--draft ngram"));
    }
  }
  std::vector<engine::Request> reqs;
  for (const auto& p : prompts) {
    engine::Request r;
    r.prompt = encode_prompt(*m.tokenizer, p, chat, system);
    r.params = sp;
    if (!json_out)
      r.on_text = [](const std::string& s) {
        std::fwrite(s.data(), 1, s.size(), stdout);
        std::fflush(stdout);
      };
    reqs.push_back(std::move(r));
  }
  Timer t;
  auto results = eng.generate(std::move(reqs));
  const double secs = t.seconds();
  std::string out;
  for (size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    if (!json_out) continue;
    nlohmann::json j = {{"prompt", prompts[i]},
                        {"text", r.text},
                        {"tokens", r.tokens},
                        {"finish_reason", std::string(engine::to_string(r.finish_reason))},
                        {"prompt_tokens", r.prompt_tokens},
                        {"completion_tokens", r.tokens.size()},
                        {"first_token_ms", r.first_token_ms},
                        {"total_ms", r.total_ms}};
    if (spec) {
      j["draft_steps"] = r.draft_steps;
      j["draft_proposed"] = r.draft_proposed;
      j["draft_accepted"] = r.draft_accepted;
    }
    out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  if (!json_out) {
    std::cout << "\n" << std::flush;
  } else if (cfg["output"].is_string()) {
    io::write_file_atomic(cfg["output"].get<std::string>(), out);
    log::info("wrote {} results to {}", results.size(), cfg["output"].get<std::string>());
  } else {
    std::cout << out;
  }
  const auto& st = eng.stats();
  log::info(
      "{} prompt(s): prefill {} tok at {:.1f} tok/s, decode {} tok at {:.1f} tok/s, {:.2f} s total",
      results.size(), st.prefill_tokens, st.prefill_s > 0 ? st.prefill_tokens / st.prefill_s : 0.0,
      st.decode_tokens, st.decode_s > 0 ? st.decode_tokens / st.decode_s : 0.0, secs);
  if (spec)
    log::info(
        "speculative ({}, k={}): {} drafted, {} accepted ({:.1f}%), {:.2f} accepted per step, "
        "{:.2f} s drafting",
        spec->draft_model ? "draft model" : "n-gram", spec->num_tokens, st.draft_proposed,
        st.draft_accepted, 100 * st.acceptance_rate(), st.mean_accepted(), st.draft_s);
  return 0;
}

}  // namespace sllm::apps
