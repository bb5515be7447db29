// From a parsed request to a queued job, and the two ways of answering it: wait for the whole
// result, or stream it as server-sent events.
#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <filesystem>

#include "core/error.h"
#include "serve/routes.h"

namespace sllm::serve {

namespace {
int bad(Api api) { return api == Api::tgi ? 422 : 400; }

// Decrements the in-flight count however the handler ends.
struct InFlight {
  State& st;
  explicit InFlight(State& s) : st(s) { st.in_flight++; }
  ~InFlight() { st.in_flight--; }
};

// "host:port" of a socket address, numeric, as httplib writes Request::remote_addr/port.
std::string address(const sockaddr_storage& a, socklen_t len) {
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (getnameinfo(reinterpret_cast<const sockaddr*>(&a), len, host, sizeof host, port, sizeof port,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return {};
  return std::string(host) + ":" + port;
}

// The request's connection: the open socket whose local and peer addresses are the request's
// (httplib 0.11 gives handlers no socket). -1 when none is found.
int connection_socket(const httplib::Request& req) {
  const std::string peer = fmt::format("{}:{}", req.remote_addr, req.remote_port);
  const std::string local = fmt::format("{}:{}", req.local_addr, req.local_port);
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    int fd = -1;
    try {
      fd = std::stoi(e.path().filename().string());
    } catch (const std::exception&) {
      continue;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISSOCK(sb.st_mode)) continue;
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0 || address(a, len) != peer)
      continue;
    len = sizeof a;
    if (req.local_addr.empty() ||
        (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0 && address(a, len) == local))
      return fd;
  }
  return -1;
}

// Whether the client closed its side (or the connection broke). Data it sent is left unread.
bool peer_closed(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

}  // namespace

int32_t resolve_adapter(const State& st, const GenRequest& r, Api api) {
  const std::string& name = api == Api::tgi ? r.adapter_id : r.model;
  if (name.empty() || (api == Api::openai && name == st.opt.model_name)) return 0;
  const auto a = st.adapter_list();
  for (const auto& [n, id] : a)
    if (n == name) return id;
  std::string known = st.opt.model_name;
  for (const auto& [n, id] : a) known += ", " + n;
  if (api == Api::tgi)
    throw ApiError(422, fmt::format("`adapter_id` '{}' is not served (served: {})", name, known),
                   "adapter_id");
  throw ApiError(404,
                 fmt::format("the model '{}' does not exist: this server serves {}", name, known),
                 "model");
}

std::shared_ptr<Job> submit_job(State& st, const GenRequest& r, Api api) {
  if (st.phase == Phase::loading) throw ApiError(503, "the model is loading; retry shortly");
  if (st.phase == Phase::draining) throw ApiError(503, "the server is shutting down");
  if (r.n > st.worker->max_seqs())
    throw ApiError(bad(api),
                   fmt::format("n is {} but the server runs at most {} sequences "
                               "together (--max-seqs)",
                               r.n, st.worker->max_seqs()),
                   "n");
  std::vector<int32_t> ids;
  try {
    if (r.kind != Kind::chat)
      ids = st.enc.text(r.prompt);
    else if (!r.messages_json.is_null())
      ids = st.enc.chat_json(r.messages_json, r.tools_json);
    else
      ids = st.enc.chat(r.messages);
  } catch (const Error& e) {
    throw ApiError(bad(api), fmt::format("cannot tokenize the prompt: {}", e.what()));
  }
  const auto n = static_cast<int64_t>(ids.size());
  auto reject = [&](const std::string& reason, const std::string& msg, const std::string& param) {
    st.metrics.inc("sllm_rejections_total", fmt::format("reason=\"{}\"", reason));
    throw ApiError(bad(api), msg, param);
  };
  const char* input = api == Api::tgi ? "`inputs`" : r.kind == Kind::chat ? "messages" : "prompt";
  if (n > st.opt.max_input_tokens || n >= st.opt.max_total_tokens)
    reject("prompt_too_long",
           fmt::format("{} has {} tokens but at most {} are allowed (max_input_tokens; "
                       "max_total_tokens {}): shorten it",
                       input, n, std::min(st.opt.max_input_tokens, st.opt.max_total_tokens - 1),
                       st.opt.max_total_tokens),
           api == Api::tgi        ? "inputs"
           : r.kind == Kind::chat ? "messages"
                                  : "prompt");
  engine::SamplingParams p = r.params;
  const int64_t room = st.opt.max_total_tokens - n;
  if (p.max_new_tokens > room) {
    if (r.max_tokens_given)
      reject(
          "too_many_tokens",
          fmt::format("{} tokens + {} = {} exceeds max_total_tokens {}: lower {} or shorten "
                      "the input",
                      n, api == Api::tgi ? "`max_new_tokens`" : "max_tokens", n + p.max_new_tokens,
                      st.opt.max_total_tokens, api == Api::tgi ? "`max_new_tokens`" : "max_tokens"),
          api == Api::tgi ? "max_new_tokens" : "max_tokens");
    p.max_new_tokens = room;  // a default, not the client's number: fit it
  }
  auto job = std::make_shared<Job>();
  if (st.opt.timeout_s > 0)
    job->deadline = job->arrival + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(st.opt.timeout_s));
  const uint64_t seed = r.seed_given ? p.seed : fresh_seed();
  for (int64_t i = 0; i < r.n; ++i) {
    engine::Request req;
    req.prompt = ids;
    req.params = p;
    req.params.seed = seed + static_cast<uint64_t>(i);
    req.logprobs = r.logprobs;
    req.adapter = resolve_adapter(st, r, api);
    if (r.json_object)
      req.constraint = std::make_shared<engine::JsonObjectConstraint>(st.json_vocab);
    job->requests.push_back(std::move(req));
  }
  access().prompt_tokens = n;
  st.worker->submit(job);
  return job;
}

void wait_job(State& st, const httplib::Request& req, Job& job, Api api) {
  InFlight guard(st);
  const int fd = connection_socket(req);
  std::unique_lock lk(job.mu);
  // A client that hangs up is noticed within a poll period: its sequences (and KV blocks) are
  // freed then, not when the generation would have ended.
  while (!job.cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return job.done(); }))
    if (fd >= 0 && !job.cancel_requested && peer_closed(fd)) job.cancel_requested = true;
  int64_t generated = 0;
  for (const auto& c : job.choices) generated += static_cast<int64_t>(c.result.tokens.size());
  access().completion_tokens = generated;
  if (job.timed_out)
    throw ApiError(
        504, fmt::format("the request did not finish within {} s (--timeout)", st.opt.timeout_s));
  if (!job.error.empty()) throw ApiError(503, job.error);
}

