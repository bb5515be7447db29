#include "apps/bench_load_client.h"

#include <httplib.h>

#include <chrono>
#include <thread>

#include "core/error.h"
#include "core/timer.h"

namespace sllm::apps::load {

using nlohmann::json;

Api parse_api(const std::string& name) {
  if (name == "openai") return Api::OpenAI;
  if (name == "tgi") return Api::Tgi;
  SLLM_FAIL("load.api: unknown API '{}': use openai (OpenAI-compatible servers) or tgi", name);
}

const char* api_name(Api api) { return api == Api::OpenAI ? "openai" : "tgi"; }

Url parse_url(const std::string& url) {
  const auto scheme = url.find("://");
  SLLM_CHECK(scheme != std::string::npos &&
                 (url.compare(0, scheme, "http") == 0 || url.compare(0, scheme, "https") == 0),
             "load.url: '{}' is not an http(s) URL; give e.g. --url http://127.0.0.1:8080", url);
  const auto slash = url.find('/', scheme + 3);
  Url u;
  u.origin = url.substr(0, slash);
  SLLM_CHECK(u.origin.size() > scheme + 3, "load.url: '{}' has no host", url);
  if (slash != std::string::npos) u.prefix = url.substr(slash);
  while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  return u;
}

std::string request_path(const RequestSpec& spec) {
  if (spec.api == Api::Tgi) return spec.stream ? "/generate_stream" : "/generate";
  return spec.chat ? "/v1/chat/completions" : "/v1/completions";
}

std::string request_body(const RequestSpec& spec, const std::string& prompt) {
  json b;
  if (spec.api == Api::Tgi) {
    b = {{"inputs", prompt},
         {"parameters", {{"max_new_tokens", spec.max_tokens}, {"details", true}}}};
  } else {
    b = {{"model", spec.model},
         {"max_tokens", spec.max_tokens},
         {"temperature", 0.0},
         {"stream", spec.stream}};
    if (spec.chat)
      b["messages"] = json::array({{{"role", "user"}, {"content", prompt}}});
    else
      b["prompt"] = prompt;
    if (spec.stream && spec.include_usage) b["stream_options"] = {{"include_usage", true}};
  }
  return b.dump(-1, ' ', false, json::error_handler_t::replace);
}

// ---- server-sent events ----

std::vector<std::string> SseSplitter::feed(std::string_view bytes) {
  std::vector<std::string> out;
  buf_.append(bytes);
  size_t start = 0;
  for (size_t nl; (nl = buf_.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view l(buf_.data() + start, nl - start);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    line(l, out);
  }
  buf_.erase(0, start);
  return out;
}

std::optional<std::string> SseSplitter::flush() {
  std::vector<std::string> out;
  if (!buf_.empty()) line(buf_, out), buf_.clear();
  line("", out);
  if (out.empty()) return std::nullopt;
  return out.front();
}

void SseSplitter::line(std::string_view l, std::vector<std::string>& out) {
  if (l.empty()) {  // blank line: the event is complete
    if (has_data_) out.push_back(std::move(data_));
    data_.clear();
    has_data_ = false;
    return;
  }
  if (l.substr(0, 5) != "data:") return;  // comment or another field
  l.remove_prefix(5);
  if (!l.empty() && l.front() == ' ') l.remove_prefix(1);
  if (has_data_) data_ += '\n';
  data_.append(l);
  has_data_ = true;
}

namespace {

std::string clip(const std::string& s, size_t n = 120) {
  std::string out = s.size() > n ? s.substr(0, n) + "..." : s;
  for (auto& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  return out;
}

void fail(RequestResult& r, const char* reason, std::string detail) {
  r.ok = false;
  r.error = reason;
  r.detail = std::move(detail);
}

// An error object in a body or event: OpenAI {"error": {...}}, TGI {"error": "..."}.
bool server_error(const json& j, RequestResult& r) {
  if (!j.is_object() || !j.contains("error") || j["error"].is_null()) return false;
  fail(r, "server_error", "server error: " + clip(j["error"].dump()));
  return true;
}

std::optional<int64_t> int_at(const json& j, const char* a, const char* b) {
  if (j.is_object() && j.contains(a) && j[a].is_object() && j[a].contains(b) &&
      j[a][b].is_number_integer())
    return j[a][b].get<int64_t>();
  return std::nullopt;
}

// Text of an OpenAI chunk or body choice: completions "text", chat "delta"/"message" content.
std::string openai_text(const json& choice) {
  if (!choice.is_object()) return {};
  if (choice.contains("text") && choice["text"].is_string()) return choice["text"];
  for (const char* k : {"delta", "message"})
    if (choice.contains(k) && choice[k].is_object() && choice[k].contains("content") &&
        choice[k]["content"].is_string())
      return choice[k]["content"];
  return {};
}

}  // namespace

bool ResponseDecoder::event(const std::string& data, double now_ms, RequestResult& r) {
  if (api_ == Api::OpenAI && data == "[DONE]") {
    done_ = true;
    return true;
  }
  json j = json::parse(data, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    fail(r, "bad_response", "unparsable stream event: " + clip(data));
    return false;
  }
  if (server_error(j, r)) return false;
  std::string text;
  if (api_ == Api::OpenAI) {
    if (!j.contains("choices") || !j["choices"].is_array()) {
      fail(r, "bad_response", "stream event without choices: " + clip(data));
      return false;
    }
    for (const auto& c : j["choices"]) text += openai_text(c);
    if (auto n = int_at(j, "usage", "completion_tokens")) r.usage_tokens = n;
  } else {
    if (!j.contains("token") || !j["token"].is_object()) {
      fail(r, "bad_response", "stream event without a token: " + clip(data));
      return false;
    }
    // One event per generated token; a special one (end of sequence) has no text but still
    // took a decode step, so every event counts.
    if (auto n = int_at(j, "details", "generated_tokens")) r.usage_tokens = n;
    // The last event carries the whole text: the stream is complete.
    if (j.contains("generated_text") && j["generated_text"].is_string()) done_ = true;
    r.token_ms.push_back(now_ms);
    ++r.chunks;
    return true;
  }
  if (!text.empty()) {
    r.token_ms.push_back(now_ms);
    ++r.chunks;
  }
  return true;
}

void ResponseDecoder::finish_stream(RequestResult& r) const {
  if (!r.error.empty()) return;
  if (!done_) {
    fail(r, "incomplete",
         api_ == Api::OpenAI ? "stream ended without data: [DONE]"
                             : "stream ended without the final event (generated_text)");
    return;
  }
  r.ok = true;
}

void ResponseDecoder::body(const std::string& body, RequestResult& r) const {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return fail(r, "bad_response", "response is not JSON: " + clip(body));
  if (api_ == Api::Tgi && j.is_array() && !j.empty()) j = j[0];  // batched TGI answer
  if (!j.is_object())
    return fail(r, "bad_response", "response is not a JSON object: " + clip(body));
  if (server_error(j, r)) return;
  if (api_ == Api::OpenAI) {
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty())
      return fail(r, "bad_response", "response without choices: " + clip(body));
    r.usage_tokens = int_at(j, "usage", "completion_tokens");
  } else {
    if (!j.contains("generated_text") || !j["generated_text"].is_string())
      return fail(r, "bad_response", "response without generated_text: " + clip(body));
    r.usage_tokens = int_at(j, "details", "generated_tokens");
  }
  r.ok = true;
}

// ---- the request ----

RequestResult send_request(const Url& url, const RequestSpec& spec, const std::string& prompt) {
  RequestResult r;
  httplib::Client cli(url.origin);
  const auto to = std::chrono::duration<double>(spec.timeout_s);
  cli.set_connection_timeout(std::chrono::duration_cast<std::chrono::microseconds>(to));
  cli.set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(to));
  cli.set_write_timeout(std::chrono::duration_cast<std::chrono::microseconds>(to));

  httplib::Request req;
  req.method = "POST";
  req.path = url.prefix + request_path(spec);
  req.body = request_body(spec, prompt);
  req.set_header("Content-Type", "application/json");
  req.set_header("Accept", spec.stream ? "text/event-stream" : "application/json");

  Timer t;
  bool timed_out = false;
  int status = 0;
  std::string error_body;  // an HTTP error's body, for the detail line
  std::string body;
  SseSplitter sse;
  ResponseDecoder dec(spec.api);
  bool stop = false;  // the decoder saw an error
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (t.seconds() > spec.timeout_s) {
      timed_out = true;
      return false;
    }
    if (status != 200) {
      if (error_body.size() < 512) error_body.append(data, std::min<size_t>(n, 512));
      return true;
    }
    if (!spec.stream) {
      body.append(data, n);
      return true;
    }
    for (auto& ev : sse.feed(std::string_view(data, n)))
      if (!stop && !dec.event(ev, t.ms(), r)) stop = true;
    return !stop;
  };
  auto res = cli.send(req);
  r.e2e_ms = t.ms();
  if (stop) return r;  // the decoder recorded the reason
  if (timed_out || (res.error() == httplib::Error::Read && t.seconds() >= spec.timeout_s * 0.99)) {
    fail(r, "timeout", "no complete answer within " + std::to_string(spec.timeout_s) + " s");
    return r;
  }
  if (!res) {
    const auto e = res.error();
    const bool conn = e == httplib::Error::Connection || e == httplib::Error::ConnectionTimeout;
    if (e == httplib::Error::ConnectionTimeout)
      fail(r, "timeout", "connection timed out");
    else
      fail(r, conn ? "connection" : "bad_response", "HTTP client: " + httplib::to_string(e));
    return r;
  }
  if (status != 200) {
    fail(r, ("http_" + std::to_string(status)).c_str(),
         "HTTP " + std::to_string(status) + ": " + clip(error_body));
    return r;
  }
  if (spec.stream) {
    if (auto rest = sse.flush(); rest && !dec.event(*rest, t.ms(), r)) return r;
    dec.finish_stream(r);
  } else {
    dec.body(body, r);
  }
  return r;
}

json wait_ready(const Url& url, const std::string& url_text, double wait_s) {
  Timer t;
  std::string last = "no answer";
  while (true) {
    for (const char* path : {"/v1/models", "/health"}) {
      httplib::Client cli(url.origin);
      cli.set_connection_timeout(std::chrono::seconds(2));
      cli.set_read_timeout(std::chrono::seconds(5));
      auto res = cli.Get(url.prefix + path);
      if (!res) {
        last = "GET " + std::string(path) + ": " + httplib::to_string(res.error());
        continue;
      }
      if (res->status == 200) {
        json j = json::parse(res->body, nullptr, false);
        return std::string(path) == "/v1/models" && !j.is_discarded() ? j : json();
      }
      last = "GET " + std::string(path) + ": HTTP " + std::to_string(res->status);
    }
    if (t.seconds() >= wait_s) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  SLLM_FAIL(
      "server at {} is not ready after {:.0f} s ({}): start it, check --url, or wait longer with "
      "load.ready_timeout",
      url_text, wait_s, last);
}

}  // namespace sllm::apps::load
