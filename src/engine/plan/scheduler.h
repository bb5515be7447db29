// Continuous-batching scheduler, no tensors (as in vLLM): admits queued requests while the KV
// pool has the blocks they need now (the rest of their prompt, on top of what the running
// sequences need this step), sharing cached prefix blocks; then splits one step's token budget
// over the running sequences, decode tokens first, prefill chunked to fit. A running sequence
// that needs a block when none is free preempts the most recently admitted one: its blocks are
// freed and it goes back to the front of the queue with its tokens, to be computed again.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "kv/block_manager.h"

namespace sllm::engine {

// The scheduler's view of one request; the engine keeps it with the request's other state.
struct SeqState {
  int64_t id = 0;
  kv::SeqId kv_id = -1;         // -1 while queued
  int64_t admitted_at = -1;     // admission order (the latest admitted is preempted first)
  std::vector<int32_t> tokens;  // prompt + generated
  int64_t computed = 0;         // leading tokens whose K/V are in the cache
  int64_t draft = 0;            // trailing tokens a drafter proposed, verified by the next step
  int64_t cache_salt = 0;       // prefix caching shares blocks only within one salt (adapter)

  int64_t length() const { return static_cast<int64_t>(tokens.size()); }
  int64_t pending() const { return length() - computed; }
  // Decoding: one sampled token (plus any drafts) to compute; otherwise prefilling.
  bool decoding() const { return pending() == 1 + draft; }
};

// One sequence's share of a step: the tokens at positions [start, start + n) are computed.
struct Chunk {
  SeqState* seq = nullptr;
  int64_t start = 0, n = 0;
  // The chunk reaches the last known token, so its logits give the next token.
  bool samples() const { return start + n == seq->length(); }
  // Logits rows the chunk yields: the sampled position and one per draft token.
  int64_t num_logits() const { return samples() ? 1 + seq->draft : 0; }
};

struct StepPlan {
  std::vector<SeqState*> admitted;   // started running this step
  std::vector<SeqState*> preempted;  // sent back to the queue this step (may be admitted too)
  std::vector<Chunk> chunks;         // decode chunks first, then prefill chunks
  std::vector<kv::CopyOp> copies;    // copy-on-write block copies to do before the forward
  int64_t num_tokens() const;
};

struct SchedulerLimits {
  int64_t max_seqs = 16;          // sequences running together
  int64_t max_step_tokens = 512;  // tokens computed in one step
};

struct SchedulerStats {
  int64_t preemptions = 0;
  // Prefix caching, in tokens: looked up at admission, and found cached.
  int64_t prefix_queries = 0, prefix_hits = 0;
};

class Scheduler {
 public:
  Scheduler(SchedulerLimits limits, kv::BlockManager& mgr);

  // Queues a request that can grow to max_tokens tokens (prompt + new ones); refuses one the
  // whole pool could not hold.
  void enqueue(SeqState* s, int64_t max_tokens);
  // Admits what fits, picks this step's chunks (preempting if the pool runs out) and appends
  // their slots to the block tables. Blocks computed since the last call enter the prefix cache.
  StepPlan schedule();
  // Drops a queued or running request; a running one's blocks go back to the pool (its computed
  // full blocks stay cached with prefix caching on).
  void remove(SeqState* s);

  bool idle() const { return waiting_.empty() && running_.empty(); }
  bool has_waiting() const { return !waiting_.empty(); }
  const std::vector<SeqState*>& running() const { return running_; }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  const SchedulerStats& stats() const { return stats_; }

 private:
  struct Pass;  // one schedule() call's plan and copy-on-write copies
  void admit(Pass& p);
  // Tokens of s to compute within budget; a chunk that stops short leaves at least s's last
  // token and its drafts, which must be verified together.
  static int64_t chunk_size(const SeqState& s, int64_t budget);
  // Frees blocks until s can append n tokens, preempting the latest admitted sequences; false
  // when s itself was the one preempted.
  bool make_room(SeqState* s, int64_t n, Pass& p);
  void preempt(SeqState* s, Pass& p);
  void cache_computed(const SeqState& s);

  SchedulerLimits limits_;
  kv::BlockManager& mgr_;
  std::deque<SeqState*> waiting_;
  std::vector<SeqState*> running_;
  int64_t next_admission_ = 0;
  SchedulerStats stats_;
};

}  // namespace sllm::engine
