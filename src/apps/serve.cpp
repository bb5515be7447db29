// sllm serve: an OpenAI- and TGI-compatible HTTP server over one continuous-batching engine.
#include <pthread.h>

#include <csignal>
#include <filesystem>
#include <mutex>

#include "apps/apps.h"
#include "apps/common.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "io/atomic_write.h"
#include "lora/lora.h"
#include "serve/server.h"
#include "serve/worker.h"

namespace sllm::apps {

options::Table serve_options() {
  return options::join(
      {model_group().table(),
       engine_group().table(),
       speculative_table(),
       {{"serve.host", "127.0.0.1", "address to listen on (0.0.0.0: every interface)", "--host"},
        {"serve.port", 8080, "TCP port (0: any free port, printed at start)", "--port"},
        {"serve.api_key", nullptr,
         "require 'Authorization: Bearer <key>' on every route but /health", "--api-key"},
        {"serve.model_name", nullptr,
         "model id clients send and /v1/models lists (default: the model file's name)",
         "--served-model-name"},
        {"serve.max_input_tokens", 0, "prompt tokens at most (0: max_total_tokens - 1)",
         "--max-input-tokens"},
        {"serve.max_total_tokens", 0, "prompt + generated tokens at most (0: the context)",
         "--max-total-tokens"},
        {"serve.max_waiting", 64, "requests queued for the engine at most; more get 429",
         "--max-waiting"},
        {"serve.timeout", 600.0, "seconds a request may take before it is cancelled (0: none)",
         "--timeout"},
        {"serve.max_body_bytes", 1048576, "request body size limit (413 above)",
         "--max-body-bytes"},
        {"serve.http_threads", 128, "HTTP worker threads (each open stream holds one)",
         "--http-threads"},
        {"serve.shutdown_grace", 30.0,
         "seconds in-flight requests may finish after SIGTERM/SIGINT before they are cancelled",
         "--shutdown-grace"},
        {"serve.max_stop", 4, "stop sequences per request at most"},
        {"serve.lora_modules", nlohmann::json::array(),
         "LoRA adapter served by name, NAME=DIR (PEFT layout; repeatable): requests pick it with "
         "the model field (OpenAI) or adapter_id (TGI) and share batches with the base model",
         "--lora-modules"},
        {"serve.allow_adapter_loading", false,
         "let clients load and unload LoRA adapters by path (POST /v1/load_lora_adapter, "
         "/v1/unload_lora_adapter); use with --api-key",
         "--allow-adapter-loading"},
        {"serve.chat_template_file", nullptr,
         "Jinja chat template to render chats with instead of the model's (e.g. one that offers "
         "tools)",
         "--chat-template-file"}}});
}

namespace {
std::string default_model_name(const std::string& path) {
  std::filesystem::path p(path);
  while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
  const std::string name = p.filename().string();
  return p.extension() == ".gguf" ? p.stem().string() : name;
}
// serve.lora_modules: NAME=DIR entries, names unique and other than the model's.
std::vector<std::pair<std::string, std::string>> served_adapters(const nlohmann::json& cfg,
                                                                 const std::string& model_name) {
  std::vector<std::pair<std::string, std::string>> out;
  const auto& list = cfg["serve"]["lora_modules"];
  SLLM_CHECK(list.is_array(), "serve.lora_modules must be a list of NAME=DIR");
  for (const auto& e : list) {
    const std::string s = e.is_string() ? e.get<std::string>() : "";
    const auto eq = s.find('=');
    SLLM_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < s.size(),
               "--lora-modules '{}': expected NAME=DIR (e.g. support=runs/support/adapter)",
               e.is_string() ? s : e.dump());
    std::string name = s.substr(0, eq), dir = s.substr(eq + 1);
    SLLM_CHECK(name != model_name,
               "--lora-modules '{}': the name is the base model's; pick another", s);
    for (const auto& [n, d] : out)
      SLLM_CHECK(n != name, "--lora-modules: the name '{}' is given twice", name);
    out.emplace_back(std::move(name), std::move(dir));
  }
  return out;
}
}  // namespace

