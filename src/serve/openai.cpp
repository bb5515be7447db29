// OpenAI routes: POST /v1/completions and /v1/chat/completions, plain or streamed (SSE ending
// with "data: [DONE]"), with the response shapes of the official API.
#include <fmt/format.h>

#include "serve/routes.h"

namespace sllm::serve {

using nlohmann::json;

namespace {

std::string finish_name(engine::FinishReason r) {
  return r == engine::FinishReason::length || r == engine::FinishReason::cancelled ? "length"
                                                                                   : "stop";
}

std::string sse(const json& j) {
  return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

json usage(const Job& job) {
  int64_t gen = 0;
  for (const auto& c : job.choices) gen += static_cast<int64_t>(c.result.tokens.size());
  const int64_t prompt =
      job.requests.empty() ? 0 : static_cast<int64_t>(job.requests[0].prompt.size());
  return {{"prompt_tokens", prompt}, {"completion_tokens", gen}, {"total_tokens", prompt + gen}};
}

// One token as OpenAI shows it: its text and its raw bytes (a token may hold part of a
// multi-byte character: its text is then replaced by U+FFFD when written).
json chat_token(const State& st, int32_t id, float logprob) {
  const std::string b = st.tok->token_bytes(id);
  json bytes = json::array();
  for (unsigned char c : b) bytes.push_back(static_cast<int>(c));
  return {{"token", st.tok->decode({id})}, {"logprob", logprob}, {"bytes", std::move(bytes)}};
}

// Chat: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
json chat_logprobs(const State& st, const std::vector<engine::TokenLogprob>& lps) {
  json content = json::array();
  for (const auto& lp : lps) {
    json e = chat_token(st, lp.token, lp.logprob);
    json top = json::array();
    for (const auto& [id, v] : lp.top) top.push_back(chat_token(st, id, v));
    e["top_logprobs"] = std::move(top);
    content.push_back(std::move(e));
  }
  return {{"content", std::move(content)}};
}

// Completions (legacy): {tokens, token_logprobs, top_logprobs: [{text: logprob}], text_offset};
// offset: the position of the first token in the generated text, advanced past the tokens.
json completion_logprobs(const State& st, const std::vector<engine::TokenLogprob>& lps,
                         size_t& offset) {
  json tokens = json::array(), values = json::array(), tops = json::array(),
       offsets = json::array();
  for (const auto& lp : lps) {
    const std::string text = st.tok->decode({lp.token});
    tokens.push_back(text);
    values.push_back(lp.logprob);
    json top = json::object();
    for (const auto& [id, v] : lp.top) top[st.tok->decode({id})] = v;
    tops.push_back(std::move(top));
    offsets.push_back(offset);
    offset += text.size();
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(values)},
          {"top_logprobs", std::move(tops)},
          {"text_offset", std::move(offsets)}};
}

// [{"id", "type": "function", "function": {"name", "arguments"}}] (stream deltas add "index").
json tool_calls_json(const std::vector<ToolCall>& calls) {
  json out = json::array();
  for (const auto& call : calls)
    out.push_back({{"id", new_id("call_")},
                   {"type", "function"},
                   {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
  return out;
}

// The assistant message of a finished answer: tool calls cut out when the request offered tools.
json answer_message(const State& st, const GenRequest& r, const engine::Result& res,
                    std::string& finish) {
  json msg = {{"role", "assistant"}, {"content", res.text}};
  if (!r.tool_calls_wanted()) return msg;
  auto a = parse_tool_calls(st.enc.tool_calls, res.text);
  if (a.calls.empty()) return msg;
  msg["content"] = a.content.empty() ? json(nullptr) : json(a.content);
  msg["tool_calls"] = tool_calls_json(a.calls);
  if (finish == "stop") finish = "tool_calls";
  return msg;
}

json logprobs_json(const State& st, bool chat, const std::vector<engine::TokenLogprob>& lps,
                   size_t& offset) {
  return chat ? chat_logprobs(st, lps) : completion_logprobs(st, lps, offset);
}

void handle(State& st, const httplib::Request& req, httplib::Response& res, bool chat) {
  guarded(Api::openai, res, [&] {
    const GenRequest r =
        chat ? parse_chat(req.body, st.limits()) : parse_completion(req.body, st.limits());
    if (st.phase == Phase::ready) (void)resolve_adapter(st, r, Api::openai);  // 404 early
    if (r.tool_calls_wanted() && st.enc.tool_calls == ToolCallFormat::none)
      throw ApiError(400,
                     "this model's chat template does not offer tools to the model; start the "
                     "server with --chat-template-file FILE holding a template that does, or "
                     "leave 'tools' out",
                     "tools");
    const std::string id = new_id(chat ? "chatcmpl-" : "cmpl-");
    access().id = id;
    auto job = submit_job(st, r, Api::openai);
    json base = {{"id", id},
                 {"object", chat ? (r.stream ? "chat.completion.chunk" : "chat.completion")
                                 : "text_completion"},
                 {"created", unix_time()},
                 {"model", st.opt.model_name},
                 {"system_fingerprint", nullptr}};
    if (!r.stream) {
      wait_job(st, req, *job, Api::openai);
      json choices = json::array();
      for (size_t i = 0; i < job->choices.size(); ++i) {
        const auto& res_i = job->choices[i].result;
        size_t offset = 0;
        std::string finish = finish_name(res_i.finish_reason);
        json c = {{"index", i},
                  {"logprobs", r.logprobs >= 0 ? logprobs_json(st, chat, res_i.logprobs, offset)
                                               : json(nullptr)}};
        if (chat)
          c["message"] = answer_message(st, r, res_i, finish);
        else
          c["text"] = res_i.text;
        c["finish_reason"] = finish;
        choices.push_back(std::move(c));
      }
      json out = base;
      out["choices"] = std::move(choices);
      out["usage"] = usage(*job);
      send_json(res, 200, out);
      return;
    }
    const bool include_usage = r.include_usage;
    if (include_usage) base["usage"] = nullptr;
    auto started = std::make_shared<std::vector<bool>>(job->choices.size(), false);
    auto offsets = std::make_shared<std::vector<size_t>>(job->choices.size(), 0);
    const bool want_lp = r.logprobs >= 0;
    // With tools the answer is held back to its end, where the calls are cut out of it.
    const bool hold = chat && r.tool_calls_wanted();
    auto held = std::make_shared<std::vector<std::string>>(job->choices.size());
    auto on_pieces = [&st, r, base, chat, started, offsets, want_lp, job, hold, held](
                         size_t i, std::vector<Piece>& fresh, bool fin) {
      std::string text;
      std::vector<engine::TokenLogprob> lps;
      for (auto& p : fresh) {
        text += p.text;
        if (p.logprob) lps.push_back(std::move(*p.logprob));
      }
      std::string out;
      auto chunk = [&](json delta_or_text, json finish, bool with_lp = true) {
        json j = base;
        json lp = nullptr;
        if (want_lp && with_lp && !lps.empty()) {
          lp = logprobs_json(st, chat, lps, (*offsets)[i]);
          lps.clear();
        }
        json c = {{"index", i}, {"logprobs", std::move(lp)}, {"finish_reason", std::move(finish)}};
        if (chat)
          c["delta"] = std::move(delta_or_text);
        else
          c["text"] = std::move(delta_or_text);
        j["choices"] = json::array({std::move(c)});
        out += sse(j);
      };
      if (chat && !(*started)[i]) {
        (*started)[i] = true;
        chunk({{"role", "assistant"}, {"content", ""}}, nullptr, false);
      }
      if (hold) {
        (*held)[i] += text;
        if (!lps.empty()) chunk(json::object(), nullptr);
        if (!fin) return out;
        std::string why = finish_name(job->choices[i].result.finish_reason);
        engine::Result whole = job->choices[i].result;
        whole.text = (*held)[i];
        const json msg = answer_message(st, r, whole, why);
        if (msg["content"].is_string() && !msg["content"].get<std::string>().empty())
          chunk(json{{"content", msg["content"]}}, nullptr);
        if (msg.contains("tool_calls")) {
          json calls = msg["tool_calls"];
          for (size_t k = 0; k < calls.size(); ++k) calls[k]["index"] = k;
          chunk(json{{"tool_calls", std::move(calls)}}, nullptr);
        }
        chunk(json::object(), why);
        return out;
      }
      // Tokens whose text is held back still get a chunk: their log-probabilities.
      if (!text.empty() || !lps.empty())
        chunk(chat ? json{{"content", text}} : json(text), nullptr);
      if (fin) {
        const std::string why = finish_name(job->choices[i].result.finish_reason);
        chunk(chat ? json::object() : json(""), why);
      }
      return out;
    };
    auto on_end = [base, include_usage, job] {
      std::string out;
      if (include_usage) {
        json j = base;
        j["choices"] = json::array();
        j["usage"] = usage(*job);
        out += sse(j);
      }
      return out + "data: [DONE]\n\n";
    };
    stream_job(st, res, job, Api::openai, on_pieces, on_end);
  });
}

}  // namespace

void add_openai_routes(httplib::Server& http, State& st) {
  http.Post("/v1/completions", [&st](const httplib::Request& req, httplib::Response& res) {
    handle(st, req, res, false);
  });
  http.Post("/v1/chat/completions", [&st](const httplib::Request& req, httplib::Response& res) {
    handle(st, req, res, true);
  });
}

}  // namespace sllm::serve
