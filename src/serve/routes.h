// Internals shared by the route files (server.cpp, openai.cpp, tgi.cpp).
#pragma once

#include <httplib.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/plan/json_constraint.h"
#include "serve/server.h"

namespace sllm::serve {

enum class Phase { loading, ready, draining };

struct State {
  ServerOptions opt;
  Metrics& metrics;
  std::atomic<Phase> phase{Phase::loading};
  std::shared_ptr<const tok::Tokenizer> tok;
  std::shared_ptr<const engine::JsonVocab> json_vocab;  // for response_format json_object
  Encoders enc;
  Worker* worker = nullptr;
  nlohmann::json info;
  std::atomic<int64_t> in_flight{0};  // generation requests being answered
  ParseLimits limits() const { return {opt.max_total_tokens, opt.max_n, opt.max_stop}; }
  // Served LoRA adapters (name, engine adapter id); changed at run time by the admin routes.
  mutable std::mutex adapters_mu;
  std::vector<std::pair<std::string, int32_t>> adapters;
  AdapterLoader load_adapter;  // unset: runtime loading is off
  std::mutex load_mu;          // one load at a time
  std::vector<std::pair<std::string, int32_t>> adapter_list() const {
    std::lock_guard lk(adapters_mu);
    return adapters;
  }
};

// What the access-log line of the current request reports (set on the connection's thread).
struct Access {
  std::string id;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  Clock::time_point start = Clock::now();
};
Access& access();

std::string new_id(const char* prefix);
int64_t unix_time();

void send_json(httplib::Response& res, int status, const nlohmann::json& j);
void send_error(httplib::Response& res, Api api, const ApiError& e);
// Runs a handler, turning ApiError into its response, any other error into a 500.
void guarded(Api api, httplib::Response& res, const std::function<void()>& body);

// The served adapter a request names (OpenAI model, TGI adapter_id): 0 for the base model;
// ApiError 404 (OpenAI) / 422 (TGI) for a name nothing is served under.
int32_t resolve_adapter(const State& st, const GenRequest& r, Api api);

// Tokenizes, checks the token limits, queues the job (n copies of the request).
std::shared_ptr<Job> submit_job(State& st, const GenRequest& r, Api api);
// Blocks until the job is done; ApiError on timeout, refusal or shutdown. A client that closes
// req's connection meanwhile cancels the job.
void wait_job(State& st, const httplib::Request& req, Job& job, Api api);

// Streams a job as server-sent events. on_pieces(choice, new pieces, finished) returns the
// events to write (complete "data: ...\n\n" text); on_end() the closing ones. A failed write
// or a vanished client cancels the job at once.
using PieceWriter = std::function<std::string(size_t choice, std::vector<Piece>& fresh, bool fin)>;
void stream_job(State& st, httplib::Response& res, std::shared_ptr<Job> job, Api api,
                PieceWriter on_pieces, std::function<std::string()> on_end);

void add_openai_routes(httplib::Server& http, State& st);
void add_tgi_routes(httplib::Server& http, State& st);
void add_admin_routes(httplib::Server& http, State& st);

}  // namespace sllm::serve
