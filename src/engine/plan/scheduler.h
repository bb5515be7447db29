// Continuous-batching scheduler, no tensors: admits queued requests while the KV pool can
// reserve every block they may ever need (so a running sequence never runs out of KV space
// and nothing is preempted), then splits one step's token budget over the running sequences,
// decode tokens first, prefill chunked to fit.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "kv/block_manager.h"

namespace sllm::engine {

// The scheduler's view of one request; the engine keeps it with the request's other state.
struct SeqState {
  int64_t id = 0;
  kv::SeqId kv_id = -1;         // -1 until admitted
  int64_t reserved_blocks = 0;  // blocks held back for the longest the request can grow
  std::vector<int32_t> tokens;  // prompt + generated
  int64_t computed = 0;         // leading tokens whose K/V are in the cache
  int64_t draft = 0;            // trailing tokens a drafter proposed, verified by the next step

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
  std::vector<SeqState*> admitted;  // started running this step
  std::vector<Chunk> chunks;        // decode chunks first, then prefill chunks
  std::vector<kv::CopyOp> copies;   // copy-on-write block copies to do before the forward
  int64_t num_tokens() const;
};

struct SchedulerLimits {
  int64_t max_seqs = 16;          // sequences running together
  int64_t max_step_tokens = 512;  // tokens computed in one step
};

class Scheduler {
 public:
  Scheduler(SchedulerLimits limits, kv::BlockManager& mgr);

  // Queues a request that can grow to max_tokens tokens (prompt + new ones).
  void enqueue(SeqState* s, int64_t max_tokens);
  // Admits what fits, picks this step's chunks and appends their slots to the block tables.
  StepPlan schedule();
  // Drops a queued or running request; a running one's blocks go back to the pool.
  void remove(SeqState* s);

  bool idle() const { return waiting_.empty() && running_.empty(); }
  bool has_waiting() const { return !waiting_.empty(); }
  const std::vector<SeqState*>& running() const { return running_; }
  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t reserved_blocks() const { return reserved_blocks_; }

 private:
  void admit(StepPlan& plan);

  SchedulerLimits limits_;
  kv::BlockManager& mgr_;
  std::deque<SeqState*> waiting_;
  std::vector<SeqState*> running_;
  int64_t reserved_blocks_ = 0;
};

}  // namespace sllm::engine
