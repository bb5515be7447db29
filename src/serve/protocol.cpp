#include "serve/protocol.h"

#include <fmt/format.h>

#include <limits>
#include <optional>
#include <random>
#include <set>

namespace sllm::serve {

using nlohmann::json;

namespace {

std::string default_type(Api api, int status) {
  if (api == Api::tgi) {
    if (status == 429) return "overloaded";
    if (status == 503) return "unhealthy";
    if (status >= 500) return "generation";
    return "validation";
  }
  switch (status) {
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

json parse_object(std::string_view body, Api api) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    // e.what() names the byte offset and the problem (bad syntax, ill-formed UTF-8, ...).
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!j.is_object())
    throw ApiError(api == Api::tgi ? 422 : 400, "the request body must be a JSON object");
  return j;
}

// Typed access to the fields of one JSON object; every key read or explicitly tolerated is
// recorded so finish() can reject the ones nobody knows.
class Fields {
 public:
  Fields(const json& j, Api api, std::string prefix = {})
      : j_(j), api_(api), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
    const std::string name = prefix_ + key;
    throw ApiError(
        api_ == Api::tgi ? 422 : 400,
        api_ == Api::tgi ? fmt::format("`{}` {}", name, msg) : fmt::format("'{}' {}", name, msg),
        name);
  }

  // nullptr when absent or null.
  const json* get(const std::string& key) {
    known_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }

  std::optional<double> number(const std::string& key, double lo, double hi, bool lo_open,
                               bool hi_open) {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) fail(key, fmt::format("must be a number, got {}", v->type_name()));
    const double x = v->get<double>();
    if ((lo_open ? x <= lo : x < lo) || (hi_open ? x >= hi : x > hi))
      fail(key, fmt::format("must be in {}{}, {}{}, got {}", lo_open ? "(" : "[", lo, hi,
                            hi_open ? ")" : "]", x));
    return x;
  }

  std::optional<int64_t> integer(const std::string& key, int64_t lo, int64_t hi) {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer())
      fail(key, fmt::format("must be an integer, got {}",
                            v->is_number() ? "a fractional or out-of-range number"
                                           : std::string(v->type_name())));
    if (v->is_number_unsigned() &&
        v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(key, fmt::format("must be at most {}", hi));
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) fail(key, fmt::format("must be in [{}, {}], got {}", lo, hi, x));
    return x;
  }

  std::optional<bool> boolean(const std::string& key) {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) fail(key, fmt::format("must be a boolean, got {}", v->type_name()));
    return v->get<bool>();
  }

  std::optional<std::string> string(const std::string& key) {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(key, fmt::format("must be a string, got {}", v->type_name()));
    return v->get<std::string>();
  }

  // A parameter this server does not implement: accepted only at its neutral value.
  template <class Neutral>
  void unsupported(const std::string& key, Neutral is_neutral) {
    const json* v = get(key);
    if (v && !is_neutral(*v)) fail(key, "is not supported by this server; leave it out");
  }
  void ignore(const std::string& key) { known_.insert(key); }

  void finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!known_.count(it.key()))
        fail(it.key(), "is not a recognized parameter; check its spelling or leave it out");
  }

 private:
  const json& j_;
  Api api_;
  std::string prefix_;
  std::set<std::string> known_;
};

auto is_false = [](const json& v) { return v.is_boolean() && !v.get<bool>(); };
auto is_one = [](const json& v) { return v.is_number_integer() && v.get<int64_t>() == 1; };
auto is_empty = [](const json& v) { return v.empty(); };

std::vector<std::string> stop_list(Fields& f, const std::string& key, int64_t max_stop) {
  const json* v = f.get(key);
  std::vector<std::string> out;
  if (!v) return out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    for (const auto& s : *v) {
      if (!s.is_string()) f.fail(key, "must be a string or a list of strings");
      out.push_back(s.get<std::string>());
    }
  } else {
    f.fail(key, "must be a string or a list of strings");
  }
  if (static_cast<int64_t>(out.size()) > max_stop)
    f.fail(key, fmt::format("has {} sequences; at most {} are allowed", out.size(), max_stop));
  for (const auto& s : out)
    if (s.empty()) f.fail(key, "must not contain an empty string");
  return out;
}

