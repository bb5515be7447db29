// One request of `sllm bench load` against an OpenAI-compatible or TGI server: the request body,
// the server-sent-events stream parsed into token arrival times, and the failure reasons a
// load run counts. Parsing is separate from the socket so it is testable on its own.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sllm::apps::load {

enum class Api { OpenAI, Tgi };
Api parse_api(const std::string& name);  // "openai" | "tgi", else sllm::Error
const char* api_name(Api api);

// http[s]://host[:port][/prefix] split for httplib: scheme_host_port + path prefix.
struct Url {
  std::string origin;  // "http://127.0.0.1:8080"
  std::string prefix;  // "" or "/api" (no trailing '/')
};
Url parse_url(const std::string& url);  // sllm::Error for anything that is not http(s)://host

struct RequestSpec {
  Api api = Api::OpenAI;
  bool chat = false;  // OpenAI: /v1/chat/completions instead of /v1/completions
  bool stream = true;
  bool include_usage = true;  // OpenAI streams: ask for the usage chunk (stream_options)
  std::string model;
  int max_tokens = 64;
  double timeout_s = 60;  // whole request, first byte to last
};

// Path (below the URL prefix) and JSON body of one request.
std::string request_path(const RequestSpec& spec);
std::string request_body(const RequestSpec& spec, const std::string& prompt);

// What one request measured. Times are milliseconds from sending the request.
struct RequestResult {
  bool ok = false;
  std::string error;   // reason when !ok: connection, timeout, http_<status>, bad_response,
                       // server_error, incomplete
  std::string detail;  // one line for the log (first failure of each reason is printed)
  double e2e_ms = 0;
  std::vector<double> token_ms;         // arrival of each chunk carrying text (streaming)
  std::optional<int64_t> usage_tokens;  // generated tokens as the server reported them
  int64_t chunks = 0;                   // chunks carrying text
  int64_t output_tokens() const { return usage_tokens ? *usage_tokens : chunks; }
};

// Splits a byte stream into server-sent events and hands each event's data to the decoder.
// Accepts \n and \r\n line ends; joins multi-line data with '\n'; ignores comments and other
// fields (event:, id:, retry:).
class SseSplitter {
 public:
  // Returns the data payloads of every event completed by this chunk.
  std::vector<std::string> feed(std::string_view bytes);
  // Data of an event left unterminated when the stream closed (TGI ends without a blank line).
  std::optional<std::string> flush();

 private:
  std::string buf_;
  std::string data_;
  bool has_data_ = false;
  void line(std::string_view l, std::vector<std::string>& out);
};

// Turns event payloads (streaming) or a whole body (not streaming) into a RequestResult.
class ResponseDecoder {
 public:
  explicit ResponseDecoder(Api api) : api_(api) {}
  // One streamed event's data at time now_ms. False = stop reading (error recorded in r).
  bool event(const std::string& data, double now_ms, RequestResult& r);
  // After the stream closed: marks r ok, or incomplete when the end marker never came.
  void finish_stream(RequestResult& r) const;
  // A complete non-streamed body.
  void body(const std::string& body, RequestResult& r) const;

 private:
  Api api_;
  bool done_ = false;
};

// Sends one request and measures it. Never throws: every failure is a reason in the result.
RequestResult send_request(const Url& url, const RequestSpec& spec, const std::string& prompt);

// Waits up to wait_s for the server to answer GET /health or /v1/models with 200. Returns the
// /v1/models body when that answered (for the default model name); throws sllm::Error naming the
// URL and the last failure otherwise.
nlohmann::json wait_ready(const Url& url, const std::string& url_text, double wait_s);

}  // namespace sllm::apps::load
