// The engine thread. HTTP threads hand it Jobs through a bounded queue; it admits them while
// the engine has room, runs Engine::step, routes each sequence's tokens and text to its Job,
// applies cancels (client gone, timeout, shutdown) and publishes the gauges.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "serve/metrics.h"

namespace sllm::serve {

using Clock = std::chrono::steady_clock;

// One generated token (token -1: text only, e.g. held-back text released at the end), the
// text it completed and, when asked for, its log-probabilities.
struct Piece {
  int32_t token = -1;
  std::string text;
  std::optional<engine::TokenLogprob> logprob;
};

struct Choice {
  std::vector<Piece> pieces;  // all pieces so far; the HTTP side keeps its own cursor
  bool finished = false;
  engine::Result result;
};

// One HTTP request's generation: n sequences of the same prompt (OpenAI "n").
struct Job {
  // Prompt + params; the worker adds its callbacks (an on_token given here is called first).
  std::vector<engine::Request> requests;
  Clock::time_point arrival = Clock::now(), deadline = Clock::time_point::max();
  std::atomic<bool> cancel_requested{false};

  // Written by the engine thread, read under mu by the HTTP thread.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Choice> choices;
  size_t num_finished = 0;
  bool timed_out = false;
  std::string error;  // the engine refused the request
  double queue_s = 0;

  bool done() const { return num_finished == choices.size() || !error.empty(); }
};

class Worker {
 public:
  Worker(std::shared_ptr<const model::LlamaModel> model, std::shared_ptr<const tok::Tokenizer> tok,
         engine::EngineOptions opts, int64_t max_waiting, Metrics& metrics,
         std::optional<engine::SpeculativeOptions> speculative = std::nullopt);
  ~Worker();

  // Queues a job. Throws ApiError 429 when the waiting queue is full, 503 when draining.
  void submit(std::shared_ptr<Job> job);
  // Stops admitting new jobs (submit answers 503); queued and running ones go on.
  void drain();
  // Cancels everything queued or running (their jobs finish as cancelled).
  void cancel_all();
  // The engine switches to m (the model with another served adapter) before it next admits.
  void replace_model(std::shared_ptr<const model::LlamaModel> m);
  bool idle() const;  // nothing queued or running
  int64_t context() const { return context_; }
  int64_t max_seqs() const { return max_seqs_; }
  int64_t kv_tokens() const { return kv_tokens_; }

 private:
  struct Live {
    std::shared_ptr<Job> job;
    size_t index;
    std::vector<Piece> staged;  // this step's pieces, published when the step ends
    std::optional<engine::TokenLogprob> logprob;  // of the token on_token is about to stage
    Clock::time_point last_token;
    bool got_token = false;
  };
  void loop();
  void admit();
  void start(const std::shared_ptr<Job>& job);
  void publish(bool collect_finished);
  void update_gauges();

  std::unique_ptr<engine::Engine> eng_;
  Metrics& metrics_;
  const int64_t max_waiting_;
  int64_t context_ = 0, max_seqs_ = 0, kv_tokens_ = 0;
  // Engine counts already added to the metrics.
  int64_t drafted_ = 0, accepted_ = 0, preempted_ = 0, prefix_queries_ = 0, prefix_hits_ = 0;
  std::map<int64_t, Live> live_;  // engine id -> its job (engine thread only)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  int64_t running_ = 0;  // mirrored for idle()
  bool draining_ = false, stop_ = false, cancel_all_ = false;
  std::shared_ptr<const model::LlamaModel> next_model_;  // replace_model's, not yet applied
  std::thread thread_;
};

}  // namespace sllm::serve