// The parameters OpenAI's two endpoints share.
void openai_common(Fields& f, GenRequest& r, const ParseLimits& lim) {
  auto model = f.string("model");
  if (!model) f.fail("model", "is required: ask GET /v1/models for the served model's id");
  r.model = *model;
  r.params.temperature = f.number("temperature", 0, 2, false, false).value_or(1.0);
  r.params.top_p = f.number("top_p", 0, 1, true, false).value_or(1.0);
  r.params.top_k = f.integer("top_k", 0, std::numeric_limits<int32_t>::max()).value_or(0);
  r.params.min_p = f.number("min_p", 0, 1, false, true).value_or(0.0);
  r.params.repetition_penalty = f.number("repetition_penalty", 0, 100, true, false).value_or(1.0);
  r.params.ignore_eos = f.boolean("ignore_eos").value_or(false);
  if (auto s = f.integer("seed", std::numeric_limits<int64_t>::min(),
                         std::numeric_limits<int64_t>::max())) {
    r.params.seed = static_cast<uint64_t>(*s);
    r.seed_given = true;
  }
  r.n = f.integer("n", 1, lim.max_n).value_or(1);
  r.stream = f.boolean("stream").value_or(false);
  if (const json* so = f.get("stream_options")) {
    if (!r.stream) f.fail("stream_options", "is only allowed when 'stream' is true");
    if (!so->is_object()) f.fail("stream_options", "must be an object");
    Fields g(*so, Api::openai, "stream_options.");
    r.include_usage = g.boolean("include_usage").value_or(false);
    g.finish();
  }
  r.params.stop = stop_list(f, "stop", lim.max_stop);
  r.params.presence_penalty = f.number("presence_penalty", -2, 2, false, false).value_or(0.0);
  r.params.frequency_penalty = f.number("frequency_penalty", -2, 2, false, false).value_or(0.0);
  f.unsupported("logit_bias", is_empty);
  f.unsupported("best_of", is_one);
  f.ignore("user");
}

void max_tokens(Fields& f, GenRequest& r, const std::string& key, const ParseLimits& lim) {
  if (auto m = f.integer(key, 1, lim.max_total_tokens - 1)) {
    r.params.max_new_tokens = *m;
    r.max_tokens_given = true;
  }
}

// Assistant tool_calls: [{"id", "type": "function", "function": {"name", "arguments"}}], the
// arguments a JSON text of an object (as the API returns them).
void check_tool_calls(Fields& g, const json& calls) {
  if (!calls.is_array()) g.fail("tool_calls", "must be a list of tool calls");
  for (size_t j = 0; j < calls.size(); ++j) {
    const json& call = calls[j];
    const std::string key = fmt::format("tool_calls[{}]", j);
    if (!call.is_object()) g.fail(key, "must be an object");
    const json* fn = call.contains("function") ? &call["function"] : nullptr;
    if (call.value("type", "function") != "function" || !fn || !fn->is_object() ||
        !fn->contains("name") || !(*fn)["name"].is_string() || !fn->contains("arguments") ||
        !(*fn)["arguments"].is_string())
      g.fail(key,
             "must be {\"id\", \"type\": \"function\", \"function\": {\"name\": string, "
             "\"arguments\": string}}");
    const auto args = json::parse((*fn)["arguments"].get<std::string>(), nullptr, false);
    if (!args.is_object())
      g.fail(key + ".function.arguments", "must be the JSON text of an object");
  }
}

// tools: [{"type": "function", "function": {"name", "description", "parameters"}}] and
// tool_choice none | auto (the model decides; "required" and a named function would need the
// output constrained to a call, which this server does not do).
void parse_tools(Fields& f, GenRequest& r) {
  if (const json* tools = f.get("tools")) {
    if (!tools->is_array()) f.fail("tools", "must be a list of {\"type\": \"function\", ...}");
    for (size_t i = 0; i < tools->size(); ++i) {
      const json& t = (*tools)[i];
      const std::string key = fmt::format("tools[{}]", i);
      if (!t.is_object()) f.fail(key, "must be an object");
      Fields g(t, Api::openai, key + ".");
      if (g.string("type") != "function") g.fail("type", "must be \"function\"");
      const json* fn = g.get("function");
      if (!fn || !fn->is_object()) g.fail("function", "must be an object with a \"name\"");
      Fields h(*fn, Api::openai, key + ".function.");
      const auto name = h.string("name");
      if (!name || name->empty()) h.fail("name", "is required");
      h.string("description");
      if (const json* p = h.get("parameters"); p && !p->is_object())
        h.fail("parameters", "must be a JSON Schema object");
      h.boolean("strict");
      h.finish();
      g.finish();
      r.tools.push_back(*name);
    }
  }
  if (const json* c = f.get("tool_choice")) {
    if (!c->is_string() || !(*c == "none" || *c == "auto"))
      f.fail("tool_choice",
             "must be \"none\" or \"auto\" (\"required\" and a named function are not "
             "supported by this server)");
    r.tool_choice = c->get<std::string>();
  }
}

}  // namespace

