// Request bodies of the HTTP API (OpenAI completions and chat completions, TGI generate) parsed
// and validated into one GenRequest, without sockets or a model: every client mistake becomes an
// ApiError with the status and the parameter it concerns.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampler.h"
#include "tokenizer/chat_template.h"

namespace sllm::serve {

// Which API a request came through: it decides the error shape and the defaults.
enum class Api { openai, tgi };

struct ApiError : std::exception {
  ApiError(int status, std::string message, std::string param = {}, std::string type = {})
      : status(status),
        message(std::move(message)),
        param(std::move(param)),
        type(std::move(type)) {}
  const char* what() const noexcept override { return message.c_str(); }

  int status;
  std::string message, param;
  std::string type;  // "" = derived from the status
};

// The error body: OpenAI's {"error":{message,type,param,code}} or TGI's {error,error_type}.
nlohmann::json error_body(Api api, const ApiError& e);

enum class Kind { completion, chat, tgi };

struct GenRequest {
  Kind kind = Kind::completion;
  std::string model;                       // OpenAI "model" ("" for TGI)
  std::string prompt;                      // completion / TGI inputs
  std::vector<tok::ChatMessage> messages;  // chat
  engine::SamplingParams params;
  bool max_tokens_given = false;  // false: up to max_total_tokens (chat) or the API's default
  bool seed_given = false;
  bool stream = false;
  bool include_usage = false;     // stream_options.include_usage
  int64_t n = 1;                  // OpenAI choices
  bool details = false;           // TGI details
  bool return_full_text = false;  // TGI: prompt + generated text
  // Log-probabilities: -1 off, else each token's with this many alternatives (OpenAI chat
  // logprobs + top_logprobs, completions logprobs, TGI top_n_tokens with details or a stream).
  int32_t logprobs = -1;
  bool json_object = false;  // OpenAI response_format {"type": "json_object"}
  // Chat with tools: the names of the request's tools, tool_choice ("auto" or "none"), and,
  // when tools are offered or the conversation holds tool turns, the messages and tools as the
  // request wrote them (for the model's Jinja template; tools_json null under "none").
  std::vector<std::string> tools;
  std::string tool_choice = "auto";
  nlohmann::ordered_json messages_json, tools_json;
  bool tool_calls_wanted() const { return !tools.empty() && tool_choice != "none"; }
  std::string adapter_id;  // TGI: a served LoRA adapter's name ("" = the base model)
  int32_t adapter = 0;     // the served adapter resolved from model / adapter_id (0 = none)
};

// Static bounds checked while parsing (the token counts are checked after tokenization).
struct ParseLimits {
  int64_t max_total_tokens = 2048;  // prompt + generated
  int64_t max_n = 16;
  int64_t max_stop = 4;  // stop sequences per request
};

// body: the raw request body. Throws ApiError (400 for OpenAI, 422 for TGI validation, 400 for
// malformed JSON) on anything a client got wrong. stream_route: /generate_stream (TGI).
GenRequest parse_completion(std::string_view body, const ParseLimits& lim);
GenRequest parse_chat(std::string_view body, const ParseLimits& lim);
GenRequest parse_tgi(std::string_view body, const ParseLimits& lim, bool stream_route);

// TGI /tokenize: the "inputs" string.
std::string parse_tokenize(std::string_view body);

// Random seed for requests that give none.
uint64_t fresh_seed();

}  // namespace sllm::serve
