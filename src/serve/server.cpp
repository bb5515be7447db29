#include "serve/server.h"

#include <fmt/format.h>

#include <cmath>
#include <random>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "serve/routes.h"

namespace sllm::serve {

using nlohmann::json;

Access& access() {
  static thread_local Access a;
  return a;
}

std::string new_id(const char* prefix) {
  static std::atomic<uint64_t> counter{std::random_device{}()};
  return fmt::format("{}{:016x}", prefix, counter.fetch_add(0x9E3779B97F4A7C15ull));
}

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

void send_error(httplib::Response& res, Api api, const ApiError& e) {
  send_json(res, e.status, error_body(api, e));
}

void guarded(Api api, httplib::Response& res, const std::function<void()>& body) {
  try {
    body();
  } catch (const ApiError& e) {
    send_error(res, api, e);
  } catch (const std::exception& e) {
    log::error("internal error: {}", e.what());
    send_error(res, api, ApiError(500, fmt::format("internal error: {}", e.what())));
  }
}

namespace {

Api api_of(const std::string& path) { return path.rfind("/v1/", 0) == 0 ? Api::openai : Api::tgi; }

void add_common_routes(httplib::Server& http, State& st) {
  http.Get("/health", [&st](const httplib::Request&, httplib::Response& res) {
    switch (st.phase.load()) {
      case Phase::ready:
        send_json(res, 200, json::object());
        return;
      case Phase::loading:
        send_error(res, Api::tgi, ApiError(503, "the model is loading", {}, "unhealthy"));
        return;
      case Phase::draining:
        send_error(res, Api::tgi, ApiError(503, "the server is shutting down", {}, "unhealthy"));
        return;
    }
  });
  http.Get("/metrics", [&st](const httplib::Request&, httplib::Response& res) {
    res.set_content(st.metrics.render(), "text/plain; version=0.0.4");
  });
  http.Get("/v1/models", [&st](const httplib::Request&, httplib::Response& res) {
    guarded(Api::openai, res, [&] {
      if (st.phase != Phase::ready) throw ApiError(503, "the model is loading");
      json data = json::array({{{"id", st.opt.model_name},
                                {"object", "model"},
                                {"created", unix_time()},
                                {"owned_by", "sllm"},
                                {"max_model_len", st.opt.max_total_tokens}}});
      for (const auto& [a, id] : st.adapter_list())  // served LoRA adapters, as vLLM lists them
        data.push_back({{"id", a},
                        {"object", "model"},
                        {"created", unix_time()},
                        {"owned_by", "sllm"},
                        {"parent", st.opt.model_name},
                        {"max_model_len", st.opt.max_total_tokens}});
      send_json(res, 200, {{"object", "list"}, {"data", std::move(data)}});
    });
  });
  http.Get("/info", [&st](const httplib::Request&, httplib::Response& res) {
    guarded(Api::tgi, res, [&] {
      if (st.phase != Phase::ready) throw ApiError(503, "the model is loading");
      json j = st.info;
      j["model_id"] = st.opt.model_name;
      j["model_sha"] = nullptr;
      j["model_pipeline_tag"] = "text-generation";
      j["max_concurrent_requests"] = st.worker->max_seqs();
      j["max_best_of"] = 1;
      j["max_stop_sequences"] = st.opt.max_stop;
      j["max_input_tokens"] = st.opt.max_input_tokens;
      j["max_input_length"] = st.opt.max_input_tokens;
      j["max_total_tokens"] = st.opt.max_total_tokens;
      j["max_batch_total_tokens"] = st.worker->kv_tokens();
      j["validation_workers"] = st.opt.http_threads;
      j["router"] = "sllm";
      j["sha"] = nullptr;
      j["docker_label"] = nullptr;
      send_json(res, 200, j);
    });
  });
}

}  // namespace

Server::Server(ServerOptions opts, Metrics& metrics)
    : st_(new State{std::move(opts), metrics}),  // aggregate with atomics: built in place
      http_(std::make_unique<httplib::Server>()) {
  auto& st = *st_;
  const int threads = std::max(4, st.opt.http_threads);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(st.opt.max_body_bytes);
  http_->set_read_timeout(30, 0);
  http_->set_write_timeout(30, 0);
  http_->set_pre_routing_handler([&st](const httplib::Request& req, httplib::Response& res) {
    access() = Access{};
    if (st.opt.api_key.empty() || req.path == "/health")
      return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + st.opt.api_key)
      return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, api_of(req.path),
               ApiError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'"));
    return httplib::Server::HandlerResponse::Handled;
  });
  // Bodies the router or the size limit refused get an error body of the route's API.
  http_->set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string msg = res.status == 404 ? fmt::format("no route {} {}", req.method, req.path)
                            : res.status == 413
                                ? "the request body is too large (see --max-body-bytes)"
                                : fmt::format("HTTP {}", res.status);
    send_error(res, api_of(req.path), ApiError(res.status, msg));
  });
  http_->set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        send_error(res, api_of(req.path), ApiError(500, "internal error: " + what));
      });
  http_->set_logger([&st](const httplib::Request& req, const httplib::Response& res) {
    auto& a = access();
    const double secs = std::chrono::duration<double>(Clock::now() - a.start).count();
    const bool known = req.path == "/" || req.path == "/health" || req.path == "/metrics" ||
                       req.path == "/info" || req.path == "/tokenize" || req.path == "/generate" ||
                       req.path == "/generate_stream" || req.path == "/v1/models" ||
                       req.path == "/v1/completions" || req.path == "/v1/chat/completions" ||
                       req.path == "/v1/load_lora_adapter" || req.path == "/v1/unload_lora_adapter";
    // Unknown paths share one label so scanners cannot grow the series without bound.
    const std::string route = known ? req.path : "other";
    st.metrics.inc("sllm_requests_total",
                   fmt::format("route=\"{}\",status=\"{}\"", route, res.status));
    if (req.path != "/metrics" && req.path != "/health")
      st.metrics.observe("sllm_request_duration_seconds", secs, fmt::format("route=\"{}\"", route));
    json line = {{"id", a.id},
                 {"method", req.method},
                 {"route", route},
                 {"status", res.status},
                 {"prompt_tokens", a.prompt_tokens},
                 {"completion_tokens", a.completion_tokens},
                 {"latency_ms", std::round(secs * 1e4) / 10}};
    log::info("{}", line.dump(-1, ' ', false, json::error_handler_t::replace));
    a = Access{};
  });
  add_common_routes(*http_, st);
  add_openai_routes(*http_, st);
  add_tgi_routes(*http_, st);
  add_admin_routes(*http_, st);
}

