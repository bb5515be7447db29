// The HTTP server: OpenAI (/v1/completions, /v1/chat/completions, /v1/models) and TGI
// (/generate, /generate_stream, /, /info, /tokenize) routes over one Worker, plus /health and
// /metrics, Bearer auth, a JSON access log, limits and graceful shutdown. It listens before the
// model is loaded so /health can say 503 while loading.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "serve/metrics.h"
#include "serve/protocol.h"
#include "serve/tool_calls.h"
#include "serve/worker.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Server;
}

namespace sllm::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see Server::port)
  std::string api_key;
  std::string model_name;
  int64_t max_input_tokens = 0;  // prompt tokens
  int64_t max_total_tokens = 0;  // prompt + generated
  int64_t max_stop = 4;
  int64_t max_n = 16;
  double timeout_s = 600;
  size_t max_body_bytes = 1 << 20;
  int http_threads = 128;
};

// Builds a served LoRA adapter from a PEFT directory, hands the model with it to the engine and
// returns its adapter id; throws sllm::Error with the reason. Set: POST /v1/load_lora_adapter.
using AdapterLoader = std::function<int32_t(const std::string& dir)>;

// Prompt text / chat messages -> token ids (the chat template is the app's business).
struct Encoders {
  std::function<std::vector<int32_t>(const std::string&)> text;
  std::function<std::vector<int32_t>(const std::vector<tok::ChatMessage>&)> chat;
  // Chat with tools or tool turns: the request's messages and tools (null: none) as written.
  std::function<std::vector<int32_t>(const nlohmann::ordered_json&, const nlohmann::ordered_json&)>
      chat_json;
  ToolCallFormat tool_calls = ToolCallFormat::none;  // how the template's model writes calls
};

struct State;

class Server {
 public:
  Server(ServerOptions opts, Metrics& metrics);
  ~Server();

  // Binds the port (clear error if it cannot) and serves on a thread of its own.
  void start();
  int port() const;
  // The model is loaded: generation routes open and /health answers 200. info: extra /info
  // keys; the token limits, known once the model's context is, complete the options.
  // A served LoRA adapter: clients choose it by name (OpenAI model, TGI adapter_id).
  void add_adapter(const std::string& name, int32_t id);
  // Turns on loading adapters at run time (POST /v1/load_lora_adapter, /v1/unload_lora_adapter).
  void allow_adapter_loading(AdapterLoader load);
  void ready(std::shared_ptr<const tok::Tokenizer> tok, Encoders enc, Worker& worker,
             nlohmann::json info, int64_t max_input_tokens, int64_t max_total_tokens);
  // Graceful stop: refuse new requests (503), let in-flight ones finish for up to grace_s
  // seconds, cancel the rest, close the listener.
  void shutdown(double grace_s);

 private:
  std::unique_ptr<State> st_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
};

}  // namespace sllm::serve
