#include "engine/plan/scheduler.h"

#include <algorithm>
#include <utility>

#include "core/error.h"

namespace sllm::engine {

int64_t StepPlan::num_tokens() const {
  int64_t n = 0;
  for (const auto& c : chunks) n += c.n;
  return n;
}

struct Scheduler::Pass {
  StepPlan plan;
  // Each copy with the sequence whose append asked for it: a preempted one's are dropped.
  std::vector<std::pair<SeqState*, kv::CopyOp>> copies;
};

Scheduler::Scheduler(SchedulerLimits limits, kv::BlockManager& mgr) : limits_(limits), mgr_(mgr) {
  SLLM_CHECK(limits_.max_seqs > 0 && limits_.max_step_tokens > 0,
             "scheduler limits must be positive (max_seqs {}, max_step_tokens {})",
             limits_.max_seqs, limits_.max_step_tokens);
}

void Scheduler::enqueue(SeqState* s, int64_t max_tokens) {
  SLLM_CHECK(s && s->kv_id < 0 && !s->tokens.empty() && s->computed == 0,
             "only a new request with a prompt can be queued");
  // Alone in the pool a request always fits, so waiting (or being preempted) always ends.
  const int64_t blocks = kv::BlockManager::blocks_needed(max_tokens, mgr_.block_size());
  SLLM_CHECK(blocks <= mgr_.num_blocks(),
             "a request of up to {} tokens needs {} KV blocks but the pool has {}: raise the KV "
             "cache size or lower max_new_tokens",
             max_tokens, blocks, mgr_.num_blocks());
  waiting_.push_back(s);
}

void Scheduler::cache_computed(const SeqState& s) {
  mgr_.cache_blocks(s.kv_id, s.tokens.data(),
                    static_cast<int32_t>(std::min(s.computed, s.length())));
}

void Scheduler::admit(Pass& p) {
  // Blocks the running sequences need for what they still have to compute.
  int64_t need = 0;
  for (const SeqState* r : running_)
    need += mgr_.blocks_to_append(r->kv_id, static_cast<int32_t>(r->pending()));
  while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < limits_.max_seqs) {
    SeqState* s = waiting_.front();
    s->kv_id = mgr_.add_sequence();
    // Drafts a preempted sequence kept are computed with the token before them.
    const auto known = static_cast<int32_t>(s->length() - s->draft);
    const int32_t shared = mgr_.share_prefix(s->kv_id, s->tokens.data(), known, s->cache_salt);
    const int64_t mine =
        mgr_.blocks_to_append(s->kv_id, static_cast<int32_t>(s->length() - shared));
    if (need + mine > mgr_.num_free_blocks()) {  // first come, first served: the rest waits
      mgr_.free(s->kv_id);
      s->kv_id = -1;
      break;
    }
    need += mine;
    waiting_.pop_front();
    s->computed = shared;
    s->admitted_at = next_admission_++;
    if (mgr_.prefix_caching()) {
      stats_.prefix_queries += known;
      stats_.prefix_hits += shared;
    }
    running_.push_back(s);
    p.plan.admitted.push_back(s);
  }
}

int64_t Scheduler::chunk_size(const SeqState& s, int64_t budget) {
  const int64_t pending = s.pending();
  if (pending <= budget) return pending;
  return std::max<int64_t>(0, std::min(budget, pending - 1 - s.draft));
}

void Scheduler::preempt(SeqState* s, Pass& p) {
  // Its computed full blocks entered the prefix cache when the step began: with caching on, a
  // re-admission finds those not evicted meanwhile.
  mgr_.free(s->kv_id);
  s->kv_id = -1;
  s->computed = 0;
  s->admitted_at = -1;
  running_.erase(std::find(running_.begin(), running_.end(), s));
  auto& ch = p.plan.chunks;
  ch.erase(std::remove_if(ch.begin(), ch.end(), [&](const Chunk& c) { return c.seq == s; }),
           ch.end());
  waiting_.push_front(s);
  p.plan.preempted.push_back(s);
  stats_.preemptions++;
}

bool Scheduler::make_room(SeqState* s, int64_t n, Pass& p) {
  while (!mgr_.can_append(s->kv_id, static_cast<int32_t>(n))) {
    SeqState* victim = *std::max_element(
        running_.begin(), running_.end(),
        [](const SeqState* a, const SeqState* b) { return a->admitted_at < b->admitted_at; });
    SLLM_CHECK(victim != s || running_.size() > 1,
               "KV cache is full: request {} alone cannot get blocks for {} more tokens", s->id, n);
    preempt(victim, p);
    if (victim == s) return false;
  }
  return true;
}

StepPlan Scheduler::schedule() {
  Pass p;
  for (const SeqState* s : running_) cache_computed(*s);
  admit(p);
  // Decode sequences (one pending token, plus drafts) first; the order persists across steps.
  std::stable_sort(running_.begin(), running_.end(), [](const SeqState* a, const SeqState* b) {
    return a->decoding() > b->decoding();
  });
  const std::vector<SeqState*> order = running_;
  for (SeqState* s : order) {
    if (s->kv_id < 0) continue;  // preempted by one before it
    const int64_t budget = limits_.max_step_tokens - p.plan.num_tokens();
    if (budget <= 0) break;
    const int64_t n = chunk_size(*s, budget);
    if (n <= 0 || !make_room(s, n, p)) continue;
    for (const auto& op : mgr_.append(s->kv_id, static_cast<int32_t>(n)))
      p.copies.emplace_back(s, op);
    p.plan.chunks.push_back({s, s->computed, n});
  }
  for (const auto& [s, op] : p.copies)
    if (s->kv_id >= 0) p.plan.copies.push_back(op);
  return std::move(p.plan);
}

void Scheduler::remove(SeqState* s) {
  if (auto it = std::find(waiting_.begin(), waiting_.end(), s); it != waiting_.end()) {
    waiting_.erase(it);
    return;
  }
  auto it = std::find(running_.begin(), running_.end(), s);
  SLLM_CHECK(it != running_.end(), "request {} is neither queued nor running", s->id);
  running_.erase(it);
  cache_computed(*s);
  mgr_.free(s->kv_id);
  s->kv_id = -1;
}

}  // namespace sllm::engine