json error_body(Api api, const ApiError& e) {
  const std::string type = e.type.empty() ? default_type(api, e.status) : e.type;
  if (api == Api::tgi) return {{"error", e.message}, {"error_type", type}};
  return {{"error",
           {{"message", e.message},
            {"type", type},
            {"param", e.param.empty() ? json(nullptr) : json(e.param)},
            {"code", e.status == 404 && e.param == "model" ? json("model_not_found") : json()}}}};
}

uint64_t fresh_seed() {
  static thread_local std::mt19937_64 gen{std::random_device{}()};
  return gen() >> 1;  // fits a signed 64-bit JSON integer
}

GenRequest parse_completion(std::string_view body, const ParseLimits& lim) {
  const json j = parse_object(body, Api::openai);
  Fields f(j, Api::openai);
  GenRequest r;
  r.kind = Kind::completion;
  r.params.max_new_tokens = 16;  // OpenAI's default for completions
  openai_common(f, r, lim);
  max_tokens(f, r, "max_tokens", lim);
  const json* p = f.get("prompt");
  if (!p) f.fail("prompt", "is required");
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
  if (!p->is_string())
    f.fail("prompt", "must be a string (a list of prompts or token ids is not supported)");
  r.prompt = p->get<std::string>();
  if (r.prompt.empty()) f.fail("prompt", "must not be empty");
  f.unsupported("echo", is_false);
  // The legacy integer; false (accepted before log-probabilities existed) means off.
  if (const json* v = f.get("logprobs"); !(v && is_false(*v)))
    if (auto n = f.integer("logprobs", 0, engine::kMaxTopLogprobs))
      r.logprobs = static_cast<int32_t>(*n);
  f.unsupported("suffix", [](const json& v) { return v.is_string() && v.empty(); });
  f.finish();
  return r;
}

GenRequest parse_chat(std::string_view body, const ParseLimits& lim) {
  const json j = parse_object(body, Api::openai);
  Fields f(j, Api::openai);
  GenRequest r;
  r.kind = Kind::chat;
  openai_common(f, r, lim);
  max_tokens(f, r, "max_tokens", lim);
  max_tokens(f, r, "max_completion_tokens", lim);
  const json* msgs = f.get("messages");
  if (!msgs || !msgs->is_array() || msgs->empty())
    f.fail("messages", "is required: a non-empty list of {\"role\", \"content\"} objects");
  bool tool_turns = false;  // tool results or assistant tool calls: the JSON renderer is needed
  for (size_t i = 0; i < msgs->size(); ++i) {
    const json& m = (*msgs)[i];
    const std::string key = fmt::format("messages[{}]", i);
    if (!m.is_object()) f.fail(key, "must be an object with \"role\" and \"content\"");
    Fields g(m, Api::openai, key + ".");
    auto role = g.string("role");
    if (!role || !(*role == "system" || *role == "developer" || *role == "user" ||
                   *role == "assistant" || *role == "tool"))
      g.fail("role", "must be one of system, developer, user, assistant, tool");
    if (*role == "tool") {
      tool_turns = true;
      if (!g.string("tool_call_id")) g.fail("tool_call_id", "is required in a tool message");
    }
    const json* calls = *role == "assistant" ? g.get("tool_calls") : nullptr;
    if (calls) {
      tool_turns = true;
      check_tool_calls(g, *calls);
    }
    std::string text;
    const json* c = g.get("content");
    if (!c && calls) {
      // an assistant turn of tool calls only
    } else if (c && c->is_string()) {
      text = c->get<std::string>();
    } else if (c && c->is_array()) {
      for (const auto& part : *c) {  // [{"type": "text", "text": ...}]
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
            !part["text"].is_string())
          g.fail("content", "parts must be {\"type\": \"text\", \"text\": string}");
        text += part["text"].get<std::string>();
      }
    } else {
      g.fail("content", "must be a string or a list of text parts");
    }
    g.ignore("name");
    g.finish();
    r.messages.push_back({*role == "developer" ? "system" : *role, text});
  }
  const bool logprobs = f.boolean("logprobs").value_or(false);
  const auto top = f.integer("top_logprobs", 0, engine::kMaxTopLogprobs).value_or(0);
  if (top > 0 && !logprobs) f.fail("top_logprobs", "needs 'logprobs' to be true");
  if (logprobs) r.logprobs = static_cast<int32_t>(top);
  parse_tools(f, r);
  if (tool_turns || !r.tools.empty()) {
    // Rendered from the request's own objects, in its key order (tojson keeps it).
    const auto ordered = nlohmann::ordered_json::parse(body);
    r.messages_json = ordered["messages"];
    if (!r.tools.empty() && r.tool_choice != "none") r.tools_json = ordered["tools"];
    for (auto& m : r.messages_json)  // templates read arguments as an object, as vLLM passes them
      if (m.contains("tool_calls"))
        for (auto& call : m["tool_calls"]) {
          auto& fn = call["function"];
          fn["arguments"] = nlohmann::ordered_json::parse(fn["arguments"].get<std::string>());
        }
  }
  if (const json* v = f.get("response_format")) {
    if (!v->is_object())
      f.fail("response_format", "must be an object such as {\"type\": \"json_object\"}");
    Fields g(*v, Api::openai, "response_format.");
    const auto type = g.string("type");
    if (type == "json_object") {
      r.json_object = true;
    } else if (type == "json_schema") {
      g.fail("type", "json_schema is not supported by this server; use json_object");
    } else if (type != "text") {
      g.fail("type", "must be text or json_object");
    }
    g.finish();
  }
  for (const char* k : {"parallel_tool_calls", "store", "metadata", "service_tier"}) f.ignore(k);
  f.finish();
  if (!r.max_tokens_given) r.params.max_new_tokens = lim.max_total_tokens;  // cut at admission
  return r;
}