void stream_job(State& st, httplib::Response& res, std::shared_ptr<Job> job, Api api,
                PieceWriter on_pieces, std::function<std::string()> on_end) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto provider = [&st, job, api, on_pieces, on_end](size_t, httplib::DataSink& sink) {
    InFlight guard(st);
    std::vector<size_t> cursor(job->choices.size(), 0);
    std::vector<bool> seen_finished(job->choices.size(), false);
    auto last_write = Clock::now();
    auto write = [&](const std::string& s) {
      if (s.empty()) return true;
      last_write = Clock::now();
      if (sink.write(s.data(), s.size())) return true;
      job->cancel_requested = true;  // the client is gone: free its sequence now
      return false;
    };
    while (true) {
      std::vector<std::vector<Piece>> fresh(job->choices.size());
      std::vector<bool> fin_now(job->choices.size(), false);
      bool done, timed_out;
      std::string error;
      {
        std::unique_lock lk(job->mu);
        auto news = [&] {
          if (job->done()) return true;
          for (size_t i = 0; i < cursor.size(); ++i)
            if (job->choices[i].pieces.size() > cursor[i]) return true;
          return false;
        };
        job->cv.wait_for(lk, std::chrono::milliseconds(500), news);
        for (size_t i = 0; i < cursor.size(); ++i) {
          auto& c = job->choices[i];
          for (; cursor[i] < c.pieces.size(); ++cursor[i]) fresh[i].push_back(c.pieces[cursor[i]]);
          if (c.finished && !seen_finished[i]) fin_now[i] = seen_finished[i] = true;
        }
        done = job->done();
        timed_out = job->timed_out;
        error = job->error;
      }
      int64_t generated = 0;
      for (size_t i = 0; i < fresh.size(); ++i) {
        if (!fresh[i].empty() || fin_now[i]) {
          if (!write(on_pieces(i, fresh[i], fin_now[i] && !timed_out))) return false;
        }
        if (seen_finished[i])
          generated += static_cast<int64_t>(job->choices[i].result.tokens.size());
      }
      if (done) {
        access().completion_tokens = generated;
        if (timed_out || !error.empty()) {
          const ApiError e = timed_out ? ApiError(504, fmt::format("the request did not finish "
                                                                   "within {} s (--timeout)",
                                                                   st.opt.timeout_s))
                                       : ApiError(503, error);
          write("data: " +
                error_body(api, e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                "\n\n");
        } else if (!write(on_end())) {
          return false;
        }
        sink.done();
        return true;
      }
      // A comment line now and then: writing is how a vanished client is noticed.
      if (Clock::now() - last_write > std::chrono::seconds(1) && !write(": keep-alive\n\n"))
        return false;
    }
  };
  res.set_chunked_content_provider("text/event-stream", provider, [job](bool) {
    job->cancel_requested = true;  // no-op when it already finished
  });
}

}  // namespace sllm::serve
