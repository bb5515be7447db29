#include "engine/plan/scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace sllm::engine {

int64_t StepPlan::num_tokens() const {
  int64_t n = 0;
  for (const auto& c : chunks) n += c.n;
  return n;
}

Scheduler::Scheduler(SchedulerLimits limits, kv::BlockManager& mgr) : limits_(limits), mgr_(mgr) {
  SLLM_CHECK(limits_.max_seqs > 0 && limits_.max_step_tokens > 0,
             "scheduler limits must be positive (max_seqs {}, max_step_tokens {})",
             limits_.max_seqs, limits_.max_step_tokens);
}

void Scheduler::enqueue(SeqState* s, int64_t max_tokens) {
  SLLM_CHECK(s && s->kv_id < 0 && !s->tokens.empty() && s->computed == 0,
             "only a new request with a prompt can be queued");
  s->reserved_blocks = kv::BlockManager::blocks_needed(max_tokens, mgr_.block_size());
  SLLM_CHECK(s->reserved_blocks <= mgr_.num_blocks(),
             "a request of up to {} tokens needs {} KV blocks but the pool has {}: raise the KV "
             "cache size or lower max_new_tokens",
             max_tokens, s->reserved_blocks, mgr_.num_blocks());
  waiting_.push_back(s);
}

void Scheduler::admit(StepPlan& plan) {
  while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < limits_.max_seqs &&
         reserved_blocks_ + waiting_.front()->reserved_blocks <= mgr_.num_blocks()) {
    SeqState* s = waiting_.front();
    waiting_.pop_front();
    s->kv_id = mgr_.add_sequence();
    reserved_blocks_ += s->reserved_blocks;
    running_.push_back(s);
    plan.admitted.push_back(s);
  }
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  admit(plan);
  // Decode sequences (one pending token, plus drafts) first; the order persists across steps.
  std::stable_sort(running_.begin(), running_.end(), [](const SeqState* a, const SeqState* b) {
    return a->decoding() > b->decoding();
  });
  int64_t budget = limits_.max_step_tokens;
  for (SeqState* s : running_) {
    if (budget <= 0) break;
    const int64_t n = std::min(s->pending(), budget);
    plan.chunks.push_back({s, s->computed, n});
    budget -= n;
  }
  for (const auto& c : plan.chunks) {
    auto ops = mgr_.append(c.seq->kv_id, static_cast<int32_t>(c.n));
    plan.copies.insert(plan.copies.end(), ops.begin(), ops.end());
  }
  return plan;
}

void Scheduler::remove(SeqState* s) {
  if (auto it = std::find(waiting_.begin(), waiting_.end(), s); it != waiting_.end()) {
    waiting_.erase(it);
    return;
  }
  auto it = std::find(running_.begin(), running_.end(), s);
  SLLM_CHECK(it != running_.end(), "request {} is neither queued nor running", s->id);
  running_.erase(it);
  mgr_.free(s->kv_id);
  s->kv_id = -1;
  reserved_blocks_ -= s->reserved_blocks;
}

}  // namespace sllm::engine
