// Text Generation Inference routes: POST /generate, /generate_stream and / (the route the
// text-generation client posts to), POST /tokenize. Token events carry {id, text, logprob,
// special}; top_n_tokens adds the most likely tokens at each position (top_tokens).
#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "serve/routes.h"

namespace sllm::serve {

using nlohmann::json;

namespace {

std::string finish_name(engine::FinishReason r) {
  switch (r) {
    case engine::FinishReason::stop:
      return "eos_token";
    case engine::FinishReason::stop_string:
      return "stop_sequence";
    default:
      return "length";
  }
}

json token_json(const State& st, const Piece& p) {
  return {{"id", p.token},
          {"text", p.text},
          {"logprob", p.logprob ? json(p.logprob->logprob) : json(nullptr)},
          {"special", p.token >= 0 && st.tok->is_special(p.token)}};
}

// The alternatives at a token's position (TGI's top_tokens), most likely first.
json top_tokens(const State& st, const Piece& p) {
  json out = json::array();
  if (p.logprob)
    for (const auto& [id, v] : p.logprob->top)
      out.push_back({{"id", id},
                     {"text", st.tok->decode({id})},
                     {"logprob", v},
                     {"special", st.tok->is_special(id)}});
  return out;
}

// Text-only pieces (held-back text released at the end) join the token before them.
std::vector<Piece> merge_text(const std::vector<Piece>& pieces) {
  std::vector<Piece> out;
  for (const auto& p : pieces)
    if (p.token < 0 && !out.empty())
      out.back().text += p.text;
    else
      out.push_back(p);
  return out;
}

json details(const Job& job, const engine::Result& r) {
  return {{"finish_reason", finish_name(r.finish_reason)},
          {"generated_tokens", r.tokens.size()},
          {"seed", job.requests[0].params.temperature > 0 ? json(job.requests[0].params.seed)
                                                          : json(nullptr)}};
}

void generate(State& st, const httplib::Request& req, httplib::Response& res, bool stream_route,
              bool compat) {
  guarded(Api::tgi, res, [&] {
    GenRequest r = parse_tgi(req.body, st.limits(), stream_route);
    if (compat) r.logprobs = std::max(r.logprobs, 0);  // its answers always have details
    access().id = new_id("gen-");
    auto job = submit_job(st, r, Api::tgi);
    const std::string prefix = r.return_full_text ? r.prompt : "";
    if (!r.stream) {
      wait_job(st, req, *job, Api::tgi);
      const auto& c = job->choices[0];
      json out = {{"generated_text", prefix + c.result.text}};
      if (r.details || compat) {
        json d = details(*job, c.result);
        d["prefill"] = json::array();
        json toks = json::array(), tops = json::array();
        for (const auto& p : merge_text(c.pieces)) {
          toks.push_back(token_json(st, p));
          tops.push_back(top_tokens(st, p));
        }
        d["tokens"] = std::move(toks);
        if (r.logprobs > 0) d["top_tokens"] = std::move(tops);
        out["details"] = std::move(d);
      }
      send_json(res, 200, compat ? json::array({out}) : out);
      return;
    }
    struct Held {
      std::optional<Piece> piece;
      int64_t index = 0;
    };
    auto held = std::make_shared<Held>();
    const bool with_top = r.logprobs > 0;
    auto event = [&st, with_top](const Piece& p, int64_t index, json text, json det) {
      json j = {{"index", index},
                {"token", token_json(st, p)},
                {"top_tokens", with_top ? top_tokens(st, p) : json(nullptr)},
                {"generated_text", std::move(text)},
                {"details", std::move(det)}};
      return "data:" + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
    };
    auto on_pieces = [&st, held, job, prefix, event](size_t, std::vector<Piece>& fresh, bool fin) {
      std::string out;
      // The newest token is held until the next one arrives: the last event must carry it
      // together with the generated text and the details.
      for (auto& p : fresh) {
        if (p.token < 0 && held->piece) {
          held->piece->text += p.text;
          continue;
        }
        if (held->piece) out += event(*held->piece, held->index++, nullptr, nullptr);
        held->piece = std::move(p);
      }
      if (fin) {
        const auto& r = job->choices[0].result;
        Piece last = held->piece ? *held->piece : Piece{st.tok->eos_id, "", {}};
        held->piece.reset();
        out += event(last, held->index++, prefix + r.text, details(*job, r));
      }
      return out;
    };
    stream_job(st, res, job, Api::tgi, on_pieces, [] { return std::string(); });
  });
}

}  // namespace

void add_tgi_routes(httplib::Server& http, State& st) {
  http.Post("/generate", [&st](const httplib::Request& req, httplib::Response& res) {
    generate(st, req, res, false, false);
  });
  http.Post("/generate_stream", [&st](const httplib::Request& req, httplib::Response& res) {
    generate(st, req, res, true, false);
  });
  // The text-generation client posts here; non-streamed answers are a list of one.
  http.Post("/", [&st](const httplib::Request& req, httplib::Response& res) {
    generate(st, req, res, false, true);
  });
  http.Post("/tokenize", [&st](const httplib::Request& req, httplib::Response& res) {
    guarded(Api::tgi, res, [&] {
      const std::string text = parse_tokenize(req.body);
      if (st.phase != Phase::ready) throw ApiError(503, "the model is loading");
      json out = json::array();
      size_t pos = 0;
      for (int32_t id : st.enc.text(text)) {
        const std::string t = st.tok->decode({id});
        out.push_back({{"id", id}, {"text", t}, {"start", pos}, {"stop", pos + t.size()}});
        pos += t.size();
      }
      send_json(res, 200, out);
    });
  });
}

}  // namespace sllm::serve
