// The serve layer's engine thread over a tiny random model: jobs get their tokens and text,
// equal to the engine run directly; a cancelled job frees its KV blocks; a full queue is 429;
// preemption and the prefix cache show in the metrics.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "serve/protocol.h"
#include "serve/worker.h"
#include "tiny_model.h"

namespace sllm::serve {
namespace {

engine::Request greedy(std::vector<int32_t> prompt, int n) {
  return {.prompt = std::move(prompt),
          .params = {.temperature = 0, .max_new_tokens = n, .ignore_eos = true}};
}

std::shared_ptr<Job> job_of(std::vector<engine::Request> reqs) {
  auto j = std::make_shared<Job>();
  j->requests = std::move(reqs);
  return j;
}

void wait(Job& j) {
  std::unique_lock lk(j.mu);
  ASSERT_TRUE(j.cv.wait_for(lk, std::chrono::seconds(60), [&] { return j.done(); }));
}

struct WorkerCase {
  std::shared_ptr<model::LlamaModel> m = fixtures::tiny_model(fixtures::tiny_config(), 5);
  std::shared_ptr<tok::Tokenizer> tok = fixtures::tiny_tokenizer();
  engine::EngineOptions opts;
  WorkerCase() {
    opts.max_seqs = 2;
    opts.block_size = 4;
    opts.max_step_tokens = 16;
  }
};

TEST(ServeWorker, JobsMatchTheEngineAndPiecesAddUp) {
  WorkerCase c;
  const std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {40, 41, 42, 43, 44}, {7}};
  engine::Engine ref(c.m, c.tok, c.opts);
  std::vector<engine::Request> rr;
  for (const auto& p : prompts) rr.push_back(greedy(p, 9));
  const auto expected = ref.generate(rr);

  Metrics metrics;
  Worker w(c.m, c.tok, c.opts, 8, metrics);
  std::vector<std::shared_ptr<Job>> jobs;
  for (const auto& p : prompts) {
    jobs.push_back(job_of({greedy(p, 9)}));
    w.submit(jobs.back());
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    wait(*jobs[i]);
    const Choice& ch = jobs[i]->choices[0];
    ASSERT_TRUE(ch.finished);
    EXPECT_EQ(ch.result.tokens, expected[i].tokens) << i;
    std::vector<int32_t> ids;
    std::string text;
    for (const auto& p : ch.pieces) {
      if (p.token >= 0) ids.push_back(p.token);
      text += p.text;
    }
    EXPECT_EQ(ids, ch.result.tokens);
    EXPECT_EQ(text, ch.result.text);
  }
  // n = 2: two sequences of one job.
  auto two = job_of({greedy(prompts[0], 4), greedy(prompts[1], 4)});
  w.submit(two);
  wait(*two);
  EXPECT_EQ(two->choices[1].result.tokens.size(), 4u);
  for (int i = 0; i < 100 && !w.idle(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(w.idle());
  EXPECT_EQ(metrics.gauge("sllm_kv_cache_usage_percent"), 0);
  EXPECT_EQ(metrics.counter("sllm_generation_tokens_total"), 3 * 9 + 2 * 4);
}

TEST(ServeWorker, CancelFreesBlocksAndFullQueueIs429) {
  WorkerCase c;
  c.opts.max_seqs = 1;
  Metrics metrics;
  Worker w(c.m, c.tok, c.opts, 1, metrics);
  // The running job holds the engine thread in its first token until the queue was tested.
  std::atomic<bool> entered{false}, release{false};
  auto first = greedy({1, 2, 3}, 200);
  first.on_token = [&](int32_t) {
    entered = true;
    for (int i = 0; i < 3000 && !release; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  auto longer = job_of({first});
  w.submit(longer);
  for (int i = 0; i < 5000 && !entered; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(entered);
  auto queued = job_of({greedy({4}, 3)});
  w.submit(queued);
  try {
    w.submit(job_of({greedy({5}, 3)}));
    ADD_FAILURE() << "a full queue accepted a job";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 429);
  }
  EXPECT_EQ(metrics.counter("sllm_rejections_total", "reason=\"queue_full\""), 1);
  longer->cancel_requested = true;
  release = true;
  wait(*longer);
  EXPECT_EQ(longer->choices[0].result.finish_reason, engine::FinishReason::cancelled);
  wait(*queued);
  EXPECT_EQ(queued->choices[0].result.tokens.size(), 3u);
  for (int i = 0; i < 100 && !w.idle(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(metrics.gauge("sllm_kv_cache_usage_percent"), 0);
  EXPECT_EQ(metrics.gauge("sllm_requests_running"), 0);
  w.drain();
  try {
    w.submit(job_of({greedy({5}, 3)}));
    ADD_FAILURE() << "a draining worker accepted a job";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 503);
  }
}

// A pool too small for the batch: sequences are preempted and recomputed, a shared prompt start
// comes from the prefix cache, the answers stay those of each request alone, /metrics counts it.
TEST(ServeWorker, PreemptionAndPrefixCacheMetrics) {
  WorkerCase c;
  c.opts.context = 32;
  c.opts.kv_tokens = 32;  // 8 blocks: 4 sequences of up to 7 do not fit together
  c.opts.max_seqs = 4;
  std::vector<std::vector<int32_t>> prompts;
  for (int32_t i = 0; i < 5; ++i) {
    prompts.push_back({9, 8, 7, 6, 5, 4, 3, 2, 1, 10, 11, 12});  // 3 blocks in common
    prompts.back().insert(prompts.back().end(), {100 + i, 50 + i});
  }
  Metrics metrics;
  Worker w(c.m, c.tok, c.opts, 8, metrics);
  auto first = job_of({greedy(prompts[0], 6)});
  w.submit(first);
  wait(*first);
  std::vector<std::shared_ptr<Job>> jobs;
  for (size_t i = 1; i < prompts.size(); ++i) {
    jobs.push_back(job_of({greedy(prompts[i], 14)}));
    w.submit(jobs.back());
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    wait(*jobs[i]);
    engine::Engine alone(c.m, c.tok, c.opts);
    EXPECT_EQ(jobs[i]->choices[0].result.tokens,
              alone.generate({greedy(prompts[i + 1], 14)})[0].tokens)
        << i;
  }
  for (int i = 0; i < 100 && !w.idle(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GT(metrics.counter("sllm_preemptions_total"), 0);
  const double hits = metrics.counter("sllm_prefix_cache_hits_total");
  const double queries = metrics.counter("sllm_prefix_cache_queries_total");
  EXPECT_GE(hits, 12);  // at least the first admitted shares the common start
  EXPECT_GE(queries, 5 * 14);
  EXPECT_DOUBLE_EQ(metrics.gauge("sllm_prefix_cache_hit_rate"), hits / queries);
  EXPECT_EQ(metrics.gauge("sllm_kv_cache_usage_percent"), 0);
  const std::string text = metrics.render();
  for (const char* name : {"sllm_preemptions_total", "sllm_prefix_cache_hit_rate"})
    EXPECT_NE(text.find(name), std::string::npos) << name;
}

}  // namespace
}  // namespace sllm::serve