int run_serve(const nlohmann::json& cfg) {
  // SIGTERM/SIGINT are taken by sigwait below; block them before any thread starts so no other
  // thread dies of them. A vanished client must not kill the process with SIGPIPE.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  SLLM_CHECK(cfg["model"].is_string(),
             "no model given: pass --model <file.gguf | hf-directory> (run scripts/setup.sh for "
             "the default model, models/SmolLM2-135M-Instruct.Q4_1.gguf)");
  serve::ServerOptions so;
  so.host = config::get<std::string>(cfg, "serve.host");
  const auto port = config::get<int64_t>(cfg, "serve.port");
  SLLM_CHECK(port >= 0 && port <= 65535, "serve.port must be in [0, 65535], got {}", port);
  so.port = static_cast<int>(port);
  if (cfg["serve"]["api_key"].is_string()) so.api_key = cfg["serve"]["api_key"].get<std::string>();
  so.model_name = cfg["serve"]["model_name"].is_string()
                      ? cfg["serve"]["model_name"].get<std::string>()
                      : default_model_name(cfg["model"].get<std::string>());
  const auto served = served_adapters(cfg, so.model_name);  // checked before the model loads
  so.timeout_s = config::get<double>(cfg, "serve.timeout");
  const auto body = config::get<int64_t>(cfg, "serve.max_body_bytes");
  const auto threads = config::get<int64_t>(cfg, "serve.http_threads");
  const auto waiting = config::get<int64_t>(cfg, "serve.max_waiting");
  so.max_stop = config::get<int64_t>(cfg, "serve.max_stop");
  SLLM_CHECK(body > 0 && threads > 0 && waiting >= 0 && so.timeout_s >= 0 && so.max_stop >= 0,
             "serve.max_body_bytes and serve.http_threads must be > 0, serve.max_waiting, "
             "serve.timeout and serve.max_stop >= 0");
  so.max_body_bytes = static_cast<size_t>(body);
  so.http_threads = static_cast<int>(threads);
  const auto eo = engine_options(cfg);
  so.max_n = eo.max_seqs;

  serve::Metrics metrics;
  serve::Server server(so, metrics);
  server.start();  // /health answers 503 while the model loads

  auto m = load_from_config(cfg);
  const int64_t context = eo.context > 0 ? eo.context : m.model->config().max_position;
  int64_t max_total = config::get<int64_t>(cfg, "serve.max_total_tokens");
  if (max_total == 0) max_total = context;
  SLLM_CHECK(max_total >= 2 && max_total <= context,
             "serve.max_total_tokens is {} but must be in [2, {}] (the context): lower it or "
             "raise --ctx",
             max_total, context);
  int64_t max_input = config::get<int64_t>(cfg, "serve.max_input_tokens");
  if (max_input == 0) max_input = max_total - 1;
  SLLM_CHECK(max_input >= 1 && max_input < max_total,
             "serve.max_input_tokens is {} but must be in [1, {}] (max_total_tokens - 1)",
             max_input, max_total - 1);

  // The model with every served adapter so far (runtime loads add to it under mu).
  struct Served {
    std::mutex mu;
    std::shared_ptr<const model::LlamaModel> model;
    int32_t next_id = 1;
  };
  auto live = std::make_shared<Served>();
  live->model = m.model;
  for (const auto& [name, dir] : served) {
    live->model = lora::add_served_adapter(*live->model, dir, live->next_id);
    server.add_adapter(name, live->next_id++);
    log::info("serving adapter '{}' from {}", name, dir);
  }
  serve::Worker worker(live->model, m.tokenizer, eo, waiting, metrics, speculative_options(cfg));
  if (config::get<bool>(cfg, "serve.allow_adapter_loading"))
    server.allow_adapter_loading([live, &worker](const std::string& dir) {
      std::lock_guard lk(live->mu);
      auto next = lora::add_served_adapter(*live->model, dir, live->next_id);
      live->model = next;
      worker.replace_model(std::move(next));
      return live->next_id++;
    });
  const auto tok = m.tokenizer;
  std::string tpl_text = tok->chat_template;
  const auto& tpl_file = cfg["serve"]["chat_template_file"];
  if (tpl_file.is_string()) tpl_text = io::read_file(tpl_file.get<std::string>());
  const auto tpl = tok::detect_chat_template(*tok, tpl_text);
  SLLM_CHECK(!tpl_file.is_string() || tpl.jinja,
             "--chat-template-file {}: the template does not compile (the warning above says "
             "where); fix it or leave the option out",
             tpl_file.dump());
  serve::Encoders enc;
  enc.text = [tok](const std::string& s) { return encode_prompt(*tok, s, false, ""); };
  enc.chat = [tok, tpl](const std::vector<tok::ChatMessage>& msgs) {
    return encode_chat(*tok, tpl, msgs);
  };
  enc.chat_json = [tok, tpl](const nlohmann::ordered_json& msgs,
                             const nlohmann::ordered_json& tools) {
    return encode_chat(*tok, tpl, msgs, tools);
  };
  enc.tool_calls =
      tpl.jinja ? serve::detect_tool_call_format(tpl_text) : serve::ToolCallFormat::none;
  log::info("chat template: {}; tool calls: {}",
            tpl_text == tok->chat_template ? "the model's" : "from --chat-template-file",
            serve::to_string(enc.tool_calls));
  const nlohmann::json info = {{"model_dtype", cfg["dtype"]},
                               {"model_device_type", cfg["device"]},
                               {"version", "0.1.0"},
                               {"max_waiting_requests", waiting}};
  server.ready(tok, enc, worker, info, max_input, max_total);
  log::info(
      "serving {} as '{}' on http://{}:{} (max_total_tokens {}, max_input_tokens {}, "
      "max_seqs {})",
      m.display_name, so.model_name, so.host, server.port(), max_total, max_input, eo.max_seqs);

  int sig = 0;
  sigwait(&sigs, &sig);
  log::info("{}: no new requests; finishing the running ones (up to {} s)",
            sig == SIGTERM ? "SIGTERM" : "SIGINT",
            config::get<double>(cfg, "serve.shutdown_grace"));
  server.shutdown(config::get<double>(cfg, "serve.shutdown_grace"));
  log::info("stopped");
  return 0;
}

}  // namespace sllm::apps