Server::~Server() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

void Server::start() {
  auto& o = st_->opt;
  const bool ok = o.port == 0 ? (o.port = http_->bind_to_any_port(o.host)) > 0
                              : http_->bind_to_port(o.host, o.port);
  SLLM_CHECK(ok,
             "cannot listen on {}:{}: the port is in use or the address is not local; pick "
             "another with --port / --host",
             o.host, o.port);
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  log::info("listening on http://{}:{}", o.host, o.port);
}

int Server::port() const { return st_->opt.port; }

void Server::add_adapter(const std::string& name, int32_t id) {
  std::lock_guard lk(st_->adapters_mu);
  st_->adapters.emplace_back(name, id);
}

void Server::allow_adapter_loading(AdapterLoader load) { st_->load_adapter = std::move(load); }

void Server::ready(std::shared_ptr<const tok::Tokenizer> tok, Encoders enc, Worker& worker,
                   json info, int64_t max_input_tokens, int64_t max_total_tokens) {
  st_->opt.max_input_tokens = max_input_tokens;
  st_->opt.max_total_tokens = max_total_tokens;
  st_->json_vocab = std::make_shared<const engine::JsonVocab>(*tok);
  st_->tok = std::move(tok);
  st_->enc = std::move(enc);
  st_->worker = &worker;
  st_->info = std::move(info);
  st_->phase = Phase::ready;
}

void Server::shutdown(double grace_s) {
  st_->phase = Phase::draining;
  if (st_->worker) {
    st_->worker->drain();
    const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                          std::chrono::duration<double>(grace_s));
    while (Clock::now() < until && (!st_->worker->idle() || st_->in_flight > 0))
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!st_->worker->idle()) {
      log::warn("cancelling the requests still running after {} s", grace_s);
      st_->worker->cancel_all();
    }
    // Let the handlers write their last bytes.
    const auto flush_until = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < flush_until && st_->in_flight > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace sllm::serve
