#include "serve/worker.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.h"
#include "core/log.h"
#include "serve/protocol.h"

namespace sllm::serve {

namespace {
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

Worker::Worker(std::shared_ptr<const model::LlamaModel> model,
               std::shared_ptr<const tok::Tokenizer> tok, engine::EngineOptions opts,
               int64_t max_waiting, Metrics& metrics,
               std::optional<engine::SpeculativeOptions> speculative)
    : eng_(std::make_unique<engine::Engine>(std::move(model), std::move(tok), opts)),
      metrics_(metrics),
      max_waiting_(max_waiting) {
  if (speculative) eng_->enable_speculation(std::move(*speculative));
  context_ = eng_->context();
  max_seqs_ = opts.max_seqs;
  const auto& spec = eng_->cache().spec();
  kv_tokens_ = static_cast<int64_t>(spec.num_blocks) * spec.block_size;
  thread_ = std::thread([this] { loop(); });
}

Worker::~Worker() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
    cancel_all_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Worker::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard lk(mu_);
    if (draining_ || stop_) {
      metrics_.inc("sllm_rejections_total", "reason=\"shutting_down\"");
      throw ApiError(503, "the server is shutting down and takes no new requests");
    }
    if (static_cast<int64_t>(queue_.size()) >= max_waiting_) {
      metrics_.inc("sllm_rejections_total", "reason=\"queue_full\"");
      throw ApiError(429, fmt::format("the server is at capacity ({} requests waiting); retry "
                                      "later or send to another replica",
                                      queue_.size()));
    }
    job->choices.resize(job->requests.size());
    queue_.push_back(std::move(job));
  }
  cv_.notify_all();
}

void Worker::drain() {
  std::lock_guard lk(mu_);
  draining_ = true;
}

void Worker::cancel_all() {
  {
    std::lock_guard lk(mu_);
    cancel_all_ = true;
  }
  cv_.notify_all();
}

bool Worker::idle() const {
  std::lock_guard lk(mu_);
  return queue_.empty() && running_ == 0;
}

void Worker::start(const std::shared_ptr<Job>& job) {
  const auto now = Clock::now();
  {
    std::lock_guard lk(job->mu);
    job->queue_s = seconds(now - job->arrival);
  }
  metrics_.observe("sllm_request_queue_seconds", job->queue_s);
  for (size_t i = 0; i < job->requests.size(); ++i) {
    engine::Request req = job->requests[i];
    // The callbacks find their Live entry by engine id, known once submit returns.
    auto id_box = std::make_shared<int64_t>(-1);
    req.on_token = [this, id_box, user = req.on_token](int32_t tok) {
      if (user) user(tok);
      Live& l = live_.at(*id_box);
      const auto t = Clock::now();
      if (!l.got_token)
        metrics_.observe("sllm_time_to_first_token_seconds", seconds(t - l.job->arrival));
      else
        metrics_.observe("sllm_inter_token_latency_seconds", seconds(t - l.last_token));
      l.got_token = true;
      l.last_token = t;
      l.staged.push_back({tok, {}, std::move(l.logprob)});
      l.logprob.reset();
      metrics_.inc("sllm_generation_tokens_total");
    };
    if (req.logprobs >= 0)
      req.on_logprob = [this, id_box](const engine::TokenLogprob& lp) {
        live_.at(*id_box).logprob = lp;
      };
    req.on_text = [this, id_box](const std::string& s) {
      Live& l = live_.at(*id_box);
      if (l.staged.empty()) l.staged.push_back({-1, {}, {}});
      l.staged.back().text += s;
    };
    try {
      const int64_t id = eng_->submit(std::move(req));
      *id_box = id;
      live_[id] = Live{job, i, {}, {}, now, false};
      metrics_.inc("sllm_prompt_tokens_total", "",
                   static_cast<double>(job->requests[i].prompt.size()));
    } catch (const std::exception& e) {
      // Validated before queueing, so this is rare: refuse the whole job.
      for (auto it = live_.begin(); it != live_.end();)
        if (it->second.job == job) {
          eng_->cancel(it->first);
          eng_->take_result(it->first);
          it = live_.erase(it);
        } else {
          ++it;
        }
      std::lock_guard lk(job->mu);
      job->error = e.what();
      job->cv.notify_all();
      return;
    }
  }
}