GenRequest parse_tgi(std::string_view body, const ParseLimits& lim, bool stream_route) {
  const json j = parse_object(body, Api::tgi);
  Fields f(j, Api::tgi);
  GenRequest r;
  r.kind = Kind::tgi;
  auto inputs = f.string("inputs");
  if (!inputs || inputs->empty()) f.fail("inputs", "cannot be empty");
  r.prompt = *inputs;
  r.stream = f.boolean("stream").value_or(false) || stream_route;
  r.params.max_new_tokens = 100;  // TGI's default
  r.params.temperature = 0;
  int64_t top_n = 0;
  if (const json* p = f.get("parameters")) {
    if (!p->is_object()) f.fail("parameters", "must be an object");
    Fields g(*p, Api::tgi);
    const bool do_sample = g.boolean("do_sample").value_or(false);
    if (auto m = g.integer("max_new_tokens", 1, lim.max_total_tokens - 1)) {
      r.params.max_new_tokens = *m;
      r.max_tokens_given = true;
    }
    const auto temp = g.number("temperature", 0, 100, true, false);
    const auto top_k = g.integer("top_k", 1, std::numeric_limits<int32_t>::max());
    const auto top_p = g.number("top_p", 0, 1, true, true);
    // As TGI: a warper (temperature != 1, top_k, top_p) turns sampling on.
    if (do_sample || (temp && *temp != 1.0) || top_k || top_p) {
      r.params.temperature = temp.value_or(1.0);
      r.params.top_k = top_k.value_or(0);
      r.params.top_p = top_p.value_or(1.0);
    }
    r.params.repetition_penalty = g.number("repetition_penalty", 0, 100, true, false).value_or(1);
    if (auto s = g.integer("seed", 0, std::numeric_limits<int64_t>::max())) {
      r.params.seed = static_cast<uint64_t>(*s);
      r.seed_given = true;
    }
    r.params.stop = stop_list(g, "stop", lim.max_stop);
    r.details = g.boolean("details").value_or(false);
    r.return_full_text = g.boolean("return_full_text").value_or(false);
    r.params.frequency_penalty = g.number("frequency_penalty", -2, 2, false, false).value_or(0);
    g.unsupported("truncate", [](const json&) { return false; });
    g.unsupported("typical_p", [](const json& v) { return v.is_number() && v == 1.0; });
    g.unsupported("best_of", is_one);
    g.unsupported("watermark", is_false);
    g.unsupported("decoder_input_details", is_false);
    top_n = g.integer("top_n_tokens", 0, engine::kMaxTopLogprobs).value_or(0);
    g.unsupported("grammar", [](const json&) { return false; });
    r.adapter_id = g.string("adapter_id").value_or("");
    g.finish();
  }
  f.finish();
  // Token events always carry their log-probability, so a stream or details compute them.
  if (r.stream || r.details) r.logprobs = static_cast<int32_t>(top_n);
  return r;
}

std::string parse_tokenize(std::string_view body) {
  const json j = parse_object(body, Api::tgi);
  Fields f(j, Api::tgi);
  auto inputs = f.string("inputs");
  if (!inputs || inputs->empty()) f.fail("inputs", "cannot be empty");
  f.ignore("parameters");
  f.ignore("add_special_tokens");
  f.finish();
  return *inputs;
}

}  // namespace sllm::serve
