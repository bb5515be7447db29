// Admin routes: LoRA adapters loaded and unloaded while the server runs (vLLM's
// /v1/load_lora_adapter and /v1/unload_lora_adapter), when the app allows it.
#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "core/log.h"
#include "serve/routes.h"

namespace sllm::serve {

using nlohmann::json;

namespace {

// {"lora_name": string, "lora_path": string (load only)}.
std::pair<std::string, std::string> parse_body(const std::string& body, bool want_path) {
  const json j = json::parse(body, nullptr, false);
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
  auto str = [&](const char* key) {
    if (!j.contains(key) || !j[key].is_string() || j[key].get<std::string>().empty())
      throw ApiError(400, fmt::format("'{}' is required (a non-empty string)", key), key);
    return j[key].get<std::string>();
  };
  return {str("lora_name"), want_path ? str("lora_path") : std::string()};
}

void check_allowed(const State& st) {
  if (!st.load_adapter)
    throw ApiError(404,
                   "loading adapters at run time is off: start the server with "
                   "--allow-adapter-loading (and --api-key, since it reads paths on the server)");
  if (st.phase != Phase::ready) throw ApiError(503, "the model is loading");
}

}  // namespace

void add_admin_routes(httplib::Server& http, State& st) {
  http.Post("/v1/load_lora_adapter", [&st](const httplib::Request& req, httplib::Response& res) {
    guarded(Api::openai, res, [&] {
      check_allowed(st);
      const auto [name, dir] = parse_body(req.body, true);
      std::lock_guard load(st.load_mu);
      if (name == st.opt.model_name)
        throw ApiError(400, fmt::format("'{}' is the base model's name; pick another", name),
                       "lora_name");
      for (const auto& [n, id] : st.adapter_list())
        if (n == name)
          throw ApiError(400, fmt::format("an adapter named '{}' is already loaded", name),
                         "lora_name");
      int32_t id = 0;
      try {
        id = st.load_adapter(dir);
      } catch (const Error& e) {
        throw ApiError(400, fmt::format("cannot load adapter '{}': {}", name, e.what()),
                       "lora_path");
      }
      {
        std::lock_guard lk(st.adapters_mu);
        st.adapters.emplace_back(name, id);
      }
      log::info("loaded adapter '{}' from {} (adapter {})", name, dir, id);
      res.set_content(fmt::format("Success: LoRA adapter '{}' added successfully.", name),
                      "text/plain");
    });
  });
  http.Post("/v1/unload_lora_adapter", [&st](const httplib::Request& req, httplib::Response& res) {
    guarded(Api::openai, res, [&] {
      check_allowed(st);
      const std::string name = parse_body(req.body, false).first;
      std::lock_guard lk(st.adapters_mu);
      auto& a = st.adapters;
      const auto it =
          std::find_if(a.begin(), a.end(), [&](const auto& e) { return e.first == name; });
      if (it == a.end())
        throw ApiError(404, fmt::format("no adapter named '{}' is loaded", name), "lora_name");
      // New requests can no longer name it; running ones finish with it (its weights stay).
      a.erase(it);
      log::info("unloaded adapter '{}'", name);
      res.set_content(fmt::format("Success: LoRA adapter '{}' removed successfully.", name),
                      "text/plain");
    });
  });
}

}  // namespace sllm::serve