void Worker::admit() {
  std::vector<std::shared_ptr<Job>> take;
  {
    std::lock_guard lk(mu_);
    int64_t busy = eng_->num_running() + eng_->num_waiting();
    while (!queue_.empty() && eng_->num_waiting() == 0 &&
           busy + static_cast<int64_t>(queue_.front()->requests.size()) <= max_seqs_) {
      busy += static_cast<int64_t>(queue_.front()->requests.size());
      take.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  for (auto& job : take) {
    if (job->cancel_requested) {  // the client left while it waited
      std::lock_guard lk(job->mu);
      job->error = "cancelled";
      job->cv.notify_all();
      continue;
    }
    start(job);
  }
}

// Moves staged pieces into their jobs and, after a step, the results of finished sequences.
void Worker::publish(bool collect_finished) {
  std::vector<Job*> touched;
  for (auto it = live_.begin(); it != live_.end();) {
    Live& l = it->second;
    const bool fin = collect_finished && eng_->finished(it->first);
    if (!l.staged.empty() || fin) {
      std::lock_guard lk(l.job->mu);
      Choice& c = l.job->choices[l.index];
      for (auto& p : l.staged) c.pieces.push_back(std::move(p));
      l.staged.clear();
      if (fin) {
        c.result = eng_->take_result(it->first);
        c.finished = true;
        l.job->num_finished++;
      }
      l.job->cv.notify_all();
    }
    it = fin ? live_.erase(it) : std::next(it);
  }
}

void Worker::update_gauges() {
  const auto st = eng_->cache().manager().stats();
  int64_t queued;
  {
    std::lock_guard lk(mu_);
    queued = static_cast<int64_t>(queue_.size());
  }
  // Before the gauges: a reader that sees the server idle sees every count added.
  const auto& es = eng_->stats();
  const auto add = [this](const char* name, int64_t now, int64_t& added) {
    metrics_.inc(name, "", static_cast<double>(now - added));
    added = now;
  };
  add("sllm_preemptions_total", es.preemptions, preempted_);
  add("sllm_prefix_cache_queries_total", es.prefix_cache_queries, prefix_queries_);
  add("sllm_prefix_cache_hits_total", es.prefix_cache_hits, prefix_hits_);
  metrics_.set("sllm_prefix_cache_hit_rate", es.prefix_cache_hit_rate());
  if (eng_->speculative()) {
    add("sllm_spec_draft_tokens_total", es.draft_proposed, drafted_);
    add("sllm_spec_accepted_tokens_total", es.draft_accepted, accepted_);
  }
  metrics_.set("sllm_requests_running", static_cast<double>(eng_->num_running()));
  metrics_.set("sllm_requests_waiting", static_cast<double>(queued + eng_->num_waiting()));
  metrics_.set("sllm_kv_cache_usage_percent",
               st.num_blocks > 0 ? 100.0 * st.used_blocks / st.num_blocks : 0.0);
  std::lock_guard lk(mu_);  // last: idle() implies the gauges above are current
  running_ = static_cast<int64_t>(live_.size());
}

void Worker::replace_model(std::shared_ptr<const model::LlamaModel> m) {
  std::lock_guard lk(mu_);
  next_model_ = std::move(m);
  cv_.notify_all();
}

void Worker::loop() {
  while (true) {
    bool cancel_all;
    {
      std::unique_lock lk(mu_);
      cv_.wait_for(lk, std::chrono::milliseconds(50),
                   [&] { return stop_ || cancel_all_ || !queue_.empty() || !live_.empty(); });
      if (stop_ && queue_.empty() && live_.empty()) break;
      cancel_all = cancel_all_;
      if (cancel_all) {  // queued jobs end without starting
        for (auto& job : queue_) {
          std::lock_guard jl(job->mu);
          job->error = "the server is shutting down";
          job->cv.notify_all();
        }
        queue_.clear();
      }
      // Jobs that timed out or were abandoned while queued.
      const auto now = Clock::now();
      for (auto it = queue_.begin(); it != queue_.end();) {
        auto& job = *it;
        if (job->cancel_requested || now > job->deadline) {
          std::lock_guard jl(job->mu);
          job->timed_out = now > job->deadline;
          job->error = job->timed_out ? "the request timed out while waiting" : "cancelled";
          job->cv.notify_all();
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
    }
    std::shared_ptr<const model::LlamaModel> next;
    {
      std::lock_guard lk(mu_);
      next = std::move(next_model_);
    }
    if (next) eng_->replace_model(std::move(next));  // before admitting jobs that need it
    admit();
    const auto now = Clock::now();
    for (auto& [id, l] : live_) {
      const bool late = now > l.job->deadline;
      if (cancel_all || late || l.job->cancel_requested) {
        if (late) {
          std::lock_guard jl(l.job->mu);
          l.job->timed_out = true;
        }
        eng_->cancel(id);  // outside a step: finishes now, its blocks are free
      }
    }
    publish(true);
    if (!live_.empty()) {
      try {
        eng_->step();
      } catch (const std::exception& e) {
        // A failed step leaves no usable state for its sequences: end them all with the error.
        log::error("engine step failed: {}", e.what());
        for (auto& [id, l] : live_) {
          std::lock_guard jl(l.job->mu);
          l.job->error = fmt::format("generation failed: {}", e.what());
          l.job->cv.notify_all();
          try {
            eng_->cancel(id);
            eng_->take_result(id);
          } catch (const std::exception&) {  // already gone
          }
        }
        live_.clear();
      }
      const auto finished_now = static_cast<double>(std::count_if(
          live_.begin(), live_.end(), [&](const auto& kv) { return eng_->finished(kv.first); }));
      metrics_.observe("sllm_batch_size", static_cast<double>(eng_->num_running()) + finished_now);
      publish(true);
    }
    update_gauges();
  }
  update_gauges();
}

}  // namespace sllm::serve
